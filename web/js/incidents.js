// Incidents (docs/incidents.md): the list with its filters kept in the URL,
// and one incident with its deadlines, breach clocks, review notes and
// timeline. The review and the regulator packs are fetched with the token
// (a plain link could not carry it) and offered as files. Read-only: every
// change goes through the API or `aiaudit incident`.
import { optional, request } from './api.js';
import { h, viewMount, card, errorBox, notAvailable, filtersFold } from './ui.js';
import { formParams } from './events.js';

const STATUSES = ['open', 'acknowledged', 'mitigated', 'resolved', 'reviewed', 'reopened'];
const SEVERITIES = ['critical', 'high', 'medium', 'low'];
const SECTIONS = [['impact', 'Impact'], ['root_cause', 'Root cause'], ['actions', 'Actions'], ['comment', 'Comments']];
const PAGE = 50;

/// Not resolved yet (as `aiaudit_incidents_open` counts them).
export const isOpen = (i) => i.status !== 'resolved' && i.status !== 'reviewed';

/// A small coloured label; `kind` is bad, mid or na.
const tag = (kind, text, cls = '') => h('span', { class: `tag ${kind} ${cls}`.trim() }, text);
const sevKind = (s) => (s === 'critical' || s === 'high' ? 'bad' : s === 'medium' ? 'mid' : 'na');
export const severityTag = (s) => tag(sevKind(s), s, 'severity');

/// Seconds as "2 d 3 h", "5 h 12 min", "40 min", "30 s"; negative: "… ago".
export function left(seconds) {
  if (seconds == null) return '–';
  const s = Math.abs(seconds);
  const d = Math.floor(s / 86400), hr = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  const text = d ? `${d} d ${hr} h` : hr ? `${hr} h ${m} min` : m ? `${m} min` : `${s} s`;
  return seconds < 0 ? `${text} ago` : text;
}

/// The breach clocks not yet notified, nearest deadline first (those without one last).
export function pendingClocks(i) {
  const clocks = (i.breach?.clocks || []).filter((c) => !c.notified);
  return clocks.sort((a, b) => (a.deadline ? Date.parse(a.deadline) : Infinity) - (b.deadline ? Date.parse(b.deadline) : Infinity));
}

/// Overdue, or due within `within` seconds.
export const dueSoon = (c, within = 86400) => !c.notified && (c.overdue || (c.seconds_left != null && c.seconds_left <= within));

function breachMark(i) {
  if (!i.breach) return null;
  const next = pendingClocks(i)[0];
  if (!next) return tag('na', 'breach: every clock notified', 'breach');
  if (!next.deadline) return tag('mid', `breach: ${next.key} as soon as reasonably possible`, 'breach');
  return tag(next.overdue ? 'bad' : 'mid', `breach: ${next.key} by ${next.deadline}${next.overdue ? ' (overdue)' : ''}`, 'breach');
}

function row(i) {
  return h('li', { class: 'incident-row' },
    h('a', { href: `#/incidents/${encodeURIComponent(i.id)}` },
      h('span', { class: 'marks' }, severityTag(i.severity), ' ', tag('na', i.status, 'status')),
      h('span', { class: 'title' }, i.title),
      h('span', { class: 'who' }, `tenant ${i.tenant} · opened ${i.opened_at}`),
      h('span', { class: 'due' }, `respond by ${i.respond_by}`,
        i.response_overdue ? [' ', tag('bad', 'overdue', 'overdue')] : null,
        i.escalated ? [' ', tag('bad', 'escalated', 'escalated')] : null,
        i.breach ? [' ', breachMark(i)] : null)));
}

function select(id, name, label, values, value) {
  const el = h('select', { id, name }, h('option', { value: '' }, 'any'), values.map((v) => h('option', { value: v }, v)));
  el.value = values.includes(value) ? value : '';
  return h('div', { class: 'field' }, h('label', { for: id }, label), el);
}

