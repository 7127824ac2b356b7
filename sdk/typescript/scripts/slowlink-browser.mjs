// Full-size slow-link drain of the BROWSER emitter (not part of `npm test`): the test
// PWA (test/pwa/) in Debian's Chromium (playwright-core) emits a backlog of N AI events
// (default 20,000) while offline, into its IndexedDB spool; then it goes online and the
// page's emitter drains the backlog through tools/slowlink.mjs (64 kbit/s each way,
// 300 ms one-way latency, 5% of requests cut). The page server proxies /v1/* to the
// slowlink (same origin; the ledger answers no CORS preflight), so every request the
// browser makes crosses the slow link. Prints time, bytes crossed and events/s; checks
// exactly-once and `aiaudit verify`. The same events and link as scripts/slowlink-bench.mjs.
//
//   AIAUDIT_BIN=... node scripts/slowlink-browser.mjs [N] [kbps] [latency-ms] [drop]
import { startSlowlink } from "../tools/slowlink.mjs";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Ledger, exactlyOnce, AIAUDIT_BIN, launchChromium, startPwaServer } from "../test/helpers.mjs";

const run = promisify(execFile);

const N = Number(process.argv[2] ?? 20_000);
const kbps = Number(process.argv[3] ?? 64), latencyMs = Number(process.argv[4] ?? 300), drop = Number(process.argv[5] ?? 0.05);
const ledger = await Ledger.start();
const link = await startSlowlink({ upstream: `127.0.0.1:${ledger.port}`, kbps, latencyMs, drop });
const pwa = await startPwaServer(link.url);
const browser = await launchChromium();
try {
  const token = await ledger.createToken("bench");
  // The same AI events as the Node bench: `aiaudit bench --content ai --dump` (about 1 KiB each).
  const { stdout } = await run(AIAUDIT_BIN, ["bench", "--content", "ai", "--dump", "--events", String(N)], { maxBuffer: 256 << 20 });
  const events = stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
  const jsonBytes = Buffer.byteLength(stdout);

  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("console", (m) => { if (process.env.VERBOSE) console.log(`  page: ${m.text()}`); });
  page.on("pageerror", (e) => console.log(`  pageerror: ${e.message}`));
  // ?sw=0: the page's emitter alone (no service worker Background Sync draining the same spool).
  await page.goto(`${pwa.origin}/?sw=0&token=${encodeURIComponent(token)}`);
  await page.waitForFunction(() => window.t, null, { timeout: 20_000 });

  // The backlog: emitted while offline, into IndexedDB.
  await context.setOffline(true);
  // As the Node bench: 5 s at most between retries, up to 120 s for a request to be answered.
  await page.evaluate(() => window.t.start({ maxBackoffMs: 5000, requestTimeoutMs: 120_000 }));
  let t = Date.now();
  const ids = [];
  for (let i = 0; i < N; i += 1000) ids.push(...await page.evaluate((evs) => window.t.emitEvents(evs), events.slice(i, i + 1000)));
  const spoolMs = Date.now() - t;
  const before = await page.evaluate(() => window.t.stats());
  console.log(`spooled ${N} events offline in ${spoolMs} ms (${Math.round(N / (spoolMs / 1000))} events/s, IndexedDB); spool: ${before.spooled} events`);
  if (before.spooled !== N) throw new Error(`the spool holds ${before.spooled} events, not ${N}`);
  if (link.stats.bytesUp !== 0) throw new Error("bytes crossed the link while offline");

  // Online: the `online` event wakes delivery.
  t = Date.now();
  await context.setOffline(false);
  const progress = setInterval(async () => {
    try {
      const s = await page.evaluate(() => window.t.stats());
      console.log(`  ${JSON.stringify({ s: Math.round((Date.now() - t) / 1000), acked: s.acknowledged, spooled: s.spooled, ...link.stats })}`);
    } catch {}
  }, 15_000);
  let drained = true;
  try {
    await page.waitForFunction((n) => window.t.stats().acknowledged >= n && window.t.stats().spooled === 0, N, { timeout: 30 * 60_000, polling: 200 });
  } catch (e) {
    drained = false;
    console.log(`not drained: ${e.message}`);
  }
  clearInterval(progress);
  const secs = (Date.now() - t) / 1000;
  const s = await page.evaluate(() => window.t.stats());
  await page.evaluate(() => window.t.close());
  await context.close();
  console.log(`drained: ${drained}; ${N} events in ${secs.toFixed(1)} s = ${(N / secs).toFixed(0)} events/s over ${kbps} kbit/s, ${latencyMs} ms, drop ${drop} (browser emitter, Chromium)`);
  console.log(`JSON of the events: ${jsonBytes} bytes; up ${(link.stats.bytesUp * 100 / jsonBytes).toFixed(1)} % of it`);
  console.log(`bytes crossed: up ${link.stats.bytesUp}, down ${link.stats.bytesDown} (${(link.stats.bytesUp / N).toFixed(1)} B/event up, ${(link.stats.bytesDown / N).toFixed(1)} B/event down); requests ${link.stats.requests}, cut ${link.stats.drops}`);
  console.log(`page server: ${pwa.stats.requests} /v1 requests (${pwa.stats.gzip} gzipped, ${pwa.stats.bodyBytes} body bytes), ${pwa.stats.cut} cut`);
  console.log(`emitter: body bytes ${s.bytesSent} (uncompressed ${s.bytesUncompressed}), requests answered ${s.requests}, retries ${s.retries}, duplicates ${s.duplicates}, rejected ${s.rejected}`);
  const r = exactlyOnce(await ledger.events("bench"), ids);
  console.log(`exactly once: ${r.ok} (missing ${r.missing.length}, twice ${r.twice.length}, extra ${r.extra.length})`);
  const v = await ledger.verify();
  console.log(`aiaudit verify: ok=${v.ok} size=${v.size}`);
  if (!drained || !r.ok || !v.ok) process.exitCode = 1;
} finally {
  await browser.close();
  await pwa.close();
  await link.close();
  await ledger.stop();
}
