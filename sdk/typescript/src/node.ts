// The Node entry of @aiaudit/emitter: a file spool, zlib gzip.
import { readFile } from "node:fs/promises";
import { gzip as zgzip } from "node:zlib";
import { promisify } from "node:util";
import { EmitterCore, type EmitterOptions, type Platform } from "./core.js";
import { MemorySpool } from "./spool.js";
import { FileSpool } from "./spool-node.js";
import { SigningKey } from "./sign.js";

export * from "./common.js";
export { FileSpool, crc32 } from "./spool-node.js";

const gz = promisify(zgzip);

const nodePlatform: Platform = {
  defaultMaxSpoolBytes: 1024 ** 3,
  async openSpool(opts: EmitterOptions) {
    return opts.spoolDir ? FileSpool.open(opts.spoolDir) : new MemorySpool();
  },
  async gzip(data: Uint8Array) {
    return new Uint8Array(await gz(data));
  },
  async loadSigningKey(key: string) {
    if (key.trim().startsWith("PRIVATE+KEY+")) return SigningKey.parse(key);
    return SigningKey.parse(await readFile(key, "utf8"));
  },
};

/**
 * Emits audit events to the ledger through a durable spool.
 *
 * ```ts
 * const em = new Emitter({ url, token, spoolDir: "./aiaudit-spool" });
 * const id = await em.emit({ tenant: "acme", source: { name: "app" }, actor: { id: "agent-7", type: "agent" }, action: "agent.decision" });
 * await em.flush({ timeoutMs: 10_000 });
 * await em.close();
 * ```
 */
export class Emitter extends EmitterCore {
  constructor(options: EmitterOptions) {
    super(options, nodePlatform);
  }
}
