// An emitter written for Node with no code of ours: canonicalises events
// with npm's `canonicalize` (RFC 8785), signs the batch (aiaudit-batch-v2,
// docs/format.md) with node:crypto's Ed25519, registers its key and posts
// the batch, as a JavaScript app sends it (JSON.stringify).
//
// First checks that `canonicalize` agrees with docs/vectors/batch-signatures.json.
//
//   node tests/interop/sign_batch.mjs <ledger url> <admin token> <emitter name>
//
// Prints the ledger's answer (JSON) on success; exits 1 with the reason otherwise.

import canonicalize from "canonicalize";
import { createHash, createPrivateKey, createPublicKey, sign as edSign } from "node:crypto";
import { readFileSync } from "node:fs";

const vectors = JSON.parse(
  readFileSync(new URL("../../docs/vectors/batch-signatures.json", import.meta.url), "utf8"),
);

const sha256 = (...parts) => createHash("sha256").update(Buffer.concat(parts)).digest();

function merkleRoot(leaves) {
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha256(Buffer.from([1]), merkleRoot(leaves.slice(0, k)), merkleRoot(leaves.slice(k)));
}

// An Ed25519 private key from its 32-byte seed (PKCS #8 wrapping, RFC 8410).
function keyFromSeed(seed) {
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  return createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
}

function vkey(name, key) {
  const spki = createPublicKey(key).export({ format: "der", type: "spki" });
  const pub = spki.subarray(spki.length - 32);
  const id = sha256(Buffer.from(name + "\n"), Buffer.from([1]), pub).subarray(0, 4);
  return `${name}+${id.toString("hex")}+${Buffer.concat([Buffer.from([1]), pub]).toString("base64")}`;
}

function signBatch(key, name, events) {
  const leaves = events.map((e) => sha256(Buffer.from([0]), Buffer.from(canonicalize(e), "utf8")));
  const root = merkleRoot(leaves).toString("base64");
  const message = `aiaudit-batch-v2\n${name}\n${leaves.length}\n${root}\n`;
  return edSign(null, Buffer.from(message, "utf8"), key).toString("base64");
}

function fail(why) {
  console.error(why);
  process.exit(1);
}

for (const c of vectors.canonical) {
  const got = canonicalize(JSON.parse(c.json));
  if (got !== c.v2) fail(`canonicalize disagrees on ${c.name}: ${got}`);
}
for (const n of vectors.rfc8785_numbers) {
  const got = canonicalize(JSON.parse(n.json));
  if (got !== n.v2) fail(`canonicalize disagrees on ${n.ieee754_hex}: ${got}`);
}
const vector = vectors.batches.find((b) => b.format === "aiaudit-batch-v2");
const vectorKey = keyFromSeed(Buffer.from(vector.seed_hex, "hex"));
if (vkey(vector.emitter, vectorKey) !== vector.vkey) fail("vector vkey differs");
if (signBatch(vectorKey, vector.emitter, vector.events.map((e) => JSON.parse(e))) !== vector.signature) {
  fail("vector signature differs");
}

const [url, token, name] = process.argv.slice(2);
const key = keyFromSeed(createHash("sha256").update(name).digest());
const auth = { Authorization: `Bearer ${token}` };
let r = await fetch(`${url}/v1/emitters`, {
  method: "POST",
  headers: { ...auth, "Content-Type": "application/json" },
  body: JSON.stringify({ name, public_key: vkey(name, key), tenants: ["lagos-health"] }),
});
if (r.status !== 201) fail(`registering ${name}: HTTP ${r.status} ${await r.text()}`);
const events = vector.events.map((e) => {
  const event = JSON.parse(e);
  event.id = `node-${event.id}`;
  return event;
});
r = await fetch(`${url}/v1/events`, {
  method: "POST",
  headers: {
    ...auth,
    "Content-Type": "application/x-ndjson",
    "AIAudit-Emitter": name,
    "AIAudit-Signature-Format": "aiaudit-batch-v2",
    "AIAudit-Signature": signBatch(key, name, events),
  },
  body: events.map((e) => JSON.stringify(e)).join("\n") + "\n",
});
const text = await r.text();
if (r.status !== 200) fail(`posting the batch: HTTP ${r.status} ${text}`);
console.log(text);
