// Small DOM helpers: elements are built, never parsed from strings, so
// nothing the server sends can turn into markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v == null) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// The route being drawn (set by the router). A view takes its mount at its
// start, before any await: once a newer route began, that view's late
// answers draw nothing over the newer page.
let routeNumber = 0;
/// Starts a route: its number, which later routes make stale.
export function nextRoute() { routeNumber += 1; return routeNumber; }
export function isCurrentRoute(n) { return n === routeNumber; }
export function viewMount() {
  const mine = routeNumber;
  return (...children) => (mine === routeNumber ? mount(...children) : document.getElementById('main'));
}

export function mount(...children) {
  const main = document.getElementById('main');
  main.replaceChildren(...children.filter((c) => c != null && c !== false));
  return main;
}

export function badge(ok, text) {
  return h('span', { class: `badge ${ok === true ? 'ok' : ok === false ? 'bad' : 'na'}` },
    ok === true ? '✓ ' : ok === false ? '✗ ' : '– ', text);
}

export function card(title, ...body) {
  return h('section', { class: 'card', 'aria-label': title }, h('h2', {}, title), ...body);
}

export function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, e.status ? `${e.status}: ${e.message}` : e.message);
}

export const notAvailable = (what) => h('p', { class: 'muted na-state' }, `${what}: not available on this ledger.`);

export function age(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return '–';
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(0)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/// A definition list of key/value pairs; nested values as JSON. `linkFor`
/// (key, value) may give an href for a value (a drill-down).
export function fields(obj, linkFor = () => null) {
  const dl = h('dl', { class: 'fields' });
  for (const [k, v] of Object.entries(obj || {})) {
    const shown = typeof v === 'object' && v !== null ? h('pre', {}, JSON.stringify(v, null, 2)) : String(v);
    const href = typeof v === 'object' ? null : linkFor(k, v);
    dl.append(h('dt', {}, k), h('dd', {}, href ? h('a', { href, class: 'drill', title: `Events with this ${k}` }, shown) : shown));
  }
  return dl;
}

/// Flattens an event into dotted paths for display.
export function flatten(obj, prefix = '', out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out);
    else out[key] = Array.isArray(v) ? JSON.stringify(v) : v;
  }
  return out;
}

// Times are shown in the browser's zone or in UTC, as the user chose
// (Overview, "Times in"); kept on this device.
const ZONE = 'aiaudit.tz';
export const zone = {
  get utc() { return localStorage.getItem(ZONE) === 'utc'; },
  set utc(v) { localStorage.setItem(ZONE, v ? 'utc' : 'local'); },
};

/// An RFC 3339 time for people: one precision (seconds), the chosen zone named.
export function when(iso) {
  const d = new Date(iso);
  if (iso == null || Number.isNaN(d.getTime())) return iso ?? '–';
  const opts = { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' };
  if (zone.utc) opts.timeZone = 'UTC';
  return `${d.toLocaleString(undefined, opts)}${zone.utc ? ' UTC' : ''}`;
}

/// How long ago a cached answer was saved, for "saved … ago".
export function savedAgo(date) {
  return age((Date.now() - date.getTime()) / 1000);
}

/// Marks a card that shows a saved answer (offline): greyed, and saying how old.
export function staleIf(el, cachedAt) {
  if (!cachedAt) return el;
  el.classList.add('stale');
  el.append(h('p', { class: 'saved-at' }, `Saved ${savedAgo(cachedAt)} ago: not live.`));
  return el;
}

/// Filters in a fold: open on wide screens, closed on a phone (where the
/// results come first); the summary says how many are set.
export function filtersFold(id, set, ...content) {
  const wide = window.matchMedia('(min-width: 600px)').matches;
  return h('details', { class: 'card', id, open: wide || null },
    h('summary', {}, set ? `Filters (${set} set)` : 'Filters'), ...content);
}
