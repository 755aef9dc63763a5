//! The outbox and its flush: capture with local effect and synthetic answers, UIDs added to
//! creates, ordering and batching, per-record result mapping, retries without duplicates,
//! refusals kept with dependents, author scope, retry and discard.
//!
//! About 1,350 lines: one fake DHIS2 (the legacy bulk endpoints with their failures) that every
//! test here drives; each test reads alone.
#![allow(clippy::unwrap_used)]

mod support;

use std::{cell::RefCell, collections::BTreeMap};

use futures::executor::block_on;
use serde_json::{json, Value};
use support::*;
use tracker_offline_core::{
    engine::{Engine, EngineConfig},
    flush::{interpret, FlushScope, Verdict},
    http::{HttpClient, HttpRequest, HttpResponse},
    kdf::RustPbkdf2,
    params::Target,
    random::OsRandom,
    store::{KvStore, MemoryStore, StoreName, WriteBatch},
    writes::Family,
    CoreError, Result,
};

const API: &str = "http://127.0.0.1:9/api";
const OU: &str = "OuBaniNaim1";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Up,
    Down,
    CommitThenDrop,
    Status(u16),
    /// A captive portal or an SSO login page: 200 with an HTML page, for every request.
    Portal,
    /// The server names only the first record of each bulk request in its summaries.
    NamesOnlyFirst,
}

/// A server for the legacy bulk endpoints: keeps what it receives, counts creates per UID,
/// refuses tracked entities whose national ID is "DUPLICATE".
struct Server {
    /// Each request yields to other tasks once before it is answered (a request in flight).
    slow: std::cell::Cell<bool>,
    mode: RefCell<Mode>,
    stored: RefCell<BTreeMap<String, Value>>,
    creates: RefCell<BTreeMap<String, u32>>,
    requests: RefCell<Vec<(String, String, Value)>>,
    /// A record the importer throws on: any bulk body holding it gets a 500, nothing stored.
    poison: RefCell<Option<String>>,
    /// The `Retry-After` sent with `Mode::Status` answers.
    retry_after: RefCell<Option<String>>,
    /// Bulk bodies with more records than this get 413 (a proxy's upload limit).
    max_records: std::cell::Cell<usize>,
}

impl Server {
    fn new() -> Self {
        Self {
            slow: std::cell::Cell::new(false),
            mode: RefCell::new(Mode::Up),
            stored: RefCell::default(),
            creates: RefCell::default(),
            requests: RefCell::default(),
            poison: RefCell::default(),
            retry_after: RefCell::default(),
            max_records: std::cell::Cell::new(usize::MAX),
        }
    }

    /// The stored tracked entities named, each with its stored enrollments and events nested
    /// (the legacy export with `fields=*`).
    fn tracked_entities(&self, uids: &[&str]) -> Vec<Value> {
        let stored = self.stored.borrow();
        let of = |tei: &str, kind: &str| -> Vec<Value> {
            stored
                .values()
                .filter(|r| {
                    r["trackedEntityInstance"] == tei
                        && r.get(kind).is_some()
                        && r.get("event").is_none() == (kind == "enrollment")
                })
                .cloned()
                .collect()
        };
        uids.iter()
            .filter_map(|uid| stored.get(*uid).filter(|r| r.get("trackedEntityType").is_some()).cloned())
            .map(|mut tei| {
                let uid = tei["trackedEntityInstance"].as_str().unwrap_or_default().to_string();
                let mut enrollments = of(&uid, "enrollment");
                let events = of(&uid, "event");
                for en in &mut enrollments {
                    let id = en["enrollment"].clone();
                    en["events"] = Value::Array(events.iter().filter(|ev| ev["enrollment"] == id).cloned().collect());
                }
                tei["enrollments"] = Value::Array(enrollments);
                tei
            })
            .collect()
    }

    /// Requests that carried a body for this bulk endpoint (`trackedEntityInstances`, ...).
    fn bulk_requests(&self, path: &str) -> usize {
        self.requests.borrow().iter().filter(|(m, u, _)| m == "POST" && u.contains(&format!("/api/{path}?"))).count()
    }
}

fn ok(status: u16, v: Value) -> Result<HttpResponse> {
    Ok(HttpResponse { status, headers: vec![], body: v.to_string().into_bytes() })
}

impl HttpClient for &Server {
    async fn send(&self, r: HttpRequest) -> Result<HttpResponse> {
        if self.slow.get() {
            yield_once().await;
        }
        let t = Target::parse(&r.url);
        let body: Value = r.body.as_ref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
        self.requests.borrow_mut().push((r.method.clone(), r.url.clone(), body.clone()));
        let mode = *self.mode.borrow();
        match mode {
            Mode::Down => return Err(CoreError::ServerUnreachable("Failed to fetch".into())),
            Mode::Status(s) => {
                let mut answer = ok(s, json!({"httpStatusCode": s, "message": "injected"}))?;
                if let Some(after) = self.retry_after.borrow().clone() {
                    answer.headers.push(("retry-after".into(), after));
                }
                return Ok(answer);
            }
            Mode::Portal => {
                return Ok(HttpResponse {
                    status: 200,
                    headers: vec![("content-type".into(), "text/html;charset=UTF-8".into())],
                    body: b"<!DOCTYPE html><html><body>Welcome to Clinic WiFi: accept the terms</body></html>".to_vec(),
                })
            }
            _ => {}
        }
        if t.path == "/api/me" {
            return ok(
                200,
                json!({"id": "UsNurse0001", "username": if r.headers.iter().any(|(_, v)| v.contains("bnVyc2Uy")) { "nurse2" } else { "nurse1" },
                "displayName": "Nurse", "organisationUnits": [{"id": OU}]}),
            );
        }
        if t.path == "/api/system/info" {
            return ok(200, json!({"version": "2.40.3", "serverDate": "2026-11-26T09:00:00.000"}));
        }
        if r.method == "GET" && t.path.trim_end_matches(".json") == "/api/trackedEntityInstances" {
            let wanted: Vec<&str> = t.get("trackedEntityInstance").unwrap_or_default().split(';').collect();
            return ok(200, json!({"trackedEntityInstances": self.tracked_entities(&wanted)}));
        }
        let (wrapper, key) = match t.path.as_str() {
            "/api/trackedEntityInstances" => ("trackedEntityInstances", "trackedEntityInstance"),
            "/api/enrollments" => ("enrollments", "enrollment"),
            "/api/events" => ("events", "event"),
            _ => return ok(200, json!({"status": "OK"})),
        };
        let items = body.get(wrapper).and_then(Value::as_array).cloned().unwrap_or_default();
        if items.len() > self.max_records.get() {
            return Ok(HttpResponse {
                status: 413,
                headers: vec![],
                body: b"<html>413 Request Entity Too Large</html>".to_vec(),
            });
        }
        if let Some(poison) = self.poison.borrow().as_ref() {
            if items.iter().any(|i| i[key].as_str() == Some(poison.as_str())) {
                return ok(
                    500,
                    json!({"httpStatusCode": 500, "status": "ERROR", "message": "java.lang.NullPointerException"}),
                );
            }
        }
        let mut summaries = Vec::new();
        let mut any_error = false;
        for item in items {
            let uid = item[key].as_str().unwrap_or_default().to_string();
            let duplicate = item["attributes"].as_array().is_some_and(|a| a.iter().any(|x| x["value"] == "DUPLICATE"));
            let parent_missing = key != "trackedEntityInstance"
                && item["trackedEntityInstance"].as_str().is_some_and(|p| !self.stored.borrow().contains_key(p));
            if duplicate || parent_missing {
                any_error = true;
                summaries.push(json!({"responseType": "ImportSummary", "status": "ERROR", "reference": uid,
                    "conflicts": [{"object": "Attribute.value", "value": if duplicate { "Non-unique attribute value" } else { "TEI not found" }}]}));
                continue;
            }
            if t.get("strategy") == Some("DELETE") {
                self.stored.borrow_mut().remove(&uid);
            } else {
                if !self.stored.borrow().contains_key(&uid) {
                    *self.creates.borrow_mut().entry(uid.clone()).or_default() += 1;
                }
                self.stored.borrow_mut().insert(uid.clone(), item.clone());
            }
            summaries.push(json!({"responseType": "ImportSummary", "status": "SUCCESS", "reference": uid}));
        }
        if mode == Mode::NamesOnlyFirst {
            summaries.truncate(1);
        }
        if mode == Mode::CommitThenDrop {
            *self.mode.borrow_mut() = Mode::Up;
            return Err(CoreError::ServerUnreachable("connection closed".into()));
        }
        ok(
            if any_error { 409 } else { 200 },
            json!({"httpStatusCode": if any_error { 409 } else { 200 }, "status": if any_error { "ERROR" } else { "OK" },
            "response": {"responseType": "ImportSummaries", "importSummaries": summaries}}),
        )
    }
}

