//! Online-then-offline login through the engine with a scripted server.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

use futures::{channel::oneshot, executor::block_on};
use support::*;
use tracker_offline_core::{
    crypto::SecretKey,
    engine::{Engine, EngineConfig},
    http::{HttpClient, HttpRequest, HttpResponse},
    kdf::{PasswordKdf, RustPbkdf2},
    random::OsRandom,
    store::{KvStore, MemoryStore, StoreName},
    vault::LoginMode,
    Result,
};

const ME_NURSE1: &str = r#"{"id":"xE7jOejl9FI","username":"nurse1","displayName":"Amal Haddad",
  "organisationUnits":[{"id":"DiszpKrYNg8","displayName":"Bani Naim Clinic"}]}"#;
const UNAUTHORIZED: &str =
    r#"{"httpStatus":"Unauthorized","httpStatusCode":401,"status":"ERROR","message":"Unauthorized"}"#;

/// An engine over a new store in which nurse1 logged in online at T0 (`http` accepting her password).
async fn nurse1_logged_in(http: &ScriptedHttp) -> TestEngine<'_> {
    let e = engine(&MemoryStore::new(), http);
    http.push(Answer::Status(200, ME_NURSE1));
    e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
    e
}

#[test]
fn online_login_sends_basic_auth_with_xhr_header_and_registers_user() {
    block_on(async {
        let store = MemoryStore::new();
        let http = ScriptedHttp::default();
        let e = engine(&store, &http);
        http.push(Answer::Status(200, ME_NURSE1));
        let out = e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        assert_eq!(out.mode, LoginMode::Online);
        assert_eq!(out.profile.display_name, "Amal Haddad");
        let req = http.requests.borrow()[0].clone();
        assert_eq!(req.method, "GET");
        assert!(req.url.starts_with("/api/me?fields="), "{}", req.url);
        let auth = req.headers.iter().find(|(k, _)| k == "Authorization").unwrap();
        assert_eq!(auth.1, "Basic bnVyc2UxOk51cnNlMSFjbGluaWM=");
        assert!(req.headers.iter().any(|(k, v)| k == "X-Requested-With" && v == "XMLHttpRequest"));
        // The password check goes without the browser's cookies (a live session of the same
        // user would answer it on DHIS2); once it passed, a second request opens the app's
        // session, with the same credentials.
        assert!(!req.opens_session, "the password check must not carry the session cookie");
        let session = http.requests.borrow()[1].clone();
        assert!(session.opens_session);
        assert_eq!((session.method.as_str(), session.url.as_str()), ("GET", "/api/me?fields=id"));
        assert_eq!(session.headers, req.headers);
        assert_eq!(http.requests.borrow().len(), 2);
        let status = e.status().await.unwrap();
        assert_eq!(status.online, Some(true));
        assert!(!status.locked);
        assert_eq!(status.registered_users, 1);
    });
}

#[test]
fn server_refusal_is_final_even_if_the_register_knows_the_old_password() {
    block_on(async {
        let http = ScriptedHttp::default();
        let e = nurse1_logged_in(&http).await;
        e.logout();
        http.push(Answer::Status(401, UNAUTHORIZED));
        assert_eq!(e.login("nurse1", "Nurse1!clinic", T0).await.unwrap_err().code(), "BAD_CREDENTIALS");
        assert!(e.status().await.unwrap().locked);
    });
}

#[test]
fn unreachable_server_falls_back_to_the_register() {
    block_on(async {
        let http = ScriptedHttp::default();
        let e = nurse1_logged_in(&http).await;
        for answer in [
            Answer::NetworkDown,
            Answer::Status(502, "Bad Gateway"),
            Answer::Status(200, "<html>captive portal</html>"),
            Answer::Status(302, ""),
        ] {
            e.logout();
            http.push(answer);
            let out = e.login("nurse1", "Nurse1!clinic", T0 + DAY).await.unwrap();
            assert_eq!(out.mode, LoginMode::Offline);
            assert_eq!(out.profile.display_name, "Amal Haddad");
            assert_eq!(e.status().await.unwrap().online, Some(false));
        }
        e.logout();
        http.push(Answer::NetworkDown);
        assert_eq!(e.login("stranger", "x1", T0).await.unwrap_err().code(), "UNKNOWN_USER_OFFLINE");
        http.push(Answer::NetworkDown);
        assert_eq!(e.login("nurse1", "wrong", T0).await.unwrap_err().code(), "BAD_CREDENTIALS");
    });
}

