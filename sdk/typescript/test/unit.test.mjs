// Without a ledger: canonical form and signatures against docs/vectors, the generated
// schema is fresh, validation names the field, the file spool's torn tail and lock.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, appendFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fork } from "node:child_process";
import * as zlib from "node:zlib";
import { generate } from "../scripts/gen-schema.mjs";
import { canonicalize, SigningKey, InvalidEvent, validateEvent, uuidv7, FileSpool, Emitter, SpoolFailure } from "../dist/node.js";
import { REPO, tempDir, event, waitUntil } from "./helpers.mjs";

const vectors = JSON.parse(readFileSync(join(REPO, "docs/vectors/batch-signatures.json"), "utf8"));
const hexToBytes = (h) => Uint8Array.from(h.match(/../g).map((x) => parseInt(x, 16)));

test("the generated schema table is fresh (npm run gen)", () => {
  assert.equal(readFileSync(new URL("../src/schema.generated.ts", import.meta.url), "utf8"), generate(),
    "src/schema.generated.ts is stale: run `npm run gen`");
});

test("RFC 8785 canonical form agrees with docs/vectors/batch-signatures.json", () => {
  for (const c of vectors.canonical) assert.equal(canonicalize(JSON.parse(c.json)), c.v2, c.name);
  for (const n of vectors.rfc8785_numbers) assert.equal(canonicalize(JSON.parse(n.json)), n.v2, n.ieee754_hex);
});

test("aiaudit-batch-v2 signature and verifier key match the vector", async () => {
  const v = vectors.batches.find((b) => b.format === "aiaudit-batch-v2");
  const key = new SigningKey(v.emitter, hexToBytes(v.seed_hex));
  assert.equal(await key.verifierKey(), v.vkey);
  const h = await key.headers(v.events.map((e) => JSON.parse(e)));
  assert.equal(h["AIAudit-Signature"], v.signature);
  assert.equal(h["AIAudit-Signature-Format"], "aiaudit-batch-v2");
  assert.equal(h["AIAudit-Emitter"], v.emitter);
  // The private key text round-trips through the keygen format.
  const again = SigningKey.parse(await key.privateKeyText());
  assert.equal(await again.verifierKey(), v.vkey);
});

test("validation names the field, as the ledger does", () => {
  const bad = (e, field) => {
    assert.throws(() => validateEvent({ id: "x", time: "2026-01-01T00:00:00Z", ...event(1), ...e }),
      (err) => err instanceof InvalidEvent && err.field === field, `expected ${field}`);
  };
  bad({ actor: { id: "a", type: "robot" } }, "actor.type");
  bad({ tenant: "no spaces" }, "tenant");
  bad({ action: "Bad" }, "action");
  bad({ colour: "red" }, "colour");
  bad({ time: "yesterday" }, "time");
  bad({ ai: { "gen_ai.usage.input_tokens": "12" } }, "ai.gen_ai.usage.input_tokens");
  bad({ ai: { "gen_ai.usage.input_tokens": -1 } }, "ai.gen_ai.usage.input_tokens");
  bad({ ai: { "gen_ai.x": { a: 1 } } }, "ai.gen_ai.x");
  bad({ input: { other: 1 } }, "input");
  bad({ input: { sha256: "XYZ" } }, "input.sha256");
  bad({ trace_id: "0".repeat(32) }, "trace_id");
  bad({ id: "has space" }, "id");
  bad({ id: "é".repeat(65) }, "id"); // 130 bytes of UTF-8
  bad({ action: "data.export" }, "action");
  bad({ source: { name: "aiaudit" } }, "source.name");
  bad({ source: {} }, "source.name");
  let deep = {};
  for (let i = 0; i < 16; i++) deep = { d: deep };
  bad({ attributes: deep }, "");
  validateEvent({ id: "x", time: "2026-01-01T00:00:00.5+01:00", ...event(1), ai: { "gen_ai.request.temperature": 0.2 } });
});

