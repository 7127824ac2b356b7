//! Export bundles (`aiaudit-bundle 1`, a gzip'd tar) as a third party checks
//! them offline with `verify_bundle`: either the raw bytes, or members given
//! one by one (split at SEPARATOR) that this target packs, optionally
//! re-signing the checkpoint and the manifest so that mutated contents get
//! past the signatures to the checks behind them.
//!
//! Properties: no panic; a bundle that verifies has consistent counts.
#![no_main]

use aiaudit_bundle::{sig_body, verify_bundle, MEMBERS};
use aiaudit_tlog::{sign_note, Signer};
use flate2::{write::GzEncoder, Compression};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// Between members in the structured form (see fuzz/corpus/export_bundle).
const SEPARATOR: &[u8] = b"\n~~~~ member ~~~~\n";

// The conformance key (as in signed_note); the seed bundles are signed with it.
const SKEY: &str =
    "PRIVATE+KEY+example.test/log+d55b6dd2+AQjzF0WRPB94l86Wpj2mqsXJEPEZ5i4MdWNE8Ch33fx0";

fn signer() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| Signer::parse(SKEY).expect("the conformance key parses"))
}

fn split<'a>(mut data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    while let Some(i) = data.windows(sep.len()).position(|w| w == sep) {
        parts.push(&data[..i]);
        data = &data[i + sep.len()..];
    }
    parts.push(data);
    parts
}

fn sha256(data: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Packs members as the writer does: ustar headers, regular files, gzip.
fn pack(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::none()));
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // Names longer than ustar allows cannot be packed: leave them out.
        let _ = tar.append_data(&mut h, name, data.as_slice());
    }
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .expect("writing to memory")
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let trusted = (flags & 8 == 8).then(|| signer().verifier().to_vkey());
    let bundle = if flags & 1 == 0 {
        rest.to_vec()
    } else {
        let mut members: Vec<(String, Vec<u8>)> = split(rest, SEPARATOR)
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                let name = MEMBERS
                    .get(i)
                    .map_or(format!("extra{i}"), |m| m.to_string());
                (name, part.to_vec())
            })
            .collect();
        if flags & 2 == 2 {
            if let Some((_, cp)) = members.get_mut(2) {
                if let Ok(text) = std::str::from_utf8(cp) {
                    let body = text.rfind("\n\n").map_or(text, |i| &text[..i + 1]);
                    if let Ok(note) = sign_note(body, signer()) {
                        *cp = note.into_bytes();
                    }
                }
            }
        }
        if flags & 4 == 4 && members.len() >= 5 {
            let note = sign_note(&sig_body(&sha256(&members[4].1)), signer()).expect("signs");
            match members.get_mut(5) {
                Some((_, sig)) => *sig = note.into_bytes(),
                None => members.push((MEMBERS[5].to_string(), note.into_bytes())),
            }
        }
        pack(&members)
    };
    if let Ok(report) = verify_bundle(bundle.as_slice(), trusted.as_deref()) {
        assert_eq!(
            report.plain + report.sealed_with_content + report.sealed_without_content,
            report.events
        );
        assert_eq!(report.key_trusted, trusted.is_some());
        assert!(report.first_index <= report.last_index);
        assert_eq!(report.first_index.is_some(), report.events > 0);
    }
});
