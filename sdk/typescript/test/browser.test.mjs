// The browser emitter in Debian's Chromium (playwright-core), in a small PWA served on
// loopback whose server proxies /v1/* to the ledger (the ledger answers no CORS
// preflight). The page emits, goes offline, keeps emitting, reloads (the service
// worker serves the shell from its cache), is closed and reopened, comes back online:
// every event lands exactly once. Then, with no page open, the service worker drains
// the spool on a Background Sync event. `aiaudit verify` passes at the end.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Ledger, event, exactlyOnce, waitUntil, launchChromium, startPwaServer } from "./helpers.mjs";

const T = 20_000;

let ledger, pwa, origin, browser, proxied;

before(async () => {
  ledger = await Ledger.start();
  pwa = await startPwaServer(ledger.url);
  origin = pwa.origin;
  proxied = pwa.stats;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await pwa?.close();
  await ledger?.stop();
});

function watch(page, trail) {
  page.on("console", (m) => trail.push(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => trail.push(`pageerror: ${e.message}`));
}

test("a PWA emits online, offline, across a reload and a reopened page; everything lands exactly once", async (t) => {
  const token = await ledger.createToken("t-pwa");
  const context = await browser.newContext();
  const trail = [];
  t.after(() => { if (t.passed === false) console.log(trail.join("\n")); });
  try {
    let page = await context.newPage();
    watch(page, trail);
    await page.goto(`${origin}/?token=${encodeURIComponent(token)}`);
    await page.waitForFunction(() => window.t, null, { timeout: T });
    await page.evaluate(() => window.t.start());
    // The service worker controls the page (and has cached the shell) before we go offline.
    await page.waitForFunction(() => window.t.swReady(), null, { timeout: T });
    const ids = [];
    ids.push(...await page.evaluate(() => window.t.emit("online", 0, 20)));
    assert.equal(await page.evaluate(() => window.t.flush(10000)), true);

    await context.setOffline(true);
    ids.push(...await page.evaluate(() => window.t.emit("offline", 0, 30)));
    assert.equal(await page.evaluate(() => window.t.flush(500)), false);
    assert.equal((await page.evaluate(() => window.t.stats())).spooled, 30);

    // Reload while offline: the service worker serves the shell; the spool is still there.
    await page.reload();
    await page.waitForFunction(() => window.t, null, { timeout: T });
    assert.equal((await page.evaluate(() => window.t.start())).spooled, 30);
    ids.push(...await page.evaluate(() => window.t.emit("reloaded", 0, 20)));

    // Close the tab and open the app again, still offline.
    await page.close();
    page = await context.newPage();
    watch(page, trail);
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => window.t, null, { timeout: T });
    assert.equal((await page.evaluate(() => window.t.start())).spooled, 50);
    ids.push(...await page.evaluate(() => window.t.emit("reopened", 0, 10)));
    assert.equal((await page.evaluate(() => window.t.stats())).spooled, 60);

    // Back online: the `online` event wakes delivery (no flush called).
    await context.setOffline(false);
    await page.waitForFunction(() => window.t.stats().spooled === 0, null, { timeout: 30_000, polling: 100 });
    assert.ok(await page.evaluate(() => window.t.onlineEvents()) >= 1, "the page saw the online event");
    const s = await page.evaluate(() => window.t.stats());
    console.log(`# browser: ${JSON.stringify(s)}`);
    assert.equal(s.rejected, 0);
    await page.evaluate(() => window.t.close());
    await page.close();

    const got = await ledger.waitEvents("t-pwa", ids.length);
    const r = exactlyOnce(got, ids);
    assert.ok(r.ok, JSON.stringify(r).slice(0, 400));
    assert.equal(ids.length, 80);

    // With no page open, the service worker drains what a page left offline: Background Sync.
    await context.setOffline(true);
    page = await context.newPage();
    watch(page, trail);
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => window.t, null, { timeout: T });
    await page.evaluate(() => window.t.start());
    const swIds = await page.evaluate(() => window.t.emit("sw", 0, 10));
    await page.evaluate(() => window.t.close());
    await page.close();
    await context.setOffline(false);
    const blank = await context.newPage();
    const cdp = await context.newCDPSession(blank);
    const regs = new Promise((resolve) => cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => {
      const reg = e.registrations.find((x) => x.scopeURL === `${origin}/` && !x.isDeleted);
      if (reg) resolve(reg);
    }));
    await cdp.send("ServiceWorker.enable");
    const reg = await regs;
    await cdp.send("ServiceWorker.dispatchSyncEvent", { origin, registrationId: reg.registrationId, tag: "aiaudit-emitter-flush", lastChance: false });
    const all = await ledger.waitEvents("t-pwa", 90, 30_000);
    const r2 = exactlyOnce(all, [...ids, ...swIds]);
    assert.ok(r2.ok, JSON.stringify(r2).slice(0, 400));
    assert.ok(proxied.gzip > 0, "the browser gzipped request bodies (CompressionStream)");
    assert.ok(await ledger.verify(), "aiaudit verify passes");
  } finally {
    await context.close();
  }
});
