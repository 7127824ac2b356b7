import { EmitterClosed, InvalidEvent, SpoolFull } from "./errors.js";
import { plainJson, utf8, utf8Length } from "./json.js";
import { SigningKey } from "./sign.js";
import type { Spool, SpoolRecord } from "./spool.js";
import { uuidv7 } from "./uuid.js";
import { eventErrors, DEFAULT_MAX_EVENT_BYTES } from "./validate.js";

export type AuditEvent = Record<string, unknown>;

export interface EmitterOptions {
  /** Base URL of the ledger (`http://127.0.0.1:7381`); events go to `<url>/v1/events`. */
  url: string;
  /** Bearer token of an emitter (or admin) role. */
  token?: string;
  /** Node: directory of the file spool (memory only when absent). Browsers: the IndexedDB spool's name (default "default"). */
  spoolDir?: string;
  /** Sign every request (aiaudit-batch-v2) with this registered emitter key: a SigningKey, the `PRIVATE+KEY+...` text, or (Node) the path of a key file. */
  signingKey?: SigningKey | string;
  /** When the spool is at maxSpoolBytes: "block" (default) waits for room, "drop" throws SpoolFull and counts the event. */
  onFull?: "block" | "drop";
  /** Bound of the spool in bytes of NDJSON (default 1 GiB in Node, 256 MiB in browsers). */
  maxSpoolBytes?: number;
  /** Largest event, in bytes of canonical JSON (default 16 MiB, the ledger's default). */
  maxEventBytes?: number;
  /** Most events per spooled record (default 1000; the ledger takes at least 1000 per request). */
  recordMaxEvents?: number;
  /** Most bytes per request (default 256 KiB; a larger record goes alone). */
  requestMaxBytes?: number;
  /** Most spooled records per request (default 64). */
  requestMaxRecords?: number;
  /** Longest backoff between retries (default 30 s). */
  maxBackoffMs?: number;
  /** Request timeout (default 30 s). */
  requestTimeoutMs?: number;
  /** "auto" (default): gzip once the ledger advertises it (Accept-Encoding / content_encodings); "gzip": from the start; "none": never. */
  compression?: "auto" | "gzip" | "none";
  /** Fields merged under every event (`tenant`, `source`, `actor`, ...). */
  defaults?: AuditEvent;
  /** The fetch to use (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Called with delivery errors (the events stay spooled and are retried). */
  onError?: (error: Error) => void;
}

export interface EmitterStats {
  /** Emitted, waiting to be written to the spool. */
  queued: number;
  /** In the spool, waiting for the ledger's acknowledgement. */
  spooled: number;
  /** Acknowledged by the ledger (including duplicates of events it already held). */
  acknowledged: number;
  /** Refused by the ledger for good (set aside). */
  rejected: number;
  /** Refused at emit because the spool was full (onFull "drop"). */
  dropped: number;
  /** Events the ledger already held (a retry after a lost answer). */
  duplicates: number;
  /** Failed delivery attempts. */
  retries: number;
  /** Request body bytes put on the wire (after compression). */
  bytesSent: number;
  /** The same bodies' bytes before compression. */
  bytesUncompressed: number;
  /** Requests answered by the ledger (whatever the status). */
  requests: number;
  /** Whether request bodies are being gzipped. */
  compressing: boolean;
  /** Why the last delivery attempt failed, until one succeeds. */
  lastError: string | null;
}

/** What the platform (Node or browser) provides. */
export interface Platform {
  openSpool(opts: EmitterOptions): Promise<Spool>;
  gzip(data: Uint8Array): Promise<Uint8Array>;
  defaultMaxSpoolBytes: number;
  /** Subscribes to "the network is back" (browsers' `online`); returns an unsubscribe. */
  onOnline?(wake: () => void): () => void;
  /** Called after a failed attempt (browsers: ask for Background Sync). */
  onDeliveryFailed?(): void;
  loadSigningKey?(key: string): Promise<SigningKey>;
}

type Outcome =
  | { kind: "ok"; duplicates: number }
  | { kind: "refused"; why: string; status: number }
  | { kind: "retry"; why: string; retryAfterMs?: number };

interface PendingEmit { line: string; bytes: number; resolve: () => void; reject: (e: Error) => void }

const MAX_RETRY_AFTER_MS = 300_000;
const COMPRESS_MIN_BYTES = 256;

