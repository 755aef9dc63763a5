//! Router tests of overload mode (`--max-inflight`): beyond N `/api` requests in flight, a
//! reverse proxy in front of DHIS2 answers 503 at once with `Retry-After` and a WebMessage,
//! without running the handler. `/__sim` is never limited; `GET /__sim/counters` shows the
//! peak in flight and the number of 503s; `/__sim/load` changes the limit at runtime.

#![allow(clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use axum::{
    body::Body,
    http::{Request, Response, StatusCode},
    Router,
};
use common::*;
use dhis2_sim::seed::*;
use serde_json::{json, Value};

/// A demo app with faults enabled and the given in-flight limit.
fn app_with_limit(max_inflight: Option<usize>) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), "2.41");
    config.faults.enabled = true;
    config.faults.max_inflight = max_inflight;
    (dhis2_sim::build_app(&config).expect("app"), dir)
}

fn put_key(key: &str) -> Request<Body> {
    Request::builder()
        .method("PUT")
        .uri(format!("/api/dataStore/load/{key}"))
        .header("authorization", basic(NURSE1_USERNAME, NURSE1_PASSWORD))
        .header("content-type", "application/json")
        .body(Body::from(json!({"key": key}).to_string()))
        .expect("request")
}

/// Holds every PUT under `/api/dataStore/load` for `ms` milliseconds (the existing latency fault).
async fn slow_puts(app: &Router, ms: u64) {
    let rules = json!([{"path": "/api/dataStore/load", "method": "PUT", "latencyMs": ms}]);
    assert_eq!(admin(app, "POST", "/__sim/faults", Some(rules)).await.0, StatusCode::OK);
}

/// Sends `n` PUTs at once (all polled before any finishes); each with the time it took.
async fn concurrent_puts(app: &Router, n: usize) -> Vec<(String, Response<Body>, Duration)> {
    let futures = (0..n).map(|i| {
        let key = format!("k{i}");
        async move {
            let started = Instant::now();
            let resp = send(app, put_key(&key)).await;
            (key, resp, started.elapsed())
        }
    });
    futures::future::join_all(futures).await
}

const OVERLOADED: &str = "Service overloaded: too many requests in flight, retry later";

