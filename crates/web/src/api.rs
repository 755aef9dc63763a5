//! The JavaScript binding: the `Engine` class that `www/tracker-offline.js` (page) and
//! `www/sw.js` (service worker) wrap. Every method converts arguments, calls the core engine
//! and converts the answer; failures reject with an `Error` carrying a stable `code`.

use std::rc::Rc;

use js_sys::{JsString, Promise, Uint8Array};
use serde::{Deserialize, Serialize};
use tracker_offline_core::{
    download::{DownloadOptions, Progress},
    engine::{Engine as CoreEngine, EngineConfig},
    fetch_plan::LIBRARY_REQUEST_TIMEOUT_MS,
    flush::{FlushReport, FlushScope},
    kdf::DEFAULT_ITERATIONS,
    vault::VaultPolicy,
    CoreError,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use zeroize::{Zeroize, Zeroizing};

use crate::{
    error::to_js_error,
    idb::IdbStore,
    platform::{now_ms, FetchHttp, WebCryptoPbkdf2, WebRandom},
};

type BrowserEngine = CoreEngine<IdbStore, WebCryptoPbkdf2, WebRandom, FetchHttp>;

/// Options of `Engine.open`, as a JS object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenOptions {
    /// Absolute URL of the DHIS2 Web API (the JS layer resolves relative ones).
    api_base: String,
    /// IndexedDB database name; defaults to one derived from `api_base`.
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    pbkdf2_iterations: Option<u32>,
    #[serde(default)]
    lockout_free_attempts: Option<u32>,
    #[serde(default)]
    lockout_base_ms: Option<u64>,
    #[serde(default)]
    max_offline_days: Option<u64>,
    #[serde(default)]
    request_timeout_ms: Option<u32>,
}

/// The IndexedDB name of the vault of one DHIS2 server.
pub fn database_name(api_base: &str) -> String {
    format!("tracker-offline:{}", api_base.trim_end_matches('/'))
}

fn serializer() -> serde_wasm_bindgen::Serializer {
    serde_wasm_bindgen::Serializer::json_compatible()
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value.serialize(&serializer()).map_err(|e| to_js_error(&CoreError::BadInput(e.to_string())))
}

/// A plain value of the core (strings, numbers, booleans: nothing that can fail to convert) as
/// JS. Without a `Result`, wasm-bindgen needs no return shim for the function.
fn plain_js<T: Serialize>(value: &T) -> JsValue {
    value.serialize(&serializer()).unwrap_or(JsValue::UNDEFINED)
}

fn reject(error: CoreError) -> JsValue {
    to_js_error(&error)
}

/// The engine of one vault, shared by the page and the service worker.
#[wasm_bindgen]
pub struct Engine {
    inner: Rc<BrowserEngine>,
}

#[wasm_bindgen]
impl Engine {
    /// Opens the vault database for `options.apiBase` (creating it if needed). Locked until a
    /// login or a handed-over key.
    #[wasm_bindgen(js_name = open)]
    pub async fn open(options: JsValue) -> Result<Engine, JsValue> {
        let options: OpenOptions = serde_wasm_bindgen::from_value(options)
            .map_err(|e| reject(CoreError::BadInput(format!("options: {e}"))))?;
        let defaults = VaultPolicy::default();
        let policy = VaultPolicy {
            iterations: options.pbkdf2_iterations.unwrap_or(DEFAULT_ITERATIONS),
            free_attempts: options.lockout_free_attempts.unwrap_or(defaults.free_attempts),
            lockout_base_ms: options.lockout_base_ms.unwrap_or(defaults.lockout_base_ms),
            max_offline_age_ms: options
                .max_offline_days
                .map(|d| d.saturating_mul(24 * 60 * 60 * 1000))
                .unwrap_or(defaults.max_offline_age_ms),
            ..defaults
        };
        if policy.iterations < tracker_offline_core::kdf::MIN_ITERATIONS {
            return Err(reject(CoreError::BadInput("pbkdf2Iterations is below the minimum of 1000".into())));
        }
        let config = EngineConfig::new(&options.api_base, policy).map_err(reject)?;
        let database = options.database.unwrap_or_else(|| database_name(&config.api_base));
        let store = IdbStore::open(&database).await.map_err(reject)?;
        let http = FetchHttp { timeout_ms: options.request_timeout_ms.unwrap_or(LIBRARY_REQUEST_TIMEOUT_MS) };
        let inner = CoreEngine::new(config, store, WebCryptoPbkdf2, WebRandom, http);
        Ok(Engine { inner: Rc::new(inner) })
    }

