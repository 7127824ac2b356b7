//! Signed notes and what they carry, as a verifier or witness gets them from
//! a log: `open_note`, checkpoint bodies (`Checkpoint::parse_body`, the
//! store's `parse_checkpoint`) and the key strings (`Verifier::parse`,
//! `Signer::parse`).
//!
//! Properties: no panic; an opened note's body is its prefix; a checkpoint
//! body that parses is the one encoding of that checkpoint; keys survive
//! a print/parse round trip; any body signed here opens to itself.
#![no_main]

use aiaudit_tlog::{open_note, sign_note, Checkpoint, Signer, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

// The key of the C2SP conformance vectors (docs in /work/shared/conformance),
// so the seed checkpoint note verifies.
const SKEY: &str =
    "PRIVATE+KEY+example.test/log+d55b6dd2+AQjzF0WRPB94l86Wpj2mqsXJEPEZ5i4MdWNE8Ch33fx0";

fn keys() -> &'static (Signer, Verifier) {
    static KEYS: OnceLock<(Signer, Verifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let s = Signer::parse(SKEY).expect("the conformance key parses");
        let v = s.verifier();
        (s, v)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (signer, verifier) = keys();

    if let Ok(body) = open_note(text, verifier) {
        assert!(text.starts_with(body) && body.ends_with('\n'));
        let _ = Checkpoint::parse_body(body);
    }
    if let Ok(cp) = Checkpoint::parse_body(text) {
        assert_eq!(cp.body(), text);
    }
    if let Ok(cp) = aiaudit_store::parse_checkpoint(text) {
        assert_eq!(Checkpoint::parse_body(&cp.body()).ok(), Some(cp));
    }
    if let Ok(v) = Verifier::parse(text) {
        assert_eq!(Verifier::parse(&v.to_vkey()).ok(), Some(v));
    }
    if let Ok(s) = Signer::parse(text) {
        let again = Signer::parse(&s.to_skey()).expect("own skey parses");
        assert_eq!(again.verifier(), s.verifier());
    }
    if let Ok(note) = sign_note(text, signer) {
        assert_eq!(open_note(&note, verifier).ok(), Some(text));
    }
});
