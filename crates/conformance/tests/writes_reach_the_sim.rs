//! Writes captured offline by the core, flushed to dhis2-sim (in process), read back from the
//! sim: the legacy calls Tracker Capture makes and the `/api/tracker` import the Capture app
//! makes, on the server versions that have them.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::*;
use tracker_offline_core::flush::FlushScope;

async fn capture(engine: &TestEngine<'_>, method: &str, path: &str, body: Value) -> Value {
    let prepared = engine
        .prepare_write(method, &format!("{BASE}/{path}"), "application/json", body.to_string().as_bytes())
        .unwrap();
    let r = engine.capture_write(&prepared, NOW).await.unwrap();
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

fn woman(nid: &str) -> Value {
    json!([{"attribute": "AtNationId1", "value": nid}, {"attribute": "AtFirstNam1", "value": "Noor"},
        {"attribute": "AtLastName1", "value": "Jaber"}, {"attribute": "AtBirthDat1", "value": "1994-02-03"}])
}

fn reference(answer: &Value) -> String {
    answer["response"]["importSummaries"][0]["reference"].as_str().unwrap().to_string()
}

/// Tracker Capture's registration made offline: the woman, her MCH enrollment and an empty ANC
/// visit on `date`, each a call of its own. Returns the UIDs the answers gave.
async fn register_with_visit(engine: &TestEngine<'_>, nid: &str, date: &str) -> (String, String, String) {
    let answer = capture(
        engine,
        "POST",
        "trackedEntityInstances",
        json!({"trackedEntityType": "TetPerson01", "orgUnit": OU, "attributes": woman(nid)}),
    )
    .await;
    let tei = reference(&answer);
    let answer = capture(
        engine,
        "POST",
        "enrollments",
        json!({"trackedEntityInstance": tei, "program": P, "orgUnit": OU, "status": "ACTIVE",
        "enrollmentDate": date, "incidentDate": date}),
    )
    .await;
    let enrollment = reference(&answer);
    let answer = capture(
        engine,
        "POST",
        "events.json",
        json!({"events": [{"trackedEntityInstance": tei, "program": P, "programStage": "PsAncVisit1",
        "enrollment": enrollment, "orgUnit": OU, "status": "ACTIVE", "eventDate": date, "dataValues": []}]}),
    )
    .await;
    (tei, enrollment, reference(&answer))
}

#[tokio::test(flavor = "current_thread")]
async fn tracker_capture_calls_made_offline_reach_the_server_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.40.3", dir.path(), 5);
    let engine = logged_in_with_copy(&server).await;
    server.set_down(true);
    let (tei, _enrollment, event) = register_with_visit(&engine, "495555555", "2026-11-20").await;
    capture(
        &engine,
        "PUT",
        &format!("events/{event}/DeWeightKg1"),
        json!({"dataValues": [{"dataElement": "DeWeightKg1", "value": "70.1"}]}),
    )
    .await;
    server.set_down(false);
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!((report.remaining, report.failed), (0, 0), "{report:?}");
    let (status, back) = get(&server, &format!("/api/trackedEntityInstances/{tei}.json?fields=*")).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["enrollments"][0]["events"][0]["dataValues"][0]["value"], "70.1");
    assert_eq!(back["enrollments"][0]["events"][0]["storedBy"], "nurse1");
}

async fn capture_app_import(version: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = sim(version, dir.path(), 5);
    let engine = logged_in_with_copy(&server).await;
    server.set_down(true);
    let payload = json!({"trackedEntities": [{"trackedEntityType": "TetPerson01", "orgUnit": OU,
        "attributes": woman("496666666"),
        "enrollments": [{"program": P, "orgUnit": OU, "status": "ACTIVE", "enrolledAt": "2026-11-20", "occurredAt": "2026-11-20",
            "events": [{"programStage": "PsAncVisit1", "program": P, "orgUnit": OU, "status": "ACTIVE", "occurredAt": "2026-11-20",
                "dataValues": [{"dataElement": "DeWeightKg1", "value": "58"}]}]}]}]});
    let r = capture(&engine, "POST", "tracker?async=false", payload).await;
    assert_eq!(r["status"], "OK", "{r}");
    let te =
        r["bundleReport"]["typeReportMap"]["TRACKED_ENTITY"]["objectReports"][0]["uid"].as_str().unwrap().to_string();
    server.set_down(false);
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!((report.remaining, report.failed), (0, 0), "{report:?} {:?}", engine.failures().await.unwrap());
    let (status, back) = get(&server, &format!("/api/tracker/trackedEntities/{te}?fields=*")).await;
    assert_eq!(status, 200, "{back}");
    let ev = &back["enrollments"][0]["events"][0];
    assert_eq!(ev["dataValues"][0]["value"], "58");
    assert_eq!(ev["storedBy"], "nurse1");
}

