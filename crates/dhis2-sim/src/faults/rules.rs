//! The fault rules: what a rule matches (path prefix, method, what the body holds or its
//! size), what it does (latency, a status, a dropped connection, commit then drop, an answer
//! held back) and how often, and the seeded set of rules the layer applies.

use super::*;

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

    pub(super) fn matches(&self, method: &Method, path: &str, body: BodyView<'_>) -> bool {
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
