//! Times in incident events: RFC 3339 in UTC, milliseconds since the epoch inside.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `ms` since the epoch as RFC 3339 (UTC, to the millisecond when it has any).
pub fn rfc3339(ms: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// An RFC 3339 time as milliseconds since the epoch (`None`: not one, or before 1970).
pub fn parse(s: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse("2026-03-02T08:00:00+01:00"), Some(1_772_434_800_000));
        assert_eq!(rfc3339(1_772_434_800_123), "2026-03-02T07:00:00.123Z");
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse("1969-12-31T23:59:59Z"), None);
    }
}
