//! OpenTelemetry logs as audit events, without any I/O: the OTLP/HTTP
//! messages, their decoding (protobuf or JSON, gzip, within limits that
//! hold before anything is allocated), the mapping of each LogRecord to one
//! audit event ([`map_record`], documented in docs/otlp.md), sorting a
//! request into valid events and rejected records, and the
//! `partial_success` answer. The HTTP routes live in `aiaudit-server`.
//!
//! The OTLP messages are a hand-written subset of opentelemetry-proto
//! (`collector/logs/v1`, `logs/v1`, `common/v1`, `resource/v1`) with the
//! upstream field numbers, so no protoc is needed at build time.

#[cfg(test)]
use aiaudit_event::prepare;
use aiaudit_event::write_canonical;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

/// Re-exported so clients of these types (the e2e tests) can encode and
/// decode them without depending on prost themselves.
pub use prost::Message;

// ---------------------------------------------------------------------------
// The OTLP logs subset, field numbers as in opentelemetry-proto.

/// `opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

/// `opentelemetry.proto.logs.v1.ResourceLogs`
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `opentelemetry.proto.resource.v1.Resource`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

/// `opentelemetry.proto.logs.v1.ScopeLogs`
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeLogs {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `opentelemetry.proto.common.v1.InstrumentationScope`
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// `opentelemetry.proto.logs.v1.LogRecord`
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogRecord {
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    #[prost(fixed64, tag = "11")]
    pub observed_time_unix_nano: u64,
    /// `SeverityNumber` enum, kept as its integer.
    #[prost(int32, tag = "2")]
    pub severity_number: i32,
    #[prost(string, tag = "3")]
    pub severity_text: String,
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "7")]
    pub dropped_attributes_count: u32,
    #[prost(fixed32, tag = "8")]
    pub flags: u32,
    #[prost(bytes = "vec", tag = "9")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "12")]
    pub event_name: String,
}

/// `opentelemetry.proto.common.v1.KeyValue`
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `opentelemetry.proto.common.v1.AnyValue`
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    /// The `value` oneof of `AnyValue`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
        #[prost(message, tag = "6")]
        KvlistValue(super::KeyValueList),
        #[prost(bytes = "vec", tag = "7")]
        BytesValue(Vec<u8>),
    }
}

/// `opentelemetry.proto.common.v1.ArrayValue`
#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

/// `opentelemetry.proto.common.v1.KeyValueList`
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// `opentelemetry.proto.collector.logs.v1.ExportLogsServiceResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportLogsPartialSuccess>,
}

/// `opentelemetry.proto.collector.logs.v1.ExportLogsPartialSuccess`
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsPartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_log_records: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

impl AnyValue {
    pub fn string(s: impl Into<String>) -> Self {
        AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        }
    }
    pub fn int(i: i64) -> Self {
        AnyValue {
            value: Some(any_value::Value::IntValue(i)),
        }
    }
}

impl KeyValue {
    /// An attribute; for building requests by hand.
    pub fn new(key: impl Into<String>, value: AnyValue) -> Self {
        KeyValue {
            key: key.into(),
            value: Some(value),
        }
    }
}

// ---------------------------------------------------------------------------
// LogRecord -> audit event.

/// Attributes that fill a top-level event field of the same name.
const TOP_LEVEL: &[&str] = &["tenant", "id", "action", "subject", "purpose", "risk_level"];

/// Dotted attributes that fill a field of a nested event object.
const NESTED: &[(&str, &str, &str)] = &[
    ("outcome.status", "outcome", "status"),
    ("outcome.reason", "outcome", "reason"),
    ("resource.type", "resource", "type"),
    ("resource.id", "resource", "id"),
    ("human_oversight.reviewer", "human_oversight", "reviewer"),
    ("human_oversight.decision", "human_oversight", "decision"),
    ("input.content", "input", "content"),
    ("input.sha256", "input", "sha256"),
    ("output.content", "output", "content"),
    ("output.sha256", "output", "sha256"),
];

/// The tenant of events whose attributes name none.
pub const DEFAULT_TENANT: &str = "default";
/// The action of events that carry `gen_ai.*` attributes but name no action.
pub const DEFAULT_AI_ACTION: &str = "model.invoke";

