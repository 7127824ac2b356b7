// One event: the fields decoded from the logged entry bytes themselves,
// the emitter signature status, and the inclusion proof checked here.
import { get, request } from './api.js';
import { verifyEvent, verifyBlob } from './verify.js';
import { pinnedKey } from './signin.js';
import { h, viewMount, card, badge, errorBox, flatten, fields, when } from './ui.js';

function verificationCard(result) {
  const list = h('ol', { class: 'steps' }, result.steps.map((s) =>
    h('li', {}, badge(s.ok, s.name), ' ', h('span', { class: 'detail' }, s.detail))));
  const verdict = h('p', { id: 'proof-verdict', class: `verdict ${result.ok ? 'ok' : 'bad'}`, role: 'status' },
    result.ok ? '✓ Verified in this browser: this entry is in the log signed by the pinned key.'
      : '✗ Verification FAILED: do not rely on this event as shown.');
  return card('Proof (checked in this browser)', verdict, list);
}

/// The search filter each flattened field drills down to.
export const DRILL = {
  tenant: 'tenant', 'actor.id': 'actor', action: 'action', 'source.name': 'source', trace_id: 'trace_id',
  subject: 'subject', 'ai.gen_ai.conversation.id': 'conversation_id', 'ai.gen_ai.request.model': 'model',
  'ai.gen_ai.provider.name': 'provider', 'outcome.status': 'outcome', risk_level: 'risk',
};

/// From a field of an event to the events that share it, in its tenant.
export function drillTo(tenant) {
  return (key, value) => {
    const filter = DRILL[key];
    if (!filter || value === '' || value == null) return null;
    const q = new URLSearchParams();
    if (filter !== 'tenant' && tenant) q.set('tenant', tenant);
    q.set(filter, String(value));
    return `#/events?${q}`;
  };
}

function decodedCard(ev, decoded) {
  const tenant = decoded?.event?.tenant ?? ev.event?.tenant ?? ev.tenant;
  if (!decoded) return card('Fields', fields(flatten(ev.event), drillTo(tenant)));
  const note = decoded.whole
    ? 'Decoded from the logged entry bytes (covered by the proof above).'
    : decoded.blobs?.length
      ? 'Decoded from the logged entry bytes (covered by the proof above); its large members are stored beside the log and load below.'
      : 'Only the clear fields are in the logged entry; the rest is sealed and no opening was given.';
  const fromEntry = flatten(decoded.event);
  const fromServer = flatten(ev.event);
  const differs = Object.keys(fromEntry).filter((k) => k in fromServer && JSON.stringify(fromServer[k]) !== JSON.stringify(fromEntry[k]));
  return card('Fields', h('p', { class: 'hint' }, note),
    differs.length ? h('p', {}, badge(false, `the server's decoded event differs from the entry in: ${differs.join(', ')}`)) : null,
    h('p', { class: 'hint' }, 'Linked values lead to the events that share them (same tenant).'),
    fields(fromEntry, drillTo(tenant)),
    decoded.redacted?.length ? h('p', { class: 'hint' }, `Stored as HMACs: ${decoded.redacted.join(', ')}`) : null);
}

/// Shown at most, per member: a phone should not lay out 16 MiB of text.
const SHOWN = 64 * 1024;

