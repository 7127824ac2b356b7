// The file spool of the Node emitter. <dir>/FORMAT names the format; segment
// files seg-<20 digits>.log hold records (u32 LE length, u32 LE CRC-32, payload =
// the batch as NDJSON compressed as one gzip member; format 1 stored the NDJSON
// itself, and such payloads, which do not start with gzip's 1f 8b, are still read),
// each appended and fsync'd before emit resolves; <dir>/cursor
// holds "<segment> <offset>" of the first unacknowledged record, replaced atomically
// (write, fsync, rename, fsync the directory). On open a torn record at the tail (a
// crash mid-write) is cut off. <dir>/LOCK holds the owner's pid: a second emitter on
// the directory is refused while that process lives; a dead owner's lock is taken over.
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { promisify } from "node:util";
import { SpoolFailure } from "./errors.js";
import { takeWithin, type Spool, type SpoolRecord } from "./spool.js";

export const FORMAT = "aiaudit-js-spool 2\n";
/** Records stored uncompressed: read, and the FORMAT rewritten to 2 at open. */
const FORMAT_V1 = "aiaudit-js-spool 1\n";
const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);
const isGzip = (b: Uint8Array) => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
const SEGMENT_BYTES = 8 * 1024 * 1024;
const HEADER = 8;

/** CRC-32 (IEEE), as the Rust spool's records use: Node's own (zlib, since Node 20.15). */
export function crc32(b: Uint8Array): number {
  return zlib.crc32(b) >>> 0;
}

interface Entry extends SpoolRecord { seg: number; offset: number; len: number }

const segName = (n: number) => `seg-${String(n).padStart(20, "0")}.log`;
const openHere = new Set<string>();

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function fsyncDir(dir: string) {
  try {
    const fd = fs.openSync(dir, "r");
    try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
  } catch {}
}

export class FileSpool implements Spool {
  readonly dir: string;
  #entries: Entry[] = [];
  #head = 0; // index of the first pending entry in #entries
  #seg = 0; // segment being appended to
  #segSize = 0;
  #fh: fsp.FileHandle | null = null;
  #next = 0;
  #closed = false;
  pendingEvents = 0;
  pendingBytes = 0;

  private constructor(dir: string) {
    this.dir = path.resolve(dir);
  }

  static async open(dir: string): Promise<FileSpool> {
    const s = new FileSpool(dir);
    try {
      fs.mkdirSync(s.dir, { recursive: true });
    } catch (e) {
      throw new SpoolFailure(`cannot create the spool ${s.dir}: ${(e as Error).message}`);
    }
    s.#lock();
    try {
      await s.#load();
    } catch (e) {
      s.#unlock();
      throw e instanceof SpoolFailure ? e : new SpoolFailure(`cannot open the spool ${s.dir}: ${(e as Error).message}`);
    }
    return s;
  }