#[tokio::test(flavor = "current_thread")]
async fn capture_app_import_made_offline_reaches_a_2_40_server() {
    capture_app_import("2.40.3").await;
}

#[tokio::test(flavor = "current_thread")]
async fn capture_app_import_made_offline_reaches_a_2_42_server() {
    capture_app_import("2.42.0").await;
}

#[tokio::test(flavor = "current_thread")]
async fn generated_registration_numbers_are_reserved_online_and_handed_out_offline_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.40.3", dir.path(), 0);
    let engine = logged_in_with_copy(&server).await;
    let reserved = engine.reserved_count("AtRegNumbr1").await.unwrap();
    assert_eq!(reserved, tracker_offline_core::reserved::POOL_SIZE);
    // What generate needs, as the server says it online, is answered the same offline.
    let (_, required_online) = get(&server, "/api/trackedEntityAttributes/AtRegNumbr1/requiredValues").await;
    server.set_down(true);
    let required = engine
        .answer_offline(&format!("{BASE}/trackedEntityAttributes/AtRegNumbr1/requiredValues"))
        .await
        .unwrap()
        .expect("required values offline");
    assert_eq!(serde_json::from_slice::<Value>(&required.body).unwrap(), required_online);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let r = engine
            .answer_offline(&format!("{BASE}/trackedEntityAttributes/AtRegNumbr1/generate"))
            .await
            .unwrap()
            .expect("a reserved value");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["ownerUid"], "AtRegNumbr1");
        assert!(seen.insert(v["value"].as_str().unwrap().to_string()), "handed out twice: {v}");
    }
    assert_eq!(engine.reserved_count("AtRegNumbr1").await.unwrap(), reserved - 3);
    // The server never hands out a reserved value again.
    server.set_down(false);
    let (_, online) = get(&server, "/api/trackedEntityAttributes/AtRegNumbr1/generate").await;
    assert!(!seen.contains(online["value"].as_str().unwrap()));
}

#[tokio::test(flavor = "current_thread")]
async fn dashboard_layout_keys_set_offline_are_created_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.40.3", dir.path(), 0);
    let engine = logged_in_with_copy(&server).await;
    server.set_down(true);
    // Offline, a key never read answers as unset; Tracker Capture then PUTs its default.
    let key = format!("{BASE}/dataStore/tracker-capture/keyDefaultLayoutLocked");
    let unset = engine.answer_read_offline("GET", &key, &[]).await.unwrap().expect("an answer");
    assert_eq!(unset.status, 404);
    capture(&engine, "PUT", "dataStore/tracker-capture/keyDefaultLayoutLocked", json!({})).await;
    server.set_down(false);
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!((report.sent, report.failed, report.remaining), (1, 0, 0), "{report:?}");
    // The key did not exist: the PUT became a create, as the app itself does online.
    let (status, value) = get(&server, "/api/dataStore/tracker-capture/keyDefaultLayoutLocked").await;
    assert_eq!((status, value), (200, json!({})));
}

