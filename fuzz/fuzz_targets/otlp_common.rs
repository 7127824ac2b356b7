//! What both OTLP targets run after decoding: the receiver's pipeline, and
//! a protobuf round trip of the decoded request.

use aiaudit_server::otlp::{
    export_response, sort_records, stamp_receive_time, Encoding, ExportLogsServiceRequest, Message,
};

pub fn after_decode(mut request: ExportLogsServiceRequest, encoding: Encoding) {
    // Bytes, not `==`: a double attribute may be NaN.
    let bytes = request.encode_to_vec();
    let again = ExportLogsServiceRequest::decode(bytes.as_slice()).expect("own encoding decodes");
    assert_eq!(again.encode_to_vec(), bytes);

    stamp_receive_time(&mut request, 1_764_236_043_120_000_000);
    let sorted = sort_records(&request, true);
    assert_eq!(sorted.valid.len() + sorted.rejected, sorted.total);
    for (event, checked) in &sorted.valid {
        let event = event.as_ref().expect("asked to keep events");
        // The mapped event's canonical JSON is as long as validation
        // measured, and it reads back as the same event.
        let canonical = aiaudit_event::canonical_event(event);
        assert_eq!(canonical.len(), checked.canonical_len);
        let again: serde_json::Value =
            serde_json::from_slice(&canonical).expect("own canonical JSON parses");
        assert_eq!(&again, event);
        assert_eq!(Some(checked.id.as_str()), event["id"].as_str());
    }
    let _ = export_response(encoding, &sorted);
}
