// Violation triage: filters kept in the URL, counts per status and
// severity, a table paged 50 at a time, and acknowledge/resolve with a
// comment for one violation or many (each change is logged by the ledger).
import { get, post } from './api.js';
import { h, viewMount, errorBox, when, filtersFold } from './ui.js';

export const STATUSES = ['open', 'acknowledged', 'resolved'];
export const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'];
const PAGE = 50;

function select(id, name, label, values, chosen, any) {
  const s = h('select', { id, name },
    h('option', { value: '' }, any),
    values.map((v) => h('option', { value: v, selected: v === chosen }, v)));
  return h('div', { class: 'field' }, h('label', { for: id }, label), s);
}

function input(id, name, label, value) {
  return h('div', { class: 'field' }, h('label', { for: id }, label),
    h('input', { id, name, value: value || '', autocomplete: 'off' }));
}

/// What the rows of one status may become (the ledger refuses the rest).
export function nextStatuses(status) {
  return status === 'open' ? ['acknowledged', 'resolved'] : status === 'acknowledged' ? ['resolved'] : [];
}

function severityTag(s) {
  const kind = s === 'critical' || s === 'high' ? 'bad' : s === 'medium' ? 'mid' : 'na';
  return h('span', { class: `tag ${kind}` }, s || '–');
}

function row(v, selected) {
  const box = h('input', { type: 'checkbox', value: v.id, 'aria-label': `select violation ${v.id}`, disabled: !nextStatuses(v.status).length });
  box.checked = selected.has(v.id);
  box.addEventListener('change', () => { if (box.checked) selected.add(v.id); else selected.delete(v.id); });
  const event = v.event_index != null ? h('a', { href: `#/event/${v.event_index}` }, `#${v.event_index}`) : '–';
  return h('tr', { 'data-id': v.id, 'data-status': v.status },
    // The label around the box is the 44px target a finger hits.
    h('td', { 'data-label': 'Select' }, h('label', { class: 'pick' }, box)),
    h('td', { 'data-label': 'Severity' }, severityTag(v.severity)),
    h('td', { 'data-label': 'Rule' }, h('span', { title: v.description || '' }, v.rule || '–')),
    h('td', { 'data-label': 'Tenant' }, v.tenant),
    h('td', { 'data-label': 'Source' }, v.source || '–'),
    h('td', { 'data-label': 'Status', class: 'status' }, v.status),
    h('td', { 'data-label': 'Time' }, h('time', { datetime: v.time, title: v.time }, when(v.time))),
    h('td', { 'data-label': 'Event' }, event),
    h('td', { 'data-label': 'Logged as' }, h('a', { href: `#/event/${v.index}` }, `#${v.index}`)));
}

/// Chips of counts: each a link to the list filtered that way.
function facet(label, counts, name, params, order) {
  // Known values in their natural order (open first, critical first), then any other.
  const keys = [...order.filter((k) => k in (counts || {})), ...Object.keys(counts || {}).filter((k) => !order.includes(k))];
  const items = keys.map((k) => [k, counts[k]]).map(([k, n]) => {
    const q = new URLSearchParams(params);
    q.set(name, k);
    q.delete('cursor');
    const current = params.get(name) === k;
    return h('li', {}, h('a', { href: `#/violations?${q}`, 'aria-current': current ? 'true' : null, 'data-facet': `${name}:${k}` },
      `${k} `, h('strong', {}, n.toLocaleString())));
  });
  return h('div', { class: 'facet' }, h('span', { class: 'muted' }, `${label}: `), h('ul', { class: 'chips' }, items));
}

