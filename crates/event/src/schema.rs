//! The AI audit event schema, version 1: the rules `docs/schema/event.v1.json`
//! publishes, enforced here in one place. Every error of an event is listed,
//! each with the path of the field at fault.

use serde_json::{Map, Value};

/// Longest accepted event id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Deepest accepted nesting of objects and arrays inside an event.
pub const MAX_DEPTH: usize = 16;

/// Why an event was refused: the field's path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct EventError {
    /// JSON Pointer (RFC 6901) to the field, relative to the event (`/ai/gen_ai.usage.input_tokens`).
    pub pointer: String,
    /// The same field as a dotted path (`ai.gen_ai.usage.input_tokens`), empty for the event itself.
    pub path: String,
    pub detail: String,
}

/// The top-level fields of an event, for the "unknown field" error.
pub const FIELDS: &[&str] = &[
    "id",
    "time",
    "tenant",
    "source",
    "actor",
    "action",
    "outcome",
    "resource",
    "risk_level",
    "purpose",
    "subject",
    "ai",
    "input",
    "output",
    "trace_id",
    "span_id",
    "parent_span_id",
    "human_oversight",
    "attributes",
];

/// The position of `key` in [`FIELDS`]. A `match`, which compiles to a
/// switch on the length and fixed-size compares, where `FIELDS.contains`
/// and the map's own lookups called `memcmp` once per candidate key: this
/// runs for every key of every event.
fn field_index(key: &str) -> Option<usize> {
    match key {
        "id" => Some(0),
        "time" => Some(1),
        "tenant" => Some(2),
        "source" => Some(3),
        "actor" => Some(4),
        "action" => Some(5),
        "outcome" => Some(6),
        "resource" => Some(7),
        "risk_level" => Some(8),
        "purpose" => Some(9),
        "subject" => Some(10),
        "ai" => Some(11),
        "input" => Some(12),
        "output" => Some(13),
        "trace_id" => Some(14),
        "span_id" => Some(15),
        "parent_span_id" => Some(16),
        "human_oversight" => Some(17),
        "attributes" => Some(18),
        _ => None,
    }
}

/// An event's top-level members by [`FIELDS`] position, found in one pass
/// over its keys.
struct Top<'a>([Option<&'a Value>; FIELDS.len()]);

impl<'a> Top<'a> {
    #[inline]
    fn get(&self, name: &str) -> Option<&'a Value> {
        field_index(name).and_then(|i| self.0[i])
    }

    fn required(&self, c: &mut Checker, name: &str) -> Option<&'a Value> {
        let v = self.get(name);
        if v.is_none() {
            c.fail(&[name], "required field is missing");
        }
        v
    }
}

pub const ACTOR_TYPES: &[&str] = &["user", "service", "agent"];
pub const OUTCOME_STATUSES: &[&str] = &["success", "failure", "denied"];
pub const RISK_LEVELS: &[&str] = &[
    "minimal",
    "low",
    "limited",
    "medium",
    "high",
    "critical",
    "unacceptable",
];

/// OpenTelemetry GenAI attributes whose type the schema fixes.
const AI_INTEGERS: &[&str] = &[
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.request.max_tokens",
    "gen_ai.request.seed",
    "gen_ai.request.choice.count",
];
const AI_NUMBERS: &[&str] = &[
    "gen_ai.request.temperature",
    "gen_ai.request.top_p",
    "gen_ai.request.top_k",
    "gen_ai.request.frequency_penalty",
    "gen_ai.request.presence_penalty",
];
const AI_STRING_ARRAYS: &[&str] = &[
    "gen_ai.response.finish_reasons",
    "gen_ai.request.stop_sequences",
];

struct Checker {
    errors: Vec<EventError>,
}

fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

impl Checker {
    fn fail(&mut self, path: &[&str], detail: impl Into<String>) {
        self.errors.push(EventError {
            pointer: path
                .iter()
                .map(|s| format!("/{}", pointer_segment(s)))
                .collect(),
            path: path.join("."),
            detail: detail.into(),
        });
    }

