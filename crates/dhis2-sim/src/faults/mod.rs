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

/// Number of requests the log keeps (older ones are forgotten first).
pub const LOG_CAPACITY: usize = 100_000;
/// Largest request body kept in the log (bigger ones are logged without `body`).
pub const LOG_BODY_LIMIT: usize = 1 << 20;
/// Largest request body the fault layer reads (it buffers write bodies to log them).
const READ_BODY_LIMIT: usize = 256 << 20;
/// Path prefix of the admin API.
pub const ADMIN_PREFIX: &str = "/__sim";

/// Latency of a rule: a fixed number of milliseconds or a uniform random range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Latency {
    /// Always this many milliseconds.
    Fixed(u64),
    /// Uniformly between `min` and `max` milliseconds (inclusive).
    Range {
        /// Smallest delay.
        min: u64,
        /// Largest delay.
        max: u64,
    },
}

/// One fault rule, as posted to `/__sim/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    /// Path prefix, matched on whole segments (`/api/dataStore` matches `/api/dataStore`,
    /// `/api/dataStore/ns/k` and `/api/dataStore.json`, not `/api/dataStoreX`). Empty: every path.
    #[serde(default)]
    pub path: String,
    /// HTTP method (case-insensitive); any method when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Close the connection without answering.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drop: bool,
    /// Answer with this status and a DHIS2 `WebMessage` (or `body`) without running the handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Message of the `WebMessage` sent with `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Exact JSON body sent with `status` instead of a `WebMessage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// An HTML page sent with `status` (`text/html`) instead of a `WebMessage`: what a captive
    /// portal or an SSO login page in front of DHIS2 answers, often with 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Run the handler (so its writes commit), then close the connection instead of answering.
    #[serde(default, skip_serializing_if = "is_false")]
    pub commit_then_drop: bool,
    /// Delay before the request is handled (or dropped, or answered with `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
    /// Probability (0..1) that a matching request is hit; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Hit at most this many requests, then the rule stays inert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// Only requests whose body contains this text (bytes, case-sensitive): a "poison record"
    /// (a UID or an attribute value) that makes DHIS2's importer fail on every request carrying
    /// it, whatever the API. Bodies are seen for writes under `/api` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// Only requests whose body is larger than this many bytes (as a reverse proxy's
    /// `client_max_body_size`). With `status: 413` and no `message`, `body` or `html`, the
    /// answer is nginx's own HTML page ([`NGINX_413_PAGE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_larger_than: Option<u64>,
    /// Run the handler (its writes commit), then wait this many milliseconds before answering:
    /// a server killed in this window has done the work but sent no answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_delay_ms: Option<u64>,
}

/// What nginx answers to a body over its `client_max_body_size` (`text/html`, with
/// `Connection: close`), before DHIS2 sees the request.
pub const NGINX_413_PAGE: &str = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n\
    <center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n";

