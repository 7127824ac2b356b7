//! docs/vectors/batch-signatures.json, computed with outside implementations
//! (PyPI rfc8785 and cryptography, tests/interop/make_vectors.py): our
//! canonical forms and batch signatures must match them byte for byte.

use aiaudit_event::signature::SignatureFormat;
use aiaudit_event::signature::{batch_leaves, batch_message, batch_root, sign_batch, verify_batch};
use aiaudit_event::{write_canonical, write_jcs};
use aiaudit_tlog::Signer;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../../docs/vectors/batch-signatures.json")).unwrap()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap()
}

fn v1(v: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(&mut out, v);
    String::from_utf8(out).unwrap()
}

fn v2(v: &Value) -> String {
    let mut out = Vec::new();
    write_jcs(&mut out, v).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn rfc8785_appendix_b_numbers() {
    let all = vectors();
    let numbers = all["rfc8785_numbers"].as_array().unwrap();
    assert!(numbers.len() >= 20);
    for n in numbers {
        let bits = u64::from_str_radix(text(&n["ieee754_hex"]), 16).unwrap();
        let value = serde_json::json!(f64::from_bits(bits));
        assert_eq!(v2(&value), text(&n["v2"]), "{n}");
        assert_eq!(v1(&value), text(&n["v1"]), "{n}");
        // The JSON text given reads back as the same double.
        let read: Value = serde_json::from_str(text(&n["json"])).unwrap();
        assert_eq!(read.as_f64().unwrap().to_bits(), bits, "{n}");
    }
}

#[test]
fn canonical_forms_of_rfc_examples_and_ai_events() {
    let all = vectors();
    for c in all["canonical"].as_array().unwrap() {
        let value: Value = serde_json::from_str(text(&c["json"])).unwrap();
        assert_eq!(v2(&value), text(&c["v2"]), "v2 of {}", c["name"]);
        assert_eq!(v1(&value), text(&c["v1"]), "v1 of {}", c["name"]);
    }
}

#[test]
fn numbers_no_double_holds_are_refused_where_they_are() {
    let all = vectors();
    for r in all["refused_by_v2"].as_array().unwrap() {
        let value: Value = serde_json::from_str(text(&r["json"])).unwrap();
        let err = write_jcs(&mut Vec::new(), &value).unwrap_err();
        assert_eq!(err.pointer, text(&r["pointer"]), "{}", r["name"]);
    }
}

#[test]
fn signed_batches_match_byte_for_byte() {
    let all = vectors();
    let batches = all["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2);
    for b in batches {
        let format = SignatureFormat::parse(text(&b["format"])).unwrap();
        let seed: [u8; 32] = hex::decode(text(&b["seed_hex"]))
            .unwrap()
            .try_into()
            .unwrap();
        let signer = Signer::from_seed(text(&b["emitter"]), seed).unwrap();
        assert_eq!(signer.verifier().to_vkey(), text(&b["vkey"]));
        let bytes: Vec<Vec<u8>> = b["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let Value::Object(map) = serde_json::from_str(text(e)).unwrap() else {
                    panic!("an event is an object")
                };
                format.event_bytes(&map).unwrap()
            })
            .collect();
        let leaves = batch_leaves(&bytes);
        let want: Vec<String> = b["leaves_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| text(h).to_string())
            .collect();
        assert_eq!(leaves.iter().map(hex::encode).collect::<Vec<_>>(), want);
        let root = batch_root(&leaves);
        assert_eq!(B64.encode(root), text(&b["root"]));
        let message = batch_message(format, signer.name(), leaves.len() as u64, &root);
        assert_eq!(String::from_utf8(message).unwrap(), text(&b["message"]));
        let sig = sign_batch(&signer, format, &bytes);
        assert_eq!(B64.encode(sig), text(&b["signature"]));
        verify_batch(&signer.verifier(), format, &bytes, &sig).unwrap();
    }
}

/// The number table in docs/format.md says what the code writes.
#[test]
fn the_number_table_in_the_docs_matches_the_code() {
    let doc = include_str!("../../../docs/format.md");
    let table = doc
        .split("<!-- number-table -->")
        .nth(1)
        .and_then(|t| t.split("<!-- /number-table -->").next())
        .expect("docs/format.md has the number table");
    let mut rows = 0;
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        let [input, want_v1, want_v2] = cells[..] else {
            panic!("a row has three cells: {line}")
        };
        let value: Value = serde_json::from_str(input).unwrap();
        assert_eq!(v1(&value), want_v1, "v1 of {input}");
        let mut out = Vec::new();
        match (write_jcs(&mut out, &value), want_v2) {
            (Err(_), "refused") => {}
            (Ok(()), want) => assert_eq!(String::from_utf8(out).unwrap(), want, "v2 of {input}"),
            (Err(e), want) => panic!("v2 of {input}: {e}, the table says {want}"),
        }
        rows += 1;
    }
    assert!(rows >= 15, "only {rows} rows read");
}
