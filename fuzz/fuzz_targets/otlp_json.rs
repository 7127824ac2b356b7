//! POST /v1/logs with `application/json`: the OTLP/JSON mapping (hex trace
//! ids, 64-bit integers as strings or numbers, both field spellings), then
//! mapping and validating each LogRecord (docs/otlp.md).
//!
//! Properties: no panic; the decoded request survives a protobuf round trip
//! (JSON and protobuf bodies describe the same requests); every accepted
//! event is the event its entry stores.
#![no_main]

use aiaudit_server::otlp::{decode_request, Encoding};
use libfuzzer_sys::fuzz_target;

#[path = "otlp_common.rs"]
mod otlp_common;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_request(Encoding::Json, data) {
        otlp_common::after_decode(request, Encoding::Json);
    }
});
