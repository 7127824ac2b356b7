//! Query strings of the read API, parsed as axum's Query extractor does:
//! search and export (`search::parse_query`), compliance reports
//! (`reports::parse_request`), and the small value parsers they and the
//! config share (RFC 3339 times, durations such as `30d`, `HH:MM`).
//!
//! Properties: no panic; accepted values are in the documented ranges.
#![no_main]

use aiaudit_ledger::{auth, backups, reports, search};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

/// 2026-11-27T09:14:03.120Z: a fixed "now" keeps runs reproducible.
const NOW_MS: i64 = 1_795_770_843_120;

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = serde_urlencoded::from_bytes::<HashMap<String, String>>(data) {
        if let Ok(q) = search::parse_query(&params, &[]) {
            assert!((1..=aiaudit_index::MAX_LIMIT).contains(&q.limit));
        }
        if let Ok(r) = reports::parse_request(&params, NOW_MS) {
            assert!(r.from_ms < r.to_ms);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(ms) = aiaudit_index::parse_time_ms(text) {
        // What the reports print must read back as the same instant (out of
        // RFC 3339's range they print the number, as documented).
        let printed = reports::rfc3339(ms);
        if printed != ms.to_string() {
            assert_eq!(aiaudit_index::parse_time_ms(&printed), Some(ms));
        }
    }
    if let Some(secs) = auth::parse_duration_secs(text) {
        assert_eq!(auth::parse_duration_secs(&format!("{secs}s")), Some(secs));
    }
    if let Some(minute) = backups::parse_hh_mm(text) {
        assert!(minute < 24 * 60);
    }
});
