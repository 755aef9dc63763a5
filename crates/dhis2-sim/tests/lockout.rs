//! DHIS2's temporary lockout after failed logins (system setting `keyLockMultipleFailedLogins`),
//! as dhis2-core 2.40–2.42 do it: 4 failed attempts, each within 15 minutes of the previous
//! one, lock the username; while locked every Basic login is refused with 401 `Account locked`
//! before the password is looked at, and counts as one more failure; 15 minutes without a
//! failure unlock it; a successful login forgets the failures. Off by default.

#![allow(clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::{
    body::Body,
    http::{Request, StatusCode},
    Router,
};
use common::*;
use dhis2_sim::seed::*;
use serde_json::{json, Value};

const SETTING: &str = "keyLockMultipleFailedLogins";
const UNAUTHORIZED: &str =
    r#"{"httpStatus":"Unauthorized","httpStatusCode":401,"status":"ERROR","message":"Unauthorized"}"#;
const LOCKED: &str =
    r#"{"httpStatus":"Unauthorized","httpStatusCode":401,"status":"ERROR","message":"Account locked"}"#;

fn sim_app(version: &str, faults: bool) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), version);
    config.faults.enabled = faults;
    (dhis2_sim::build_app(&config).expect("app"), dir)
}

/// `GET /api/me` with Basic credentials: status and body text.
async fn login(app: &Router, user: &str, pass: &str) -> (StatusCode, String) {
    let resp = send(app, get_as("/api/me", user, pass)).await;
    let status = resp.status();
    (status, String::from_utf8(body_bytes(resp).await).expect("utf8"))
}

async fn assert_login(app: &Router, user: &str, pass: &str, expected: StatusCode, body: Option<&str>) {
    let (status, text) = login(app, user, pass).await;
    assert_eq!(status, expected, "{user}: {text}");
    if let Some(body) = body {
        assert_eq!(text, body, "{user}");
    }
}

/// `POST /api/systemSettings/{key}?value=…` as `user`.
async fn set_setting(app: &Router, user: &str, pass: &str, key: &str, value: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(format!("/api/systemSettings/{key}?value={value}"))
        .header("authorization", basic(user, pass))
        .body(Body::empty())
        .expect("request");
    let resp = send(app, req).await;
    let status = resp.status();
    let bytes = body_bytes(resp).await;
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("json") })
}

