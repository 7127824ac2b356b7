// The Node emitter against the real ledger binary.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { Emitter, SigningKey, InvalidEvent } from "../dist/node.js";
import { Ledger, tempDir, event, exactlyOnce, refusingProxy, freePort, waitUntil } from "./helpers.mjs";

let ledger;
before(async () => { ledger = await Ledger.start(); });
after(async () => { await ledger?.stop(); });

test("emit, flush, close: every event lands exactly once, re-sent ids are not appended again", async () => {
  const token = await ledger.createToken("t-basic");
  const em = new Emitter({ url: ledger.url, token, spoolDir: tempDir() });
  const ids = await Promise.all(Array.from({ length: 120 }, (_, i) => em.emit(event(i, "t-basic"))));
  assert.equal(await em.flush({ timeoutMs: 10_000 }), true);
  assert.equal(em.stats().acknowledged, 120);
  assert.equal(em.stats().spooled, 0);
  // The same ids again (a retry after a lost answer): acknowledged, not appended.
  for (const id of ids.slice(0, 20)) await em.emit({ ...event(0, "t-basic"), id });
  assert.equal(await em.flush({ timeoutMs: 10_000 }), true);
  assert.equal(em.stats().duplicates, 20);
  await em.close();
  const got = await ledger.waitEvents("t-basic", 120);
  const r = exactlyOnce(got, ids);
  assert.ok(r.ok, JSON.stringify(r).slice(0, 500));
  assert.equal(got.find((e) => e.id === ids[7]).event.attributes.n, 7);
});

test("an invalid event is refused at emit naming the field, and nothing is queued", async () => {
  const em = new Emitter({ url: ledger.url, token: ledger.token });
  await assert.rejects(em.emit(event(1, "acme", { actor: { id: "a", type: "robot" } })), (e) => e instanceof InvalidEvent && e.field === "actor.type");
  assert.equal(em.stats().queued + em.stats().spooled, 0);
  await em.close({ timeoutMs: 0 });
});

test("signed batches (aiaudit-batch-v2) are accepted with a registered key", async () => {
  const key = SigningKey.generate("ts-edge-1");
  await ledger.registerEmitter(key.name, await key.verifierKey(), ["t-signed"]);
  const token = await ledger.createToken("t-signed");
  // The key as `aiaudit emitter keygen` writes it.
  const em = new Emitter({ url: ledger.url, token, signingKey: await key.privateKeyText(), spoolDir: tempDir() });
  const ids = [];
  for (let i = 0; i < 30; i++) ids.push(await em.emit(event(i, "t-signed", { attributes: { n: i, text: "Ẹ káàbọ̀ — 你好 — 🎉", f: 0.1 + 0.2, big: 2 ** 53 } })));
  assert.equal(await em.flush({ timeoutMs: 10_000 }), true, em.lastError ?? "");
  assert.equal(em.stats().rejected, 0);
  await em.close();
  const got = await ledger.waitEvents("t-signed", 30);
  assert.ok(exactlyOnce(got, ids).ok);
  const one = await ledger.getJson(`/v1/events/${got[0].index}`);
  assert.equal(one.appended_by, `emitter:${key.name}`);
  // A key the ledger does not know: refused for good (403), set aside.
  const stranger = new Emitter({ url: ledger.url, token, signingKey: SigningKey.generate("ts-unknown"), spoolDir: tempDir() });
  await stranger.emit(event(1, "t-signed"));
  assert.equal(await stranger.flush({ timeoutMs: 10_000 }), true);
  assert.equal(stranger.stats().rejected, 1);
  await stranger.close();
});

test("a refused batch is split: the ledger's refusals are set aside, the rest lands", async () => {
  const token = await ledger.createToken("t-split");
  const dir = tempDir();
  const em = new Emitter({ url: ledger.url, token, spoolDir: dir });
  const ids = [];
  const all = [];
  for (let i = 0; i < 10; i++) {
    const tenant = i === 4 ? "t-other" : "t-split"; // this token may not write t-other: 403
    const id = em.emit(event(i, tenant));
    all.push(id);
    if (tenant === "t-split") ids.push(id);
  }
  await Promise.all(all);
  assert.equal(await em.flush({ timeoutMs: 10_000 }), true);
  assert.equal(em.stats().rejected, 1);
  assert.equal(em.stats().acknowledged, 9);
  await em.close();
  const rejected = readFileSync(join(dir, "rejected.ndjson"), "utf8").trim().split("\n");
  assert.match(JSON.parse(rejected[0]).refused, /HTTP 403/);
  assert.equal(JSON.parse(rejected[1]).tenant, "t-other");
  assert.ok(exactlyOnce(await ledger.waitEvents("t-split", 9), await Promise.all(ids)).ok);
});

