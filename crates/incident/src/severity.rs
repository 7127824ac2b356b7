//! Severities and the response and escalation deadlines each one sets.

use std::time::Duration;
use time::{OffsetDateTime, UtcOffset, Weekday};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// How long after opening someone must acknowledge.
    pub fn respond_within(self) -> Duration {
        Duration::from_secs(match self {
            Severity::Critical => 5 * 60,
            Severity::High => 15 * 60,
            Severity::Medium => 3600,
            Severity::Low => 4 * 3600,
        })
    }
}

/// When a person's day starts, for "next business day" (low severity):
/// a fixed offset from UTC (most of Africa keeps no daylight saving time)
/// and the hour business starts, Monday to Friday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessHours {
    pub utc_offset_minutes: i32,
    pub start_hour: u8,
}

impl Default for BusinessHours {
    /// West Africa Time (Lagos), 09:00.
    fn default() -> Self {
        BusinessHours {
            utc_offset_minutes: 60,
            start_hour: 9,
        }
    }
}

impl BusinessHours {
    /// Parses `+01:00` / `-05:30` / `Z`.
    pub fn parse_offset(s: &str) -> Option<i32> {
        if s == "Z" || s == "+00:00" || s == "-00:00" {
            return Some(0);
        }
        let (sign, rest) = match s.as_bytes().first()? {
            b'+' => (1, &s[1..]),
            b'-' => (-1, &s[1..]),
            _ => return None,
        };
        let (h, m) = rest.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 14 && m < 60).then_some(sign * (h * 60 + m))
    }

    /// The start of the first business day after the day `ms` falls on
    /// (local time).
    pub fn next_business_day(&self, ms: u64) -> u64 {
        let offset =
            UtcOffset::from_whole_seconds(self.utc_offset_minutes * 60).unwrap_or(UtcOffset::UTC);
        let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000) else {
            return ms;
        };
        let mut day = t.to_offset(offset).date();
        loop {
            day = match day.next_day() {
                Some(d) => d,
                None => return ms,
            };
            if !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) {
                break;
            }
        }
        let start = day
            .with_hms(self.start_hour.min(23), 0, 0)
            .map(|d| d.assume_offset(offset));
        match start {
            Ok(s) => (s.unix_timestamp_nanos() / 1_000_000).max(0) as u64,
            Err(_) => ms,
        }
    }
}

/// When an incident must be acknowledged, and when it is escalated if it
/// is not mitigated by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub respond_by: u64,
    pub escalate_at: u64,
}

/// The deadlines of an incident of `severity` opened at `opened_ms`.
pub fn deadlines(severity: Severity, opened_ms: u64, business: &BusinessHours) -> Deadlines {
    let respond_by = opened_ms + severity.respond_within().as_millis() as u64;
    let escalate_at = match severity {
        Severity::Critical => opened_ms,
        Severity::High => opened_ms + 30 * 60_000,
        Severity::Medium => opened_ms + 4 * 3_600_000,
        Severity::Low => business.next_business_day(opened_ms),
    };
    Deadlines {
        respond_by,
        escalate_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time_fmt::{parse, rfc3339};

    fn at(s: &str) -> u64 {
        parse(s).unwrap()
    }

    #[test]
    fn the_operations_table() {
        let b = BusinessHours::default();
        let t = at("2026-03-04T10:00:00Z"); // a Wednesday
        let d = deadlines(Severity::Critical, t, &b);
        assert_eq!(rfc3339(d.respond_by), "2026-03-04T10:05:00Z");
        assert_eq!(d.escalate_at, t, "critical escalates at once");
        let d = deadlines(Severity::High, t, &b);
        assert_eq!(rfc3339(d.respond_by), "2026-03-04T10:15:00Z");
        assert_eq!(rfc3339(d.escalate_at), "2026-03-04T10:30:00Z");
        let d = deadlines(Severity::Medium, t, &b);
        assert_eq!(rfc3339(d.respond_by), "2026-03-04T11:00:00Z");
        assert_eq!(rfc3339(d.escalate_at), "2026-03-04T14:00:00Z");
        let d = deadlines(Severity::Low, t, &b);
        assert_eq!(rfc3339(d.respond_by), "2026-03-04T14:00:00Z");
        // 09:00 in Lagos (UTC+1) on Thursday.
        assert_eq!(rfc3339(d.escalate_at), "2026-03-05T08:00:00Z");
    }

    #[test]
    fn next_business_day_skips_the_weekend_in_local_time() {
        let lagos = BusinessHours::default();
        // Friday 23:30 UTC is already Saturday 00:30 in Lagos: Monday.
        let fri = at("2026-03-06T23:30:00Z");
        assert_eq!(
            rfc3339(lagos.next_business_day(fri)),
            "2026-03-09T08:00:00Z"
        );
        let nairobi = BusinessHours {
            utc_offset_minutes: BusinessHours::parse_offset("+03:00").unwrap(),
            start_hour: 8,
        };
        // Thursday 22:00 UTC is Friday 01:00 in Nairobi: Monday 08:00 EAT.
        let thu = at("2026-03-05T22:00:00Z");
        assert_eq!(
            rfc3339(nairobi.next_business_day(thu)),
            "2026-03-09T05:00:00Z"
        );
    }

    #[test]
    fn offsets() {
        assert_eq!(BusinessHours::parse_offset("+01:00"), Some(60));
        assert_eq!(BusinessHours::parse_offset("-05:30"), Some(-330));
        assert_eq!(BusinessHours::parse_offset("Z"), Some(0));
        assert_eq!(BusinessHours::parse_offset("+1"), None);
        assert_eq!(BusinessHours::parse_offset("+15:00"), None);
        assert_eq!(Severity::parse("high"), Some(Severity::High));
        assert_eq!(Severity::parse("urgent"), None);
    }
}
