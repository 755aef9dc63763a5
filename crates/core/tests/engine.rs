//! Online-then-offline login through the engine with a scripted server.

mod support;

use futures::executor::block_on;
use support::*;
use tracker_offline_core::{store::MemoryStore, vault::LoginMode};

const ME_NURSE1: &str = r#"{"id":"xE7jOejl9FI","username":"nurse1","displayName":"Amal Haddad",
  "organisationUnits":[{"id":"DiszpKrYNg8","displayName":"Bani Naim Clinic"}]}"#;
const UNAUTHORIZED: &str =
    r#"{"httpStatus":"Unauthorized","httpStatusCode":401,"status":"ERROR","message":"Unauthorized"}"#;

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
        let status = e.status().await.unwrap();
        assert_eq!(status.online, Some(true));
        assert!(!status.locked);
        assert_eq!(status.registered_users, 1);
    });
}

#[test]
fn server_refusal_is_final_even_if_the_register_knows_the_old_password() {
    block_on(async {
        let store = MemoryStore::new();
        let http = ScriptedHttp::default();
        let e = engine(&store, &http);
        http.push(Answer::Status(200, ME_NURSE1));
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        e.logout();
        http.push(Answer::Status(401, UNAUTHORIZED));
        assert_eq!(e.login("nurse1", "Nurse1!clinic", T0).await.unwrap_err().code(), "BAD_CREDENTIALS");
        assert!(e.status().await.unwrap().locked);
    });
}

#[test]
fn unreachable_server_falls_back_to_the_register() {
    block_on(async {
        let store = MemoryStore::new();
        let http = ScriptedHttp::default();
        let e = engine(&store, &http);
        http.push(Answer::Status(200, ME_NURSE1));
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
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