export async function violations({ params }) {
  const mount = viewMount();
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter violations' },
    h('div', { class: 'filter-grid' },
      select('v-status', 'status', 'Status', STATUSES, params.get('status'), 'any status'),
      select('v-severity', 'severity', 'Severity', SEVERITIES, params.get('severity'), 'any severity'),
      input('v-tenant', 'tenant', 'Tenant', params.get('tenant')),
      input('v-rule', 'rule', 'Rule', params.get('rule')),
      input('v-source', 'source', 'Source', params.get('source'))),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const el of form.querySelectorAll('[name]')) if (el.value.trim()) q.set(el.name, el.value.trim());
    location.hash = `#/violations?${q}`;
  });

  const status = h('p', { role: 'status', 'aria-live': 'polite', id: 'violations-status' }, 'Loading…');
  const facets = h('div', { id: 'facets' });
  const body = h('tbody');
  const table = h('div', { class: 'table-wrap' }, h('table', { id: 'violations' },
    h('caption', { class: 'muted' }, 'Newest first'),
    h('thead', {}, h('tr', {}, ['', 'Severity', 'Rule', 'Tenant', 'Source', 'Status', 'Time', 'Event', 'Logged as'].map((t) => h('th', { scope: 'col' }, t)))),
    body));
  const more = h('button', { type: 'button', class: 'secondary', id: 'more', hidden: true }, 'Load more');

  // Bulk actions on the selected rows.
  const selected = new Set();
  const note = h('textarea', { id: 'v-note', name: 'note', rows: 2, maxlength: 4096 });
  const outcome = h('div', { role: 'status', 'aria-live': 'polite', id: 'bulk-result' });
  const act = (next) => async () => {
    const ids = [...selected];
    if (!ids.length) { outcome.replaceChildren(errorBox(new Error('select at least one violation first'))); return; }
    if (next === 'resolved' && !note.value.trim()) { outcome.replaceChildren(errorBox(new Error('say how it was resolved: a comment is required to resolve'))); note.focus(); return; }
    outcome.replaceChildren(`Updating ${ids.length}…`);
    let done = 0;
    const failed = [];
    for (const id of ids) {
      try {
        await post(`/v1/violations/${encodeURIComponent(id)}`, { status: next, note: note.value.trim() || null });
        done += 1;
        selected.delete(id);
      } catch (e) { failed.push(`${id}: ${e.message}`); }
    }
    outcome.replaceChildren(h('p', {}, `${done} ${next}`, failed.length ? `, ${failed.length} failed` : '', '.'),
      failed.length ? h('ul', { class: 'error' }, failed.map((f) => h('li', {}, f))) : '');
    if (done) note.value = '';
    await reload();
  };
  const bulk = h('section', { class: 'card', 'aria-label': 'Change the selected violations' },
    h('h2', {}, 'Selected violations'),
    h('label', { for: 'v-note' }, 'Comment (logged with the change; required to resolve)'), note,
    h('div', { class: 'actions' },
      h('button', { type: 'button', id: 'acknowledge', onclick: act('acknowledged') }, 'Acknowledge'), ' ',
      h('button', { type: 'button', id: 'resolve', onclick: act('resolved') }, 'Resolve'), ' ',
      h('button', { type: 'button', class: 'secondary', id: 'select-page', onclick: () => {
        for (const box of body.querySelectorAll('input[type=checkbox]:not(:disabled)')) { box.checked = true; selected.add(box.value); }
      } }, 'Select all shown')),
    outcome);

  const set = ['status', 'severity', 'tenant', 'rule', 'source'].filter((k) => params.get(k)).length;
  mount(h('h1', {}, 'Violations'), filtersFold('v-filters', set, form), facets, status, bulk, table, more);

  let cursor = null, shown = 0, busy = false;
  const page = async (first) => {
    if (busy) return;
    busy = true;
    try {
      const q = new URLSearchParams(params);
      q.set('limit', String(PAGE));
      if (!first && cursor) q.set('cursor', cursor);
      const got = await get(`/v1/violations?${q}`);
      if (first) { body.replaceChildren(); shown = 0; }
      for (const v of got.violations || []) body.append(row(v, selected));
      shown += (got.violations || []).length;
      cursor = got.next_cursor;
      more.hidden = !cursor;
      status.textContent = `${shown.toLocaleString()} of ${(got.total ?? shown).toLocaleString()} violations shown`;
      if (got.counts) facets.replaceChildren(facet('Status', got.counts.status, 'status', params, STATUSES), facet('Severity', got.counts.severity, 'severity', params, SEVERITIES));
    } catch (e) {
      status.replaceChildren(e.status === 404 ? 'Violations: not available on this ledger.' : errorBox(e));
      more.hidden = true;
    } finally { busy = false; }
  };
  const reload = () => page(true);
  more.addEventListener('click', () => page(false));
  await page(true);
}

