//! The core's offline answers against dhis2-sim's online answers for the same requests:
//! download the clinic from the sim (in process, through its router), then ask both the same
//! searches, lists and single records, in both API families and several server versions.
//! The sim is an independent reading of the DHIS2 contract: a difference here is a bug on one
//! side, not something to paper over.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use serde_json::Value;
use tracker_offline_core::{
    download::DownloadOptions,
    engine::{Engine, EngineConfig},
    http::{HttpClient, HttpRequest},
    kdf::RustPbkdf2,
    random::OsRandom,
    store::MemoryStore,
    vault::VaultPolicy,
};

#[path = "support/mod.rs"]
mod support;

use support::*;

/// What legitimately differs: the grid's `metaData.names` (the server names more things).
fn normalise(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !["names", "headerWidth", "width"].contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), normalise(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

async fn compare(version: &str, paths: impl Fn(&Value) -> Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let server = sim(version, dir.path(), 80);
    let policy = VaultPolicy { iterations: 1_000, ..VaultPolicy::default() };
    let engine =
        Engine::new(EngineConfig::new(BASE, policy).unwrap(), MemoryStore::new(), RustPbkdf2, OsRandom, &server);
    engine.login("nurse1", "Nurse1!clinic", 1_780_000_000_000).await.unwrap();
    let report = engine
        .download(DownloadOptions { page_size: Some(17), ..Default::default() }, 1_780_000_000_000, &mut |_| {})
        .await
        .unwrap();
    assert!(report.tracked_entities > 20, "{report:?}");
    // A sample record to ask about.
    let sample = if version.starts_with("2.42") {
        online(&server, &format!("/api/tracker/trackedEntities?orgUnits={OU}&program={P}&pageSize=1&fields=*")).await
    } else {
        online(&server, &format!("/api/trackedEntityInstances/query.json?ou={OU}&program={P}&pageSize=1")).await
    };
    let mut mismatches = Vec::new();
    for path in paths(&sample) {
        let (status, expected) = online_status(&server, &path).await;
        let got = engine.answer_offline(&format!("http://sim.test{path}")).await.unwrap().expect("answered");
        let got_status = got.status;
        let got: Value = serde_json::from_slice(&got.body).unwrap();
        if status != got_status || normalise(&got) != normalise(&expected) {
            mismatches.push(format!(
                "{path}\n  sim {status} / core {got_status}; first difference: {}",
                first_difference(&normalise(&expected), &normalise(&got), String::new())
            ));
        }
    }
    assert!(mismatches.is_empty(), "{} of the answers differ:\n{}", mismatches.len(), mismatches.join("\n"));
}

fn cut(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(300).collect()
}

/// Where two JSON values first differ, as a path with both sides.
fn first_difference(a: &Value, b: &Value, path: String) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) if p != q => return first_difference(p, q, format!("{path}.{k}")),
                    (Some(p), None) => return format!("{path}.{k}: sim {} / core missing", cut(p)),
                    (None, Some(q)) => return format!("{path}.{k}: sim missing / core {}", cut(q)),
                    _ => {}
                }
            }
            format!("{path}: equal")
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if p != q {
                    return first_difference(p, q, format!("{path}[{i}]"));
                }
            }
            format!("{path}: equal")
        }
        _ => format!("{path}: sim {} / core {}", cut(a), cut(b)),
    }
}