type E<'a> = EngineOver<'a, MemoryStore>;
type EngineOver<'a, S> = Engine<S, RustPbkdf2, OsRandom, &'a Server>;

fn engine<'a>(store: &MemoryStore, server: &'a Server) -> E<'a> {
    Engine::new(EngineConfig::new(API, fast_policy()).unwrap(), store.clone(), RustPbkdf2, OsRandom, server)
}

async fn write<S: KvStore>(e: &EngineOver<'_, S>, method: &str, path: &str, body: Value) -> Value {
    let prepared =
        e.prepare_write(method, &format!("{API}/{path}"), "application/json", body.to_string().as_bytes()).unwrap();
    let r = e.capture_write(&prepared, T0).await.unwrap();
    if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap()
    }
}

async fn register<S: KvStore>(e: &EngineOver<'_, S>, national_id: &str) -> (String, String, String) {
    let r = write(
        e,
        "POST",
        "trackedEntityInstances",
        json!({"trackedEntityType": "TetPerson01", "orgUnit": OU,
        "attributes": [{"attribute": "AtNationId1", "value": national_id}]}),
    )
    .await;
    let tei = r["response"]["importSummaries"][0]["reference"].as_str().unwrap().to_string();
    let r = write(
        e,
        "POST",
        "enrollments",
        json!({"trackedEntityInstance": tei, "program": "PrMchProg01", "orgUnit": OU,
        "status": "ACTIVE", "enrollmentDate": "2026-11-26", "incidentDate": "2026-11-26"}),
    )
    .await;
    let enrollment = r["response"]["importSummaries"][0]["reference"].as_str().unwrap().to_string();
    let r = write(e, "POST", "events.json", json!({"events": [{"trackedEntityInstance": tei, "program": "PrMchProg01",
        "programStage": "PsAncVisit1", "enrollment": enrollment, "orgUnit": OU, "status": "ACTIVE", "eventDate": "2026-11-26", "dataValues": []}]})).await;
    let event = r["response"]["importSummaries"][0]["reference"].as_str().unwrap().to_string();
    (tei, enrollment, event)
}

/// nurse1 and nurse2 both logged in online once on this device (nurse2 by handover), then
/// the server goes away and nobody is logged in.
async fn two_nurses_then_offline<'a>(store: &MemoryStore, server: &'a Server) -> E<'a> {
    let e = engine(store, server);
    e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
    e.login("nurse2", "Nurse2!clinic", T0).await.unwrap(); // handover
    e.logout();
    *server.mode.borrow_mut() = Mode::Down;
    e
}

async fn logged_in<'a>(store: &MemoryStore, server: &'a Server) -> E<'a> {
    let e = engine(store, server);
    e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
    *server.mode.borrow_mut() = Mode::Down;
    e
}

#[test]
fn offline_registration_is_answered_locally_and_visible_in_reads() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        let (tei, enrollment, event) = register(&e, "401234567").await;
        assert!(tracker_offline_core::records::is_uid(&tei));
        write(
            &e,
            "PUT",
            &format!("events/{event}/DeWeight001"),
            json!({"event": event, "dataValues": [{"dataElement": "DeWeight001", "value": "61"}]}),
        )
        .await;
        write(
            &e,
            "PUT",
            &format!("events/{event}/DeBloodPr01"),
            json!({"event": event, "dataValues": [{"dataElement": "DeBloodPr01", "value": "120"}]}),
        )
        .await;
        let dash: Value = serde_json::from_slice(
            &e.answer_offline(&format!("{API}/trackedEntityInstances/{tei}.json?program=PrMchProg01&fields=*"))
                .await
                .unwrap()
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(dash["enrollments"][0]["enrollment"], enrollment);
        let ev = &dash["enrollments"][0]["events"][0];
        assert_eq!(ev["dataValues"].as_array().unwrap().len(), 2);
        assert_eq!(ev["storedBy"], "nurse1");
        let grid: Value = serde_json::from_slice(
            &e.answer_offline(&format!(
                "{API}/trackedEntityInstances/query.json?ou={OU}&attribute=AtNationId1:EQ:401234567"
            ))
            .await
            .unwrap()
            .unwrap()
            .body,
        )
        .unwrap();
        assert_eq!(grid["rows"][0][0], tei.as_str());
        let counts = e.outbox_counts().await.unwrap();
        assert_eq!(counts.pending, 5);
        assert_eq!(counts.pending_by_author["nurse1"], 5);
        assert!(!contains(&dump(&store).await, "401234567"));
    });
}

#[test]
fn flush_batches_in_dependency_order_and_sends_each_record_once() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        let mut events = Vec::new();
        for i in 0..3 {
            let (_, _, ev) = register(&e, &format!("40000000{i}")).await;
            events.push(ev);
        }
        for ev in &events {
            for v in ["60", "61", "62"] {
                write(
                    &e,
                    "PUT",
                    &format!("events/{ev}/DeWeight001"),
                    json!({"dataValues": [{"dataElement": "DeWeight001", "value": v}]}),
                )
                .await;
            }
        }
        *server.mode.borrow_mut() = Mode::Up;
        server.requests.borrow_mut().clear();
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.sent, 18);
        assert_eq!(report.remaining, 0);
        assert_eq!(report.requests, 3, "one bulk request per kind");
        // (The flush first asks which API family the server has now: a GET.)
        let paths: Vec<String> = server
            .requests
            .borrow()
            .iter()
            .filter(|(m, _, _)| m == "POST")
            .map(|(_, u, _)| Target::parse(u).path)
            .collect();
        assert_eq!(paths, ["/api/trackedEntityInstances", "/api/enrollments", "/api/events"]);
        assert!(server.creates.borrow().values().all(|n| *n == 1));
        assert_eq!(server.creates.borrow().len(), 9);
        // The event carries its last value and its author.
        let stored = server.stored.borrow()[&events[0]].clone();
        assert_eq!(stored["dataValues"][0]["value"], "62");
        assert_eq!(stored["storedBy"], "nurse1");
        assert_eq!(e.outbox_counts().await.unwrap().pending, 0);
    });
}

#[test]
fn a_lost_response_after_commit_is_replayed_without_duplicates() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        register(&e, "400000001").await;
        *server.mode.borrow_mut() = Mode::CommitThenDrop;
        let first = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(first.stopped.as_deref(), Some("SERVER_UNREACHABLE"));
        assert_eq!(first.remaining, 3);
        let second = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(second.remaining, 0);
        assert!(server.creates.borrow().values().all(|n| *n == 1), "{:?}", server.creates.borrow());
    });
}

