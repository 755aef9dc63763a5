//! Router tests of fault injection (`--faults`): the `/__sim` admin API, rules by path, method
//! and seeded rate, latency, fixed statuses, drops, the request log and counters.

#![allow(clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use axum::{
    body::Body,
    http::{Request, StatusCode},
    Router,
};
use common::*;
use dhis2_sim::seed::*;
use http_body_util::BodyExt;
use serde_json::{json, Value};

/// A demo app with faults enabled.
fn faulty_app(version: &str) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), version);
    config.faults.enabled = true;
    (dhis2_sim::build_app(&config).expect("app"), dir)
}

fn req(method: &str, uri: &str, body: Option<Value>) -> Request<Body> {
    let b = Request::builder().method(method).uri(uri).header("authorization", basic(NURSE1_USERNAME, NURSE1_PASSWORD));
    match body {
        Some(v) => b.header("content-type", "application/json").body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .expect("request")
}

async fn status_of(app: &Router, method: &str, uri: &str) -> StatusCode {
    send(app, req(method, uri, None)).await.status()
}

#[tokio::test]
async fn admin_api_is_absent_without_the_flag() {
    let (app, _dir) = demo_app("2.40");
    for (method, uri) in [("GET", "/__sim/faults"), ("POST", "/__sim/faults"), ("GET", "/__sim/requests")] {
        let (status, body) = admin(&app, method, uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["message"], format!("No handler found for {method} {uri}"));
    }
    // And rules cannot be set, so the API is untouched.
    assert_eq!(status_of(&app, "GET", "/api/me").await, StatusCode::OK);
}

#[tokio::test]
async fn status_rules_by_path_and_method_then_cleared() {
    let (app, _dir) = faulty_app("2.40");
    let rules = json!([
        {"path": "/api/me", "method": "get", "status": 503},
        {"path": "/api/system", "status": 500, "message": "Boom"},
        {"path": "/api/dataStore", "method": "PUT", "status": 502, "body": {"custom": true}}
    ]);
    let (status, listed) = admin(&app, "POST", "/__sim/faults?seed=5", Some(rules)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["seed"], 5);
    assert_eq!(listed["enabled"], true);
    assert_eq!(listed["rules"][0], json!({"path": "/api/me", "method": "get", "status": 503}));

    let resp = send(&app, req("GET", "/api/me", None)).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body_json(resp).await,
        json!({"httpStatus": "Service Unavailable", "httpStatusCode": 503, "status": "ERROR", "message": "Injected fault"})
    );
    assert_eq!(status_of(&app, "GET", "/api/me.json").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status_of(&app, "GET", "/api/me/authorization").await, StatusCode::SERVICE_UNAVAILABLE);
    let resp = send(&app, req("GET", "/api/system/info", None)).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body_json(resp).await["message"], "Boom");
    // Other methods and paths pass.
    assert_eq!(status_of(&app, "GET", "/api/dataStore").await, StatusCode::OK);
    let resp = send(&app, req("PUT", "/api/dataStore/ns/k", Some(json!(1)))).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(body_json(resp).await, json!({"custom": true}));
    assert_eq!(send(&app, req("POST", "/api/dataStore/ns/k", Some(json!(1)))).await.status(), StatusCode::CREATED);

    let (_, listed) = admin(&app, "GET", "/__sim/faults", None).await;
    assert_eq!(listed["hits"], json!([3, 1, 1]));

    let (status, cleared) = admin(&app, "DELETE", "/__sim/faults", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cleared["rules"], json!([]));
    assert_eq!(status_of(&app, "GET", "/api/me").await, StatusCode::OK);
    assert_eq!(send(&app, req("PUT", "/api/dataStore/ns/k", Some(json!(2)))).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn invalid_rules_are_refused() {
    let (app, _dir) = faulty_app("2.40");
    for bad in [
        json!([{"path": "/api", "drop": true, "status": 500}]),
        json!([{"path": "/api"}]),
        json!([{"path": "api", "drop": true}]),
        json!([{"drop": true, "rate": 2}]),
        json!([{"drop": true, "latency": 5}]),
        json!({"rules": "x"}),
    ] {
        let (status, body) = admin(&app, "POST", "/__sim/faults", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["httpStatusCode"], 400);
    }
    let (status, _) = admin(&app, "PATCH", "/__sim/faults", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = admin(&app, "GET", "/__sim/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn seeded_rate_is_deterministic_and_times_limits() {
    let (app, _dir) = faulty_app("2.40");
    let rules = json!({"seed": 1234, "rules": [{"path": "/api/system/ping", "rate": 0.5, "status": 503}]});
    let mut runs = Vec::new();
    for _ in 0..2 {
        assert_eq!(admin(&app, "POST", "/__sim/faults", Some(rules.clone())).await.0, StatusCode::OK);
        let mut run = Vec::new();
        for _ in 0..30 {
            run.push(status_of(&app, "GET", "/api/system/ping").await.as_u16());
        }
        runs.push(run);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&200) && runs[0].contains(&503), "{:?}", runs[0]);

    // rate 0 never fires; `times` limits hits: fail once, then succeed.
    let rules =
        json!([{"path": "/api/me", "rate": 0.0, "status": 500}, {"path": "/api/me", "status": 503, "times": 1}]);
    admin(&app, "POST", "/__sim/faults", Some(rules)).await;
    assert_eq!(status_of(&app, "GET", "/api/me").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status_of(&app, "GET", "/api/me").await, StatusCode::OK);
    assert_eq!(status_of(&app, "GET", "/api/me").await, StatusCode::OK);
}

#[tokio::test]
async fn latency_fixed_and_random() {
    let (app, _dir) = faulty_app("2.40");
    admin(&app, "POST", "/__sim/faults", Some(json!([{"path": "/api/system/ping", "latencyMs": 300}]))).await;
    let started = Instant::now();
    assert_eq!(status_of(&app, "GET", "/api/system/ping").await, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(status_of(&app, "GET", "/api/me").await, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(300));

    // Latency combines with a status rule after it.
    let rules = json!([{"path": "/api/me", "latencyMs": {"min": 100, "max": 150}}, {"path": "/api/me", "status": 504}]);
    admin(&app, "POST", "/__sim/faults", Some(rules)).await;
    let started = Instant::now();
    assert_eq!(status_of(&app, "GET", "/api/me").await, StatusCode::GATEWAY_TIMEOUT);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
}

#[tokio::test]
async fn drop_and_commit_then_drop_without_a_socket_fail_the_body() {
    let (app, _dir) = faulty_app("2.41");
    let rules = json!([
        {"path": "/api/dataStore/ns/dropped", "drop": true},
        {"path": "/api/dataStore/ns/committed", "commitThenDrop": true}
    ]);
    admin(&app, "POST", "/__sim/faults", Some(rules)).await;
    for key in ["dropped", "committed"] {
        let resp = send(&app, req("PUT", &format!("/api/dataStore/ns/{key}"), Some(json!({"k": key})))).await;
        assert!(resp.into_body().collect().await.is_err(), "{key}: the body must fail");
    }
    admin(&app, "DELETE", "/__sim/faults", None).await;
    assert_eq!(status_of(&app, "GET", "/api/dataStore/ns/dropped").await, StatusCode::NOT_FOUND);
    let resp = send(&app, req("GET", "/api/dataStore/ns/committed", None)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(resp).await, json!({"k": "committed"}));

    let (_, log) = admin(&app, "GET", "/__sim/requests?method=PUT", None).await;
    let log = log.as_array().expect("list");
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["fault"], "drop");
    assert_eq!(log[0]["status"], Value::Null);
    assert_eq!(log[1]["fault"], "commitThenDrop");
    assert_eq!(log[1]["status"], 201);
    assert_eq!(log[1]["user"], NURSE1_USERNAME);
}

#[tokio::test]
async fn request_log_filters_and_counters() {
    // 2.40.1: a PUT of a missing dataStore key creates it (2.40.0 answers 404).
    let (app, _dir) = faulty_app("2.40.1");
    send(&app, req("GET", "/api/me?fields=id", None)).await;
    send(&app, req("PUT", "/api/dataStore/ns/a", Some(json!({"n": 1})))).await;
    send(&app, req("PUT", "/api/dataStore/ns/a", Some(json!({"n": 2})))).await;
    send(&app, req("PUT", "/api/dataStore/ns/b", Some(json!({"n": 3})))).await;
    send(&app, req("GET", "/api/dataStore/ns/a", None)).await;
    send(&app, get("/api/me", &[("x-requested-with", "XMLHttpRequest")])).await;
    send(&app, get("/api/nowhere", &[("authorization", &basic(ADMIN_USERNAME, ADMIN_PASSWORD))])).await;
    // Not logged: outside /api, and the admin API itself.
    send(&app, get("/dhis-web-commons/security/login.action", &[])).await;

    let (status, all) = admin(&app, "GET", "/__sim/requests", None).await;
    assert_eq!(status, StatusCode::OK);
    let all = all.as_array().expect("list").clone();
    assert_eq!(all.len(), 7, "{all:#?}");
    assert_eq!(all[0]["seq"], 1);
    assert_eq!(all[0]["method"], "GET");
    assert_eq!(all[0]["path"], "/api/me");
    assert_eq!(all[0]["query"], "fields=id");
    assert_eq!(all[0]["status"], 200);
    assert_eq!(all[0]["user"], NURSE1_USERNAME);
    assert_eq!(all[0]["route"], "/api/me");
    assert!(all[0]["timestamp"].as_str().expect("ts").ends_with('Z'));
    assert!(all[0].get("body").is_none());
    assert_eq!(all[1]["body"], json!({"n": 1}));
    assert_eq!(all[1]["bodySize"], 7);
    assert_eq!(all[1]["status"], 201);
    assert_eq!(all[1]["route"], "/api/dataStore/{namespace}/{key}");
    assert_eq!(all[2]["status"], 200);
    assert_eq!(all[5]["status"], 401);
    assert_eq!(all[5]["user"], Value::Null);
    assert_eq!(all[6]["status"], 404);

    let (_, puts) = admin(&app, "GET", "/__sim/requests?path=/api/dataStore/ns/a&method=put", None).await;
    let bodies: Vec<&Value> = puts.as_array().expect("list").iter().map(|e| &e["body"]).collect();
    assert_eq!(bodies, [&json!({"n": 1}), &json!({"n": 2})]);
    let (_, ds) = admin(&app, "GET", "/__sim/requests?path=/api/dataStore", None).await;
    assert_eq!(ds.as_array().expect("list").len(), 4);
    let (_, since) = admin(&app, "GET", "/__sim/requests?since=5&status=401", None).await;
    assert_eq!(since.as_array().expect("list").len(), 1);
    let (_, by_user) = admin(&app, "GET", "/__sim/requests?user=admin", None).await;
    assert_eq!(by_user.as_array().expect("list").len(), 1);

    let (_, counters) = admin(&app, "GET", "/__sim/counters", None).await;
    assert_eq!(counters["byRoute"]["PUT /api/dataStore/{namespace}/{key}"], 3);
    assert_eq!(counters["byRoute"]["GET /api/dataStore/{namespace}/{key}"], 1);
    assert_eq!(counters["byRoute"]["GET /api/me"], 2);
    assert_eq!(counters["byRoute"]["GET /api/nowhere"], 1);
    assert_eq!(counters["byPath"]["PUT /api/dataStore/ns/a"], 2);
    assert_eq!(counters["total"], 7);

    let (status, _) = admin(&app, "DELETE", "/__sim/requests", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(admin(&app, "GET", "/__sim/requests", None).await.1, json!([]));
    assert_eq!(
        admin(&app, "GET", "/__sim/counters", None).await.1,
        json!({"byRoute": {}, "byPath": {}, "total": 0, "peakInflight": 0, "overloadRejected": 0})
    );
}

#[tokio::test]
async fn html_rules_answer_like_a_captive_portal() {
    let (app, _dir) = faulty_app("2.40");
    let rules =
        json!([{"path": "/api", "status": 200, "html": "<!DOCTYPE html><html><body>Clinic WiFi</body></html>"}]);
    let (status, _) = admin(&app, "POST", "/__sim/faults", Some(rules)).await;
    assert_eq!(status, StatusCode::OK);
    let resp = send(&app, req("POST", "/api/events", Some(json!({"events": []})))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("Clinic WiFi"));
    // html without a status, or with a body too, is refused.
    let (status, _) = admin(&app, "POST", "/__sim/faults", Some(json!([{"html": "<html></html>"}]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) =
        admin(&app, "POST", "/__sim/faults", Some(json!([{"status": 200, "html": "<html></html>", "body": {}}]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A registration of the demo clinic in the legacy API, with this national ID.
fn woman_body(tei: &str, nid: &str) -> Value {
    json!({"trackedEntityInstance": tei, "trackedEntityType": "TetPerson01", "orgUnit": "OuBaniNaim1",
        "attributes": [{"attribute": "AtNationId1", "value": nid}, {"attribute": "AtFirstNam1", "value": "Noor"},
            {"attribute": "AtLastName1", "value": "Jaber"}, {"attribute": "AtBirthDat1", "value": "1994-02-03"}]})
}

#[tokio::test]
async fn body_contains_rules_fail_every_import_that_carries_a_poison_record() {
    let (app, _dir) = faulty_app("2.40");
    let rules = json!([{"path": "/api", "method": "POST", "bodyContains": "PoisonTei01", "status": 500,
        "message": "java.lang.NullPointerException"}]);
    let (status, listed) = admin(&app, "POST", "/__sim/faults", Some(rules)).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["rules"][0]["bodyContains"], "PoisonTei01");

    // The poison record alone, or among good ones, in each import API: 500, nothing imported.
    let poison = woman_body("PoisonTei01", "491111111");
    let good = woman_body("GoodTeiUid1", "492222222");
    for (path, body) in [
        ("/api/trackedEntityInstances", json!({"trackedEntityInstances": [good.clone(), poison.clone()]})),
        ("/api/trackedEntityInstances", poison.clone()),
        (
            "/api/enrollments",
            json!({"trackedEntityInstance": "PoisonTei01", "program": "PrMchProg01",
            "orgUnit": "OuBaniNaim1", "enrollmentDate": "2026-11-20", "incidentDate": "2026-11-20"}),
        ),
        (
            "/api/events",
            json!({"events": [{"trackedEntityInstance": "PoisonTei01", "program": "PrMchProg01",
            "programStage": "PsAncVisit1", "orgUnit": "OuBaniNaim1", "eventDate": "2026-11-20"}]}),
        ),
        (
            "/api/tracker?async=false",
            json!({"trackedEntities": [{"trackedEntity": "PoisonTei01",
            "trackedEntityType": "TetPerson01", "orgUnit": "OuBaniNaim1"}]}),
        ),
    ] {
        let resp = send(&app, req("POST", path, Some(body))).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        let answer = body_json(resp).await;
        assert_eq!(answer["httpStatusCode"], 500, "{answer}");
        assert_eq!(answer["message"], "java.lang.NullPointerException");
    }
    let resp = send(&app, req("GET", "/api/trackedEntityInstances/GoodTeiUid1", None)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "the good record of the failed request was not imported");

    // Without the poison: imported. A read naming it has no body: not hit.
    let resp = send(&app, req("POST", "/api/trackedEntityInstances", Some(good))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(resp).await["response"]["importSummaries"][0]["status"], "SUCCESS");
    let resp = send(&app, req("GET", "/api/trackedEntityInstances/PoisonTei01", None)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let (_, listed) = admin(&app, "GET", "/__sim/faults", None).await;
    assert_eq!(listed["hits"], json!([5]));
    let (_, log) = admin(&app, "GET", "/__sim/requests?status=500", None).await;
    assert!(log.as_array().expect("list").iter().all(|e| e["fault"] == "status"), "{log}");

    // bodyContains needs a string and an action, as every condition.
    for bad in [json!([{"bodyContains": "x"}]), json!([{"bodyContains": 5, "status": 500}])] {
        assert_eq!(admin(&app, "POST", "/__sim/faults", Some(bad.clone())).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn body_larger_than_rules_answer_413_as_nginx_does() {
    let (app, _dir) = faulty_app("2.40");
    let rules = json!([{"path": "/api", "bodyLargerThan": 400, "status": 413}]);
    let (status, listed) = admin(&app, "POST", "/__sim/faults", Some(rules)).await;
    assert_eq!(status, StatusCode::OK, "{listed}");

    let one = json!({"trackedEntityInstances": [woman_body("SmallTei001", "493333333")]});
    let two = json!({"trackedEntityInstances": [woman_body("BigTeiUid01", "494444444"), woman_body("BigTeiUid02", "495555555")]});
    assert!(one.to_string().len() <= 400 && two.to_string().len() > 400);

    // Larger than the limit: nginx's own page, the handler never ran.
    let resp = send(&app, req("POST", "/api/trackedEntityInstances", Some(two))).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(resp.headers()["content-type"].to_str().expect("type").starts_with("text/html"));
    let page = String::from_utf8(body_bytes(resp).await).expect("utf8");
    assert!(page.contains("<title>413 Request Entity Too Large</title>") && page.contains("nginx"), "{page}");
    assert_eq!(status_of(&app, "GET", "/api/trackedEntityInstances/BigTeiUid01").await, StatusCode::NOT_FOUND);

    // At or under the limit: imported; requests without a body pass.
    let resp = send(&app, req("POST", "/api/trackedEntityInstances", Some(one))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(status_of(&app, "GET", "/api/trackedEntityInstances/SmallTei001").await, StatusCode::OK);
    let (_, listed) = admin(&app, "GET", "/__sim/faults", None).await;
    assert_eq!(listed["hits"], json!([1]));

    // A status, message or body given in the rule wins over the page.
    let rules = json!([{"bodyLargerThan": 10, "status": 413, "message": "Too big"}]);
    admin(&app, "POST", "/__sim/faults", Some(rules)).await;
    let resp = send(&app, req("POST", "/api/dataStore/ns/k", Some(json!({"long": "enough to be over"})))).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body_json(resp).await["message"], "Too big");
    assert_eq!(
        admin(&app, "POST", "/__sim/faults", Some(json!([{"bodyLargerThan": 10}]))).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn answer_delay_rules_answer_late_after_the_write_committed() {
    let (app, _dir) = faulty_app("2.41");
    let rules = json!([{"path": "/api/dataStore/ns/slow", "method": "PUT", "answerDelayMs": 600}]);
    let (status, listed) = admin(&app, "POST", "/__sim/faults", Some(rules)).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let started = Instant::now();
    let slow = tokio::spawn({
        let app = app.clone();
        async move { send(&app, req("PUT", "/api/dataStore/ns/slow", Some(json!({"v": 1})))).await.status() }
    });
    // While the answer is held back, the write is already there (a kill now loses only the answer).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!slow.is_finished());
    let resp = send(&app, req("GET", "/api/dataStore/ns/slow", None)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(resp).await, json!({"v": 1}));
    assert_eq!(slow.await.expect("join"), StatusCode::CREATED);
    assert!(started.elapsed() >= Duration::from_millis(600));
    let (_, log) = admin(&app, "GET", "/__sim/requests?method=PUT", None).await;
    assert_eq!(log[0]["fault"], "answerDelay", "{log}");
}
