//! Policy rules over audit events.
//!
//! A rule file ([`Policies`], TOML) holds rules with an id, a description,
//! a severity and a condition in CEL, the Common Expression Language (via
//! the `cel` crate). Three kinds: `match` (one event is enough),
//! `missing_followup` (an event that must be followed by another in the
//! same conversation within a time) and `heartbeat` (a source that goes
//! quiet). The [`Engine`] evaluates events and keeps the windows; it does
//! no I/O and reads no clock, so the server decides what happens to a
//! [`Violation`] and tests decide what time it is.
//!
//! The format and the variables a condition sees are in docs/policies.md.

pub mod cond;
pub mod engine;
pub mod rules;

pub use cond::{Condition, Vars};
pub use engine::{is_policy_event, Engine, Violation};
pub use rules::{Kind, LoadError, Policies, Rule, Severity};
