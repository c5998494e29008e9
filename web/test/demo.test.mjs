// Real-browser tests of the demo page: headless Chromium drives the page
// served by a real tidings binary on a loopback port.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { API_KEY, startServer, stopServer, userToken, notify, launchBrowser, newPage } from './helpers.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

async function openPage(url) {
  const p = await newPage(browser);
  await p.page.goto(url);
  return p;
}

test('dev mode: connect, receive live, mark read syncs across tabs', async () => {
  const s = await startServer({ TIDINGS_DEV: 'true' });
  try {
    const a = await openPage(s.base + '/');
    const b = await openPage(s.base + '/');
    for (const { page } of [a, b]) {
      await page.fill('#user', 'demo-1');
      await page.click('#connect:not([disabled])');
      await page.waitForSelector('#status[data-state="open"]');
    }
    await a.page.click('#send-test:not([disabled])');
    for (const { page } of [a, b]) {
      await page.waitForSelector('#list li.item.unread');
      await page.waitForFunction(() => document.querySelector('#badge').textContent.trim() === '1');
    }
    // A notification from the publisher API arrives live too.
    const res = await fetch(s.base + '/v1/notifications', {
      method: 'POST', headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ users: ['demo-1'], type: 'comment.reply', title: 'Alice replied', body: 'Nice post' }),
    });
    assert.equal(res.status, 202);
    await b.page.waitForFunction(() => document.querySelectorAll('#list li.item').length === 2);
    assert.match(await b.page.textContent('#list'), /Alice replied/);
    // Mark all read in tab A: tab B's badge follows.
    await a.page.click('#mark-all:not([disabled])');
    await b.page.waitForFunction(() => document.querySelector('#badge').textContent.trim() === '0');
    assert.equal(await b.page.locator('#list li.item.unread').count(), 0);
    if (process.env.SCREENSHOT) await a.page.screenshot({ path: process.env.SCREENSHOT });
    assert.deepEqual(a.problems, [], 'console of tab A');
    assert.deepEqual(b.problems, [], 'console of tab B');
  } finally {
    await stopServer(s);
  }
});

test('token mode: the page takes #token= and loads without errors', async () => {
  const s = await startServer({});
  try {
    const token = userToken(s, 'tok-1');
    const { page, problems } = await openPage(`${s.base}/#token=${token}`);
    await page.waitForSelector('#status[data-state="open"]');
    assert.equal((await notify(s, 'tok-1', 'Invoice ready')).status, 202);
    await page.waitForSelector('#list li.item.unread');
    assert.match(await page.textContent('#list'), /Invoice ready/);
    // Dev endpoints are off.
    assert.equal((await fetch(s.base + '/v1/dev/token?user=x')).status, 404);
    assert.deepEqual(problems, [], 'console');
  } finally {
    await stopServer(s);
  }
});

// Seed 004: a plain browser EventSource with addEventListener per event
// name; after a drop it reconnects with Last-Event-ID and gets what it
// missed.
test('EventSource: named events, resume after a drop', async () => {
  const s = await startServer({});
  try {
    const token = userToken(s, 'es-1');
    const { page, problems } = await openPage(`${s.base}/`);
    await page.evaluate((tok) => new Promise((resolve) => {
      window.got = [];
      const source = new EventSource('v1/sse?token=' + encodeURIComponent(tok));
      window.source = source;
      source.addEventListener('notification', (e) => window.got.push({ id: e.lastEventId, title: JSON.parse(e.data).title }));
      source.onopen = () => resolve();
    }), token);
    assert.equal((await notify(s, 'es-1', 'one')).status, 202);
    await page.waitForFunction(() => window.got.length === 1);
    // Drop the stream: the server closes every SSE connection of the node
    // when it restarts; here the page closes it and opens a new one with
    // the last id, as EventSource does on its own reconnect.
    const last = await page.evaluate(() => { window.source.close(); return window.got[0].id; });
    await notify(s, 'es-1', 'two');
    await notify(s, 'es-1', 'three');
    await page.evaluate(([tok, id]) => {
      const source = new EventSource('v1/sse?token=' + encodeURIComponent(tok) + '&lastEventId=' + id);
      source.addEventListener('notification', (e) => window.got.push({ id: e.lastEventId, title: JSON.parse(e.data).title }));
    }, [token, last]);
    await page.waitForFunction(() => window.got.length === 3);
    const got = await page.evaluate(() => window.got);
    assert.deepEqual(got.map((g) => g.title), ['one', 'two', 'three']);
    assert.deepEqual(got.map((g) => g.id), ['1', '2', '3']);
    assert.deepEqual(problems, [], 'console');
  } finally {
    await stopServer(s);
  }
});
