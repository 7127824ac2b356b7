// The dashboard's verifier (web/js/verify.js) under Node's WebCrypto,
// against the Go sumdb/tlog reference vectors in crates/tlog/testdata:
// the same code the browser runs, checked against another implementation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  rootFromInclusion, verifyCheckpoint, parseVerifierKey, parseNote, decodeEntry, sha256, b64encode, equal,
  verifyBlob, parsePolicy, parseWitnessKey, checkWitnesses,
} from '../../web/js/verify.js';

const data = (f) => JSON.parse(readFileSync(new URL(`../../crates/tlog/testdata/${f}`, import.meta.url)));
const fromHex = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));
const enc = new TextEncoder();

test('inclusion proofs lead to the reference roots', async () => {
  const { vectors } = data('inclusion_proofs.json');
  assert.ok(vectors.length > 40);
  for (const v of vectors) {
    const leaf = await sha256(Uint8Array.of(0), enc.encode(v.entry));
    assert.ok(equal(leaf, fromHex(v.leaf_hash_hex)), `leaf ${v.entry}`);
    const root = await rootFromInclusion(v.leaf_index, v.tree_size, leaf, v.proof.map(fromHex));
    assert.ok(equal(root, fromHex(v.root_hex)), `index ${v.leaf_index} of ${v.tree_size}`);
  }
});

test('a changed, shortened or lengthened proof or a wrong index does not', async () => {
  const { vectors } = data('inclusion_proofs.json');
  for (const v of vectors.filter((x) => x.proof.length > 0)) {
    const leaf = fromHex(v.leaf_hash_hex);
    const root = fromHex(v.root_hex);
    const leads = async (index, size, proof) => {
      try { return equal(await rootFromInclusion(index, size, leaf, proof), root); } catch { return false; }
    };
    const proof = v.proof.map(fromHex);
    for (let i = 0; i < proof.length; i++) {
      const bad = proof.map((p) => p.slice());
      bad[i][31] ^= 1;
      assert.equal(await leads(v.leaf_index, v.tree_size, bad), false);
    }
    assert.equal(await leads(v.leaf_index, v.tree_size, proof.slice(1)), false);
    assert.equal(await leads(v.leaf_index, v.tree_size, [...proof, proof[0]]), false);
    const other = (v.leaf_index + 1) % v.tree_size;
    if (other !== v.leaf_index) assert.equal(await leads(other, v.tree_size, proof), false);
  }
});

test('the reference checkpoint verifies with its key, and only with it', async () => {
  const cp = data('checkpoint-1000.json');
  // This key's base64 holds '+', the verifier key's separator.
  assert.ok(cp.vkey.split('+').length > 3);
  const key = await parseVerifierKey(cp.vkey);
  const ok = await verifyCheckpoint(cp.signed_note, key);
  assert.equal(ok.ok, true, ok.reason);
  assert.equal(ok.size, 1000);
  assert.equal(b64encode(ok.root), cp.root_base64);

  const changedRoot = cp.signed_note.replace(cp.root_base64, b64encode(new Uint8Array(32)));
  assert.equal((await verifyCheckpoint(changedRoot, key)).ok, false);
  const changedSize = cp.signed_note.replace('\n1000\n', '\n1001\n');
  assert.equal((await verifyCheckpoint(changedSize, key)).ok, false);
  assert.equal((await verifyCheckpoint(cp.signed_note, null)).ok, false);

  // The key id must follow from name and key.
  const [name, , ...key64] = cp.vkey.split('+');
  await assert.rejects(parseVerifierKey(`${name}+00000000+${key64.join('+')}`));
  await assert.rejects(parseVerifierKey('not a key'));
});

test('signed notes are parsed strictly', () => {
  assert.throws(() => parseNote('origin\n1\nAAAA\n'));
  assert.throws(() => parseNote('origin\n01\n' + b64encode(new Uint8Array(32)) + '\n\n\u2014 k AAAA\n'));
  assert.throws(() => parseNote('origin\n1\n' + b64encode(new Uint8Array(32)) + '\n\n- k AAAA\n'));
});

