//! Being kind to a struggling server. When a region's network comes back, every clinic device
//! sends its outbox to one national server at once; these rules keep the device from making
//! things worse:
//! - 429 and 5xx mean "busy", not "reachable": the device stops sending, answers the app from
//!   the local copy, and waits;
//! - a `Retry-After` (seconds or an HTTP date) is honoured by every trigger, the nurse's own
//!   "send now" included, and automatic retries spread over up to twice that; without one they
//!   wait an exponential, fully jittered delay ([`next_flush_delay_ms`]);
//! - triggers that fire on every device at the same moment (`online`, an online login) start
//!   after a random delay ([`trigger_delay_ms`]), so devices never move in lockstep;
//! - one backoff per device, shared by every automatic trigger (a capture, a retry timer,
//!   `online`, Background Sync, a login): while it runs they start no flush
//!   ([`crate::engine::Engine::flush_if_due`]); it grows one step per attempt that does not get
//!   through and ends with the first answer, or when the browser says the network is back
//!   (`online`, Background Sync) if no answer was the cause;
//! - one flush at a time per device (the flush lock), and its requests go one after another.

use crate::http::HttpResponse;

/// How the server answered, for the purpose of sending more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// An answer of the server itself (2xx-4xx).
    Answered,
    /// 429 or 5xx: the server or a proxy in front of it is overloaded or failing; wait before
    /// sending more. `retry_after_ms` when the server said how long.
    Busy {
        /// How long the server asked to wait (`Retry-After`), in ms.
        retry_after_ms: Option<u64>,
    },
    /// No answer (network error, timeout).
    Unreachable,
}

/// Classifies an answer (None: no HTTP answer arrived).
pub fn load_of(response: Option<&HttpResponse>, now_ms: i64) -> Load {
    match response {
        None => Load::Unreachable,
        Some(r) if is_busy_status(r.status) => {
            Load::Busy { retry_after_ms: r.header("retry-after").and_then(|v| retry_after_ms(v, now_ms)) }
        }
        Some(_) => Load::Answered,
    }
}

/// 429 (too many requests) and every 5xx.
pub fn is_busy_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// The longest wait a `Retry-After` is trusted for (a wrong header must not stop a clinic for
/// days).
pub const MAX_RETRY_AFTER_MS: u64 = 60 * 60 * 1000;

/// Reads a `Retry-After` value: delay-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`), as ms from `now_ms`; capped at [`MAX_RETRY_AFTER_MS`].
pub fn retry_after_ms(value: &str, now_ms: i64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000).min(MAX_RETRY_AFTER_MS));
    }
    let at = http_date_ms(value)?;
    Some(u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0).min(MAX_RETRY_AFTER_MS))
}

/// Reads an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 section 5.6.7) as ms since
/// the epoch.
fn http_date_ms(value: &str) -> Option<i64> {
    let (_, rest) = value.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == name)? + 1;
    let year: u32 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    crate::time::ms_from_iso(&format!("{year:04}-{month:02}-{day:02}T{time}"))
}

/// Delay before the next automatic flush after `failures` consecutive flushes that did not get
/// through (`random` in 0..1). When the server said how long to wait (`Retry-After`), that long
/// plus up to as long again at random: the server sets the pace and the devices it turned away
/// come back spread out, not together. Otherwise exponential from 5 s, capped at 10 minutes,
/// with full jitter (at least 1 s).
pub fn next_flush_delay_ms(failures: u32, retry_after_ms: Option<u64>, random: f64) -> u64 {
    let random = random.clamp(0.0, 1.0);
    match retry_after_ms {
        Some(wait) => wait + (wait as f64 * random) as u64,
        None => {
            let cap = 5_000u64.saturating_mul(1u64 << failures.min(16)).min(600_000);
            ((cap as f64 * random) as u64).max(1_000)
        }
    }
}

/// The most a trigger that fires on every device at once (`online`, an online login) waits
/// before its flush.
pub const TRIGGER_SPREAD_MS: u64 = 10_000;

/// Full jitter for a trigger that fires on every device at once: a delay uniformly in
/// `0..TRIGGER_SPREAD_MS` (`random` in 0..1).
pub fn trigger_delay_ms(random: f64) -> u64 {
    (TRIGGER_SPREAD_MS as f64 * random.clamp(0.0, 1.0)) as u64
}