#[test]
fn a_refused_record_and_its_dependents_are_kept_and_unrelated_work_goes_on() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        let (bad_tei, _, _) = register(&e, "DUPLICATE").await;
        let (good_tei, _, good_event) = register(&e, "400000002").await;
        *server.mode.borrow_mut() = Mode::Up;
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.sent, 3);
        assert_eq!(report.failed, 3);
        assert!(server.stored.borrow().contains_key(&good_tei));
        assert!(server.stored.borrow().contains_key(&good_event));
        assert!(!server.stored.borrow().contains_key(&bad_tei));
        let failures = e.failures().await.unwrap();
        assert_eq!(failures.len(), 3);
        assert!(failures[0].reasons.iter().any(|r| r.contains("Non-unique attribute value")), "{failures:?}");
        assert!(
            failures[1].reasons.iter().any(|r| r.contains("waits for a record the server refused")),
            "{failures:?}"
        );
        // The refused registration is still readable locally.
        assert!(
            e.answer_offline(&format!("{API}/trackedEntityInstances/{bad_tei}.json")).await.unwrap().unwrap().status
                == 200
        );
        // Retry after the cause is fixed: here the user discards the duplicate instead.
        let id = failures[0].id.clone();
        e.discard(&id).await.unwrap();
        assert_eq!(e.failures().await.unwrap().len(), 2);
        for f in e.failures().await.unwrap() {
            e.retry(&f.id).await.unwrap();
        }
        assert_eq!(e.outbox_counts().await.unwrap().pending, 2);
    });
}

#[test]
fn retry_classification_of_server_answers() {
    let uids = vec!["Te000000001".to_string()];
    let r = |status: u16, body: &str| HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec() };
    assert!(matches!(interpret(None, &uids, Family::Legacy), Verdict::Retry(_)));
    assert!(matches!(interpret(Some(&r(503, "")), &uids, Family::Legacy), Verdict::Retry(_)));
    assert!(matches!(interpret(Some(&r(504, "<html>")), &uids, Family::Tracker), Verdict::Retry(_)));
    assert_eq!(interpret(Some(&r(401, r#"{"message":"Unauthorized"}"#)), &uids, Family::Legacy), Verdict::AuthRequired);
    match interpret(Some(&r(401, r#"{"message":"OWNERSHIP_ACCESS_DENIED"}"#)), &uids, Family::Legacy) {
        Verdict::PerRecord { ok, refused, .. } => {
            assert!(ok.is_empty());
            assert!(refused["Te000000001"][0].contains("ownership"));
        }
        other => panic!("{other:?}"),
    }
    // Tracker ImportReport with one error among two records (atomicMode=OBJECT).
    let two = vec!["Te000000001".to_string(), "Te000000002".to_string()];
    let report = r#"{"status":"ERROR","validationReport":{"errorReports":[{"uid":"Te000000002","errorCode":"E1064","message":"Non-unique attribute value"}]}}"#;
    match interpret(Some(&r(409, report)), &two, Family::Tracker) {
        Verdict::PerRecord { ok, refused, .. } => {
            // The report does not name the first record as persisted: it is sent again.
            assert!(!ok.contains("Te000000001") && !refused.contains_key("Te000000001"));
            assert!(refused["Te000000002"][0].starts_with("E1064"));
        }
        other => panic!("{other:?}"),
    }
    // A 400 WebMessage without summaries refuses the whole request with its message.
    match interpret(Some(&r(400, r#"{"message":"Bad JSON"}"#)), &uids, Family::Legacy) {
        Verdict::PerRecord { refused, .. } => assert_eq!(refused["Te000000001"], vec!["Bad JSON".to_string()]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn author_scope_sends_only_own_entries_and_says_who_waits() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = two_nurses_then_offline(&store, &server).await;
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        register(&e, "400000011").await;
        e.logout();
        e.login("nurse2", "Nurse2!clinic", T0).await.unwrap();
        register(&e, "400000022").await;
        *server.mode.borrow_mut() = Mode::Up;
        let report = e.flush(FlushScope::Author, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.sent, 3);
        assert_eq!(report.remaining, 3);
        assert_eq!(report.waiting_for, vec!["nurse1".to_string()]);
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.remaining, 0);
        let authors: Vec<String> = server
            .stored
            .borrow()
            .values()
            .filter_map(|v| v.get("storedBy").and_then(Value::as_str).map(str::to_string))
            .collect();
        assert!(authors.contains(&"nurse1".to_string()) && authors.contains(&"nurse2".to_string()), "{authors:?}");
    });
}

#[test]
fn auth_refusal_stops_the_flush_and_keeps_everything() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        register(&e, "400000003").await;
        *server.mode.borrow_mut() = Mode::Status(401);
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.stopped.as_deref(), Some("AUTH_REQUIRED"));
        assert_eq!(report.remaining, 3);
        assert_eq!(e.outbox_counts().await.unwrap().failed, 0);
    });
}

#[test]
fn malformed_writes_are_refused_without_a_trace() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        for (method, path, body) in [
            ("POST", "trackedEntityInstances", "{not json"),
            ("POST", "trackedEntityInstances", r#"{"trackedEntityInstance":"bad uid!"}"#),
            ("POST", "events", r#"{"events": 3}"#),
            ("PUT", "events/EvAncVisit1/DeWeight001", r#"{"dataValues": []}"#),
        ] {
            let err =
                e.prepare_write(method, &format!("{API}/{path}"), "application/json", body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "BAD_INPUT", "{path} {body}");
        }
        assert_eq!(e.outbox_counts().await.unwrap().pending, 0);
        // Unknown writes are queued raw and answered 202.
        let prepared =
            e.prepare_write("POST", &format!("{API}/dataStore/ns/k"), "application/json", b"{\"a\":1}").unwrap();
        let r = e.capture_write(&prepared, T0).await.unwrap();
        assert_eq!(r.status, 202);
        *server.mode.borrow_mut() = Mode::Up;
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.sent, 1);
        assert!(server
            .requests
            .borrow()
            .iter()
            .any(|(m, u, b)| m == "POST" && u.ends_with("/dataStore/ns/k") && b["a"] == 1));
    });
}

#[test]
fn a_portal_answering_200_html_leaves_the_outbox_intact() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        register(&e, "400000001").await;
        write(&e, "PUT", "userSettings/keyUiLocale", json!("ar")).await;
        *server.mode.borrow_mut() = Mode::Portal;
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.sent, 0, "{report:?}");
        assert_eq!(report.stopped.as_deref(), Some("SERVER_UNREACHABLE"));
        assert_eq!(report.remaining, 4);
        assert_eq!(e.outbox_counts().await.unwrap().pending, 4);
        // The real server, later, receives everything once.
        *server.mode.borrow_mut() = Mode::Up;
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.remaining, 0, "{report:?}");
        assert_eq!(server.creates.borrow().len(), 3);
    });
}

#[test]
fn records_the_server_does_not_name_are_sent_again() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        let (first, _, _) = register(&e, "400000001").await;
        let (second, _, _) = register(&e, "400000002").await;
        *server.mode.borrow_mut() = Mode::NamesOnlyFirst;
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        // Only one TEI, one enrollment and one event were named: the others stay queued.
        assert!(report.remaining > 0, "{report:?}");
        let tei_requests = |srv: &Server| {
            srv.requests
                .borrow()
                .iter()
                .filter(|(_, u, _)| Target::parse(u).path == "/api/trackedEntityInstances")
                .map(|(_, _, b)| b["trackedEntityInstances"].as_array().unwrap().len())
                .collect::<Vec<_>>()
        };
        assert_eq!(tei_requests(&server), vec![2]);
        *server.mode.borrow_mut() = Mode::Up;
        server.requests.borrow_mut().clear();
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.remaining, 0, "{report:?}");
        // The unnamed one went again, alone; the server holds each once.
        assert_eq!(tei_requests(&server), vec![1]);
        let posts: Vec<Value> =
            server.requests.borrow().iter().filter(|(m, _, _)| m == "POST").map(|(_, _, b)| b.clone()).collect();
        let sent_again = &posts[0]["trackedEntityInstances"][0]["trackedEntityInstance"];
        assert!(sent_again == second.as_str() || sent_again == first.as_str());
        assert!(server.creates.borrow().values().all(|n| *n == 1));
    });
}

