//! The lifecycle: `open → acknowledged → mitigated → resolved → reviewed`,
//! and `reopened` from mitigated, resolved or reviewed.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Open,
    Acknowledged,
    Mitigated,
    Resolved,
    Reviewed,
    Reopened,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Open,
        Status::Acknowledged,
        Status::Mitigated,
        Status::Resolved,
        Status::Reviewed,
        Status::Reopened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::Mitigated => "mitigated",
            Status::Resolved => "resolved",
            Status::Reviewed => "reviewed",
            Status::Reopened => "reopened",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The action of the event that moves an incident into this status.
    pub fn action(self) -> &'static str {
        use crate::action::*;
        match self {
            Status::Open => OPENED,
            Status::Acknowledged => ACKNOWLEDGED,
            Status::Mitigated => MITIGATED,
            Status::Resolved => RESOLVED,
            Status::Reviewed => REVIEWED,
            Status::Reopened => REOPENED,
        }
    }

    /// Waiting for someone to acknowledge it.
    pub fn unacknowledged(self) -> bool {
        matches!(self, Status::Open | Status::Reopened)
    }

    /// Still to be dealt with: not mitigated, resolved or reviewed.
    pub fn active(self) -> bool {
        matches!(self, Status::Open | Status::Reopened | Status::Acknowledged)
    }

    /// Counted as open (`aiaudit_incidents_open`): anything not resolved yet.
    pub fn is_open(self) -> bool {
        !matches!(self, Status::Resolved | Status::Reviewed)
    }

    /// Whether an incident in this status may become `next`. Mitigating or
    /// resolving an incident nobody acknowledged needs a reason
    /// (`skipped_acknowledgement`), so it is never done silently; nothing
    /// leaves `reviewed` but `reopened`.
    pub fn check(self, next: Status, skipped_acknowledgement: bool) -> Result<(), String> {
        use Status::*;
        let ok = match (self, next) {
            (Open | Reopened, Acknowledged) => true,
            (Acknowledged, Mitigated | Resolved) | (Mitigated, Resolved) => true,
            (Open | Reopened, Mitigated | Resolved) => {
                if !skipped_acknowledgement {
                    return Err(format!(
                        "the incident is {} (nobody acknowledged it): say why it becomes {} without acknowledgement (skipped_acknowledgement)",
                        self.as_str(),
                        next.as_str()
                    ));
                }
                true
            }
            (Resolved, Reviewed) => true,
            (Mitigated | Resolved | Reviewed, Reopened) => true,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "the incident is {}; it cannot become {}{}",
                self.as_str(),
                next.as_str(),
                if self == Reviewed {
                    " (a reviewed incident can only be reopened)"
                } else {
                    ""
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Status::*;

    #[test]
    fn lifecycle_rules() {
        assert!(Open.check(Acknowledged, false).is_ok());
        assert!(Acknowledged.check(Mitigated, false).is_ok());
        assert!(Mitigated.check(Resolved, false).is_ok());
        assert!(Resolved.check(Reviewed, false).is_ok());
        assert!(Reviewed.check(Reopened, false).is_ok());
        assert!(Reopened.check(Acknowledged, false).is_ok());
        // No resolving an unacknowledged incident without saying so.
        let e = Open.check(Resolved, false).unwrap_err();
        assert!(e.contains("skipped_acknowledgement"), "{e}");
        assert!(Open.check(Resolved, true).is_ok());
        assert!(Reopened.check(Mitigated, true).is_ok());
        // Nothing leaves reviewed but reopened.
        for next in [Open, Acknowledged, Mitigated, Resolved, Reviewed] {
            let e = Reviewed.check(next, true).unwrap_err();
            assert!(e.contains("only be reopened"), "{e}");
        }
        assert!(Open.check(Reviewed, true).is_err());
        assert!(Open.check(Reopened, true).is_err());
        assert!(Acknowledged.check(Acknowledged, true).is_err());
        assert!(Mitigated.check(Acknowledged, true).is_err());
        for s in super::Status::ALL {
            assert_eq!(super::Status::parse(s.as_str()), Some(s));
        }
    }
}