#[test]
fn an_answer_from_the_local_copy_never_counts_as_an_online_login() {
    let local = tracker_offline_core::http::HttpResponse {
        status: 200,
        headers: vec![("x-tracker-offline".into(), "cache".into())],
        body: ME_NURSE1.as_bytes().to_vec(),
    };
    assert!(matches!(
        tracker_offline_core::engine::interpret_me_response(&local, "nurse1"),
        tracker_offline_core::engine::OnlineCheck::Unreachable(_)
    ));
}

#[test]
fn bad_input_sends_no_request() {
    block_on(async {
        let store = MemoryStore::new();
        let http = ScriptedHttp::default();
        let e = engine(&store, &http);
        assert_eq!(e.login("", "x", T0).await.unwrap_err().code(), "BAD_INPUT");
        assert_eq!(e.login("nurse1", "", T0).await.unwrap_err().code(), "BAD_INPUT");
        assert!(http.requests.borrow().is_empty());
        assert!(tracker_offline_core::engine::EngineConfig::new("  ", fast_policy()).is_err());
    });
}

#[test]
fn a_lost_session_is_a_401_or_a_redirect_to_the_login_page() {
    use tracker_offline_core::engine::session_lost;
    assert!(session_lost(401, None));
    assert!(session_lost(200, Some("http://h/dhis-web-commons/security/login.action")));
    assert!(session_lost(200, Some("http://h/dhis/dhis-web-commons-security/login.action?x=1")));
    assert!(!session_lost(200, None));
    assert!(!session_lost(200, Some("http://h/api/me.json")));
    assert!(!session_lost(403, None));
}

/// A server that does what DHIS2 (Spring Security's `BasicAuthenticationFilter`) does: a
/// request that carries the browser's cookies (`opens_session`) while the browser holds a live
/// session of the Basic username is answered as that user whatever the password. Only nurse1
/// exists, with `Nurse1!clinic`.
#[derive(Default)]
struct SessionServer {
    /// The username of the session the browser's cookie holds.
    session: std::cell::RefCell<Option<String>>,
    down: std::cell::Cell<bool>,
    requests: std::cell::RefCell<Vec<tracker_offline_core::http::HttpRequest>>,
}

impl tracker_offline_core::http::HttpClient for &SessionServer {
    async fn send(
        &self,
        request: tracker_offline_core::http::HttpRequest,
    ) -> tracker_offline_core::Result<tracker_offline_core::http::HttpResponse> {
        use base64::Engine as _;
        self.requests.borrow_mut().push(request.clone());
        if self.down.get() {
            return Err(tracker_offline_core::CoreError::ServerUnreachable("Failed to fetch".into()));
        }
        let answer = |status: u16, body: &str| {
            Ok(tracker_offline_core::http::HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec() })
        };
        let basic = request
            .headers
            .iter()
            .find(|(k, _)| k == "Authorization")
            .and_then(|(_, v)| v.strip_prefix("Basic "))
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let Some((user, pass)) = basic.as_deref().and_then(|b| b.split_once(':')) else {
            return answer(401, UNAUTHORIZED);
        };
        let session_of_user = request.opens_session && self.session.borrow().as_deref() == Some(user);
        let verified = session_of_user || (user == "nurse1" && pass == "Nurse1!clinic");
        if !verified {
            return answer(401, UNAUTHORIZED);
        }
        if request.opens_session {
            *self.session.borrow_mut() = Some(user.to_owned());
        }
        if request.url.starts_with("/api/me?") {
            answer(200, ME_NURSE1)
        } else {
            answer(404, "{}")
        }
    }
}

