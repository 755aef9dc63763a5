//! What the service worker does with each request of the app: every request rule, decided
//! here so that `www/sw.js` only carries the decisions out (it fetches, answers and keeps
//! copies as a plan says, and reports back what the network did). As matrix-rust-sdk's
//! `outgoing_requests` / `mark_request_as_sent`, nothing here touches the network.
//!
//! A request of the app goes through:
//! 1. [`route`]: whose it is: the browser's (another origin, `HEAD`, `OPTIONS`), a read or a
//!    write of a vault's API, a plain network request, or a file of the app shell.
//! 2. A vault's read: [`Engine::plan_read`] (a credential check goes to the server only;
//!    otherwise network first, or local at once during the offline fast path), then
//!    [`Engine::after_network`] (use the server's answer? keep a sealed copy?), and
//!    [`Engine::answer_read_locally`] when the server could not answer.
//! 3. A vault's write: [`Engine::plan_write`] (sent as is while locked, refused, sent, or
//!    queued behind the outbox), [`Engine::after_network`] when sent, and
//!    [`Engine::capture_answer`] when queued.
//! 4. The app shell: network first; [`keeps_shell_copy`] says which answers are kept.

use serde::Serialize;

use crate::{
    engine::Engine,
    http::{HttpClient, HttpResponse},
    kdf::PasswordKdf,
    local_answer::error_answer,
    params::{base_path, Target},
    random::RandomSource,
    read_cache::is_server_read,
    store::KvStore,
    writes::PreparedWrite,
    CoreError,
};

/// How long the worker waits for the server on a request of the app before it answers from
/// the local copy: a nurse waits at the screen for it.
pub const APP_REQUEST_TIMEOUT_MS: u32 = 8_000;

/// How long the library's own requests wait (login, download pages, flush) unless the app
/// configures another (`requestTimeoutMs`): their bodies are larger (a page of 50 women, a
/// bundle of a day's work) and nobody waits at the screen for them.
pub const LIBRARY_REQUEST_TIMEOUT_MS: u32 = 15_000;

/// Why the app's request got no answer from the local copy while the vault is locked.
const LOCKED_OFFLINE: &str = "Offline, and the local copy is locked: log in again.";

/// Whose a request of the app is ([`route`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Route {
    /// Not the worker's: the browser handles it as if no worker were there (another origin,
    /// `HEAD`, `OPTIONS`).
    Browser,
    /// A read of a vault's server: an API read or a server page the app reads.
    Read {
        /// The vault's API base.
        #[serde(rename = "apiBase")]
        api_base: String,
    },
    /// A write under a vault's API base.
    Write {
        /// The vault's API base.
        #[serde(rename = "apiBase")]
        api_base: String,
    },
    /// Sent to the network as it is, never answered locally nor kept: a write outside every
    /// API base, an API path of no vault of this device.
    Network,
    /// A file of the app shell: network first, the kept copy offline.
    Shell,
}

/// Whose the request `method url` is, for a worker of `worker_origin` that knows the vaults
/// of `api_bases` (anything in the list that is not an API base of the origin is ignored).
pub fn route(method: &str, url: &str, worker_origin: &str, api_bases: &[String]) -> Route {
    if origin_of(url) != Some(worker_origin)
        || method.eq_ignore_ascii_case("HEAD")
        || method.eq_ignore_ascii_case("OPTIONS")
    {
        return Route::Browser;
    }
    let bases: Vec<&String> = api_bases.iter().filter(|b| is_api_base(b, worker_origin)).collect();
    let target = Target::parse(url);
    for base in &bases {
        let api_path = base_path(base);
        if target.relative_to(&api_path).is_some() {
            let api_base = base.to_string();
            return if is_server_read(&api_path, method, url) {
                Route::Read { api_base }
            } else {
                Route::Write { api_base }
            };
        }
    }
    if let Some(base) = bases.iter().find(|b| is_server_read(&base_path(b), method, url)) {
        return Route::Read { api_base: base.to_string() };
    }
    if !method.eq_ignore_ascii_case("GET") || is_never_shell(&target.path) {
        return Route::Network;
    }
    Route::Shell
}

