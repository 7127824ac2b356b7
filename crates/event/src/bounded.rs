//! Decoding with a budget: JSON bodies are parsed into values while counting
//! every node, so a small body of many tiny values (`[{},{},…]` grows
//! about 25 times in memory) is refused before it grows, not after.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// Most JSON values (objects, arrays, strings, numbers…) one body may hold.
pub const MAX_JSON_NODES: usize = 1_000_000;

/// Why a body was refused.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// More top-level events than allowed.
    TooMany,
    /// More values in all than [`MAX_JSON_NODES`].
    TooLarge,
    /// Neither an array of events nor one event object.
    NotAnArray,
    Json(String),
}

struct Budget {
    nodes: Cell<usize>,
    over: Cell<bool>,
}

impl Budget {
    fn take<E: serde::de::Error>(&self) -> Result<(), E> {
        let left = self.nodes.get();
        if left == 0 {
            self.over.set(true);
            return Err(E::custom("too many JSON values"));
        }
        self.nodes.set(left - 1);
        Ok(())
    }
}

/// A JSON value, counted against the budget as it is built.
struct Counted<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Counted<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counted<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.take()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::String(v))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::Null)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.take()?;
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Counted(self.0))? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.take()?;
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            self.0.take()?;
            let v = map.next_value_seed(Counted(self.0))?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parses one JSON value within [`MAX_JSON_NODES`].
pub fn value(bytes: &[u8]) -> Result<Value, Refused> {
    value_within(bytes, MAX_JSON_NODES)
}

fn value_within(bytes: &[u8], nodes: usize) -> Result<Value, Refused> {
    let budget = Budget {
        nodes: Cell::new(nodes),
        over: Cell::new(false),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Counted(&budget)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| {
        if budget.over.get() {
            Refused::TooLarge
        } else {
            Refused::Json(e.to_string())
        }
    })
}

/// A JSON array of at most `max_events` events (or one event object).
pub fn events(bytes: &[u8], max_events: usize) -> Result<Vec<Value>, Refused> {
    events_within(bytes, max_events, MAX_JSON_NODES)
}

fn events_within(bytes: &[u8], max_events: usize, nodes: usize) -> Result<Vec<Value>, Refused> {
    struct Events<'b> {
        budget: &'b Budget,
        max: usize,
        too_many: &'b Cell<bool>,
    }
    impl<'de> Visitor<'de> for Events<'_> {
        type Value = Vec<Value>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of events")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
            let mut out = Vec::new();
            loop {
                if out.len() == self.max {
                    // One more element means too many; none means exactly enough.
                    return match seq.next_element::<serde::de::IgnoredAny>()? {
                        Some(_) => {
                            self.too_many.set(true);
                            Err(serde::de::Error::custom("too many events"))
                        }
                        None => Ok(out),
                    };
                }
                match seq.next_element_seed(Counted(self.budget))? {
                    Some(v) => out.push(v),
                    None => return Ok(out),
                }
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<Value>, A::Error> {
            let one = Counted(self.budget).visit_map(map)?;
            Ok(vec![one])
        }
    }
    let budget = Budget {
        nodes: Cell::new(nodes),
        over: Cell::new(false),
    };
    let too_many = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = de
        .deserialize_any(Events {
            budget: &budget,
            max: max_events,
            too_many: &too_many,
        })
        .and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if too_many.get() => Err(Refused::TooMany),
        Err(_) if budget.over.get() => Err(Refused::TooLarge),
        Err(e) if e.is_data() => Err(Refused::NotAnArray),
        Err(e) => Err(Refused::Json(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_arrays_and_single_objects_like_serde_json() {
        let body = br#"[{"a":1,"b":[true,null,"x",2.5]},{"c":{}}]"#;
        let expected: Vec<Value> = serde_json::from_slice(body).unwrap();
        assert_eq!(events(body, 10).unwrap(), expected);
        assert_eq!(events(br#"{"a":1}"#, 10).unwrap(), vec![json!({"a": 1})]);
        assert_eq!(events(b"[]", 10).unwrap(), Vec::<Value>::new());
        assert_eq!(events(b"[{},{}]", 2).unwrap().len(), 2);
    }

    #[test]
    fn refuses_more_events_than_allowed_before_reading_them() {
        assert_eq!(events(b"[{},{},{}]", 2), Err(Refused::TooMany));
    }

    #[test]
    fn refuses_bodies_of_too_many_values() {
        let many = format!("[{{\"a\":[{}0]}}]", "0,".repeat(100));
        assert_eq!(
            events_within(many.as_bytes(), 10, 50),
            Err(Refused::TooLarge)
        );
        assert!(events_within(many.as_bytes(), 10, 500).is_ok());
        assert_eq!(value_within(b"[[],[],[]]", 3), Err(Refused::TooLarge));
        assert_eq!(value_within(b"[[],[],[]]", 4).unwrap(), json!([[], [], []]));
    }

    #[test]
    fn tells_shapes_and_syntax_apart() {
        assert_eq!(events(b"42", 10), Err(Refused::NotAnArray));
        assert_eq!(events(br#""x""#, 10), Err(Refused::NotAnArray));
        assert!(matches!(events(b"[{", 10), Err(Refused::Json(_))));
        assert!(matches!(events(b"[{}] x", 10), Err(Refused::Json(_))));
    }
}