    fn string<'a>(&mut self, v: &'a Value, path: &[&str], max: usize) -> Option<&'a str> {
        match v {
            Value::String(s) if s.is_empty() => {
                self.fail(path, "must not be empty");
                None
            }
            Value::String(s) if s.len() > max => {
                self.fail(path, format!("longer than {max} bytes"));
                None
            }
            Value::String(s) => Some(s),
            other => {
                self.fail(path, format!("expected string, got {}", kind(other)));
                None
            }
        }
    }

    fn one_of(&mut self, v: &Value, path: &[&str], allowed: &[&str]) {
        if let Some(s) = self.string(v, path, 64) {
            if !allowed.contains(&s) {
                self.fail(path, format!("{s:?} is not one of {}", allowed.join(", ")));
            }
        }
    }

    fn object<'a>(&mut self, v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.fail(path, format!("expected object, got {}", kind(other)));
                None
            }
        }
    }

    fn required<'a>(
        &mut self,
        m: &'a Map<String, Value>,
        key: &str,
        path: &[&str],
    ) -> Option<&'a Value> {
        let v = m.get(key);
        if v.is_none() {
            let mut p = path.to_vec();
            p.push(key);
            self.fail(&p, "required field is missing");
        }
        v
    }

    fn hex(&mut self, v: &Value, path: &[&str], len: usize) {
        if let Some(s) = self.string(v, path, len) {
            let ok = s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !ok {
                self.fail(path, format!("expected {len} lowercase hex digits"));
            } else if s.bytes().all(|b| b == b'0') {
                self.fail(path, "must not be all zeros");
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn dotted_lowercase(s: &str) -> bool {
    let mut segments = 0;
    for seg in s.split('.') {
        let mut bytes = seg.bytes();
        match bytes.next() {
            Some(b'a'..=b'z') => {}
            _ => return false,
        }
        if !bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_')) {
            return false;
        }
        segments += 1;
    }
    segments >= 2
}

/// The longest tenant name.
pub const MAX_TENANT_LEN: usize = 64;

/// A well-formed tenant name: 1 to [`MAX_TENANT_LEN`] letters, digits, `-`,
/// `_` and `.` (so it is safe as a path part, a metrics label and a key prefix).
pub fn is_valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= MAX_TENANT_LEN
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks an event against schema v1 and returns its id, or every error found.
pub fn validate(event: &Map<String, Value>) -> Result<String, Vec<EventError>> {
    validate_measured(event, 1 + event.values().map(depth).max().unwrap_or(0))
}

/// [`validate`] for a caller that measured the event's nesting depth while
/// building it (`depth`: 1 for an object of scalars, one more per level of
/// objects or arrays), which saves a walk over every value: the Python
/// emitter counts while it converts a dict. A wrong `depth` can only make
/// this check differ from the ledger's, which runs [`validate`] itself.
pub fn validate_measured(
    event: &Map<String, Value>,
    depth: usize,
) -> Result<String, Vec<EventError>> {
    let mut c = Checker { errors: Vec::new() };
    let d = depth;
    if d > MAX_DEPTH {
        c.fail(
            &[],
            format!("nested {d} levels deep; at most {MAX_DEPTH} allowed"),
        );
        return Err(c.errors);
    }
    let mut top = Top([None; FIELDS.len()]);
    for (key, value) in event {
        match field_index(key) {
            Some(i) => top.0[i] = Some(value),
            None => c.fail(
                &[key],
                "unknown field (put custom data under \"attributes\")",
            ),
        }
    }

    let mut id = None;
    if let Some(v) = top.required(&mut c, "id") {
        if let Some(s) = c.string(v, &["id"], MAX_ID_LEN) {
            if s.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
                c.fail(&["id"], "must not contain whitespace or control characters");
            } else {
                id = Some(s.to_string());
            }
        }
    }
    if let Some(v) = top.required(&mut c, "time") {
        if let Some(s) = c.string(v, &["time"], 64) {
            if time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .is_err()
            {
                c.fail(
                    &["time"],
                    "expected an RFC 3339 timestamp such as 2026-11-27T09:14:03.120Z",
                );
            }
        }
    }
    if let Some(v) = top.required(&mut c, "tenant") {
        if let Some(s) = c.string(v, &["tenant"], MAX_TENANT_LEN) {
            if !is_valid_tenant(s) {
                c.fail(
                    &["tenant"],
                    "may hold only letters, digits, '-', '_' and '.'",
                );
            }
        }
    }
    if let Some(v) = top.required(&mut c, "source") {
        if let Some(m) = c.object(v, &["source"]) {
            if let Some(n) = c.required(m, "name", &["source"]) {
                c.string(n, &["source", "name"], 256);
            }
            if let Some(v) = m.get("version") {
                c.string(v, &["source", "version"], 128);
            }
        }
    }
    if let Some(v) = top.required(&mut c, "actor") {
        if let Some(m) = c.object(v, &["actor"]) {
            if let Some(n) = c.required(m, "id", &["actor"]) {
                c.string(n, &["actor", "id"], 256);
            }
            if let Some(t) = m.get("type") {
                c.one_of(t, &["actor", "type"], ACTOR_TYPES);
            }
        }
    }
    if let Some(v) = top.required(&mut c, "action") {
        if let Some(s) = c.string(v, &["action"], 128) {
            if !dotted_lowercase(s) {
                c.fail(
                    &["action"],
                    "expected dotted lowercase words such as model.invoke",
                );
            }
        }
    }
    if let Some(v) = top.get("outcome") {
        if let Some(m) = c.object(v, &["outcome"]) {
            if let Some(s) = c.required(m, "status", &["outcome"]) {
                c.one_of(s, &["outcome", "status"], OUTCOME_STATUSES);
            }
            if let Some(r) = m.get("reason") {
                c.string(r, &["outcome", "reason"], 4096);
            }
        }
    }
    if let Some(v) = top.get("resource") {
        if let Some(m) = c.object(v, &["resource"]) {
            for key in ["type", "id"] {
                if let Some(s) = m.get(key) {
                    c.string(s, &["resource", key], 256);
                }
            }
        }
    }
    if let Some(v) = top.get("risk_level") {
        c.one_of(v, &["risk_level"], RISK_LEVELS);
    }
    for key in ["purpose", "subject"] {
        if let Some(v) = top.get(key) {
            c.string(v, &[key], 1024);
        }
    }
    if let Some(v) = top.get("ai") {
        if let Some(m) = c.object(v, &["ai"]) {
            for (key, value) in m {
                let path = ["ai", key.as_str()];
                if AI_INTEGERS.contains(&key.as_str()) {
                    if !(value.is_u64()) {
                        c.fail(
                            &path,
                            format!("expected non-negative integer, got {}", kind(value)),
                        );
                    }
                } else if AI_NUMBERS.contains(&key.as_str()) {
                    if !value.is_number() {
                        c.fail(&path, format!("expected number, got {}", kind(value)));
                    }
                } else if AI_STRING_ARRAYS.contains(&key.as_str()) {
                    if !matches!(value, Value::Array(a) if a.iter().all(Value::is_string)) {
                        c.fail(&path, "expected array of strings");
                    }
                } else if key.starts_with("gen_ai.") && value.is_object() {
                    c.fail(
                        &path,
                        "expected a scalar or an array (GenAI attributes are flat)",
                    );
                }
            }
        }
    }
    for key in ["input", "output"] {
        if let Some(v) = top.get(key) {
            if let Some(m) = c.object(v, &[key]) {
                if !m.contains_key("content") && !m.contains_key("sha256") {
                    c.fail(&[key], "expected \"content\" or \"sha256\"");
                }
                if let Some(h) = m.get("sha256") {
                    if let Some(s) = c.string(h, &[key, "sha256"], 64) {
                        if s.len() != 64
                            || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                        {
                            c.fail(&[key, "sha256"], "expected 64 lowercase hex digits");
                        }
                    }
                }
            }
        }
    }
    if let Some(v) = top.get("trace_id") {
        c.hex(v, &["trace_id"], 32);
    }
    for key in ["span_id", "parent_span_id"] {
        if let Some(v) = top.get(key) {
            c.hex(v, &[key], 16);
        }
    }
    if let Some(v) = top.get("human_oversight") {
        if let Some(m) = c.object(v, &["human_oversight"]) {
            for key in ["reviewer", "decision"] {
                if let Some(s) = m.get(key) {
                    c.string(s, &["human_oversight", key], 256);
                }
            }
        }
    }
    if let Some(v) = top.get("attributes") {
        c.object(v, &["attributes"]);
    }
    match (id, c.errors.is_empty()) {
        (Some(id), true) => Ok(id),
        _ => Err(c.errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example() -> Value {
        json!({"id": "0192f3a4-6b1c-7d2e-9f00-1a2b3c4d5e6f", "time": "2026-11-27T09:14:03.120Z", "tenant": "acme",
           "source": {"name": "loan-assistant", "version": "3.2.0"},
           "actor": {"id": "agent-7", "type": "agent"},
           "action": "agent.decision",
           "outcome": {"status": "success", "reason": "approved under policy L-4"},
           "resource": {"type": "loan_application", "id": "LA-99812"},
           "risk_level": "high", "purpose": "credit decision", "subject": "customer-5521",
           "ai": {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-x", "gen_ai.response.model": "claude-x-2026",
                  "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 812, "gen_ai.usage.output_tokens": 96,
                  "gen_ai.conversation.id": "conv-31", "gen_ai.response.finish_reasons": ["stop"]},
           "input": {"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
           "output": {"content": "Approve, limit 250000 NGN"},
           "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
           "human_oversight": {"reviewer": "officer-12", "decision": "confirmed"},
           "attributes": {"branch": "Ikeja"}})
    }

    fn errors(v: Value) -> Vec<(String, String)> {
        let Value::Object(m) = v else { panic!() };
        validate(&m)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.path, e.detail))
            .collect()
    }

    #[test]
    fn the_documented_example_is_valid() {
        let Value::Object(m) = example() else {
            panic!()
        };
        assert_eq!(
            validate(&m).unwrap(),
            "0192f3a4-6b1c-7d2e-9f00-1a2b3c4d5e6f"
        );
    }

    #[test]
    fn lists_every_error_with_its_path() {
        let mut e = example();
        e["ai"]["gen_ai.usage.input_tokens"] = json!("812");
        e["actor"]["type"] = json!("robot");
        e["trace_id"] = json!("XYZ");
        e["action"] = json!("Agent Decision");
        e.as_object_mut().unwrap().remove("tenant");
        e["colour"] = json!("red");
        let errs = errors(e);
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "colour",
                "tenant",
                "actor.type",
                "action",
                "ai.gen_ai.usage.input_tokens",
                "trace_id"
            ]
        );
        assert_eq!(errs[4].1, "expected non-negative integer, got string");
    }

    #[test]
    fn field_index_is_the_position_in_fields() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(field_index(f), Some(i), "{f}");
            assert_eq!(field_index(&format!("{f}x")), None, "{f}x");
            assert_eq!(field_index(&f[..f.len() - 1]), None, "{f} shortened");
        }
        assert_eq!(field_index("attributes "), None);
        assert_eq!(field_index("ID"), None);
    }

    #[test]
    fn required_fields() {
        let errs = errors(json!({}));
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["id", "time", "tenant", "source", "actor", "action"]);
        let errs = errors(
            json!({"id": "a", "time": "2026-01-01T00:00:00Z", "tenant": "t", "source": {}, "actor": {}, "action": "x.y"}),
        );
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["source.name", "actor.id"]);
    }

    #[test]
    fn pointers_escape_slashes() {
        let mut e = example();
        e["ai"]["gen_ai.usage.output_tokens"] = json!(-1);
        let Value::Object(m) = e else { panic!() };
        let err = &validate(&m).unwrap_err()[0];
        assert_eq!(err.pointer, "/ai/gen_ai.usage.output_tokens");
    }

    #[test]
    fn refuses_deep_nesting() {
        let mut deep = json!("x");
        for _ in 0..40 {
            deep = json!({ "a": deep });
        }
        let mut e = example();
        e["attributes"] = deep;
        let errs = errors(e);
        assert!(errs[0].1.contains("levels deep"));
    }

    /// The published JSON Schema and this validator say the same thing.
    #[test]
    fn agrees_with_the_published_json_schema() {
        let schema: Value =
            serde_json::from_str(include_str!("../../../docs/schema/event.v1.json")).unwrap();
        let props: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut fields = FIELDS.to_vec();
        fields.sort_unstable();
        let mut props_sorted = props.clone();
        props_sorted.sort_unstable();
        assert_eq!(props_sorted, fields);
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, paths_of(&errors(json!({}))));
        let enum_of = |v: &Value| -> Vec<String> {
            v["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            enum_of(&schema["properties"]["actor"]["properties"]["type"]),
            ACTOR_TYPES
        );
        assert_eq!(
            enum_of(&schema["properties"]["outcome"]["properties"]["status"]),
            OUTCOME_STATUSES
        );
        assert_eq!(enum_of(&schema["properties"]["risk_level"]), RISK_LEVELS);
        for key in AI_INTEGERS {
            assert_eq!(
                schema["properties"]["ai"]["properties"][key]["type"], "integer",
                "{key}"
            );
        }
        for key in AI_NUMBERS {
            assert_eq!(
                schema["properties"]["ai"]["properties"][key]["type"], "number",
                "{key}"
            );
        }
    }

    fn paths_of(errs: &[(String, String)]) -> Vec<&str> {
        errs.iter().map(|(p, _)| p.as_str()).collect()
    }

    #[test]
    fn old_timestamps_are_fine() {
        let mut e = example();
        e["time"] = json!("2019-03-01T00:00:00+01:00");
        let Value::Object(m) = e else { panic!() };
        assert!(validate(&m).is_ok());
    }

    /// Each rule's error, one mutation of the example at a time: the error
    /// names the field at fault and says what is wrong with it.
    #[test]
    fn every_rule_names_the_field_at_fault() {
        let long = |n: usize| json!("x".repeat(n));
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            ("/id", json!(""), "id", "must not be empty"),
            ("/id", long(MAX_ID_LEN + 1), "id", "longer than 128 bytes"),
            ("/id", json!("a b"), "id", "whitespace or control"),
            ("/id", json!("a\u{7}"), "id", "whitespace or control"),
            ("/id", json!(7), "id", "expected string, got integer"),
            ("/time", json!("yesterday"), "time", "RFC 3339"),
            ("/time", json!(null), "time", "expected string, got null"),
            ("/tenant", json!("acme corp"), "tenant", "letters, digits"),
            (
                "/tenant",
                json!(["acme"]),
                "tenant",
                "expected string, got array",
            ),
            (
                "/source",
                json!("app"),
                "source",
                "expected object, got string",
            ),
            (
                "/source/name",
                json!(""),
                "source.name",
                "must not be empty",
            ),
            (
                "/source/version",
                json!(3.2),
                "source.version",
                "expected string, got number",
            ),
            (
                "/actor",
                json!(true),
                "actor",
                "expected object, got boolean",
            ),
            (
                "/actor/id",
                json!({}),
                "actor.id",
                "expected string, got object",
            ),
            (
                "/actor/type",
                long(65),
                "actor.type",
                "longer than 64 bytes",
            ),
            ("/action", json!("invoke"), "action", "dotted lowercase"),
            (
                "/action",
                json!("model.Invoke"),
                "action",
                "dotted lowercase",
            ),
            (
                "/action",
                json!("model.in-voke"),
                "action",
                "dotted lowercase",
            ),
            (
                "/action",
                json!("model..invoke"),
                "action",
                "dotted lowercase",
            ),
            ("/outcome", json!("ok"), "outcome", "expected object"),
            (
                "/outcome/status",
                json!("maybe"),
                "outcome.status",
                "is not one of success, failure, denied",
            ),
            (
                "/outcome/reason",
                long(4097),
                "outcome.reason",
                "longer than 4096",
            ),
            (
                "/resource",
                json!(1),
                "resource",
                "expected object, got integer",
            ),
            (
                "/resource/type",
                json!(""),
                "resource.type",
                "must not be empty",
            ),
            ("/resource/id", json!(5), "resource.id", "expected string"),
            (
                "/risk_level",
                json!("extreme"),
                "risk_level",
                "is not one of minimal",
            ),
            ("/purpose", json!(1), "purpose", "expected string"),
            ("/subject", long(1025), "subject", "longer than 1024"),
            ("/ai", json!([]), "ai", "expected object, got array"),
            (
                "/ai/gen_ai.request.temperature",
                json!("hot"),
                "ai.gen_ai.request.temperature",
                "expected number, got string",
            ),
            (
                "/ai/gen_ai.request.seed",
                json!(1.5),
                "ai.gen_ai.request.seed",
                "expected non-negative integer, got number",
            ),
            (
                "/ai/gen_ai.response.finish_reasons",
                json!("stop"),
                "ai.gen_ai.response.finish_reasons",
                "expected array of strings",
            ),
            (
                "/ai/gen_ai.request.stop_sequences",
                json!(["a", 1]),
                "ai.gen_ai.request.stop_sequences",
                "expected array of strings",
            ),
            (
                "/ai/gen_ai.prompt",
                json!({"a": 1}),
                "ai.gen_ai.prompt",
                "GenAI attributes are flat",
            ),
            (
                "/input",
                json!({"size": 3}),
                "input",
                "expected \"content\" or \"sha256\"",
            ),
            ("/input", json!("text"), "input", "expected object"),
            (
                "/input/sha256",
                json!("abc"),
                "input.sha256",
                "64 lowercase hex digits",
            ),
            (
                "/output/sha256",
                json!("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"),
                "output.sha256",
                "64 lowercase hex digits",
            ),
            (
                "/output/sha256",
                json!(false),
                "output.sha256",
                "expected string, got boolean",
            ),
            (
                "/trace_id",
                json!("0".repeat(32)),
                "trace_id",
                "must not be all zeros",
            ),
            (
                "/trace_id",
                json!("4BF92F3577B34DA6A3CE929D0E0E4736"),
                "trace_id",
                "32 lowercase hex digits",
            ),
            (
                "/span_id",
                json!("00f067aa0ba902"),
                "span_id",
                "16 lowercase hex digits",
            ),
            (
                "/span_id",
                json!("00f067aa0ba902b7ff"),
                "span_id",
                "longer than 16 bytes",
            ),
            (
                "/parent_span_id",
                json!("0000000000000000"),
                "parent_span_id",
                "must not be all zeros",
            ),
            (
                "/parent_span_id",
                json!(12),
                "parent_span_id",
                "expected string",
            ),
            (
                "/human_oversight",
                json!("yes"),
                "human_oversight",
                "expected object",
            ),
            (
                "/human_oversight/reviewer",
                json!(""),
                "human_oversight.reviewer",
                "must not be empty",
            ),
            (
                "/human_oversight/decision",
                json!(null),
                "human_oversight.decision",
                "expected string, got null",
            ),
            (
                "/attributes",
                json!("x"),
                "attributes",
                "expected object, got string",
            ),
        ];
        for (pointer, value, path, detail) in cases {
            let mut e = example();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let target = if parent.is_empty() {
                &mut e
            } else {
                e.pointer_mut(parent).unwrap()
            };
            target[key] = value.clone();
            let Value::Object(m) = e else { panic!() };
            let errs = validate(&m).expect_err(pointer);
            assert_eq!(errs.len(), 1, "{pointer} = {value}: {errs:?}");
            assert_eq!(errs[0].path, path, "{pointer} = {value}");
            assert_eq!(errs[0].pointer, pointer, "{pointer} = {value}");
            assert!(
                errs[0].detail.contains(detail),
                "{pointer} = {value}: {:?} should say {detail:?}",
                errs[0].detail
            );
            assert!(errs[0].to_string().starts_with(&format!("{path}: ")));
        }
    }

    #[test]
    fn optional_objects_need_their_required_fields() {
        let mut e = example();
        e["outcome"] = json!({"reason": "no status"});
        assert_eq!(
            errors(e),
            [(
                "outcome.status".to_string(),
                "required field is missing".to_string()
            )]
        );
        let Value::Object(mut m) = example() else {
            panic!()
        };
        m.remove("id");
        let errs = validate(&m).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            (errs[0].path.as_str(), errs[0].pointer.as_str()),
            ("id", "/id")
        );
        assert_eq!(errs[0].detail, "required field is missing");
    }

    #[test]
    fn pointer_segments_escape_tildes() {
        let mut e = example();
        e["a/b~c"] = json!(1);
        let Value::Object(m) = e else { panic!() };
        let err = &validate(&m).unwrap_err()[0];
        assert_eq!(err.pointer, "/a~1b~0c");
        assert_eq!(err.path, "a/b~c");
        assert!(err.detail.contains("unknown field"), "{}", err.detail);
    }
}
