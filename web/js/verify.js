// Verification in the browser (docs/dashboard.md): checkpoint signatures
// (Ed25519) and inclusion proofs (RFC 9162, SHA-256), with WebCrypto only.
// Nothing here trusts the server: the one input taken on faith is the
// verifier key the user pinned.

const enc = new TextEncoder();

export function b64decode(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function b64encode(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export async function sha256(...parts) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const buf = new Uint8Array(len);
  let at = 0;
  for (const p of parts) { buf.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

const leafHash = (entry) => sha256(Uint8Array.of(0), entry);
const nodeHash = (l, r) => sha256(Uint8Array.of(1), l, r);

/// `<name>+<8 hex key id>+<base64(0x01 || 32-byte key)>` (C2SP signed-note).
export async function parseVerifierKey(vkey) {
  // The key's base64 may itself hold '+': split at the first two only.
  const m = /^([^+\s]+)\+([^+]*)\+(\S+)$/.exec(vkey.trim());
  if (!m) throw new Error('a verifier key is <name>+<key id>+<key>');
  const [, name, idHex, keyB64] = m;
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw new Error('the key id is 8 hex digits');
  const raw = b64decode(keyB64);
  if (raw.length !== 33 || raw[0] !== 1) throw new Error('only Ed25519 keys (type 0x01, 32 bytes) are supported');
  const pub = raw.slice(1);
  // The key id must follow from name and key, so a pasted key cannot claim another id.
  const id = (await sha256(enc.encode(name), Uint8Array.of(0x0a), raw)).slice(0, 4);
  if (hex(id) !== idHex) throw new Error('the key id does not match the key');
  const key = await crypto.subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
  return { name, id, key };
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/// Splits a signed note into its body and signature lines.
export function parseNote(text) {
  const cut = text.indexOf('\n\n');
  if (cut < 0) throw new Error('not a signed note: no blank line');
  const body = text.slice(0, cut + 1);
  const sigs = text.slice(cut + 2).split('\n').filter((l) => l !== '').map((line) => {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Error(`malformed signature line: ${line}`);
    return { name: m[1], blob: b64decode(m[2]) };
  });
  const lines = body.split('\n');
  if (lines.length < 4) throw new Error('checkpoint body has fewer than 3 lines');
  const size = lines[1];
  if (!/^(0|[1-9][0-9]*)$/.test(size)) throw new Error('bad tree size in checkpoint');
  const root = b64decode(lines[2]);
  if (root.length !== 32) throw new Error('checkpoint root is not 32 bytes');
  return { body, origin: lines[0], size: Number(size), root, sigs };
}

/// Checks a checkpoint note against the pinned key. Returns the parsed
/// checkpoint with `ok` and a reason; never throws on a bad signature.
export async function verifyCheckpoint(text, pinned) {
  let note;
  try { note = parseNote(text); } catch (e) { return { ok: false, reason: e.message }; }
  if (!pinned) return { ...note, ok: false, reason: 'no verifier key pinned' };
  if (note.origin !== pinned.name) {
    return { ...note, ok: false, reason: `origin ${note.origin} is not the pinned key's ${pinned.name}` };
  }
  const sig = note.sigs.find((s) => s.name === pinned.name && s.blob.length === 68 && equal(s.blob.slice(0, 4), pinned.id));
  if (!sig) return { ...note, ok: false, reason: 'no signature by the pinned key' };
  const ok = await crypto.subtle.verify({ name: 'Ed25519' }, pinned.key, sig.blob.slice(4), enc.encode(note.body));
  return { ...note, ok, reason: ok ? 'signed by the pinned key' : 'signature does not verify' };
}

/// RFC 9162 section 2.1.3.2: the root an inclusion proof leads to.
export async function rootFromInclusion(index, size, leaf, proof) {
  if (index >= size) throw new Error('index beyond tree size');
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (p.length !== 32) throw new Error('proof hash is not 32 bytes');
    if (sn === 0) throw new Error('proof too long');
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error('proof too short');
  return r;
}

/// Decodes what an entry says, from its bytes alone (docs/format.md): a
/// version 1 entry holds the event; versions 2 and 3 only its clear fields
/// unless the opening is given and matches the entry's commitment.
/// The header of a version 3 (binary) entry: appended_by, the clear index,
/// the commitment and the blobs it lists (docs/format.md).
export function parseEntryV3(b) {
  let at = 2;
  const take = (n) => {
    if (at + n > b.length) throw new Error('v3 entry ends early');
    const part = b.subarray(at, at + n);
    at += n;
    return part;
  };
  const u16 = () => { const p = take(2); return (p[0] << 8) | p[1]; };
  const text = (n) => new TextDecoder('utf-8', { fatal: true }).decode(take(n));
  // Bit 0: zstd; bit 1, only with bit 0: zstd with the openings dictionary.
  if ((b[1] & ~3) || b[1] === 2) throw new Error(`unknown v3 flags ${b[1]}`);
  const appendedBy = text(u16());
  const index = JSON.parse(text(u16()));
  take(8 + 24);
  const commitment = take(32);
  const blobs = [];
  for (let n = u16(); n > 0; n--) {
    const pointer = text(u16());
    const size = take(8).reduce((v, byte) => v * 256 + byte, 0);
    blobs.push({ pointer, size, commitment: take(32), stored: take(32) });
  }
  return { appendedBy, index, commitment, blobs };
}

const NESTED_CLEAR = ['source', 'actor', 'outcome', 'ai'];

/// A v3 opening's event: what it seals plus the clear fields (all but the subject tag).
function mergeClear(rest, index) {
  for (const [k, v] of Object.entries(index)) {
    if (k === 'subject') continue;
    if (NESTED_CLEAR.includes(k)) {
      rest[k] = rest[k] || {};
      for (const [m, mv] of Object.entries(v)) {
        if (m in rest[k]) throw new Error('the opening repeats a clear field');
        rest[k][m] = mv;
      }
    } else {
      if (k in rest) throw new Error('the opening repeats a clear field');
      rest[k] = v;
    }
  }
  return rest;
}

export async function decodeEntry(entryBytes, openingB64) {
  if (entryBytes[0] === 3) {
    const h = parseEntryV3(entryBytes);
    const out = { version: 3, event: h.index, whole: false, opening: 'none' };
    if (openingB64) {
      const opening = b64decode(openingB64);
      if (!equal(await sha256(opening), h.commitment)) {
        out.opening = 'mismatch';
        return out;
      }
      const inner = JSON.parse(new TextDecoder().decode(opening.slice(32)));
      if (inner.v !== 3) throw new Error('the opening of a v3 entry is not version 3');
      out.opening = 'matches';
      out.event = mergeClear(inner.event, h.index);
      out.signature = inner.signature;
      out.redacted = inner.redacted;
      out.whole = h.blobs.length === 0;
      // Large members stored out of line: each with the salt that checks it.
      const slots = inner.blobs || [];
      if (slots.length !== h.blobs.length || slots.some((b, i) => b.pointer !== h.blobs[i].pointer)) {
        throw new Error("the opening's blobs differ from the entry's");
      }
      out.blobs = h.blobs.map((b, i) => ({ ...b, salt: b64decode(slots[i].salt) }));
    }
    return out;
  }
  const entry = JSON.parse(new TextDecoder().decode(entryBytes));
  if (entry.v === 1) return { version: 1, event: entry.event, signature: entry.signature, whole: true };
  if (entry.v !== 2) throw new Error(`unknown entry version ${entry.v}`);
  const out = { version: 2, event: entry.index, whole: false, opening: 'none' };
  if (openingB64) {
    const opening = b64decode(openingB64);
    const commitment = await sha256(opening);
    if (!equal(commitment, b64decode(entry.commitment))) {
      out.opening = 'mismatch';
      return out;
    }
    const inner = JSON.parse(new TextDecoder().decode(opening.slice(32)));
    out.opening = 'matches';
    out.event = inner.event;
    out.signature = inner.signature;
    out.redacted = inner.redacted;
    out.whole = true;
  }
  return out;
}

/// Checks a large member's content (its canonical JSON, as
/// `GET /v1/events/<i>/blobs/<n>` sends it) against the entry:
/// SHA-256(salt || content) must be the commitment the entry logs.
export async function verifyBlob(content, blob) {
  if (content.length !== blob.size) return false;
  return equal(await sha256(blob.salt, content), blob.commitment);
}

/// Full check of `GET /v1/events/<i>?proof=true`: the step-by-step results
/// the event page shows. `ok` only when every step passed.
export async function verifyEvent(ev, pinned) {
  const steps = [];
  const step = (name, ok, detail) => { steps.push({ name, ok, detail }); return ok; };
  let entry;
  try { entry = b64decode(ev.entry); } catch { step('entry bytes', false, 'not base64'); return { ok: false, steps }; }
  const leaf = await leafHash(entry);
  step('leaf hash', equal(leaf, b64decode(ev.leaf_hash || '')),
    `SHA-256(0x00 || entry) = ${b64encode(leaf)}` + (ev.leaf_hash && !equal(leaf, b64decode(ev.leaf_hash)) ? ` (server said ${ev.leaf_hash})` : ''));
  if (!ev.proof) { step('inclusion proof', false, 'the server sent no proof'); return { ok: false, steps, leaf }; }
  const cp = await verifyCheckpoint(ev.proof.checkpoint, pinned);
  step('checkpoint signature', cp.ok, cp.reason);
  let root = null;
  try {
    if (cp.size !== ev.proof.size) throw new Error(`proof is for size ${ev.proof.size}, checkpoint is ${cp.size}`);
    root = await rootFromInclusion(ev.index, cp.size, leaf, ev.proof.inclusion.map(b64decode));
    step('inclusion proof', equal(root, cp.root),
      equal(root, cp.root) ? `leaf ${ev.index} leads to the checkpoint root of tree size ${cp.size}` : `proof leads to ${b64encode(root)}, not the checkpoint root`);
  } catch (e) {
    step('inclusion proof', false, e.message);
  }
  let decoded = null;
  try {
    decoded = await decodeEntry(entry, ev.opening);
    if (decoded.opening === 'mismatch') step('opening', false, 'SHA-256(opening) is not the entry commitment');
    else if (decoded.opening === 'matches') step('opening', true, 'the sealed content matches the logged commitment');
  } catch (e) {
    step('entry decoding', false, e.message);
  }
  return { ok: steps.every((s) => s.ok), steps, leaf, decoded, checkpoint: cp };
}

/// A witness key `<name>+<8 hex key id>+<base64(0x04 || 32-byte key)>`
/// (C2SP tlog-cosignature): the key id binds the name with type 0x04.
export async function parseWitnessKey(vkey) {
  const m = /^([^+\s]+)\+([^+]*)\+(\S+)$/.exec(vkey.trim());
  if (!m) throw new Error('a witness key is <name>+<key id>+<key>');
  const [, name, idHex, keyB64] = m;
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw new Error('the key id is 8 hex digits');
  const raw = b64decode(keyB64);
  if (raw.length !== 33 || raw[0] !== 4) throw new Error('a witness key is a cosignature/v1 key (type 0x04, 32 bytes)');
  const id = (await sha256(enc.encode(name), Uint8Array.of(0x0a), raw)).slice(0, 4);
  if (hex(id) !== idHex) throw new Error('the key id does not match the key');
  const key = await crypto.subtle.importKey('raw', raw.slice(1), { name: 'Ed25519' }, false, ['verify']);
  return { name, id, key };
}

/// A C2SP tlog-policy file: log keys, witnesses, groups and the quorum.
export async function parsePolicy(text) {
  const logs = [];
  const witnesses = [];
  const groups = new Map();
  const names = new Set();
  let quorum;
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const f = line.split(/\s+/);
    const where = `policy line ${n + 1}`;
    if (f[0] === 'log') logs.push(await parseVerifierKey(f[1] || ''));
    else if (f[0] === 'witness') {
      if (f.length < 3 || names.has(f[1])) throw new Error(`${where}: witness <name> <vkey> [<url>], names unique`);
      witnesses.push({ name: f[1], key: await parseWitnessKey(f[2]) });
      names.add(f[1]);
    } else if (f[0] === 'group') {
      const members = f.slice(3);
      if (!members.length || names.has(f[1]) || members.some((m) => !names.has(m))) {
        throw new Error(`${where}: group <name> <k|any|all> <members defined above>`);
      }
      const k = f[2] === 'any' ? 1 : f[2] === 'all' ? members.length : Number(f[2]);
      if (!Number.isInteger(k) || k < 1 || k > members.length) throw new Error(`${where}: bad threshold ${f[2]}`);
      groups.set(f[1], { k, members });
      names.add(f[1]);
    } else if (f[0] === 'quorum') {
      if (quorum !== undefined || (f[1] !== 'none' && !names.has(f[1]))) throw new Error(`${where}: one quorum, of a name defined above or none`);
      quorum = f[1];
    } else throw new Error(`${where}: unknown keyword ${f[0]}`);
  }
  if (quorum === undefined) throw new Error('the policy has no quorum line');
  return { logs, witnesses, groups, quorum };
}

/// The policy witnesses whose cosignature/v1 line on `text` (a checkpoint
/// note) verifies over its body, whether they meet the quorum, and which
/// witnesses of the quorum are missing.
export async function checkWitnesses(text, policy) {
  const note = parseNote(text);
  const cosigned = [];
  for (const w of policy.witnesses) {
    for (const s of note.sigs) {
      if (s.name !== w.key.name || s.blob.length !== 76 || !equal(s.blob.slice(0, 4), w.key.id)) continue;
      const t = new DataView(s.blob.buffer, s.blob.byteOffset + 4, 8).getBigUint64(0);
      if (t === 0n) continue;
      const msg = enc.encode(`cosignature/v1\ntime ${t}\n${note.body}`);
      if (await crypto.subtle.verify({ name: 'Ed25519' }, w.key.key, s.blob.slice(12), msg)) {
        cosigned.push(w.name);
        break;
      }
    }
  }
  const have = new Set(cosigned);
  const met = (name) => {
    const g = policy.groups.get(name);
    return g ? g.members.filter(met).length >= g.k : have.has(name);
  };
  const leaves = (name, out) => {
    const g = policy.groups.get(name);
    if (g) g.members.forEach((m) => leaves(m, out)); else out.add(name);
    return out;
  };
  const quorumMet = policy.quorum === 'none' || met(policy.quorum);
  const missing = policy.quorum === 'none' ? [] : [...leaves(policy.quorum, new Set())].filter((n) => !have.has(n));
  return { cosigned, quorumMet, missing };
}
