// Overview: the log's state, checked where it can be (the checkpoint
// signature against the pinned key), and rates charted from samples of
// /metrics the page takes itself while it is open.
import { request, optional, ApiError } from './api.js';
import { verifyCheckpoint, checkWitnesses, b64decode, equal } from './verify.js';
import { pinnedKey, pinnedPolicy } from './signin.js';
import { lineChart } from './chart.js';
import { h, mount, card, badge, age, errorBox, notAvailable, fields } from './ui.js';
import { isOpen, dueSoon } from './incidents.js';

const SAMPLES = 'aiaudit.samples';
const MAX_SAMPLES = 720; // an hour at one sample every 5 s
const EVERY_MS = 5000;

/// Sums every series of a Prometheus/OpenMetrics counter.
export function counter(text, name) {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (m && m[1] === name) sum += Number(m[3]);
  }
  return sum;
}

function loadSamples() {
  try { return JSON.parse(localStorage.getItem(SAMPLES)) || []; } catch { return []; }
}

async function sample() {
  const samples = loadSamples();
  try {
    const { body } = await request('/metrics');
    samples.push({
      t: Date.now() / 1000,
      ok: counter(body, 'aiaudit_events_processed_total'),
      failed: counter(body, 'aiaudit_events_failed_total'),
      size: counter(body, 'aiaudit_tree_size'),
    });
  } catch { return samples; }
  const kept = samples.slice(-MAX_SAMPLES);
  localStorage.setItem(SAMPLES, JSON.stringify(kept));
  return kept;
}

/// Per-second rates between consecutive samples (a counter reset, after a restart, counts as 0).
export function rates(samples) {
  const t = [], ok = [], failed = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    const dt = b.t - a.t;
    if (dt <= 0) continue;
    t.push(b.t);
    ok.push(Math.max(0, b.ok - a.ok) / dt);
    failed.push(Math.max(0, b.failed - a.failed) / dt);
  }
  return { t, ok, failed };
}

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

async function checkpointCard(info) {
  const body = h('div');
  try {
    const { body: note } = await request('/checkpoint');
    const pinned = await pinnedKey();
    const cp = await verifyCheckpoint(note, pinned);
    const agrees = info && cp.size === info.size && equal(cp.root, b64decode(info.root));
    body.append(
      h('p', { id: 'cp-signature' }, 'Signature: ', badge(pinned ? cp.ok : null, pinned ? cp.reason : 'no key pinned: pin one under "Key & sign-out"')),
      h('p', {}, `Signed tree size ${cp.size ?? '–'}, checkpoint age ${age(info?.checkpoint_age_seconds)}`),
    );
    if (info && !agrees) body.append(h('p', {}, badge(false, 'the info endpoint disagrees with the signed checkpoint')));
    body.append(await witnessLine(note));
  } catch (e) {
    body.append(errorBox(e));
  }
  return card('Checkpoint', body);
}

async function alertsCard() {
  const list = h('ul', { class: 'alerts' });
  try {
    await request('/readyz');
    list.append(h('li', {}, badge(true, 'ready: storage writable, checkpoints and index keep up')));
  } catch (e) {
    const checks = e instanceof ApiError ? e.problem?.checks : null;
    if (!checks) list.append(h('li', {}, errorBox(e)));
    else for (const [k, v] of Object.entries(checks)) if (v === false) list.append(h('li', {}, badge(false, k.replaceAll('_', ' '))));
  }
  let violations;
  try { violations = await optional('/v1/violations?limit=5'); } catch (e) { violations = e; }
  const v = violations instanceof Error ? errorBox(violations)
    : violations === null ? notAvailable('Violations')
      : h('p', {}, `${(violations.violations || []).length ? '' : 'No '}open violations`, ' ', h('a', { href: '#/violations' }, 'see all'));
  return card('Alerts and violations now', list, v, await incidentsLine());
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
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
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

export async function overview() {
  const charts = h('div', { class: 'charts' });
  const summary = h('p', { class: 'muted', id: 'rate-summary', 'aria-live': 'polite' });
  let info = null, infoErr = null;
  try { info = (await request('/v1/info')).body; } catch (e) { infoErr = e; }
  const head = card('Log',
    infoErr ? errorBox(infoErr) : h('dl', { class: 'stats' },
      h('dt', {}, 'Tree size'), h('dd', { id: 'tree-size' }, String(info.size)),
      h('dt', {}, 'Sequenced'), h('dd', {}, String(info.sequenced_size)),
      h('dt', {}, 'Checkpoint age'), h('dd', {}, age(info.checkpoint_age_seconds)),
      h('dt', {}, 'Index lag'), h('dd', {}, `${info.index?.lag_events ?? '–'} events`),
      h('dt', {}, 'Encryption at rest'), h('dd', {}, String(info.encryption ?? '–')),
      h('dt', {}, 'Origin'), h('dd', { class: 'mono' }, info.origin)));
  const [cp, alerts] = await Promise.all([checkpointCard(info), alertsCard()]);
  mount(h('h1', {}, 'Overview'), h('div', { class: 'grid' }, head, cp, alerts, backupCard(info)),
    card('Ingest and errors (events per second, sampled by this page)', charts, summary));

  let stopped = false;
  const draw = async () => {
    const r = rates(await sample());
    if (stopped) return;
    const last = (a) => (a.length ? a[a.length - 1].toFixed(2) : '–');
    summary.textContent = `${r.t.length} intervals; latest ingest ${last(r.ok)}/s, errors ${last(r.failed)}/s.`;
    if (r.t.length >= 2) {
      await lineChart(charts, 'Events/s', r.t, [
        { label: 'ingested', color: '#1f6feb', values: r.ok },
        { label: 'failed', color: '#c62828', values: r.failed },
      ]);
    } else if (!charts.firstChild) {
      charts.append(h('p', { class: 'muted' }, 'Collecting samples (one every 5 s)…'));
    }
  };
  await draw();
  const timer = setInterval(draw, EVERY_MS);
  return () => { stopped = true; clearInterval(timer); };
}
