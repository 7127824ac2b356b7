//! RFC 8785, the JSON Canonicalization Scheme (JCS): the bytes an emitter
//! signs in batch-signature format v2 (docs/format.md).
//!
//! The RFC's rules, and how they are met here:
//! - object members sorted by their keys' UTF-16 code units (compared with
//!   `str::encode_utf16`, so no allocation);
//! - strings escaped as ECMAScript's `JSON.stringify` does: `\b \t \n \f \r`,
//!   `\"`, `\\`, other controls below U+0020 as `\u00xx`; everything else as
//!   is (the same escaping as format v1, [`crate::canonical`]);
//! - numbers as IEEE 754 doubles printed by ECMAScript's Number-to-String,
//!   from the `ryu-js` crate (the Boa engine's).
//!
//! One deliberate restriction: JCS sees every number as a double, so an
//! integer such as 9007199254740993 that no double holds would be signed as
//! 9007199254740992, and either text would then match the signature. The
//! ledger stores the text it received, so such a number is refused
//! ([`JcsError`]) rather than signed ambiguously; send it as a string. An
//! integer that is exactly a double, or is ECMAScript's text for one (what
//! `JSON.stringify` writes), is taken.

use serde_json::{Map, Number, Value};

/// A value RFC 8785 cannot pin down: `pointer` (RFC 6901) names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {detail}")]
pub struct JcsError {
    pub pointer: String,
    pub detail: String,
}

/// Appends the RFC 8785 canonical form of `value` to `out`.
pub fn write_jcs(out: &mut Vec<u8>, value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => crate::canonical::write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_jcs(out, item).map_err(|e| e.under(&i.to_string()))?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_jcs_object(out, map)?,
    }
    Ok(())
}

/// The RFC 8785 canonical form of an object, as a new byte string.
pub fn jcs_object(map: &Map<String, Value>) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(256);
    write_jcs_object(&mut out, map)?;
    Ok(out)
}

fn write_jcs_object(out: &mut Vec<u8>, map: &Map<String, Value>) -> Result<(), JcsError> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_unstable_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    out.push(b'{');
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        crate::canonical::write_string(out, key);
        out.push(b':');
        write_jcs(out, value).map_err(|e| e.under(key))?;
    }
    out.push(b'}');
    Ok(())
}

/// Checks that RFC 8785 can canonicalise `value` (every integer is exactly
/// a double) without writing it: what an emitter checks before it queues an
/// event it will sign.
pub fn check_signable(value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Number(n) => exact_double(n).map(|_| ()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_signable(item).map_err(|e| e.under(&i.to_string()))),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| check_signable(v).map_err(|e| e.under(k))),
        _ => Ok(()),
    }
}

fn write_number(out: &mut Vec<u8>, n: &Number) -> Result<(), JcsError> {
    let f = exact_double(n)?;
    out.extend_from_slice(ryu_js::Buffer::new().format(f).as_bytes());
    Ok(())
}

/// The double a JSON number is, refusing an integer no double holds.
/// An integer is taken when it is exactly a double, or when it is the text
/// ECMAScript writes for a double (`JSON.stringify(2 ** 63)` is
/// `9223372036854776000`, which a JavaScript emitter sends); any other
/// integer would be signed as a different number.
fn exact_double(n: &Number) -> Result<f64, JcsError> {
    let taken =
        |f: f64, i: i128| f as i128 == i || ryu_js::Buffer::new().format(f) == i.to_string();
    let f = if let Some(u) = n.as_u64() {
        let f = u as f64;
        taken(f, u.into()).then_some(f)
    } else if let Some(i) = n.as_i64() {
        let f = i as f64;
        taken(f, i.into()).then_some(f)
    } else {
        n.as_f64()
    };
    f.ok_or_else(|| JcsError {
        pointer: String::new(),
        detail: format!(
            "the integer {n} is not exactly an IEEE 754 double, so an RFC 8785 signature \
             cannot cover it (it would also match a neighbouring integer): send it as a string"
        ),
    })
}

impl JcsError {
    /// Prefixes the pointer with the member or index it was found under.
    fn under(mut self, segment: &str) -> Self {
        let escaped = segment.replace('~', "~0").replace('/', "~1");
        self.pointer = format!("/{escaped}{}", self.pointer);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn jcs(text: &str) -> Result<String, JcsError> {
        let v: Value = serde_json::from_str(text).unwrap();
        let mut out = Vec::new();
        write_jcs(&mut out, &v)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn sorts_by_utf16_code_units_not_utf8_bytes() {
        // U+FB33 is one UTF-16 unit (0xFB33); U+1F600 is a surrogate pair
        // starting 0xD83D, so it sorts first, unlike in UTF-8 (EF… < F0…).
        assert_eq!(
            jcs(r#"{"\ufb33":1,"\ud83d\ude00":2,"a":3}"#).unwrap(),
            "{\"a\":3,\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
    }

    #[test]
    fn numbers_print_as_ecmascript_does() {
        for (text, want) in [
            ("2.0", "2"),
            ("-0", "0"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("9007199254740992", "9007199254740992"),
            ("18014398509481984", "18014398509481984"),
            ("-9223372036854775808", "-9223372036854776000"),
            ("18446744073709551616", "18446744073709552000"),
            // What JSON.stringify writes for 2**63 and 2**64 - 2048.
            ("9223372036854776000", "9223372036854776000"),
            ("18446744073709549568", "18446744073709550000"),
            ("18446744073709550000", "18446744073709550000"),
        ] {
            assert_eq!(jcs(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn integers_no_double_holds_are_refused_with_their_place() {
        let text = r#"{"a":[1,{"b/c":9007199254740993}]}"#;
        let e = jcs(text).unwrap_err();
        assert_eq!(e.pointer, "/a/1/b~1c");
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(check_signable(&v).unwrap_err(), e);
        assert!(check_signable(&json!({"a": [1, 2.5, {"b": 9007199254740992u64}]})).is_ok());
        assert!(e.detail.contains("9007199254740993"), "{}", e.detail);
        assert!(jcs("18446744073709551615").is_err());
        assert!(jcs("9223372036854775807").is_err());
        assert!(jcs("9223372036854776001").is_err());
        assert!(jcs("-9007199254740993").is_err());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(1i64 << 53)..(1i64 << 53)).prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Agrees byte for byte with an independent implementation of the
        /// RFC (the serde_json_canonicalizer crate).
        #[test]
        fn agrees_with_another_implementation(v in arb_json()) {
            let mut ours = Vec::new();
            write_jcs(&mut ours, &v).unwrap();
            let theirs = serde_json_canonicalizer::to_vec(&v).unwrap();
            prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(theirs).unwrap());
        }
    }
}
