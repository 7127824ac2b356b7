//! Canonical JSON: one byte string for one JSON value, whatever the sender's
//! key order or whitespace. Rules (docs/format.md, "canonical JSON"):
//! object members sorted by the UTF-8 bytes of their keys, no whitespace,
//! strings escaped minimally, integers in decimal, other numbers as the
//! shortest digits that read back as the same f64, laid out as
//! [`write_v1_float`] says.
//! Written here rather than relying on serde_json's map order or number
//! printing, because the order changes if any crate in the build turns on
//! `preserve_order`, and serde_json has changed how it prints floats before
//! (ryu, then zmij): the bytes of format v1 must never move.

use serde_json::{Map, Value};

/// Appends the canonical encoding of `value` to `out`.
pub fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_v1_number(out, n),
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
    write_members(out, map.iter().collect(), write_canonical);
}

/// The length of what [`write_canonical`] writes for `value`, found without
/// writing it: ingest measures every event (`max_event_bytes`, the blob
/// threshold) but entry format 3 never writes an event whole.
pub fn canonical_len(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => {
            let mut digits = Vec::with_capacity(32);
            write_v1_number(&mut digits, n);
            digits.len()
        }
        Value::String(s) => string_len(s),
        Value::Array(items) => {
            2 + items.len().saturating_sub(1) + items.iter().map(canonical_len).sum::<usize>()
        }
        Value::Object(map) => object_len(map),
    }
}

/// [`canonical_len`] of an object.
pub(crate) fn object_len(map: &Map<String, Value>) -> usize {
    2 + map.len().saturating_sub(1)
        + map
            .iter()
            .map(|(k, v)| string_len(k) + 1 + canonical_len(v))
            .sum::<usize>()
}

/// Writes an object of these members, sorted, each value by `value`.
pub(crate) fn write_members<K: AsRef<str>, V>(
    out: &mut Vec<u8>,
    mut members: Vec<(K, V)>,
    mut value: impl FnMut(&mut Vec<u8>, V),
) {
    members.sort_unstable_by(|a, b| a.0.as_ref().as_bytes().cmp(b.0.as_ref().as_bytes()));
    out.push(b'{');
    for (i, (key, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key.as_ref());
        out.push(b':');
        value(out, v);
    }
    out.push(b'}');
}

fn write_v1_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
    } else if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        write_v1_float(out, f);
    }
}

/// A non-integer number in format v1 (pinned to what the ledger has always
/// written, serde_json 1.0.154's printing). With `d1 d2 … dn` the shortest
/// digits that read back as the same double and `E` its decimal exponent
/// (value = d1.d2…dn × 10^E):
/// - zero is `0.0` (`-0.0` for negative zero);
/// - for -5 ≤ E ≤ 15, plain decimal notation with at least one digit after
///   the point: `2.0`, `1000000000000000.0`, `12.5`, `0.00001`;
/// - otherwise `d1[.d2…dn]e±E`: `1e+21`, `1.5e-7`, `5e-324`.
pub(crate) fn write_v1_float(out: &mut Vec<u8>, f: f64) {
    if f.is_sign_negative() {
        out.push(b'-');
    }
    let f = f.abs();
    if f == 0.0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    let (digits, exp) = shortest_digits(f);
    let n = digits.len() as i32;
    if (-5..=15).contains(&exp) {
        if exp >= n - 1 {
            out.extend_from_slice(&digits);
            out.extend(std::iter::repeat_n(b'0', (exp - (n - 1)) as usize));
            out.extend_from_slice(b".0");
        } else if exp >= 0 {
            let point = exp as usize + 1;
            out.extend_from_slice(&digits[..point]);
            out.push(b'.');
            out.extend_from_slice(&digits[point..]);
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.extend_from_slice(&digits);
        }
    } else {
        out.push(digits[0]);
        if n > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp >= 0 { b'+' } else { b'-' });
        out.extend_from_slice(exp.unsigned_abs().to_string().as_bytes());
    }
}