test("the spool survives a restart: events emitted offline are delivered by the next emitter", async () => {
  const token = await ledger.createToken("t-restart");
  const dir = tempDir();
  const dead = `http://127.0.0.1:${await freePort()}`;
  const a = new Emitter({ url: dead, token, spoolDir: dir });
  const ids = [];
  for (let i = 0; i < 50; i++) ids.push(await a.emit(event(i, "t-restart")));
  assert.equal(await a.flush({ timeoutMs: 300 }), false);
  assert.match(a.lastError ?? "", /ECONNREFUSED|fetch failed/);
  await a.close({ timeoutMs: 0 });
  const b = new Emitter({ url: ledger.url, token, spoolDir: dir });
  await b.ready();
  assert.equal(b.stats().spooled, 50);
  assert.equal(await b.flush({ timeoutMs: 10_000 }), true);
  await b.close();
  assert.ok(exactlyOnce(await ledger.waitEvents("t-restart", 50), ids).ok);
});

test("kill -9 of a Node process mid-stream, then an emitter on its spool: every resolved event exactly once", async () => {
  const token = await ledger.createToken("t-kill");
  const dir = tempDir();
  const child = spawn(process.execPath, [new URL("./fixtures/emit-child.mjs", import.meta.url).pathname, ledger.url, token, dir, "t-kill", "k9"], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  const resolvedIds = () => out.split("\n").slice(0, -1).filter((l) => l.startsWith("ok ")).map((l) => l.slice(3));
  const exited = new Promise((r) => child.once("exit", r));
  // Killed the moment 1,500 emits have resolved, in the middle of its stream.
  child.stdout.on("data", (d) => { out += d; if (child.exitCode === null && resolvedIds().length >= 1500) child.kill("SIGKILL"); });
  await waitUntil(() => child.exitCode !== null || child.signalCode !== null, "the child killed", { timeoutMs: 60_000 });
  await exited;
  assert.equal(child.signalCode, "SIGKILL");
  const resolved = resolvedIds();
  const em = new Emitter({ url: ledger.url, token, spoolDir: dir });
  await em.ready();
  assert.equal(await em.flush({ timeoutMs: 30_000 }), true, em.lastError ?? "");
  await em.close();
  const got = await ledger.waitEvents("t-kill", resolved.length);
  const r = exactlyOnce(got, resolved);
  assert.deepEqual(r.missing, [], "every event whose emit resolved is in the log");
  assert.deepEqual(r.twice, [], "and none twice");
  console.log(`# kill -9: ${resolved.length} resolved before the kill, ${got.length} logged (${r.extra.length} written but not yet reported)`);
});

test("ledger down, then up: what was emitted meanwhile drains exactly once", async () => {
  const led = await Ledger.start();
  try {
    const token = await led.createToken("t-down");
    const em = new Emitter({ url: led.url, token, spoolDir: tempDir(), maxBackoffMs: 2000 });
    const ids = [];
    for (let i = 0; i < 30; i++) ids.push(await em.emit(event(i, "t-down")));
    assert.equal(await em.flush({ timeoutMs: 10_000 }), true);
    await led.stop();
    for (let i = 30; i < 80; i++) ids.push(await em.emit(event(i, "t-down")));
    await waitUntil(() => em.stats().retries > 0, "a failed attempt");
    assert.equal(em.stats().spooled, 50);
    await led.start();
    assert.equal(await em.flush({ timeoutMs: 20_000 }), true, em.lastError ?? "");
    await em.close();
    assert.ok(exactlyOnce(await led.waitEvents("t-down", 80), ids).ok);
    const report = await led.verify();
    assert.ok(report, "aiaudit verify passes");
  } finally {
    await led.stop();
  }
});

test("compression: identity until the ledger advertises gzip, then gzip; a 415 falls back to identity", async () => {
  const token = await ledger.createToken("t-gzip");
  const info = await ledger.getJson("/v1/info");
  const ledgerTakesGzip = (info.content_encodings ?? []).includes("gzip");
  const ids = [];
  const sizes = {};
  for (const mode of ["none", "auto"]) {
    const em = new Emitter({ url: ledger.url, token, compression: mode, spoolDir: tempDir() });
    ids.push(await em.emit(event(-1, "t-gzip")));
    assert.equal(await em.flush({ timeoutMs: 10_000 }), true);
    const before = { ...em.stats() };
    ids.push(...await Promise.all(Array.from({ length: 1000 }, (_, i) => em.emit(event(i, "t-gzip", {
      ai: { "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 100 + i } })))));
    assert.equal(await em.flush({ timeoutMs: 20_000 }), true, em.lastError ?? "");
    const s = em.stats();
    sizes[mode] = { wire: s.bytesSent - before.bytesSent, raw: s.bytesUncompressed - before.bytesUncompressed, compressing: s.compressing };
    await em.close();
  }
  console.log(`# ledger content_encodings ${JSON.stringify(info.content_encodings ?? null)}; wire bytes per 1,000 events: identity ${sizes.none.wire}, auto ${sizes.auto.wire} (of ${sizes.auto.raw} uncompressed, ${(sizes.auto.wire / sizes.auto.raw * 100).toFixed(1)}%)`);
  assert.equal(sizes.none.compressing, false);
  assert.equal(sizes.none.wire, sizes.none.raw);
  if (ledgerTakesGzip) {
    assert.equal(sizes.auto.compressing, true);
    assert.ok(sizes.auto.wire < sizes.auto.raw / 3, JSON.stringify(sizes));
  } else {
    assert.equal(sizes.auto.compressing, false, "no gzip before the ledger advertises it");
  }
  // Something between us and the ledger refuses compressed bodies (415): identity from then on.
  const proxy = await compressingProxyOr415();
  const forced = new Emitter({ url: proxy.url, token, compression: "gzip", spoolDir: tempDir() });
  for (let i = 0; i < 20; i++) ids.push(await forced.emit(event(i, "t-gzip", { attributes: { n: i, text: "lorem ipsum ".repeat(20) } })));
  assert.equal(await forced.flush({ timeoutMs: 10_000 }), true, forced.lastError ?? "");
  assert.equal(forced.stats().compressing, false);
  assert.equal(forced.stats().rejected, 0);
  assert.ok(proxy.stats.refused >= 1);
  await forced.close();
  await proxy.close();
  const r = exactlyOnce(await ledger.events("t-gzip"), ids);
  assert.ok(r.ok, JSON.stringify(r).slice(0, 300));
  async function compressingProxyOr415() { return refusingProxy(ledger.url); }
});

test("429/503 with Retry-After: the emitter waits and retries, nothing lost or doubled", async () => {
  const token = await ledger.createToken("t-busy");
  let calls = 0;
  const busy = async (url, init) => {
    if (init?.method !== "POST") return fetch(url, init);
    calls++;
    if (calls <= 2) return new Response('{"type":"urn:aiaudit:problem:too-much-in-flight","detail":"busy"}', { status: calls === 1 ? 503 : 429, headers: { "Retry-After": "1", "Content-Type": "application/problem+json" } });
    return fetch(url, init);
  };
  const em = new Emitter({ url: ledger.url, token, fetch: busy, spoolDir: tempDir() });
  const t0 = Date.now();
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push(await em.emit(event(i, "t-busy")));
  assert.equal(await em.flush({ timeoutMs: 20_000 }), true);
  assert.ok(Date.now() - t0 >= 1000, "waited at least Retry-After");
  assert.equal(em.stats().retries, 2);
  await em.close();
  assert.ok(exactlyOnce(await ledger.waitEvents("t-busy", 5), ids).ok);
});

test("aiaudit verify --url passes over everything logged", async () => {
  const report = await ledger.verify();
  assert.ok(report.size > 0 || report.tree_size > 0 || JSON.stringify(report).length > 2, JSON.stringify(report));
  console.log(`# verify: ${JSON.stringify(report).slice(0, 300)}`);
});