/// Whether `candidate` is an API base a worker of `worker_origin` serves: an absolute URL of
/// that origin, in canonical form, whose path ends in DHIS2's `/api` after an optional
/// context path (`https://host/api`, `https://host/dhis/api`), nothing else. An API base of
/// the origin's root would make every URL of the origin an API request.
pub fn is_api_base(candidate: &str, worker_origin: &str) -> bool {
    let Some(path) = candidate.strip_prefix(worker_origin) else { return false };
    let Some(context) = path.strip_suffix("/api") else { return false };
    context.is_empty() || context.strip_prefix('/').is_some_and(|c| c.split('/').all(is_plain_segment))
}

/// A path segment a canonical URL keeps as it is: not empty, not `.` or `..`, only characters
/// a browser leaves unescaped in a path.
fn is_plain_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%".contains(&b))
}

/// `scheme://authority` of an absolute URL.
fn origin_of(url: &str) -> Option<&str> {
    let after_scheme = url.find("://")? + 3;
    let end = url[after_scheme..].find(['/', '?', '#']).map_or(url.len(), |i| after_scheme + i);
    Some(&url[..end])
}

/// Paths never kept as the app shell: DHIS2's API of a vault not (yet) configured here, the
/// server pages, the test and admin endpoints (`/__…`).
fn is_never_shell(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/__") || path.contains("/dhis-web-commons")
}

/// Whether the answer to a request of the app shell is kept for offline loads: a success of
/// the origin itself (`basic`), not a page the server redirected to (its login page when the
/// session is gone), for a URL [`route`] gives to the shell.
pub fn keeps_shell_copy(
    url: &str,
    worker_origin: &str,
    api_bases: &[String],
    status: u16,
    redirected: bool,
    same_origin: bool,
) -> bool {
    (200..300).contains(&status)
        && !redirected
        && same_origin
        && route("GET", url, worker_origin, api_bases) == Route::Shell
}

/// How a vault's read is answered ([`Engine::plan_read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadPlan {
    /// A credential check (it carries `Authorization`): sent to the server only, its outcome
    /// recorded; never answered from local data, a failure stays a network error.
    NetworkOnly,
    /// Sent to the server first; answered locally when the server does not take it.
    NetworkFirst,
    /// Answered locally at once (the offline fast path after a failure).
    Local,
}

/// What to do with the server's answer (or its absence) to a request sent on a plan
/// ([`Engine::after_network`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AfterNetwork {
    /// The server took the request: its answer goes to the app. Otherwise (no answer, or
    /// busy: 429 and 5xx) the request is answered locally (read) or queued (write).
    pub use_answer: bool,
    /// A read's answer to keep sealed for offline (the core's cache decides what it keeps).
    pub keep_copy: bool,
}

/// How a vault's write is handled ([`Engine::plan_write`]).
#[derive(Debug, Clone)]
pub enum WritePlan {
    /// The vault is locked: nothing can be queued, the write goes to the server as it is and
    /// `if_unreachable` answers it when the server cannot be reached.
    SendAsIs {
        /// The answer when the server cannot be reached.
        if_unreachable: HttpResponse,
    },
    /// The write cannot be taken (a malformed body): answered at once.
    Refuse {
        /// The answer, a WebMessage with the library's error code.
        answer: HttpResponse,
    },
    /// Sent (its body with client UIDs) while the server answers and nothing waits; queued if
    /// the server does not take it ([`AfterNetwork::use_answer`]).
    Send(PreparedWrite),
    /// Queued at once, behind the outbox's entries or during the offline fast path: later
    /// writes never overtake earlier ones.
    Queue(PreparedWrite),
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    /// How to answer a read of this vault; `has_authorization`: the request carries its own
    /// `Authorization` header.
    pub fn plan_read(&self, has_authorization: bool, now_ms: i64) -> ReadPlan {
        if has_authorization {
            ReadPlan::NetworkOnly
        } else if self.should_try_network(now_ms) {
            ReadPlan::NetworkFirst
        } else {
            ReadPlan::Local
        }
    }

