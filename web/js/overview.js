// Overview: the log's state, checked where it can be (the checkpoint
// signature against the pinned key), and activity over any time range
// charted from the ledger's own counts (GET /v1/stats), not from what this
// tab happened to sample. Offline, every card that shows a saved answer is
// greyed and says how old it is.
import { request, optional, ApiError } from './api.js';
import { verifyCheckpoint, checkWitnesses, b64decode, equal } from './verify.js';
import { pinnedKey, pinnedPolicy } from './signin.js';
import { lineChart } from './chart.js';
import { h, viewMount, card, badge, age, errorBox, notAvailable, fields, zone, when, staleIf, savedAgo } from './ui.js';
import { isOpen, dueSoon } from './incidents.js';

/// The ranges offered, in seconds, and the bucket each is counted in (at
/// most 120 points per chart).
export const RANGES = {
  '1h': { seconds: 3600, step: 60, label: 'Last hour' },
  '6h': { seconds: 6 * 3600, step: 300, label: 'Last 6 hours' },
  '24h': { seconds: 86400, step: 900, label: 'Last 24 hours' },
  '7d': { seconds: 7 * 86400, step: 3 * 3600, label: 'Last 7 days' },
  '30d': { seconds: 30 * 86400, step: 6 * 3600, label: 'Last 30 days' },
};
const REFRESH_MS = 30000;

/// The window of a range ending now: `to` rounded up to the next bucket,
/// so that buckets line up with the clock and consecutive refreshes agree.
export function windowOf(range, nowMs = Date.now()) {
  const r = RANGES[range];
  const step = r.step * 1000;
  const to = Math.ceil(nowMs / step) * step;
  return { from: new Date(to - r.seconds * 1000), to: new Date(to), step: r.step };
}

/// The chart's columns from a stats answer: times (s), events, failures
/// (failed or denied), and violations of every severity.
export function columns(stats) {
  const t = [], events = [], failures = [], violations = [];
  for (const b of stats.buckets || []) {
    t.push(Date.parse(b.start) / 1000);
    events.push(b.events);
    failures.push(b.failures + b.denied);
    violations.push(Object.values(b.violations || {}).reduce((a, n) => a + n, 0));
  }
  return { t, events, failures, violations };
}

const plural = (n, one, many) => `${n.toLocaleString()} ${n === 1 ? one : many}`;
const stepName = (s) => (s % 86400 === 0 ? `${s / 86400} d` : s % 3600 === 0 ? `${s / 3600} h` : s % 60 === 0 ? `${s / 60} min` : `${s} s`);

// Which witnesses cosigned the checkpoint, checked against the pinned policy.
async function witnessLine(note) {
  const lines = note.split('\n').filter((l) => l.startsWith('\u2014 ')).length - 1;
  let policy = null;
  try { policy = await pinnedPolicy(); } catch (e) { return h('p', { id: 'cp-witnesses' }, errorBox(e)); }
  if (!policy) {
    return h('p', { id: 'cp-witnesses' }, `Witnesses: ${Math.max(lines, 0)} cosignature line(s), not checked: pin a witness policy under "Key & sign-out"`);
  }
  const r = await checkWitnesses(note, policy);
  const who = r.cosigned.length ? r.cosigned.join(', ') : 'none';
  const reason = r.quorumMet ? `quorum met; cosigned by ${who}` : `quorum NOT met; cosigned by ${who}; missing ${r.missing.join(', ')}`;
  return h('p', { id: 'cp-witnesses' }, 'Witnesses: ', badge(r.quorumMet, reason));
}

/// Whether /v1/info agrees with the signed checkpoint. Only answers fetched
/// now are compared: saved ones may be of different ages, and a log that
/// grew between the two answers is no disagreement.
export function agreement(info, infoAt, cp, cpAt) {
  if (!info) return null;
  if (infoAt || cpAt) return { ok: null, text: 'info and checkpoint not compared: saved answers' };
  if (cp.size !== info.size) return { ok: null, text: `info and checkpoint not compared: the log grew between the two answers (${cp.size} → ${info.size})` };
  return equal(cp.root, b64decode(info.root)) ? null
    : { ok: false, text: 'the info endpoint disagrees with the signed checkpoint' };
}