    /// Logs in (server first, local register when unreachable). Resolves with
    /// `{ username, mode, profile, handover }`. The password is read from the JS string straight
    /// into memory that is zeroized after the login (see [`password_from_js`]).
    pub fn login(&self, username: String, password: JsString) -> Promise {
        let inner = self.inner.clone();
        let password = password.is_string().then(|| password_from_js(&password));
        future_to_promise(async move {
            let password =
                password.ok_or_else(|| reject(CoreError::BadInput("the password is not a string".into())))?;
            let outcome = inner.login(&username, &password, now_ms()).await.map_err(reject)?;
            to_js(&outcome)
        })
    }

    /// Logs out: the data key, the keys derived from it and the password are zeroized, and so
    /// is the stack space below this call, where copies made by the crypto on the way may lie.
    pub fn logout(&self) {
        self.inner.logout();
        scrub_stack();
    }

    /// `{ online, user, locked, pending, failed, lastSyncAt, registeredUsers }`.
    pub fn status(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let status = inner.status().await.map_err(reject)?;
            to_js(&status)
        })
    }

    /// Downloads (or refreshes) the clinic copy. `options`: `{ orgUnits?, programs?,
    /// pageSize?, full? }`; `on_progress` is called with `{ done, total }` after every page.
    /// Resolves with the report `{ trackedEntities, deleted, keptLocal, pages, incremental,
    /// resumed, records }`.
    pub fn download(&self, options: JsValue, on_progress: Option<js_sys::Function>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let options: DownloadOptions = if options.is_undefined() || options.is_null() {
                DownloadOptions::default()
            } else {
                serde_wasm_bindgen::from_value(options)
                    .map_err(|e| reject(CoreError::BadInput(format!("download options: {e}"))))?
            };
            let mut report_progress = |p: Progress| {
                if let (Some(f), Ok(v)) = (&on_progress, to_js(&p)) {
                    let _ = f.call1(&JsValue::NULL, &v);
                }
            };
            let report = inner.download(options, now_ms(), &mut report_progress).await.map_err(reject)?;
            to_js(&report)
        })
    }

    /// How to answer a read of this vault ([`tracker_offline_core::fetch_plan::ReadPlan`]):
    /// `'network-only'` (a credential check: `has_authorization`), `'network-first'` or
    /// `'local'` (the offline fast path).
    #[wasm_bindgen(js_name = planRead)]
    pub fn plan_read(&self, has_authorization: bool) -> JsValue {
        plain_js(&self.inner.plan_read(has_authorization, now_ms()))
    }

    /// Records what the network did with a request sent on a plan (`status` undefined: no
    /// answer or timed out) and says what to do with the answer: `{ useAnswer, keepCopy }`.
    #[wasm_bindgen(js_name = afterNetwork)]
    pub fn after_network(&self, status: Option<u16>, retry_after: Option<String>, redirected: bool) -> JsValue {
        plain_js(&self.inner.after_network(status, retry_after.as_deref(), redirected, now_ms()))
    }

    /// The local answer to a read the server did not answer (from the local copy, the sealed
    /// cache, or a WebMessage saying why not): `{ status, headers, body }`. Never rejects.
    #[wasm_bindgen(js_name = answerReadLocally)]
    pub fn answer_read_locally(&self, method: String, url: String, request_body: Vec<u8>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move { response_to_js(&inner.answer_read_locally(&method, &url, &request_body).await) })
    }

    /// Keeps an online answer to a read sealed (per user where the answer depends on the
    /// user). Resolves with whether it was kept.
    #[wasm_bindgen(js_name = cacheRead)]
    pub fn cache_read(
        &self,
        method: String,
        url: String,
        request_body: Vec<u8>,
        status: u16,
        content_type: String,
        body: Vec<u8>,
    ) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let kept =
                inner.cache_read(&method, &url, &request_body, status, &content_type, &body).await.map_err(reject)?;
            Ok(JsValue::from_bool(kept))
        })
    }

    /// Whether an answer to the app's request means the server lost its session (401, or a
    /// redirect to the login page; `redirected_to`: the final URL of a redirected answer).
    #[wasm_bindgen(js_name = sessionLost)]
    pub fn session_lost(&self, status: u16, redirected_to: Option<String>) -> bool {
        tracker_offline_core::engine::session_lost(status, redirected_to.as_deref())
    }

    /// Opens a new DHIS2 session in the browser for the logged-in user (after the server lost
    /// it); resolves with whether the server accepted it.
    #[wasm_bindgen(js_name = renewSession)]
    pub fn renew_session(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move { Ok(JsValue::from_bool(inner.renew_session().await)) })
    }

    /// Sets how many server errors (HTTP 500) one record may get before its entry is moved
    /// aside as a failure. Throws `BAD_INPUT` below 1.
    #[wasm_bindgen(js_name = setServerErrorLimit)]
    pub fn set_server_error_limit(&self, limit: u32) -> Result<(), JsValue> {
        self.inner.set_server_error_limit(limit).map_err(reject)
    }

    /// How to handle a write of the app to this vault
    /// ([`tracker_offline_core::fetch_plan::WritePlan`]): resolves with `{ kind: 'send-as-is',
    /// answer }` (locked: `answer` when the server cannot be reached), `{ kind: 'refuse',
    /// answer }`, `{ kind: 'send', prepared }` or `{ kind: 'queue', prepared }`. Never rejects.
    #[wasm_bindgen(js_name = planWrite)]
    pub fn plan_write(&self, method: String, url: String, content_type: String, body: Vec<u8>) -> Promise {
        use tracker_offline_core::fetch_plan::WritePlan;
        let inner = self.inner.clone();
        future_to_promise(async move {
            let plan = inner.plan_write(&method, &url, &content_type, &body, now_ms()).await;
            let out = js_sys::Object::new();
            let (kind, payload) = match plan {
                WritePlan::SendAsIs { if_unreachable } => ("send-as-is", ("answer", response_to_js(&if_unreachable)?)),
                WritePlan::Refuse { answer } => ("refuse", ("answer", response_to_js(&answer)?)),
                WritePlan::Send(inner) => ("send", ("prepared", PreparedRequest { inner }.into())),
                WritePlan::Queue(inner) => ("queue", ("prepared", PreparedRequest { inner }.into())),
            };
            js_sys::Reflect::set(&out, &"kind".into(), &kind.into())?;
            js_sys::Reflect::set(&out, &payload.0.into(), &payload.1)?;
            Ok(out.into())
        })
    }

    /// Queues a prepared write (local effect + outbox entry in one transaction) and resolves
    /// with `{ queued, answer }`: `answer` (`{ status, headers, body }`) is the one the app
    /// expects, or a WebMessage with the error's code when it could not be queued (`queued`
    /// false, nothing written). Never rejects.
    #[wasm_bindgen(js_name = captureWrite)]
    pub fn capture_write(&self, prepared: &PreparedRequest) -> Promise {
        let inner = self.inner.clone();
        let prepared = prepared.inner.clone();
        future_to_promise(async move {
            let (queued, answer) = inner.capture_answer(&prepared, now_ms()).await;
            let out = js_sys::Object::new();
            js_sys::Reflect::set(&out, &"queued".into(), &JsValue::from_bool(queued))?;
            js_sys::Reflect::set(&out, &"answer".into(), &response_to_js(&answer)?)?;
            Ok(out.into())
        })
    }

    /// After the server answered a write sent straight through: the same effect locally when
    /// the answer (`status`, `content_type`, `body` as the server sent them) accepts it.
    /// Resolves with whether it was recorded.
    #[wasm_bindgen(js_name = recordOnlineWrite)]
    pub fn record_online_write(
        &self,
        prepared: &PreparedRequest,
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    ) -> Promise {
        let inner = self.inner.clone();
        let prepared = prepared.inner.clone();
        let headers = content_type.map(|c| vec![("content-type".to_string(), c)]).unwrap_or_default();
        let response = tracker_offline_core::http::HttpResponse { status, headers, body };
        future_to_promise(async move {
            let recorded = inner.record_online_write(&prepared, &response, now_ms()).await.map_err(reject)?;
            Ok(JsValue::from_bool(recorded))
        })
    }

    /// What flushes do with a field changed here and on the server: "device-wins" (default:
    /// the device's value is sent, the server's kept in `conflicts()`) or "hold" (the field
    /// waits for `resolveConflict`, the rest flows).
    #[wasm_bindgen(js_name = setConflictPolicy)]
    pub fn set_conflict_policy(&self, policy: String) -> Result<(), JsValue> {
        let policy = tracker_offline_core::merge::ConflictPolicy::parse(&policy).map_err(reject)?;
        self.inner.set_conflict_policy(policy);
        Ok(())
    }

    /// Sends pending entries now, the nurse's "send now" (`scope`: "all" or "author"): it skips
    /// the device's backoff but not the server's `Retry-After`. Resolves with `{ sent, failed,
    /// remaining, requests, stopped, waitingFor, retryAfterMs, nextTryInMs, waitsForServer }`;
    /// `on_progress` gets the same after each step.
    pub fn flush(&self, scope: Option<String>, on_progress: Option<js_sys::Function>) -> Promise {
        self.flush_with(scope, on_progress, false)
    }

    /// The flush of an automatic trigger (a capture, a retry timer, `online`, Background Sync,
    /// a login): while the device backs off it sends nothing and resolves with
    /// `stopped: 'BACKING_OFF'` and `nextTryInMs`; otherwise as `flush`.
    #[wasm_bindgen(js_name = flushIfDue)]
    pub fn flush_if_due(&self, scope: Option<String>, on_progress: Option<js_sys::Function>) -> Promise {
        self.flush_with(scope, on_progress, true)
    }

    /// The browser says the network is back (`online`, Background Sync): a backoff caused by
    /// no answers at all ends; one the server asked for (429/5xx, `Retry-After`) stays. Call it
    /// before the trigger's `flushIfDue`.
    #[wasm_bindgen(js_name = networkBack)]
    pub fn network_back(&self) {
        self.inner.network_back();
    }

    fn flush_with(&self, scope: Option<String>, on_progress: Option<js_sys::Function>, if_due: bool) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let scope = FlushScope::parse(scope.as_deref()).map_err(reject)?;
            let mut report_progress = |r: &FlushReport| {
                if let (Some(f), Ok(v)) = (&on_progress, to_js(&ReportedFlush::of(r))) {
                    let _ = f.call1(&JsValue::NULL, &v);
                }
            };
            let report = if if_due {
                inner.flush_if_due(scope, now_ms(), &mut report_progress).await
            } else {
                inner.flush(scope, now_ms(), &mut report_progress).await
            };
            to_js(&ReportedFlush::of(&report.map_err(reject)?))
        })
    }

    /// Failed entries: `[{ id, author, summary, records, reasons, createdAtMs, failedAtMs }]`.
    pub fn failures(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move { to_js(&inner.failures().await.map_err(reject)?) })
    }

    /// Fields changed on the device and, meanwhile, on the server: `[{ id, kind, record, tei,
    /// field, base, server, device, author, changedAtMs, foundAtMs, serverUpdated }]`.
    pub fn conflicts(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move { to_js(&inner.conflicts().await.map_err(reject)?) })
    }

    /// Resolves a conflict: `keep` is "device" (what was sent stays) or "server" (the server's
    /// value is put back and queued). Resolves with the conflict.
    #[wasm_bindgen(js_name = resolveConflict)]
    pub fn resolve_conflict(&self, id: String, keep: String) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let keep = tracker_offline_core::conflicts::Keep::parse(&keep).map_err(reject)?;
            to_js(&inner.resolve_conflict(&id, keep, now_ms()).await.map_err(reject)?)
        })
    }

    /// Puts a failed entry back in line.
    pub fn retry(&self, id: String) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            inner.retry(&id).await.map_err(reject)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Drops an entry for good; resolves with the dropped entry (for the log).
    pub fn discard(&self, id: String) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move { to_js(&inner.discard(&id).await.map_err(reject)?) })
    }

    /// Removes a user from this device's register and rotates the data key: what she kept of
    /// this device opens nothing written afterwards; her colleagues' next logins open the new
    /// key. Resolves with `{ username, usersKept, usersToLogInOnlineAgain, valuesResealed,
    /// unreadableValuesDropped }`.
    #[wasm_bindgen(js_name = removeUser)]
    pub fn remove_user(&self, username: String) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move { to_js(&inner.remove_user(&username).await.map_err(reject)?) })
    }

    /// Puts the data key in escrow on the server's dataStore, shared read-only with
    /// `{ users: [uid], userGroups: [uid] }`, so a colleague's first login on this device can
    /// join the vault while nobody is logged in. Rejects with `ESCROW_UNSAFE` on servers that
    /// do not enforce dataStore read sharing.
    #[wasm_bindgen(js_name = enableEscrow)]
    pub fn enable_escrow(&self, sharing: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let sharing: tracker_offline_core::escrow::EscrowSharing = serde_wasm_bindgen::from_value(sharing)
                .map_err(|e| reject(CoreError::BadInput(format!("escrow sharing: {e}"))))?;
            inner.enable_escrow(&sharing).await.map_err(reject)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// True while a key is in memory.
    #[wasm_bindgen(getter)]
    pub fn unlocked(&self) -> bool {
        self.inner.vault().is_unlocked()
    }
}