async fn lock_on(app: &Router) {
    let (status, body) = set_setting(app, ADMIN_USERNAME, ADMIN_PASSWORD, SETTING, "true").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn off_by_default_nothing_locks() {
    let (app, _dir) = sim_app("2.40", false);
    let resp = send(&app, get_as(&format!("/api/systemSettings/{SETTING}"), NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    assert_eq!(body_json(resp).await, json!({SETTING: false}));
    for _ in 0..8 {
        assert_login(&app, NURSE1_USERNAME, "wrong", StatusCode::UNAUTHORIZED, Some(UNAUTHORIZED)).await;
    }
    assert_login(&app, NURSE1_USERNAME, NURSE1_PASSWORD, StatusCode::OK, None).await;
}

#[tokio::test]
async fn four_failures_lock_the_account_and_even_the_right_password_is_refused() {
    let (app, _dir) = sim_app("2.41", false);
    // A session opened before the lock stays valid (DHIS2 does not re-check a session).
    let resp = send(&app, get_as("/api/me", NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    let cookie = format!("JSESSIONID={}", session_cookie(&resp).expect("cookie"));

    let (status, body) = set_setting(&app, ADMIN_USERNAME, ADMIN_PASSWORD, SETTING, "true").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"httpStatus": "OK", "httpStatusCode": 200, "status": "OK",
               "message": "System setting 'keyLockMultipleFailedLogins' set to value 'true'."})
    );
    let resp =
        send(&app, get_as(&format!("/api/systemSettings?key={SETTING}"), NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    assert_eq!(body_json(resp).await, json!({SETTING: true}));

    // Five wrong passwords: the first four are plain failures, the fourth locks, the fifth
    // is already refused as locked.
    for _ in 0..4 {
        assert_login(&app, NURSE1_USERNAME, "wrong", StatusCode::UNAUTHORIZED, Some(UNAUTHORIZED)).await;
    }
    assert_login(&app, NURSE1_USERNAME, "wrong", StatusCode::UNAUTHORIZED, Some(LOCKED)).await;
    // The right password is refused the same way.
    assert_login(&app, NURSE1_USERNAME, NURSE1_PASSWORD, StatusCode::UNAUTHORIZED, Some(LOCKED)).await;
    let resp = send(&app, get_as("/api/me", NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    assert!(session_cookie(&resp).is_none(), "no session for a locked account");

    // Another user is unaffected, and so is the session opened before.
    assert_login(&app, NURSE2_USERNAME, NURSE2_PASSWORD, StatusCode::OK, None).await;
    let resp = send(&app, get("/api/me", &[("cookie", &cookie), ("x-requested-with", "XMLHttpRequest")])).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Usernames are counted whether they exist or not (DHIS2 registers the name as typed).
    for _ in 0..4 {
        assert_login(&app, "ghost", "x", StatusCode::UNAUTHORIZED, Some(UNAUTHORIZED)).await;
    }
    assert_login(&app, "ghost", "x", StatusCode::UNAUTHORIZED, Some(LOCKED)).await;

    // Switching the setting off lifts the lock at once (isLocked is false when off).
    let (status, _) = set_setting(&app, ADMIN_USERNAME, ADMIN_PASSWORD, SETTING, "false").await;
    assert_eq!(status, StatusCode::OK);
    assert_login(&app, NURSE1_USERNAME, NURSE1_PASSWORD, StatusCode::OK, None).await;
}

#[tokio::test]
async fn a_successful_login_forgets_earlier_failures() {
    let (app, _dir) = sim_app("2.40", false);
    lock_on(&app).await;
    for _ in 0..3 {
        assert_login(&app, NURSE1_USERNAME, "wrong", StatusCode::UNAUTHORIZED, Some(UNAUTHORIZED)).await;
    }
    assert_login(&app, NURSE1_USERNAME, NURSE1_PASSWORD, StatusCode::OK, None).await;
    for _ in 0..3 {
        assert_login(&app, NURSE1_USERNAME, "wrong", StatusCode::UNAUTHORIZED, Some(UNAUTHORIZED)).await;
    }
    assert_login(&app, NURSE1_USERNAME, NURSE1_PASSWORD, StatusCode::OK, None).await;
}

#[tokio::test]
async fn after_the_lockout_time_the_account_works_again() {
    let (app, _dir) = sim_app("2.42", true);
    lock_on(&app).await;
    let (status, lockout) = admin(&app, "GET", "/__sim/lockout", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lockout, json!({"maxFailedAttempts": 4, "lockoutMs": 900_000, "failedLogins": {}}));
    // DHIS2's 15 minutes, shortened for the test.
    let (status, lockout) = admin(&app, "PUT", "/__sim/lockout", Some(json!({"lockoutMs": 1500}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lockout["lockoutMs"], 1500);

    for _ in 0..4 {
        assert_login(&app, NURSE1_USERNAME, "wrong", StatusCode::UNAUTHORIZED, Some(UNAUTHORIZED)).await;
    }
    let (_, lockout) = admin(&app, "GET", "/__sim/lockout", None).await;
    assert_eq!(lockout["failedLogins"][NURSE1_USERNAME]["attempts"], 4, "{lockout}");
    assert_eq!(lockout["failedLogins"][NURSE1_USERNAME]["locked"], true, "{lockout}");

    // Every refused attempt counts as a failure and starts the time again (expire after write).
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_login(&app, NURSE1_USERNAME, NURSE1_PASSWORD, StatusCode::UNAUTHORIZED, Some(LOCKED)).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    // 1.6 s after the lock, but only 0.9 s after the last attempt: still locked.
    assert_login(&app, NURSE1_USERNAME, NURSE1_PASSWORD, StatusCode::UNAUTHORIZED, Some(LOCKED)).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_login(&app, NURSE1_USERNAME, NURSE1_PASSWORD, StatusCode::OK, None).await;
    let (_, lockout) = admin(&app, "GET", "/__sim/lockout", None).await;
    assert_eq!(lockout["failedLogins"], json!({}), "a success forgets the failures");

    // DELETE /__sim/lockout unlocks everyone (as a DHIS2 restart empties its cache).
    for _ in 0..4 {
        login(&app, NURSE1_USERNAME, "wrong").await;
    }
    assert_login(&app, NURSE1_USERNAME, NURSE1_PASSWORD, StatusCode::UNAUTHORIZED, Some(LOCKED)).await;
    let (status, lockout) = admin(&app, "DELETE", "/__sim/lockout", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lockout["failedLogins"], json!({}));
    assert_login(&app, NURSE1_USERNAME, NURSE1_PASSWORD, StatusCode::OK, None).await;

    for bad in [json!({"lockoutMs": -1}), json!({"lockoutMs": "1"}), json!({"other": 1}), json!(5)] {
        let (status, _) = admin(&app, "PUT", "/__sim/lockout", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn system_settings_writes_need_the_authority_and_a_known_key() {
    let (app, _dir) = sim_app("2.41", false);
    let (status, body) = set_setting(&app, NURSE1_USERNAME, NURSE1_PASSWORD, SETTING, "true").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = set_setting(&app, ADMIN_USERNAME, ADMIN_PASSWORD, "keyNoSuchThing", "1").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["message"], "Key is not supported: keyNoSuchThing");
    let (status, body) = set_setting(&app, ADMIN_USERNAME, ADMIN_PASSWORD, SETTING, "maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The body works as the value too (text or JSON), and DELETE goes back to the default.
    for (content_type, payload) in [("text/plain", "true"), ("application/json", "true")] {
        let req = Request::builder()
            .method("POST")
            .uri(format!("/api/systemSettings/{SETTING}"))
            .header("authorization", basic(ADMIN_USERNAME, ADMIN_PASSWORD))
            .header("content-type", content_type)
            .body(Body::from(payload))
            .expect("request");
        assert_eq!(send(&app, req).await.status(), StatusCode::OK, "{content_type}");
    }
    let resp = send(&app, get_as(&format!("/api/systemSettings/{SETTING}"), NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    assert_eq!(body_json(resp).await, json!({SETTING: true}));
    let req = Request::builder()
        .method("DELETE")
        .uri(format!("/api/systemSettings/{SETTING}"))
        .header("authorization", basic(ADMIN_USERNAME, ADMIN_PASSWORD))
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&app, req).await.status(), StatusCode::NO_CONTENT);
    let resp = send(&app, get_as(&format!("/api/systemSettings/{SETTING}"), NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    assert_eq!(body_json(resp).await, json!({SETTING: false}));

    // 2.42 names an unknown key differently (`SystemSettingsController.checkKeyExists`).
    let (app, _dir) = sim_app("2.42", false);
    let (status, body) = set_setting(&app, ADMIN_USERNAME, ADMIN_PASSWORD, "keyNoSuchThing", "1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "Setting does not exist: keyNoSuchThing");
}

/// `PUT /api/me/changePassword` as `user` (Basic `pass`): status and body text.
async fn change_password(app: &Router, user: &str, pass: &str, body: &Value) -> (StatusCode, String) {
    let req = Request::builder()
        .method("PUT")
        .uri("/api/me/changePassword")
        .header("authorization", basic(user, pass))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = send(app, req).await;
    let status = resp.status();
    (status, String::from_utf8(body_bytes(resp).await).expect("utf8"))
}

/// A password changed on the server (the nurse on another computer, or a reset): the old one
/// is a failed login from then on, and counts toward the lockout; her sessions end.
#[tokio::test]
async fn a_changed_password_replaces_the_old_one_at_once_and_ends_her_sessions() {
    let (app, _dir) = sim_app("2.40", true);
    lock_on(&app).await;
    let resp = send(&app, get_as("/api/me", NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    let cookie = format!("JSESSIONID={}", session_cookie(&resp).expect("cookie"));
    const NEW: &str = "Nurse1!changed";

    for (body, message) in [
        (json!({"oldPassword": NURSE1_PASSWORD}), "OldPassword and newPassword must be provided"),
        (json!({"oldPassword": "wrong", "newPassword": NEW}), "OldPassword is incorrect"),
        (json!({"oldPassword": NURSE1_PASSWORD, "newPassword": "short"}), "Password must have at least 8"),
    ] {
        let (status, text) = change_password(&app, NURSE1_USERNAME, NURSE1_PASSWORD, &body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}: {text}");
        assert!(text.contains(message), "{text}");
    }
    assert_login(&app, NURSE1_USERNAME, NURSE1_PASSWORD, StatusCode::OK, None).await;

    let body = json!({"oldPassword": NURSE1_PASSWORD, "newPassword": NEW});
    let (status, text) = change_password(&app, NURSE1_USERNAME, NURSE1_PASSWORD, &body).await;
    assert_eq!((status, text.as_str()), (StatusCode::ACCEPTED, ""));
    assert_login(&app, NURSE1_USERNAME, NURSE1_PASSWORD, StatusCode::UNAUTHORIZED, Some(UNAUTHORIZED)).await;
    let (_, lockout) = admin(&app, "GET", "/__sim/lockout", None).await;
    assert_eq!(lockout["failedLogins"][NURSE1_USERNAME]["attempts"], 1, "the old password is a failure: {lockout}");
    let resp = send(&app, get("/api/me", &[("cookie", &cookie), ("x-requested-with", "XMLHttpRequest")])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "her session ended");
    assert_login(&app, NURSE1_USERNAME, NEW, StatusCode::OK, None).await;
    let (_, lockout) = admin(&app, "GET", "/__sim/lockout", None).await;
    assert_eq!(lockout["failedLogins"], json!({}), "{lockout}");
}
