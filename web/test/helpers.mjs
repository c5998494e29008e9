// What the browser tests share: a real tidings binary on a loopback port,
// a headless Chromium, and pages that record their console problems.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';

export const BIN = process.env.TEST_TIDINGS_BIN || join(process.cwd(), '../../bin/tidings');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const API_KEY = 'browser-test-key';
export const SECRET = 'browser-test-secret-0123456789abcdef';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

// startServer runs `tidings serve` with extraEnv. A restart passes the
// port and data directory of the server it replaces; prefix is the
// server's TIDINGS_PATH_PREFIX, if any. base includes the prefix.
export async function startServer(extraEnv = {}, { port, dir } = {}) {
  port ??= await freePort();
  dir ??= mkdtempSync(join(tmpdir(), 'tidings-browser-'));
  const proc = spawn(BIN, ['serve'], {
    env: { ...process.env, TIDINGS_LISTEN: `127.0.0.1:${port}`, TIDINGS_DATA_DIR: dir,
      TIDINGS_API_KEYS: API_KEY, TIDINGS_JWT_SECRET: SECRET, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const origin = `http://127.0.0.1:${port}`;
  const base = origin + (extraEnv.TIDINGS_PATH_PREFIX || '');
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(base + '/healthz')).ok) return { origin, base, port, proc, dir, out: () => out }; } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error('server did not start:\n' + out);
}

// stopServer ends the server with SIGTERM (its drain) and, unless keep,
// removes its data directory.
export async function stopServer(s, { keep = false } = {}) {
  if (!s) return;
  const exited = new Promise((r) => s.proc.once('exit', r));
  s.proc.kill('SIGTERM');
  await exited;
  if (!keep) rmSync(s.dir, { recursive: true, force: true });
}

// userToken mints a token for user with the CLI, as an app's backend would.
export function userToken(s, user) {
  return execFileSync(BIN, ['token', '--user', user], {
    env: { ...process.env, TIDINGS_JWT_SECRET: SECRET, TIDINGS_DATA_DIR: s.dir },
  }).toString().trim();
}

// notify publishes one notification to user over the publisher API.
export function notify(s, user, title) {
  return fetch(s.base + '/v1/notifications', {
    method: 'POST', headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify({ users: [user], title }),
  });
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

// newPage opens a page that records every console error or warning and
// uncaught error in problems; the caller goes to its URL.
export async function newPage(browser) {
  const page = await browser.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  return { page, problems };
}
