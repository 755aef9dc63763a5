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

/// Reads `YYYY-MM-DDTHH:MM:SS[.mmm]` (DHIS2's form, no zone) as milliseconds since the epoch,
/// as if it were UTC; a trailing `Z` is accepted. None for anything else, years after 9999
/// included (the text comes from servers and headers: never a panic, never an overflow).
pub fn ms_from_iso(text: &str) -> Option<i64> {
    let text = text.trim().trim_end_matches('Z');
    let (date, time) = text.split_once('T').unwrap_or((text, "00:00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(0..=MAX_YEAR).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let (hms, millis) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next().unwrap_or(Some(0))?);
    if !(0..24).contains(&h) || !(0..60).contains(&min) || !(0..61).contains(&sec) {
        return None;
    }
    if millis.is_empty() || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The first three digits (`.1` is 100 ms); the text is ASCII digits, so bytes are chars.
    let millis: i64 = format!("{millis:0<3}")[..3].parse().ok()?;
    Some((days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60 + sec) * 1000 + millis)
}

/// The last year [`ms_from_iso`] reads (DHIS2 writes four-digit years).
const MAX_YEAR: i64 = 9999;

/// Howard Hinnant's civil-to-days algorithm.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    fn reads_what_it_writes_and_dhis2_server_dates() {
        for ms in [0, 1_780_000_000_123, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(ms_from_iso(&iso_from_ms(ms)), Some(ms));
        }
        assert_eq!(ms_from_iso("2026-05-28T20:26:40.1"), Some(1_780_000_000_100));
        assert_eq!(ms_from_iso("2026-05-28T20:26:40Z"), Some(1_780_000_000_000));
        assert_eq!(ms_from_iso("2026-13-01T00:00:00.000"), None);
        assert_eq!(ms_from_iso("yesterday"), None);
    }

    /// Found by the fuzz harness (tests/fuzz.rs): a `serverDate` or a `Retry-After` date with
    /// non-ASCII milliseconds cut a character in two, and a huge year overflowed.
    #[test]
    fn odd_dates_are_none_not_a_panic() {
        assert_eq!(ms_from_iso("2026-01-01T00:00:00.éé"), None);
        assert_eq!(ms_from_iso("2026-01-01T00:00:00.1é"), None);
        assert_eq!(ms_from_iso("2026-01-01T00:00:00."), None);
        assert_eq!(ms_from_iso("99999999999999-01-01T00:00:00.000"), None);
        assert_eq!(ms_from_iso("9223372036854775807-12-31T23:59:59.999"), None);
        assert_eq!(ms_from_iso("10000-01-01"), None);
        assert_eq!(ms_from_iso("9999-12-31T23:59:59.999"), Some(253_402_300_799_999));
        assert_eq!(ms_from_iso("2026-05-28T20:26:40.12345"), Some(1_780_000_000_123));
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso_from_ms(0), "1970-01-01T00:00:00.000");
        assert_eq!(iso_from_ms(1_780_000_000_123), "2026-05-28T20:26:40.123");
        assert_eq!(iso_from_ms(951_782_400_000), "2000-02-29T00:00:00.000");
        assert_eq!(date_from_ms(1_780_000_000_123), "2026-05-28");
    }
}
