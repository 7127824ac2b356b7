//! A C2SP tlog-witness: cosigns a log's checkpoint only when it is
//! consistent with the latest checkpoint the witness cosigned for that log,
//! and persists the new one before it answers.
//!
//! [`Witness`] is the state and the rules (no HTTP); [`router`] is the
//! HTTP face (`POST /add-checkpoint` and a few read routes). One process
//! owns a data directory at a time (an exclusive lock on `witness.lock`).
//!
//! Files in the data directory, all written atomically (temp file, fsync,
//! rename, fsync of the directory):
//! * `witness.key` (0600): the signer key, `PRIVATE+KEY+<name>+<id>+<base64(0x04||seed)>`;
//! * `witness.vkey`: its verifier key, for logs and clients to configure;
//! * `logs/<sha256(origin) hex>.json`: per log, the latest cosigned checkpoint;
//! * `evidence/<time>-<id>.json`: every trusted-signed checkpoint that
//!   conflicted with what the witness held (a split view or a rewritten log).

mod http;
mod state;

pub use http::router;
pub use state::{Evidence, Held, Refusal, Witness, WitnessOptions};