async function list(params) {
  const mount = viewMount();
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter incidents' },
    h('div', { class: 'filter-grid' },
      select('i-status', 'status', 'Status', STATUSES, params.get('status')),
      select('i-severity', 'severity', 'Severity', SEVERITIES, params.get('severity')),
      h('div', { class: 'field' }, h('label', { for: 'i-tenant' }, 'Tenant'),
        h('input', { id: 'i-tenant', name: 'tenant', value: params.get('tenant') || '', autocomplete: 'off' }))),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = `#/incidents?${formParams(form)}`;
  });
  const items = h('ol', { class: 'incidents', id: 'incidents', 'aria-label': 'Incidents, newest first' });
  const status = h('p', { role: 'status', 'aria-live': 'polite', class: 'muted' }, 'Loading…');
  const more = h('button', { type: 'button', class: 'secondary', id: 'more-incidents', hidden: true }, 'Load more');
  const set = ['status', 'severity', 'tenant'].filter((k) => params.get(k)).length;
  mount(h('h1', {}, 'Incidents'), filtersFold('i-filters', set, form), status, items, more);

  const query = new URLSearchParams();
  for (const k of ['tenant', 'status', 'severity']) if (params.get(k)) query.set(k, params.get(k));
  query.set('limit', String(PAGE));
  let cursor = null, count = 0;
  const page = async () => {
    more.disabled = true;
    try {
      const q = new URLSearchParams(query);
      if (cursor) q.set('cursor', cursor);
      const body = await optional(`/v1/incidents?${q}`);
      if (body === null) { status.replaceChildren(notAvailable('Incidents')); return; }
      for (const i of body.incidents) items.append(row(i));
      count += body.incidents.length;
      cursor = body.next_cursor;
      status.textContent = `${count} of ${body.total} incident${body.total === 1 ? '' : 's'}, newest first`;
      more.hidden = !cursor;
    } catch (e) {
      status.replaceChildren(errorBox(e));
      more.hidden = true;
    } finally { more.disabled = false; }
  };
  more.addEventListener('click', page);
  await page();
}

const eventLink = (index) => (index == null ? null : h('a', { href: `#/event/${index}` }, `#${index}`));

/// A definition list; a value may be a node, null values show "–".
function dl(pairs) {
  return h('dl', { class: 'fields' }, pairs.filter(Boolean).flatMap(([k, v]) =>
    [h('dt', {}, k), h('dd', {}, v == null || v === '' ? '–' : v)]));
}

function summaryCard(i) {
  return card('Incident', dl([
    ['Id', h('span', { class: 'mono' }, i.id)],
    ['Tenant', i.tenant],
    ['Severity', severityTag(i.severity)],
    ['Status', i.status],
    ['Origin', i.origin],
    i.group_key ? ['Alertmanager group', h('span', { class: 'mono' }, i.group_key)] : null,
    ['Opened', [i.opened_at, ' (log ', eventLink(i.index), ')']],
    ['Description', i.description],
  ]));
}

function deadlinesCard(i) {
  const escalations = (i.escalations || []).map((e) => h('li', {}, `${e.at}: ${e.reason.replaceAll('_', ' ')} (log `, eventLink(e.index), ')'));
  return card('Deadlines', dl([
    ['Respond by', [i.respond_by, i.response_overdue ? [' ', tag('bad', 'overdue', 'overdue')] : null]],
    ['Escalate at', [i.escalate_at, i.escalated ? [' ', tag('bad', 'escalated', 'escalated')] : null]],
    ['Acknowledged', i.acknowledged_at],
    ['Mitigated', i.mitigated_at],
    ['Resolved', i.resolved_at],
    ['Reviewed', i.reviewed_at],
  ]), escalations.length ? [h('h3', {}, 'Escalations'), h('ul', { class: 'records' }, escalations)] : null);
}

function clockRow(c) {
  const n = c.notified;
  const notified = n
    ? [n.at, n.reference ? ` · ref ${n.reference}` : '', ' · ', n.on_time ? tag('na', 'on time') : tag('bad', 'late'), ' (log ', eventLink(n.index), ')']
    : 'not yet';
  // data-label: the column's name, shown beside each cell where the table is stacked (phones).
  return h('tr', { 'data-clock': c.key },
    h('th', { scope: 'row', class: 'mono' }, c.key),
    h('td', { 'data-label': 'Notify' }, c.notify),
    h('td', { 'data-label': 'Reference', class: 'reference' }, c.reference, c.wording ? h('div', { class: 'hint' }, c.wording) : null),
    h('td', { 'data-label': 'Deadline', class: 'deadline' }, c.deadline || 'as soon as reasonably possible'),
    h('td', { 'data-label': 'Notified' }, notified),
    h('td', { 'data-label': 'Overdue' }, c.overdue ? tag('bad', 'overdue', 'overdue') : 'no'),
    h('td', { 'data-label': 'Time left', class: 'left' }, c.notified || c.seconds_left == null ? '–' : left(c.seconds_left)));
}

function breachCard(i) {
  const b = i.breach;
  if (!b) return card('Breach', h('p', { class: 'muted' }, 'Not marked a personal-data breach.'));
  const head = ['Clock', 'Notify', 'Reference', 'Deadline', 'Notified', 'Overdue', 'Time left'];
  const details = Object.entries(b.details || {});
  return card('Breach clocks',
    dl([['Aware at', b.aware_at], ['Marked at', b.marked_at], ['High risk', b.high_risk ? 'yes' : 'no'],
      ['Jurisdictions', (b.jurisdictions || []).join(', ')]]),
    h('div', { class: 'table-wrap' }, h('table', { id: 'clocks' },
      h('caption', { class: 'hint' }, 'Deadlines run from the time of awareness; a clock stops when its notification is recorded.'),
      h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, (b.clocks || []).map(clockRow)))),
    details.length ? [h('h3', {}, 'Details'), dl(details.map(([k, v]) => [k, typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)]))] : null);
}

