// Emitter batch signatures, format aiaudit-batch-v2 (docs/format.md): the RFC 6962
// Merkle root over SHA-256(0x00 || RFC 8785 form of each event), signed with Ed25519
// over "aiaudit-batch-v2\n<name>\n<N>\n<base64 root>\n". WebCrypto's Ed25519 where the
// platform has it, else @noble/ed25519.
import * as noble from "@noble/ed25519";
import { canonicalize, utf8 } from "./json.js";

export const SIGNATURE_FORMAT = "aiaudit-batch-v2";

export function toBase64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}
export function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};

export async function sha256(...parts: Uint8Array[]): Promise<Uint8Array> {
  return new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", concat(...parts) as BufferSource));
}

/** RFC 6962 Merkle tree hash over already-hashed leaves. */
export async function merkleRoot(leaves: Uint8Array[]): Promise<Uint8Array> {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha256(new Uint8Array([1]), await merkleRoot(leaves.slice(0, k)), await merkleRoot(leaves.slice(k)));
}

/** The Merkle root (base64) of a batch of plain-JSON events in format v2. */
export async function batchRoot(events: unknown[]): Promise<string> {
  const leaves = await Promise.all(events.map((e) => sha256(new Uint8Array([0]), utf8(canonicalize(e)))));
  return toBase64(await merkleRoot(leaves));
}

/** The bytes an emitter signs for a batch. */
export async function batchMessage(name: string, events: unknown[]): Promise<Uint8Array> {
  return utf8(`${SIGNATURE_FORMAT}\n${name}\n${events.length}\n${await batchRoot(events)}\n`);
}

const PKCS8_PREFIX = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

/** An emitter's Ed25519 key: its registered name and 32-byte seed. */
export class SigningKey {
  readonly name: string;
  readonly #seed: Uint8Array;
  #webKey: Promise<CryptoKey | null> | undefined;

  constructor(name: string, seed: Uint8Array) {
    if (!name || /[\s+]/.test(name)) throw new Error("an emitter name has no whitespace or '+'");
    if (seed.length !== 32) throw new Error("an Ed25519 seed is 32 bytes");
    this.name = name;
    this.#seed = seed.slice();
  }

  /** Parses the text `aiaudit emitter keygen` writes: `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`. */
  static parse(text: string): SigningKey {
    const m = /^PRIVATE\+KEY\+([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/.exec(text.trim());
    if (!m) throw new Error("not an emitter private key (PRIVATE+KEY+<name>+<id>+<key>)");
    const raw = fromBase64(m[3]!);
    if (raw.length !== 33 || raw[0] !== 1) throw new Error("not an Ed25519 private key (type 0x01, 32 bytes)");
    return new SigningKey(m[1]!, raw.subarray(1));
  }

  /** A new random key for `name`. */
  static generate(name: string): SigningKey {
    return new SigningKey(name, globalThis.crypto.getRandomValues(new Uint8Array(32)));
  }

  async #key(): Promise<CryptoKey | null> {
    this.#webKey ??= globalThis.crypto.subtle
      .importKey("pkcs8", concat(PKCS8_PREFIX, this.#seed) as BufferSource, { name: "Ed25519" }, false, ["sign"])
      .catch(() => null);
    return this.#webKey;
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    const key = await this.#key();
    if (key) return new Uint8Array(await globalThis.crypto.subtle.sign({ name: "Ed25519" }, key, message as BufferSource));
    return noble.signAsync(message, this.#seed);
  }

  /** True when signing goes through WebCrypto, false when it falls back to @noble/ed25519. */
  async usesWebCrypto(): Promise<boolean> {
    return (await this.#key()) !== null;
  }

  async publicKey(): Promise<Uint8Array> {
    return noble.getPublicKeyAsync(this.#seed);
  }

  /** The verifier key to register (`POST /v1/emitters` `public_key`): `<name>+<key id>+<base64(0x01 || public key)>`. */
  async verifierKey(): Promise<string> {
    const pub = await this.publicKey();
    const id = (await sha256(utf8(this.name + "\n"), new Uint8Array([1]), pub)).subarray(0, 4);
    return `${this.name}+${hex(id)}+${toBase64(concat(new Uint8Array([1]), pub))}`;
  }

  /** The private key text, as `aiaudit emitter keygen` writes it. */
  async privateKeyText(): Promise<string> {
    const pub = await this.publicKey();
    const id = (await sha256(utf8(this.name + "\n"), new Uint8Array([1]), pub)).subarray(0, 4);
    return `PRIVATE+KEY+${this.name}+${hex(id)}+${toBase64(concat(new Uint8Array([1]), this.#seed))}`;
  }

  /** The three headers of a signed request carrying `events` (plain JSON, in request order). */
  async headers(events: unknown[]): Promise<Record<string, string>> {
    const sig = await this.sign(await batchMessage(this.name, events));
    return {
      "AIAudit-Emitter": this.name,
      "AIAudit-Signature-Format": SIGNATURE_FORMAT,
      "AIAudit-Signature": toBase64(sig),
    };
  }
}