    /// Records what the network did with a request sent on a plan (`status` None: no answer
    /// or timed out; `retry_after` the answer's header; `redirected` the answer is a page the
    /// server redirected to) and says what to do with the answer.
    pub fn after_network(
        &self,
        status: Option<u16>,
        retry_after: Option<&str>,
        redirected: bool,
        now_ms: i64,
    ) -> AfterNetwork {
        let use_answer = self.record_network(status, retry_after, now_ms);
        let cacheable_status = status.is_some_and(|s| (200..300).contains(&s) || s == 404);
        AfterNetwork {
            use_answer,
            keep_copy: use_answer && cacheable_status && !redirected && self.vault().is_unlocked(),
        }
    }

    /// The local answer to a read the server did not answer: from the local copy or the sealed
    /// cache, else a WebMessage saying why not (locked, not in the local copy, a storage
    /// failure), with the status of its error code.
    pub async fn answer_read_locally(&self, method: &str, url: &str, request_body: &[u8]) -> HttpResponse {
        if !self.vault().is_unlocked() {
            return error_answer(CoreError::VaultLocked.code(), LOCKED_OFFLINE);
        }
        match self.answer_read_offline(method, url, request_body).await {
            Ok(Some(answer)) => answer,
            Ok(None) => error_answer("OFFLINE_NOT_AVAILABLE", "Offline, and this is not in the local copy."),
            Err(error) => error_answer(error.code(), &error.to_string()),
        }
    }

    /// How to handle a write of the app to this vault.
    pub async fn plan_write(&self, method: &str, url: &str, content_type: &str, body: &[u8], now_ms: i64) -> WritePlan {
        if !self.vault().is_unlocked() {
            return WritePlan::SendAsIs { if_unreachable: error_answer(CoreError::VaultLocked.code(), LOCKED_OFFLINE) };
        }
        let prepared = match self.prepare_write(method, url, content_type, body) {
            Ok(prepared) => prepared,
            Err(error) => return WritePlan::Refuse { answer: error_answer(error.code(), &error.to_string()) },
        };
        if !self.should_try_network(now_ms) {
            return WritePlan::Queue(prepared);
        }
        match self.outbox_has_work().await {
            Ok(false) => WritePlan::Send(prepared),
            Ok(true) => WritePlan::Queue(prepared),
            Err(error) => WritePlan::Refuse { answer: error_answer(error.code(), &error.to_string()) },
        }
    }