/// Maps one LogRecord to an audit event (not yet validated). Attributes are
/// merged resource, then scope, then record (later wins); see docs/otlp.md
/// for the table. The record needs a time: the receiver stamps
/// `observed_time_unix_nano` with the receive time when both are zero
/// ([`stamp_receive_time`]), which keeps this function pure.
pub fn map_record(
    resource_attrs: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    record: &LogRecord,
) -> Result<Value, String> {
    let mut attrs: Map<String, Value> = Map::new();
    let scope_attrs = scope.map(|s| s.attributes.as_slice()).unwrap_or(&[]);
    for kv in resource_attrs
        .iter()
        .chain(scope_attrs)
        .chain(&record.attributes)
    {
        attrs.insert(kv.key.clone(), any_to_json(kv.value.as_ref()));
    }

    // source: explicit source.* attributes, else the OTel service identity.
    let mut source = Map::new();
    if let Some(name) = attrs.remove("source.name") {
        source.insert("name".into(), name);
        if let Some(v) = attrs.remove("source.version") {
            source.insert("version".into(), v);
        }
    } else if let Some(name) = attrs.remove("service.name") {
        source.insert("name".into(), name);
        if let Some(v) = attrs
            .remove("source.version")
            .or_else(|| attrs.remove("service.version"))
        {
            source.insert("version".into(), v);
        }
    } else {
        return Err("no source.name or service.name attribute".into());
    }

    let mut ai = Map::new();
    let gen_ai: Vec<String> = attrs
        .keys()
        .filter(|k| k.starts_with("gen_ai."))
        .cloned()
        .collect();
    for key in gen_ai {
        let v = attrs.remove(&key).unwrap_or(Value::Null);
        ai.insert(key, v);
    }

    let mut event = Map::new();
    for &key in TOP_LEVEL {
        if let Some(v) = attrs.remove(key) {
            event.insert(key.into(), v);
        }
    }
    if !event.contains_key("action") {
        if ai.is_empty() {
            return Err("no action attribute".into());
        }
        event.insert("action".into(), DEFAULT_AI_ACTION.into());
    }
    event
        .entry("tenant")
        .or_insert_with(|| DEFAULT_TENANT.into());

    let mut actor = Map::new();
    match attrs.remove("actor.id") {
        Some(id) => {
            actor.insert("id".into(), id);
        }
        None => {
            // The emitting service acted on its own behalf.
            actor.insert("id".into(), source["name"].clone());
            actor.insert("type".into(), "service".into());
        }
    }
    if let Some(t) = attrs.remove("actor.type") {
        actor.insert("type".into(), t);
    }
    event.insert("actor".into(), Value::Object(actor));
    event.insert("source".into(), Value::Object(source));

    for &(attr, field, sub) in NESTED {
        if let Some(v) = attrs.remove(attr) {
            let obj = event
                .entry(field)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = obj {
                m.insert(sub.into(), v);
            }
        }
    }
    if !ai.is_empty() {
        event.insert("ai".into(), Value::Object(ai));
    }

    // What has no event field of its own is kept under `attributes`.
    if let Some(body) = &record.body {
        attrs.insert("log.body".into(), any_to_json(Some(body)));
    }
    if !record.event_name.is_empty() {
        attrs.insert("log.event_name".into(), record.event_name.clone().into());
    }
    if !record.severity_text.is_empty() {
        attrs.insert("log.severity".into(), record.severity_text.clone().into());
    }
    if let Some(s) = scope {
        if !s.name.is_empty() {
            attrs.insert("otel.scope.name".into(), s.name.clone().into());
        }
        if !s.version.is_empty() {
            attrs.insert("otel.scope.version".into(), s.version.clone().into());
        }
    }
    if !attrs.is_empty() {
        event.insert("attributes".into(), Value::Object(attrs));
    }

    if let Some(t) = trace_hex(&record.trace_id) {
        event.insert("trace_id".into(), t.into());
    }
    if let Some(s) = trace_hex(&record.span_id) {
        event.insert("span_id".into(), s.into());
    }

    let nanos = match (record.time_unix_nano, record.observed_time_unix_nano) {
        (0, 0) => return Err("no time_unix_nano or observed_time_unix_nano".into()),
        (0, observed) => observed,
        (t, _) => t,
    };
    event.insert("time".into(), rfc3339_nanos(nanos).into());

    if !event.contains_key("id") {
        // Same record, same id: an exporter's retry is logged once.
        let mut canonical = Vec::with_capacity(512);
        write_canonical(&mut canonical, &Value::Object(event.clone()));
        let digest = hex::encode(Sha256::digest(&canonical));
        event.insert("id".into(), format!("otlp-{}", &digest[..32]).into());
    }
    Ok(Value::Object(event))
}

/// Lowercase hex of a trace or span id; `None` when unset (empty or all zero).
fn trace_hex(bytes: &[u8]) -> Option<String> {
    if bytes.iter().all(|&b| b == 0) {
        None
    } else {
        Some(hex::encode(bytes))
    }
}

/// An attribute value as JSON: kvlists become objects, bytes base64 strings.
pub fn any_to_json(v: Option<&AnyValue>) -> Value {
    use any_value::Value as V;
    match v.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::from(*i),
        Some(V::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            // JSON has no NaN or infinity: keep them readable as text.
            .unwrap_or_else(|| Value::String(d.to_string())),
        Some(V::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|x| any_to_json(Some(x))).collect())
        }
        Some(V::KvlistValue(l)) => Value::Object(
            l.values
                .iter()
                .map(|kv| (kv.key.clone(), any_to_json(kv.value.as_ref())))
                .collect(),
        ),
        Some(V::BytesValue(b)) => Value::String(STANDARD.encode(b)),
    }
}

