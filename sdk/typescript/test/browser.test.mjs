// The browser emitter in Debian's Chromium (playwright-core), in a small PWA served on
// loopback whose server proxies /v1/* to the ledger (the ledger answers no CORS
// preflight). The page emits, goes offline, keeps emitting, reloads (the service
// worker serves the shell from its cache), is closed and reopened, comes back online:
// every event lands exactly once. Then, with no page open, the service worker drains
// the spool on a Background Sync event. `aiaudit verify` passes at the end.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { Ledger, event, exactlyOnce, waitUntil } from "./helpers.mjs";

const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];
const T = 20_000;
const file = (p) => readFileSync(new URL(p, import.meta.url));
const FILES = {
  "/": ["text/html", () => file("./pwa/index.html")],
  "/app.js": ["text/javascript", () => file("./pwa/app.js")],
  "/sw.js": ["text/javascript", () => file("./pwa/sw.js")],
  "/manifest.webmanifest": ["application/manifest+json", () => file("./pwa/manifest.webmanifest")],
  "/emitter.js": ["text/javascript", () => file("../dist/aiaudit-emitter.browser.js")],
};

let ledger, server, origin, browser;
const proxied = { requests: 0, gzip: 0 };

before(async () => {
  ledger = await Ledger.start();
  server = createServer(async (req, res) => {
    const path = req.url.split("?")[0];
    if (path.startsWith("/v1/")) {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const headers = {};
      for (const k of ["authorization", "content-type", "content-encoding", "aiaudit-emitter", "aiaudit-signature", "aiaudit-signature-format"])
        if (req.headers[k]) headers[k] = req.headers[k];
      proxied.requests++;
      if (req.headers["content-encoding"] === "gzip") proxied.gzip++;
      try {
        const r = await fetch(ledger.url + req.url, { method: req.method, headers, body: req.method === "GET" ? undefined : Buffer.concat(chunks) });
        const out = {};
        for (const k of ["content-type", "accept-encoding", "retry-after"]) if (r.headers.get(k)) out[k] = r.headers.get(k);
        res.writeHead(r.status, out);
        res.end(Buffer.from(await r.arrayBuffer()));
      } catch (e) {
        res.writeHead(502);
        res.end(String(e));
      }
      return;
    }
    const f = FILES[path];
    if (!f) { res.writeHead(404); return res.end(); }
    res.writeHead(200, { "content-type": f[0], "cache-control": "no-store" });
    res.end(f[1]());
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  origin = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: FLAGS });
});

after(async () => {
  await browser?.close();
  server?.closeAllConnections?.();
  await new Promise((r) => server ? server.close(r) : r());
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
