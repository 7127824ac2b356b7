//! Incidents as an audit ledger keeps them: every step is an event in the
//! log, and the state is folded from those events alone ([`Incidents`]).
//! Pure functions and types, no I/O and no clock of their own: the caller
//! passes `now`, so deadlines are tested with any time it likes.
//!
//! - [`Severity`] and [`deadlines`]: the response and escalation times of
//!   the operations chapter (critical 5 min / at once, high 15 / 30 min,
//!   medium 1 h / 4 h, low 4 h / next business day).
//! - [`Status`]: `open → acknowledged → mitigated → resolved → reviewed`,
//!   and `reopened`.
//! - [`breach`]: regulators' clocks (NDPA, Kenya DPA, POPIA, GDPR, more in
//!   configuration) from the time of awareness.
//! - [`alertmanager`]: the webhook body Alertmanager posts.
//! - [`review`] and [`pack`]: the post-incident review and the regulator's
//!   notification draft, written from the folded state.

pub mod alertmanager;
pub mod breach;
pub mod pack;
pub mod review;
mod severity;
pub mod state;
mod status;
pub mod time_fmt;

pub use severity::{deadlines, BusinessHours, Deadlines, Severity};
pub use state::{Breach, Escalation, Incident, Incidents, Notified};
pub use status::Status;

/// The `source.name` of every incident event: reserved, so only the ledger
/// itself writes it.
pub const SOURCE_NAME: &str = "aiaudit-incident";

/// The actions of incident events (`incident.*`).
pub mod action {
    pub const OPENED: &str = "incident.opened";
    pub const ACKNOWLEDGED: &str = "incident.acknowledged";
    pub const MITIGATED: &str = "incident.mitigated";
    pub const RESOLVED: &str = "incident.resolved";
    pub const REVIEWED: &str = "incident.reviewed";
    pub const REOPENED: &str = "incident.reopened";
    pub const SEVERITY_CHANGED: &str = "incident.severity_changed";
    pub const ESCALATED: &str = "incident.escalated";
    pub const ALERT: &str = "incident.alert";
    pub const BREACH: &str = "incident.breach";
    /// What became known of a breach after it was marked (reasons for delay, numbers).
    pub const BREACH_DETAILS: &str = "incident.breach_details";
    pub const NOTIFIED: &str = "incident.notified";
    pub const BREACH_REMINDER: &str = "incident.breach_reminder";
    pub const BREACH_DEADLINE_MISSED: &str = "incident.breach_deadline_missed";
    pub const NOTIFICATION: &str = "incident.notification";
    pub const NOTE: &str = "incident.note";

    /// Every incident action, for rebuilding the state from the index.
    pub const ALL: &[&str] = &[
        OPENED,
        ACKNOWLEDGED,
        MITIGATED,
        RESOLVED,
        REVIEWED,
        REOPENED,
        SEVERITY_CHANGED,
        ESCALATED,
        ALERT,
        BREACH,
        BREACH_DETAILS,
        NOTIFIED,
        BREACH_REMINDER,
        BREACH_DEADLINE_MISSED,
        NOTIFICATION,
        NOTE,
    ];
}

/// The review sections a person fills (each logged as an `incident.note`).
pub const SECTIONS: &[&str] = &["impact", "root_cause", "actions", "comment"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A field of a request or payload, and what is wrong with it.
    #[error("{field}: {detail}")]
    Field { field: String, detail: String },
}

impl Error {
    pub fn field(field: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Field {
            field: field.into(),
            detail: detail.into(),
        }
    }
}