/// What the rules can see of a request's body.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyView<'a> {
    /// Size in bytes (read, or the `Content-Length` when the body was not read).
    pub size: u64,
    /// The bytes, when the fault layer read them (writes under `/api`).
    pub bytes: Option<&'a [u8]>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl FaultRule {
    /// Checks the rule; the error is the message of a 400 answer.
    pub fn validate(&self) -> Result<(), String> {
        if !self.path.is_empty() && !self.path.starts_with('/') {
            return Err(format!("Rule path must start with '/': '{}'", self.path));
        }
        if let Some(m) = &self.method {
            if Method::from_bytes(m.to_ascii_uppercase().as_bytes()).is_err() {
                return Err(format!("Invalid method: '{m}'"));
            }
        }
        let terminal = usize::from(self.drop) + usize::from(self.status.is_some()) + usize::from(self.commit_then_drop);
        if terminal > 1 {
            return Err("A rule can have only one of drop, status and commitThenDrop".into());
        }
        if terminal == 0 && self.latency_ms.is_none() && self.answer_delay_ms.is_none() {
            return Err("A rule needs one of drop, status, commitThenDrop, latencyMs or answerDelayMs".into());
        }
        if self.answer_delay_ms.is_some() && (self.drop || self.status.is_some()) {
            return Err("answerDelayMs goes with a handler that runs: not with drop or status".into());
        }
        if self.body_contains.as_deref().is_some_and(str::is_empty) {
            return Err("bodyContains must not be empty".into());
        }
        if (self.body.is_some() || self.html.is_some() || self.message.is_some()) && self.status.is_none() {
            return Err("body, html and message need a status".into());
        }
        if self.body.is_some() && self.html.is_some() {
            return Err("A rule can have only one of body and html".into());
        }
        if let Some(s) = self.status {
            if StatusCode::from_u16(s).is_err() || !(100..=599).contains(&s) {
                return Err(format!("Invalid status: {s}"));
            }
        }
        if let Some(rate) = self.rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("Rate must be between 0 and 1: {rate}"));
            }
        }
        if let Some(Latency::Range { min, max }) = self.latency_ms {
            if min > max {
                return Err(format!("latencyMs min ({min}) is greater than max ({max})"));
            }
        }
        if (self.message.is_some() || self.body.is_some()) && self.status.is_none() {
            return Err("message and body go with status".into());
        }
        Ok(())
    }

    fn matches(&self, method: &Method, path: &str, body: BodyView<'_>) -> bool {
        self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
            && path_matches(&self.path, path)
            && self.body_larger_than.is_none_or(|limit| body.size > limit)
            && self.body_contains.as_deref().is_none_or(|needle| {
                body.bytes.is_some_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            })
    }
}

/// Whether `path` is `prefix` or lies under it (whole segments; `.json` style suffixes count).
pub fn path_matches(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() || prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/') || rest.starts_with('.'),
        None => false,
    }
}

/// A rule set with its RNG seed: the object form of `POST /__sim/faults` and of
/// `--faults-file` (a bare JSON list of rules is also accepted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// Seed of the RNG behind `rate` and random latency; random when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The rules, tried in order.
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

impl RuleSet {
    /// Parses a rule list or a `{"seed", "rules"}` object and validates every rule.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("Invalid JSON: {e}"))?;
        let set = if value.is_array() {
            RuleSet { seed: None, rules: serde_json::from_value(value).map_err(|e| format!("Invalid rules: {e}"))? }
        } else {
            serde_json::from_value(value).map_err(|e| format!("Invalid rules: {e}"))?
        };
        for (i, rule) in set.rules.iter().enumerate() {
            rule.validate().map_err(|e| format!("Rule {i}: {e}"))?;
        }
        Ok(set)
    }
}

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

