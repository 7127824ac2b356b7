// A backlog drains exactly once over a slow, lossy link (tools/slowlink.mjs): 64 kbit/s
// each way, 300 ms one-way latency, 5% of requests cut mid-way (and the first two for sure).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "../dist/node.js";
import { startSlowlink } from "../tools/slowlink.mjs";
import { Ledger, tempDir, event, exactlyOnce, freePort } from "./helpers.mjs";

let ledger;
before(async () => { ledger = await Ledger.start(); });
after(async () => { await ledger?.stop(); });

test("300 spooled events drain through a 64 kbit/s, 300 ms, 5%-drop link exactly once in < 60 s", async () => {
  const N = 300;
  const token = await ledger.createToken("t-slow");
  const dir = tempDir();
  // The backlog: emitted while the ledger was unreachable, in records of 20 events.
  const offline = new Emitter({ url: `http://127.0.0.1:${await freePort()}`, token, spoolDir: dir, recordMaxEvents: 20 });
  const ids = await Promise.all(Array.from({ length: N }, (_, i) => offline.emit(event(i, "t-slow", {
    ai: { "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 100 + i } }))));
  await offline.close({ timeoutMs: 0 });

  const link = await startSlowlink({ upstream: `127.0.0.1:${ledger.port}`, kbps: 64, latencyMs: 300, drop: 0.05, dropFirst: 2 }); // the OPTIONS probe and the first batch
  const t0 = Date.now();
  const em = new Emitter({ url: link.url, token, spoolDir: dir, requestMaxRecords: 3, maxBackoffMs: 2000, requestTimeoutMs: 20_000 });
  const delivered = await em.flush({ timeoutMs: 55_000 });
  const secs = (Date.now() - t0) / 1000;
  const s = em.stats();
  await em.close({ timeoutMs: 0 });
  await link.close();
  console.log(`# slowlink: ${N} events in ${secs.toFixed(1)} s; bytes crossed up ${link.stats.bytesUp}, down ${link.stats.bytesDown}; ` +
    `requests ${link.stats.requests}, cut ${link.stats.drops}; emitter body bytes ${s.bytesSent} (uncompressed ${s.bytesUncompressed}), retries ${s.retries}`);
  assert.equal(delivered, true, s.lastError ?? "");
  assert.ok(secs < 60);
  assert.ok(link.stats.drops >= 1 && s.retries >= 1, "a request was cut and retried");
  const r = exactlyOnce(await ledger.waitEvents("t-slow", N), ids);
  assert.ok(r.ok, JSON.stringify(r).slice(0, 300));
  assert.ok(await ledger.verify());
});