/// Reads a JS string into a buffer reserved at its largest UTF-8 size, so it never moves
/// (wasm-bindgen's own `String` argument is written, then grown and moved for any non-ASCII
/// character, leaving the first copy in freed memory), and zeroized on drop. The JS string
/// itself stays in the JS heap, out of reach.
fn password_from_js(text: &JsString) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(text.length() as usize * 3));
    for c in char::decode_utf16(text.iter()) {
        out.push(c.unwrap_or(char::REPLACEMENT_CHARACTER));
    }
    out
}

/// Zeroizes `STACK_SCRUB_BYTES` of the stack below the caller. The wasm stack is linear memory:
/// what a function left in its frame (an HMAC or PBKDF2 block holding a key, a key moved by
/// value, the AES key schedule before it was boxed) stays there after it returns, until
/// another call happens to overwrite it. Called at logout, near the top of the stack.
#[inline(never)]
fn scrub_stack() {
    let mut area = [0u8; STACK_SCRUB_BYTES];
    area.zeroize();
    std::hint::black_box(&area);
}

/// How much of the stack [`scrub_stack`] wipes (the wasm stack is 1 MiB).
const STACK_SCRUB_BYTES: usize = 256 * 1024;

/// A flush report as JS gets it: the core's report and whether its entries wait for the
/// server (`waitsForServer`: a trigger that can come again later, Background Sync, should).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportedFlush<'a> {
    #[serde(flatten)]
    report: &'a FlushReport,
    waits_for_server: bool,
}