#[test]
fn an_online_write_is_mirrored_locally_only_when_the_answer_accepts_it() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        let tei_post = |national_id: &str| {
            e.prepare_write(
                "POST",
                &format!("{API}/trackedEntityInstances"),
                "application/json",
                json!({"trackedEntityType": "TetPerson01", "orgUnit": OU,
                    "attributes": [{"attribute": "AtNationId1", "value": national_id}]})
                .to_string()
                .as_bytes(),
            )
            .unwrap()
        };
        let uid_of = |p: &tracker_offline_core::writes::PreparedWrite| {
            let body: Value = serde_json::from_slice(&p.body).unwrap();
            body["trackedEntityInstance"].as_str().unwrap().to_string()
        };
        let local = |uid: String| {
            let e = &e;
            async move {
                e.answer_offline(&format!("{API}/trackedEntityInstances/{uid}.json"))
                    .await
                    .unwrap()
                    .is_some_and(|r| r.status == 200)
            }
        };
        let summary = |status: &str, uid: &str| {
            json!({"httpStatus": "Created", "httpStatusCode": 201, "status": "OK",
                "response": {"responseType": "ImportSummaries", "importSummaries": [
                    {"responseType": "ImportSummary", "status": status, "reference": uid,
                     "conflicts": if status == "ERROR" { json!([{"object": "Attribute.value", "value": "Non-unique attribute value"}]) } else { json!([]) }}]}})
        };
        let as_answer = |v: Value| HttpResponse {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
        };
        // 201 with an ERROR summary: the server does not hold her; neither does the local copy.
        let refused = tei_post("400000001");
        let refused_uid = uid_of(&refused);
        let recorded = e.record_online_write(&refused, &as_answer(summary("ERROR", &refused_uid)), T0).await.unwrap();
        assert!(!recorded);
        assert!(!local(refused_uid).await);
        // A portal's HTML with 200: nothing recorded.
        let portal = tei_post("400000002");
        let portal_uid = uid_of(&portal);
        let html = HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/html".into())],
            body: b"<html>wifi</html>".to_vec(),
        };
        assert!(!e.record_online_write(&portal, &html, T0).await.unwrap());
        assert!(!local(portal_uid).await);
        // Accepted: mirrored, as synced (nothing queued).
        let accepted = tei_post("400000003");
        let accepted_uid = uid_of(&accepted);
        assert!(e.record_online_write(&accepted, &as_answer(summary("SUCCESS", &accepted_uid)), T0).await.unwrap());
        assert!(local(accepted_uid).await);
        assert_eq!(e.outbox_counts().await.unwrap().pending, 0);
    });
}

#[test]
fn a_visit_recorded_while_a_flush_is_in_flight_is_kept_and_sent_next() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        let (tei, enrollment, first_visit) = register(&e, "400000001").await;
        *server.mode.borrow_mut() = Mode::Up;
        server.slow.set(true);
        let second_visit_body = json!({"events": [{"trackedEntityInstance": tei, "program": "PrMchProg01",
            "programStage": "PsAncVisit1", "enrollment": enrollment, "orgUnit": OU, "status": "ACTIVE",
            "eventDate": "2026-11-27", "dataValues": [{"dataElement": "DeWeight001", "value": "71"}]}]});
        // The nurse saves a second visit while the flush waits for the server.
        let mut no_progress = |_: &_| {};
        let (report, second) = futures::future::join(e.flush(FlushScope::All, T0, &mut no_progress), async {
            yield_once().await;
            write(&e, "POST", "events.json", second_visit_body.clone()).await
        })
        .await;
        let report = report.unwrap();
        let second_visit = second["response"]["importSummaries"][0]["reference"].as_str().unwrap().to_string();
        assert_eq!(report.sent, 3, "{report:?}");
        let events = e
            .answer_offline(&format!("{API}/events.json?trackedEntityInstance={tei}&skipPaging=true"))
            .await
            .unwrap()
            .unwrap();
        let events: Value = serde_json::from_slice(&events.body).unwrap();
        let ids: Vec<&str> = events["events"].as_array().unwrap().iter().filter_map(|e| e["event"].as_str()).collect();
        assert!(ids.contains(&second_visit.as_str()), "the second visit is in the local copy: {ids:?}");
        assert!(ids.contains(&first_visit.as_str()));
        assert_eq!(e.outbox_counts().await.unwrap().pending, 1);
        server.slow.set(false);
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!((report.sent, report.remaining), (1, 0), "{report:?}");
        assert_eq!(server.stored.borrow()[&second_visit]["dataValues"][0]["value"], "71");
    });
}

#[test]
fn a_queued_record_missing_from_the_local_copy_is_never_counted_as_sent() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        register(&e, "400000001").await;
        // Storage loses the woman's records (damage, a wiped object store), the outbox survives.
        let mut wipe = WriteBatch::new();
        for (key, _) in store.list(StoreName::Records).await.unwrap() {
            wipe = wipe.delete(StoreName::Records, key);
        }
        store.write(wipe).await.unwrap();
        *server.mode.borrow_mut() = Mode::Up;
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.sent, 0, "{report:?}");
        assert_eq!(report.failed, 3, "{report:?}");
        let failures = e.failures().await.unwrap();
        assert!(
            failures.iter().all(|f| f.reasons.iter().any(|r| r.contains("missing from this device's copy"))),
            "{failures:?}"
        );
        assert!(server.stored.borrow().is_empty());
    });
}

#[test]
fn author_scope_does_not_deadlock_when_two_nurses_touch_one_woman() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = two_nurses_then_offline(&store, &server).await;
        // nurse1 registers a woman offline; after the shift change nurse2 records her visit.
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        let (tei, enrollment, _) = register(&e, "400000033").await;
        e.logout();
        e.login("nurse2", "Nurse2!clinic", T0).await.unwrap();
        let visit = write(
            &e,
            "POST",
            "events.json",
            json!({"events": [{"trackedEntityInstance": tei, "program": "PrMchProg01",
            "programStage": "PsAncVisit1", "enrollment": enrollment, "orgUnit": OU, "status": "ACTIVE",
            "eventDate": "2026-11-28", "dataValues": [{"dataElement": "DeWeight001", "value": "70"}]}]}),
        )
        .await;
        let visit = visit["response"]["importSummaries"][0]["reference"].as_str().unwrap().to_string();
        *server.mode.borrow_mut() = Mode::Up;
        // nurse2 online: her visit waits for nurse1's registration.
        let report = e.flush(FlushScope::Author, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.sent, 0, "{report:?}");
        assert_eq!(report.waiting_for, vec!["nurse1".to_string()]);
        // nurse1 online: her registration goes, though nurse2's visit of that woman waits.
        e.logout();
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        let report = e.flush(FlushScope::Author, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.sent, 3, "{report:?}");
        assert!(server.stored.borrow().contains_key(&tei));
        // nurse2 again: her visit now goes.
        e.logout();
        e.login("nurse2", "Nurse2!clinic", T0).await.unwrap();
        let report = e.flush(FlushScope::Author, T0, &mut |_| {}).await.unwrap();
        assert_eq!((report.sent, report.remaining), (1, 0), "{report:?}");
        assert_eq!(server.stored.borrow()[&visit]["storedBy"], "nurse2");
    });
}

