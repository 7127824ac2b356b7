// Forensic search over GET /v1/events, with endless scroll: the next page
// is fetched when the end of the list comes into view (or on the button,
// for keyboards).
import { get } from './api.js';
import { h, mount, errorBox } from './ui.js';

export const FILTERS = [
  ['tenant', 'Tenant'], ['actor', 'Actor'], ['action', 'Action'], ['model', 'Model'],
  ['provider', 'Provider'], ['outcome', 'Outcome'], ['risk', 'Risk level'], ['source', 'Source'],
  ['trace_id', 'Trace id'], ['conversation_id', 'Conversation id'], ['subject', 'Subject tag'],
];

/// The filter inputs, filled from `params`; shared with exports.
export function filterFields(params, idPrefix = 'f') {
  const inputs = FILTERS.map(([name, label]) => h('div', { class: 'field' },
    h('label', { for: `${idPrefix}-${name}` }, label),
    h('input', { id: `${idPrefix}-${name}`, name, value: params.get(name) || '', autocomplete: 'off' })));
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
  return h('li', { class: 'event-row' },
    h('a', { href: `#/event/${ev.index}` },
      h('span', { class: 'idx' }, `#${ev.index}`),
      h('span', { class: 'time' }, ev.time || e.time || ''),
      h('span', { class: 'act' }, ev.action || e.action || ''),
      h('span', { class: 'who' }, [ev.tenant, ev.actor].filter(Boolean).join(' / ')),
      h('span', { class: 'what' }, [ev.model, ev.outcome, ev.risk].filter(Boolean).join(' · '))));
}

export async function events({ params }) {
  const order = h('select', { id: 'f-order', name: 'order' },
    h('option', { value: 'desc' }, 'newest first'), h('option', { value: 'asc' }, 'oldest first'));
  order.value = params.get('order') || 'desc';
  const form = h('form', { class: 'card filters', role: 'search', 'aria-label': 'Search events' },
    h('div', { class: 'filter-grid' }, ...filterFields(params),
      h('div', { class: 'field' }, h('label', { for: 'f-order' }, 'Order'), order)),
    h('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = `#/events?${formParams(form)}`;
  });
  const list = h('ol', { class: 'events', id: 'results', 'aria-label': 'Matching events' });
  const status = h('p', { role: 'status', 'aria-live': 'polite', class: 'muted' });
  const more = h('button', { type: 'button', class: 'secondary', id: 'more', hidden: true }, 'Load more');
  mount(h('h1', {}, 'Events'), form, status, list, more);

  const query = new URLSearchParams(params);
  query.set('limit', '50');
  let cursor = null, busy = false, done = false, count = 0;
  const page = async () => {
    if (busy || done) return;
    busy = true;
    try {
      const q = new URLSearchParams(query);
      if (cursor) q.set('cursor', cursor);
      const body = await get(`/v1/events?${q}`);
      for (const ev of body.events) list.append(row(ev));
      count += body.events.length;
      cursor = body.next_cursor;
      done = !cursor;
      status.textContent = `${count} event${count === 1 ? '' : 's'}${done ? '' : ' so far'}` +
        (body.index_lag_events ? ` (the index is ${body.index_lag_events} events behind the log)` : '');
      more.hidden = done;
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
