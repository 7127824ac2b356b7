import { InvalidEvent, type FieldError } from "./errors.js";

/** Integers beyond this magnitude are refused: RFC 8785 (and JavaScript) hold numbers as doubles. */
export const MAX_EXACT_INTEGER = 2 ** 53;

export function pathOf(parts: (string | number)[]): string {
  let out = "";
  for (const p of parts) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out === "" ? p : `.${p}`;
  }
  return out;
}

export function pointerOf(parts: (string | number)[]): string {
  return parts.map((p) => "/" + String(p).replace(/~/g, "~0").replace(/\//g, "~1")).join("");
}

export function fieldError(parts: (string | number)[], detail: string): FieldError {
  return { field: pathOf(parts), pointer: pointerOf(parts), detail };
}

/**
 * A deep copy of `value` holding only what JSON holds, or InvalidEvent naming the
 * field: no undefined in arrays, functions, symbols, bigints, NaN/Infinity,
 * integers beyond 2^53, class instances (Date, Map, ...), or cycles.
 * Object members whose value is undefined are left out (as JSON.stringify does).
 */
export function plainJson(value: unknown): unknown {
  const seen = new Set<object>();
  const walk = (v: unknown, at: (string | number)[]): unknown => {
    switch (typeof v) {
      case "string":
      case "boolean":
        return v;
      case "number":
        if (!Number.isFinite(v)) throw new InvalidEvent([fieldError(at, `${v} has no JSON form`)]);
        if (Number.isInteger(v) && Math.abs(v) > MAX_EXACT_INTEGER)
          throw new InvalidEvent([fieldError(at, `integer ${v} is beyond 2^53 and cannot be signed or held exactly; send it as a string`)]);
        return v;
      case "bigint":
        throw new InvalidEvent([fieldError(at, Math.abs(Number(v)) > MAX_EXACT_INTEGER
          ? `integer ${v} is beyond 2^53 and cannot be signed or held exactly; send it as a string`
          : "a bigint has no JSON form; pass a number or a string")]);
      case "object": {
        if (v === null) return null;
        if (seen.has(v)) throw new InvalidEvent([fieldError(at, "the value contains itself")]);
        seen.add(v);
        try {
          if (Array.isArray(v)) return v.map((x, i) => {
            if (x === undefined) throw new InvalidEvent([fieldError([...at, i], "undefined has no JSON form")]);
            return walk(x, [...at, i]);
          });
          const proto = Object.getPrototypeOf(v);
          if (proto !== Object.prototype && proto !== null)
            throw new InvalidEvent([fieldError(at, `a ${proto?.constructor?.name ?? "non-plain"} object has no JSON form; convert it first`)]);
          const out: Record<string, unknown> = {};
          for (const [k, x] of Object.entries(v)) {
            if (x === undefined) continue;
            out[k] = walk(x, [...at, k]);
          }
          return out;
        } finally {
          seen.delete(v);
        }
      }
      default:
        throw new InvalidEvent([fieldError(at, `a ${typeof v} has no JSON form`)]);
    }
  };
  return walk(value, []);
}

/** RFC 8785 (JCS) canonical JSON of a plain JSON value: members sorted by UTF-16 code units, ECMAScript numbers and strings. */
export function canonicalize(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map((x) => canonicalize(x)).join(",") + "]";
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalize(o[k])).join(",") + "}";
}

const enc = new TextEncoder();
export const utf8 = (s: string): Uint8Array => enc.encode(s);
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) { n += 4; i++; }
    else n += 3;
  }
  return n;
}
