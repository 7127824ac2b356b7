//! What witnesses and their clients parse from outside: add-checkpoint
//! bodies (a witness gets them from anyone), tlog-proofs and tlog-policy
//! files (an auditor gets them from a log), 409 size bodies, witness keys,
//! and a policy check over a note.
//!
//! Properties: no panic; whatever parses prints back to what parses to
//! the same value; a checkpoint a policy accepts is signed by its log key.
#![no_main]

use aiaudit_tlog::{
    parse_tlog_size, AddCheckpoint, CosignatureVerifier, Policy, TlogProof,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

// The policy of the witness conformance vectors (2 of 3).
const POLICY: &str = include_str!("../../crates/tlog/testdata/witness/policy-2of3.txt");

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Policy::parse(POLICY).expect("the reference policy parses"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(req) = AddCheckpoint::parse(text) {
        assert!(req.proof.len() <= 63);
        assert_eq!(AddCheckpoint::parse(&req.format()).ok(), Some(req));
    }
    if let Ok(p) = TlogProof::parse(text) {
        assert_eq!(TlogProof::parse(&p.format()).ok(), Some(p));
    }
    if let Ok(p) = Policy::parse(text) {
        let _ = p.quorum_met(p.witnesses().iter().map(|w| w.name.as_str()));
    }
    if let Some(n) = parse_tlog_size(text) {
        assert_eq!(format!("{n}\n"), text);
    }
    if let Ok(v) = CosignatureVerifier::parse(text) {
        assert_eq!(CosignatureVerifier::parse(&v.to_vkey()).ok(), Some(v));
    }
    if let Ok(check) = policy().verify_checkpoint(text) {
        assert!(policy().logs().any(|l| l.name() == check.log));
        assert!(check.cosigned.len() >= 2);
    }
});