/// The server-side errors a single record may get before its entry is moved aside as a failure
/// (so one entry the server always fails on does not hold the rest of the outbox forever).
pub const DEFAULT_SERVER_ERROR_LIMIT: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: vec![],
        }
    }

    #[test]
    fn busy_answers_and_their_retry_after() {
        let now = crate::time::ms_from_iso("2026-12-03T10:00:00").unwrap();
        assert_eq!(load_of(None, now), Load::Unreachable);
        assert_eq!(load_of(Some(&answer(200, &[])), now), Load::Answered);
        assert_eq!(load_of(Some(&answer(409, &[])), now), Load::Answered);
        assert_eq!(load_of(Some(&answer(500, &[])), now), Load::Busy { retry_after_ms: None });
        assert_eq!(
            load_of(Some(&answer(503, &[("Retry-After", "7")])), now),
            Load::Busy { retry_after_ms: Some(7_000) }
        );
        assert_eq!(
            load_of(Some(&answer(429, &[("retry-after", "Thu, 03 Dec 2026 10:00:30 GMT")])), now),
            Load::Busy { retry_after_ms: Some(30_000) }
        );
        assert_eq!(retry_after_ms("Thu, 03 Dec 2026 09:00:00 GMT", now), Some(0), "a date passed: go now");
        assert_eq!(retry_after_ms("999999999", now), Some(MAX_RETRY_AFTER_MS), "capped");
        for bad in ["", "soon", "-5", "Thu, 03 Dec 2026 10:00:30 CET", "03 Dec 2026 10:00:30 GMT"] {
            assert_eq!(retry_after_ms(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn retries_follow_the_server_or_back_off_with_full_jitter() {
        assert_eq!(next_flush_delay_ms(7, Some(2_000), 0.0), 2_000, "never sooner than asked, whatever the count");
        assert_eq!(next_flush_delay_ms(0, Some(2_000), 1.0), 4_000);
        assert_eq!(next_flush_delay_ms(0, None, 1.0), 5_000);
        assert_eq!(next_flush_delay_ms(3, None, 1.0), 40_000);
        assert_eq!(next_flush_delay_ms(30, None, 1.0), 600_000, "capped");
        assert_eq!(next_flush_delay_ms(3, None, 0.0), 1_000, "full jitter, with a floor");
        assert_eq!(next_flush_delay_ms(3, None, 0.5), 20_000);
    }

    #[test]
    fn the_device_backoff_grows_one_step_per_attempt_and_an_answer_ends_it() {
        use crate::server_contact::Connectivity;
        let mut device = Connectivity::default();
        assert_eq!(device.flush_wait_ms(0), None);
        // random 1.0: the top of each step's range (5 s, 10 s, 20 s, ...).
        assert!(!device.record(Load::Unreachable, 0, 1.0));
        assert_eq!(device.flush_wait_ms(0), Some(5_000));
        // A second failure of the same attempt (a read, the request after the version check)
        // is not a new step.
        device.record(Load::Unreachable, 100, 1.0);
        assert_eq!(device.flush_wait_ms(100), Some(5_000));
        device.record(Load::Busy { retry_after_ms: None }, 5_100, 1.0);
        assert_eq!(device.flush_wait_ms(5_100), Some(10_000));
        device.record(Load::Unreachable, 15_100, 1.0);
        assert_eq!(device.flush_wait_ms(15_100), Some(20_000));
        assert_eq!(device.flush_wait_ms(35_100), None, "due");
        // The server's Retry-After sets the pace when it says more.
        device.record(Load::Busy { retry_after_ms: Some(90_000) }, 35_100, 0.0);
        assert_eq!(device.flush_wait_ms(35_100), Some(90_000));
        assert!(device.record(Load::Answered, 125_100, 1.0));
        assert_eq!(device.flush_wait_ms(125_100), None);
        device.record(Load::Unreachable, 130_100, 1.0);
        assert_eq!(device.flush_wait_ms(130_100), Some(5_000), "an answer starts the steps again");
    }

    #[test]
    fn the_network_coming_back_ends_a_backoff_of_no_answers_but_not_one_the_server_asked_for() {
        use crate::server_contact::Connectivity;
        let mut device = Connectivity::default();
        for at in [0, 10_000, 30_000] {
            device.record(Load::Unreachable, at, 1.0);
        }
        assert_eq!(device.flush_wait_ms(30_000), Some(20_000));
        device.network_back();
        assert_eq!(device.flush_wait_ms(30_000), None, "offline for days: send when the network is back");
        assert!(device.should_try_network(30_000));
        device.record(Load::Unreachable, 31_000, 1.0);
        assert_eq!(device.flush_wait_ms(31_000), Some(5_000), "the steps start again");

        let mut device = Connectivity::default();
        device.record(Load::Busy { retry_after_ms: None }, 0, 1.0);
        device.network_back();
        assert_eq!(device.flush_wait_ms(0), Some(5_000), "a failing server is not cured by the network");
        device.record(Load::Busy { retry_after_ms: Some(60_000) }, 5_000, 0.0);
        device.network_back();
        assert_eq!(device.flush_wait_ms(5_000), Some(60_000));
    }

    #[test]
    fn triggers_spread_over_the_window() {
        assert_eq!(trigger_delay_ms(0.0), 0);
        assert_eq!(trigger_delay_ms(0.5), TRIGGER_SPREAD_MS / 2);
        assert!(trigger_delay_ms(0.999_999) < TRIGGER_SPREAD_MS);
        assert_eq!(trigger_delay_ms(7.0), TRIGGER_SPREAD_MS, "out of range is clamped");
    }
}
