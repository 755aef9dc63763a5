//! Overload mode (`--max-inflight N`), as a reverse proxy in front of DHIS2 behaves when its
//! upstream is saturated: while N requests under `/api` are being handled, the next one is
//! answered at once with 503, a `Retry-After` header and a DHIS2 `WebMessage`, and never
//! reaches DHIS2. The fault layer ([`crate::faults::middleware`]) asks [`Load::try_acquire`]
//! before anything else, so injected latency counts as time in flight.
//!
//! A slot is an [`InflightGuard`]: an atomic counter incremented on acquire and decremented
//! when the guard is dropped. The fault layer holds it until the handler has produced the
//! answer, and it is freed however the request ends: answered, failed, or cancelled because
//! the client went away (hyper drops the request's future, and with it the guard).

use std::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    Arc,
};

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{json, Map, Value};

use crate::error::WebMessage;

/// `maxInflight` when there is no limit.
const UNLIMITED: usize = usize::MAX;

/// Message of the overload 503.
pub const OVERLOADED_MESSAGE: &str = "Service overloaded: too many requests in flight, retry later";

/// The in-flight limit, its counters and the current number of `/api` requests in flight.
#[derive(Debug)]
pub struct Load {
    max_inflight: AtomicUsize,
    retry_after_secs: AtomicU64,
    inflight: AtomicUsize,
    peak: AtomicUsize,
    rejected: AtomicU64,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            max_inflight: AtomicUsize::new(UNLIMITED),
            retry_after_secs: AtomicU64::new(1),
            inflight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
        }
    }
}

/// One `/api` request in flight; the slot is given back when this is dropped.
#[derive(Debug)]
pub struct InflightGuard {
    load: Arc<Load>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.load.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Load {
    /// Sets the limit (`None`: none) and the `Retry-After` seconds.
    pub fn configure(&self, max_inflight: Option<usize>, retry_after_secs: u64) {
        self.set_max_inflight(max_inflight);
        self.retry_after_secs.store(retry_after_secs, Ordering::SeqCst);
    }

    fn set_max_inflight(&self, max: Option<usize>) {
        self.max_inflight.store(max.unwrap_or(UNLIMITED), Ordering::SeqCst);
    }

    /// The limit, if any.
    pub fn max_inflight(&self) -> Option<usize> {
        Some(self.max_inflight.load(Ordering::SeqCst)).filter(|m| *m != UNLIMITED)
    }

    /// The `Retry-After` of the overload 503, in seconds.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_secs.load(Ordering::SeqCst)
    }

    /// `/api` requests in flight now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Most `/api` requests in flight at once since start or the last reset.
    pub fn peak_inflight(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// 503s sent by the limit since start or the last reset.
    pub fn overload_rejected(&self) -> u64 {
        self.rejected.load(Ordering::SeqCst)
    }

    /// Takes a slot, or counts a rejection.
    pub fn try_acquire(self: &Arc<Self>) -> Result<InflightGuard, Overloaded> {
        let mut current = self.inflight.load(Ordering::SeqCst);
        loop {
            if current >= self.max_inflight.load(Ordering::SeqCst) {
                self.rejected.fetch_add(1, Ordering::SeqCst);
                return Err(Overloaded { retry_after_secs: self.retry_after_secs() });
            }
            match self.inflight.compare_exchange_weak(current, current + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    self.peak.fetch_max(current + 1, Ordering::SeqCst);
                    return Ok(InflightGuard { load: Arc::clone(self) });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Resets the peak (to what is in flight now) and the rejection count.
    pub fn reset_counters(&self) {
        self.peak.store(self.inflight(), Ordering::SeqCst);
        self.rejected.store(0, Ordering::SeqCst);
    }

    /// `GET /__sim/load`.
    pub fn to_json(&self) -> Value {
        json!({
            "maxInflight": self.max_inflight(),
            "retryAfterSecs": self.retry_after_secs(),
            "inflight": self.inflight(),
            "peakInflight": self.peak_inflight(),
            "overloadRejected": self.overload_rejected(),
        })
    }

    /// `PUT /__sim/load`: `{"maxInflight": N|null, "retryAfterSecs": S}`, each optional (an
    /// absent field keeps its value). Nothing changes when the body is invalid; the error is
    /// the message of a 400.
    pub fn update(&self, body: &[u8]) -> Result<(), String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON: {e}"))?;
        let Value::Object(fields) = value else {
            return Err("Expected an object {\"maxInflight\": N|null, \"retryAfterSecs\": S}".into());
        };
        let (max, retry) = parse_update(&fields)?;
        if let Some(max) = max {
            self.set_max_inflight(max);
        }
        if let Some(retry) = retry {
            self.retry_after_secs.store(retry, Ordering::SeqCst);
        }
        Ok(())
    }
}

type Update = (Option<Option<usize>>, Option<u64>);

fn parse_update(fields: &Map<String, Value>) -> Result<Update, String> {
    let mut max = None;
    let mut retry = None;
    for (name, value) in fields {
        match name.as_str() {
            "maxInflight" => {
                max = Some(match value {
                    Value::Null => None,
                    v => Some(
                        v.as_u64()
                            .and_then(|n| usize::try_from(n).ok())
                            .filter(|n| *n != UNLIMITED)
                            .ok_or_else(|| format!("maxInflight must be a non-negative integer or null: {v}"))?,
                    ),
                });
            }
            "retryAfterSecs" => {
                retry = Some(
                    value.as_u64().ok_or_else(|| format!("retryAfterSecs must be a non-negative integer: {value}"))?,
                );
            }
            other => return Err(format!("Unknown field: {other}")),
        }
    }
    Ok((max, retry))
}

/// A request refused by the limit; its answer is 503, `Retry-After` and a WebMessage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    /// The `Retry-After` sent, in seconds.
    pub retry_after_secs: u64,
}

impl IntoResponse for Overloaded {
    fn into_response(self) -> Response {
        let mut response = WebMessage::error(StatusCode::SERVICE_UNAVAILABLE, OVERLOADED_MESSAGE).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after_secs));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_given_back() {
        let load = Arc::new(Load::default());
        load.configure(Some(2), 5);
        let a = load.try_acquire().expect("first");
        let b = load.try_acquire().expect("second");
        let refused = load.try_acquire().expect_err("third").into_response();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "5");
        assert_eq!((load.inflight(), load.peak_inflight(), load.overload_rejected()), (2, 2, 1));
        drop(a);
        let c = load.try_acquire().expect("a slot came back");
        drop((b, c));
        assert_eq!(load.inflight(), 0);
        load.reset_counters();
        assert_eq!((load.peak_inflight(), load.overload_rejected()), (0, 0));
    }

    #[test]
    fn updates_are_checked_before_anything_changes() {
        let load = Load::default();
        assert!(load.update(br#"{"maxInflight": 3, "bogus": 1}"#).is_err());
        assert_eq!(load.max_inflight(), None);
        load.update(br#"{"maxInflight": 3}"#).expect("valid");
        assert_eq!((load.max_inflight(), load.retry_after_secs()), (Some(3), 1));
        load.update(br#"{"retryAfterSecs": 0}"#).expect("valid");
        assert_eq!((load.max_inflight(), load.retry_after_secs()), (Some(3), 0));
        load.update(br#"{"maxInflight": null}"#).expect("valid");
        assert_eq!(load.max_inflight(), None);
    }
}