#[tokio::test(flavor = "current_thread")]
async fn a_registration_made_offline_reads_back_with_its_enrollment() {
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.40.3", dir.path(), 3);
    let engine = logged_in_with_copy(&server).await;
    server.set_down(true);
    let (tei, enrollment, event) = register_with_visit(&engine, "495555999", "2026-11-26").await;
    // Completion: Tracker Capture PUTs the whole event, without its enrollment.
    capture(
        &engine,
        "PUT",
        &format!("events/{event}"),
        json!({"event": event, "program": P, "programStage": "PsAncVisit1", "orgUnit": OU, "trackedEntityInstance": tei,
        "status": "COMPLETED", "eventDate": "2026-11-26", "completedDate": "2026-11-26",
        "dataValues": [{"dataElement": "DeBpSystol1", "value": 118}]}),
    )
    .await;
    let answer = engine
        .answer_offline(&format!("{BASE}/trackedEntityInstances/{tei}.json?program={P}&fields=*"))
        .await
        .unwrap()
        .unwrap();
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["enrollments"].as_array().map(Vec::len), Some(1), "{body}");
    // Read as the server's records are: owned by the clinic, with the fields it adds.
    assert_eq!(body["programOwners"][0]["program"], P, "{body}");
    assert_eq!(body["programOwners"][0]["ownerOrgUnit"], OU);
    assert_eq!(body["relationships"], json!([]));
    assert_eq!(body["enrollments"][0]["orgUnitName"], "Bani Naim Clinic");
    assert_eq!(body["enrollments"][0]["notes"], json!([]));
    assert_eq!(body["enrollments"][0]["events"][0]["status"], "COMPLETED", "{body}");
    assert_eq!(body["enrollments"][0]["events"][0]["enrollment"], enrollment.as_str());
    // And the server gets the visit inside her enrollment, once.
    server.set_down(false);
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!((report.failed, report.remaining), (0, 0), "{report:?}");
    let (_, online) = get(&server, &format!("/api/trackedEntityInstances/{tei}.json?program={P}&fields=*")).await;
    let events = &online["enrollments"][0]["events"];
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{online}");
    assert_eq!(events[0]["status"], "COMPLETED");
}

#[tokio::test(flavor = "current_thread")]
async fn tracker_capture_writes_queued_before_an_upgrade_to_2_42_reach_the_upgraded_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.41.1", dir.path(), 3);
    let engine = logged_in_with_copy(&server).await;
    server.set_down(true);
    let (tei, enrollment, event) = register_with_visit(&engine, "497777777", "2026-11-21").await;
    capture(
        &engine,
        "PUT",
        &format!("events/{event}/DeWeightKg1"),
        json!({"dataValues": [{"dataElement": "DeWeightKg1", "value": "66"}]}),
    )
    .await;
    // While the clinic is offline the server is upgraded: the legacy endpoints are gone.
    server.upgrade("2.42.0", dir.path());
    server.set_down(false);
    let (status, _) = get(&server, "/api/trackedEntityInstances.json?ou=OuBaniNaim1").await;
    assert_eq!(status, 404, "2.42 has no legacy endpoints");
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!((report.failed, report.remaining), (0, 0), "{report:?} {:?}", engine.failures().await.unwrap());
    let (status, back) = get(&server, &format!("/api/tracker/trackedEntities/{tei}?fields=*")).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["enrollments"][0]["enrollment"], enrollment.as_str());
    let ev = &back["enrollments"][0]["events"][0];
    assert_eq!(ev["event"], event.as_str());
    assert_eq!(ev["dataValues"][0]["value"], "66");
}

/// Tracker Capture's "delete" of a woman, captured (the server is down).
async fn delete_woman(engine: &TestEngine<'_>, tei: &str) {
    let prepared = engine
        .prepare_write("DELETE", &format!("{BASE}/trackedEntityInstances/{tei}"), "application/json", b"")
        .unwrap();
    engine.capture_write(&prepared, NOW).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_woman_registered_and_deleted_offline_never_reaches_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.40.3", dir.path(), 3);
    let engine = logged_in_with_copy(&server).await;
    server.set_down(true);
    let (tei, _, _) = register_with_visit(&engine, "498888888", "2026-11-22").await;
    delete_woman(&engine, &tei).await;
    server.set_down(false);
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!((report.failed, report.remaining), (0, 0), "{report:?} {:?}", engine.failures().await.unwrap());
    let (status, _) = get(&server, &format!("/api/trackedEntityInstances/{tei}.json")).await;
    assert_eq!(status, 404, "she was never created on the server");
}

