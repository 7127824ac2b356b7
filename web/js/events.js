// Forensic search over GET /v1/events, with endless scroll: the next page
// is fetched when the end of the list comes into view (or on the button,
// for keyboards). Filters fold away on phones; fields with a fixed set of
// values are selects (a typo cannot silently find nothing); the total is
// the server's; searches can be saved on this device; the rows loaded can
// be downloaded as CSV or NDJSON.
import { get } from './api.js';
import { h, viewMount, errorBox, when, filtersFold } from './ui.js';

export const FILTERS = [
  ['tenant', 'Tenant'], ['actor', 'Actor'], ['action', 'Action'], ['model', 'Model'],
  ['provider', 'Provider'], ['outcome', 'Outcome'], ['risk', 'Risk level'], ['source', 'Source'],
  ['trace_id', 'Trace id'], ['conversation_id', 'Conversation id'], ['subject', 'Subject tag'],
];

/// Fields whose values the event schema fixes (docs/events.md).
export const CHOICES = {
  outcome: ['success', 'failure', 'denied'],
  risk: ['minimal', 'low', 'limited', 'medium', 'high', 'critical', 'unacceptable'],
};
/// Actions suggested while typing (any action is valid).
const ACTIONS = ['model.invoke', 'tool.call', 'agent.decision', 'human.review', 'human.override', 'data.access',
  'data.erasure', 'policy.violation', 'policy.violation.acknowledged', 'policy.violation.resolved'];

/// The filter inputs, filled from `params`; shared with exports.
export function filterFields(params, idPrefix = 'f') {
  const inputs = FILTERS.map(([name, label]) => {
    const id = `${idPrefix}-${name}`;
    const value = params.get(name) || '';
    let control;
    if (CHOICES[name]) {
      control = h('select', { id, name },
        h('option', { value: '' }, 'any'),
        CHOICES[name].map((v) => h('option', { value: v, selected: v === value }, v)),
        // A value from an old link that is not a choice stays visible, not dropped.
        value && !CHOICES[name].includes(value) ? h('option', { value, selected: true }, value) : null);
    } else {
      control = h('input', { id, name, value, autocomplete: 'off', list: name === 'action' ? `${idPrefix}-actions` : null });
    }
    return h('div', { class: 'field' }, h('label', { for: id }, label), control);
  });
  inputs.push(h('datalist', { id: `${idPrefix}-actions` }, ACTIONS.map((a) => h('option', { value: a }))));
  for (const [name, label] of [['from', 'From (RFC 3339)'], ['to', 'To (RFC 3339)']]) {
    inputs.push(h('div', { class: 'field' }, h('label', { for: `${idPrefix}-${name}` }, label),
      h('input', { id: `${idPrefix}-${name}`, name, value: params.get(name) || '', placeholder: '2026-11-27T00:00:00Z', autocomplete: 'off' })));
  }
  return inputs;
}

export function formParams(form) {
  const q = new URLSearchParams();
  for (const el of form.querySelectorAll('input[name], select[name]')) {
    if (el.value.trim()) q.set(el.name, el.value.trim());
  }
  return q;
}

function row(ev) {
  const e = ev.event || {};
  const t = ev.time || e.time || '';
  return h('li', { class: 'event-row' },
    h('a', { href: `#/event/${ev.index}` },
      h('span', { class: 'idx' }, `#${ev.index}`),
      h('time', { class: 'time', datetime: t || null, title: t || null }, when(t)),
      h('span', { class: 'act' }, ev.action || e.action || ''),
      h('span', { class: 'who' }, [ev.tenant, ev.actor].filter(Boolean).join(' / ')),
      h('span', { class: 'what' }, [ev.model, ev.outcome, ev.risk].filter(Boolean).join(' · '))));
}

// ---- downloads of the rows loaded ------------------------------------------

export const COLUMNS = ['index', 'time', 'tenant', 'actor', 'action', 'outcome', 'source', 'provider', 'model', 'risk',
  'subject', 'trace_id', 'conversation_id', 'id'];

/// One CSV cell (RFC 4180). A value a spreadsheet would run as a formula
/// is prefixed with a quote: an event's text must not become code there.
export function csvCell(v) {
  let s = v == null ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function toCsv(rows) {
  return [COLUMNS.join(','), ...rows.map((r) => COLUMNS.map((c) => csvCell(r[c])).join(','))].join('\r\n') + '\r\n';
}

/// The rows as NDJSON: each the index row with its full event when it was readable.
export function toNdjson(rows) {
  return rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '');
}

// ---- saved searches ---------------------------------------------------------

const SAVED = 'aiaudit.saved-searches';
export function savedSearches() {
  try { return JSON.parse(localStorage.getItem(SAVED)) || []; } catch { return []; }
}
function saveSearch(name, query) {
  const all = savedSearches().filter((s) => s.name !== name);
  all.push({ name, query });
  all.sort((a, b) => a.name.localeCompare(b.name));
  localStorage.setItem(SAVED, JSON.stringify(all));
}
function forgetSearch(name) {
  localStorage.setItem(SAVED, JSON.stringify(savedSearches().filter((s) => s.name !== name)));
}