/// Unix nanoseconds as RFC 3339 in UTC with nine fractional digits.
pub fn rfc3339_nanos(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's
/// algorithm); the server crate has no date library.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Gives records without any timestamp the receive time, so that
/// [`map_record`] can stay a pure function of the record.
pub fn stamp_receive_time(request: &mut ExportLogsServiceRequest, now_unix_nano: u64) {
    for rl in &mut request.resource_logs {
        for sl in &mut rl.scope_logs {
            for r in &mut sl.log_records {
                if r.time_unix_nano == 0 && r.observed_time_unix_nano == 0 {
                    r.observed_time_unix_nano = now_unix_nano;
                }
            }
        }
    }
}

/// The records of a request, mapped and validated.
pub struct Sorted {
    /// The valid events, in request order: the event (when asked to keep
    /// it) and its validated form.
    pub valid: Vec<(Option<Value>, aiaudit_event::CheckedEvent)>,
    pub total: usize,
    pub rejected: usize,
    /// Where and why the first rejected record was refused.
    pub first_error: Option<String>,
}

/// Maps every record and validates it (`aiaudit_event::check`), counting
/// the rejected ones. `keep_events` also returns the mapped JSON (forwarders need it).
pub fn sort_records(request: &ExportLogsServiceRequest, keep_events: bool) -> Sorted {
    let mut out = Sorted {
        valid: Vec::new(),
        total: 0,
        rejected: 0,
        first_error: None,
    };
    for (i, rl) in request.resource_logs.iter().enumerate() {
        let resource_attrs = rl
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        for (j, sl) in rl.scope_logs.iter().enumerate() {
            for (k, record) in sl.log_records.iter().enumerate() {
                out.total += 1;
                let result = map_record(resource_attrs, sl.scope.as_ref(), record).and_then(|ev| {
                    let kept = keep_events.then(|| ev.clone());
                    // Validation only: how large an entry may be is the ledger's to
                    // decide (members above its blob threshold go out of line).
                    match aiaudit_event::check(&ev) {
                        Ok(p) => Ok((kept, p)),
                        Err(errs) => Err(errs
                            .iter()
                            .map(|e| {
                                if e.path.is_empty() {
                                    e.detail.clone()
                                } else {
                                    e.to_string()
                                }
                            })
                            .collect::<Vec<_>>()
                            .join("; ")),
                    }
                });
                match result {
                    Ok(v) => out.valid.push(v),
                    Err(e) => {
                        out.rejected += 1;
                        if out.first_error.is_none() {
                            out.first_error = Some(format!(
                                "resource_logs[{i}].scope_logs[{j}].log_records[{k}]: {e}"
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Decoding requests.

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Not an ExportLogsServiceRequest (protobuf or JSON).
    #[error("{0}")]
    Undecodable(String),
    /// Not valid gzip.
    #[error("the body is not valid gzip: {0}")]
    Gzip(String),
    /// Larger than allowed once decompressed.
    #[error("the decompressed body exceeds {0} bytes; send smaller batches")]
    TooLarge(usize),
    /// More records (or messages in all) than allowed.
    #[error("{0}")]
    TooManyRecords(String),
    /// A JSON body of more values than [`aiaudit_event::bounded::MAX_JSON_NODES`].
    #[error(
        "the body holds more than {} JSON values; send smaller batches",
        aiaudit_event::bounded::MAX_JSON_NODES
    )]
    TooManyValues,
}

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Compresses `bytes` with gzip (for clients and tests).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

/// Inflates a gzip body, refusing to grow it past `limit` (a small body can
/// inflate enormously).
pub fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(Error::TooLarge(limit));
    }
    Ok(out)
}

/// [`decode_request`] for a body from outside: a protobuf body is walked
/// first and refused (413) if it holds more than `max_records` log records
/// or more than [`MAX_MESSAGES_PER_RECORD`] times as many messages in all
/// (empty repeated messages decode to structures a hundred times their
/// wire size); a JSON body is parsed within [`aiaudit_event::bounded::MAX_JSON_NODES`].
pub fn decode_bounded(
    encoding: Encoding,
    bytes: &[u8],
    max_records: usize,
) -> Result<ExportLogsServiceRequest, Error> {
    let too_large = Error::TooManyRecords;
    match encoding {
        Encoding::Protobuf => {
            let count = wire::count(bytes).map_err(|e| {
                Error::Undecodable(format!(
                    "the body is not an OTLP ExportLogsServiceRequest: {e}"
                ))
            })?;
            if count.records > max_records {
                return Err(too_large(format!(
                    "{} log records; a request holds at most {max_records}",
                    count.records
                )));
            }
            let max_messages = max_records.max(1).saturating_mul(MAX_MESSAGES_PER_RECORD);
            if count.messages > max_messages {
                return Err(too_large(format!(
                    "{} messages in all; a request of up to {max_records} records holds at most {max_messages}",
                    count.messages
                )));
            }
            decode_request(encoding, bytes)
        }
        Encoding::Json => {
            let v = aiaudit_event::bounded::value(bytes).map_err(|e| match e {
                aiaudit_event::bounded::Refused::TooLarge => Error::TooManyValues,
                aiaudit_event::bounded::Refused::Json(e) => {
                    Error::Undecodable(format!("the body is not valid JSON: {e}"))
                }
                other => Error::Undecodable(format!("{other:?}")),
            })?;
            let request = request_from_json(&v).map_err(Error::Undecodable)?;
            let records: usize = request
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum();
            if records > max_records {
                return Err(too_large(format!(
                    "{records} log records; a request holds at most {max_records}"
                )));
            }
            Ok(request)
        }
    }
}

/// Messages (records, attributes, values…) a request may hold per log record allowed.
pub const MAX_MESSAGES_PER_RECORD: usize = 64;

/// Counting the messages of an encoded ExportLogsServiceRequest without
/// decoding it (protobuf wire format; field numbers from the OTLP protos).
mod wire {
    #[derive(Debug, Default)]
    pub struct Count {
        pub records: usize,
        pub messages: usize,
    }

    /// Which message a length-delimited field holds.
    #[derive(Clone, Copy)]
    enum Kind {
        Request,
        ResourceLogs,
        Resource,
        ScopeLogs,
        Scope,
        LogRecord,
        KeyValue,
        AnyValue,
        ArrayValue,
        KeyValueList,
    }

    fn child(parent: Kind, field: u64) -> Option<Kind> {
        use Kind::*;
        match (parent, field) {
            (Request, 1) => Some(ResourceLogs),
            (ResourceLogs, 1) => Some(Resource),
            (ResourceLogs, 2) => Some(ScopeLogs),
            (Resource, 1) => Some(KeyValue),
            (ScopeLogs, 1) => Some(Scope),
            (ScopeLogs, 2) => Some(LogRecord),
            (Scope, 3) => Some(KeyValue),
            (LogRecord, 5) => Some(AnyValue),
            (LogRecord, 6) => Some(KeyValue),
            (KeyValue, 2) => Some(AnyValue),
            (AnyValue, 5) => Some(ArrayValue),
            (AnyValue, 6) => Some(KeyValueList),
            (ArrayValue, 1) => Some(AnyValue),
            (KeyValueList, 1) => Some(KeyValue),
            _ => None,
        }
    }

    /// Deeper nesting of values is refused (prost's own limit is 100).
    const MAX_DEPTH: u32 = 64;

    pub fn count(bytes: &[u8]) -> Result<Count, String> {
        let mut c = Count::default();
        walk(bytes, Kind::Request, 0, &mut c)?;
        Ok(c)
    }

    fn varint(b: &[u8], at: &mut usize) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*at).ok_or("truncated varint")?;
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn walk(b: &[u8], kind: Kind, depth: u32, c: &mut Count) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        let mut at = 0;
        while at < b.len() {
            let key = varint(b, &mut at)?;
            let (field, wire_type) = (key >> 3, key & 7);
            match wire_type {
                0 => {
                    varint(b, &mut at)?;
                }
                1 => {
                    at = at
                        .checked_add(8)
                        .filter(|&e| e <= b.len())
                        .ok_or("truncated")?
                }
                5 => {
                    at = at
                        .checked_add(4)
                        .filter(|&e| e <= b.len())
                        .ok_or("truncated")?
                }
                2 => {
                    let len = usize::try_from(varint(b, &mut at)?).map_err(|_| "length")?;
                    let end = at
                        .checked_add(len)
                        .filter(|&e| e <= b.len())
                        .ok_or("truncated")?;
                    if let Some(inner) = child(kind, field) {
                        c.messages += 1;
                        if matches!(inner, Kind::LogRecord) {
                            c.records += 1;
                        }
                        walk(&b[at..end], inner, depth + 1, c)?;
                    }
                    at = end;
                }
                other => return Err(format!("wire type {other}")),
            }
        }
        Ok(())
    }
}

/// Decodes an (already decompressed) request body, or 400.
pub fn decode_request(encoding: Encoding, bytes: &[u8]) -> Result<ExportLogsServiceRequest, Error> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(bytes).map_err(|e| {
            Error::Undecodable(format!(
                "the body is not an OTLP ExportLogsServiceRequest: {e}"
            ))
        }),
        Encoding::Json => {
            let v: Value = serde_json::from_slice(bytes)
                .map_err(|e| Error::Undecodable(format!("the body is not valid JSON: {e}")))?;
            request_from_json(&v).map_err(Error::Undecodable)
        }
    }
}

// OTLP/JSON is the protobuf JSON mapping with two OTLP twists: trace and span
// ids are hex, not base64, and enums are integers. Parsers must accept both
// lowerCamelCase and the proto field names, 64-bit integers as strings or
// numbers, and ignore unknown fields.

fn member<'a>(obj: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    obj.get(camel)
        .or_else(|| obj.get(snake))
        .filter(|v| !v.is_null())
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{path}: expected an object"))
}

