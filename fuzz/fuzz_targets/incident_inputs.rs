//! What the incident side parses from outside: Alertmanager webhook bodies
//! (from whoever holds a responder's token), configured jurisdictions, and
//! the fold of incident events (a forged or damaged log entry must not
//! crash a ledger rebuilding its state).
//!
//! Properties: no panic; a body that parses names a severity and a title;
//! the fold never resolves an incident nobody acknowledged without a reason.
#![no_main]

use aiaudit_incident::{alertmanager, breach, Incidents, Status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(n) = alertmanager::parse(&value) {
        assert!(!n.alerts.is_empty() && n.alerts.len() <= alertmanager::MAX_ALERTS);
        let _ = (n.severity(), n.title(), n.tenant());
    }
    if let Ok(j) = serde_json::from_value::<breach::Jurisdiction>(value.clone()) {
        if breach::validate(&j).is_ok() {
            for c in breach::clocks(&j, 1_772_434_800_000, true, true) {
                assert!(c.key.starts_with(&j.code));
            }
        }
    }
    // A stream of events folded in order, as a rebuild does.
    let state = Incidents::default();
    if let Some(list) = value.as_array() {
        for (i, e) in list.iter().enumerate() {
            state.apply(e, i as u64);
        }
        for inc in state.list(|_| true) {
            if inc.status == Status::Resolved && inc.acknowledged_at.is_none() {
                let skipped = inc.transitions.iter().any(|t| {
                    t["skipped_acknowledgement"].as_str().is_some_and(|s| !s.is_empty())
                });
                assert!(skipped, "resolved without acknowledgement or a reason");
            }
            let _ = inc.to_json(0);
            let _ = state.due(u64::MAX / 2, &[3600]);
        }
    }
});
