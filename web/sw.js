// Service worker: the shell and the last answers viewed, for offline use.
// Online, everything goes to the network first (so a new server's assets
// and fresh data always win); offline, the cached copy is served, and data
// is marked with the time it was saved so the page can say it is stale.
//
// Saved answers hold decrypted tenant data, so they are bound to the token
// that fetched them (one cache per token, named by a hash of it): another
// token never reads them. Signing in or out drops them all, and so does an
// erasure the ledger reports (its `aiaudit-erasure-epoch` header moves).

const SHELL = 'aiaudit-shell-v1';
const DATA_PREFIX = 'aiaudit-data';
const EPOCH_KEY = '/__aiaudit/erasure-epoch';
const SHELL_FILES = [
  '/', '/app.js', '/app.css', '/manifest.webmanifest', '/icon.svg', '/icon-192.png',
  '/js/api.js', '/js/ui.js', '/js/verify.js', '/js/signin.js', '/js/overview.js',
  '/js/chart.js', '/js/events.js', '/js/event.js', '/js/sections.js', '/js/incidents.js', '/js/violations.js', '/js/admin.js',
  '/vendor/uplot/uPlot.iife.min.js', '/vendor/uplot/uPlot.min.css',
];
// Data worth keeping for offline reading; exports, metrics, incident
// reviews and packs are not (the list and each incident are).
const DATA_PATHS = [/^\/v1\/info$/, /^\/v1\/stats$/, /^\/v1\/events/, /^\/checkpoint$/, /^\/v1\/violations/, /^\/v1\/reports/, /^\/readyz$/,
  /^\/v1\/incidents(\/[^/]+)?$/];

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(SHELL).then((c) => c.addAll(SHELL_FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (e) => {
  e.waitUntil((async () => {
    for (const k of await caches.keys()) if (k.startsWith('aiaudit-shell') && k !== SHELL) await caches.delete(k);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (SHELL_FILES.includes(url.pathname)) e.respondWith(shell(e.request, url));
  else if (DATA_PATHS.some((p) => p.test(url.pathname))) e.respondWith(data(e.request));
});

async function shell(req, url) {
  try {
    const res = await fetch(req);
    if (res.ok) (await caches.open(SHELL)).put(url.pathname, res.clone());
    return res;
  } catch (err) {
    const hit = await caches.match(url.pathname, { cacheName: SHELL });
    if (hit) return hit;
    throw err;
  }
}

self.addEventListener('message', (e) => {
  if (e.data && e.data.type === 'drop-data') e.waitUntil(dropData());
});

/// Every saved answer, of every token.
async function dropData() {
  for (const k of await caches.keys()) if (k.startsWith(DATA_PREFIX)) await caches.delete(k);
}

/// The cache of the token a request carries (none: public answers only).
async function cacheName(req) {
  const auth = req.headers.get('authorization') || '';
  if (!auth) return `${DATA_PREFIX}-public`;
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(auth));
  const hex = [...new Uint8Array(digest)].slice(0, 16).map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${DATA_PREFIX}-${hex}`;
}

/// Drops every saved answer when the ledger reports an erasure since the last answer.
async function followErasures(res) {
  const epoch = res.headers.get('aiaudit-erasure-epoch');
  if (epoch === null) return;
  const meta = await caches.open(`${DATA_PREFIX}-meta`);
  const seen = await meta.match(EPOCH_KEY);
  const last = seen ? await seen.text() : null;
  if (last !== epoch) {
    if (last !== null) await dropData();
    await (await caches.open(`${DATA_PREFIX}-meta`)).put(EPOCH_KEY, new Response(epoch));
  }
}

/// Where an answer is saved: its URL, except that a chart's window moves
/// with the clock, so the latest counts of each shape are kept whatever
/// their from and to.
function cacheKey(req) {
  const url = new URL(req.url);
  if (url.pathname === '/v1/stats') {
    url.searchParams.delete('from');
    url.searchParams.delete('to');
  }
  return url.href;
}

async function data(req) {
  const name = await cacheName(req);
  const key = cacheKey(req);
  try {
    const res = await fetch(req);
    await followErasures(res);
    // A 404 is kept too: "not available on this ledger" holds offline as well.
    if (res.status === 200 || res.status === 404) {
      const body = await res.clone().arrayBuffer();
      const headers = new Headers(res.headers);
      headers.set('x-aiaudit-cached-at', String(Date.now()));
      await (await caches.open(name)).put(key, new Response(body, { status: res.status, headers }));
    }
    return res;
  } catch {
    const hit = await caches.match(key, { cacheName: name });
    if (hit) return hit;
    return new Response(JSON.stringify({ title: 'offline', status: 503, detail: 'the ledger cannot be reached and this view was not saved' }),
      { status: 503, headers: { 'content-type': 'application/problem+json', 'x-aiaudit-offline': '1' } });
  }
}
