//! Authentication as DHIS2 2.38+ does it on `/api/**`.
//!
//! - `Authorization: Basic` is checked on every request; a valid login also opens a session
//!   and sets `JSESSIONID=<random>; Path=/; HttpOnly`.
//! - A valid `JSESSIONID` cookie authenticates. Sessions live in memory only, so they die
//!   with the process, as on a real server.
//! - Unauthenticated (`FormLoginBasicAuthenticationEntryPoint`): with
//!   `X-Requested-With: XMLHttpRequest` or an `Authorization: Basic` header → 401 WebMessage
//!   `Unauthorized`, never a `WWW-Authenticate` header; otherwise → 302 to the login page.
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
    db::{self, User},
    error::ApiError,
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

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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

/// `Ok(None)`: not authenticated.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<Authenticated>, ApiError> {
    let cookie_users: Vec<String> =
        session_cookies(headers).iter().filter_map(|id| state.sessions().lookup(id)).collect();
    match basic_credentials(headers) {
        BasicCredentials::Malformed => Ok(None),
        BasicCredentials::Present(username, password) => {
            let found = state.db().call(move |conn| Ok(db::user_by_username(conn, &username)?)).await?;
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
                    let new_session =
                        if cookie_users.contains(&user.uid) { None } else { Some(state.sessions().create(&user.uid)) };
                    Ok(Some(Authenticated { user, new_session }))
                }
                _ => Ok(None),
            }
        }
        BasicCredentials::Absent => {
            let Some(uid) = cookie_users.into_iter().next() else {
                return Ok(None);
            };
            let user = state.db().call(move |conn| Ok(db::user_by_uid(conn, &uid)?)).await?;
            match user {
                Some(user) if !user.disabled => Ok(Some(Authenticated { user, new_session: None })),
                _ => Ok(None),
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
        None => unauthenticated_response(req.headers()),
        Some(Authenticated { user, new_session }) => {
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