  #lock() {
    const lock = path.join(this.dir, "LOCK");
    if (openHere.has(this.dir)) throw new SpoolFailure(`the spool ${this.dir} is in use by another emitter in this process`);
    for (let tries = 0; tries < 3; tries++) {
      try {
        const fd = fs.openSync(lock, "wx", 0o600);
        fs.writeSync(fd, `${process.pid}\n`);
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        openHere.add(this.dir);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw new SpoolFailure(`cannot lock the spool ${this.dir}: ${(e as Error).message}`);
      }
      let pid = NaN;
      try { pid = parseInt(fs.readFileSync(lock, "utf8"), 10); } catch {}
      if (Number.isFinite(pid) && pid !== process.pid && pidAlive(pid))
        throw new SpoolFailure(`the spool ${this.dir} is in use by another emitter (pid ${pid})`);
      // A dead owner's (or a torn) lock: take it over.
      try { fs.unlinkSync(lock); } catch {}
    }
    throw new SpoolFailure(`cannot lock the spool ${this.dir}`);
  }

  #unlock() {
    if (!openHere.delete(this.dir)) return;
    try {
      const pid = parseInt(fs.readFileSync(path.join(this.dir, "LOCK"), "utf8"), 10);
      if (pid === process.pid) fs.unlinkSync(path.join(this.dir, "LOCK"));
    } catch {}
  }

  async #load() {
    const fmt = path.join(this.dir, "FORMAT");
    if (fs.existsSync(fmt) && fs.readFileSync(fmt, "utf8") === FORMAT_V1) {
      // Records appended from now on are compressed, which a format 1 reader would misread.
      fs.writeFileSync(fmt + ".tmp", FORMAT);
      const fd = fs.openSync(fmt + ".tmp", "r");
      try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
      fs.renameSync(fmt + ".tmp", fmt);
      fsyncDir(this.dir);
    }
    if (fs.existsSync(fmt)) {
      if (fs.readFileSync(fmt, "utf8") !== FORMAT) throw new SpoolFailure(`${fmt} names another format (${JSON.stringify(fs.readFileSync(fmt, "utf8").trim())})`);
    } else {
      fs.writeFileSync(fmt, FORMAT);
      fsyncDir(this.dir);
    }
    let cursor = { seg: 0, offset: 0 };
    try {
      const m = /^(\d+) (\d+)\n?$/.exec(fs.readFileSync(path.join(this.dir, "cursor"), "utf8"));
      if (m) cursor = { seg: Number(m[1]), offset: Number(m[2]) };
    } catch {}
    const segs = fs.readdirSync(this.dir).map((f) => /^seg-(\d{20})\.log$/.exec(f)).filter((m) => m).map((m) => Number(m![1])).sort((a, b) => a - b);
    for (const seg of segs) {
      const file = path.join(this.dir, segName(seg));
      if (seg < cursor.seg) { fs.rmSync(file, { force: true }); continue; }
      const buf = fs.readFileSync(file);
      let off = seg === cursor.seg ? Math.min(cursor.offset, buf.length) : 0;
      let end = off;
      while (off + HEADER <= buf.length) {
        const len = buf.readUInt32LE(off);
        const crc = buf.readUInt32LE(off + 4);
        if (off + HEADER + len > buf.length) break;
        const payload = buf.subarray(off + HEADER, off + HEADER + len);
        if (crc32(payload) !== crc) break;
        let raw: Buffer;
        try {
          raw = isGzip(payload) ? zlib.gunzipSync(payload) : payload;
        } catch (e) {
          throw new SpoolFailure(`the record at byte ${off} of ${file} does not decompress: ${(e as Error).message}`);
        }
        let count = 0;
        for (let i = 0; i < raw.length; i++) if (raw[i] === 10) count++;
        this.#entries.push({ key: this.#next++, body: "", count, bytes: raw.length, seg, offset: off, len });
        off += HEADER + len;
        end = off;
      }
      if (end < buf.length) {
        // A torn (or damaged) tail: cut it off.
        const fd = fs.openSync(file, "r+");
        try { fs.ftruncateSync(fd, end); fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
      }
      this.#seg = seg;
      this.#segSize = end;
    }
    if (segs.length === 0 || this.#seg < cursor.seg) { this.#seg = cursor.seg; this.#segSize = 0; }
    for (const e of this.#entries) { this.pendingEvents += e.count; this.pendingBytes += e.bytes; }
    this.#fh = await fsp.open(path.join(this.dir, segName(this.#seg)), "a");
    fsyncDir(this.dir);
  }

  async append(body: string, count: number, _bytes: number): Promise<void> {
    if (this.#closed || !this.#fh) throw new SpoolFailure("the spool is closed");
    const raw = Buffer.from(body, "utf8");
    // Stored compressed: a phone or a gateway has little disk, and batches of AI
    // events take about a sixth of their JSON.
    const payload = await gzip(raw);
    if (this.#segSize > 0 && this.#segSize + HEADER + payload.length > SEGMENT_BYTES) {
      await this.#fh.close();
      this.#seg++;
      this.#segSize = 0;
      this.#fh = await fsp.open(path.join(this.dir, segName(this.#seg)), "a");
      fsyncDir(this.dir);
    }
    const rec = Buffer.allocUnsafe(HEADER + payload.length);
    rec.writeUInt32LE(payload.length, 0);
    rec.writeUInt32LE(crc32(payload), 4);
    payload.copy(rec, HEADER);
    const offset = this.#segSize;
    await this.#fh.write(rec);
    await this.#fh.datasync();
    this.#segSize += rec.length;
    this.#entries.push({ key: this.#next++, body: "", count, bytes: raw.length, seg: this.#seg, offset, len: payload.length });
    this.pendingEvents += count;
    this.pendingBytes += raw.length;
  }

  async peek(maxRecords: number, maxBytes: number): Promise<SpoolRecord[]> {
    const picked = takeWithin(this.#entries.slice(this.#head, this.#head + maxRecords), maxRecords, maxBytes);
    const out: SpoolRecord[] = [];
    for (const e of picked) {
      const fh = await fsp.open(path.join(this.dir, segName(e.seg)), "r");
      try {
        const buf = Buffer.alloc(e.len);
        await fh.read(buf, 0, e.len, e.offset + HEADER);
        const raw = isGzip(buf) ? await gunzip(buf) : buf;
        out.push({ key: e.key, body: raw.toString("utf8"), count: e.count, bytes: e.bytes });
      } finally {
        await fh.close();
      }
    }
    return out;
  }

  async ack(records: SpoolRecord[]): Promise<void> {
    for (const r of records) {
      const e = this.#entries[this.#head];
      if (!e || e.key !== r.key) throw new Error("ack out of order");
      this.#head++;
      this.pendingEvents -= e.count;
      this.pendingBytes -= e.bytes;
    }
    const next = this.#entries[this.#head];
    const cursor = next ? { seg: next.seg, offset: next.offset } : { seg: this.#seg, offset: this.#segSize };
    const tmp = path.join(this.dir, "cursor.tmp");
    const fh = await fsp.open(tmp, "w");
    try {
      await fh.write(`${cursor.seg} ${cursor.offset}\n`);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, path.join(this.dir, "cursor"));
    fsyncDir(this.dir);
    if (this.#head > 1024) { this.#entries = this.#entries.slice(this.#head); this.#head = 0; }
    // Segments wholly acknowledged.
    for (const f of fs.readdirSync(this.dir)) {
      const m = /^seg-(\d{20})\.log$/.exec(f);
      if (m && Number(m[1]) < cursor.seg) fs.rmSync(path.join(this.dir, f), { force: true });
    }
  }

  async setAside(lines: string, why: string): Promise<void> {
    const fh = await fsp.open(path.join(this.dir, "rejected.ndjson"), "a");
    try {
      await fh.write(JSON.stringify({ refused: why }) + "\n" + lines);
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#fh?.close();
    this.#fh = null;
    this.#unlock();
  }
}
