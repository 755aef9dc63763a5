//! Authentication as DHIS2 2.38+ does it on `/api/**`.
//!
//! - `Authorization: Basic` is checked on every request, except the one case below; a valid
//!   login also opens a session and sets `JSESSIONID=<random>; Path=/; HttpOnly`.
//! - A valid `JSESSIONID` cookie authenticates. Sessions live in memory only, so they die
//!   with the process, as on a real server.
//! - A Basic header whose username is the username of the request's live session is NOT
//!   checked: the request is the session's user whatever the password. This is Spring
//!   Security's `BasicAuthenticationFilter` (the filter DHIS2 puts on `/api/**`): it only
//!   authenticates the header when `authenticationIsRequired(username)` is true, and that is
//!   false when the `Authentication` loaded from the session is authenticated and its
//!   `getName()` equals the Basic username. The filter then calls no provider, so neither the
//!   lock nor the password is looked at and no success or failure event is published (the
//!   lockout count is left as it was). A Basic header of another username is checked as
//!   usual. So on DHIS2 a 200 to a request sent with the browser's cookies is no proof of the
//!   password that came with it.
//! - Unauthenticated (`FormLoginBasicAuthenticationEntryPoint`): with
//!   `X-Requested-With: XMLHttpRequest` or an `Authorization: Basic` header → 401 WebMessage
//!   `Unauthorized`, never a `WWW-Authenticate` header; otherwise → 302 to the login page.
//!
//! - With the system setting `keyLockMultipleFailedLogins` on, failed Basic logins are counted
//!   per username and lock it for a while ([`LoginLockout`]): 401 WebMessage `Account locked`.
//!
//! Passwords are stored as PBKDF2-HMAC-SHA256 with a random salt, never in clear.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::{
    api::settings::lock_multiple_failed_logins,
    db::{self, User},
    error::{ApiError, WebMessage},
    state::AppState,
};

/// Where unauthenticated browser requests are redirected (DHIS2 ≤ 2.41 login page).
pub const LOGIN_PAGE: &str = "/dhis-web-commons/security/login.action";

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "JSESSIONID";

/// Idle time after which a session expires (DHIS2's default session timeout is one hour).
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// PBKDF2 iterations for stored passwords. Low on purpose: every Basic request verifies the
/// password, and this is a test server; the format stores the count so it can change.
const PBKDF2_ITERATIONS: u32 = 10_000;
const HASH_PREFIX: &str = "pbkdf2-sha256";
/// Checked against for unknown usernames, so they take as long as known ones.
const DUMMY_HASH: &str = "pbkdf2-sha256$10000$000102030405060708090a0b0c0d0e0f$\
                          0000000000000000000000000000000000000000000000000000000000000000";

/// Hashes a password for storage: `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    hash_with(password, &salt, PBKDF2_ITERATIONS)
}

fn hash_with(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt, iterations, &mut out);
    format!("{HASH_PREFIX}${iterations}${}${}", hex::encode(salt), hex::encode(out))
}

/// Checks a password against a stored hash in constant time. A malformed hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(HASH_PREFIX), Some(iter), Some(salt), Some(expected), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(iterations), Ok(salt)) = (iter.parse::<u32>(), hex::decode(salt)) else {
        return false;
    };
    if iterations == 0 {
        return false;
    }
    let computed = hash_with(password, &salt, iterations);
    let expected = format!("{HASH_PREFIX}${iterations}${}${expected}", hex::encode(&salt));
    computed.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// In-memory session store: session id → user UID.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