test("emit refuses integers beyond 2^53 and values JSON has no form for, naming the field", async () => {
  const em = new Emitter({ url: "http://127.0.0.1:9" });
  const refuses = async (attrs, field) => {
    await assert.rejects(em.emit(event(1, "acme", { attributes: attrs })), (e) => e instanceof InvalidEvent && e.field === field, field);
  };
  await refuses({ big: 2 ** 53 + 2 }, "attributes.big");
  await refuses({ list: [1, 9007199254740993n] }, "attributes.list[1]");
  await refuses({ x: NaN }, "attributes.x");
  await refuses({ when: new Date() }, "attributes.when");
  const cyclic = {};
  cyclic.self = cyclic;
  await refuses({ c: cyclic }, "attributes.c.self");
  const mine = event(1);
  const id = await em.emit(mine);
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(mine.id, undefined, "the caller's object is not modified");
  await em.close({ timeoutMs: 0 });
});

test("UUIDv7 ids are ordered", () => {
  const ids = Array.from({ length: 2000 }, uuidv7);
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(new Set(ids).size, ids.length);
});

test("file spool: batches are stored gzipped, and a format 1 spool is read and upgraded", async () => {
  const words = ["the", "loan", "applicant", "income", "risk", "answer", "Lagos", "review"];
  const batch = (n, seed) => Array.from({ length: n }, (_, i) =>
    JSON.stringify({ id: `e-${seed}-${i}`, output: { content: Array.from({ length: 120 }, (_, w) => words[(w * 7 + i + seed) % 8]).join(" ") } }) + "\n").join("");
  // A spool as format 1 wrote it: the NDJSON itself.
  const dir = tempDir();
  const old = batch(3, 1);
  const payload = Buffer.from(old);
  const header = Buffer.alloc(8);
  header.writeUInt32LE(payload.length, 0);
  header.writeUInt32LE(zlib.crc32(payload) >>> 0, 4);
  writeFileSync(join(dir, "FORMAT"), "aiaudit-js-spool 1\n");
  writeFileSync(join(dir, `seg-${"0".repeat(20)}.log`), Buffer.concat([header, payload]));
  let s = await FileSpool.open(dir);
  assert.equal(readFileSync(join(dir, "FORMAT"), "utf8"), "aiaudit-js-spool 2\n");
  const fresh = batch(100, 2);
  await s.append(fresh, 100, Buffer.byteLength(fresh));
  await s.close();
  const seg = readFileSync(join(dir, `seg-${"0".repeat(20)}.log`));
  const second = seg.subarray(8 + payload.length);
  assert.deepEqual([...second.subarray(8, 10)], [0x1f, 0x8b], "the new record is a gzip member");
  assert.ok(second.length * 5 < Buffer.byteLength(fresh), `${second.length} bytes stored for ${Buffer.byteLength(fresh)}`);
  s = await FileSpool.open(dir);
  assert.equal(s.pendingEvents, 103);
  const records = await s.peek(10, 1 << 30);
  assert.deepEqual(records.map((r) => r.body), [old, fresh]);
  assert.deepEqual(records.map((r) => r.count), [3, 100]);
  await s.close();
});

test("file spool: a torn tail is cut off on open, whole records survive", async () => {
  const dir = tempDir();
  const s = await FileSpool.open(dir);
  await s.append('{"a":1}\n{"a":2}\n', 2, 16);
  await s.append('{"a":3}\n', 1, 8);
  await s.close();
  const seg = readdirSync(dir).find((f) => f.startsWith("seg-"));
  const size = statSync(join(dir, seg)).size;
  // A crash mid-write: a header promising 100 bytes, and 5 of them.
  appendFileSync(join(dir, seg), Buffer.from([100, 0, 0, 0, 1, 2, 3, 4, 65, 66, 67, 68, 69]));
  const s2 = await FileSpool.open(dir);
  assert.equal(s2.pendingEvents, 3);
  assert.equal(statSync(join(dir, seg)).size, size, "the torn record was cut off");
  const recs = await s2.peek(10, 1 << 20);
  assert.deepEqual(recs.map((r) => r.body), ['{"a":1}\n{"a":2}\n', '{"a":3}\n']);
  await s2.ack(recs.slice(0, 1));
  await s2.append('{"a":4}\n', 1, 8);
  await s2.close();
  const s3 = await FileSpool.open(dir);
  assert.deepEqual((await s3.peek(10, 1 << 20)).map((r) => r.body), ['{"a":3}\n', '{"a":4}\n']);
  await s3.close();
});