/// `/__sim/…`: rules, request log, counters, overload limit, login lockout.
async fn admin(state: &AppState, req: Request) -> Response {
    let faults = state.faults();
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    match (method.clone(), path.as_str()) {
        (Method::GET, "/__sim/faults") => json_response(StatusCode::OK, &faults.rules_json()),
        (Method::POST | Method::PUT, "/__sim/faults") => {
            let seed = Query::<BTreeMap<String, String>>::try_from_uri(req.uri())
                .ok()
                .and_then(|q| q.0.get("seed").and_then(|s| s.parse::<u64>().ok()));
            let bytes = match axum::body::to_bytes(req.into_body(), READ_BODY_LIMIT).await {
                Ok(b) => b,
                Err(e) => return ApiError::BadRequest(format!("Cannot read request body: {e}")).into_response(),
            };
            match RuleSet::parse(&bytes) {
                Ok(mut set) => {
                    if set.seed.is_none() {
                        set.seed = seed;
                    }
                    faults.set_rules(set);
                    json_response(StatusCode::OK, &faults.rules_json())
                }
                Err(e) => ApiError::BadRequest(e).into_response(),
            }
        }
        (Method::DELETE, "/__sim/faults") => {
            faults.set_rules(RuleSet::default());
            json_response(StatusCode::OK, &faults.rules_json())
        }
        (Method::GET, "/__sim/requests") => match Query::<LogFilter>::try_from_uri(req.uri()) {
            Ok(Query(filter)) => json_response(StatusCode::OK, &json!(faults.requests(&filter))),
            Err(e) => ApiError::BadRequest(e.body_text()).into_response(),
        },
        (Method::DELETE, "/__sim/requests" | "/__sim/counters") => {
            faults.clear_requests();
            WebMessage::ok(StatusCode::OK, "Request log cleared").into_response()
        }
        (Method::GET, "/__sim/counters") => json_response(StatusCode::OK, &faults.counters_json()),
        (Method::GET, "/__sim/load") => json_response(StatusCode::OK, &faults.load().to_json()),
        (Method::PUT | Method::POST, "/__sim/load") => {
            let bytes = match axum::body::to_bytes(req.into_body(), READ_BODY_LIMIT).await {
                Ok(b) => b,
                Err(e) => return ApiError::BadRequest(format!("Cannot read request body: {e}")).into_response(),
            };
            match faults.load().update(&bytes) {
                Ok(()) => json_response(StatusCode::OK, &faults.load().to_json()),
                Err(e) => ApiError::BadRequest(e).into_response(),
            }
        }
        (Method::DELETE, "/__sim/load") => {
            faults.load().configure(None, faults.load().retry_after_secs());
            json_response(StatusCode::OK, &faults.load().to_json())
        }
        (Method::GET, "/__sim/lockout") => json_response(StatusCode::OK, &state.login_lockout().to_json()),
        (Method::PUT | Method::POST, "/__sim/lockout") => {
            let bytes = match axum::body::to_bytes(req.into_body(), READ_BODY_LIMIT).await {
                Ok(b) => b,
                Err(e) => return ApiError::BadRequest(format!("Cannot read request body: {e}")).into_response(),
            };
            match parse_lockout(&bytes) {
                Ok(lockout) => {
                    state.login_lockout().set_lockout(lockout);
                    json_response(StatusCode::OK, &state.login_lockout().to_json())
                }
                Err(e) => ApiError::BadRequest(e).into_response(),
            }
        }
        (Method::DELETE, "/__sim/lockout") => {
            state.login_lockout().clear();
            json_response(StatusCode::OK, &state.login_lockout().to_json())
        }
        (_, "/__sim/faults" | "/__sim/requests" | "/__sim/counters" | "/__sim/load" | "/__sim/lockout") => {
            ApiError::MethodNotAllowed(format!("Request method '{method}' is not supported")).into_response()
        }
        _ => ApiError::NotFound(format!("No handler found for {method} {path}")).into_response(),
    }
}

/// The body of `PUT /__sim/lockout`: `{"lockoutMs": N}`.
fn parse_lockout(bytes: &[u8]) -> Result<Duration, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("Invalid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("Expected an object {\"lockoutMs\": N}".into());
    };
    if let Some(other) = fields.keys().find(|k| *k != "lockoutMs") {
        return Err(format!("Unknown field: {other}"));
    }
    let ms = fields.get("lockoutMs").ok_or("lockoutMs is required")?;
    ms.as_u64().map(Duration::from_millis).ok_or_else(|| format!("lockoutMs must be a non-negative integer: {ms}"))
}

/// Per-connection switch: once killed, the connection's reads and writes fail.
#[derive(Debug, Default)]
pub struct KillSwitch {
    killed: AtomicBool,
}

impl KillSwitch {
    /// Kills the connection.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    /// Whether the connection was killed.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

/// A TCP connection that can be killed from a request handler.
#[derive(Debug)]
pub struct KillableStream {
    inner: TcpStream,
    switch: Arc<KillSwitch>,
}

fn killed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection dropped by dhis2-sim fault")
}

impl AsyncRead for KillableStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.switch.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener whose connections are [`KillableStream`]s (used by [`crate::run`]).
#[derive(Debug)]
pub struct FaultListener(pub TcpListener);

impl Listener for FaultListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        (KillableStream { inner: io, switch: Arc::default() }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The connection of a request (`ConnectInfo<ConnHandle>`): peer address and kill switch.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    /// Peer address.
    pub remote: SocketAddr,
    switch: Arc<KillSwitch>,
}

impl ConnHandle {
    /// Kills the connection: nothing more is read or written on it.
    pub fn kill(&self) {
        self.switch.kill();
    }
}

impl Connected<IncomingStream<'_, FaultListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, FaultListener>) -> Self {
        ConnHandle { remote: *stream.remote_addr(), switch: Arc::clone(&stream.io().switch) }
    }
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