#[derive(Debug)]
struct Session {
    user_uid: String,
    last_seen: Instant,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for a user and returns its id (32 random hex digits, as Tomcat's).
    pub fn create(&self, user_uid: &str) -> String {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let id = hex::encode_upper(bytes);
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.last_seen) < SESSION_IDLE_TIMEOUT);
        map.insert(id.clone(), Session { user_uid: user_uid.to_owned(), last_seen: now });
        id
    }

    /// The user UID of a live session, refreshing its idle timer.
    pub fn lookup(&self, id: &str) -> Option<String> {
        let mut map = self.lock();
        let now = Instant::now();
        match map.get_mut(id) {
            Some(s) if now.duration_since(s.last_seen) < SESSION_IDLE_TIMEOUT => {
                s.last_seen = now;
                Some(s.user_uid.clone())
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Ends every session of a user (DHIS2's `invalidateUserSessions`).
    pub fn remove_user(&self, user_uid: &str) {
        self.lock().retain(|_, s| s.user_uid != user_uid);
    }

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Failed logins that lock a username (dhis2-core `UserService.LOGIN_MAX_FAILED_ATTEMPTS`, 4 in
/// 2.40–2.42; `DefaultSecurityService` in 2.40).
pub const LOGIN_MAX_FAILED_ATTEMPTS: u32 = 4;

/// How long failed logins are remembered after the last one, which is also how long a lock
/// lasts: dhis2-core keeps the counts in a cache built with `expireAfterWrite(15, MINUTES)`
/// (`DefaultCacheProvider.createUserFailedLoginAttemptCache`, 2.40–2.42).
pub const LOGIN_LOCKOUT: Duration = Duration::from_secs(15 * 60);

/// DHIS2's temporary lockout after failed logins, active while the system setting
/// `keyLockMultipleFailedLogins` is on (off by default). Modelled on dhis2-core 2.40–2.42:
///
/// - `DefaultUserService` (2.41, 2.42; `DefaultSecurityService` in 2.40): `registerFailedLogin`
///   adds one to the username's count, `registerSuccessfulLogin` forgets it, `isLocked` is
///   `count >= LOGIN_MAX_FAILED_ATTEMPTS`; all three do nothing (and `isLocked` is false)
///   while the setting is off.
/// - The count lives in a cache that expires 15 minutes after its last write, so failures are
///   counted as long as each comes within 15 minutes of the previous one, and a lock ends 15
///   minutes after the last attempt.
/// - `TwoFactorAuthenticationProvider.authenticate` checks `isLocked` before the password and
///   throws `LockedException`, so the right password is refused too; the failure event of
///   that exception reaches `AuthenticationListener.handleAuthenticationFailure`, which calls
///   `registerFailedLogin` again: every attempt while locked starts the 15 minutes again.
/// - `FormLoginBasicAuthenticationEntryPoint.commence` answers a `LockedException` on a Basic
///   or XHR request with 401 and the WebMessage `unauthorized("Account locked")`.
///
/// Counts are kept by username as sent (unknown usernames too, as DHIS2 keys the cache by the
/// name typed), in memory only, like DHIS2's local cache. The duration can be changed for
/// tests ([`LoginLockout::set_lockout`], `PUT /__sim/lockout`).
#[derive(Debug)]
pub struct LoginLockout {
    inner: Mutex<LockoutInner>,
}

#[derive(Debug)]
struct LockoutInner {
    lockout: Duration,
    failed: HashMap<String, FailedLogins>,
}

#[derive(Debug, Clone, Copy)]
struct FailedLogins {
    attempts: u32,
    last: Instant,
}

impl Default for LoginLockout {
    fn default() -> Self {
        Self { inner: Mutex::new(LockoutInner { lockout: LOGIN_LOCKOUT, failed: HashMap::new() }) }
    }
}

impl LoginLockout {
    fn lock(&self) -> std::sync::MutexGuard<'_, LockoutInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long failures are remembered after the last one (DHIS2: 15 minutes).
    pub fn lockout(&self) -> Duration {
        self.lock().lockout
    }

    /// Changes how long failures are remembered (for tests).
    pub fn set_lockout(&self, lockout: Duration) {
        self.lock().lockout = lockout;
    }

    /// Forgets every failed login (unlocks everyone), as a DHIS2 restart empties its cache.
    pub fn clear(&self) {
        self.lock().failed.clear();
    }

    /// The remembered failures of a username, if not expired.
    fn live(inner: &mut LockoutInner, username: &str, now: Instant) -> Option<FailedLogins> {
        let entry = *inner.failed.get(username)?;
        if now.saturating_duration_since(entry.last) < inner.lockout {
            Some(entry)
        } else {
            inner.failed.remove(username);
            None
        }
    }

    /// `isLocked`: at least [`LOGIN_MAX_FAILED_ATTEMPTS`] remembered failures.
    pub fn is_locked(&self, username: &str) -> bool {
        let mut inner = self.lock();
        Self::live(&mut inner, username, Instant::now()).is_some_and(|f| f.attempts >= LOGIN_MAX_FAILED_ATTEMPTS)
    }

    /// `registerFailedLogin`: one more failure, remembered from now.
    pub fn register_failed(&self, username: &str) {
        let mut inner = self.lock();
        let now = Instant::now();
        let attempts = Self::live(&mut inner, username, now).map_or(0, |f| f.attempts) + 1;
        inner.failed.insert(username.to_owned(), FailedLogins { attempts, last: now });
    }

    /// `registerSuccessfulLogin`: forgets the username's failures.
    pub fn register_success(&self, username: &str) {
        self.lock().failed.remove(username);
    }

    /// `GET /__sim/lockout`: `{"maxFailedAttempts", "lockoutMs", "failedLogins": {username:
    /// {"attempts", "locked", "expiresInMs"}}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut inner = self.lock();
        let now = Instant::now();
        let lockout = inner.lockout;
        inner.failed.retain(|_, f| now.saturating_duration_since(f.last) < lockout);
        let failed: serde_json::Map<String, serde_json::Value> = inner
            .failed
            .iter()
            .map(|(name, f)| {
                let left = lockout.saturating_sub(now.saturating_duration_since(f.last));
                (
                    name.clone(),
                    serde_json::json!({
                        "attempts": f.attempts,
                        "locked": f.attempts >= LOGIN_MAX_FAILED_ATTEMPTS,
                        "expiresInMs": u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "maxFailedAttempts": LOGIN_MAX_FAILED_ATTEMPTS,
            "lockoutMs": u64::try_from(lockout.as_millis()).unwrap_or(u64::MAX),
            "failedLogins": failed,
        })
    }
}

/// The answer to a Basic login of a locked username: 401 WebMessage `Account locked`
/// (`FormLoginBasicAuthenticationEntryPoint`, dhis2-core 2.40–2.42).
pub fn locked_response() -> Response {
    WebMessage::error(StatusCode::UNAUTHORIZED, "Account locked").into_response()
}

/// The authenticated user of a request, put there by [`require_auth`].
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<CurrentUser>().cloned().ok_or(ApiError::Unauthorized)
    }
}

/// What an `Authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
pub enum BasicCredentials {
    /// No `Authorization: Basic` header.
    Absent,
    /// A Basic header that does not decode to `user:password`.
    Malformed,
    /// Decoded username and password.
    Present(String, String),
}

/// Reads the `Authorization: Basic` header.
pub fn basic_credentials(headers: &HeaderMap) -> BasicCredentials {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return BasicCredentials::Absent;
    };
    let Ok(value) = value.to_str() else {
        return BasicCredentials::Malformed;
    };
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return BasicCredentials::Absent;
    }
    let Ok(decoded) = BASE64.decode(rest.trim()) else {
        return BasicCredentials::Malformed;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return BasicCredentials::Malformed;
    };
    match decoded.split_once(':') {
        Some((user, pass)) if !user.is_empty() => BasicCredentials::Present(user.to_owned(), pass.to_owned()),
        _ => BasicCredentials::Malformed,
    }
}

/// The `JSESSIONID` cookie values of a request (there may be several `Cookie` headers).
pub fn session_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name.trim() == SESSION_COOKIE).then(|| value.trim().trim_matches('"').to_owned())
        })
        .filter(|v| !v.is_empty())
        .collect()
}