test("file spool: a second emitter on the directory is refused while the first lives", async () => {
  const dir = tempDir();
  const a = new Emitter({ url: "http://127.0.0.1:9", spoolDir: dir });
  await a.ready();
  const b = new Emitter({ url: "http://127.0.0.1:9", spoolDir: dir });
  await assert.rejects(b.ready(), (e) => e instanceof SpoolFailure && /in use/.test(e.message));
  // Another live process holding it.
  await a.close({ timeoutMs: 0 });
  const child = fork(new URL("./fixtures/hold-spool.mjs", import.meta.url), [dir], { stdio: ["ignore", "pipe", "inherit", "ipc"] });
  await new Promise((r) => child.once("message", r));
  const c = new Emitter({ url: "http://127.0.0.1:9", spoolDir: dir });
  await assert.rejects(c.ready(), (e) => e instanceof SpoolFailure && /pid/.test(e.message));
  child.kill("SIGKILL");
  await new Promise((r) => child.once("exit", r));
  // Its owner is dead: the lock is taken over.
  const d = new Emitter({ url: "http://127.0.0.1:9", spoolDir: dir });
  await d.ready();
  await d.close({ timeoutMs: 0 });
});

test("onFull: drop refuses and counts, block waits for room", async () => {
  const dir = tempDir();
  // A ledger that is not there: nothing leaves the spool.
  const drop = new Emitter({ url: "http://127.0.0.1:9", spoolDir: dir, maxSpoolBytes: 2000, onFull: "drop" });
  let n = 0;
  for (;;) {
    try { await drop.emit(event(n)); n++; } catch (e) { assert.equal(e.name, "SpoolFull"); break; }
  }
  assert.ok(n > 3 && n < 20, `${n} events fit`);
  assert.equal(drop.stats().dropped, 1);
  assert.equal(drop.stats().spooled, n);
  await drop.close({ timeoutMs: 0 });
  // Block: emit waits while full, and resolves once the spool is drained (here by a fake ledger).
  let open = false;
  const fake = async (_url, init) => {
    if (!open) throw new TypeError("fetch failed");
    if (init.method === "OPTIONS") return new Response(null, { status: 200 });
    const lines = new TextDecoder().decode(init.body).trim().split("\n");
    return new Response(JSON.stringify({ events: lines.map((l, i) => ({ id: JSON.parse(l).id, index: i, duplicate: false })) }), { status: 200 });
  };
  const block = new Emitter({ url: "http://127.0.0.1:9", spoolDir: dir, maxSpoolBytes: 2000, onFull: "block", fetch: fake, maxBackoffMs: 50 });
  await block.ready();
  assert.equal(block.stats().spooled, n, "the spool kept what the first emitter wrote");
  let resolved = false;
  const p = block.emit(event(99)).then(() => { resolved = true; });
  // The delivery loop tried (and failed) twice meanwhile: emit still waits for room.
  await waitUntil(() => block.stats().retries >= 2, "two failed attempts");
  assert.equal(resolved, false, "emit waits while the spool is full");
  open = true;
  await p;
  assert.ok(await block.flush({ timeoutMs: 5000 }));
  assert.equal(block.stats().acknowledged, n + 1);
  assert.equal(block.stats().dropped, 0);
  await block.close();
});
