// The IndexedDB spool of the browser emitter: one database per spool name, records
// in an auto-increment store written in "strict" durability transactions (flushed to
// disk before they complete), so they survive reloads, tab kills and days offline.
import { SpoolFailure } from "./errors.js";
import type { Spool, SpoolRecord } from "./spool.js";

const STORE = "records";

/** A stored record: `gz`, the NDJSON as gzip (where the platform has
 * CompressionStream), or `body`, the NDJSON itself (earlier records, or no
 * CompressionStream). `bytes` is the NDJSON's size either way. */
interface Stored {
  key: number;
  gz?: Uint8Array;
  body?: string;
  count: number;
  bytes: number;
}

async function through(data: Uint8Array, stream: GenericTransformStream): Promise<Uint8Array> {
  const out = new Response(new Blob([data as BlobPart]).stream().pipeThrough(stream));
  return new Uint8Array(await out.arrayBuffer());
}
const REJECTED = "rejected";

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("transaction aborted"));
  });
}

export function spoolDatabaseName(name: string) {
  return `aiaudit-spool:${name}`;
}

export class IdbSpool implements Spool {
  #db: IDBDatabase;
  pendingEvents = 0;
  pendingBytes = 0;

  private constructor(db: IDBDatabase) {
    this.#db = db;
  }

  static async open(name = "default"): Promise<IdbSpool> {
    if (typeof indexedDB === "undefined") throw new SpoolFailure("no IndexedDB here");
    const open = indexedDB.open(spoolDatabaseName(name), 1);
    open.onupgradeneeded = () => {
      const db = open.result;
      if (!db.objectStoreNames.contains(STORE)) db.createObjectStore(STORE, { keyPath: "key", autoIncrement: true });
      if (!db.objectStoreNames.contains(REJECTED)) db.createObjectStore(REJECTED, { autoIncrement: true });
    };
    let db: IDBDatabase;
    try {
      db = await req(open);
    } catch (e) {
      throw new SpoolFailure(`cannot open the IndexedDB spool ${name}: ${(e as Error)?.message ?? e}`);
    }
    const s = new IdbSpool(db);
    await s.#recount();
    return s;
  }

  #tx(stores: string[], mode: IDBTransactionMode) {
    return this.#db.transaction(stores, mode, { durability: "strict" } as IDBTransactionOptions);
  }

  async #recount() {
    const all = (await req(this.#tx([STORE], "readonly").objectStore(STORE).getAll())) as Stored[];
    this.pendingEvents = all.reduce((n, r) => n + r.count, 0);
    this.pendingBytes = all.reduce((n, r) => n + r.bytes, 0);
  }

  async append(body: string, count: number, bytes: number): Promise<void> {
    // Compressed before the transaction (it must not wait on anything else): a phone
    // has little room, and batches of AI events take about a sixth of their JSON.
    const record: Omit<Stored, "key"> =
      typeof CompressionStream === "function"
        ? { gz: await through(new TextEncoder().encode(body), new CompressionStream("gzip")), count, bytes }
        : { body, count, bytes };
    const tx = this.#tx([STORE], "readwrite");
    tx.objectStore(STORE).add(record);
    await done(tx);
    this.pendingEvents += count;
    this.pendingBytes += bytes;
  }

  async peek(maxRecords: number, maxBytes: number): Promise<SpoolRecord[]> {
    const tx = this.#tx([STORE], "readonly");
    const out: Stored[] = [];
    let bytes = 0;
    await new Promise<void>((resolve, reject) => {
      const c = tx.objectStore(STORE).openCursor();
      c.onerror = () => reject(c.error);
      c.onsuccess = () => {
        const cur = c.result;
        if (!cur) return resolve();
        const r = cur.value as Stored;
        if (out.length >= maxRecords || (out.length > 0 && bytes + r.bytes > maxBytes)) return resolve();
        out.push(r);
        bytes += r.bytes;
        cur.continue();
      };
    });
    if (out.length === 0) { this.pendingEvents = 0; this.pendingBytes = 0; }
    // Decompressed after the cursor's transaction: it would end at the first await.
    const records: SpoolRecord[] = [];
    for (const r of out) {
      const body = r.gz ? new TextDecoder().decode(await through(r.gz, new DecompressionStream("gzip"))) : (r.body ?? "");
      records.push({ key: r.key, body, count: r.count, bytes: r.bytes });
    }
    return records;
  }

  async ack(records: SpoolRecord[]): Promise<void> {
    const tx = this.#tx([STORE], "readwrite");
    const st = tx.objectStore(STORE);
    for (const r of records) st.delete(r.key);
    await done(tx);
    for (const r of records) {
      this.pendingEvents = Math.max(0, this.pendingEvents - r.count);
      this.pendingBytes = Math.max(0, this.pendingBytes - r.bytes);
    }
  }

  async setAside(lines: string, why: string): Promise<void> {
    const tx = this.#tx([REJECTED], "readwrite");
    tx.objectStore(REJECTED).add({ refused: why, lines, time: new Date().toISOString() });
    await done(tx);
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}