/// Whether the unauthenticated answer is a 401 JSON rather than a redirect.
fn wants_401(headers: &HeaderMap) -> bool {
    let xhr = headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("XMLHttpRequest"));
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("Basic"));
    xhr || basic
}

/// The answer to an unauthenticated request to a protected endpoint.
pub fn unauthenticated_response(headers: &HeaderMap) -> Response {
    if wants_401(headers) {
        ApiError::Unauthorized.into_response()
    } else {
        let mut response = StatusCode::FOUND.into_response();
        response.headers_mut().insert(header::LOCATION, HeaderValue::from_static(LOGIN_PAGE));
        response
    }
}

/// A successful check of a request's credentials.
struct Authenticated {
    user: User,
    /// Set when a Basic login opened a session whose cookie must be issued.
    new_session: Option<String>,
}

/// What checking a request's credentials found.
enum Outcome {
    Authenticated(Box<Authenticated>),
    /// No valid credentials.
    Unauthenticated,
    /// A Basic login of a username locked by [`LoginLockout`].
    Locked,
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Outcome, ApiError> {
    let cookie_users: Vec<String> =
        session_cookies(headers).iter().filter_map(|id| state.sessions().lookup(id)).collect();
    match basic_credentials(headers) {
        BasicCredentials::Malformed => Ok(Outcome::Unauthenticated),
        BasicCredentials::Present(username, password) => {
            let name = username.clone();
            let (found, lockout_on) = state
                .db()
                .call(move |conn| Ok((db::user_by_username(conn, &name)?, lock_multiple_failed_logins(conn)?)))
                .await?;
            // Spring's `authenticationIsRequired` is false: the session's user, nothing checked,
            // nothing counted.
            if let Some(user) = found.as_ref().filter(|u| !u.disabled && cookie_users.contains(&u.uid)) {
                return Ok(Outcome::Authenticated(Box::new(Authenticated { user: user.clone(), new_session: None })));
            }
            let lockout = state.login_lockout();
            // Checked before the password, and counted as one more failure (see LoginLockout).
            if lockout_on && lockout.is_locked(&username) {
                lockout.register_failed(&username);
                return Ok(Outcome::Locked);
            }
            // The hash check is CPU work: keep it off the async threads and outside the db lock.
            let user = tokio::task::spawn_blocking(move || match found {
                Some(u) if verify_password(&password, &u.password_hash) => Some(u),
                Some(_) => None,
                None => {
                    // Spend the same time as for a known user.
                    let _ = verify_password(&password, DUMMY_HASH);
                    None
                }
            })
            .await?;
            match user {
                Some(user) if !user.disabled => {
                    if lockout_on {
                        lockout.register_success(&username);
                    }
                    let new_session = Some(state.sessions().create(&user.uid));
                    Ok(Outcome::Authenticated(Box::new(Authenticated { user, new_session })))
                }
                _ => {
                    // A wrong password, an unknown user or a disabled one: all failure events in DHIS2.
                    if lockout_on {
                        lockout.register_failed(&username);
                    }
                    Ok(Outcome::Unauthenticated)
                }
            }
        }
        BasicCredentials::Absent => {
            let Some(uid) = cookie_users.into_iter().next() else {
                return Ok(Outcome::Unauthenticated);
            };
            let user = state.db().call(move |conn| Ok(db::user_by_uid(conn, &uid)?)).await?;
            match user {
                Some(user) if !user.disabled => {
                    Ok(Outcome::Authenticated(Box::new(Authenticated { user, new_session: None })))
                }
                _ => Ok(Outcome::Unauthenticated),
            }
        }
    }
}

/// Middleware for protected routes: authenticates, stores [`CurrentUser`] in the request,
/// and sets the session cookie on the response when a Basic login opened a session.
pub async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let outcome = match authenticate(&state, req.headers()).await {
        Ok(outcome) => outcome,
        Err(e) => return e.into_response(),
    };
    match outcome {
        Outcome::Unauthenticated => unauthenticated_response(req.headers()),
        Outcome::Locked => locked_response(),
        Outcome::Authenticated(authenticated) => {
            let Authenticated { user, new_session } = *authenticated;
            req.extensions_mut().insert(CurrentUser(user.clone()));
            let mut response = next.run(req).await;
            // For the request log of `--faults` (outside this layer).
            response.extensions_mut().insert(CurrentUser(user));
            if let Some(id) = new_session {
                let cookie = format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly");
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip() {
        let h = hash_password("Nurse1!clinic");
        assert!(h.starts_with("pbkdf2-sha256$"));
        assert!(!h.contains("Nurse1!clinic"));
        assert!(verify_password("Nurse1!clinic", &h));
        assert!(!verify_password("nurse1!clinic", &h));
        assert_ne!(h, hash_password("Nurse1!clinic"), "salted");
    }

    #[test]
    fn malformed_hashes_never_match() {
        for bad in [
            "",
            "plain",
            "pbkdf2-sha256$0$00$00",
            "pbkdf2-sha256$x$00$00",
            "pbkdf2-sha256$10$zz$00",
            "pbkdf2-sha256$10$00$00$extra",
        ] {
            assert!(!verify_password("", bad), "{bad}");
        }
    }

    #[test]
    fn basic_header_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h), BasicCredentials::Absent);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic YWRtaW46ZGlzdHJpY3Q="));
        assert_eq!(basic_credentials(&h), BasicCredentials::Present("admin".into(), "district".into()));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_credentials(&h), BasicCredentials::Malformed);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic bm9jb2xvbg=="));
        assert_eq!(basic_credentials(&h), BasicCredentials::Malformed);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic"));
        assert_eq!(basic_credentials(&h), BasicCredentials::Malformed);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(basic_credentials(&h), BasicCredentials::Absent);
    }

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; JSESSIONID=ABC; b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("JSESSIONID=\"DEF\""));
        assert_eq!(session_cookies(&h), vec!["ABC".to_owned(), "DEF".to_owned()]);
    }

    #[test]
    fn four_failures_lock_until_the_lockout_passes_without_one() {
        let l = LoginLockout::default();
        assert_eq!(l.lockout(), Duration::from_secs(900));
        for _ in 0..3 {
            l.register_failed("u");
            assert!(!l.is_locked("u"));
        }
        l.register_failed("u");
        assert!(l.is_locked("u"));
        assert!(!l.is_locked("other"));
        l.register_success("u");
        assert!(!l.is_locked("u"));

        l.set_lockout(Duration::from_millis(30));
        for _ in 0..4 {
            l.register_failed("u");
        }
        assert!(l.is_locked("u"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!l.is_locked("u"), "expired");
        l.register_failed("u");
        assert!(!l.is_locked("u"), "counting starts again");
        l.clear();
        assert_eq!(l.to_json()["failedLogins"], serde_json::json!({}));
    }

    #[test]
    fn sessions_expire_and_are_removed() {
        let s = Sessions::default();
        let id = s.create("u1");
        assert_eq!(s.lookup(&id).as_deref(), Some("u1"));
        assert_eq!(s.lookup("nope"), None);
        s.remove(&id);
        assert_eq!(s.lookup(&id), None);
        assert!(s.is_empty());
    }
}
