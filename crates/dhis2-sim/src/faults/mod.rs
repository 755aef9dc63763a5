//! Fault injection, request log and counters for tests (`--faults`), served at `/__sim/…`.
//!
//! When enabled, [`middleware`] wraps every route of the application. It answers the admin API
//! under `/__sim` itself (404 when faults are off), applies the fault rules to every other
//! request (latency, fixed status, dropped connection, "commit then drop", an answer held back
//! after the handler ran; by path, method, and what the body holds or its size), and records every
//! request under `/api` in a bounded in-memory log with per-route counters. Before any of that,
//! an `/api` request takes a slot of the overload limit ([`crate::load`]) or is refused.
//!
//! Dropping a connection needs the socket: [`FaultListener`] wraps the TCP listener so each
//! connection carries a [`KillSwitch`], reachable from the request as
//! `ConnectInfo<`[`ConnHandle`]`>`. Once killed, every read and write on that connection fails,
//! so hyper closes it without writing a byte of the response. Without a connection (router
//! tests with `oneshot`), a dropped request gets a response whose body fails on first read.

use std::{
    collections::{BTreeMap, VecDeque},
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    extract::{connect_info::Connected, ConnectInfo, MatchedPath, Query, Request, State},
    http::{header, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    serve::{IncomingStream, Listener},
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};

use crate::{
    auth::CurrentUser,
    error::{json_response, ApiError, WebMessage},
    load::Load,
    state::AppState,
};

mod admin;
mod connection;
mod rules;

use admin::admin;
pub use connection::{ConnHandle, FaultListener, KillSwitch, KillableStream};
pub use rules::{path_matches, BodyView, FaultRule, Latency, RuleSet, NGINX_413_PAGE};

/// Number of requests the log keeps (older ones are forgotten first).
pub const LOG_CAPACITY: usize = 100_000;
/// Largest request body kept in the log (bigger ones are logged without `body`).
pub const LOG_BODY_LIMIT: usize = 1 << 20;
/// Largest request body the fault layer reads (it buffers write bodies to log them).
const READ_BODY_LIMIT: usize = 256 << 20;
/// Path prefix of the admin API.
pub const ADMIN_PREFIX: &str = "/__sim";

/// Fault settings from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultsConfig {
    /// Serve `/__sim` and apply rules; everything else here is ignored when false.
    pub enabled: bool,
    /// Rules active from the start (`--faults-file`).
    pub rules: RuleSet,
    /// Overload mode (`--max-inflight`): at most this many `/api` requests in flight, the
    /// next ones are answered 503 at once. `None`: no limit.
    pub max_inflight: Option<usize>,
    /// `Retry-After` of the overload 503, in seconds (`--retry-after-secs`, default 1).
    pub retry_after_secs: u64,
}

impl Default for FaultsConfig {
    fn default() -> Self {
        Self { enabled: false, rules: RuleSet::default(), max_inflight: None, retry_after_secs: 1 }
    }
}

/// What a request's fault evaluation decided.
#[derive(Debug, Clone, Default, PartialEq)]
struct Decision {
    latency: Duration,
    /// Wait after the handler ran, before answering.
    answer_delay: Duration,
    action: Option<Action>,
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Drop,
    Status { status: StatusCode, message: Option<String>, body: Option<Value>, html: Option<String> },
    CommitThenDrop,
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Drop => "drop",
            Action::Status { .. } => "status",
            Action::CommitThenDrop => "commitThenDrop",
        }
    }
}

/// One request of the log.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Position in the log, from 1, never reused until the log is cleared.
    pub seq: u64,
    /// When the request arrived (UTC, ISO-8601 with milliseconds, `Z`).
    pub timestamp: String,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Route template (`/api/dataStore/{namespace}/{key}`) when a route matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Status sent (or, for `commitThenDrop`, the one the handler produced); null when dropped.
    pub status: Option<u16>,
    /// Username of the authenticated user, when the request got past authentication.
    pub user: Option<String>,
    /// Request body size in bytes.
    pub body_size: u64,
    /// The JSON body of a write (a string if not JSON; absent if too large or binary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The injected fault, if any: `drop`, `status`, `commitThenDrop` or `latency`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<&'static str>,
    /// Time spent, injected latency included.
    pub duration_ms: u64,
}

