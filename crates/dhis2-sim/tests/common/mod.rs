//! Helpers shared by the integration tests: a seeded app over a temp dir, request builders.

#![allow(dead_code, clippy::expect_used, clippy::panic)]

use axum::{
    body::Body,
    http::{header, Request, Response},
    Router,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use dhis2_sim::{Config, SeedMode, ServerVersion};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A demo-seeded app on a fresh temp dir (kept alive by the returned guard).
pub fn demo_app(version: &str) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on(dir.path(), version);
    (app, dir)
}

/// A demo-seeded app on `dir` (a "restart" when called again with the same dir).
pub fn app_on(dir: &std::path::Path, version: &str) -> Router {
    dhis2_sim::build_app(&config(dir, version)).expect("build app")
}

/// The demo config on `dir`.
pub fn config(dir: &std::path::Path, version: &str) -> Config {
    Config {
        data_dir: dir.to_owned(),
        seed: SeedMode::Demo,
        www: None,
        version: version.parse::<ServerVersion>().expect("version"),
        faults: Default::default(),
        tracked_entities: 0,
    }
}

/// `Basic base64(user:pass)`.
pub fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
}

/// A GET request with optional headers.
pub fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().method("GET").uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).expect("request")
}

/// A GET with Basic credentials.
pub fn get_as(uri: &str, user: &str, pass: &str) -> Request<Body> {
    get(uri, &[("authorization", &basic(user, pass))])
}

/// Sends a request through a clone of the app.
pub async fn send(app: &Router, req: Request<Body>) -> Response<Body> {
    app.clone().oneshot(req).await.expect("infallible")
}

/// The body as bytes.
pub async fn body_bytes(resp: Response<Body>) -> Vec<u8> {
    resp.into_body().collect().await.expect("body").to_bytes().to_vec()
}

/// The body as JSON.
pub async fn body_json(resp: Response<Body>) -> Value {
    let bytes = body_bytes(resp).await;
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// A call to the admin API (`/__sim/...`) with an optional JSON body: status and JSON answer
/// (`null` for an empty body).
pub async fn admin(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (axum::http::StatusCode, Value) {
    let b = Request::builder().method(method).uri(uri);
    let request = match body {
        Some(v) => b.header("content-type", "application/json").body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .expect("request");
    let resp = send(app, request).await;
    let status = resp.status();
    let bytes = body_bytes(resp).await;
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("json") })
}

/// The `JSESSIONID` value from a response's `Set-Cookie`, if any.
pub fn session_cookie(resp: &Response<Body>) -> Option<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("JSESSIONID="))
        .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
}

/// `^[a-zA-Z][a-zA-Z0-9]{10}$`, written out independently of the crate's own check.
pub fn is_uid(s: &str) -> bool {
    s.len() == 11
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Starts the real `dhis2-sim` binary (`--port 0`, demo seed, 2.41) on `data` with `extra`
/// arguments; returns the child and its first line on stdout (the listening line).
pub fn spawn_binary(data: &std::path::Path, extra: &[&str]) -> (std::process::Child, String) {
    use std::{
        io::{BufRead, BufReader},
        process::{Command, Stdio},
        sync::mpsc,
        time::Duration,
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_dhis2-sim"))
        .args(["--port", "0", "--seed", "demo", "--version", "2.41", "--data"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dhis2-sim");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => (child, line),
        Err(e) => {
            let _ = child.kill();
            panic!("no listening line: {e}");
        }
    }
}
