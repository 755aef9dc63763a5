//! The engine: what the JS API calls. It decides between online and offline login (server
//! first, register when the server cannot be reached), and reports status. Platform parts come
//! in through the [`KvStore`], [`PasswordKdf`], [`HttpClient`] and [`RandomSource`] traits.

use serde::Serialize;

use crate::{
    error::{CoreError, Result},
    http::{HttpClient, HttpRequest, HttpResponse},
    kdf::PasswordKdf,
    metadata::ClinicMetadata,
    profile::{UserProfile, ME_FIELDS},
    random::RandomSource,
    scope::UserScope,
    store::{KvStore, StoreName, WriteBatch},
    vault::{validate_credentials, validate_username, LoginOutcome, SessionInfo, Vault, VaultPolicy},
};

/// Settings of an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Base URL of the DHIS2 Web API, e.g. `/api` or `https://host/dhis/api`.
    pub api_base: String,
    /// Register rules.
    pub policy: VaultPolicy,
}

impl EngineConfig {
    /// Checks and normalises the configuration (no trailing slash on `api_base`).
    pub fn new(api_base: &str, policy: VaultPolicy) -> Result<Self> {
        let api_base = api_base.trim().trim_end_matches('/').to_string();
        if api_base.is_empty() {
            return Err(CoreError::BadInput("apiBase is empty".into()));
        }
        if api_base.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CoreError::BadInput("apiBase contains whitespace".into()));
        }
        Ok(Self { api_base, policy })
    }
}

/// The answer of `status()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Whether the last contact with the server succeeded (None before any contact).
    pub online: Option<bool>,
    /// Who is logged in.
    pub user: Option<SessionInfo>,
    /// True when no key is in memory.
    pub locked: bool,
    /// Outbox entries waiting to be sent.
    pub pending: u64,
    /// Outbox entries the server refused, kept for the user.
    pub failed: u64,
    /// Pending entries per author.
    pub pending_by_author: std::collections::BTreeMap<String, u64>,
    /// Failed entries per author.
    pub failed_by_author: std::collections::BTreeMap<String, u64>,
    /// Last successful flush (ms since epoch).
    pub last_sync_at: Option<i64>,
    /// Users registered on this device.
    pub registered_users: u64,
    /// Tracked entities in the local copy (0 while locked).
    pub records: u64,
    /// Last complete download (ms since epoch).
    pub last_download_at: Option<i64>,
    /// The server refused the logged-in user's password: nothing is sent until she logs in
    /// online again.
    pub auth_required: bool,
}

/// Record id (cache store, sealed) naming the user whose password the server refused.
pub const PASSWORD_REFUSED_ID: &str = "sync:password-refused";

/// How the server answered an online credential check.
#[derive(Debug)]
pub enum OnlineCheck {
    /// 200 with a profile.
    Accepted(UserProfile),
    /// 401: wrong password, disabled account.
    Refused,
    /// No usable answer: network error, 5xx, a redirect to a login page, HTML from a portal.
    Unreachable(String),
}

/// The `GET {api}/me` request that checks credentials (Basic auth, and the XHR header so
/// DHIS2 answers 401 instead of redirecting to its login page).
///
/// Sent without the browser's cookies (`opens_session: false`): DHIS2 does not check a Basic
/// password at all when the request carries a live session of the same username (Spring
/// Security's `BasicAuthenticationFilter.authenticationIsRequired`), so a 200 to a request
/// with cookies proves nothing about the password. The session the app uses is opened
/// afterwards by [`session_request`].
pub fn me_request(api_base: &str, username: &str, password: &str) -> HttpRequest {
    basic_me_request(api_base, username, password, ME_FIELDS, false)
}

/// The `GET {api}/me?fields=id` request, with the browser's cookies, that opens the DHIS2
/// session the app then uses, once [`me_request`] has verified the password. Its answer
/// proves nothing (see [`me_request`]) and is not used.
pub fn session_request(api_base: &str, username: &str, password: &str) -> HttpRequest {
    basic_me_request(api_base, username, password, "id", true)
}