/// Issue 14 (attribution): every record a flush sends names the nurse who made it as
/// `storedBy`, whoever's session sends it: a woman nurse1 registered offline (her tracked
/// entity, its attribute, her enrollment, her visit and its value), and later a value and an
/// attribute nurse2 changed in records the server already holds (an update goes over the
/// server's copy, whose `storedBy` names the previous writer).
#[test]
fn every_record_a_flush_sends_names_its_author_whoever_sends_it() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = two_nurses_then_offline(&store, &server).await;
        let weight = |value: &str| json!({"dataValues": [{"dataElement": "DeWeight001", "value": value}]});
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        let (tei, enrollment, event) = register(&e, "400000044").await;
        write(&e, "PUT", &format!("events/{event}/DeWeight001"), weight("61")).await;
        e.logout();
        e.login("nurse2", "Nurse2!clinic", T0).await.unwrap();
        *server.mode.borrow_mut() = Mode::Up;
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!((report.sent, report.remaining), (4, 0), "{report:?}");
        {
            let stored = server.stored.borrow();
            assert_eq!(stored[&tei]["storedBy"], "nurse1", "the tracked entity: {}", stored[&tei]);
            assert_eq!(stored[&tei]["attributes"][0]["storedBy"], "nurse1", "her attribute: {}", stored[&tei]);
            assert_eq!(stored[&enrollment]["storedBy"], "nurse1", "the enrollment: {}", stored[&enrollment]);
            assert_eq!(stored[&event]["storedBy"], "nurse1", "the visit: {}", stored[&event]);
            assert_eq!(stored[&event]["dataValues"][0]["storedBy"], "nurse1", "its value: {}", stored[&event]);
        }
        // Offline again, nurse2 corrects the weight and the national ID; nurse1 sends them.
        *server.mode.borrow_mut() = Mode::Down;
        write(&e, "PUT", &format!("events/{event}/DeWeight001"), weight("62")).await;
        write(
            &e,
            "PUT",
            &format!("trackedEntityInstances/{tei}"),
            json!({"trackedEntityInstance": tei, "trackedEntityType": "TetPerson01", "orgUnit": OU,
            "attributes": [{"attribute": "AtNationId1", "value": "400000045"}]}),
        )
        .await;
        e.logout();
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        *server.mode.borrow_mut() = Mode::Up;
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!((report.sent, report.remaining), (2, 0), "{report:?}");
        let stored = server.stored.borrow();
        assert_eq!(stored[&event]["dataValues"][0]["value"], "62", "{}", stored[&event]);
        assert_eq!(stored[&event]["storedBy"], "nurse2", "the visit nurse2 changed: {}", stored[&event]);
        assert_eq!(stored[&event]["dataValues"][0]["storedBy"], "nurse2", "the value she changed: {}", stored[&event]);
        assert_eq!(stored[&tei]["attributes"][0]["value"], "400000045", "{}", stored[&tei]);
        assert_eq!(stored[&tei]["storedBy"], "nurse2", "the woman nurse2 changed: {}", stored[&tei]);
        assert_eq!(stored[&tei]["attributes"][0]["storedBy"], "nurse2", "the ID she changed: {}", stored[&tei]);
    });
}

/// Registrations queued offline: (tracked entity, enrollment, event) of each.
async fn registrations(e: &E<'_>, n: usize) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(register(e, &format!("49000000{i}")).await);
    }
    out
}

#[test]
fn a_record_the_server_always_fails_on_is_found_by_halves_and_moved_aside_at_the_limit() {
    block_on(async {
        let server = Server::new();
        let store = MemoryStore::new();
        let e = logged_in(&store, &server).await;
        let women = registrations(&e, 8).await;
        let (poison_tei, _, poison_event) = women[3].clone();
        *server.poison.borrow_mut() = Some(poison_tei.clone());
        *server.mode.borrow_mut() = Mode::Up;
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        // The other seven women arrive whole; hers waits (3 entries), nothing failed yet.
        assert_eq!((report.sent, report.failed, report.remaining), (21, 0, 3), "{report:?}");
        assert!(report.stopped.is_none(), "{report:?}");
        for (tei, enrollment, event) in women.iter().filter(|w| w.0 != poison_tei) {
            for uid in [tei, enrollment, event] {
                assert_eq!(server.creates.borrow().get(uid), Some(&1), "{uid}");
            }
        }
        // 1 whole request, then halves: 4+4, 2+2, 1+1 (the failing side split each time).
        assert!(
            server.bulk_requests("trackedEntityInstances") <= 7,
            "{}",
            server.bulk_requests("trackedEntityInstances")
        );
        // Four more flushes: her entry reaches the limit (5) and is moved aside with the answer.
        for _ in 0..4 {
            e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        }
        let failures = e.failures().await.unwrap();
        let hers = failures.iter().find(|f| f.records.contains(&poison_tei)).expect("her registration is a failure");
        assert!(hers.reasons[0].contains("5 times") && hers.reasons[0].contains("HTTP 500"), "{:?}", hers.reasons);
        assert!(failures.iter().any(|f| f.records.contains(&poison_event)), "her visit waits as a failure too");
        let status = e.status().await.unwrap();
        assert_eq!((status.pending, status.failed), (0, 3), "{status:?}");
        // A person retries after the server was fixed: it is sent.
        *server.poison.borrow_mut() = None;
        for f in failures {
            e.retry(&f.id).await.unwrap();
        }
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!((report.sent, report.failed, report.remaining), (3, 0, 0), "{report:?}");
    });
}

#[test]
fn a_server_failing_everything_is_not_searched_record_by_record() {
    block_on(async {
        let server = Server::new();
        let store = MemoryStore::new();
        let e = logged_in(&store, &server).await;
        registrations(&e, 8).await;
        *server.mode.borrow_mut() = Mode::Status(500);
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.stopped.as_deref(), Some("SERVER_BUSY"), "{report:?}");
        assert_eq!(report.requests, 3, "the request and its two halves, then the device backs off: {report:?}");
        assert_eq!((report.sent, report.failed, report.remaining), (0, 0, 24), "{report:?}");
        assert!(e.outbox_entries().await.unwrap().iter().all(|x| x.attempts == 0), "no record is blamed");
    });
}

#[test]
fn retry_after_is_honoured_by_every_flush_and_the_app_is_answered_locally_meanwhile() {
    block_on(async {
        let server = Server::new();
        let store = MemoryStore::new();
        let e = logged_in(&store, &server).await;
        registrations(&e, 2).await;
        *server.mode.borrow_mut() = Mode::Status(503);
        *server.retry_after.borrow_mut() = Some("120".into());
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.stopped.as_deref(), Some("SERVER_BUSY"), "{report:?}");
        assert_eq!(report.retry_after_ms, Some(120_000), "{report:?}");
        *server.mode.borrow_mut() = Mode::Up;
        let before = server.requests.borrow().len();
        // A minute later: nothing is sent, whoever asks; the app's requests go to the local copy.
        let report = e.flush(FlushScope::All, T0 + 60_000, &mut |_| {}).await.unwrap();
        assert_eq!((report.requests, report.retry_after_ms), (0, Some(60_000)), "{report:?}");
        assert!(!e.should_try_network(T0 + 60_000));
        assert_eq!(server.requests.borrow().len(), before, "no request while the server asked for quiet");
        // After the time it asked for: sent.
        let report = e.flush(FlushScope::All, T0 + 121_000, &mut |_| {}).await.unwrap();
        assert_eq!((report.sent, report.remaining, report.stopped.as_deref()), (6, 0, None), "{report:?}");
        // 429 and 500 are "busy" too, not "reachable".
        assert!(!e.record_network(Some(429), None, T0 + 200_000));
        assert!(!e.record_network(Some(500), None, T0 + 200_000));
        assert!(e.record_network(Some(409), None, T0 + 200_000));
    });
}