fn array<'a>(
    obj: &'a Map<String, Value>,
    camel: &str,
    snake: &str,
    path: &str,
) -> Result<&'a [Value], String> {
    match member(obj, camel, snake) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("{path}.{camel}: expected an array")),
    }
}

fn string(
    obj: &Map<String, Value>,
    camel: &str,
    snake: &str,
    path: &str,
) -> Result<String, String> {
    match member(obj, camel, snake) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{path}.{camel}: expected a string")),
    }
}

/// A 64-bit integer: a JSON number or a decimal string.
fn integer<T: TryFrom<i128>>(v: &Value, path: &str) -> Result<T, String> {
    let wide: Option<i128> = match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    wide.and_then(|w| T::try_from(w).ok())
        .ok_or_else(|| format!("{path}: expected an integer in range, got {v}"))
}

fn opt_integer<T: TryFrom<i128> + Default>(
    obj: &Map<String, Value>,
    camel: &str,
    snake: &str,
    path: &str,
) -> Result<T, String> {
    match member(obj, camel, snake) {
        None => Ok(T::default()),
        Some(v) => integer(v, &format!("{path}.{camel}")),
    }
}

fn hex_id(
    obj: &Map<String, Value>,
    camel: &str,
    snake: &str,
    path: &str,
) -> Result<Vec<u8>, String> {
    let s = string(obj, camel, snake, path)?;
    hex::decode(&s).map_err(|_| format!("{path}.{camel}: expected a hex string, got {s:?}"))
}

const SEVERITY_NAMES: &[&str] = &[
    "UNSPECIFIED",
    "TRACE",
    "TRACE2",
    "TRACE3",
    "TRACE4",
    "DEBUG",
    "DEBUG2",
    "DEBUG3",
    "DEBUG4",
    "INFO",
    "INFO2",
    "INFO3",
    "INFO4",
    "WARN",
    "WARN2",
    "WARN3",
    "WARN4",
    "ERROR",
    "ERROR2",
    "ERROR3",
    "ERROR4",
    "FATAL",
    "FATAL2",
    "FATAL3",
    "FATAL4",
];

fn severity_number(obj: &Map<String, Value>, path: &str) -> Result<i32, String> {
    // OTLP/JSON says integers; the enum's name is accepted too, as protobuf
    // JSON parsers do.
    if let Some(Value::String(s)) = member(obj, "severityNumber", "severity_number") {
        if let Some(name) = s.strip_prefix("SEVERITY_NUMBER_") {
            if let Some(i) = SEVERITY_NAMES.iter().position(|n| *n == name) {
                return Ok(i as i32);
            }
        }
    }
    opt_integer(obj, "severityNumber", "severity_number", path)
}

fn key_values(
    obj: &Map<String, Value>,
    camel: &str,
    snake: &str,
    path: &str,
) -> Result<Vec<KeyValue>, String> {
    array(obj, camel, snake, path)?
        .iter()
        .enumerate()
        .map(|(i, kv)| {
            let p = format!("{path}.{camel}[{i}]");
            let o = object(kv, &p)?;
            let value = match member(o, "value", "value") {
                None => None,
                Some(v) => Some(any_from_json(v, &format!("{p}.value"))?),
            };
            Ok(KeyValue {
                key: string(o, "key", "key", &p)?,
                value,
            })
        })
        .collect()
}

/// base64 as protobuf JSON allows it: standard or URL-safe, padded or not.
fn base64_any(s: &str) -> Option<Vec<u8>> {
    let cfg = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&alphabet::STANDARD, cfg)
        .decode(s)
        .or_else(|_| GeneralPurpose::new(&alphabet::URL_SAFE, cfg).decode(s))
        .ok()
}

fn any_from_json(v: &Value, path: &str) -> Result<AnyValue, String> {
    use any_value::Value as V;
    let o = object(v, path)?;
    let value = if let Some(s) = member(o, "stringValue", "string_value") {
        V::StringValue(
            s.as_str()
                .ok_or_else(|| format!("{path}.stringValue: expected a string"))?
                .to_string(),
        )
    } else if let Some(b) = member(o, "boolValue", "bool_value") {
        V::BoolValue(
            b.as_bool()
                .ok_or_else(|| format!("{path}.boolValue: expected a boolean"))?,
        )
    } else if let Some(i) = member(o, "intValue", "int_value") {
        V::IntValue(integer(i, &format!("{path}.intValue"))?)
    } else if let Some(d) = member(o, "doubleValue", "double_value") {
        let f = match d {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => match s.as_str() {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                other => other.parse().ok(),
            },
            _ => None,
        };
        V::DoubleValue(f.ok_or_else(|| format!("{path}.doubleValue: expected a number"))?)
    } else if let Some(a) = member(o, "arrayValue", "array_value") {
        let p = format!("{path}.arrayValue");
        let values = array(object(a, &p)?, "values", "values", &p)?
            .iter()
            .enumerate()
            .map(|(i, x)| any_from_json(x, &format!("{p}.values[{i}]")))
            .collect::<Result<_, _>>()?;
        V::ArrayValue(ArrayValue { values })
    } else if let Some(l) = member(o, "kvlistValue", "kvlist_value") {
        let p = format!("{path}.kvlistValue");
        V::KvlistValue(KeyValueList {
            values: key_values(object(l, &p)?, "values", "values", &p)?,
        })
    } else if let Some(b) = member(o, "bytesValue", "bytes_value") {
        let bytes = b
            .as_str()
            .and_then(base64_any)
            .ok_or_else(|| format!("{path}.bytesValue: expected base64"))?;
        V::BytesValue(bytes)
    } else {
        return Ok(AnyValue { value: None });
    };
    Ok(AnyValue { value: Some(value) })
}