#[derive(Debug)]
struct ActiveRule {
    rule: FaultRule,
    hits: u64,
}

#[derive(Debug)]
struct Inner {
    seed: u64,
    rng: StdRng,
    rules: Vec<ActiveRule>,
    log: VecDeque<LogEntry>,
    next_seq: u64,
    by_route: BTreeMap<String, u64>,
    by_path: BTreeMap<String, u64>,
}

impl Default for Inner {
    fn default() -> Self {
        let seed = rand::rng().random();
        Self {
            seed,
            rng: StdRng::seed_from_u64(seed),
            rules: Vec::new(),
            log: VecDeque::new(),
            next_seq: 1,
            by_route: BTreeMap::new(),
            by_path: BTreeMap::new(),
        }
    }
}

/// The fault injector's state: on/off, rules, RNG, request log and counters, and the
/// overload limit (memory only).
#[derive(Debug, Default)]
pub struct Faults {
    enabled: AtomicBool,
    inner: Mutex<Inner>,
    load: Arc<Load>,
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies command line settings.
    pub fn configure(&self, config: &FaultsConfig) {
        self.enabled.store(config.enabled, Ordering::SeqCst);
        self.set_rules(config.rules.clone());
        self.load.configure(config.max_inflight, config.retry_after_secs);
    }

    /// Overload mode: the in-flight limit and its counters (`/__sim/load`).
    pub fn load(&self) -> &Arc<Load> {
        &self.load
    }