/// The shortest digits `d1 d2 … dn` (no trailing zero) that read back as
/// the positive finite `f`, and the decimal exponent `E` of `d1.d2…dn × 10^E`.
/// Ties between two shortest candidates go to the even digit, as ECMAScript
/// (and the printing format v1 was written with) prescribes; Rust's own
/// `{:e}` rounds those ties differently, so the digits come from ryu-js.
fn shortest_digits(f: f64) -> (Vec<u8>, i32) {
    let mut buf = ryu_js::Buffer::new();
    let text = buf.format_finite(f);
    let (digits, exp): (Vec<u8>, i32) = match text.split_once('e') {
        Some((mantissa, exp)) => (
            mantissa.bytes().filter(|b| *b != b'.').collect(),
            exp.parse().expect("ryu-js exponents are decimal"),
        ),
        None => {
            let (int, frac) = text.split_once('.').unwrap_or((text, ""));
            if int != "0" {
                let digits = int.bytes().chain(frac.bytes()).collect();
                (digits, int.len() as i32 - 1)
            } else {
                let zeros = frac.bytes().take_while(|b| *b == b'0').count();
                (frac.as_bytes()[zeros..].to_vec(), -(zeros as i32) - 1)
            }
        }
    };
    let kept = digits.iter().rposition(|b| *b != b'0').map_or(1, |i| i + 1);
    (digits[..kept].to_vec(), exp)
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// How many leading bytes need no escape, in whole chunks of 16. Most
/// strings need no escape at all: each chunk is scanned without an early
/// exit, so the compiler can vectorise it.
fn clean_prefix(bytes: &[u8]) -> usize {
    bytes
        .chunks_exact(16)
        .take_while(|chunk| {
            !chunk
                .iter()
                .fold(false, |dirty, &b| dirty | needs_escape(b))
        })
        .count()
        * 16
}

/// The length of [`write_string`]'s output.
fn string_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let clean = clean_prefix(bytes);
    let extra: usize = bytes[clean..]
        .iter()
        .map(|&b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0x00..=0x1f => 5,
            _ => 0,
        })
        .sum();
    2 + bytes.len() + extra
}

/// A JSON string, escaped minimally (the same rules as RFC 8785).
pub(crate) fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Clean chunks are copied whole.
    let clean = clean_prefix(bytes);
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

    /// Numbers as format v1 has always written them (docs/format.md).
    #[test]
    fn numbers_keep_their_v1_form() {
        for (text, v1) in [
            ("0", "0"),
            ("-7", "-7"),
            ("18446744073709551615", "18446744073709551615"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("18446744073709551616", "1.8446744073709552e+19"),
            ("2.0", "2.0"),
            ("-0", "-0.0"),
            ("0.0", "0.0"),
            ("2.5", "2.5"),
            ("1e21", "1e+21"),
            ("1E300", "1e+300"),
            ("1e15", "1000000000000000.0"),
            ("1e16", "1e+16"),
            ("123456.789e3", "123456789.0"),
            ("0.00001", "0.00001"),
            ("0.000001", "1e-6"),
            ("1.5e-7", "1.5e-7"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("0.1", "0.1"),
            ("-1.25e-5", "-0.0000125"),
        ] {
            let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(canon(&v), v1, "{text}");
        }
    }

    proptest! {
        /// The pinned float layout is what serde_json printed when format v1
        /// was written; if a serde_json upgrade changes its printing, this
        /// says so (and format v1 keeps its bytes).
        #[test]
        fn floats_match_the_printing_v1_was_written_with(bits in any::<u64>()) {
            let f = f64::from_bits(bits);
            prop_assume!(f.is_finite());
            let mut out = Vec::new();
            write_v1_float(&mut out, f);
            prop_assert_eq!(String::from_utf8(out).unwrap(), json!(f).to_string());
        }
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

        /// The measured length is the written one, escapes included.
        #[test]
        fn lengths_are_what_is_written(
            v in arb_json(),
            escapy in "[\\x00-\\x1f\"\\\\a-z\u{e9}\u{1f600}]{0,40}",
        ) {
            prop_assert_eq!(canonical_len(&v), canon(&v).len());
            let s = Value::String(escapy);
            prop_assert_eq!(canonical_len(&s), canon(&s).len());
            let both = json!({ "s": s, "v": v, "": [] });
            prop_assert_eq!(canonical_len(&both), canon(&both).len());
        }
    }
}
