/** One spooled batch: NDJSON of its events, written durably before emit resolves. */
export interface SpoolRecord {
  /** Position in the spool (opaque to the emitter; increasing). */
  key: number;
  /** The events as NDJSON, one per line, each line ending in "\n". */
  body: string;
  /** Events in the record. */
  count: number;
  /** UTF-8 bytes of `body`. */
  bytes: number;
}

/** Where batches wait for the ledger: a file spool (Node), IndexedDB (browsers), or memory. */
export interface Spool {
  /** Appends one record durably (fsync / a strict IndexedDB transaction) before it resolves. */
  append(body: string, count: number, bytes: number): Promise<void>;
  /** The oldest pending records, in order: at most `maxRecords`, and within `maxBytes` unless the first alone is larger. */
  peek(maxRecords: number, maxBytes: number): Promise<SpoolRecord[]>;
  /** Removes records returned by peek; they are the oldest pending ones, in order. */
  ack(records: SpoolRecord[]): Promise<void>;
  /** Keeps events the ledger refused for good (rejected.ndjson, or an IndexedDB store). */
  setAside(lines: string, why: string): Promise<void>;
  readonly pendingEvents: number;
  readonly pendingBytes: number;
  close(): Promise<void>;
}

/** Batches in memory only: lost with the process. Used when no spool is configured. */
export class MemorySpool implements Spool {
  #records: SpoolRecord[] = [];
  #next = 0;
  pendingEvents = 0;
  pendingBytes = 0;
  rejected: { lines: string; why: string }[] = [];
  async append(body: string, count: number, bytes: number) {
    this.#records.push({ key: this.#next++, body, count, bytes });
    this.pendingEvents += count;
    this.pendingBytes += bytes;
  }
  async peek(maxRecords: number, maxBytes: number) {
    return takeWithin(this.#records, maxRecords, maxBytes);
  }
  async ack(records: SpoolRecord[]) {
    for (const r of records) {
      if (this.#records[0]?.key !== r.key) throw new Error("ack out of order");
      this.#records.shift();
      this.pendingEvents -= r.count;
      this.pendingBytes -= r.bytes;
    }
  }
  async setAside(lines: string, why: string) {
    this.rejected.push({ lines, why });
  }
  async close() {}
}

export function takeWithin<T extends { bytes: number }>(xs: Iterable<T>, maxRecords: number, maxBytes: number): T[] {
  const out: T[] = [];
  let bytes = 0;
  for (const x of xs) {
    if (out.length >= maxRecords) break;
    if (out.length > 0 && bytes + x.bytes > maxBytes) break;
    out.push(x);
    bytes += x.bytes;
  }
  return out;
}