#[test]
fn a_request_too_large_for_the_server_is_split_down_to_one_record() {
    block_on(async {
        let server = Server::new();
        let store = MemoryStore::new();
        let e = logged_in(&store, &server).await;
        registrations(&e, 8).await;
        *server.mode.borrow_mut() = Mode::Up;
        server.max_records.set(3);
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!((report.sent, report.failed, report.remaining), (24, 0, 0), "{report:?}");
        assert_eq!(server.creates.borrow().len(), 24);
        assert!(server.creates.borrow().values().all(|n| *n == 1));
        // A single record over the limit: refused with the reason, kept for a person.
        registrations(&e, 1).await;
        server.max_records.set(0);
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.failed, 3, "{report:?}");
        let failures = e.failures().await.unwrap();
        assert!(failures.iter().any(|f| f.reasons.iter().any(|r| r.contains("413"))), "{failures:?}");
    });
}

#[test]
fn a_password_the_server_refused_is_never_sent_again_until_an_online_login() {
    block_on(async {
        let server = Server::new();
        let store = MemoryStore::new();
        let e = logged_in(&store, &server).await;
        registrations(&e, 1).await;
        *server.mode.borrow_mut() = Mode::Status(401);
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.stopped.as_deref(), Some("AUTH_REQUIRED"));
        let after_refusal = server.requests.borrow().len();
        assert!(e.status().await.unwrap().auth_required);
        // Every later attempt stays on the device: flushes, session renewal, downloads, even
        // after the worker restarted (a new engine over the same store, the key handed over).
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!((report.requests, report.stopped.as_deref()), (0, Some("AUTH_REQUIRED")));
        assert!(!e.renew_session().await);
        let download = e.download(Default::default(), T0, &mut |_| {}).await;
        assert!(matches!(download, Err(CoreError::AuthRequired)), "{download:?}");
        let restarted = engine(&store, &server);
        *server.mode.borrow_mut() = Mode::Down;
        restarted.login("nurse1", "Nurse1!clinic", T0).await.unwrap(); // offline: the register
        *server.mode.borrow_mut() = Mode::Up;
        let after_refusal = after_refusal + 1; // her own login attempt (she typed it) went out
        let report = restarted.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!((report.requests, report.stopped.as_deref()), (0, Some("AUTH_REQUIRED")));
        assert_eq!(server.requests.borrow().len(), after_refusal, "nothing went out with the refused password");
        // She logs in online (the server accepts her password again): the work goes.
        restarted.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        assert!(!restarted.status().await.unwrap().auth_required);
        let report = restarted.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!((report.sent, report.remaining, report.stopped.as_deref()), (3, 0, None), "{report:?}");
    });
}

#[test]
fn a_damaged_stored_entry_is_shown_and_holds_nothing_back() {
    use tracker_offline_core::store::{KvStore, StoreName, WriteBatch};
    block_on(async {
        let server = Server::new();
        let store = MemoryStore::new();
        let e = logged_in(&store, &server).await;
        registrations(&e, 2).await;
        // One stored entry's bytes are damaged.
        let (key, mut sealed) = store.list(StoreName::Outbox).await.unwrap().remove(0);
        let last = sealed.len() - 1;
        sealed[last] ^= 0xff;
        store.write(WriteBatch::new().put(StoreName::Outbox, key.clone(), sealed)).await.unwrap();
        let status = e.status().await.unwrap();
        assert_eq!((status.pending, status.failed), (5, 1), "never counted as nothing: {status:?}");
        *server.mode.borrow_mut() = Mode::Up;
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.stopped, None, "{report:?}");
        assert!(report.sent >= 3, "the rest flows: {report:?}");
        let failures = e.failures().await.unwrap();
        let damaged = failures.iter().find(|f| f.id == format!("damaged:{key}")).expect("shown");
        assert!(damaged.reasons[0].starts_with("STORAGE_CORRUPT"), "{:?}", damaged.reasons);
        e.discard(&damaged.id).await.unwrap();
        assert!(e.failures().await.unwrap().iter().all(|f| !f.id.starts_with("damaged:")));
        assert_eq!(store.list(StoreName::Outbox).await.unwrap().iter().filter(|(k, _)| k == &key).count(), 0);
    });
}

#[test]
fn a_busy_answer_to_the_merge_read_holds_the_flush_back_as_asked() {
    block_on(async {
        let server = Server::new();
        let store = MemoryStore::new();
        let e = logged_in(&store, &server).await;
        let (_, _, event) = register(&e, "497777777").await;
        *server.mode.borrow_mut() = Mode::Up;
        assert_eq!(e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap().remaining, 0);
        // An update made offline: its flush first reads the server's copy (the merge).
        write(
            &e,
            "PUT",
            &format!("events/{event}/DeWeightKg1"),
            json!({"dataValues": [{"dataElement": "DeWeightKg1", "value": "70"}]}),
        )
        .await;
        *server.mode.borrow_mut() = Mode::Status(503);
        *server.retry_after.borrow_mut() = Some("30".into());
        let report = e.flush(FlushScope::All, T0 + 1_000, &mut |_| {}).await.unwrap();
        assert_eq!(
            (report.stopped.as_deref(), report.retry_after_ms),
            (Some("SERVER_BUSY"), Some(30_000)),
            "{report:?}"
        );
        let again = e.flush(FlushScope::All, T0 + 2_000, &mut |_| {}).await.unwrap();
        assert_eq!(again.requests, 0, "{again:?}");
    });
}

/// Found by the fuzz harness (tests/fuzz.rs, target `stored`): an outbox entry holding the last
/// sequence number (damaged storage, still authentic) made the next capture overflow; it is
/// refused as damaged storage, and nothing is written (no entry takes the place of another).
#[test]
fn an_entry_holding_the_last_sequence_number_refuses_the_next_capture_cleanly() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        register(&e, "401234567").await;
        let mut entry = e.outbox_entries().await.unwrap().remove(0);
        let id = entry.id();
        entry.seq = u64::MAX;
        e.vault()
            .put_record(tracker_offline_core::store::StoreName::Outbox, &id, &serde_json::to_vec(&entry).unwrap())
            .await
            .unwrap();
        let e = engine(&store, &server); // a restarted worker reads the sequence from storage
        e.vault().login_offline("nurse1", "Nurse1!clinic", T0).await.unwrap();
        let before = dump(&store).await;
        let prepared =
            e.prepare_write("PUT", &format!("{API}/dataStore/clinic/settings"), "application/json", b"{}").unwrap();
        let err = e.capture_write(&prepared, T0).await.unwrap_err();
        assert_eq!(err.code(), "STORAGE_CORRUPT");
        assert_eq!(dump(&store).await, before, "nothing written");
    });
}

/// Offline, nurse1 queues her own setting (a raw request) and a registration, then nurse2 logs in.
async fn nurse1_left_a_setting_and_a_registration<'a>(
    store: &MemoryStore,
    server: &'a Server,
    national_id: &str,
) -> E<'a> {
    let e = two_nurses_then_offline(store, server).await;
    e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
    write(&e, "PUT", "userDataStore/capture/layout", json!({"columns": ["name"]})).await;
    register(&e, national_id).await;
    e.logout();
    e.login("nurse2", "Nurse2!clinic", T0).await.unwrap();
    e
}

/// Issue 13 item 6: a raw request (a write the library does not model, e.g. the app's
/// `userDataStore`) names no author in its body: the server applies it as whoever sends it. It
/// is replayed only under its author's session, never under the nurse who flushes next.
#[test]
fn a_raw_request_is_sent_only_under_its_author() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = nurse1_left_a_setting_and_a_registration(&store, &server, "400000033").await;
        *server.mode.borrow_mut() = Mode::Up;
        let sent_before = server.requests.borrow().len();
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        let raw_sent = |from: usize| {
            server.requests.borrow()[from..].iter().filter(|(_, u, _)| u.contains("/userDataStore/")).count()
        };
        assert_eq!(raw_sent(sent_before), 0, "nurse1's own setting was sent under nurse2's session");
        assert_eq!(report.sent, 3, "the tracker records flow under the flusher, with their author as storedBy");
        assert_eq!(report.remaining, 1);
        assert_eq!(report.waiting_for, vec!["nurse1".to_string()]);
        e.logout();
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        let sent_before = server.requests.borrow().len();
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(raw_sent(sent_before), 1);
        assert_eq!(report.remaining, 0, "{report:?}");
    });
}

