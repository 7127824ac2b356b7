// The browser (and service worker) entry of @aiaudit/emitter: an IndexedDB spool,
// CompressionStream gzip, `online` events and Background Sync.
import { EmitterCore, type EmitterOptions, type Platform } from "./core.js";
import { IdbSpool } from "./spool-idb.js";

export * from "./common.js";
export { IdbSpool, spoolDatabaseName } from "./spool-idb.js";

/** The Background Sync tag the emitter registers after a failed delivery. */
export const SYNC_TAG = "aiaudit-emitter-flush";

async function gzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as BlobPart]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const browserPlatform: Platform = {
  defaultMaxSpoolBytes: 256 * 1024 * 1024,
  openSpool: (opts: EmitterOptions) => IdbSpool.open(opts.spoolDir ?? "default"),
  gzip,
  onOnline(wake) {
    const g = globalThis as unknown as EventTarget & { addEventListener?: EventTarget["addEventListener"] };
    if (typeof g.addEventListener !== "function") return () => {};
    g.addEventListener("online", wake);
    return () => g.removeEventListener("online", wake);
  },
  onDeliveryFailed() {
    // Ask the service worker (if any) to retry when connectivity returns, even after this page is gone.
    const sw = (globalThis as any).navigator?.serviceWorker;
    const reg = (globalThis as any).registration; // inside a service worker
    const register = (r: any) => r?.sync?.register?.(SYNC_TAG).catch(() => {});
    if (reg) register(reg);
    else if (sw?.controller) sw.ready.then(register).catch(() => {});
  },
};

/**
 * Emits audit events to the ledger through an IndexedDB spool (works in pages,
 * workers and service workers).
 */
export class Emitter extends EmitterCore {
  constructor(options: EmitterOptions) {
    super(options, browserPlatform);
  }
}

/**
 * Delivers what the spool holds, for a service worker's `sync` event (or any
 * wake-up): opens an Emitter on the spool, flushes, closes. Resolves true when
 * everything was delivered; rejects otherwise so that the browser retries the sync.
 *
 * ```js
 * self.addEventListener("sync", (e) => {
 *   if (e.tag === SYNC_TAG) e.waitUntil(drainSpool({ url, token, spoolDir: "app" }));
 * });
 * ```
 */
export async function drainSpool(options: EmitterOptions, timeoutMs = 25_000): Promise<boolean> {
  const em = new Emitter(options);
  const ok = await em.flush({ timeoutMs });
  await em.close({ timeoutMs: 0 });
  if (!ok) throw new Error(`not everything was delivered: ${em.lastError ?? "timed out"}`);
  return true;
}

/** Registers `drainSpool` for Background Sync in a service worker (`self`). */
export function handleBackgroundSync(scope: { addEventListener(type: "sync", cb: (e: any) => void): void }, options: EmitterOptions) {
  scope.addEventListener("sync", (e: any) => {
    if (e.tag === SYNC_TAG) e.waitUntil(drainSpool(options));
  });
}
