//! The emitter SDK for the AI audit ledger: batches events on the device,
//! keeps them in a crash-safe offline [`Spool`], and delivers them to the
//! ledger in order, exactly once thanks to the ledger's deduplication by id.
//!
//! ```no_run
//! use aiaudit_emitter::Emitter;
//! use std::time::Duration;
//! let emitter = Emitter::builder()
//!     .endpoint("http://127.0.0.1:7381")
//!     .spool_dir("/tmp/aiaudit-spool")
//!     .build()?;
//! emitter.emit(serde_json::json!({
//!     "id": "0192f3a4-6b1c-7d2e-9f00-1a2b3c4d5e6f", "time": "2026-11-27T09:14:03Z",
//!     "tenant": "acme", "source": {"name": "app"}, "actor": {"id": "u1"}, "action": "model.invoke"
//! }))?;
//! emitter.close(Duration::from_secs(5))?;
//! # Ok::<(), aiaudit_emitter::EmitError>(())
//! ```
//!
//! Not here: the event schema (the ledger and `aiaudit-event` judge events)
//! and anything of the server.

mod client;
pub mod spool;

pub use client::{
    Compression, EmitError, Emitter, EmitterBuilder, FullPolicy, SignatureFormat, Stats,
};
pub use spool::{Spool, SpoolError, FORMAT_LINE as SPOOL_FORMAT_LINE};