#[tokio::test]
async fn beyond_the_limit_requests_get_503_with_retry_after_and_the_handler_does_not_run() {
    let (app, _dir) = app_with_limit(Some(2));
    slow_puts(&app, 600).await;

    let answers = concurrent_puts(&app, 5).await;
    let mut stored = Vec::new();
    let mut rejected = Vec::new();
    for (key, resp, elapsed) in answers {
        match resp.status() {
            StatusCode::CREATED => {
                assert!(elapsed >= Duration::from_millis(600), "{key} was held: {elapsed:?}");
                stored.push(key);
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(elapsed < Duration::from_millis(600), "{key} answered at once: {elapsed:?}");
                assert_eq!(resp.headers()["retry-after"], "1", "{key}");
                assert!(resp.headers()["content-type"].to_str().expect("ascii").starts_with("application/json"));
                assert_eq!(
                    body_json(resp).await,
                    json!({"httpStatus": "Service Unavailable", "httpStatusCode": 503, "status": "ERROR",
                           "message": OVERLOADED})
                );
                rejected.push(key);
            }
            other => panic!("{key}: unexpected {other}"),
        }
    }
    assert_eq!(stored.len(), 2, "stored {stored:?}, rejected {rejected:?}");
    assert_eq!(rejected.len(), 3, "stored {stored:?}, rejected {rejected:?}");

    // The handler never ran for the rejected ones: their keys do not exist.
    admin(&app, "DELETE", "/__sim/faults", None).await;
    for key in &stored {
        let resp = send(&app, get_as(&format!("/api/dataStore/load/{key}"), NURSE1_USERNAME, NURSE1_PASSWORD)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{key}");
    }
    for key in &rejected {
        let resp = send(&app, get_as(&format!("/api/dataStore/load/{key}"), NURSE1_USERNAME, NURSE1_PASSWORD)).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{key}");
    }

    // Counters: the peak and the 503s, next to the existing fields.
    let (status, counters) = admin(&app, "GET", "/__sim/counters", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(counters["peakInflight"], 2, "{counters}");
    assert_eq!(counters["overloadRejected"], 3, "{counters}");
    assert_eq!(counters["byRoute"]["PUT /api/dataStore/{namespace}/{key}"], 2, "{counters}");
    assert!(counters["total"].as_u64().expect("total") >= 5, "{counters}");

    // The log shows the rejected requests as an `overload` fault, without a user.
    let (_, log) = admin(&app, "GET", "/__sim/requests?status=503", None).await;
    let log = log.as_array().expect("list");
    assert_eq!(log.len(), 3, "{log:?}");
    for entry in log {
        assert_eq!(entry["fault"], "overload");
        assert_eq!(entry["user"], Value::Null);
    }

    // DELETE /__sim/counters resets them (nothing is in flight now).
    assert_eq!(admin(&app, "DELETE", "/__sim/counters", None).await.0, StatusCode::OK);
    assert_eq!(
        admin(&app, "GET", "/__sim/counters", None).await.1,
        json!({"byRoute": {}, "byPath": {}, "total": 0, "peakInflight": 0, "overloadRejected": 0})
    );
}

#[tokio::test]
async fn without_a_limit_nothing_is_rejected_and_the_peak_is_counted() {
    let (app, _dir) = app_with_limit(None);
    slow_puts(&app, 300).await;
    let answers = concurrent_puts(&app, 5).await;
    for (key, resp, _) in answers {
        assert_eq!(resp.status(), StatusCode::CREATED, "{key}");
    }
    let (_, counters) = admin(&app, "GET", "/__sim/counters", None).await;
    assert_eq!(counters["overloadRejected"], 0, "{counters}");
    assert_eq!(counters["peakInflight"], 5, "{counters}");
    let (_, load) = admin(&app, "GET", "/__sim/load", None).await;
    assert_eq!(
        load,
        json!({"maxInflight": null, "retryAfterSecs": 1, "inflight": 0, "peakInflight": 5,
                            "overloadRejected": 0})
    );
}

#[tokio::test]
async fn the_limit_is_switched_on_and_off_at_runtime() {
    let (app, _dir) = app_with_limit(None);
    slow_puts(&app, 400).await;

    let (status, load) = admin(&app, "PUT", "/__sim/load", Some(json!({"maxInflight": 1, "retryAfterSecs": 7}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(load["maxInflight"], 1);
    assert_eq!(load["retryAfterSecs"], 7);
    let answers = concurrent_puts(&app, 3).await;
    let statuses: Vec<u16> = answers.iter().map(|(_, r, _)| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 2, "{statuses:?}");
    for (_, resp, _) in &answers {
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(resp.headers()["retry-after"], "7");
        }
    }
    drop(answers);

    // Only maxInflight: retryAfterSecs is kept.
    let (_, load) = admin(&app, "PUT", "/__sim/load", Some(json!({"maxInflight": null}))).await;
    assert_eq!(load["maxInflight"], Value::Null);
    assert_eq!(load["retryAfterSecs"], 7);
    let answers = concurrent_puts(&app, 3).await;
    assert!(answers.iter().all(|(_, r, _)| r.status().is_success()), "all pass");

    // 0 refuses every /api request; /__sim and pages outside /api are never limited.
    admin(&app, "PUT", "/__sim/load", Some(json!({"maxInflight": 0}))).await;
    assert_eq!(send(&app, get("/api/ping", &[])).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(send(&app, get("/dhis-web-commons/security/login.action", &[])).await.status(), StatusCode::OK);
    let (status, counters) = admin(&app, "GET", "/__sim/counters", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(counters["overloadRejected"], 3);

    // DELETE removes the limit.
    let (status, load) = admin(&app, "DELETE", "/__sim/load", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(load["maxInflight"], Value::Null);
    assert_eq!(send(&app, get("/api/ping", &[])).await.status(), StatusCode::OK);

    // Bad bodies and methods.
    for bad in [
        json!({"maxInflight": -1}),
        json!({"maxInflight": "2"}),
        json!({"retryAfterSecs": null}),
        json!({"retryAfterSecs": 1.5}),
        json!({"bogus": 1}),
        json!([1]),
    ] {
        let (status, body) = admin(&app, "PUT", "/__sim/load", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["httpStatusCode"], 400, "{bad}");
    }
    assert_eq!(admin(&app, "PATCH", "/__sim/load", None).await.0, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_slot_is_freed_when_the_request_is_answered_or_cancelled() {
    let (app, _dir) = app_with_limit(Some(1));
    slow_puts(&app, 10_000).await;

    // The client gives up (the connection drops): the held request's slot comes back.
    let cancelled = tokio::time::timeout(Duration::from_millis(200), send(&app, put_key("gone"))).await;
    assert!(cancelled.is_err(), "still held by the latency fault");
    let (_, load) = admin(&app, "GET", "/__sim/load", None).await;
    assert_eq!(load["inflight"], 0, "{load}");
    assert_eq!(load["peakInflight"], 1, "{load}");

    // A slot is given back once the answer is ready.
    admin(&app, "DELETE", "/__sim/faults", None).await;
    for _ in 0..3 {
        let resp = send(&app, get("/api/ping", &[])).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body_bytes(resp).await, b"pong");
    }
    assert_eq!(admin(&app, "GET", "/__sim/load", None).await.1["inflight"], 0);
}

#[tokio::test]
async fn retry_after_is_readable_cross_origin() {
    let (app, _dir) = app_with_limit(Some(0));
    let resp = send(&app, get("/api/ping", &[("origin", "http://localhost:5173")])).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["access-control-allow-origin"], "http://localhost:5173");
    let exposed = resp.headers()["access-control-expose-headers"].to_str().expect("ascii").to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
}