    /// Whether fault injection (and `/__sim`) is on.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Switches fault injection on or off.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::SeqCst);
    }

    /// Replaces the rules and reseeds the RNG (randomly when the set has no seed).
    pub fn set_rules(&self, set: RuleSet) {
        let mut inner = self.lock();
        inner.seed = set.seed.unwrap_or_else(|| rand::rng().random());
        inner.rng = StdRng::seed_from_u64(inner.seed);
        inner.rules = set.rules.into_iter().map(|rule| ActiveRule { rule, hits: 0 }).collect();
    }

    /// The rules, seed and hit counts, as `GET /__sim/faults` shows them.
    pub fn rules_json(&self) -> Value {
        let inner = self.lock();
        json!({
            "enabled": self.enabled(),
            "seed": inner.seed,
            "rules": inner.rules.iter().map(|r| &r.rule).collect::<Vec<_>>(),
            "hits": inner.rules.iter().map(|r| r.hits).collect::<Vec<_>>(),
        })
    }

    fn decide(&self, method: &Method, path: &str, body: BodyView<'_>) -> Decision {
        let mut inner = self.lock();
        let Inner { rng, rules, .. } = &mut *inner;
        let mut decision = Decision::default();
        for active in rules.iter_mut() {
            let rule = &active.rule;
            if !rule.matches(method, path, body) || rule.times.is_some_and(|t| active.hits >= t) {
                continue;
            }
            if let Some(rate) = rule.rate {
                if rng.random::<f64>() >= rate {
                    continue;
                }
            }
            active.hits += 1;
            decision.latency += match rule.latency_ms {
                None => Duration::ZERO,
                Some(Latency::Fixed(ms)) => Duration::from_millis(ms),
                Some(Latency::Range { min, max }) => Duration::from_millis(rng.random_range(min..=max)),
            };
            decision.answer_delay += Duration::from_millis(rule.answer_delay_ms.unwrap_or(0));
            let action = if rule.drop {
                Some(Action::Drop)
            } else if rule.commit_then_drop {
                Some(Action::CommitThenDrop)
            } else {
                rule.status.and_then(|s| StatusCode::from_u16(s).ok()).map(|status| {
                    let plain = rule.message.is_none() && rule.body.is_none() && rule.html.is_none();
                    let proxy_413 = plain && status == StatusCode::PAYLOAD_TOO_LARGE && rule.body_larger_than.is_some();
                    Action::Status {
                        status,
                        message: rule.message.clone(),
                        body: rule.body.clone(),
                        html: if proxy_413 { Some(NGINX_413_PAGE.to_owned()) } else { rule.html.clone() },
                    }
                })
            };
            if action.is_some() {
                decision.action = action;
                break;
            }
        }
        decision
    }

    fn record(&self, mut entry: LogEntry) {
        let mut inner = self.lock();
        entry.seq = inner.next_seq;
        inner.next_seq += 1;
        let route_key = format!("{} {}", entry.method, entry.route.as_deref().unwrap_or(&entry.path));
        *inner.by_route.entry(route_key).or_default() += 1;
        let path_key = format!("{} {}", entry.method, entry.path);
        *inner.by_path.entry(path_key).or_default() += 1;
        if inner.log.len() >= LOG_CAPACITY {
            inner.log.pop_front();
        }
        inner.log.push_back(entry);
    }

    /// The logged requests that pass `filter`, oldest first.
    pub fn requests(&self, filter: &LogFilter) -> Vec<LogEntry> {
        self.lock().log.iter().filter(|e| filter.accepts(e)).cloned().collect()
    }

    /// Forgets the request log and the counters (the overload ones too).
    pub fn clear_requests(&self) {
        let mut inner = self.lock();
        inner.log.clear();
        inner.by_route.clear();
        inner.by_path.clear();
        inner.next_seq = 1;
        self.load.reset_counters();
    }

    /// Counters as `GET /__sim/counters` shows them.
    pub fn counters_json(&self) -> Value {
        let inner = self.lock();
        json!({
            "byRoute": inner.by_route,
            "byPath": inner.by_path,
            "total": inner.by_path.values().sum::<u64>(),
            "peakInflight": self.load.peak_inflight(),
            "overloadRejected": self.load.overload_rejected(),
        })
    }
}

/// Filters of `GET /__sim/requests`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogFilter {
    /// Path prefix (whole segments, as rules).
    pub path: Option<String>,
    /// Method (case-insensitive).
    pub method: Option<String>,
    /// Username.
    pub user: Option<String>,
    /// Status.
    pub status: Option<u16>,
    /// Route template, exact.
    pub route: Option<String>,
    /// Only entries with `seq` greater than this.
    pub since: Option<u64>,
}

impl LogFilter {
    fn accepts(&self, e: &LogEntry) -> bool {
        self.path.as_deref().is_none_or(|p| path_matches(p, &e.path))
            && self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(&e.method))
            && self.user.as_deref().is_none_or(|u| e.user.as_deref() == Some(u))
            && self.status.is_none_or(|s| e.status == Some(s))
            && self.route.as_deref().is_none_or(|r| e.route.as_deref() == Some(r))
            && self.since.is_none_or(|s| e.seq > s)
    }
}

/// Route template of a matched request, carried back on the response by [`mark_route`].
#[derive(Debug, Clone)]
pub struct RouteTemplate(pub String);

/// Layer for the `/api` router: copies the matched route template onto the response, so the
/// outer [`middleware`] can count requests per route.
pub async fn mark_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(RouteTemplate(route));
    }
    response
}

