export { EmitterCore, type AuditEvent, type EmitterOptions, type EmitterStats, type Platform } from "./core.js";
export { InvalidEvent, SpoolFull, SpoolFailure, EmitterClosed, EmitterError, type FieldError } from "./errors.js";
export { SigningKey, SIGNATURE_FORMAT, batchRoot, batchMessage, merkleRoot } from "./sign.js";
export { canonicalize, plainJson, MAX_EXACT_INTEGER } from "./json.js";
export { validateEvent, eventErrors, MAX_DEPTH, DEFAULT_MAX_EVENT_BYTES } from "./validate.js";
export { uuidv7 } from "./uuid.js";
export { MemorySpool, type Spool, type SpoolRecord } from "./spool.js";
export { SCHEMA_SHA256, SCHEMA_ID } from "./schema.generated.js";