impl<'a> ReportedFlush<'a> {
    fn of(report: &'a FlushReport) -> Self {
        Self { report, waits_for_server: report.waits_for_server() }
    }
}

/// `{ status, headers: [[k, v]], body: Uint8Array }` for building a `Response`.
fn response_to_js(response: &tracker_offline_core::http::HttpResponse) -> Result<JsValue, JsValue> {
    let out = js_sys::Object::new();
    let headers = js_sys::Array::new();
    for (k, v) in &response.headers {
        headers.push(&js_sys::Array::of2(&k.into(), &v.into()));
    }
    js_sys::Reflect::set(&out, &"status".into(), &JsValue::from(response.status))?;
    js_sys::Reflect::set(&out, &"headers".into(), &headers)?;
    js_sys::Reflect::set(&out, &"body".into(), &Uint8Array::from(response.body.as_slice()))?;
    Ok(out.into())
}

/// A write understood by the core, with client UIDs added; pass it back to `captureWrite` or
/// `recordOnlineWrite`.
#[wasm_bindgen]
pub struct PreparedRequest {
    inner: tracker_offline_core::writes::PreparedWrite,
}

#[wasm_bindgen]
impl PreparedRequest {
    /// The body to send (the app's, with UIDs added to creates).
    #[wasm_bindgen(getter)]
    pub fn body(&self) -> Uint8Array {
        Uint8Array::from(self.inner.body.as_slice())
    }

