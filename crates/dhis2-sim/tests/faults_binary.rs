//! Fault injection on the real binary over raw TCP: `drop` closes the connection without a
//! byte of response, `commitThenDrop` does the same after the write committed, and
//! `--faults-file` rules apply from the start.

#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Child,
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine};

struct Sim {
    child: Child,
    port: u16,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str], data: &std::path::Path) -> Sim {
    let (child, line) = common::spawn_binary(data, extra);
    let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    Sim { child, port }
}

/// Sends one raw HTTP/1.1 request and reads until the server closes. Returns what was read;
/// a reset counts as an empty answer.
fn raw(port: u16, method: &str, path: &str, body: Option<&str>, auth: bool) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if auth {
        head.push_str(&format!("Authorization: Basic {}\r\n", STANDARD.encode("admin:district")));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream.write_all(head.as_bytes()).expect("write");
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("read: {e}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn drop_and_commit_then_drop_close_the_connection() {
    let data = tempfile::tempdir().expect("tempdir");
    let rules_file = data.path().join("rules.json");
    std::fs::write(&rules_file, r#"{"seed":3,"rules":[{"path":"/api/system/ping","status":503}]}"#).expect("write");
    let sim = start(&["--faults-file", rules_file.to_str().expect("utf8")], data.path());

    // Rules from the file are active.
    let answer = raw(sim.port, "GET", "/api/system/ping", None, true);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""httpStatusCode":503"#), "{answer}");
    let answer = raw(sim.port, "GET", "/__sim/faults", None, false);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains(r#""seed":3"#), "{answer}");

    let rules = r#"[{"path":"/api/dataStore/ns/dropped","method":"PUT","drop":true},
                    {"path":"/api/dataStore/ns/committed","commitThenDrop":true}]"#;
    let answer = raw(sim.port, "POST", "/__sim/faults", Some(rules), false);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // drop: nothing comes back, and the handler never ran.
    let answer = raw(sim.port, "PUT", "/api/dataStore/ns/dropped", Some(r#"{"v":1}"#), true);
    assert_eq!(answer, "", "a dropped request must get no bytes");
    // commitThenDrop: nothing comes back either, but the write is there.
    let answer = raw(sim.port, "PUT", "/api/dataStore/ns/committed", Some(r#"{"v":2}"#), true);
    assert_eq!(answer, "", "commitThenDrop must send no bytes");

    // On a keep-alive connection: the first answer arrives whole, then the dropped request
    // closes the connection with nothing more.
    let mut stream = TcpStream::connect(("127.0.0.1", sim.port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let auth = format!("Authorization: Basic {}\r\n", STANDARD.encode("admin:district"));
    let ping = format!("GET /api/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n");
    stream.write_all(ping.as_bytes()).expect("write");
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&first).ends_with("pong") {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&buf[..n]);
    }
    assert!(first.starts_with(b"HTTP/1.1 200"));
    let put = format!(
        "PUT /api/dataStore/ns/dropped HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: 1\r\n\r\n3"
    );
    stream.write_all(put.as_bytes()).expect("write");
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest)),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }

    let answer = raw(sim.port, "DELETE", "/__sim/faults", None, false);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = raw(sim.port, "GET", "/api/dataStore/ns/committed", None, true);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with(r#"{"v":2}"#), "{answer}");
    let answer = raw(sim.port, "GET", "/api/dataStore/ns/dropped", None, true);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    // The log saw both writes, with their bodies and faults.
    let answer = raw(sim.port, "GET", "/__sim/requests?method=PUT", None, false);
    let json: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).expect("body")).expect("log JSON");
    let log = json.as_array().expect("list");
    assert_eq!(log.len(), 3, "{json}");
    assert_eq!(log[2]["fault"], "drop");
    assert_eq!(log[0]["fault"], "drop");
    assert_eq!(log[0]["body"], serde_json::json!({"v": 1}));
    assert_eq!(log[1]["fault"], "commitThenDrop");
    assert_eq!(log[1]["status"], 201);
    assert_eq!(log[1]["user"], "admin");
}

#[test]
fn admin_api_is_404_without_the_flag() {
    let data = tempfile::tempdir().expect("tempdir");
    let sim = start(&[], data.path());
    let answer = raw(sim.port, "GET", "/__sim/faults", None, false);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let answer = raw(sim.port, "GET", "/api/system/ping", None, true);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn max_inflight_flag_limits_the_binary_and_implies_the_admin_api() {
    let data = tempfile::tempdir().expect("tempdir");
    let sim = start(&["--max-inflight", "0", "--retry-after-secs", "3"], data.path());
    let answer = raw(sim.port, "GET", "/api/system/ping", None, true);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nretry-after: 3\r\n"), "{answer}");
    assert!(answer.contains(r#""httpStatusCode":503"#), "{answer}");
    let answer = raw(sim.port, "GET", "/__sim/load", None, false);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains(r#""maxInflight":0"#), "{answer}");
    let answer = raw(sim.port, "PUT", "/__sim/load", Some(r#"{"maxInflight":null}"#), false);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = raw(sim.port, "GET", "/api/system/ping", None, true);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