function sectionsCard(i) {
  const s = i.sections || {};
  return card('Review notes', SECTIONS.map(([key, label]) => {
    const notes = s[key] || [];
    return [h('h3', {}, label), notes.length
      ? h('ul', { class: 'records' }, notes.map((n) => h('li', {},
        h('p', { class: 'note' }, typeof n.text === 'string' ? n.text : JSON.stringify(n.text)),
        h('span', { class: 'hint' }, `${n.by}, ${n.time} (log `, eventLink(n.index), ')'))))
      : h('p', { class: 'muted' }, `None yet (aiaudit incident note ID --section ${key} --text …).`)];
  }));
}

const SHOWN = new Set(['action', 'time', 'by', 'event_id', 'index']);

function timelineCard(i) {
  const steps = (i.transitions || []).map((t) => {
    const rest = Object.entries(t).filter(([k]) => !SHOWN.has(k));
    const plain = rest.filter(([, v]) => v === null || typeof v !== 'object').map(([k, v]) => `${k}: ${v}`);
    const nested = rest.filter(([, v]) => v !== null && typeof v === 'object');
    return h('li', {},
      h('span', { class: 'time' }, t.time), ' ', h('strong', {}, t.action), ` by ${t.by} (log `, eventLink(t.index), ')',
      plain.length ? h('div', { class: 'hint' }, plain.join(' · ')) : null,
      nested.length ? h('details', {}, h('summary', {}, nested.map(([k]) => k).join(', ')),
        h('pre', {}, JSON.stringify(Object.fromEntries(nested), null, 2))) : null);
  });
  return card('Timeline', h('ol', { class: 'records timeline', id: 'timeline' }, steps));
}

/// A button that fetches `path` with the token and then offers the file.
function fileButton(id, label, path, filename) {
  const out = h('div', { id: `${id}-out`, role: 'status', 'aria-live': 'polite' });
  const button = h('button', { type: 'button', class: 'secondary', id }, label);
  button.addEventListener('click', async () => {
    button.disabled = true;
    out.replaceChildren('Writing it from the log…');
    try {
      const blob = await (await request(path, { raw: true })).blob();
      out.replaceChildren(h('a', { href: URL.createObjectURL(blob), download: filename, id: `${id}-link`, class: 'button' },
        `Download ${filename} (${blob.size.toLocaleString()} bytes)`));
    } catch (e) {
      out.replaceChildren(errorBox(e));
    } finally { button.disabled = false; }
  });
  return h('div', { class: 'file' }, button, out);
}

function documentsCard(i) {
  const id = encodeURIComponent(i.id);
  const short = i.id.slice(-12);
  return card('Review and regulator packs',
    h('p', { class: 'hint' }, 'Written from the log when asked. A pack is a draft: complete it, file it on the authority\'s form, then record it with aiaudit incident notified.'),
    fileButton('review-html', 'Post-incident review (HTML)', `/v1/incidents/${id}/review?format=html`, `incident-${short}-review.html`),
    fileButton('review-md', 'Post-incident review (Markdown)', `/v1/incidents/${id}/review?format=md`, `incident-${short}-review.md`),
    (i.breach?.jurisdictions || []).map((j) => fileButton(`pack-${j}`, `Regulator pack: ${j}`,
      `/v1/incidents/${id}/pack?jurisdiction=${encodeURIComponent(j)}`, `incident-${short}-pack-${j}.md`)));
}

async function detail(arg) {
  const mount = viewMount();
  let id = arg;
  try { id = decodeURIComponent(arg); } catch { /* shown as typed */ }
  mount(h('h1', {}, 'Incident'), h('p', { class: 'muted', role: 'status' }, 'Loading…'));
  let i;
  try { i = await optional(`/v1/incidents/${encodeURIComponent(id)}`); } catch (e) {
    mount(h('h1', {}, 'Incident'), errorBox(e));
    return;
  }
  if (i === null) { mount(h('h1', {}, 'Incident'), h('p', { class: 'error', role: 'alert' }, 'No such incident, or not one this token may see.')); return; }
  mount(h('h1', { id: 'incident-title' }, i.title),
    h('p', {}, h('a', { href: '#/incidents' }, '← back to incidents'), ' · ', severityTag(i.severity), ' ', tag('na', i.status, 'status'),
      i.response_overdue ? [' ', tag('bad', 'overdue', 'overdue')] : null, i.escalated ? [' ', tag('bad', 'escalated', 'escalated')] : null),
    h('div', { class: 'grid' }, summaryCard(i), deadlinesCard(i)),
    breachCard(i), documentsCard(i), sectionsCard(i), timelineCard(i));
}

export const incidents = ({ arg, params }) => (arg ? detail(arg) : list(params));
