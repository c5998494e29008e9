// Seed 000's own client: its Vue `useWebsocket` composable, taken from the
// seed's text unchanged at test time, runs in a real browser against
// Tidings under the seed's `/websocket` path prefix (its nginx passes the
// prefix through). Its timers (a text `ping` every 60 s, a 60 s wait for
// any answer, a reconnect 10 s after a close) run on the page's mocked
// clock; the WebSocket and the server are real.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import net from 'node:net';
import { startServer, stopServer, userToken, notify, launchBrowser, newPage } from './helpers.mjs';

const seeds = fileURLToPath(new URL('../../../shared/seeds/', import.meta.url));

// composable returns the seed's `useWebsocket` module, verbatim.
function composable() {
  const name = readdirSync(seeds).find((f) => f.startsWith('000_'));
  assert.ok(name, `seed 000 not found in ${seeds}`);
  const text = readFileSync(seeds + name, 'utf8');
  const start = text.indexOf("```js\nimport { ref } from 'vue'");
  assert.ok(start >= 0, 'the composable is not in seed 000');
  const code = text.slice(start + '```js\n'.length, text.indexOf('```', start + 5));
  assert.match(code, /export default function useWebsocket\(url, options = defaultOptions\)/);
  return code;
}

const vue = readFileSync(fileURLToPath(new URL('./node_modules/vue/dist/vue.esm-browser.prod.js', import.meta.url)));

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

// until polls fn in the page until it returns true: waitForFunction
// polls on animation frames, which the mocked clock holds back.
async function until(page, fn, arg) {
  for (let i = 0; i < 300; i++) {
    if (await page.evaluate(fn, arg)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  const state = await page.evaluate(() => ({ status: window.wsStatus?.value, events: window.events, msgs: window.msgs }));
  throw new Error(`not true after 15 s: ${fn}; page: ${JSON.stringify(state)}`);
}

const PREFIX = '/websocket';

// frontServer stands where the seed's nginx does: it serves the app's
// files and passes every WebSocket upgrade under /websocket/ to Tidings on
// port with its path and Host unchanged (the seed's `location /websocket/
// { proxy_pass …; }`, no URI: the prefix stays).
async function frontServer(port) {
  const files = {
    '/app/index.html': ['text/html', `<!doctype html><script type="importmap">{"imports":{"vue":"./vue.js"}}</script>
<script type="module">import useWebsocket from './useWebsocket.js'; window.useWebsocket = useWebsocket;</script>`],
    '/app/useWebsocket.js': ['text/javascript', composable()],
    '/app/vue.js': ['text/javascript', vue],
  };
  const head = (req) => `${req.method} ${req.url} HTTP/1.1\r\n` +
    req.rawHeaders.map((v, i) => (i % 2 ? `${v}\r\n` : `${v}: `)).join('') + '\r\n';
  const srv = http.createServer((req, res) => {
    const f = files[req.url];
    if (!f) { res.writeHead(req.url === '/favicon.ico' ? 204 : 404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': f[0] });
    res.end(f[1]);
  });
  srv.on('upgrade', (req, sock, rest) => {
    if (!req.url.startsWith(PREFIX + '/')) { sock.destroy(); return; }
    const up = net.connect(port, '127.0.0.1', () => {
      up.write(head(req));
      up.write(rest);
      up.pipe(sock);
      sock.pipe(up);
    });
    const end = () => { up.destroy(); sock.destroy(); };
    up.on('error', end);
    sock.on('error', end);
    up.on('close', end);
    sock.on('close', end);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const host = `127.0.0.1:${srv.address().port}`;
  return { host, origin: `http://${host}`, close: () => srv.close() };
}

const USER = 'seed000-1';

test('seed 000: the Vue useWebsocket composable, unchanged, behind the /websocket prefix', async () => {
  let s = await startServer({ TIDINGS_PATH_PREFIX: PREFIX });
  let front;
  try {
    front = await frontServer(s.port);
    const { page, problems } = await newPage(browser);
    await page.clock.install();
    await page.goto(`${front.origin}/app/index.html`);
    await until(page, () => typeof window.useWebsocket === 'function');

    // The seed's usage, with the token in the URL.
    const url = `ws://${front.host}${PREFIX}/v1/ws?token=${encodeURIComponent(userToken(s, USER))}`;
    await page.evaluate((url) => {
      window.msgs = [];
      window.events = [];
      const { status, open } = window.useWebsocket(url, {
        autoReconnect: true,
        onMessage: (ws, e) => window.msgs.push(e.data),
        onConnected: () => window.events.push('open'),
        onDisconnected: (ws, ev) => window.events.push(`close ${ev.code}`),
      });
      window.wsStatus = status;
      open();
    }, url);
    await until(page, () => window.wsStatus.value === 'OPEN');

    const titles = () => page.evaluate(() => window.msgs.filter((m) => m.startsWith('{'))
      .map((m) => JSON.parse(m)).filter((m) => m.event === 'notification').map((m) => m.data.title));
    const waitTitles = (n) => until(page, (n) => window.msgs.filter((m) => m.includes('"event":"notification"')).length === n, n);
    assert.equal((await notify(s, USER, 'first')).status, 202);
    await waitTitles(1);

    // Three heartbeats: each text `ping` is answered (the composable then
    // drops its 60 s timeout), so it never closes the connection.
    for (let i = 1; i <= 3; i++) {
      await page.clock.runFor(60_000);
      await until(page, (i) => window.msgs.filter((m) => m === 'pong').length === i, i);
    }
    assert.deepEqual(await page.evaluate(() => window.events), ['open']);

    // The server restarts (its drain closes with 1012); the composable
    // comes back 10 s later by itself, with the same URL and token.
    await stopServer(s, { keep: true });
    await until(page, () => window.wsStatus.value === 'CLOSED');
    s = await startServer({ TIDINGS_PATH_PREFIX: PREFIX }, { port: s.port, dir: s.dir });
    await page.clock.runFor(10_000);
    await until(page, () => window.wsStatus.value === 'OPEN');
    assert.equal((await notify(s, USER, 'second')).status, 202);
    await waitTitles(2);

    assert.deepEqual(await titles(), ['first', 'second']);
    assert.deepEqual(await page.evaluate(() => window.events), ['open', 'close 1012', 'open']);
    assert.deepEqual(problems, [], 'console');
  } finally {
    front?.close();
    await stopServer(s);
  }
});