async function checkpointCard(info, infoAt) {
  const body = h('div');
  let cachedAt = null;
  try {
    const got = await request('/checkpoint');
    cachedAt = got.cachedAt;
    const note = got.body;
    const pinned = await pinnedKey();
    const cp = await verifyCheckpoint(note, pinned);
    body.append(
      h('p', { id: 'cp-signature' }, 'Signature: ', badge(pinned ? cp.ok : null, pinned ? cp.reason : 'no key pinned: pin one under "Key & sign-out"')),
      h('p', {}, `Signed tree size ${cp.size ?? '–'}`, cachedAt ? '' : `, checkpoint age ${age(info?.checkpoint_age_seconds)}`),
    );
    const a = agreement(info, infoAt, cp, cachedAt);
    if (a) body.append(h('p', { id: 'cp-agreement' }, badge(a.ok, a.text)));
    body.append(await witnessLine(note));
  } catch (e) {
    body.append(errorBox(e));
  }
  return staleIf(card('Checkpoint', body), cachedAt);
}

async function alertsCard() {
  const list = h('ul', { class: 'alerts' });
  let cachedAt = null;
  try {
    cachedAt = (await request('/readyz')).cachedAt;
    list.append(h('li', { id: 'readiness' }, cachedAt
      ? badge(null, `ready when saved ${savedAgo(cachedAt)} ago; the ledger cannot be reached now`)
      : badge(true, 'ready: storage writable, checkpoints and index keep up')));
  } catch (e) {
    const checks = e instanceof ApiError ? e.problem?.checks : null;
    if (!checks) list.append(h('li', { id: 'readiness' }, errorBox(e)));
    else for (const [k, v] of Object.entries(checks)) if (v === false) list.append(h('li', {}, badge(false, k.replaceAll('_', ' '))));
  }
  let v;
  try {
    const got = await request('/v1/violations?status=open&limit=1');
    cachedAt = cachedAt || got.cachedAt;
    const n = got.body.total ?? 0;
    v = h('p', {}, h('span', { id: 'open-violations', class: 'big' }, n.toLocaleString()), ` open ${n === 1 ? 'violation' : 'violations'} `,
      h('a', { href: '#/violations?status=open' }, 'triage'));
  } catch (e) {
    v = e.status === 404 ? notAvailable('Violations') : errorBox(e);
  }
  return staleIf(card('Alerts and violations now', list, v, await incidentsLine()), cachedAt);
}

/// Open incidents and the breach clocks overdue or due within 24 h, of the
/// newest 1000 incidents (clocks run on after an incident is resolved).
async function incidentsLine() {
  let body;
  try { body = await optional('/v1/incidents?limit=1000'); } catch (e) { return errorBox(e); }
  if (body === null) return notAvailable('Incidents');
  const all = body.incidents || [];
  const open = all.filter(isOpen).length;
  const clocks = all.flatMap((i) => (i.breach?.clocks || []).filter((c) => dueSoon(c)));
  const overdue = clocks.filter((c) => c.overdue).length;
  return h('p', { id: 'incidents-now' },
    plural(open, 'open incident', 'open incidents'), '; ',
    overdue ? badge(false, `${plural(clocks.length, 'breach clock', 'breach clocks')} overdue or due within 24 h (${overdue} overdue)`)
      : clocks.length ? h('strong', {}, `${plural(clocks.length, 'breach clock', 'breach clocks')} due within 24 h`)
        : 'no breach clock overdue or due within 24 h',
    body.total > all.length ? ` (of the newest ${all.length} of ${body.total})` : '',
    ' ', h('a', { href: '#/incidents' }, 'see incidents'));
}

function backupCard(info) {
  const b = info?.backup;
  return card('Backup', b ? fields(b) : notAvailable('Backup status'));
}