#[test]
fn a_live_session_of_the_same_user_never_stands_in_for_her_password() {
    block_on(async {
        use tracker_offline_core::store::{KvStore, StoreName};
        let store = MemoryStore::new();
        let server = SessionServer::default();
        let e = tracker_offline_core::engine::Engine::new(
            tracker_offline_core::engine::EngineConfig::new("/api", fast_policy()).unwrap(),
            store.clone(),
            tracker_offline_core::kdf::RustPbkdf2,
            tracker_offline_core::random::OsRandom,
            &server,
        );
        let out = e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        assert_eq!(out.mode, LoginMode::Online);
        // The browser now holds her session (the app uses it).
        assert_eq!(server.session.borrow().as_deref(), Some("nurse1"));
        let register = store.list(StoreName::Users).await.unwrap();

        // "Switch user" to nurse1 with a wrong password, her session still open in the browser
        // and her keys still in memory: refused, and her register entry is left as it was.
        assert_eq!(e.login("nurse1", "attacker!", T0 + 1000).await.unwrap_err().code(), "BAD_CREDENTIALS");
        assert_eq!(store.list(StoreName::Users).await.unwrap(), register, "register entry re-wrapped");
        // The same after a logout (no key in memory to hand over).
        e.logout();
        assert_eq!(e.login("nurse1", "attacker!", T0 + 2000).await.unwrap_err().code(), "BAD_CREDENTIALS");
        assert_eq!(store.list(StoreName::Users).await.unwrap(), register, "register entry re-wrapped");

        // Offline, her own password still opens the register and the wrong one does not.
        e.logout();
        server.down.set(true);
        let out = e.login("nurse1", "Nurse1!clinic", T0 + 3000).await.unwrap();
        assert_eq!(out.mode, LoginMode::Offline);
        e.logout();
        assert_eq!(e.login("nurse1", "attacker!", T0 + 4000).await.unwrap_err().code(), "BAD_CREDENTIALS");
    });
}

#[test]
fn a_session_that_cannot_be_opened_does_not_fail_a_verified_login() {
    block_on(async {
        let store = MemoryStore::new();
        let http = ScriptedHttp::default();
        let e = engine(&store, &http);
        http.push(Answer::Status(200, ME_NURSE1));
        http.push(Answer::NetworkDown);
        let out = e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        assert_eq!(out.mode, LoginMode::Online);
        assert_eq!(http.requests.borrow().len(), 2);
        assert!(http.requests.borrow()[1].opens_session);
        assert_eq!(e.status().await.unwrap().online, Some(true));
        assert!(!e.status().await.unwrap().locked);
    });
}

/// A KDF that counts its derivations and tells whether the server had answered at each one.
#[derive(Clone, Default)]
struct WatchedKdf {
    derivations: Rc<Cell<u32>>,
    before_the_answer: Rc<Cell<u32>>,
    answered: Rc<Cell<bool>>,
}

impl PasswordKdf for WatchedKdf {
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<SecretKey> {
        self.derivations.set(self.derivations.get() + 1);
        if !self.answered.get() {
            self.before_the_answer.set(self.before_the_answer.get() + 1);
        }
        RustPbkdf2.pbkdf2_sha256(password, salt, iterations).await
    }
}

/// The scripted server, whose answer to the password check comes only once the test lets it
/// (a slow network), marking the KDF's `answered` then.
struct SlowServer {
    answers: ScriptedHttp,
    release: RefCell<Option<oneshot::Receiver<()>>>,
    answered: Rc<Cell<bool>>,
}

impl HttpClient for &SlowServer {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse> {
        let held = self.release.borrow_mut().take();
        if let Some(release) = held {
            let _ = release.await;
        }
        self.answered.set(true);
        (&self.answers).send(request).await
    }
}

#[test]
fn a_registered_user_s_password_is_derived_while_the_server_checks_it_and_only_once() {
    block_on(async {
        let store = MemoryStore::new();
        for (answer, mode) in
            [(Answer::NetworkDown, LoginMode::Offline), (Answer::Status(200, ME_NURSE1), LoginMode::Online)]
        {
            let kdf = WatchedKdf::default();
            let (release, held) = oneshot::channel();
            let server = SlowServer {
                answers: ScriptedHttp::default(),
                release: RefCell::new(Some(held)),
                answered: kdf.answered.clone(),
            };
            // Registered online first (nothing held for that login).
            if store.list(StoreName::Users).await.unwrap().is_empty() {
                let first = ScriptedHttp::default();
                first.push(Answer::Status(200, ME_NURSE1));
                engine(&store, &first).login("nurse1", "Nurse1!clinic", T0).await.unwrap();
            }
            server.answers.push(answer);
            server.answers.push(Answer::Status(200, ME_NURSE1)); // the session request, online
            let e = Engine::new(
                EngineConfig::new("/api", fast_policy()).unwrap(),
                store.clone(),
                kdf.clone(),
                OsRandom,
                &server,
            );
            let (out, ()) = futures::future::join(e.login("nurse1", "Nurse1!clinic", T0 + DAY), async {
                yield_once().await;
                release.send(()).unwrap();
            })
            .await;
            assert_eq!(out.unwrap().mode, mode);
            assert_eq!(kdf.before_the_answer.get(), 1, "{mode:?}: the KDF waited for the server");
            assert_eq!(kdf.derivations.get(), 1, "{mode:?}: the password was derived again");
        }
    });
}
