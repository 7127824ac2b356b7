import { EVENT_SCHEMA, type Rule } from "./schema.generated.js";
import { InvalidEvent, type FieldError } from "./errors.js";
import { canonicalize, fieldError, utf8Length } from "./json.js";

/** Deepest nesting of objects and arrays the ledger takes (the event object itself is level 1). */
export const MAX_DEPTH = 16;
/** The ledger's default `max_event_bytes`: 16 MiB of canonical JSON. */
export const DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024;
/** Actions and source names the ledger keeps for its own records (403 at ingest). */
export const RESERVED_ACTION_PREFIXES = ["policy.", "retention.", "legal_hold.", "data."];
export const RESERVED_SOURCES = ["aiaudit", "aiaudit-policy"];

// RFC 3339 date-time (what the ledger parses).
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$/;
function isDateTime(s: string): boolean {
  const m = DATE_TIME.exec(s);
  if (!m) return false;
  const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const days = [31, y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  if (mo < 1 || mo > 12 || d < 1 || d > days[mo - 1]!) return false;
  if (h > 23 || mi > 59 || se > 60) return false;
  if (m[9] !== undefined && (Number(m[9]) > 23 || Number(m[10]) > 59)) return false;
  return true;
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function check(v: unknown, rule: Rule, at: (string | number)[], errs: FieldError[]): void {
  const fail = (detail: string): void => { errs.push(fieldError(at, detail)); };
  if (rule.type) {
    const t = typeName(v);
    const ok = rule.type === t || (rule.type === "number" && t === "integer");
    if (!ok) {
      const want = rule.type === "integer" && rule.minimum === 0 ? "non-negative integer" : rule.type;
      return fail(`expected ${want}, got ${t}`);
    }
  }
  if (rule.enum && !rule.enum.includes(v as string)) return fail(`must be one of ${rule.enum.join(", ")}`);
  if (typeof v === "string") {
    const n = utf8Length(v);
    if (rule.minLength !== undefined && n < rule.minLength) return fail(rule.minLength === 1 ? "must not be empty" : `shorter than ${rule.minLength} bytes`);
    if (rule.maxLength !== undefined && n > rule.maxLength) return fail(`longer than ${rule.maxLength} bytes`);
    if (rule.pattern && !rule.pattern.test(v)) return fail(`does not match ${rule.pattern.source}`);
    if (rule.format === "date-time" && !isDateTime(v)) return fail("expected an RFC 3339 timestamp");
  }
  if (typeof v === "number" && rule.minimum !== undefined && v < rule.minimum) return fail(`must be at least ${rule.minimum}`);
  if (rule.not) {
    const inner: FieldError[] = [];
    check(v, rule.not, at, inner);
    if (inner.length === 0) return fail(rule.not.type === "object" ? "must not be an object" : "not allowed here");
  }
  if (rule.anyOf) {
    const ok = rule.anyOf.some((b) => { const e: FieldError[] = []; check(v, b, at, e); return e.length === 0; });
    if (!ok) return fail(`needs one of: ${rule.anyOf.map((b) => (b.required ?? []).join("+")).join(", ")}`);
  }
  if (Array.isArray(v) && rule.items) v.forEach((x, i) => check(x, rule.items!, [...at, i], errs));
  if (v !== null && typeof v === "object" && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    for (const r of rule.required ?? []) if (!(r in o)) errs.push(fieldError([...at, r], "required field is missing"));
    for (const [k, x] of Object.entries(o)) {
      const sub = rule.properties?.[k];
      let matched = false;
      if (sub) { matched = true; check(x, sub, [...at, k], errs); }
      for (const [re, pr] of rule.patternProperties ?? []) if (re.test(k)) { matched = true; check(x, pr, [...at, k], errs); }
      if (!matched && rule.additionalProperties === false)
        errs.push(fieldError([...at, k], at.length === 0 ? 'unknown field (put custom data under "attributes")' : "unknown field"));
    }
  }
}

function depth(v: unknown): number {
  if (v === null || typeof v !== "object") return 0;
  const xs = Array.isArray(v) ? v : Object.values(v as object);
  let d = 0;
  for (const x of xs) d = Math.max(d, depth(x));
  return 1 + d;
}

/** Every error of `event` against schema v1 and the ledger's further rules; [] when valid. `event` must be plain JSON. */
export function eventErrors(event: unknown, opts: { maxEventBytes?: number } = {}): FieldError[] {
  if (event === null || typeof event !== "object" || Array.isArray(event)) return [fieldError([], "an event is a JSON object")];
  const d = depth(event);
  if (d > MAX_DEPTH) return [fieldError([], `nested ${d} levels deep; at most ${MAX_DEPTH} allowed`)];
  const errs: FieldError[] = [];
  check(event, EVENT_SCHEMA, [], errs);
  const e = event as Record<string, any>;
  if (typeof e.action === "string" && RESERVED_ACTION_PREFIXES.some((p) => e.action.startsWith(p)))
    errs.push(fieldError(["action"], `actions starting with ${RESERVED_ACTION_PREFIXES.join(", ")} are reserved for the ledger's own records`));
  if (typeof e.source?.name === "string" && RESERVED_SOURCES.includes(e.source.name))
    errs.push(fieldError(["source", "name"], "reserved for the ledger's own records"));
  const max = opts.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
  if (errs.length === 0) {
    const size = utf8Length(canonicalize(event));
    if (size > max) errs.push(fieldError([], `${size} bytes of canonical JSON, more than max_event_bytes (${max})`));
  }
  return errs;
}

/** Throws InvalidEvent (naming the first bad field) unless `event` is valid. */
export function validateEvent(event: unknown, opts: { maxEventBytes?: number } = {}): void {
  const errs = eventErrors(event, opts);
  if (errs.length) throw new InvalidEvent(errs);
}