export class EmitterCore {
  readonly #opts: Required<Pick<EmitterOptions, "onFull" | "maxEventBytes" | "recordMaxEvents" | "requestMaxBytes" | "requestMaxRecords" | "maxBackoffMs" | "requestTimeoutMs" | "compression">> & EmitterOptions;
  readonly #platform: Platform;
  readonly #endpoint: string;
  readonly #maxSpoolBytes: number;
  readonly #fetch: typeof fetch;
  #spool!: Spool;
  #signer: SigningKey | null = null;
  readonly #ready: Promise<void>;
  #openError: Error | null = null;
  #pending: PendingEmit[] = [];
  #pendingBytes = 0;
  #writing = false;
  #closed = false;
  #stopped = false;
  #gzip = false;
  #gzipRefused = false;
  #probed = false;
  #attempt = 0;
  #loop: Promise<void> | null = null;
  #waiters: (() => void)[] = []; // woken on any progress (acks, writes)
  #idleWake: (() => void) | null = null; // the delivery loop, idle
  #backoffWake: (() => void) | null = null; // the delivery loop, backing off
  #inflight: AbortController | null = null;
  #unsubscribe: (() => void) | null = null;
  readonly #stats = { acknowledged: 0, rejected: 0, dropped: 0, duplicates: 0, retries: 0, bytesSent: 0, bytesUncompressed: 0, requests: 0 };
  #lastError: string | null = null;

  constructor(options: EmitterOptions, platform: Platform) {
    if (!options || typeof options.url !== "string" || !/^https?:\/\//.test(options.url)) throw new TypeError("options.url must be an http(s) URL");
    this.#opts = {
      onFull: "block", maxEventBytes: DEFAULT_MAX_EVENT_BYTES, recordMaxEvents: 1000, requestMaxBytes: 256 * 1024,
      requestMaxRecords: 64, maxBackoffMs: 30_000, requestTimeoutMs: 30_000, compression: "auto", ...options,
    };
    if (this.#opts.onFull !== "block" && this.#opts.onFull !== "drop") throw new TypeError('onFull is "block" or "drop"');
    this.#platform = platform;
    this.#endpoint = options.url.replace(/\/+$/, "") + "/v1/events";
    this.#maxSpoolBytes = options.maxSpoolBytes ?? platform.defaultMaxSpoolBytes;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#gzip = this.#opts.compression === "gzip";
    this.#ready = this.#open();
    this.#ready.catch(() => {});
  }

  async #open(): Promise<void> {
    try {
      const k = this.#opts.signingKey;
      if (k instanceof SigningKey) this.#signer = k;
      else if (typeof k === "string") this.#signer = this.#platform.loadSigningKey ? await this.#platform.loadSigningKey(k) : SigningKey.parse(k);
      this.#spool = await this.#platform.openSpool(this.#opts);
    } catch (e) {
      this.#openError = e as Error;
      throw e;
    }
    this.#unsubscribe = this.#platform.onOnline?.(() => this.#nudge()) ?? null;
    // The content codings the ledger decodes are learnt before the first batch (#send).
    this.#loop = this.#deliveryLoop();
  }

  /** Resolves once the spool is open (rejects with SpoolFailure when it cannot be). */
  ready(): Promise<void> {
    return this.#ready;
  }