    /// Queues a prepared write ([`Engine::capture_write`]): whether it was queued, and the
    /// answer the app expects, or a WebMessage with the error's code when it could not be
    /// queued (nothing was written then).
    pub async fn capture_answer(&self, prepared: &PreparedWrite, now_ms: i64) -> (bool, HttpResponse) {
        match self.capture_write(prepared, now_ms).await {
            Ok(answer) => (true, answer),
            Err(error) => (false, error_answer(error.code(), &error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "https://clinic.example";

    fn bases() -> Vec<String> {
        vec![format!("{ORIGIN}/api")]
    }

    fn read() -> Route {
        Route::Read { api_base: format!("{ORIGIN}/api") }
    }

    fn write() -> Route {
        Route::Write { api_base: format!("{ORIGIN}/api") }
    }

    #[test]
    fn every_request_of_the_app_is_routed_by_the_table() {
        let table: &[(&str, &str, Route)] = &[
            ("GET", "https://other.example/api/me", Route::Browser),
            ("HEAD", "/api/me", Route::Browser),
            ("OPTIONS", "/api/tracker", Route::Browser),
            ("GET", "/api/me", read()),
            ("GET", "/api", read()),
            ("GET", "/api/40/trackedEntityInstances.json?ou=x", read()),
            ("POST", "/api/i18n", read()),
            ("POST", "/api/40/i18n", read()),
            ("POST", "/api/trackedEntityInstances", write()),
            ("PUT", "/api/events/ev1/de1", write()),
            ("DELETE", "/api/enrollments/en1", write()),
            ("POST", "/api/tracker?async=false", write()),
            ("GET", "/dhis-web-commons/ajax/getTranslated.action", read()),
            ("POST", "/dhis-web-commons-ajax-json/getOrganisationUnitTree.action", read()),
            ("POST", "/dhis-web-commons-security/login.action", Route::Network),
            ("GET", "/dhis-web-commons-security/logout.action", Route::Network),
            ("POST", "/dhis-web-tracker-capture/index.html", Route::Network),
            ("GET", "/__sim/state", Route::Network),
            ("GET", "/dhis-web-tracker-capture/index.html", Route::Shell),
            ("GET", "/dhis-web-tracker-capture/", Route::Shell),
            ("GET", "/apiary/index.html", Route::Shell),
        ];
        for (method, path, expected) in table {
            let url = if path.starts_with('/') { format!("{ORIGIN}{path}") } else { path.to_string() };
            assert_eq!(&route(method, &url, ORIGIN, &bases()), expected, "{method} {url}");
        }
    }

    #[test]
    fn an_api_path_of_no_vault_goes_to_the_network_and_a_vault_under_a_context_path_is_served() {
        let dhis = vec![format!("{ORIGIN}/dhis/api")];
        assert_eq!(route("GET", &format!("{ORIGIN}/api/me"), ORIGIN, &[]), Route::Network);
        assert_eq!(
            route("GET", &format!("{ORIGIN}/dhis/api/me"), ORIGIN, &dhis),
            Route::Read { api_base: dhis[0].clone() }
        );
        assert_eq!(
            route(
                "POST",
                &format!("{ORIGIN}/dhis/dhis-web-commons-ajax-json/getOrganisationUnitTree.action"),
                ORIGIN,
                &dhis
            ),
            Route::Read { api_base: dhis[0].clone() }
        );
        // `/api` of the origin is not this vault's API: the network's, never the shell's.
        assert_eq!(route("GET", &format!("{ORIGIN}/api/me"), ORIGIN, &dhis), Route::Network);
        assert_eq!(route("GET", &format!("{ORIGIN}/dhis/dhis-web-capture/index.html"), ORIGIN, &dhis), Route::Shell);
    }

    #[test]
    fn only_canonical_api_bases_of_the_worker_origin_are_served() {
        for good in
            ["https://clinic.example/api", "https://clinic.example/dhis/api", "https://clinic.example/a/b-c/api"]
        {
            assert!(is_api_base(good, ORIGIN), "{good}");
        }
        for bad in [
            "https://clinic.example",
            "https://clinic.example/",
            "https://clinic.example/api/",
            "https://clinic.example/apis",
            "https://clinic.example/dhis/api?x=1",
            "https://clinic.example/../api",
            "https://clinic.example/./api",
            "https://clinic.example//api",
            "https://clinic.example/a b/api",
            "https://other.example/api",
            "https://clinic.example.evil/api",
            "https://clinic.example:8080/api",
            "/api",
            "",
        ] {
            assert!(!is_api_base(bad, ORIGIN), "{bad}");
        }
        // A listed base that is not one is ignored by the routing.
        let listed = vec![format!("{ORIGIN}/"), format!("{ORIGIN}/api/")];
        assert_eq!(route("GET", &format!("{ORIGIN}/index.html"), ORIGIN, &listed), Route::Shell);
    }

    #[test]
    fn only_successes_of_the_shell_that_were_not_redirected_are_kept() {
        let url = format!("{ORIGIN}/dhis-web-tracker-capture/index.html");
        assert!(keeps_shell_copy(&url, ORIGIN, &bases(), 200, false, true));
        assert!(
            !keeps_shell_copy(&url, ORIGIN, &bases(), 200, true, true),
            "the login page a lost session redirects to"
        );
        assert!(!keeps_shell_copy(&url, ORIGIN, &bases(), 404, false, true));
        assert!(!keeps_shell_copy(&url, ORIGIN, &bases(), 500, false, true));
        assert!(!keeps_shell_copy(&url, ORIGIN, &bases(), 200, false, false), "an opaque or cross-origin answer");
        assert!(!keeps_shell_copy(&format!("{ORIGIN}/api/me"), ORIGIN, &bases(), 200, false, true));
        assert!(!keeps_shell_copy(&format!("{ORIGIN}/dhis-web-commons/menu.html"), ORIGIN, &bases(), 200, false, true));
    }

    #[test]
    fn origins_are_read_up_to_the_path() {
        assert_eq!(origin_of("https://h:8080/api/me?x"), Some("https://h:8080"));
        assert_eq!(origin_of("https://h?x=1"), Some("https://h"));
        assert_eq!(origin_of("http://h"), Some("http://h"));
        assert_eq!(origin_of("/api/me"), None);
    }
}
