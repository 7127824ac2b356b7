// The real `aiaudit serve` on a free loopback port, as sdk/python/tests/conftest.py
// runs it. Waiting is on observable conditions (health answers, sizes reached), never
// fixed sleeps.
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
export const REPO = new URL("../../../", import.meta.url).pathname;
export const AIAUDIT_BIN = process.env.AIAUDIT_BIN || join(REPO, "target/debug/aiaudit");
if (!existsSync(AIAUDIT_BIN)) throw new Error(`no aiaudit binary at ${AIAUDIT_BIN}: set AIAUDIT_BIN`);

const exitHooks = [];
process.on("exit", () => { for (const f of exitHooks.reverse()) f(); });
function atExit(f) { exitHooks.push(f); }

export function tempDir(name = "aiaudit-ts-") {
  const dir = mkdtempSync(join(tmpdir(), name));
  atExit(() => { if (!process.env.KEEP_TMP) rmSync(dir, { recursive: true, force: true }); });
  return dir;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export async function waitUntil(condition, what, { timeoutMs = 60_000, everyMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await condition();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export class Ledger {
  constructor(dataDir, port) {
    this.dataDir = dataDir;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.proc = null;
    this.token = "";
  }

  static async start(dataDir = join(tempDir(), "ledger")) {
    return new Ledger(dataDir, await freePort()).start();
  }

  async start() {
    let exited = null;
    // The suites count a tenant's entries exactly while they read them: the
    // ledger's access records (on by default) would count too.
    this.proc = spawn(AIAUDIT_BIN, ["serve", "--data-dir", this.dataDir, "--listen", `127.0.0.1:${this.port}`, "--publish-interval-ms", "200",
      "--access-log", "false"],
      { env: { ...process.env, AIAUDIT_LOG: "warn" }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    this.proc.stderr.on("data", (d) => { stderr = (stderr + d).slice(-4000); });
    this.proc.on("exit", (code) => { exited = code; });
    const proc = this.proc;
    await waitUntil(async () => {
      if (exited !== null) throw new Error(`aiaudit serve exited with ${exited}: ${stderr}`);
      try { return (await fetch(`${this.url}/healthz`)).status === 200; } catch { return false; }
    }, `the ledger at ${this.url}`);
    this.token = readFileSync(join(this.dataDir, "admin.token"), "utf8").trim();
    atExit(() => { try { proc.kill("SIGKILL"); } catch {} });
    return this;
  }

  async stop() {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const gone = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), 30_000);
    await gone;
    clearTimeout(t);
    this.proc = null;
  }

  async getJson(path, token = this.token) {
    const r = await fetch(`${this.url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
    if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status} ${await r.text()}`);
    return r.json();
  }

  async postJson(path, body, token = this.token) {
    const r = await fetch(`${this.url}${path}`, { method: "POST", headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }

  async cli(...args) {
    const { stdout } = await run(AIAUDIT_BIN, args, { maxBuffer: 64 << 20, timeout: 300_000 });
    return stdout;
  }

  async createToken(tenant, role = "emitter") {
    return (await this.cli("token", "create", "--url", this.url, "--token", this.token, "--tenant", tenant, "--role", role)).trim();
  }

  /** Registers an emitter's verifier key for `tenants`. */
  async registerEmitter(name, verifierKey, tenants) {
    const r = await this.postJson("/v1/emitters", { name, public_key: verifierKey, tenants });
    if (r.status !== 201) throw new Error(`registering ${name}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  }

  /** Every event of `tenant`, oldest first, once a checkpoint covers the log and the search index caught up. */
  async events(tenant) {
    const size = (await this.getJson("/v1/info")).sequenced_size;
    await waitUntil(async () => (await this.getJson("/v1/info")).size >= size, "a checkpoint over every event");
    const out = [];
    let cursor = null;
    for (;;) {
      let q = `/v1/events?tenant=${tenant}&order=asc&limit=1000`;
      if (cursor) q += `&cursor=${encodeURIComponent(cursor)}`;
      const page = await this.getJson(q);
      if (cursor === null && (page.index_lag_events ?? 0) > 0) {
        await waitUntil(async () => ((await this.getJson(q)).index_lag_events ?? 0) === 0, "the search index");
        continue;
      }
      out.push(...page.events);
      cursor = page.next_cursor;
      if (!cursor) return out;
    }
  }

  async waitEvents(tenant, n, timeoutMs = 60_000) {
    return waitUntil(async () => { const ev = await this.events(tenant); return ev.length >= n ? ev : null; }, `${n} events of ${tenant}`, { timeoutMs, everyMs: 200 });
  }

  /** `aiaudit verify --url` of the whole log against its own key file: the JSON report (throws on failure). */
  async verify() {
    const vkey = readFileSync(join(this.dataDir, "log.vkey"), "utf8").trim();
    return JSON.parse(await this.cli("verify", "--url", this.url, "--token", this.token, "--vkey", vkey, "--json"));
  }
}

export function event(i, tenant = "acme", extra = {}) {
  return { tenant, source: { name: "ts-test" }, actor: { id: "agent-7", type: "agent" }, action: "agent.decision", attributes: { n: i }, ...extra };
}

/** Asserts every id in `ids` appears exactly once among `events` (the ledger's search answers), and nothing else does. */
export function exactlyOnce(events, ids) {
  const counts = new Map();
  for (const e of events) counts.set(e.id, (counts.get(e.id) ?? 0) + 1);
  const missing = ids.filter((id) => !counts.has(id));
  const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  const extra = [...counts.keys()].filter((id) => !ids.includes(id));
  return { missing, twice, extra, ok: missing.length === 0 && twice.length === 0 && extra.length === 0 };
}

/**
 * A proxy in front of the ledger that refuses compressed request bodies with 415
 * (as a ledger or middlebox without compression support might) while still
 * advertising `Accept-Encoding: gzip`, and counts the body bytes it received.
 */
export async function refusingProxy(upstream) {
  const { createServer } = await import("node:http");
  const stats = { bodyBytes: 0, requests: 0, refused: 0 };
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    stats.bodyBytes += body.length;
    stats.requests++;
    const enc = req.headers["content-encoding"];
    if (enc && enc !== "identity") {
      stats.refused++;
      res.writeHead(415, { "content-type": "application/problem+json", "accept-encoding": "gzip" });
      return res.end('{"type":"urn:aiaudit:problem:unsupported-content-encoding","status":415}');
    }
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) if (!["host", "content-length", "connection"].includes(k)) headers[k] = v;
    const r = await fetch(upstream + req.url, { method: req.method, headers, body: req.method === "GET" ? undefined : body });
    const out = Buffer.from(await r.arrayBuffer());
    res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "application/json", "accept-encoding": "gzip" });
    res.end(out);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, stats, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}

/** Chromium flags for the browser tests (Debian's /usr/bin/chromium through playwright-core). */
export const BROWSER_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];

export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({ executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium", headless: true, args: BROWSER_FLAGS });
}

const pwaFile = (p) => readFileSync(new URL(p, import.meta.url));
const PWA_FILES = {
  "/": ["text/html", () => pwaFile("./pwa/index.html")],
  "/app.js": ["text/javascript", () => pwaFile("./pwa/app.js")],
  "/sw.js": ["text/javascript", () => pwaFile("./pwa/sw.js")],
  "/manifest.webmanifest": ["application/manifest+json", () => pwaFile("./pwa/manifest.webmanifest")],
  "/emitter.js": ["text/javascript", () => pwaFile("../dist/aiaudit-emitter.browser.js")],
};

/**
 * The test PWA (test/pwa/) on a loopback port, whose server proxies /v1/* to `upstream`
 * (the ledger, or a slowlink in front of it) so the page's requests are same-origin
 * (the ledger answers no CORS preflight). When the upstream connection fails (a cut
 * link), the page's connection is cut too, rather than answered with a 502: the
 * browser sees the failure a direct connection would. Counts requests, gzipped ones,
 * and the request body bytes the page sent.
 */
export async function startPwaServer(upstream) {
  const { createServer } = await import("node:http");
  const stats = { requests: 0, gzip: 0, bodyBytes: 0, cut: 0 };
  const server = createServer(async (req, res) => {
    const path = req.url.split("?")[0];
    if (path.startsWith("/v1/")) {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const body = Buffer.concat(chunks);
      const headers = {};
      for (const k of ["authorization", "content-type", "content-encoding", "aiaudit-emitter", "aiaudit-signature", "aiaudit-signature-format"])
        if (req.headers[k]) headers[k] = req.headers[k];
      stats.requests++;
      stats.bodyBytes += body.length;
      if (req.headers["content-encoding"] === "gzip") stats.gzip++;
      try {
        const r = await fetch(upstream + req.url, { method: req.method, headers, body: req.method === "GET" || req.method === "HEAD" ? undefined : body });
        const answer = Buffer.from(await r.arrayBuffer());
        const out = {};
        for (const k of ["content-type", "accept-encoding", "retry-after"]) if (r.headers.get(k)) out[k] = r.headers.get(k);
        res.writeHead(r.status, out);
        res.end(answer);
      } catch {
        stats.cut++;
        res.socket?.destroy();
      }
      return;
    }
    const f = PWA_FILES[path];
    if (!f) { res.writeHead(404); return res.end(); }
    res.writeHead(200, { "content-type": f[0], "cache-control": "no-store" });
    res.end(f[1]());
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    origin: `http://127.0.0.1:${server.address().port}`, stats,
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}
