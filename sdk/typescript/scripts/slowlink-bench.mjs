// Full-size slow-link drain (not part of `npm test`): a backlog of N events (default
// 20,000) spooled while the ledger was unreachable, then drained by the Node emitter
// through tools/slowlink.mjs (64 kbit/s each way, 300 ms one-way latency, 5% of
// requests cut). Prints time, bytes crossed and events/s; checks exactly-once.
//
//   AIAUDIT_BIN=... node scripts/slowlink-bench.mjs [N] [kbps] [latency-ms] [drop]
import { Emitter } from "../dist/node.js";
import { startSlowlink } from "../tools/slowlink.mjs";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Ledger, tempDir, exactlyOnce, freePort, AIAUDIT_BIN } from "../test/helpers.mjs";

const run = promisify(execFile);

const N = Number(process.argv[2] ?? 20_000);
const kbps = Number(process.argv[3] ?? 64), latencyMs = Number(process.argv[4] ?? 300), drop = Number(process.argv[5] ?? 0.05);
const ledger = await Ledger.start();
try {
  const token = await ledger.createToken("bench");
  const dir = tempDir();
  const offline = new Emitter({ url: `http://127.0.0.1:${await freePort()}`, token, spoolDir: dir });
  // The same AI events as the agent's figures: `aiaudit bench --content ai --dump`
  // (prompts and answers in English, about 1 KiB each, nothing repeated across batches).
  const { stdout } = await run(AIAUDIT_BIN, ["bench", "--content", "ai", "--dump", "--events", String(N)], { maxBuffer: 256 << 20 });
  const events = stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
  const jsonBytes = Buffer.byteLength(stdout);
  let t = Date.now();
  const ids = [];
  for (let i = 0; i < N; i += 1000) {
    ids.push(...await Promise.all(events.slice(i, i + 1000).map((e) => offline.emit(e))));
  }
  const spoolMs = Date.now() - t;
  await offline.close({ timeoutMs: 0 });
  console.log(`spooled ${N} events in ${spoolMs} ms (${Math.round(N / (spoolMs / 1000))} events/s, fsync'd)`);

  const link = await startSlowlink({ upstream: `127.0.0.1:${ledger.port}`, kbps, latencyMs, drop });
  t = Date.now();
  const em = new Emitter({ url: link.url, token, spoolDir: dir, maxBackoffMs: 5000, requestTimeoutMs: 120_000 });
  const progress = setInterval(() => console.log(`  ${JSON.stringify({ s: Math.round((Date.now() - t) / 1000), acked: em.stats().acknowledged, ...link.stats })}`), 15_000);
  const ok = await em.flush({ timeoutMs: 30 * 60_000 });
  clearInterval(progress);
  const secs = (Date.now() - t) / 1000;
  const s = em.stats();
  await em.close({ timeoutMs: 0 });
  await link.close();
  console.log(`drained: ${ok}; ${N} events in ${secs.toFixed(1)} s = ${(N / secs).toFixed(0)} events/s over ${kbps} kbit/s, ${latencyMs} ms, drop ${drop}`);
  console.log(`JSON of the events: ${jsonBytes} bytes; up ${(link.stats.bytesUp * 100 / jsonBytes).toFixed(1)} % of it`);
  console.log(`bytes crossed: up ${link.stats.bytesUp}, down ${link.stats.bytesDown} (${(link.stats.bytesUp / N).toFixed(1)} B/event up, ${(link.stats.bytesDown / N).toFixed(1)} B/event down); requests ${link.stats.requests}, cut ${link.stats.drops}`);
  console.log(`emitter: body bytes ${s.bytesSent} (uncompressed ${s.bytesUncompressed}), requests answered ${s.requests}, retries ${s.retries}, duplicates ${s.duplicates}`);
  const r = exactlyOnce(await ledger.events("bench"), ids);
  console.log(`exactly once: ${r.ok} (missing ${r.missing.length}, twice ${r.twice.length}, extra ${r.extra.length})`);
  const v = await ledger.verify();
  console.log(`aiaudit verify: ok=${v.ok} size=${v.size}`);
  if (!ok || !r.ok || !v.ok) process.exitCode = 1;
} finally {
  await ledger.stop();
}
