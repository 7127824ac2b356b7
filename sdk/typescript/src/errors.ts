/** One problem of an event: the field (dotted path, `actor.type`), its JSON Pointer and what is wrong. */
export interface FieldError {
  field: string;
  pointer: string;
  detail: string;
}

/** Base class of every error this package throws. */
export class EmitterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The event does not satisfy the ledger's schema (or has values JSON cannot hold). Nothing was queued. */
export class InvalidEvent extends EmitterError {
  /** The first bad field, as a dotted path (`actor.type`, `attributes.tags[1]`); "" for the event itself. */
  readonly field: string;
  /** Every error found. */
  readonly errors: FieldError[];
  constructor(errors: FieldError[]) {
    const first = errors[0] ?? { field: "", pointer: "", detail: "invalid event" };
    super(`invalid event: ${first.field || "(event)"}: ${first.detail}` + (errors.length > 1 ? ` (and ${errors.length - 1} more)` : ""));
    this.field = first.field;
    this.errors = errors;
  }
}

/** `onFull: "drop"` and the spool is at `maxSpoolBytes`: the event was not queued (counted in `stats().dropped`). */
export class SpoolFull extends EmitterError {}

/** The spool cannot be used: in use by another emitter (lock), damaged, or not creatable. */
export class SpoolFailure extends EmitterError {}

/** The emitter was closed. */
export class EmitterClosed extends EmitterError {}
