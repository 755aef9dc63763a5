//! Time as DHIS2 writes it: ISO-8601 local date-times without zone (`2026-11-26T09:19:00.000`),
//! from milliseconds since the epoch (UTC). No platform clock here: callers pass `now_ms`.

/// Formats `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmm` (UTC).
pub fn iso_from_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Date part only: `YYYY-MM-DD`.
pub fn date_from_ms(ms: i64) -> String {
    iso_from_ms(ms)[..10].to_string()
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso_from_ms(0), "1970-01-01T00:00:00.000");
        assert_eq!(iso_from_ms(1_780_000_000_123), "2026-05-28T20:26:40.123");
        assert_eq!(iso_from_ms(951_782_400_000), "2000-02-29T00:00:00.000");
        assert_eq!(date_from_ms(1_780_000_000_123), "2026-05-28");
    }
}
