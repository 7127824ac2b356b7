//! Canonical JSON: one byte string for one JSON value, whatever the sender's
//! key order or whitespace. Rules (docs/format.md, "canonical JSON"):
//! object members sorted by the UTF-8 bytes of their keys, no whitespace,
//! strings escaped minimally, numbers as serde_json prints them (integers in
//! decimal, other numbers as the shortest text that reads back the same f64).
//! Written here rather than relying on serde_json's map order, because that
//! order changes if any crate in the build turns on `preserve_order`.

use serde_json::{Map, Value};

/// Appends the canonical encoding of `value` to `out`.
pub fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

pub(crate) fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
        write_canonical(out, value);
    }
    out.push(b'}');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most strings need no escape at all: scan 16 bytes at a time without an
    // early exit (so the compiler can vectorise it), copy clean chunks whole.
    let clean = bytes
        .chunks_exact(16)
        .take_while(|chunk| {
            !chunk
                .iter()
                .fold(false, |dirty, &b| dirty | needs_escape(b))
        })
        .count()
        * 16;
    out.extend_from_slice(&bytes[..clean]);
    let mut run = clean;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        let mut out = Vec::new();
        write_canonical(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_minimally() {
        assert_eq!(
            canon(&json!("a\"b\\c\n\u{1}é😀/")),
            "\"a\\\"b\\\\c\\n\\u0001é😀/\""
        );
    }

    #[test]
    fn escapes_past_the_fast_scan() {
        let long = format!("{}\"{}\n", "a".repeat(37), "b".repeat(20));
        assert_eq!(
            canon(&json!(long)),
            format!("\"{}\\\"{}\\n\"", "a".repeat(37), "b".repeat(20))
        );
        assert_eq!(
            canon(&json!("x".repeat(32))),
            format!("\"{}\"", "x".repeat(32))
        );
    }

    #[test]
    fn sorts_by_utf8_bytes() {
        assert_eq!(
            canon(&json!({"b": 1, "a": {"z": null, "é": true, "Z": false}})),
            r#"{"a":{"Z":false,"z":null,"é":true},"b":1}"#
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Canonical text is valid JSON that reads back as the same value, and is a fixed point.
        #[test]
        fn round_trips(v in arb_json()) {
            let text = canon(&v);
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(canon(&back), text);
        }
    }
}
