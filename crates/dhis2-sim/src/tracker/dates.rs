//! Date parsing and formatting as the legacy tracker API does it: dates come in as
//! `2024-01-05`, `2024-01-05T10:00`, `2024-01-05T10:00:00.000` (optionally with a zone) and go
//! out as `2024-01-05T00:00:00.000`.

use chrono::{NaiveDate, NaiveDateTime};

/// Parses a DHIS2 date or date-time; `None` when it is not one.
pub fn parse_date_time(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if s.len() < 10 || !s.is_char_boundary(10) {
        return None;
    }
    let date = NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").ok()?;
    let rest = &s[10..];
    if rest.is_empty() {
        return date.and_hms_opt(0, 0, 0);
    }
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    // Drop a zone suffix: Z, +hh:mm, -hh:mm, +hhmm.
    let time = rest.trim_end_matches('Z');
    let time = match time.rfind(['+', '-']) {
        Some(i) if i >= 5 => &time[..i],
        _ => time,
    };
    for fmt in ["%H:%M:%S%.f", "%H:%M:%S", "%H:%M"] {
        if let Ok(t) = chrono::NaiveTime::parse_from_str(time, fmt) {
            return Some(date.and_time(t));
        }
    }
    None
}

/// Formats as DHIS2 writes legacy timestamps: `2024-01-05T10:00:00.000`.
pub fn format(dt: &NaiveDateTime) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

/// Normalises an input date to the stored form, or `None` if it is not a date.
pub fn normalise(s: &str) -> Option<String> {
    parse_date_time(s).map(|d| format(&d))
}

/// A stored timestamp as the `query.json` grid prints it: `2024-01-05 10:00:00.000`.
pub fn grid_format(stored: &str) -> String {
    stored.replacen('T', " ", 1)
}

/// The date part (`2024-01-05`) of a stored timestamp.
pub fn date_only(stored: &str) -> &str {
    stored.get(..10).unwrap_or(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_clients_send() {
        assert_eq!(normalise("2024-01-05").as_deref(), Some("2024-01-05T00:00:00.000"));
        assert_eq!(normalise("2024-01-05T10:20").as_deref(), Some("2024-01-05T10:20:00.000"));
        assert_eq!(normalise("2024-01-05T10:20:30.5").as_deref(), Some("2024-01-05T10:20:30.500"));
        assert_eq!(normalise("2024-01-05T10:20:30.123Z").as_deref(), Some("2024-01-05T10:20:30.123"));
        assert_eq!(normalise("2024-01-05T10:20:30+03:00").as_deref(), Some("2024-01-05T10:20:30.000"));
        assert_eq!(normalise("2024-13-05"), None);
        assert_eq!(normalise("yesterday"), None);
        assert_eq!(normalise("2024-01-05Tnoon"), None);
        assert_eq!(normalise("é2024-01-05"), None);
        assert_eq!(grid_format("2024-01-05T10:20:30.123"), "2024-01-05 10:20:30.123");
    }
}