    /// Names the app window that made the write and the windows open now (client ids), so a
    /// value another open window saved and this one replaces is kept as a conflict.
    #[wasm_bindgen(js_name = fromWindow)]
    pub fn from_window(&mut self, id: String, open: Vec<String>) {
        self.inner.window = Some(tracker_offline_core::merge::WriteWindow { id, open });
    }
}

/// Whose a request of the app is, for a worker of `worker_origin` that knows the vaults of
/// `api_bases`: `{ kind: 'browser' | 'network' | 'shell' }` or `{ kind: 'read' | 'write',
/// apiBase }` ([`tracker_offline_core::fetch_plan::route`]).
#[wasm_bindgen(js_name = routeRequest)]
pub fn route_request(method: &str, url: &str, worker_origin: &str, api_bases: Vec<String>) -> JsValue {
    plain_js(&tracker_offline_core::fetch_plan::route(method, url, worker_origin, &api_bases))
}

/// Whether `candidate` is an API base a worker of `worker_origin` serves (an absolute URL of
/// that origin ending in `/api`, after an optional context path).
#[wasm_bindgen(js_name = isApiBase)]
pub fn is_api_base(candidate: &str, worker_origin: &str) -> bool {
    tracker_offline_core::fetch_plan::is_api_base(candidate, worker_origin)
}

