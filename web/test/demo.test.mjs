// Real-browser tests of the demo page: headless Chromium drives the page
// served by a real tidings binary on a loopback port.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';

const BIN = process.env.TEST_TIDINGS_BIN || join(process.cwd(), '../../bin/tidings');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const API_KEY = 'browser-test-key';
const SECRET = 'browser-test-secret-0123456789abcdef';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

async function startServer(extraEnv) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tidings-browser-'));
  const proc = spawn(BIN, ['serve'], {
    env: { ...process.env, TIDINGS_LISTEN: `127.0.0.1:${port}`, TIDINGS_DATA_DIR: dir,
      TIDINGS_API_KEYS: API_KEY, TIDINGS_JWT_SECRET: SECRET, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(base + '/healthz')).ok) return { base, proc, dir, out: () => out }; } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error('server did not start:\n' + out);
}

async function stopServer(s) {
  if (!s) return;
  const exited = new Promise((r) => s.proc.once('exit', r));
  s.proc.kill('SIGTERM');
  await exited;
  rmSync(s.dir, { recursive: true, force: true });
}

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});
after(async () => { await browser?.close(); });

// openPage records every console error or warning and uncaught error.
async function openPage(url) {
  const page = await browser.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  await page.goto(url);
  return { page, problems };
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
    const token = execFileSync(BIN, ['token', '--user', 'tok-1'], {
      env: { ...process.env, TIDINGS_JWT_SECRET: SECRET, TIDINGS_DATA_DIR: s.dir },
    }).toString().trim();
    const { page, problems } = await openPage(`${s.base}/#token=${token}`);
    await page.waitForSelector('#status[data-state="open"]');
    const res = await fetch(s.base + '/v1/notifications', {
      method: 'POST', headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
      body: JSON.stringify({ users: ['tok-1'], title: 'Invoice ready' }),
    });
    assert.equal(res.status, 202);
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
    const token = execFileSync(BIN, ['token', '--user', 'es-1'], {
      env: { ...process.env, TIDINGS_JWT_SECRET: SECRET, TIDINGS_DATA_DIR: s.dir },
    }).toString().trim();
    const { page, problems } = await openPage(`${s.base}/`);
    const notify = (title) => fetch(s.base + '/v1/notifications', {
      method: 'POST', headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
      body: JSON.stringify({ users: ['es-1'], title }),
    });
    await page.evaluate((tok) => new Promise((resolve) => {
      window.got = [];
      const source = new EventSource('v1/sse?token=' + encodeURIComponent(tok));
      window.source = source;
      source.addEventListener('notification', (e) => window.got.push({ id: e.lastEventId, title: JSON.parse(e.data).title }));
      source.onopen = () => resolve();
    }), token);
    assert.equal((await notify('one')).status, 202);
    await page.waitForFunction(() => window.got.length === 1);
    // Drop the stream: the server closes every SSE connection of the node
    // when it restarts; here the page closes it and opens a new one with
    // the last id, as EventSource does on its own reconnect.
    const last = await page.evaluate(() => { window.source.close(); return window.got[0].id; });
    await notify('two');
    await notify('three');
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
