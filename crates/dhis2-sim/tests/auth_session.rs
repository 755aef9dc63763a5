//! A Basic header on a request that also carries a live session of the same username is not
//! checked, as on real DHIS2: Spring Security's `BasicAuthenticationFilter` only authenticates
//! the header when `authenticationIsRequired(username)` is true, which it is not when the
//! session's `Authentication` is authenticated and its name equals the Basic username. So a
//! 200 to a request sent with the browser's cookies is no proof of the password.

#![allow(clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::*;
use dhis2_sim::seed::*;
use serde_json::json;

const SETTING: &str = "keyLockMultipleFailedLogins";

/// `GET /api/me` with a Basic header and, when given, the session cookie: the status.
async fn me(app: &axum::Router, cookie: Option<&str>, user: &str, pass: &str) -> StatusCode {
    let auth = basic(user, pass);
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(c) = cookie {
        headers.push(("cookie", c));
    }
    send(app, get("/api/me", &headers)).await.status()
}

#[tokio::test]
async fn basic_of_the_session_user_is_not_checked_on_a_live_session() {
    let (app, _dir) = demo_app("2.41");
    let resp = send(&app, get_as("/api/me", NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = format!("JSESSIONID={}", session_cookie(&resp).expect("session cookie"));

    // The session of nurse1 answers for nurse1 whatever password comes with it.
    let resp =
        send(&app, get("/api/me", &[("cookie", &cookie), ("authorization", &basic(NURSE1_USERNAME, "wrong"))])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(session_cookie(&resp).is_none(), "the session is reused, no new one");
    assert_eq!(body_json(resp).await["username"], json!(NURSE1_USERNAME));

    // Without the cookie the password is checked.
    assert_eq!(me(&app, None, NURSE1_USERNAME, "wrong").await, StatusCode::UNAUTHORIZED);
    // A Basic header of another username is checked even with the session.
    assert_eq!(me(&app, Some(&cookie), NURSE2_USERNAME, "wrong").await, StatusCode::UNAUTHORIZED);
    // ... and its right password logs that user in (not the session's user).
    let resp =
        send(&app, get("/api/me", &[("cookie", &cookie), ("authorization", &basic(NURSE2_USERNAME, NURSE2_PASSWORD))]))
            .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(resp).await["username"], json!(NURSE2_USERNAME));
    // Usernames are compared exactly, as `getName().equals(username)`.
    assert_eq!(me(&app, Some(&cookie), "NURSE1", "wrong").await, StatusCode::UNAUTHORIZED);
    // A session that is not live does not count.
    assert_eq!(me(&app, Some("JSESSIONID=0123456789ABCDEF"), NURSE1_USERNAME, "wrong").await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_skipped_check_is_neither_a_failure_nor_a_success_for_the_lockout() {
    // With the admin API (`/__sim/lockout`), which needs the fault switch.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), "2.41");
    config.faults.enabled = true;
    let app = dhis2_sim::build_app(&config).expect("app");
    let resp = send(
        &app,
        axum::http::Request::builder()
            .method("POST")
            .uri(format!("/api/systemSettings/{SETTING}?value=true"))
            .header("authorization", basic(ADMIN_USERNAME, ADMIN_PASSWORD))
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(&app, get_as("/api/me", NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    let cookie = format!("JSESSIONID={}", session_cookie(&resp).expect("session cookie"));

    // Wrong passwords on the session are not failed logins: nothing is counted.
    for _ in 0..5 {
        assert_eq!(me(&app, Some(&cookie), NURSE1_USERNAME, "wrong").await, StatusCode::OK);
    }
    let (_, lockout) = admin(&app, "GET", "/__sim/lockout", None).await;
    assert_eq!(lockout["failedLogins"], json!({}));

    // Three real failures, then a skipped check: it does not forget them (no success event),
    // so the fourth real failure locks.
    for _ in 0..3 {
        assert_eq!(me(&app, None, NURSE1_USERNAME, "wrong").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(me(&app, Some(&cookie), NURSE1_USERNAME, NURSE1_PASSWORD).await, StatusCode::OK);
    let (_, lockout) = admin(&app, "GET", "/__sim/lockout", None).await;
    assert_eq!(lockout["failedLogins"][NURSE1_USERNAME]["attempts"], json!(3));
    assert_eq!(me(&app, None, NURSE1_USERNAME, "wrong").await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, None, NURSE1_USERNAME, NURSE1_PASSWORD).await, StatusCode::UNAUTHORIZED, "locked");
    // The session opened before the lock still answers, Basic header or not (the provider
    // that checks the lock is never called).
    assert_eq!(me(&app, Some(&cookie), NURSE1_USERNAME, NURSE1_PASSWORD).await, StatusCode::OK);
}