/// Issue 13 item 7: removing a user rotates the data key with the outbox in it. Her queued
/// registration stays queued, sealed under the new key, and is sent under her name by the
/// colleague who syncs; a request only she can send blocks the removal until it is gone.
#[test]
fn removing_a_user_keeps_her_unsent_work_and_waits_for_what_only_she_can_send() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = nurse1_left_a_setting_and_a_registration(&store, &server, "400000055").await;
        let before = dump(&store).await;
        let err = e.remove_user("nurse1").await.unwrap_err();
        assert_eq!(err.code(), "UNSENT_WORK");
        assert!(err.to_string().contains("1 unsent request(s) only she can send"), "{err}");
        assert_eq!(dump(&store).await, before, "a refused removal wrote something");
        let entries = e.outbox_entries().await.unwrap();
        let raw_id = entries
            .iter()
            .find(|x| x.author == "nurse1" && x.summary.contains("userDataStore"))
            .map(|x| x.id())
            .unwrap_or_else(|| panic!("no raw entry among {entries:?}"));
        e.discard(&raw_id).await.unwrap();
        let outcome = e.remove_user("nurse1").await.unwrap();
        assert_eq!(outcome.users_kept, 1);
        assert_eq!(e.outbox_counts().await.unwrap().pending_by_author.get("nurse1"), Some(&3));
        *server.mode.borrow_mut() = Mode::Up;
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!((report.sent, report.remaining), (3, 0), "{report:?}");
        e.logout();
        *server.mode.borrow_mut() = Mode::Down;
        assert_eq!(e.login("nurse1", "Nurse1!clinic", T0).await.unwrap_err().code(), "UNKNOWN_USER_OFFLINE");
        e.login("nurse2", "Nurse2!clinic", T0).await.unwrap();
    });
}

/// Issue 13 item 7: the server refusing the very password the register holds (changed on the
/// server, account disabled) stops it opening the clinic's data offline; nobody else loses
/// access, nothing is deleted, and an online login the server accepts opens it again.
#[test]
fn a_password_the_server_refuses_no_longer_opens_the_vault_offline() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = two_nurses_then_offline(&store, &server).await;
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        register(&e, "400000044").await;
        e.logout();
        // A wrong guess refused online changes nothing.
        *server.mode.borrow_mut() = Mode::Status(401);
        assert_eq!(e.login("nurse1", "not-her-password", T0).await.unwrap_err(), CoreError::BadCredentials);
        *server.mode.borrow_mut() = Mode::Down;
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        e.logout();
        // Her own password refused online: offline it no longer opens anything.
        *server.mode.borrow_mut() = Mode::Status(401);
        assert_eq!(e.login("nurse1", "Nurse1!clinic", T0).await.unwrap_err(), CoreError::BadCredentials);
        *server.mode.borrow_mut() = Mode::Down;
        assert_eq!(e.login("nurse1", "Nurse1!clinic", T0).await.unwrap_err(), CoreError::CredentialRevoked);
        assert!(e.status().await.unwrap().locked);
        // nurse2 still opens the clinic's data, with nurse1's unsent work in it.
        e.login("nurse2", "Nurse2!clinic", T0).await.unwrap();
        assert_eq!(e.outbox_counts().await.unwrap().pending, 3);
        e.logout();
        // The server accepts her password again (account re-enabled): online, then offline.
        *server.mode.borrow_mut() = Mode::Up;
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        e.logout();
        *server.mode.borrow_mut() = Mode::Down;
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
    });
}

/// The mark "the server refused this password" cannot be taken off by someone with the device's
/// storage and the old password (a nurse who left, her account disabled): neither by editing
/// the stored entry nor by putting back the entry as it was before the mark.
#[test]
fn the_servers_refusal_of_a_password_cannot_be_edited_or_rolled_back() {
    block_on(async {
        use tracker_offline_core::store::{KvStore, StoreName, WriteBatch};
        let store = MemoryStore::new();
        let server = Server::new();
        let e = two_nurses_then_offline(&store, &server).await;
        let before = store.list(StoreName::Users).await.unwrap();
        *server.mode.borrow_mut() = Mode::Status(401);
        assert_eq!(e.login("nurse1", "Nurse1!clinic", T0).await.unwrap_err(), CoreError::BadCredentials);
        *server.mode.borrow_mut() = Mode::Down;
        let after = store.list(StoreName::Users).await.unwrap();
        let (marked_key, marked) = after
            .iter()
            .find(|(k, v)| before.iter().any(|(bk, bv)| bk == k && bv != v))
            .expect("her entry changed")
            .clone();

        // The mark taken off the stored entry.
        let mut edited: Value = serde_json::from_slice(&marked).unwrap();
        edited.as_object_mut().unwrap().remove("refusedByServer");
        store
            .write(WriteBatch::new().put(StoreName::Users, marked_key.clone(), serde_json::to_vec(&edited).unwrap()))
            .await
            .unwrap();
        assert!(e.login("nurse1", "Nurse1!clinic", T0).await.is_err(), "an edited entry opened the vault");

        // Her entry as it was before the mark, put back.
        let (_, unmarked) = before.iter().find(|(k, _)| *k == marked_key).unwrap().clone();
        store.write(WriteBatch::new().put(StoreName::Users, marked_key.clone(), unmarked)).await.unwrap();
        assert!(
            e.login("nurse1", "Nurse1!clinic", T0).await.is_err(),
            "the entry from before the mark opened the vault"
        );

        // Put back as the vault wrote it: revoked, and nurse2 unaffected.
        store.write(WriteBatch::new().put(StoreName::Users, marked_key, marked)).await.unwrap();
        assert_eq!(e.login("nurse1", "Nurse1!clinic", T0).await.unwrap_err(), CoreError::CredentialRevoked);
        e.login("nurse2", "Nurse2!clinic", T0).await.unwrap();
    });
}

/// A woman too large for the server even alone (413) is refused; her enrollment and visit wait
/// as failures with her and are not sent to a server that has no woman to put them under
/// (found by the live dhis2-sim test of the 413 split).
#[test]
fn the_records_of_a_woman_too_large_for_the_server_are_not_sent_without_her() {
    block_on(async {
        let server = Server::new();
        let store = MemoryStore::new();
        let e = logged_in(&store, &server).await;
        registrations(&e, 1).await;
        *server.mode.borrow_mut() = Mode::Up;
        server.max_records.set(0);
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.failed, 3, "{report:?}");
        assert_eq!(server.bulk_requests("enrollments"), 0, "her enrollment went without her");
        assert_eq!(server.bulk_requests("events"), 0, "her visit went without her");
    });
}

#[test]
fn a_sent_outbox_entry_put_back_is_not_sent_again() {
    block_on(async {
        use tracker_offline_core::store::{KvStore, StoreName};
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        register(&e, "400000001").await;
        let queued = store.list(StoreName::Outbox).await.unwrap();
        assert_eq!(queued.len(), 3);
        *server.mode.borrow_mut() = Mode::Up;
        assert_eq!(e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap().sent, 3);
        assert_eq!(store.count(StoreName::Outbox).await.unwrap(), 0);
        // Someone with the storage puts the sent entries back (an older copy of each value).
        for (key, value) in queued {
            store.raw_put(StoreName::Outbox, &key, value).unwrap();
        }
        server.requests.borrow_mut().clear();
        let report = e.flush(FlushScope::All, T0 + 1, &mut |_| {}).await.unwrap();
        assert_eq!(report.sent, 0, "{report:?}");
        assert!(server.requests.borrow().iter().all(|(m, _, _)| m != "POST"), "a sent entry was sent again");
        assert!(server.creates.borrow().values().all(|n| *n == 1), "{:?}", server.creates.borrow());
        // They show as damaged, for a person to discard.
        let failures = e.failures().await.unwrap();
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(failures.iter().all(|f| f.id.starts_with("damaged:")), "{failures:?}");
        assert!(failures.iter().all(|f| f.reasons[0].starts_with("STORAGE_CORRUPT")), "{failures:?}");
    });
}