/// [`me_request`] with cookies, for [`Engine::renew_session`]: opens a session for a user
/// already logged in (its answer is not a password check).
fn renew_request(api_base: &str, username: &str, password: &str) -> HttpRequest {
    basic_me_request(api_base, username, password, ME_FIELDS, true)
}

fn basic_me_request(api_base: &str, username: &str, password: &str, fields: &str, opens_session: bool) -> HttpRequest {
    HttpRequest {
        opens_session,
        method: "GET".into(),
        url: format!("{api_base}/me?fields={fields}"),
        headers: vec![
            crate::http::basic_authorization(username, password),
            ("X-Requested-With".into(), "XMLHttpRequest".into()),
            ("Accept".into(), "application/json".into()),
        ],
        body: None,
    }
}

/// Whether an answer to the app's request means the server no longer knows its session:
/// 401, or a redirect that ended on DHIS2's login page (`redirected_to`: the final URL when
/// the request was redirected).
pub fn session_lost(status: u16, redirected_to: Option<&str>) -> bool {
    let login_page = |url: &str| {
        let path = crate::params::Target::parse(url).path;
        path.ends_with("/login.action") || path.contains("/security/login")
    };
    status == 401 || redirected_to.is_some_and(login_page)
}

/// Interprets the answer to [`me_request`].
pub fn interpret_me_response(response: &HttpResponse, typed_username: &str) -> OnlineCheck {
    // An answer made on this device (service worker) proves nothing about the password.
    if response.header(crate::reads::LOCAL_HEADER.0).is_some() {
        return OnlineCheck::Unreachable("the answer came from the local copy, not the server".into());
    }
    match response.status {
        200 => match UserProfile::from_me_json(&response.body, typed_username) {
            Ok(profile) => OnlineCheck::Accepted(profile),
            Err(e) => OnlineCheck::Unreachable(format!("the server's /me answer is not usable ({e})")),
        },
        401 | 403 => OnlineCheck::Refused,
        status => OnlineCheck::Unreachable(format!("the server answered HTTP {status}")),
    }
}

/// The engine shared by the page and the service worker.
pub struct Engine<S, K, R, H> {
    pub(crate) config: EngineConfig,
    pub(crate) vault: Vault<S, K, R>,
    pub(crate) http: H,
    /// What this context knows of its contacts with the server.
    pub(crate) contact: crate::server_contact::ServerContact,
    /// What this context keeps of the outbox in memory.
    pub(crate) outbox: crate::outbox::OutboxBook,
    pub(crate) clinic: crate::clinic_copy::ClinicCopy,
    /// The one writer of the local copy and the outbox in this context: every read-modify-write
    /// of bundles or entries (capture, online write record, flush settle, download page,
    /// discard) holds it from its reads to its commit, so no change is written over another.
    /// Never held across a request to the server.
    pub(crate) writer: futures::lock::Mutex<()>,
    /// Held while an online answer is merged into what is known of the user's `me` or of
    /// metadata objects (a read-modify-write of one record that parallel reads would race).
    pub(crate) seen_merge: futures::lock::Mutex<()>,
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    /// An engine over the given platform parts; the vault starts locked.
    pub fn new(config: EngineConfig, store: S, kdf: K, rng: R, http: H) -> Self {
        let vault = Vault::new(store, kdf, rng, config.policy.clone());
        Self {
            config,
            vault,
            http,
            contact: Default::default(),
            outbox: Default::default(),
            clinic: Default::default(),
            writer: futures::lock::Mutex::new(()),
            seen_merge: futures::lock::Mutex::new(()),
        }
    }

    /// Sets how many server errors (HTTP 500) one record may get before its entry is moved
    /// aside as a failure (at least 1).
    pub fn set_server_error_limit(&self, limit: u32) -> Result<()> {
        if limit == 0 {
            return Err(CoreError::BadInput("serverErrorLimit must be at least 1".into()));
        }
        self.outbox.set_server_error_limit(limit);
        Ok(())
    }

    /// Sets what flushes do with a field changed on both sides (default: the device's value is
    /// sent and the server's kept in the conflict log).
    pub fn set_conflict_policy(&self, policy: crate::merge::ConflictPolicy) {
        self.outbox.set_conflict_policy(policy);
    }