test('entries decode; a sealed entry only with a matching opening', async () => {
  const v1 = await decodeEntry(enc.encode('{"event":{"id":"a","time":"2026-11-27T09:14:03Z"},"v":1}'));
  assert.equal(v1.event.id, 'a');
  assert.equal(v1.whole, true);
  const inner = enc.encode('{"event":{"id":"b","secret":"s"},"v":1}');
  const opening = new Uint8Array(32 + inner.length);
  opening.set(inner, 32);
  const commitment = b64encode(await sha256(opening));
  const v2 = enc.encode(`{"commitment":"${commitment}","index":{"id":"b"},"sealed":{},"v":2}`);
  const closed = await decodeEntry(v2);
  assert.deepEqual([closed.whole, closed.event], [false, { id: 'b' }]);
  const opened = await decodeEntry(v2, b64encode(opening));
  assert.deepEqual([opened.opening, opened.event.secret], ['matches', 's']);
  opening[0] ^= 1;
  assert.equal((await decodeEntry(v2, b64encode(opening))).opening, 'mismatch');
  await assert.rejects(decodeEntry(enc.encode('{"v":3}')));
});

test('every entry-v3 vector decodes and its opening matches its commitment', async () => {
  const doc = JSON.parse(readFileSync(new URL('../../docs/vectors/entry-v3.json', import.meta.url)));
  assert.ok(doc.vectors.some((v) => v.dictionary), 'a vector compressed with the openings dictionary');
  for (const v of doc.vectors) {
    const decoded = await decodeEntry(fromHex(v.entry_hex), b64encode(fromHex(v.opening_hex)));
    assert.equal(decoded.opening, 'matches', v.name);
  }
  const flags2 = fromHex(doc.vectors[0].entry_hex);
  flags2[1] = 2;
  await assert.rejects(decodeEntry(flags2), /unknown v3 flags/);
});

test('large members stored beside the log check against the entry (entry-v3 blob vectors)', async () => {
  const doc = JSON.parse(readFileSync(new URL('../../docs/vectors/entry-v3.json', import.meta.url)));
  const withBlobs = doc.vectors.filter((v) => v.blobs?.length);
  assert.ok(withBlobs.length >= 1);
  for (const v of withBlobs) {
    const decoded = await decodeEntry(fromHex(v.entry_hex), b64encode(fromHex(v.opening_hex)));
    assert.equal(decoded.opening, 'matches', v.name);
    assert.equal(decoded.blobs.length, v.blobs.length, v.name);
    for (const [i, b] of v.blobs.entries()) {
      const got = decoded.blobs[i];
      assert.equal(got.pointer, b.pointer);
      assert.equal(got.size, Number(b.size));
      assert.ok(equal(got.commitment, fromHex(b.id_hex)), `${v.name}: blob id`);
      assert.ok(equal(got.salt, fromHex(b.salt_hex)), `${v.name}: salt`);
      // The member's canonical JSON (a string here: JSON.stringify writes it alike).
      const member = b.pointer.split('/').slice(1).reduce((o, k) => o[k], v.event);
      const content = enc.encode(JSON.stringify(member));
      assert.equal(await verifyBlob(content, got), true, `${v.name}: content`);
      const bad = content.slice();
      bad[bad.length >> 1] ^= 1;
      assert.equal(await verifyBlob(bad, got), false, `${v.name}: a changed byte`);
      assert.equal(await verifyBlob(content.slice(1), got), false, `${v.name}: a shorter content`);
    }
  }
});

test('witness cosignatures and the 2-of-3 policy of the C2SP witness vectors', async () => {
  const file = (f) => readFileSync(new URL(`../../crates/tlog/testdata/witness/${f}`, import.meta.url), 'utf8');
  const policy = await parsePolicy(file('policy-2of3.txt'));
  const full = file('checkpoint-1000.cosigned');
  let r = await checkWitnesses(full, policy);
  assert.deepEqual(r.cosigned, ['w1', 'w2', 'w3']);
  assert.equal(r.quorumMet, true);
  const lines = full.trimEnd().split('\n');
  r = await checkWitnesses(lines.slice(0, -2).join('\n') + '\n', policy);
  assert.deepEqual(r.cosigned, ['w1']);
  assert.equal(r.quorumMet, false);
  assert.deepEqual(r.missing, ['w2', 'w3']);
  // A cosignature over another body does not count.
  const forged = full.replace('\n1000\n', '\n1001\n');
  r = await checkWitnesses(forged, policy);
  assert.deepEqual(r.cosigned, []);
  // The log key is not a witness key, and a policy needs its quorum line.
  await assert.rejects(parseWitnessKey(data('checkpoint-1000.json').vkey));
  await assert.rejects(parsePolicy('log ' + data('checkpoint-1000.json').vkey + '\n'));
});
