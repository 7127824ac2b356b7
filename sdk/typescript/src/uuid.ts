let lastMs = 0;
let seq = 0;
/** A UUIDv7 (RFC 9562): 48-bit Unix ms time, then random bits; monotonic within this process. */
export function uuidv7(): string {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  let ms = Date.now();
  if (ms <= lastMs) { ms = lastMs; seq = (seq + 1) & 0xfff; if (seq === 0) ms = ++lastMs; } else { seq = b[6]! & 0x07; }
  lastMs = ms;
  for (let i = 5; i >= 0; i--) { b[i] = ms % 256; ms = Math.floor(ms / 256); }
  b[6] = 0x70 | ((seq >> 8) & 0x0f);
  b[7] = seq & 0xff;
  b[8] = 0x80 | (b[8]! & 0x3f);
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