async fn online(server: &InProcess, path: &str) -> Value {
    let (status, body) = online_status(server, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

async fn online_status(server: &InProcess, path: &str) -> (u16, Value) {
    let request = HttpRequest {
        opens_session: false,
        method: "GET".into(),
        url: format!("http://sim.test{path}"),
        headers: vec![
            ("Authorization".into(), "Basic bnVyc2UxOk51cnNlMSFjbGluaWM=".into()),
            ("X-Requested-With".into(), "XMLHttpRequest".into()),
        ],
        body: None,
    };
    let r = (&server).send(request).await.unwrap();
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

fn cell(grid: &Value, row: usize, name: &str) -> String {
    let i = grid["headers"].as_array().unwrap().iter().position(|h| h["name"] == name).unwrap();
    grid["rows"][row][i].as_str().unwrap_or_default().to_string()
}

fn legacy_paths(grid: &Value) -> Vec<String> {
    let tei = cell(grid, 0, "instance");
    let nid = cell(grid, 0, NID);
    let name = cell(grid, 0, FIRST);
    let prefix: String = name.chars().take(2).collect();
    vec![
        format!("/api/trackedEntityInstances/query.json?ou={OU}&ouMode=SELECTED&program={P}&pageSize=50&page=1&totalPages=true"),
        format!("/api/trackedEntityInstances/query.json?ou={OU}&program={P}&pageSize=7&page=3&totalPages=true"),
        format!("/api/trackedEntityInstances/query.json?ou={OU}&program={P}&attribute={NID}:EQ:{nid}"),
        format!("/api/trackedEntityInstances/query.json?ou={OU}&program={P}&attribute={FIRST}:LIKE:{prefix}&totalPages=true"),
        format!("/api/trackedEntityInstances/query.json?ou={OU}&program={P}&order={NID}:desc&pageSize=10"),
        format!("/api/trackedEntityInstances/query.json?ou={OU}&program={P}&order={FIRST}:asc&pageSize=10&page=2"),
        format!("/api/trackedEntityInstances/query.json?ou=OuHebronDs1&ouMode=DESCENDANTS&program={P}&pageSize=5&totalPages=true"),
        format!("/api/trackedEntityInstances/count.json?ou={OU}&program={P}&attribute={FIRST}:LIKE:{prefix}"),
        format!("/api/trackedEntityInstances/{tei}.json?program={P}&fields=*"),
        format!("/api/trackedEntityInstances.json?ou={OU}&program={P}&fields=*&pageSize=5&page=2&totalPages=true"),
        format!("/api/events.json?ouMode=ACCESSIBLE&trackedEntityInstance={tei}&program={P}&skipPaging=true"),
        format!("/api/events.json?trackedEntityInstance={tei}&fields=*&paging=false"),
        format!("/api/enrollments?trackedEntityInstance={tei}&paging=false"),
        format!("/api/tracker/trackedEntities?orgUnit={OU}&program={P}&pageSize=5&page=2&totalPages=true"),
        format!("/api/tracker/trackedEntities/{tei}?program={P}"),
        format!("/api/tracker/trackedEntities/{tei}?program={P}&fields=*"),
        format!("/api/tracker/enrollments?trackedEntity={tei}"),
        format!("/api/tracker/events?trackedEntity={tei}&paging=false"),
    ]
}

#[tokio::test(flavor = "current_thread")]
async fn legacy_and_tracker_reads_on_2_40() {
    compare("2.40.3", legacy_paths).await;
}

#[tokio::test(flavor = "current_thread")]
async fn legacy_and_tracker_reads_on_2_41() {
    compare("2.41.0", legacy_paths).await;
}

#[tokio::test(flavor = "current_thread")]
async fn tracker_reads_on_2_42() {
    compare("2.42.0", |page| {
        let te = &page["trackedEntities"][0];
        let tei = te["trackedEntity"].as_str().unwrap().to_string();
        vec![
            format!("/api/tracker/trackedEntities?orgUnits={OU}&program={P}&pageSize=5&page=2&totalPages=true"),
            format!("/api/tracker/trackedEntities?orgUnits={OU}&program={P}&filter={NID}:like:40&pageSize=50"),
            format!("/api/tracker/trackedEntities/{tei}?program={P}&fields=*"),
            format!("/api/tracker/enrollments?trackedEntity={tei}"),
            format!("/api/tracker/events?trackedEntity={tei}&paging=false"),
        ]
    })
    .await;
}