fn record_from_json(v: &Value, path: &str) -> Result<LogRecord, String> {
    let o = object(v, path)?;
    Ok(LogRecord {
        time_unix_nano: opt_integer(o, "timeUnixNano", "time_unix_nano", path)?,
        observed_time_unix_nano: opt_integer(
            o,
            "observedTimeUnixNano",
            "observed_time_unix_nano",
            path,
        )?,
        severity_number: severity_number(o, path)?,
        severity_text: string(o, "severityText", "severity_text", path)?,
        body: match member(o, "body", "body") {
            None => None,
            Some(b) => Some(any_from_json(b, &format!("{path}.body"))?),
        },
        attributes: key_values(o, "attributes", "attributes", path)?,
        dropped_attributes_count: opt_integer(
            o,
            "droppedAttributesCount",
            "dropped_attributes_count",
            path,
        )?,
        flags: opt_integer(o, "flags", "flags", path)?,
        trace_id: hex_id(o, "traceId", "trace_id", path)?,
        span_id: hex_id(o, "spanId", "span_id", path)?,
        event_name: string(o, "eventName", "event_name", path)?,
    })
}

/// An ExportLogsServiceRequest from its OTLP/JSON form.
pub fn request_from_json(v: &Value) -> Result<ExportLogsServiceRequest, String> {
    let top = object(v, "the body")?;
    let mut request = ExportLogsServiceRequest::default();
    for (i, rl) in array(top, "resourceLogs", "resource_logs", "")?
        .iter()
        .enumerate()
    {
        let p = format!("resourceLogs[{i}]");
        let rlo = object(rl, &p)?;
        let resource = match member(rlo, "resource", "resource") {
            None => None,
            Some(r) => {
                let rp = format!("{p}.resource");
                let ro = object(r, &rp)?;
                Some(Resource {
                    attributes: key_values(ro, "attributes", "attributes", &rp)?,
                    dropped_attributes_count: opt_integer(
                        ro,
                        "droppedAttributesCount",
                        "dropped_attributes_count",
                        &rp,
                    )?,
                })
            }
        };
        let mut scope_logs = Vec::new();
        for (j, sl) in array(rlo, "scopeLogs", "scope_logs", &p)?
            .iter()
            .enumerate()
        {
            let sp = format!("{p}.scopeLogs[{j}]");
            let slo = object(sl, &sp)?;
            let scope = match member(slo, "scope", "scope") {
                None => None,
                Some(s) => {
                    let scp = format!("{sp}.scope");
                    let so = object(s, &scp)?;
                    Some(InstrumentationScope {
                        name: string(so, "name", "name", &scp)?,
                        version: string(so, "version", "version", &scp)?,
                        attributes: key_values(so, "attributes", "attributes", &scp)?,
                        dropped_attributes_count: opt_integer(
                            so,
                            "droppedAttributesCount",
                            "dropped_attributes_count",
                            &scp,
                        )?,
                    })
                }
            };
            let log_records = array(slo, "logRecords", "log_records", &sp)?
                .iter()
                .enumerate()
                .map(|(k, r)| record_from_json(r, &format!("{sp}.logRecords[{k}]")))
                .collect::<Result<_, _>>()?;
            scope_logs.push(ScopeLogs {
                scope,
                log_records,
                schema_url: string(slo, "schemaUrl", "schema_url", &sp)?,
            });
        }
        request.resource_logs.push(ResourceLogs {
            resource,
            scope_logs,
            schema_url: string(rlo, "schemaUrl", "schema_url", &p)?,
        });
    }
    Ok(request)
}

// ---------------------------------------------------------------------------
// Answers and defaults.

/// The OTLP answer's body, in the request's encoding: `partial_success`
/// only when records were rejected.
pub fn response_body(encoding: Encoding, sorted: &Sorted) -> Vec<u8> {
    let partial = (sorted.rejected > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: sorted.rejected as i64,
        error_message: format!(
            "{} of {} log records rejected; first {}",
            sorted.rejected,
            sorted.total,
            sorted.first_error.as_deref().unwrap_or("")
        ),
    });
    match encoding {
        Encoding::Protobuf => ExportLogsServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec(),
        Encoding::Json => {
            // int64 is a decimal string in the protobuf JSON mapping.
            let v = match partial {
                Some(p) => json!({"partialSuccess": {
                    "rejectedLogRecords": p.rejected_log_records.to_string(),
                    "errorMessage": p.error_message,
                }}),
                None => json!({}),
            };
            serde_json::to_vec(&v).unwrap_or_default()
        }
    }
}