  /**
   * Validates the event, fills `id` (UUIDv7) and `time` when absent, and writes it
   * durably to the spool. Resolves with the id; never waits on the network.
   */
  async emit(event: AuditEvent): Promise<string> {
    if (this.#closed) throw new EmitterClosed("the emitter is closed");
    const copy = plainJson(event) as AuditEvent;
    if (copy === null || typeof copy !== "object" || Array.isArray(copy)) throw new InvalidEvent([{ field: "", pointer: "", detail: "an event is a JSON object" }]);
    const defaults = this.#opts.defaults ? (plainJson(this.#opts.defaults) as AuditEvent) : {};
    const ev: AuditEvent = { ...defaults, ...copy };
    if (ev.id === undefined) ev.id = uuidv7();
    if (ev.time === undefined) ev.time = new Date().toISOString();
    const errs = eventErrors(ev, { maxEventBytes: this.#opts.maxEventBytes });
    if (errs.length) throw new InvalidEvent(errs);
    const line = JSON.stringify(ev) + "\n";
    const bytes = utf8Length(line);
    await this.#ready;
    await this.#room(bytes);
    await new Promise<void>((resolve, reject) => {
      this.#pending.push({ line, bytes, resolve, reject });
      this.#pendingBytes += bytes;
      void this.#write();
    });
    return ev.id as string;
  }

  async #room(bytes: number): Promise<void> {
    const full = () => this.#spool.pendingBytes + this.#pendingBytes + bytes > this.#maxSpoolBytes;
    if (!full()) return;
    if (bytes > this.#maxSpoolBytes || this.#opts.onFull === "drop") {
      this.#stats.dropped++;
      throw new SpoolFull(`the spool is full (${this.#maxSpoolBytes} bytes); the event was dropped`);
    }
    while (full()) {
      if (this.#closed) throw new EmitterClosed("the emitter was closed while emit waited for room");
      await this.#progress();
    }
  }

  // Group commit: what was emitted while a write was in progress goes in the next record.
  async #write(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (this.#pending.length) {
        const batch = this.#pending.splice(0, this.#opts.recordMaxEvents);
        const bytes = batch.reduce((n, p) => n + p.bytes, 0);
        try {
          await this.#spool.append(batch.map((p) => p.line).join(""), batch.length, bytes);
          this.#pendingBytes -= bytes;
          for (const p of batch) p.resolve();
        } catch (e) {
          this.#pendingBytes -= bytes;
          for (const p of batch) p.reject(e as Error);
        }
        this.#wakeAll();
        this.#idleWake?.();
      }
    } finally {
      this.#writing = false;
    }
  }