/// The activity card: a range and a time zone to pick, the chart, and the
/// same numbers in words (charts are pictures to a screen reader).
function activityCard(range, rerender) {
  const chart = h('div', { class: 'charts', id: 'activity-chart' });
  const summary = h('p', { id: 'activity-summary', 'aria-live': 'polite' }, 'Loading…');
  const saved = h('p', { class: 'saved-at', hidden: true });
  const pick = h('select', { id: 'range', name: 'range' },
    Object.entries(RANGES).map(([k, r]) => h('option', { value: k, selected: k === range }, r.label)));
  pick.addEventListener('change', () => { location.hash = `#/overview?range=${pick.value}`; });
  const tz = h('select', { id: 'tz', name: 'tz' },
    h('option', { value: 'local', selected: !zone.utc }, 'Local time'),
    h('option', { value: 'utc', selected: zone.utc }, 'UTC'));
  tz.addEventListener('change', () => { zone.utc = tz.value === 'utc'; rerender(); });
  const el = card('Activity',
    h('div', { class: 'toolbar' }, h('label', {}, 'Range', pick), h('label', {}, 'Times in', tz)),
    chart, summary, saved);
  el.id = 'activity';

  let latest = 0;
  const draw = async () => {
    const call = ++latest;
    const w = windowOf(range);
    let got;
    try {
      got = await request(`/v1/stats?from=${w.from.toISOString()}&to=${w.to.toISOString()}&step=${w.step}`);
    } catch (e) {
      if (call === latest) summary.replaceChildren(e.status === 404 ? notAvailable('Activity history') : errorBox(e));
      return;
    }
    if (call !== latest) return; // a newer refresh is on its way
    const s = got.body;
    const c = columns(s);
    const t = s.totals;
    const violations = Object.values(t.violations || {}).reduce((a, n) => a + n, 0);
    const severe = (t.violations?.critical || 0) + (t.violations?.high || 0);
    summary.replaceChildren(
      `${RANGES[range].label} (${when(s.from)} to ${when(s.to)}), per ${stepName(s.step_seconds)}: `,
      h('strong', { id: 'activity-events' }, plural(t.events, 'event', 'events')), ', ',
      plural(t.failures, 'failure', 'failures'), ', ', plural(t.denied, 'denial', 'denials'), ', ',
      plural(violations, 'violation', 'violations'), severe ? ` (${severe} high or critical)` : '', '.',
      s.index_lag_events ? ` The index is ${plural(s.index_lag_events, 'event', 'events')} behind the log.` : '');
    el.classList.toggle('stale', !!got.cachedAt);
    saved.hidden = !got.cachedAt;
    if (got.cachedAt) saved.textContent = `Saved ${savedAgo(got.cachedAt)} ago: counts as they were then.`;
    await lineChart(chart, `Per ${stepName(s.step_seconds)}`, c.t, [
      { label: 'events', color: '#1f6feb', values: c.events },
      { label: 'failed or denied', color: '#c62828', values: c.failures, dash: [6, 4] },
      { label: 'violations', color: '#6a1b9a', values: c.violations, dash: [2, 3] },
    ], { utc: zone.utc });
  };
  return { el, draw };
}

export async function overview({ params, rerender }) {
  const mount = viewMount();
  const range = RANGES[params.get('range')] ? params.get('range') : '1h';
  let info = null, infoAt = null, infoErr = null;
  try { ({ body: info, cachedAt: infoAt } = await request('/v1/info')); } catch (e) { infoErr = e; }
  const head = staleIf(card('Log',
    infoErr ? errorBox(infoErr) : h('dl', { class: 'stats' },
      h('dt', {}, 'Tree size'), h('dd', { id: 'tree-size' }, String(info.size)),
      h('dt', {}, 'Sequenced'), h('dd', {}, String(info.sequenced_size)),
      h('dt', {}, 'Checkpoint age'), h('dd', {}, infoAt ? `${age(info.checkpoint_age_seconds)} when saved` : age(info.checkpoint_age_seconds)),
      h('dt', {}, 'Index lag'), h('dd', {}, `${info.index?.lag_events ?? '–'} events`),
      h('dt', {}, 'Encryption at rest'), h('dd', {}, String(info.encryption ?? '–')),
      h('dt', {}, 'Origin'), h('dd', { class: 'mono' }, info.origin))), infoAt);
  const [cp, alerts] = await Promise.all([checkpointCard(info, infoAt), alertsCard()]);
  const activity = activityCard(range, rerender);
  mount(h('h1', {}, 'Overview'), h('div', { class: 'grid' }, head, cp, alerts, backupCard(info)), activity.el);
  await activity.draw();
  // One poller, for this view only: the router calls the cleanup on leaving.
  const timer = setInterval(activity.draw, REFRESH_MS);
  return () => clearInterval(timer);
}