/// Large members stored out of line load when asked (each can be MiBs on a
/// paid mobile link), and are checked here against the logged entry.
function blobsCard(index, decoded) {
  const blobs = decoded?.blobs || [];
  if (!blobs.length) return null;
  const rows = blobs.map((b, n) => {
    const out = h('div', { class: 'blob-content', id: `blob-${n}` });
    const load = h('button', { type: 'button', id: `load-blob-${n}` }, `Load ${b.pointer} (${(b.size / 1024).toFixed(0)} KB)`);
    load.addEventListener('click', async () => {
      load.disabled = true;
      out.replaceChildren(h('p', { class: 'muted', role: 'status' }, 'Loading…'));
      try {
        const res = await request(`/v1/events/${index}/blobs/${n}`, { raw: true });
        const bytes = new Uint8Array(await res.arrayBuffer());
        const ok = await verifyBlob(bytes, b);
        const value = JSON.parse(new TextDecoder().decode(bytes));
        const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
        // Content that does not match the logged entry is not shown at all.
        out.replaceChildren(
          h('p', { class: 'blob-verdict' }, badge(ok, ok ? 'matches the commitment in the logged entry' : 'does NOT match the logged entry: not shown')),
          ok ? h('pre', {}, text.length > SHOWN ? text.slice(0, SHOWN) : text) : null,
          ok && text.length > SHOWN ? h('p', { class: 'hint' }, `First ${SHOWN / 1024} KB of ${(text.length / 1024).toFixed(0)} KB shown.`) : null);
      } catch (e) {
        out.replaceChildren(errorBox(e));
        load.disabled = false;
      }
    });
    return h('div', {}, load, out);
  });
  return card('Large content (stored beside the log)',
    h('p', { class: 'hint' }, 'Loaded on request, then checked in this browser against the commitment in the logged entry.'),
    ...rows);
}

function signatureCard(ev) {
  const s = ev.emitter_signature;
  if (!s) return card('Emitter signature', h('p', { class: 'muted' }, 'Not signed by an emitter (sent with a token only).'));
  const ok = s.status === 'valid' ? true : s.status === 'invalid' ? false : null;
  return card('Emitter signature', h('p', { id: 'emitter-sig' }, badge(ok, s.status), h('span', { class: 'muted' }, ' (as checked by the server)')),
    h('details', {}, h('summary', {}, 'Signature details'), h('pre', {}, JSON.stringify(s.signature, null, 2))));
}

/// Who accessed this event: the ledger's own trail.access records that list
/// it (reads of its content, search pages, exports), loaded after the rest.
function accessCard(index) {
  const body = h('div', { id: 'access' }, h('p', { class: 'muted', role: 'status' }, 'Loading…'));
  (async () => {
    let got;
    try { got = await get(`/v1/events/${index}/access`); } catch (e) {
      body.replaceChildren(e.status === 404 ? h('p', { class: 'muted' }, 'Not available on this ledger.') : errorBox(e));
      return;
    }
    const rows = got.accesses || [];
    body.replaceChildren(
      h('p', { class: 'hint' }, `Logged by the ledger (trail.access), newest first; accesses of the last second may not be logged yet.${got.complete ? '' : ` Only the newest ${got.scanned} access records of the tenant were read.`}`),
      rows.length ? h('div', { class: 'table-wrap' }, h('table', { id: 'access-table' },
        h('thead', {}, h('tr', {}, ['Reader', 'Role', 'Access', 'Requests', 'Last', 'Record'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows.map((a) => h('tr', {},
          h('td', {}, a.reader), h('td', {}, a.role), h('td', {}, a.kind), h('td', {}, String(a.requests)),
          h('td', {}, h('time', { datetime: a.last, title: a.last }, when(a.last))),
          h('td', {}, h('a', { href: `#/event/${a.record}` }, `#${a.record}`)))))))
        : h('p', { class: 'muted' }, 'No access logged yet.'));
  })();
  return card('Who accessed this event', body);
}

export async function eventDetail({ arg }) {
  const mount = viewMount();
  const index = Number(arg);
  mount(h('h1', {}, `Event #${index}`), h('p', { class: 'muted', role: 'status' }, 'Loading and verifying…'));
  let ev;
  // Large members are left out and loaded on request (blobsCard).
  try { ev = await get(`/v1/events/${index}?proof=true&blobs=omit`); } catch (e) {
    mount(h('h1', {}, `Event #${index}`), errorBox(e));
    return;
  }
  let pinned = null, keyErr = null;
  try { pinned = await pinnedKey(); } catch (e) { keyErr = e; }
  const result = await verifyEvent(ev, pinned);
  mount(h('h1', {}, `Event #${index}`),
    h('p', {}, h('a', { href: '#/events' }, '← back to events'), ` · content: ${ev.content} · entry v${ev.entry_version}`),
    keyErr ? errorBox(keyErr) : null,
    verificationCard(result),
    decodedCard(ev, result.decoded),
    blobsCard(index, result.decoded),
    signatureCard(ev),
    accessCard(index));
}