/// A `/api/tracker` import carrying relationships (the Capture app links two records this way)
/// is never captured without them: it reaches the server as it was written.
#[test]
fn relationships_written_offline_through_the_tracker_api_reach_the_server() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        let (tei, _, _) = register(&e, "400000077").await;
        let body = json!({"relationships": [{"relationshipType": "RtMotherCh1",
            "from": {"trackedEntity": {"trackedEntity": tei}}, "to": {"trackedEntity": {"trackedEntity": "TeOther0001"}}}]});
        let url = format!("{API}/41/tracker?async=false");
        let prepared = e.prepare_write("POST", &url, "application/json", body.to_string().as_bytes()).unwrap();
        e.capture_write(&prepared, T0).await.unwrap();
        // Offline, her relationships are not said to be none while the link waits to be sent.
        let asked = format!("{API}/41/tracker/relationships?trackedEntity={tei}");
        assert!(e.answer_offline(&asked).await.unwrap().is_none());
        *server.mode.borrow_mut() = Mode::Up;
        let report = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(report.remaining, 0, "{report:?}");
        let sent = server.requests.borrow().iter().filter(|(_, _, b)| b.to_string().contains("RtMotherCh1")).count();
        assert_eq!(sent, 1, "the relationship reached the server once");
    });
}

/// The outbox counts from every entry, as a fresh context counts them.
async fn recount(e: &E<'_>) -> tracker_offline_core::outbox::OutboxCounts {
    let mut counts = tracker_offline_core::outbox::OutboxCounts::default();
    for entry in e.outbox_entries().await.unwrap() {
        if matches!(entry.state, tracker_offline_core::outbox::EntryState::Pending) {
            counts.pending += 1;
            *counts.pending_by_author.entry(entry.author.clone()).or_default() += 1;
        } else {
            counts.failed += 1;
            *counts.failed_by_author.entry(entry.author.clone()).or_default() += 1;
        }
    }
    counts
}

/// Issue 17, P4: the status the app asks after every write takes the outbox counts kept by the
/// writes themselves (reading every entry again made each write slower than the one before);
/// they stay exact through captures by two nurses, a flush and another context's write.
#[test]
fn outbox_counts_kept_through_writes_stay_exact() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server::new();
        let e = logged_in(&store, &server).await;
        let (_, _, event) = register(&e, "401234560").await;
        let base = e.outbox_counts().await.unwrap();
        let by = |c: &tracker_offline_core::outbox::OutboxCounts, who: &str| c.pending_by_author.get(who).copied();
        for i in 1..=3u64 {
            write(
                &e,
                "PUT",
                &format!("events/{event}/DeWeight001"),
                json!({"event": event, "dataValues": [{"dataElement": "DeWeight001", "value": format!("6{i}")}]}),
            )
            .await;
            let counts = e.outbox_counts().await.unwrap();
            assert_eq!(counts.pending, base.pending + i);
            assert_eq!(by(&counts, "nurse1"), Some(by(&base, "nurse1").unwrap_or(0) + i), "{counts:?}");
            assert_eq!(counts, recount(&e).await, "kept counts equal a recount");
        }
        // Another context over the same store writes one: its entry is seen.
        let other = engine(&store, &server);
        other.vault().login_offline("nurse1", "Nurse1!clinic", T0).await.unwrap();
        write(
            &other,
            "PUT",
            &format!("events/{event}/DeBloodPr01"),
            json!({"event": event, "dataValues": [{"dataElement": "DeBloodPr01", "value": "120"}]}),
        )
        .await;
        assert_eq!(e.outbox_counts().await.unwrap(), recount(&e).await);
        assert_eq!(e.outbox_counts().await.unwrap().pending, base.pending + 4);
        *server.mode.borrow_mut() = Mode::Up;
        e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        let counts = e.outbox_counts().await.unwrap();
        assert_eq!((counts.pending, counts.failed), (0, 0), "{counts:?}");
    });
}

/// Issue 17 (P4 with 5,000 entries queued: a write's p95 was 436 ms): once a contact got no
/// answer, a due flush asks the server (one light read) before it opens the outbox, so a
/// device offline with its work queued does not open every entry at each try.
/// nurse1 logged in online over a store that counts its outbox reads; then the server goes down.
async fn logged_in_then_down<'a>(store: &ReadsCounted, server: &'a Server) -> EngineOver<'a, ReadsCounted> {
    let e = Engine::new(EngineConfig::new(API, fast_policy()).unwrap(), store.clone(), RustPbkdf2, OsRandom, server);
    e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
    *server.mode.borrow_mut() = Mode::Down;
    e
}

/// While the device backs off, the flush each capture asks for touches no outbox entry and
/// counts nothing: the count this context keeps answers (issue 17, P4: every write of a burst
/// paid a count transaction in the worker).
#[test]
fn a_capture_while_backing_off_asks_the_outbox_nothing() {
    block_on(async {
        let server = Server::new();
        let store = ReadsCounted::new(MemoryStore::new(), StoreName::Outbox);
        let e = logged_in_then_down(&store, &server).await;
        register(&e, "491000100").await;
        let first = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!(first.stopped.as_deref(), Some("SERVER_UNREACHABLE"), "{first:?}");
        for i in 1..5 {
            register(&e, &format!("49100010{i}")).await;
            store.take_count();
            store.take_counted_entries();
            let report = e.flush_if_due(FlushScope::All, T0 + 1_000, &mut |_| {}).await.unwrap();
            assert_eq!(report.stopped.as_deref(), Some("BACKING_OFF"), "{report:?}");
            assert_eq!(report.remaining, 3 * (i + 1), "every entry of the {} women is still there: {report:?}", i + 1);
            assert_eq!(
                (store.take_count(), store.take_counted_entries()),
                (0, 0),
                "the outbox was asked while backing off"
            );
        }
    });
}

#[test]
fn a_server_that_did_not_answer_is_asked_before_the_outbox_is_opened() {
    block_on(async {
        let server = Server::new();
        let store = ReadsCounted::new(MemoryStore::new(), StoreName::Outbox);
        let e = logged_in_then_down(&store, &server).await;
        for i in 0..10 {
            register(&e, &format!("4910000{i:02}")).await;
        }
        // The last contact (the login) got through: the flush opens the outbox and finds out.
        store.take_count();
        let first = e.flush(FlushScope::All, T0, &mut |_| {}).await.unwrap();
        assert_eq!((first.stopped.as_deref(), first.remaining), (Some("SERVER_UNREACHABLE"), 30), "{first:?}");
        assert!(store.take_count() >= 30, "the first try opens the outbox");
        // Now it did not answer: the next try asks first and opens nothing.
        let asked = server.requests.borrow().len();
        let second = e.flush(FlushScope::All, T0 + 5_000, &mut |_| {}).await.unwrap();
        assert_eq!((second.stopped.as_deref(), second.remaining), (Some("SERVER_UNREACHABLE"), 30), "{second:?}");
        assert!(second.next_try_in_ms.is_some(), "{second:?}");
        assert_eq!(store.take_count(), 0, "the outbox is not opened while the server does not answer");
        assert_eq!(server.requests.borrow().len() - asked, 1, "one light read");
        assert_eq!(second.requests, 1);
        // The server is back: the same check answers, and the work goes.
        *server.mode.borrow_mut() = Mode::Up;
        let third = e.flush(FlushScope::All, T0 + 10_000, &mut |_| {}).await.unwrap();
        assert_eq!((third.sent, third.remaining, third.stopped.as_deref()), (30, 0, None), "{third:?}");
    });
}