#[tokio::test(flavor = "current_thread")]
async fn a_delete_after_a_create_whose_answer_was_lost_reaches_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.40.3", dir.path(), 3);
    let engine = logged_in_with_copy(&server).await;
    server.set_down(true);
    let (tei, _, _) = register_with_visit(&engine, "498888889", "2026-11-22").await;
    // The registration reaches the server, but its answer is lost: the device still thinks it
    // is unsent when the nurse deletes the duplicate she made by mistake.
    server.set_down(false);
    server.drop_answers(true);
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!(report.stopped.as_deref(), Some("SERVER_UNREACHABLE"), "{report:?}");
    server.drop_answers(false);
    let (status, _) = get(&server, &format!("/api/trackedEntityInstances/{tei}.json")).await;
    assert_eq!(status, 200, "the server committed the registration");
    server.set_down(true);
    delete_woman(&engine, &tei).await;
    server.set_down(false);
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!((report.failed, report.remaining), (0, 0), "{report:?} {:?}", engine.failures().await.unwrap());
    let (status, body) = get(&server, &format!("/api/trackedEntityInstances/{tei}.json")).await;
    assert_eq!(status, 404, "the delete reached the server: {body}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_note_written_offline_is_added_once_even_when_an_answer_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.40.3", dir.path(), 3);
    let engine = logged_in_with_copy(&server).await;
    server.set_down(true);
    let (_, _, event) = register_with_visit(&engine, "499999991", "2026-11-23").await;
    capture(&engine, "POST", &format!("events/{event}/note"), json!({"value": "ankles swollen since Tuesday"})).await;
    server.set_down(false);
    // The visit with its note reaches the server; the answer is lost.
    server.drop_write_answers_on(Some("/api/events"));
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!(report.stopped.as_deref(), Some("SERVER_UNREACHABLE"), "{report:?}");
    server.drop_write_answers_on(None);
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!((report.failed, report.remaining), (0, 0), "{report:?} {:?}", engine.failures().await.unwrap());
    let (status, back) = get(&server, &format!("/api/events/{event}.json")).await;
    assert_eq!(status, 200, "{back}");
    let notes: Vec<&Value> =
        back["notes"].as_array().unwrap().iter().filter(|n| n["value"] == "ankles swollen since Tuesday").collect();
    assert_eq!(notes.len(), 1, "the note once, not once per attempt: {back}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_download_in_the_page_keeps_what_the_worker_queued_meanwhile() {
    use tracker_offline_core::{
        download::DownloadOptions,
        engine::{Engine, EngineConfig},
        kdf::RustPbkdf2,
        random::OsRandom,
        vault::VaultPolicy,
    };
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.40.3", dir.path(), 3);
    // The service worker's engine and the page's, over one store.
    let worker = logged_in_with_copy(&server).await;
    let policy = VaultPolicy { iterations: 1_000, ..VaultPolicy::default() };
    let page = Engine::new(
        EngineConfig::new(BASE, policy).unwrap(),
        worker.vault().store().clone(),
        RustPbkdf2,
        OsRandom,
        &server,
    );
    page.login("nurse1", "Nurse1!clinic", NOW).await.unwrap();
    page.status().await.unwrap(); // the page loads its index of the clinic now
                                  // Through the worker: a woman registered offline, sent, then a visit value queued offline.
    server.set_down(true);
    let (_, _, event) = register_with_visit(&worker, "499999992", "2026-11-24").await;
    server.set_down(false);
    let report = worker.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!(report.remaining, 0, "{report:?}");
    server.set_down(true);
    capture(
        &worker,
        "PUT",
        &format!("events/{event}/DeWeightKg1"),
        json!({"dataValues": [{"dataElement": "DeWeightKg1", "value": "71"}]}),
    )
    .await;
    server.set_down(false);
    // The page, whose index predates her, refreshes the clinic copy.
    page.download(DownloadOptions::default(), NOW, &mut |_| {}).await.unwrap();
    worker.invalidate_clinic();
    let local = worker.answer_offline(&format!("{BASE}/events/{event}.json")).await.unwrap().unwrap();
    let local: Value = serde_json::from_slice(&local.body).unwrap();
    assert_eq!(local["dataValues"][0]["value"], "71", "the queued value is still in the local copy: {local}");
    let report = worker.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!((report.failed, report.remaining), (0, 0), "{report:?}");
    let (_, back) = get(&server, &format!("/api/events/{event}.json")).await;
    assert_eq!(back["dataValues"][0]["value"], "71", "{back}");
}
