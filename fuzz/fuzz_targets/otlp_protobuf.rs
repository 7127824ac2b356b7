//! POST /v1/logs with `application/x-protobuf` (optionally gzip'd): the
//! OTLP ExportLogsServiceRequest decoder, then mapping each LogRecord to an
//! audit event and validating it (docs/otlp.md).
//!
//! Properties: no panic; decode → encode → decode is stable; every mapped
//! event that is accepted is the event its entry stores.
#![no_main]

use aiaudit_server::otlp::{decode_request, gunzip, Encoding};
use libfuzzer_sys::fuzz_target;

#[path = "otlp_common.rs"]
mod otlp_common;

fuzz_target!(|data: &[u8]| {
    // A small limit, as the server applies max_body_bytes after inflating.
    if let Ok(inflated) = gunzip(data, 1 << 20) {
        if let Ok(request) = decode_request(Encoding::Protobuf, &inflated) {
            otlp_common::after_decode(request, Encoding::Protobuf);
        }
    }
    if let Ok(request) = decode_request(Encoding::Protobuf, data) {
        otlp_common::after_decode(request, Encoding::Protobuf);
    }
});