/// Whether the answer to a request of the app shell is kept for offline loads (`same_origin`:
/// the answer's type is `basic`).
#[wasm_bindgen(js_name = keepsShellCopy)]
pub fn keeps_shell_copy(
    url: &str,
    worker_origin: &str,
    api_bases: Vec<String>,
    status: u16,
    redirected: bool,
    same_origin: bool,
) -> bool {
    tracker_offline_core::fetch_plan::keeps_shell_copy(url, worker_origin, &api_bases, status, redirected, same_origin)
}

/// Checks a message a page sent the worker (`type`): throws `BAD_INPUT` for a message the
/// worker does not take and `VAULT_LOCKED` for one that needs a session while `unlocked` is
/// false. Returns whether the message names a vault (`apiBase`).
#[wasm_bindgen(js_name = checkWorkerMessage)]
pub fn check_worker_message(name: &str, unlocked: bool) -> Result<bool, JsValue> {
    let message = tracker_offline_core::worker_protocol::check_worker_message(name, unlocked).map_err(reject)?;
    Ok(message.names_vault)
}

/// Checks the flush scope an app configured (`all`, `author`, or undefined for `all`): throws
/// `BAD_INPUT` for any other.
#[wasm_bindgen(js_name = checkFlushScope)]
pub fn check_flush_scope(scope: Option<String>) -> Result<(), JsValue> {
    FlushScope::parse(scope.as_deref()).map(|_| ()).map_err(reject)
}

/// How long a page waits for the worker's answer to the message `type`, in ms.
#[wasm_bindgen(js_name = workerAnswerWithinMs)]
pub fn worker_answer_within_ms(name: &str) -> u32 {
    tracker_offline_core::worker_protocol::answer_within_ms(name)
}

/// How long the worker waits for the server on a request of the app, in ms.
#[wasm_bindgen(js_name = appRequestTimeoutMs)]
pub fn app_request_timeout_ms() -> u32 {
    tracker_offline_core::fetch_plan::APP_REQUEST_TIMEOUT_MS
}

/// Milliseconds a trigger that fires on every device at once (`online`, an online login) waits
/// before its flush: uniformly random up to 10 s, so devices never send in lockstep.
#[wasm_bindgen(js_name = triggerDelayMs)]
pub fn trigger_delay_ms() -> f64 {
    tracker_offline_core::backoff::trigger_delay_ms(js_sys::Math::random()) as f64
}