    /// The vault.
    pub fn vault(&self) -> &Vault<S, K, R> {
        &self.vault
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub(crate) fn set_online(&self, online: bool) {
        self.contact.set_online(online);
    }

    /// Asks the server whether these credentials are valid.
    pub async fn check_online(&self, username: &str, password: &str) -> OnlineCheck {
        match self.http.send(me_request(&self.config.api_base, username, password)).await {
            Ok(response) => interpret_me_response(&response, username),
            Err(e) => OnlineCheck::Unreachable(e.to_string()),
        }
    }

    /// Logs in: the server first; if it cannot be reached, the local register. A refusal by
    /// the server is final (the register is not consulted).
    pub async fn login(&self, username: &str, password: &str, now_ms: i64) -> Result<LoginOutcome> {
        validate_credentials(username, password)?;
        // The KDF (WebCrypto's, off the thread) runs while the request is on the network.
        let (check, mut ahead) = futures::future::join(
            self.check_online(username, password),
            self.vault.derive_ahead(username, password, now_ms),
        )
        .await;
        match check {
            OnlineCheck::Accepted(profile) => {
                self.set_online(true);
                let canonical = profile.username.clone();
                let username_now = canonical.clone();
                if self.handover_outside_clinic(&canonical, &profile).await? {
                    return Err(CoreError::OutsideClinic(canonical));
                }
                let outcome = match self
                    .vault
                    .login_verified_online_ahead(&canonical, password, profile.clone(), now_ms, None, ahead.take())
                    .await
                {
                    // Nobody here to hand the key over: the server escrow, if the clinic keeps one.
                    Err(CoreError::HandoverRequired(_)) => {
                        match self.fetch_escrowed_key(&canonical, password).await.unwrap_or(None) {
                            // A key escrowed before a removal rotated the data key opens
                            // nothing here: as if there were no escrow.
                            Some(key) if !self.vault.is_this_vaults_key(&key).await? => {
                                Err(CoreError::HandoverRequired(canonical))
                            }
                            // The escrow lets in only whom a colleague's handover would.
                            Some(key) if self.clinic_not_covered(Some(&key), &profile).await? => {
                                Err(CoreError::OutsideClinic(canonical))
                            }
                            Some(key) => {
                                self.vault
                                    .login_verified_online_with(&canonical, password, profile, now_ms, Some(key))
                                    .await
                            }
                            None => Err(CoreError::HandoverRequired(canonical)),
                        }
                    }
                    other => other,
                };
                if outcome.is_ok() {
                    // A password the server accepts again: work may be sent with it.
                    self.clear_password_refused(&username_now).await?;
                    // The password is verified (without cookies); now the browser's session for
                    // the app. Its failure does not undo the login: where the service worker
                    // runs, the app's first request that finds no session renews it.
                    let _ = self.http.send(session_request(&self.config.api_base, &username_now, password)).await;
                }
                outcome
            }
            OnlineCheck::Refused => {
                self.set_online(true);
                // Refused without cookies, so it is the password itself: if it is the one the
                // register holds, it stops opening the vault offline. A storage failure here
                // does not change the answer she gets.
                let _ = self.vault.note_password_refused_ahead(username, password, ahead).await;
                Err(CoreError::BadCredentials)
            }
            OnlineCheck::Unreachable(_) => {
                self.set_online(false);
                self.vault.login_offline_ahead(username, password, now_ms, ahead).await
            }
        }
    }

    /// True when logging `username` in would hand her the open session's data key (she is new
    /// to this device) although her org units do not cover the clinic copied here.
    async fn handover_outside_clinic(&self, username: &str, profile: &UserProfile) -> Result<bool> {
        let Some(session) = self.vault.session_info() else { return Ok(false) };
        if session.username == username || self.vault.is_registered(username).await? {
            return Ok(false);
        }
        self.clinic_not_covered(None, profile).await
    }

    /// True when a clinic copy is stored here and `profile`'s org units do not cover it; read
    /// under `data_key` when given (no session is open), else under the session's.
    async fn clinic_not_covered(
        &self,
        data_key: Option<&crate::crypto::SecretKey>,
        profile: &UserProfile,
    ) -> Result<bool> {
        let bytes = match data_key {
            Some(key) => self.vault.get_record_under(key, StoreName::Cache, crate::clinic::METADATA_ID).await?,
            None => self.vault.get_record(StoreName::Cache, crate::clinic::METADATA_ID).await?,
        };
        let Some(bytes) = bytes else { return Ok(false) };
        let meta: ClinicMetadata =
            serde_json::from_slice(&bytes).map_err(|e| CoreError::StorageCorrupt(format!("clinic metadata: {e}")))?;
        Ok(!UserScope::of(profile).covers_clinic(&meta))
    }

    /// Opens a new DHIS2 session in the browser for the logged-in user (the server lost the
    /// previous one, e.g. it restarted while the clinic was offline), with the password held
    /// for this session. True when the server accepted it; the app's next request then
    /// carries the new session cookie.
    pub async fn renew_session(&self) -> bool {
        let (Some(info), Some(password)) = (self.vault.session_info(), self.vault.session_password()) else {
            return false;
        };
        if self.password_refused().await {
            return false; // never again with a password the server refused (account lockout)
        }
        match self.http.send(renew_request(&self.config.api_base, &info.username, &password)).await {
            Ok(response) => match interpret_me_response(&response, &info.username) {
                OnlineCheck::Accepted(_) => true,
                OnlineCheck::Refused => {
                    let _ = self.mark_password_refused().await;
                    false
                }
                OnlineCheck::Unreachable(_) => false,
            },
            Err(_) => false,
        }
    }

    /// True when the server refused the logged-in user's password (a 401 to a request made
    /// with it): nothing is sent with it again until she logs in online, so that retries never
    /// lock her account on the server (DHIS2 locks an account after repeated failed logins).
    pub async fn password_refused(&self) -> bool {
        let Some(info) = self.vault.session_info() else { return false };
        match self.vault.get_record(StoreName::Cache, PASSWORD_REFUSED_ID).await {
            Ok(Some(bytes)) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .is_some_and(|v| v.get("username").and_then(|u| u.as_str()) == Some(info.username.as_str())),
            _ => false,
        }
    }

    /// Remembers (sealed, across restarts of the worker) that the server refused the logged-in
    /// user's password.
    pub(crate) async fn mark_password_refused(&self) -> Result<()> {
        let Some(info) = self.vault.session_info() else { return Ok(()) };
        let bytes = serde_json::to_vec(&serde_json::json!({ "username": info.username }))
            .map_err(|e| CoreError::BadInput(e.to_string()))?;
        // Offline login stays open (unlike a refusal of her own online login): a background
        // 401 may be a lockout someone else's guesses caused, and nothing is sent meanwhile.
        self.vault.put_record(StoreName::Cache, PASSWORD_REFUSED_ID, &bytes).await
    }

    async fn clear_password_refused(&self, username: &str) -> Result<()> {
        let marked = match self.vault.get_record(StoreName::Cache, PASSWORD_REFUSED_ID).await? {
            Some(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .is_some_and(|v| v.get("username").and_then(|u| u.as_str()) == Some(username)),
            None => false,
        };
        if marked {
            let batch = self.vault.delete_into(WriteBatch::new(), StoreName::Cache, PASSWORD_REFUSED_ID)?;
            self.vault.commit(batch).await?;
        }
        Ok(())
    }

    /// Removes `username` from this device and rotates the data key
    /// ([`Vault::remove_user`]): a copy of her entry or of the storage from before opens
    /// nothing written after. Refused ([`CoreError::BadInput`], nothing written) while she has
    /// unsent requests only she can send (raw entries wait for their own author); her tracker
    /// changes stay queued and are sent by whoever syncs, under her name.
    pub async fn remove_user(&self, username: &str) -> Result<crate::vault::RemovalOutcome> {
        validate_username(username)?;
        let stranded = self
            .outbox_entries()
            .await?
            .iter()
            .filter(|e| e.author == username && matches!(e.payload, crate::outbox::EntryPayload::Raw { .. }))
            .count();
        if stranded > 0 {
            return Err(CoreError::UnsentWork { username: username.to_string(), count: stranded });
        }
        self.vault.remove_user(username).await
    }

    /// Logs out: keys and password are zeroized, the in-memory clinic index is dropped.
    pub fn logout(&self) {
        self.vault.lock();
        self.clinic.clear();
    }

    /// True if a request should try the network first (false during the fast path after a
    /// failure).
    pub fn should_try_network(&self, now_ms: i64) -> bool {
        self.contact.should_try_network(now_ms)
    }

    /// Records the outcome of a request made by the service worker: `status` is None for a
    /// network error or timeout. Returns whether the server counts as reachable.
    pub fn record_network(&self, status: Option<u16>, retry_after: Option<&str>, now_ms: i64) -> bool {
        let load = match status {
            None => crate::backoff::Load::Unreachable,
            Some(s) if crate::backoff::is_busy_status(s) => crate::backoff::Load::Busy {
                retry_after_ms: retry_after.and_then(|v| crate::backoff::retry_after_ms(v, now_ms)),
            },
            Some(_) => crate::backoff::Load::Answered,
        };
        self.record_load(load, now_ms)
    }

    /// Records how the server answered one of the engine's own requests.
    pub(crate) fn record_answer(&self, response: Option<&HttpResponse>, now_ms: i64) -> bool {
        self.record_load(crate::backoff::load_of(response, now_ms), now_ms)
    }

    fn record_load(&self, load: crate::backoff::Load, now_ms: i64) -> bool {
        let random = crate::random::unit_f64(self.vault.rng());
        self.contact.record(load, now_ms, random)
    }

    /// How long the server still asked to be left alone (`Retry-After`), if it did.
    pub fn busy_wait_ms(&self, now_ms: i64) -> Option<u64> {
        self.contact.busy_wait_ms(now_ms)
    }

    /// The browser says the network is back (`online`, Background Sync): see
    /// [`Connectivity::network_back`]. Call it before the trigger's [`Engine::flush_if_due`].
    pub fn network_back(&self) {
        self.contact.network_back();
    }

    /// How long automatic flushes still wait (the server's `Retry-After` or the device's
    /// backoff after contacts that did not get through); None: a flush may start now. See
    /// [`Engine::flush_if_due`].
    pub fn flush_wait_ms(&self, now_ms: i64) -> Option<u64> {
        self.contact.flush_wait_ms(now_ms)
    }

    /// Drops the in-memory clinic index so the next read reloads it from storage (another
    /// context changed the copy).
    pub fn invalidate_clinic(&self) {
        self.clinic.invalidate();
    }

    /// When the last flush that reached the server finished (ms since epoch), in this context.
    pub fn last_sync_at(&self) -> Option<i64> {
        self.contact.last_sync_at()
    }

    /// Whether the last contact with the server succeeded.
    pub fn last_known_online(&self) -> Option<bool> {
        self.contact.last_known_online()
    }

    /// The current status.
    pub async fn status(&self) -> Result<Status> {
        if self.vault.is_unlocked() {
            // A damaged copy must not hide the status; the error shows on the reads.
            let _ = self.ensure_clinic_loaded().await;
        }
        let online = self.contact.last_known_online();
        let counts = if self.vault.is_unlocked() {
            self.outbox_counts().await.unwrap_or_default()
        } else {
            // Locked: entries cannot be opened, only counted.
            crate::outbox::OutboxCounts {
                pending: self.vault.store().count(StoreName::Outbox).await?,
                ..Default::default()
            }
        };
        Ok(Status {
            online,
            user: self.vault.session_info(),
            locked: !self.vault.is_unlocked(),
            pending: counts.pending,
            failed: counts.failed,
            pending_by_author: counts.pending_by_author,
            failed_by_author: counts.failed_by_author,
            last_sync_at: self.last_sync_at(),
            registered_users: self.vault.registered_users().await?,
            records: self.record_count(),
            last_download_at: self.last_download_at().await,
            auth_required: self.password_refused().await,
        })
    }
}