function savedCard(params, rerender) {
  const current = new URLSearchParams(params);
  const list = savedSearches();
  const pick = h('select', { id: 'saved', 'aria-label': 'Saved searches' },
    h('option', { value: '' }, list.length ? 'Saved searches…' : 'No saved searches'),
    list.map((s) => h('option', { value: s.name }, s.name)));
  pick.addEventListener('change', () => {
    const s = savedSearches().find((x) => x.name === pick.value);
    if (s) location.hash = `#/events?${s.query}`;
  });
  const name = h('input', { id: 'save-name', 'aria-label': 'Name for this search', placeholder: 'Name for this search', autocomplete: 'off' });
  const save = h('button', { type: 'button', id: 'save-search', class: 'secondary' }, 'Save this search');
  save.addEventListener('click', () => {
    if (!name.value.trim()) { name.focus(); return; }
    saveSearch(name.value.trim(), current.toString());
    rerender();
  });
  const forget = h('button', { type: 'button', id: 'forget-search', class: 'secondary', hidden: !list.length }, 'Forget the chosen one');
  forget.addEventListener('click', () => { if (pick.value) { forgetSearch(pick.value); rerender(); } });
  return h('div', { class: 'saved-searches' }, pick, forget, h('div', { class: 'save-row' }, name, save));
}

export async function events({ params, rerender }) {
  const mount = viewMount();
  const order = h('select', { id: 'f-order', name: 'order' },
    h('option', { value: 'desc' }, 'newest first'), h('option', { value: 'asc' }, 'oldest first'));
  order.value = params.get('order') || 'desc';
  const set = [...params.keys()].filter((k) => k !== 'order').length;
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Search events' },
    h('div', { class: 'filter-grid' }, ...filterFields(params),
      h('div', { class: 'field' }, h('label', { for: 'f-order' }, 'Order'), order)),
    h('button', { type: 'submit' }, 'Search'), ' ',
    h('a', { href: '#/events', class: 'button secondary', id: 'clear' }, 'Clear'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = `#/events?${formParams(form)}`;
  });
  const filters = filtersFold('filters', set, form, savedCard(params, rerender));
  const list = h('ol', { class: 'events', id: 'results', 'aria-label': 'Matching events' });
  const status = h('p', { role: 'status', 'aria-live': 'polite', class: 'muted', id: 'events-status' });
  const more = h('button', { type: 'button', class: 'secondary', id: 'more', hidden: true }, 'Load more');
  const loaded = [];
  const download = (kind) => () => {
    const text = kind === 'csv' ? toCsv(loaded) : toNdjson(loaded);
    const url = URL.createObjectURL(new Blob([text], { type: kind === 'csv' ? 'text/csv' : 'application/x-ndjson' }));
    const a = h('a', { href: url, download: `aiaudit-events.${kind}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  };
  const downloads = h('p', { class: 'downloads', hidden: true },
    h('button', { type: 'button', class: 'secondary', id: 'download-csv', onclick: download('csv') }, 'Download CSV'), ' ',
    h('button', { type: 'button', class: 'secondary', id: 'download-ndjson', onclick: download('ndjson') }, 'Download NDJSON'),
    h('span', { class: 'hint' }, ' the rows loaded so far; for a verifiable bundle of every match use Exports.'));
  mount(h('h1', {}, 'Events'), filters, status, downloads, list, more);

  const query = new URLSearchParams(params);
  query.set('limit', '50');
  let cursor = null, busy = false, done = false, total = null;
  const page = async () => {
    if (busy || done) return;
    busy = true;
    try {
      const q = new URLSearchParams(query);
      if (cursor) q.set('cursor', cursor);
      else q.set('count', 'true');
      const body = await get(`/v1/events?${q}`);
      if (body.total != null) total = body.total;
      for (const ev of body.events) { list.append(row(ev)); loaded.push(ev); }
      cursor = body.next_cursor;
      done = !cursor;
      const n = loaded.length;
      status.textContent = (total != null && !done ? `${n.toLocaleString()} of ${total.toLocaleString()} events shown`
        : `${n.toLocaleString()} event${n === 1 ? '' : 's'}`) +
        (body.index_lag_events ? ` (the index is ${body.index_lag_events} events behind the log)` : '');
      more.hidden = done;
      downloads.hidden = n === 0;
    } catch (e) {
      status.replaceChildren(errorBox(e));
      done = true;
    } finally { busy = false; }
  };
  more.addEventListener('click', page);
  await page();
  const observer = new IntersectionObserver((entries) => { if (entries.some((x) => x.isIntersecting)) page(); }, { rootMargin: '400px' });
  observer.observe(more);
  return () => observer.disconnect();
}
