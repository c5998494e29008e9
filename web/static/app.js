// Tidings demo page: one WebSocket, an inbox loaded over HTTP, an unread badge.
// Every URL is relative to the page's directory, so a path prefix just works.

const base = new URL('.', location.href);
const $ = (id) => document.getElementById(id);
const el = {
  form: $('connect-form'), userRow: $('user-row'), tokenRow: $('token-row'),
  user: $('user'), token: $('token'), connect: $('connect'), status: $('status'),
  badge: $('badge'), message: $('message'), list: $('list'), empty: $('empty'),
  markAll: $('mark-all'), sendTest: $('send-test'),
};

const S = {
  dev: false, token: '', ws: null, gen: 0, wanted: false,
  attempt: 0, retryTimer: 0, pingTimer: 0, ref: 0,
  items: new Map(), unread: 0, pending: null,
};

// ---- HTTP ----

async function api(path, { method = 'GET', body, auth = true } = {}) {
  const headers = {};
  if (auth) headers.Authorization = `Bearer ${S.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(new URL(path, base), {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) throw new Error(json?.msg || `${res.status} ${res.statusText}`.trim());
  return json;
}

async function getToken() {
  const pasted = el.token.value.trim();
  if (!S.dev || (!el.tokenRow.hidden && pasted)) return pasted;
  const user = el.user.value.trim() || '1001';
  const res = await api(`v1/dev/token?user=${encodeURIComponent(user)}`, { auth: false });
  if (!res?.token) throw new Error('no token in the answer');
  return res.token;
}

// ---- UI state ----

function say(text, error = false) {
  el.message.textContent = text;
  el.message.classList.toggle('error', error);
}

function setStatus(state, text = state) {
  el.status.dataset.state = state;
  el.status.textContent = text;
  const open = state === 'open';
  el.markAll.disabled = !open;
  el.sendTest.disabled = !open;
}

function setUnread(n) {
  S.unread = Math.max(0, Number(n) || 0);
  el.badge.textContent = String(S.unread);
  el.badge.dataset.count = String(S.unread);
  el.badge.classList.toggle('zero', S.unread === 0);
  document.title = S.unread ? `(${S.unread}) Tidings demo` : 'Tidings demo';
}

// ---- connection ----

function wsURL(token) {
  const u = new URL('v1/ws', base);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.search = `token=${encodeURIComponent(token)}`;
  return u.href;
}

function send(frame) {
  if (S.ws?.readyState !== WebSocket.OPEN) return false;
  S.ws.send(JSON.stringify(frame));
  return true;
}

function drop(ws) {
  if (!ws) return;
  ws.onmessage = ws.onerror = ws.onclose = null;
  // Closing a socket that is still connecting makes browsers complain; wait for it.
  if (ws.readyState === WebSocket.CONNECTING) ws.onopen = () => ws.close(1000);
  else { ws.onopen = null; if (ws.readyState === WebSocket.OPEN) ws.close(1000); }
}

function stop() {
  S.wanted = false;
  S.gen++;
  clearTimeout(S.retryTimer);
  clearInterval(S.pingTimer);
  drop(S.ws);
  S.ws = null;
  setStatus('closed');
}

function start() {
  stop();
  S.items = new Map();
  setUnread(0);
  render();
  S.wanted = true;
  S.attempt = 0;
  open();
}

function retry() {
  if (!S.wanted) return;
  const cap = Math.min(30000, 1000 * 2 ** S.attempt++);
  const wait = Math.round(cap * (0.5 + Math.random() / 2));
  setStatus('reconnecting', `reconnecting in ${Math.max(1, Math.round(wait / 1000))} s`);
  clearTimeout(S.retryTimer);
  S.retryTimer = setTimeout(open, wait);
}

async function open() {
  const gen = ++S.gen;
  setStatus('connecting');
  let token;
  try { token = await getToken(); } catch (e) {
    if (gen === S.gen) { say(`Could not get a token: ${e.message}`, true); retry(); }
    return;
  }
  if (gen !== S.gen) return;
  S.token = token;
  const ws = (S.ws = new WebSocket(wsURL(token)));
  ws.onopen = () => {
    S.attempt = 0;
    setStatus('open');
    say('');
    clearInterval(S.pingTimer);
    S.pingTimer = setInterval(() => send({ op: 'ping' }), 25000);
    loadInbox(gen);
  };
  ws.onmessage = (ev) => { if (typeof ev.data === 'string') onFrame(ev.data); };
  ws.onclose = (ev) => {
    if (gen !== S.gen) return;
    clearInterval(S.pingTimer);
    S.ws = null;
    setStatus('closed');
    if (ev.reason) say(`Connection closed: ${ev.reason} (${ev.code})`, ev.code !== 1012);
    retry();
  };
}

// ---- inbox ----

const seqOf = (n) => Number(n.seq) || Date.parse(n.created_at) || 0;

async function loadInbox(gen) {
  const pending = new Set();
  S.pending = pending;
  try {
    const res = await api('v1/me/notifications?limit=50');
    if (gen !== S.gen) return;
    const items = Array.isArray(res?.items) ? res.items : [];
    const fresh = new Map(items.map((n) => [String(n.id), n]));
    let extra = 0; // live arrivals the answer did not include yet
    for (const id of pending) {
      const n = S.items.get(id);
      if (n && !fresh.has(id)) { fresh.set(id, n); if (!n.read_at) extra++; }
    }
    S.items = fresh;
    setUnread((Number(res?.unread) || 0) + extra);
    render();
  } catch (e) {
    if (gen === S.gen) say(`Could not load the inbox: ${e.message}`, true);
  } finally {
    if (S.pending === pending) S.pending = null;
  }
}

function onFrame(text) {
  let m;
  try { m = JSON.parse(text); } catch { return; } // raw publishes may be any text
  if (!m || typeof m !== 'object') return;
  if (m.event === 'notification' && m.data?.id != null) addLive(m.data);
  else if (m.event === 'read' && m.data) applyRead(m.data, m.unread);
  else if (m.code) say(`Server: ${m.msg || 'error'} (code ${m.code})`, true);
}

function addLive(n) {
  const id = String(n.id);
  const old = S.items.get(id);
  S.items.set(id, n);
  S.pending?.add(id);
  if (!old && !n.read_at) setUnread(S.unread + 1);
  else if (old && !old.read_at !== !n.read_at) setUnread(S.unread + (n.read_at ? -1 : 1));
  render();
}

function applyRead(d, outer) {
  const now = new Date().toISOString();
  const ids = d.all ? [...S.items.keys()] : (Array.isArray(d.ids) ? d.ids.map(String) : []);
  for (const id of ids) {
    const n = S.items.get(id);
    if (n && !n.read_at) S.items.set(id, { ...n, read_at: now });
  }
  const unread = d.unread ?? outer;
  if (typeof unread === 'number') setUnread(unread);
  else setUnread([...S.items.values()].filter((n) => !n.read_at).length);
  render();
}

// ---- rendering ----

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const UNITS = [['year', 31536000], ['month', 2592000], ['week', 604800],
  ['day', 86400], ['hour', 3600], ['minute', 60]];

function ago(iso) {
  const t = Date.parse(iso);
  if (!t) return '';
  const s = Math.min(0, Math.round((t - Date.now()) / 1000));
  for (const [unit, size] of UNITS) if (-s >= size) return rtf.format(Math.round(s / size), unit);
  return -s < 10 ? 'just now' : rtf.format(s, 'second');
}

function h(tag, className, text) {
  const node = Object.assign(document.createElement(tag), { className });
  if (text != null) node.textContent = text;
  return node;
}

function safeLink(url) {
  if (typeof url !== 'string' || !url) return null;
  try { const u = new URL(url, base); return /^https?:$/.test(u.protocol) ? u.href : null; } catch { return null; }
}

function renderItem(n) {
  const unread = !n.read_at;
  const li = h('li', unread ? 'item unread' : 'item');
  li.dataset.id = String(n.id);
  const content = h(unread ? 'button' : 'div', 'content');
  if (unread) { content.type = 'button'; content.title = 'Mark as read'; }
  content.append(h('strong', 'title', n.title || '(no title)'));
  if (n.body) content.append(h('span', 'body', n.body));
  const meta = h('span', 'meta');
  if (n.type) meta.append(h('span', 'type', n.type));
  const time = h('time', 'when', ago(n.created_at));
  if (n.created_at) Object.assign(time, { dateTime: n.created_at, title: new Date(n.created_at).toLocaleString() });
  meta.append(time);
  content.append(meta);
  li.append(content);
  const href = safeLink(n.url);
  if (href) li.append(Object.assign(h('a', 'open', 'Open'), { href, target: '_blank', rel: 'noopener noreferrer' }));
  return li;
}

function render() {
  const items = [...S.items.values()].sort((a, b) => seqOf(b) - seqOf(a));
  el.list.replaceChildren(...items.map(renderItem));
  el.empty.hidden = items.length > 0;
}

// ---- events ----

el.form.addEventListener('submit', (e) => {
  e.preventDefault();
  if (!S.dev && !el.token.value.trim()) { say('Paste a token first.', true); el.token.focus(); return; }
  say('');
  start();
});

el.list.addEventListener('click', (e) => {
  const li = e.target.closest('li.item');
  if (!li || !li.classList.contains('unread') || e.target.closest('a')) return;
  const n = S.items.get(li.dataset.id);
  if (n) send({ op: 'read', ids: [n.id], ref: ++S.ref });
});

el.markAll.addEventListener('click', () => send({ op: 'read', all: true, ref: ++S.ref }));

el.sendTest.addEventListener('click', async () => {
  el.sendTest.disabled = true;
  try {
    await api('v1/dev/notify', {
      method: 'POST',
      body: { title: 'Test notification', body: `Sent at ${new Date().toLocaleTimeString()}` },
    });
    say('');
  } catch (e) {
    say(`Could not send: ${e.message}`, true);
  } finally {
    el.sendTest.disabled = S.ws?.readyState !== WebSocket.OPEN;
  }
});

window.addEventListener('online', () => {
  if (S.wanted && !S.ws) { clearTimeout(S.retryTimer); open(); }
});

setInterval(() => { if (S.items.size) render(); }, 30000);

async function init() {
  render();
  try { S.dev = (await api('v1/dev/config', { auth: false }))?.dev === true; } catch { S.dev = false; }
  const hashToken = new URLSearchParams(location.hash.slice(1)).get('token') || '';
  el.userRow.hidden = !S.dev;
  el.tokenRow.hidden = S.dev && !hashToken;
  el.sendTest.hidden = !S.dev;
  el.connect.disabled = false;
  if (hashToken) { el.token.value = hashToken; start(); }
}

init();