/// The fault layer over the whole application (see the module docs).
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let faults = state.faults();
    let path = req.uri().path().to_owned();
    if path == ADMIN_PREFIX || path.starts_with("/__sim/") {
        if !faults.enabled() {
            return ApiError::NotFound(format!("No handler found for {} {path}", req.method())).into_response();
        }
        return admin(&state, req).await;
    }
    if !faults.enabled() {
        return next.run(req).await;
    }

    let started = Instant::now();
    let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_owned);
    let conn = req.extensions().get::<ConnectInfo<ConnHandle>>().map(|c| c.0.clone());
    let logged = path_matches("/api", &path);

    // Overload mode comes first, as a proxy in front of DHIS2: a refused request is not read
    // further, and the slot of an accepted one is held through the injected latency and the
    // handler (dropped with this future, also when the client goes away).
    let _slot = if logged {
        match faults.load().try_acquire() {
            Ok(slot) => Some(slot),
            Err(refused) => {
                let refused = refused.into_response();
                faults.record(LogEntry {
                    seq: 0,
                    timestamp,
                    method: method.to_string(),
                    path,
                    query,
                    route: None,
                    status: Some(refused.status().as_u16()),
                    user: None,
                    body_size: content_length(req.headers()),
                    body: None,
                    fault: Some("overload"),
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                });
                return refused;
            }
        }
    } else {
        None
    };

    // Buffer write bodies so the log can show them.
    let is_write = matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let (req, body_size, body, read) = if logged && is_write {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, READ_BODY_LIMIT).await {
            Ok(b) => b,
            Err(e) => return ApiError::BadRequest(format!("Cannot read request body: {e}")).into_response(),
        };
        let logged_body = log_body(&bytes);
        let size = bytes.len() as u64;
        (Request::from_parts(parts, Body::from(bytes.clone())), size, logged_body, Some(bytes))
    } else {
        let size = content_length(req.headers());
        (req, size, None, None)
    };

    let decision = faults.decide(&method, &path, BodyView { size: body_size, bytes: read.as_deref() });
    drop(read);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let fault = match &decision.action {
        Some(a) => Some(a.name()),
        None if !decision.answer_delay.is_zero() => Some("answerDelay"),
        None if !decision.latency.is_zero() => Some("latency"),
        None => None,
    };

    let (response, status) = match decision.action {
        Some(Action::Drop) => (drop_connection(conn.as_ref()), None),
        Some(Action::Status { status, message, body, html }) => {
            let response = match (body, html) {
                (Some(body), _) => json_response(status, &body),
                (None, Some(page)) if page == NGINX_413_PAGE => {
                    (status, [(header::CONTENT_TYPE, "text/html"), (header::CONNECTION, "close")], page).into_response()
                }
                (None, Some(page)) => {
                    (status, [(header::CONTENT_TYPE, "text/html;charset=UTF-8")], page).into_response()
                }
                (None, None) => {
                    WebMessage::error(status, message.unwrap_or_else(|| "Injected fault".into())).into_response()
                }
            };
            (response, Some(status.as_u16()))
        }
        Some(Action::CommitThenDrop) => {
            let response = next.run(req).await;
            let status = response.status().as_u16();
            // Let the body finish (a handler may stream), then throw it away.
            let (parts, body) = response.into_parts();
            let _ = axum::body::to_bytes(body, usize::MAX).await;
            tokio::time::sleep(decision.answer_delay).await;
            let mut dropped = drop_connection(conn.as_ref());
            dropped.extensions_mut().extend(parts.extensions);
            (dropped, Some(status))
        }
        None => {
            let response = next.run(req).await;
            if !decision.answer_delay.is_zero() {
                tokio::time::sleep(decision.answer_delay).await;
            }
            let status = response.status().as_u16();
            (response, Some(status))
        }
    };

    if logged {
        let user = response.extensions().get::<CurrentUser>().map(|u| u.0.username.clone());
        let route = response.extensions().get::<RouteTemplate>().map(|r| r.0.clone());
        faults.record(LogEntry {
            seq: 0,
            timestamp,
            method: method.to_string(),
            path,
            query,
            route,
            status,
            user,
            body_size,
            body,
            fault,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }
    response
}

/// The request's `Content-Length`, 0 when absent.
fn content_length(headers: &axum::http::HeaderMap) -> u64 {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The logged form of a write body: JSON if it parses, else text, else nothing.
fn log_body(bytes: &Bytes) -> Option<Value> {
    if bytes.is_empty() || bytes.len() > LOG_BODY_LIMIT {
        return None;
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Some(v),
        Err(_) => std::str::from_utf8(bytes).ok().map(|s| Value::String(s.to_owned())),
    }
}

/// Kills the connection (when there is one) and returns a response whose body fails, so that
/// nothing valid can reach the client either way.
fn drop_connection(conn: Option<&ConnHandle>) -> Response {
    if let Some(conn) = conn {
        conn.kill();
    }
    let failing = futures::stream::once(async {
        Err::<Bytes, io::Error>(io::Error::new(io::ErrorKind::ConnectionAborted, "dropped by dhis2-sim fault"))
    });
    (StatusCode::OK, Body::from_stream(failing)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(path_matches("", "/api/x"));
        assert!(path_matches("/api/dataStore", "/api/dataStore"));
        assert!(path_matches("/api/dataStore", "/api/dataStore/ns/k"));
        assert!(path_matches("/api/dataStore", "/api/dataStore.json"));
        assert!(!path_matches("/api/dataStore", "/api/dataStoreX"));
        assert!(path_matches("/api/", "/api/me"));
        assert!(!path_matches("/api/me", "/api"));
    }

    #[test]
    fn rule_sets_parse_and_validate() {
        let set = RuleSet::parse(br#"[{"path":"/api","status":503}]"#).expect("list");
        assert_eq!(set.rules.len(), 1);
        let set = RuleSet::parse(br#"{"seed":7,"rules":[{"latencyMs":{"min":1,"max":2}}]}"#).expect("object");
        assert_eq!(set.seed, Some(7));
        assert_eq!(set.rules[0].latency_ms, Some(Latency::Range { min: 1, max: 2 }));
        for bad in [
            &br#"[{"path":"api","drop":true}]"#[..],
            br#"[{"drop":true,"status":500}]"#,
            br#"[{"path":"/api"}]"#,
            br#"[{"drop":true,"rate":1.5}]"#,
            br#"[{"status":1000}]"#,
            br#"[{"drop":true,"bogus":1}]"#,
            br#"[{"latencyMs":{"min":5,"max":1}}]"#,
            b"not json",
        ] {
            assert!(RuleSet::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn seeded_rates_are_deterministic_and_times_limit_hits() {
        let faults = Faults::default();
        let rules: Vec<FaultRule> =
            serde_json::from_str(r#"[{"path":"/api","rate":0.5,"status":503}]"#).expect("rules");
        let run = |faults: &Faults| -> Vec<bool> {
            faults.set_rules(RuleSet { seed: Some(42), rules: rules.clone() });
            (0..64).map(|_| faults.decide(&Method::GET, "/api/me", BodyView::default()).action.is_some()).collect()
        };
        let a = run(&faults);
        assert_eq!(a, run(&faults));
        let hits = a.iter().filter(|h| **h).count();
        assert!((16..=48).contains(&hits), "{hits}");

        let limited: Vec<FaultRule> =
            serde_json::from_str(r#"[{"path":"/api","method":"post","drop":true,"times":2}]"#).expect("rules");
        faults.set_rules(RuleSet { seed: None, rules: limited });
        assert_eq!(faults.decide(&Method::GET, "/api/x", BodyView::default()).action, None);
        assert_eq!(faults.decide(&Method::POST, "/api/x", BodyView::default()).action, Some(Action::Drop));
        assert_eq!(faults.decide(&Method::POST, "/api/x", BodyView::default()).action, Some(Action::Drop));
        assert_eq!(faults.decide(&Method::POST, "/api/x", BodyView::default()).action, None);
    }
}