  #progress(): Promise<void> {
    return new Promise((r) => this.#waiters.push(r));
  }
  #wakeAll() {
    const ws = this.#waiters;
    this.#waiters = [];
    for (const w of ws) w();
  }
  /** Retry now: the network is back, or a flush asks. */
  #nudge() {
    this.#attempt = 0;
    this.#backoffWake?.();
    this.#idleWake?.();
  }

  async #deliveryLoop(): Promise<void> {
    while (!this.#stopped) {
      let recs: SpoolRecord[];
      try {
        recs = await this.#spool.peek(this.#opts.requestMaxRecords, this.#opts.requestMaxBytes);
      } catch (e) {
        this.#fail(`reading the spool: ${(e as Error).message}`);
        await this.#backoff(undefined);
        continue;
      }
      if (recs.length === 0) {
        this.#wakeAll();
        await new Promise<void>((r) => { this.#idleWake = r; });
        this.#idleWake = null;
        continue;
      }
      let done: { ok: boolean; retryAfterMs?: number };
      try {
        done = await this.#deliver(recs);
      } catch (e) {
        // The spool failed under us (disk full, a closed database): keep the records, try again later.
        this.#fail(`delivering: ${(e as Error).message}`);
        done = { ok: false };
      }
      if (!done.ok) {
        if (this.#stopped) break;
        this.#stats.retries++;
        this.#platform.onDeliveryFailed?.();
        await this.#backoff(done.retryAfterMs);
      } else {
        this.#attempt = 0;
      }
    }
  }

  /** Delivers records in order; on a refusal, record by record, then event by event. */
  async #deliver(recs: SpoolRecord[]): Promise<{ ok: boolean; retryAfterMs?: number }> {
    const out = await this.#send(recs.map((r) => r.body).join(""));
    if (out.kind === "ok") {
      await this.#acked(recs, recs.reduce((n, r) => n + r.count, 0), out.duplicates, 0);
      return { ok: true };
    }
    if (out.kind === "retry") { this.#fail(out.why); return { ok: false, retryAfterMs: out.retryAfterMs }; }
    if (recs.length > 1) {
      for (const r of recs) {
        const one = await this.#deliver([r]);
        if (!one.ok) return one;
      }
      return { ok: true };
    }
    // One record refused: find the events the ledger refuses, deliver the others.
    const rec = recs[0]!;
    const lines = rec.body.split("\n").filter((l) => l.trim() !== "");
    let delivered = 0, duplicates = 0;
    const refused: { line: string; why: string }[] = [];
    if (lines.length === 1) refused.push({ line: lines[0]!, why: out.why });
    else {
      for (const line of lines) {
        const o = await this.#send(line + "\n");
        if (o.kind === "ok") { delivered++; duplicates += o.duplicates; }
        else if (o.kind === "refused") refused.push({ line, why: o.why });
        else { this.#fail(o.why); return { ok: false, retryAfterMs: o.retryAfterMs }; }
      }
    }
    for (const r of refused) {
      await this.#spool.setAside(r.line + "\n", r.why);
      this.#opts.onError?.(new Error(`the ledger refused an event; set aside: ${r.why}`));
    }
    await this.#acked(recs, delivered, duplicates, refused.length);
    return { ok: true };
  }

  async #acked(recs: SpoolRecord[], delivered: number, duplicates: number, rejected: number) {
    await this.#spool.ack(recs);
    this.#stats.acknowledged += delivered;
    this.#stats.duplicates += duplicates;
    this.#stats.rejected += rejected;
    this.#lastError = null;
    this.#wakeAll();
  }

  #fail(why: string) {
    this.#lastError = why;
    this.#opts.onError?.(new Error(why));
  }

  async #backoff(retryAfterMs: number | undefined): Promise<void> {
    const attempt = this.#attempt++;
    const base = Math.min(100 * 2 ** Math.min(attempt, 30), this.#opts.maxBackoffMs);
    let wait = base * (0.5 + 0.5 * Math.random());
    if (retryAfterMs !== undefined) wait = Math.max(wait, Math.min(retryAfterMs, MAX_RETRY_AFTER_MS) * (1 + 0.5 * Math.random()));
    await new Promise<void>((r) => {
      const t = setTimeout(r, wait);
      this.#backoffWake = () => { clearTimeout(t); r(); };
    });
    this.#backoffWake = null;
  }

  async #send(ndjson: string, allowGzip = true): Promise<Outcome> {
    const raw = utf8(ndjson);
    const headers: Record<string, string> = { "Content-Type": "application/x-ndjson" };
    if (this.#opts.token) headers["Authorization"] = `Bearer ${this.#opts.token}`;
    if (this.#signer) {
      const events = ndjson.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
      Object.assign(headers, await this.#signer.headers(events));
    }
    if (allowGzip && this.#opts.compression === "auto" && !this.#probed) {
      // Ask before the first batch (OPTIONS /v1/events, RFC 7694): an uncompressed first
      // batch could cost a slow link a minute, and an older ledger must never get a
      // compressed one.
      const why = await this.#learnEncodings();
      if (why) return { kind: "retry", why };
    }
    let body = raw;
    const compressed = allowGzip && this.#gzip && raw.length >= COMPRESS_MIN_BYTES;
    if (compressed) {
      body = await this.#platform.gzip(raw);
      headers["Content-Encoding"] = "gzip";
    }
    const ctl = new AbortController();
    this.#inflight = ctl;
    const timer = setTimeout(() => ctl.abort(new Error(`no answer in ${this.#opts.requestTimeoutMs} ms`)), this.#opts.requestTimeoutMs);
    let resp: Response;
    let text: string;
    try {
      // acks=summary: counts, not an entry per event (the answer crosses the link too);
      // a ledger older than it answers in full.
      resp = await this.#fetch(`${this.#endpoint}?acks=summary`, { method: "POST", headers, body: body as BodyInit, signal: ctl.signal });
      // Counted once the ledger answered (the body crossed).
      this.#stats.requests++;
      this.#stats.bytesSent += body.length;
      this.#stats.bytesUncompressed += raw.length;
      text = await resp.text();
    } catch (e) {
      const err = e as Error & { cause?: Error };
      return { kind: "retry", why: `POST ${this.#endpoint}: ${err.message}${err.cause ? `: ${err.cause.message ?? err.cause}` : ""}` };
    } finally {
      clearTimeout(timer);
      this.#inflight = null;
    }
    this.#noteEncodings(resp.headers.get("accept-encoding"));
    if (resp.ok) {
      let duplicates = 0;
      try {
        const j = JSON.parse(text) as { duplicates?: number; events?: { duplicate?: boolean }[] };
        duplicates = typeof j.duplicates === "number" ? j.duplicates : (j.events ?? []).filter((e) => e.duplicate).length;
      } catch {}
      return { kind: "ok", duplicates };
    }
    const detail = problemDetail(text);
    if (compressed && resp.status === 415) {
      // Something on the way does not take compressed bodies: identity from now on.
      this.#gzip = false;
      this.#gzipRefused = true;
      return this.#send(ndjson, false);
    }
    if ([400, 403, 413, 415, 422].includes(resp.status)) return { kind: "refused", status: resp.status, why: `HTTP ${resp.status}${detail}` };
    const ra = resp.headers.get("retry-after");
    let retryAfterMs: number | undefined;
    if (ra && /^\d+$/.test(ra.trim())) retryAfterMs = Number(ra.trim()) * 1000;
    else if (ra && !Number.isNaN(Date.parse(ra))) retryAfterMs = Math.max(0, Date.parse(ra) - Date.now());
    return { kind: "retry", why: `HTTP ${resp.status}${detail}`, retryAfterMs };
  }

  #noteEncodings(header: string | null) {
    if (!header || this.#opts.compression !== "auto" || this.#gzipRefused) return;
    const codings = header.split(",").map((s) => s.trim().split(";")[0]!.toLowerCase());
    if (codings.includes("gzip")) this.#gzip = true;
  }

  /** `OPTIONS /v1/events`: the codings the ledger decodes, in `Accept-Encoding` (no token
   * sent). Returns why it failed when the ledger could not be reached, else nothing. */
  async #learnEncodings(): Promise<string | undefined> {
    try {
      const r = await this.#fetch(this.#endpoint, { method: "OPTIONS", signal: AbortSignal.timeout(this.#opts.requestTimeoutMs) });
      await r.arrayBuffer().catch(() => undefined);
      // A proxy's 502 or a busy server says nothing about what the ledger decodes: ask
      // again before sending, rather than send the first batches uncompressed.
      if (r.status >= 500 || r.status === 429) return `OPTIONS ${this.#endpoint}: HTTP ${r.status}`;
      this.#noteEncodings(r.headers.get("accept-encoding"));
      this.#probed = true;
      return undefined;
    } catch (e) {
      return `OPTIONS ${this.#endpoint}: ${(e as Error).message}`;
    }
  }

  /** Tells the emitter which encodings the ledger takes (GET /v1/info `content_encodings`). */
  noteContentEncodings(codings: string[]) {
    this.#noteEncodings(codings.join(","));
  }

  stats(): EmitterStats {
    const s = this.#spool;
    return {
      queued: this.#pending.length,
      spooled: s ? s.pendingEvents : 0,
      ...this.#stats,
      compressing: this.#gzip,
      lastError: this.#lastError,
    };
  }

  get lastError(): string | null {
    return this.#lastError;
  }

  /** True once everything emitted so far is acknowledged (or set aside); false when `timeoutMs` passes first. */
  async flush(opts: { timeoutMs?: number } = {}): Promise<boolean> {
    await this.#ready;
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    this.#nudge();
    let first = true;
    while (true) {
      if (this.#pending.length === 0 && !this.#writing && this.#spool.pendingEvents === 0) {
        // The spool may hold records another tab or process wrote: peek to be sure.
        const more = await this.#spool.peek(1, 1);
        if (more.length === 0) return true;
      }
      if (this.#stopped) return false;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      if (!first) this.#idleWake?.();
      first = false;
      let t: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.#progress(), new Promise<void>((r) => { t = setTimeout(r, Math.min(left, 250)); })]);
      clearTimeout(t);
    }
  }

  /**
   * Tries to deliver for up to `timeoutMs` (default 5 s; 0 to stop at once), then
   * stops; what is not delivered stays spooled for the next Emitter on the spool.
   */
  async close(opts: { timeoutMs?: number } = {}): Promise<boolean> {
    if (this.#closed && this.#stopped) return false;
    let delivered = false;
    try { await this.#ready; } catch { this.#closed = this.#stopped = true; return false; }
    const timeoutMs = opts.timeoutMs ?? 5_000;
    if (timeoutMs > 0) delivered = await this.flush({ timeoutMs });
    else await this.#drainWrites();
    this.#closed = true;
    await this.#drainWrites();
    this.#stopped = true;
    this.#unsubscribe?.();
    this.#inflight?.abort(new Error("the emitter is closing"));
    this.#backoffWake?.();
    this.#idleWake?.();
    this.#wakeAll();
    await this.#loop;
    await this.#spool.close();
    return delivered;
  }

  async #drainWrites() {
    while (this.#pending.length || this.#writing) await this.#progress();
  }
}

function problemDetail(text: string): string {
  try {
    const j = JSON.parse(text) as { detail?: string; errors?: { pointer?: string; detail?: string }[] };
    let d = j.detail ? `: ${j.detail.slice(0, 300)}` : "";
    if (j.errors?.length) d += ` (${j.errors.slice(0, 3).map((e) => `${e.pointer}: ${e.detail}`).join("; ")})`;
    return d;
  } catch {
    return text ? `: ${text.slice(0, 300)}` : "";
  }
}