/// Adds a `tenant` resource attribute wherever neither the resource nor a
/// record of it has one, so the mapping keeps one place for its defaults.
pub fn default_tenant(request: &mut ExportLogsServiceRequest, tenant: &str) {
    for rl in &mut request.resource_logs {
        let resource = rl.resource.get_or_insert_with(Resource::default);
        if resource.attributes.iter().any(|kv| kv.key == "tenant") {
            continue;
        }
        resource.attributes.push(KeyValue {
            key: "tenant".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(tenant.to_string())),
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: AnyValue) -> KeyValue {
        KeyValue::new(key, value)
    }

    fn s(v: &str) -> AnyValue {
        AnyValue::string(v)
    }

    fn any(v: any_value::Value) -> AnyValue {
        AnyValue { value: Some(v) }
    }

    const T: u64 = 1_795_770_843_120_000_000; // 2026-11-27T09:14:03.12Z

    fn resource() -> Vec<KeyValue> {
        vec![
            kv("service.name", s("loan-assistant")),
            kv("service.version", s("3.2.0")),
            kv("deployment.environment", s("prod")),
            kv("tenant", s("bank")),
        ]
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope {
            name: "loan.llm".into(),
            version: "0.4".into(),
            ..Default::default()
        }
    }

    fn ai_record() -> LogRecord {
        LogRecord {
            time_unix_nano: T,
            observed_time_unix_nano: T + 5,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(s("model answered")),
            attributes: vec![
                kv("tenant", s("acme")),
                kv("gen_ai.provider.name", s("anthropic")),
                kv("gen_ai.request.model", s("claude-x")),
                kv("gen_ai.usage.input_tokens", AnyValue::int(812)),
                kv(
                    "gen_ai.response.finish_reasons",
                    any(any_value::Value::ArrayValue(ArrayValue {
                        values: vec![s("stop")],
                    })),
                ),
                kv("branch", s("Ikeja")),
            ],
            trace_id: hex::decode("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: hex::decode("00f067aa0ba902b7").unwrap(),
            event_name: "gen_ai.client.inference".into(),
            ..Default::default()
        }
    }

    #[test]
    fn maps_a_gen_ai_record() {
        let ev = map_record(&resource(), Some(&scope()), &ai_record()).unwrap();
        let id = ev["id"].as_str().unwrap().to_string();
        assert!(id.starts_with("otlp-") && id.len() == 37, "{id}");
        assert_eq!(
            ev,
            json!({
                "id": id,
                "time": "2026-11-27T09:14:03.120000000Z",
                "tenant": "acme",
                "source": {"name": "loan-assistant", "version": "3.2.0"},
                "actor": {"id": "loan-assistant", "type": "service"},
                "action": "model.invoke",
                "ai": {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-x",
                       "gen_ai.usage.input_tokens": 812, "gen_ai.response.finish_reasons": ["stop"]},
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "00f067aa0ba902b7",
                "attributes": {"deployment.environment": "prod", "branch": "Ikeja",
                               "log.body": "model answered", "log.event_name": "gen_ai.client.inference",
                               "log.severity": "INFO", "otel.scope.name": "loan.llm", "otel.scope.version": "0.4"},
            })
        );
        // The mapped event is valid as it is.
        assert_eq!(prepare(ev).unwrap().id, id);
    }

    #[test]
    fn maps_every_named_field() {
        let names = [
            ("id", "ev-1"),
            ("actor.id", "officer-12"),
            ("actor.type", "user"),
            ("action", "human.review"),
            ("subject", "customer-5521"),
            ("purpose", "credit decision"),
            ("risk_level", "high"),
            ("outcome.status", "success"),
            ("outcome.reason", "approved"),
            ("resource.type", "loan_application"),
            ("resource.id", "LA-99812"),
            ("human_oversight.reviewer", "officer-12"),
            ("human_oversight.decision", "confirmed"),
            ("input.content", "the question"),
            ("output.sha256", &"ab".repeat(32)),
            ("source.name", "reviews"),
            ("source.version", "1.0"),
        ];
        let record = LogRecord {
            time_unix_nano: T,
            attributes: names.iter().map(|(k, v)| kv(k, s(v))).collect(),
            ..Default::default()
        };
        let ev = map_record(&resource(), None, &record).unwrap();
        assert_eq!(
            ev,
            json!({
                "id": "ev-1", "time": "2026-11-27T09:14:03.120000000Z", "tenant": "bank",
                "source": {"name": "reviews", "version": "1.0"},
                "actor": {"id": "officer-12", "type": "user"},
                "action": "human.review", "subject": "customer-5521", "purpose": "credit decision",
                "risk_level": "high",
                "outcome": {"status": "success", "reason": "approved"},
                "resource": {"type": "loan_application", "id": "LA-99812"},
                "human_oversight": {"reviewer": "officer-12", "decision": "confirmed"},
                "input": {"content": "the question"},
                "output": {"sha256": "ab".repeat(32)},
                // source.* given: the service identity stays an attribute.
                "attributes": {"service.name": "loan-assistant", "service.version": "3.2.0",
                               "deployment.environment": "prod"},
            })
        );
        prepare(ev).unwrap();
    }

    #[test]
    fn record_attributes_win_and_values_convert() {
        let record = LogRecord {
            observed_time_unix_nano: 951_782_400_000_000_001,
            attributes: vec![
                kv("action", s("tool.call")),
                kv("deployment.environment", s("staging")),
                kv(
                    "nested",
                    any(any_value::Value::KvlistValue(KeyValueList {
                        values: vec![
                            kv("a", AnyValue::int(1)),
                            kv("b", any(any_value::Value::BoolValue(true))),
                        ],
                    })),
                ),
                kv("raw", any(any_value::Value::BytesValue(b"hi\0".to_vec()))),
                kv("ratio", any(any_value::Value::DoubleValue(0.5))),
                kv("nan", any(any_value::Value::DoubleValue(f64::NAN))),
                kv("empty", AnyValue::default()),
            ],
            trace_id: vec![0; 16],
            span_id: vec![],
            ..Default::default()
        };
        let ev = map_record(&resource(), None, &record).unwrap();
        assert_eq!(ev["time"], "2000-02-29T00:00:00.000000001Z");
        assert_eq!(ev["action"], "tool.call");
        assert!(ev.get("ai").is_none());
        assert!(ev.get("trace_id").is_none() && ev.get("span_id").is_none());
        let a = &ev["attributes"];
        assert_eq!(a["deployment.environment"], "staging");
        assert_eq!(a["nested"], json!({"a": 1, "b": true}));
        assert_eq!(a["raw"], "aGkA");
        assert_eq!(a["ratio"], 0.5);
        assert_eq!(a["nan"], "NaN");
        assert_eq!(a["empty"], Value::Null);
        prepare(ev).unwrap();
    }

    #[test]
    fn defaults_and_rejections() {
        // No tenant anywhere: "default".
        let record = LogRecord {
            time_unix_nano: T,
            attributes: vec![kv("action", s("system.start"))],
            ..Default::default()
        };
        let ev = map_record(&[kv("service.name", s("svc"))], None, &record).unwrap();
        assert_eq!(ev["tenant"], "default");
        assert_eq!(ev["actor"], json!({"id": "svc", "type": "service"}));
        assert_eq!(ev["source"], json!({"name": "svc"}));
        // actor.type without actor.id keeps the type, the id is the source.
        let mut r = record.clone();
        r.attributes.push(kv("actor.type", s("agent")));
        let ev = map_record(&[kv("service.name", s("svc"))], None, &r).unwrap();
        assert_eq!(ev["actor"], json!({"id": "svc", "type": "agent"}));

        let err = map_record(&[], None, &record).unwrap_err();
        assert_eq!(err, "no source.name or service.name attribute");
        let no_action = LogRecord {
            time_unix_nano: T,
            attributes: vec![kv("user", s("x"))],
            ..Default::default()
        };
        let err = map_record(&resource(), None, &no_action).unwrap_err();
        assert_eq!(err, "no action attribute");
        let no_time = LogRecord {
            attributes: vec![kv("action", s("a.b"))],
            ..Default::default()
        };
        assert!(map_record(&resource(), None, &no_time).is_err());
    }

    #[test]
    fn ids_are_deterministic() {
        let a = map_record(&resource(), Some(&scope()), &ai_record()).unwrap();
        let b = map_record(&resource(), Some(&scope()), &ai_record()).unwrap();
        assert_eq!(a, b);
        let mut other = ai_record();
        other.time_unix_nano += 1;
        let c = map_record(&resource(), Some(&scope()), &other).unwrap();
        assert_ne!(a["id"], c["id"]);
        // The id is the hash of the event without it.
        let mut without = a.as_object().unwrap().clone();
        without.remove("id");
        let mut canonical = Vec::new();
        write_canonical(&mut canonical, &Value::Object(without));
        let digest = hex::encode(Sha256::digest(&canonical));
        assert_eq!(a["id"], format!("otlp-{}", &digest[..32]));
    }

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(4_102_444_799_999_999_999),
            "2099-12-31T23:59:59.999999999Z"
        );
        assert_eq!(rfc3339_nanos(u64::MAX), "2554-07-21T23:34:33.709551615Z");
    }

    fn request() -> ExportLogsServiceRequest {
        let bad = LogRecord {
            time_unix_nano: T,
            attributes: vec![kv("action", s("tool.call"))],
            ..Default::default()
        };
        let invalid = LogRecord {
            time_unix_nano: T,
            attributes: vec![kv("action", s("Not An Action"))],
            ..Default::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![
                ResourceLogs {
                    resource: Some(Resource {
                        attributes: resource(),
                        ..Default::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(scope()),
                        log_records: vec![ai_record(), invalid],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ResourceLogs {
                    resource: None,
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![bad],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn protobuf_round_trip_with_and_without_gzip() {
        let req = request();
        let bytes = req.encode_to_vec();
        assert_eq!(decode_request(Encoding::Protobuf, &bytes).unwrap(), req);
        let inflated = gunzip(&gzip(&bytes), 1 << 20).unwrap();
        assert_eq!(decode_request(Encoding::Protobuf, &inflated).unwrap(), req);
        // A gzip bomb stops at the limit.
        assert_eq!(
            gunzip(&gzip(&vec![0; 10_000]), 1000).unwrap_err(),
            Error::TooLarge(1000)
        );
        assert!(matches!(gunzip(b"not gzip", 1000), Err(Error::Gzip(_))));
        let err = decode_request(Encoding::Protobuf, b"\xff\xff\xff").unwrap_err();
        assert!(matches!(err, Error::Undecodable(_)));
    }

    #[test]
    fn the_wire_count_agrees_with_decoding() {
        let req = request();
        let bytes = req.encode_to_vec();
        let c = wire::count(&bytes).unwrap();
        let records: usize = req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        assert_eq!(c.records, records);
        assert!(c.messages > records);
        assert!(decode_bounded(Encoding::Protobuf, &bytes, records).is_ok());
        assert!(matches!(
            decode_bounded(Encoding::Protobuf, &bytes, records - 1),
            Err(Error::TooManyRecords(_))
        ));
        assert!(wire::count(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn empty_repeated_records_are_refused_before_decoding() {
        // One resource, one scope, then a million empty log records: 2 MB on
        // the wire, several hundred MB once decoded.
        let mut scope = Vec::with_capacity(2_000_010);
        for _ in 0..1_000_000 {
            scope.extend_from_slice(&[0x12, 0]);
        }
        let mut rl = vec![0x12];
        prost::encoding::encode_varint(scope.len() as u64, &mut rl);
        rl.extend_from_slice(&scope);
        let mut body = vec![0x0a];
        prost::encoding::encode_varint(rl.len() as u64, &mut body);
        body.extend_from_slice(&rl);
        let p = decode_bounded(Encoding::Protobuf, &body, 10_000).unwrap_err();
        assert!(
            matches!(&p, Error::TooManyRecords(d) if d.starts_with("1000000 log records")),
            "{p}"
        );
        // Empty attributes on few records: refused by the message budget.
        let mut record = Vec::new();
        for _ in 0..100_000 {
            record.extend_from_slice(&[0x32, 0]);
        }
        let mut scope = vec![0x12];
        prost::encoding::encode_varint(record.len() as u64, &mut scope);
        scope.extend_from_slice(&record);
        let mut rl = vec![0x12];
        prost::encoding::encode_varint(scope.len() as u64, &mut rl);
        rl.extend_from_slice(&scope);
        let mut body = vec![0x0a];
        prost::encoding::encode_varint(rl.len() as u64, &mut body);
        body.extend_from_slice(&rl);
        assert!(matches!(
            decode_bounded(Encoding::Protobuf, &body, 100),
            Err(Error::TooManyRecords(d)) if d.contains("messages in all")
        ));
        assert!(decode_bounded(Encoding::Protobuf, &body, 10_000).is_ok());
    }

    #[test]
    fn known_protobuf_bytes_decode() {
        // Field numbers as opentelemetry-proto: a record with
        // time_unix_nano (1, fixed64) = 1, severity_text (3) = "W",
        // observed_time (11, fixed64) = 2, event_name (12) = "e".
        let record: &[u8] = &[
            0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0x1a, 1, b'W', 0x59, 2, 0, 0, 0, 0, 0, 0, 0, 0x62, 1,
            b'e',
        ];
        let mut scope_logs = vec![0x12, record.len() as u8];
        scope_logs.extend_from_slice(record);
        let mut resource_logs = vec![0x12, scope_logs.len() as u8];
        resource_logs.extend_from_slice(&scope_logs);
        let mut body = vec![0x0a, resource_logs.len() as u8];
        body.extend_from_slice(&resource_logs);
        let req = decode_request(Encoding::Protobuf, &body).unwrap();
        let r = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!((r.time_unix_nano, r.observed_time_unix_nano), (1, 2));
        assert_eq!(
            (r.severity_text.as_str(), r.event_name.as_str()),
            ("W", "e")
        );
        // And the response: partial_success (1) { rejected (1) = 3, error_message (2) = "x" }.
        let resp = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 3,
                error_message: "x".into(),
            }),
        };
        assert_eq!(resp.encode_to_vec(), [0x0a, 5, 0x08, 3, 0x12, 1, b'x']);
    }

    fn json_request() -> Value {
        json!({"resourceLogs": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "loan-assistant"}},
                {"key": "service.version", "value": {"stringValue": "3.2.0"}},
                {"key": "deployment.environment", "value": {"stringValue": "prod"}},
                {"key": "tenant", "value": {"stringValue": "bank"}}]},
            "scopeLogs": [{
                "scope": {"name": "loan.llm", "version": "0.4"},
                "logRecords": [{
                    "timeUnixNano": T.to_string(),
                    "observed_time_unix_nano": T + 5,
                    "severityNumber": 9,
                    "severityText": "INFO",
                    "body": {"stringValue": "model answered"},
                    "attributes": [
                        {"key": "tenant", "value": {"stringValue": "acme"}},
                        {"key": "gen_ai.provider.name", "value": {"stringValue": "anthropic"}},
                        {"key": "gen_ai.request.model", "value": {"stringValue": "claude-x"}},
                        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "812"}},
                        {"key": "gen_ai.response.finish_reasons", "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}}},
                        {"key": "branch", "value": {"stringValue": "Ikeja"}}],
                    "traceId": "4BF92F3577B34DA6A3CE929D0E0E4736",
                    "spanId": "00f067aa0ba902b7",
                    "eventName": "gen_ai.client.inference",
                    "someFutureField": {"ignored": true}
                }]
            }]
        }]})
    }

    #[test]
    fn json_decodes_to_the_same_request_as_protobuf() {
        let bytes = serde_json::to_vec(&json_request()).unwrap();
        let from_json = decode_request(Encoding::Json, &bytes).unwrap();
        let expected = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: resource(),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: vec![ai_record()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(from_json, expected);
        let gz = gunzip(&gzip(&bytes), 1 << 20).unwrap();
        assert_eq!(decode_request(Encoding::Json, &gz).unwrap(), expected);
    }

    #[test]
    fn json_value_kinds_and_errors() {
        let v = json!({"key": "k", "value": {"kvlistValue": {"values": [
            {"key": "d", "value": {"doubleValue": "Infinity"}},
            {"key": "b", "value": {"bytesValue": "aGkA"}},
            {"key": "u", "value": {"bytesValue": "-_8"}},
            {"key": "i", "value": {"intValue": -7}},
            {"key": "t", "value": {"boolValue": false}},
            {"key": "n", "value": {}}]}}});
        let obj = json!({"attributes": [v]});
        let kvs = key_values(obj.as_object().unwrap(), "attributes", "attributes", "x").unwrap();
        assert_eq!(
            any_to_json(kvs[0].value.as_ref()),
            json!({"d": "inf", "b": "aGkA", "u": "+/8=", "i": -7, "t": false, "n": null})
        );
        for (bad, needle) in [
            (json!([]), "expected an object"),
            (json!({"resourceLogs": {}}), "expected an array"),
            (
                json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]}),
                "resourceLogs[0].scopeLogs[0].logRecords[0].traceId: expected a hex string",
            ),
            (
                json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "-1"}]}]}]}),
                "timeUnixNano: expected an integer",
            ),
            (
                json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": [{"key": "a", "value": {"intValue": 1.5}}]}]}]}]}),
                "attributes[0].value.intValue",
            ),
        ] {
            let err = request_from_json(&bad).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let err = decode_request(Encoding::Json, b"{").unwrap_err();
        assert!(matches!(err, Error::Undecodable(_)));
        assert!(matches!(
            decode_bounded(Encoding::Json, b"[[],[],[]]x", 10),
            Err(Error::Undecodable(_))
        ));
        let r = request_from_json(&json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"severityNumber": "SEVERITY_NUMBER_WARN"}]}]}]}))
        .unwrap();
        assert_eq!(
            r.resource_logs[0].scope_logs[0].log_records[0].severity_number,
            13
        );
    }

    #[test]
    fn sorts_valid_and_rejected_records() {
        let sorted = sort_records(&request(), true);
        assert_eq!(
            (sorted.total, sorted.rejected, sorted.valid.len()),
            (3, 2, 1)
        );
        let first = sorted.first_error.clone().unwrap();
        assert!(
            first.starts_with(
                "resource_logs[0].scope_logs[0].log_records[1]: action: expected dotted"
            ),
            "{first}"
        );
        let (event, prepared) = &sorted.valid[0];
        assert_eq!(
            event.as_ref().unwrap()["id"].as_str(),
            Some(prepared.id.as_str())
        );

        let pb = ExportLogsServiceResponse::decode(&*response_body(Encoding::Protobuf, &sorted))
            .unwrap()
            .partial_success
            .unwrap();
        assert_eq!(pb.rejected_log_records, 2);
        assert!(pb
            .error_message
            .starts_with("2 of 3 log records rejected; first resource_logs[0]"));
        let js: Value = serde_json::from_slice(&response_body(Encoding::Json, &sorted)).unwrap();
        assert_eq!(js["partialSuccess"]["rejectedLogRecords"], "2");
        let none = Sorted {
            valid: Vec::new(),
            total: 1,
            rejected: 0,
            first_error: None,
        };
        assert_eq!(response_body(Encoding::Json, &none), b"{}");
        assert!(response_body(Encoding::Protobuf, &none).is_empty());
    }

    #[test]
    fn stamps_only_records_without_time() {
        let mut req = request();
        req.resource_logs[1].scope_logs[0].log_records[0].time_unix_nano = 0;
        stamp_receive_time(&mut req, 42);
        assert_eq!(
            req.resource_logs[1].scope_logs[0].log_records[0].observed_time_unix_nano,
            42
        );
        assert_eq!(
            req.resource_logs[0].scope_logs[0].log_records[0].observed_time_unix_nano,
            T + 5
        );
    }
}
