//! The two canonical forms an emitter's signature covers: entry format v1's
//! canonical JSON and RFC 8785 (batch-signature format v2), over any JSON.
//!
//! Properties: no panic; each form is valid JSON that reads back as the same
//! value (numbers as the same double); each is a fixed point (canonicalising
//! its own output gives the same bytes); v2 agrees byte for byte with an
//! independent RFC 8785 implementation (serde_json_canonicalizer) whenever
//! v2 takes the value; v2 refuses only an integer that no double holds.
#![no_main]

use aiaudit_event::{write_canonical, write_jcs};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let mut v1 = Vec::new();
    write_canonical(&mut v1, &value);
    let back: Value = serde_json::from_slice(&v1).expect("v1 output is JSON");
    assert!(same(&back, &value), "v1 changed the value");
    let mut again = Vec::new();
    write_canonical(&mut again, &back);
    assert_eq!(again, v1, "v1 is not a fixed point");

    let mut v2 = Vec::new();
    match write_jcs(&mut v2, &value) {
        Ok(()) => {
            let theirs = serde_json_canonicalizer::to_vec(&as_doubles(&value)).expect("theirs");
            assert_eq!(v2, theirs, "v2 disagrees with serde_json_canonicalizer");
            let back: Value = serde_json::from_slice(&v2).expect("v2 output is JSON");
            assert!(same(&back, &value), "v2 changed the value");
            let mut again = Vec::new();
            write_jcs(&mut again, &back).expect("v2 output canonicalises");
            assert_eq!(again, v2, "v2 is not a fixed point");
        }
        Err(e) => assert!(
            e.detail.contains("not exactly an IEEE 754 double"),
            "v2 refused for another reason: {e}"
        ),
    }
});

/// Equal as JSON values, numbers compared as the doubles they are.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Every number as a double, as an RFC 8785 implementation reads JSON.
fn as_doubles(v: &Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.iter().map(as_doubles).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), as_doubles(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}
