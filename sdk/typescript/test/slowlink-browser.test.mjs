// The browser emitter over a slow, lossy link: the test PWA in Chromium spools 200 AI
// events (`aiaudit bench --content ai --dump`, about 1 KiB each) in IndexedDB while
// offline, then drains them, once online, through tools/slowlink.mjs (64 kbit/s each
// way, 300 ms one-way latency, 5% of requests cut, and the first two for sure: the
// OPTIONS probe and the first batch). The page server proxies /v1/* to the slowlink,
// so the browser's requests cross it. Exactly once, gzipped, well under 60 s.
// The full-size run is scripts/slowlink-browser.mjs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { startSlowlink } from "../tools/slowlink.mjs";
import { Ledger, exactlyOnce, AIAUDIT_BIN, launchChromium, startPwaServer } from "./helpers.mjs";

const run = promisify(execFile);
let ledger, link, pwa, browser;

before(async () => {
  ledger = await Ledger.start();
  link = await startSlowlink({ upstream: `127.0.0.1:${ledger.port}`, kbps: 64, latencyMs: 300, drop: 0.05, dropFirst: 2 });
  pwa = await startPwaServer(link.url);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await pwa?.close();
  await link?.close();
  await ledger?.stop();
});

test("a PWA's 200 offline AI events drain through a 64 kbit/s, 300 ms, 5%-drop link exactly once, gzipped, in < 60 s", async (t) => {
  const N = 200;
  const token = await ledger.createToken("bench");
  const { stdout } = await run(AIAUDIT_BIN, ["bench", "--content", "ai", "--dump", "--events", String(N)], { maxBuffer: 64 << 20 });
  const events = stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
  const jsonBytes = Buffer.byteLength(stdout);
  assert.equal(events.length, N);

  const context = await browser.newContext();
  const trail = [];
  t.after(() => { if (t.passed === false) console.log(trail.join("\n")); });
  try {
    const page = await context.newPage();
    page.on("console", (m) => trail.push(`console.${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => trail.push(`pageerror: ${e.message}`));
    await page.goto(`${pwa.origin}/?sw=0&token=${encodeURIComponent(token)}`);
    await page.waitForFunction(() => window.t, null, { timeout: 20_000 });
    await context.setOffline(true);
    await page.evaluate(() => window.t.start({ maxBackoffMs: 2000, requestTimeoutMs: 20_000 }));
    const ids = await page.evaluate((evs) => window.t.emitEvents(evs), events);
    assert.equal((await page.evaluate(() => window.t.stats())).spooled, N);
    assert.equal(link.stats.bytesUp, 0, "nothing crossed the link while offline");

    const t0 = Date.now();
    await context.setOffline(false); // the `online` event wakes delivery
    await page.waitForFunction((n) => window.t.stats().acknowledged >= n && window.t.stats().spooled === 0, N, { timeout: 55_000, polling: 100 });
    const secs = (Date.now() - t0) / 1000;
    const s = await page.evaluate(() => window.t.stats());
    await page.evaluate(() => window.t.close());
    console.log(`# slowlink-browser: ${N} events in ${secs.toFixed(1)} s; JSON ${jsonBytes} bytes, up ${link.stats.bytesUp} ` +
      `(${(link.stats.bytesUp * 100 / jsonBytes).toFixed(1)} %), down ${link.stats.bytesDown}; requests ${link.stats.requests}, cut ${link.stats.drops}; ` +
      `emitter body bytes ${s.bytesSent} (uncompressed ${s.bytesUncompressed}), retries ${s.retries}, duplicates ${s.duplicates}`);
    assert.ok(secs < 60);
    assert.equal(s.rejected, 0);
    assert.ok(link.stats.drops >= 1 && pwa.stats.cut >= 1 && s.retries >= 1, "a request was cut and retried");
    assert.ok(pwa.stats.gzip >= 1, "the browser gzipped request bodies (CompressionStream)");
    assert.ok(s.bytesSent < s.bytesUncompressed / 2, `bodies compressed: ${s.bytesSent} of ${s.bytesUncompressed}`);
    assert.ok(link.stats.bytesUp < jsonBytes / 2, `up ${link.stats.bytesUp} bytes for ${jsonBytes} bytes of JSON`);
    const r = exactlyOnce(await ledger.waitEvents("bench", N), ids);
    assert.ok(r.ok, JSON.stringify(r).slice(0, 300));
    assert.ok((await ledger.verify()).ok, "aiaudit verify passes");
  } finally {
    await context.close();
  }
});
