//! The merge against the sim's real update semantics: a device offline for days sends only the
//! fields it changed, so the district's changes to other fields of the same visit survive; a
//! field changed on both sides is sent with the device's value and logged as a conflict that a
//! person can resolve either way. Legacy family (Tracker Capture, 2.40) and `/api/tracker`
//! (the Capture app, 2.42).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::*;
use tracker_offline_core::{conflicts::Keep, flush::FlushScope, merge::WriteWindow};

const WEIGHT: &str = "DeWeightKg1";
const SYSTOLIC: &str = "DeBpSystol1";
const REMARKS: &str = "DeRemarks01";

/// A visit of the seed (event UID, its tracked entity) and its header, in `/api/tracker` naming.
async fn a_visit(server: &InProcess) -> (String, Value) {
    let (status, events) =
        get(server, &format!("/api/tracker/events?orgUnit={OU}&program={P}&fields=*&pageSize=5")).await;
    assert_eq!(status, 200, "{events}");
    let list = events.get("events").or_else(|| events.get("instances")).and_then(Value::as_array).unwrap().clone();
    let ev = list.first().expect("the seed has visits").clone();
    (ev["event"].as_str().unwrap().to_string(), ev)
}

/// The district sets values of the visit on the server (`/api/tracker`: values not sent are
/// left alone).
async fn district_sets(server: &InProcess, header: &Value, values: &[(&str, &str)]) {
    let mut event = header.clone();
    let obj = event.as_object_mut().unwrap();
    for key in ["dataValues", "notes", "relationships", "createdAt", "updatedAt", "createdBy", "updatedBy", "storedBy"]
    {
        obj.remove(key);
    }
    obj.insert(
        "dataValues".into(),
        json!(values.iter().map(|(de, v)| json!({"dataElement": de, "value": v})).collect::<Vec<_>>()),
    );
    let (status, report) =
        send_as_admin(server, "POST", "/api/tracker?async=false&importStrategy=UPDATE", json!({ "events": [event] }))
            .await;
    assert_eq!(status, 200, "{report}");
}

async fn server_values(server: &InProcess, event: &str) -> Value {
    let (status, ev) = get(server, &format!("/api/tracker/events/{event}?fields=*")).await;
    assert_eq!(status, 200, "{ev}");
    let mut out = serde_json::Map::new();
    for dv in ev["dataValues"].as_array().unwrap() {
        out.insert(dv["dataElement"].as_str().unwrap().into(), dv["value"].clone());
    }
    Value::Object(out)
}

/// The nurse changes one value of the visit offline, in the way the app of that version does.
async fn nurse_sets(engine: &TestEngine<'_>, version: &str, header: &Value, de: &str, value: &str) {
    let event = header["event"].as_str().unwrap();
    let (method, path, body) = if version.starts_with("2.42") {
        // The Capture app posts the whole event as it holds it, every value included.
        let local = engine
            .answer_offline(&format!("{BASE}/tracker/events/{event}?fields=*"))
            .await
            .unwrap()
            .expect("the visit offline");
        let mut ev: Value = serde_json::from_slice(&local.body).unwrap();
        let values = ev["dataValues"].as_array_mut().unwrap();
        values.retain(|v| v["dataElement"] != de);
        values.push(json!({"dataElement": de, "value": value}));
        ("POST", "tracker?async=false".to_string(), json!({ "events": [ev] }))
    } else {
        // Tracker Capture saves each value on blur.
        ("PUT", format!("events/{event}/{de}"), json!({"dataValues": [{"dataElement": de, "value": value}]}))
    };
    let prepared = engine
        .prepare_write(method, &format!("{BASE}/{path}"), "application/json", body.to_string().as_bytes())
        .unwrap();
    engine.capture_write(&prepared, NOW).await.unwrap();
}

async fn local_value(engine: &TestEngine<'_>, event: &str, de: &str) -> Option<Value> {
    let r = engine.answer_offline(&format!("{BASE}/tracker/events/{event}?fields=*")).await.unwrap().unwrap();
    let ev: Value = serde_json::from_slice(&r.body).unwrap();
    ev["dataValues"].as_array().unwrap().iter().find(|v| v["dataElement"] == de).map(|v| v["value"].clone())
}

async fn offline_for_days_then_flush(version: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = sim(version, dir.path(), 3);
    let (event, header) = a_visit(&server).await;
    district_sets(&server, &header, &[(WEIGHT, "60"), (SYSTOLIC, "110"), (REMARKS, "first visit")]).await;
    let engine = logged_in_with_copy(&server).await;
    server.set_down(true);
    // Offline for days: the nurse corrects the weight and the blood pressure.
    nurse_sets(&engine, version, &header, WEIGHT, "61.5").await;
    nurse_sets(&engine, version, &header, SYSTOLIC, "125").await;
    server.set_down(false);
    // Meanwhile the district corrected the remarks (another field) and the blood pressure
    // (the same field, to another value).
    district_sets(&server, &header, &[(REMARKS, "referred to Hebron"), (SYSTOLIC, "130")]).await;
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!((report.failed, report.remaining), (0, 0), "{report:?} {:?}", engine.failures().await.unwrap());
    let values = server_values(&server, &event).await;
    assert_eq!(values[WEIGHT], "61.5", "the nurse's change arrives: {values}");
    assert_eq!(values[REMARKS], "referred to Hebron", "the district's change to another field survives: {values}");
    assert_eq!(values[SYSTOLIC], "125", "both changed: the device's value is sent (default policy): {values}");
    // The overwritten value is kept and shown.
    let conflicts = engine.conflicts().await.unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let c = &conflicts[0];
    assert_eq!((c.record.as_str(), c.field.as_str()), (event.as_str(), format!("dv:{SYSTOLIC}").as_str()));
    assert_eq!((&c.base, &c.server, &c.device), (&json!("110"), &json!("130"), &json!("125")));
    assert_eq!(c.author, "nurse1");
    // The local copy now holds the district's remarks too.
    let local = engine.answer_offline(&format!("{BASE}/tracker/events/{event}?fields=*")).await.unwrap().unwrap();
    let local: Value = serde_json::from_slice(&local.body).unwrap();
    assert!(local["dataValues"].as_array().unwrap().iter().any(|v| v["value"] == "referred to Hebron"), "{local}");
    // A person decides the district was right: the server's value goes back, once.
    engine.resolve_conflict(&c.id, Keep::Server, NOW + 1).await.unwrap();
    assert!(engine.conflicts().await.unwrap().is_empty());
    let report = engine.flush(FlushScope::All, NOW + 2, &mut |_| {}).await.unwrap();
    assert_eq!((report.failed, report.remaining), (0, 0), "{report:?} {:?}", engine.failures().await.unwrap());
    let values = server_values(&server, &event).await;
    assert_eq!(values[SYSTOLIC], "130", "{values}");
    assert_eq!(values[WEIGHT], "61.5", "{values}");
    assert!(engine.conflicts().await.unwrap().is_empty(), "resolving creates no new conflict");
}

#[tokio::test(flavor = "current_thread")]
async fn a_device_offline_for_days_never_undoes_the_districts_changes_on_2_40() {
    offline_for_days_then_flush("2.40.3").await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_device_offline_for_days_never_undoes_the_districts_changes_on_2_42() {
    offline_for_days_then_flush("2.42.0").await;
}

#[tokio::test(flavor = "current_thread")]
async fn discarding_a_change_shows_the_servers_version_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.40.3", dir.path(), 3);
    let (event, header) = a_visit(&server).await;
    district_sets(&server, &header, &[(WEIGHT, "60")]).await;
    let engine = logged_in_with_copy(&server).await;
    server.set_down(true);
    nurse_sets(&engine, "2.40.3", &header, WEIGHT, "61.5").await;
    assert_eq!(local_value(&engine, &event, WEIGHT).await, Some(json!("61.5")));
    let entry = engine.outbox_entries().await.unwrap().pop().unwrap();
    engine.discard(&entry.id()).await.unwrap();
    assert_eq!(
        local_value(&engine, &event, WEIGHT).await,
        Some(json!("60")),
        "the refused content is not kept on screen"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn incremental_downloads_follow_the_servers_clock_not_a_fast_device_clock() {
    use tracker_offline_core::{
        download::DownloadOptions,
        engine::{Engine, EngineConfig},
        kdf::RustPbkdf2,
        random::OsRandom,
        store::MemoryStore,
        vault::VaultPolicy,
    };
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.40.3", dir.path(), 3);
    let (event, header) = a_visit(&server).await;
    // The clinic PC's clock is an hour fast.
    let real_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let fast = real_now + 60 * 60 * 1000;
    let policy = VaultPolicy { iterations: 1_000, ..VaultPolicy::default() };
    let engine =
        Engine::new(EngineConfig::new(BASE, policy).unwrap(), MemoryStore::new(), RustPbkdf2, OsRandom, &server);
    engine.login("nurse1", "Nurse1!clinic", fast).await.unwrap();
    engine.download(DownloadOptions::default(), fast, &mut |_| {}).await.unwrap();
    // The district changes the visit after the clinic's download.
    district_sets(&server, &header, &[(REMARKS, "changed after the download")]).await;
    let report = engine.download(DownloadOptions::default(), fast + 60_000, &mut |_| {}).await.unwrap();
    assert!(report.incremental, "{report:?}");
    assert_eq!(
        local_value(&engine, &event, REMARKS).await,
        Some(json!("changed after the download")),
        "the incremental download asked from the server's clock"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn with_the_hold_policy_a_field_changed_on_both_sides_waits_for_a_person() {
    use tracker_offline_core::merge::ConflictPolicy;
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.42.0", dir.path(), 3);
    let (event, header) = a_visit(&server).await;
    district_sets(&server, &header, &[(WEIGHT, "60"), (SYSTOLIC, "110")]).await;
    let engine = logged_in_with_copy(&server).await;
    engine.set_conflict_policy(ConflictPolicy::Hold);
    server.set_down(true);
    nurse_sets(&engine, "2.42.0", &header, WEIGHT, "61.5").await;
    nurse_sets(&engine, "2.42.0", &header, SYSTOLIC, "125").await;
    server.set_down(false);
    district_sets(&server, &header, &[(SYSTOLIC, "130")]).await;
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!((report.failed, report.remaining), (0, 0), "{report:?}");
    let values = server_values(&server, &event).await;
    assert_eq!(values[WEIGHT], "61.5", "the other field flows: {values}");
    assert_eq!(values[SYSTOLIC], "130", "the field changed on both sides is not sent: {values}");
    let conflicts = engine.conflicts().await.unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert!(conflicts[0].held);
    assert_eq!(local_value(&engine, &event, SYSTOLIC).await, Some(json!("125")), "the nurse still sees her value");
    // Flushing again sends nothing new and finds the same conflict once.
    engine.flush(FlushScope::All, NOW + 1, &mut |_| {}).await.unwrap();
    assert_eq!(engine.conflicts().await.unwrap().len(), 1);
    assert_eq!(server_values(&server, &event).await[SYSTOLIC], "130");
    // A person decides for the device: it is sent, once, and nothing is left.
    engine.resolve_conflict(&conflicts[0].id, Keep::Device, NOW + 2).await.unwrap();
    let report = engine.flush(FlushScope::All, NOW + 3, &mut |_| {}).await.unwrap();
    assert_eq!((report.failed, report.remaining), (0, 0), "{report:?} {:?}", engine.failures().await.unwrap());
    assert_eq!(server_values(&server, &event).await[SYSTOLIC], "125");
    assert!(engine.conflicts().await.unwrap().is_empty());
    let status = engine.status().await.unwrap();
    assert_eq!(status.pending, 0);
}

/// The visit as the Capture app holds it in a window now (`/api/tracker` naming).
async fn form_of(engine: &TestEngine<'_>, event: &str) -> Value {
    let local = engine.answer_offline(&format!("{BASE}/tracker/events/{event}?fields=*")).await.unwrap().unwrap();
    serde_json::from_slice(&local.body).unwrap()
}

/// A window saves its form: the whole event, every value as that window holds it.
async fn window_saves(engine: &TestEngine<'_>, window: &str, open: &[&str], mut form: Value, values: &[(&str, &str)]) {
    let list = form["dataValues"].as_array_mut().unwrap();
    for (de, value) in values {
        list.retain(|v| v["dataElement"] != *de);
        list.push(json!({"dataElement": de, "value": value}));
    }
    let mut prepared = engine
        .prepare_write(
            "POST",
            &format!("{BASE}/tracker?async=false"),
            "application/json",
            json!({ "events": [form] }).to_string().as_bytes(),
        )
        .unwrap();
    prepared.window = Some(WriteWindow { id: window.into(), open: open.iter().map(|w| w.to_string()).collect() });
    engine.capture_write(&prepared, NOW).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn two_windows_saving_one_field_offline_show_a_conflict_and_lose_neither_value() {
    use tracker_offline_core::merge::ConflictSource;
    let dir = tempfile::tempdir().unwrap();
    let server = sim("2.42.0", dir.path(), 3);
    let (event, header) = a_visit(&server).await;
    district_sets(&server, &header, &[(WEIGHT, "60"), (SYSTOLIC, "110")]).await;
    let engine = logged_in_with_copy(&server).await;
    server.set_down(true);
    let both = ["tab-a", "tab-b"];
    // Both windows open the visit; A saves the weight; B, whose form still shows the old weight,
    // then saves the blood pressure (its whole form, the old weight included).
    let form_a = form_of(&engine, &event).await;
    let form_b = form_of(&engine, &event).await;
    window_saves(&engine, "tab-a", &both, form_a, &[(WEIGHT, "61.5")]).await;
    window_saves(&engine, "tab-b", &both, form_b, &[(SYSTOLIC, "125")]).await;
    let conflicts = engine.conflicts().await.unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let c = &conflicts[0];
    assert_eq!(c.source, ConflictSource::Window);
    assert_eq!(c.field, format!("dv:{WEIGHT}"));
    assert_eq!((&c.base, &c.server, &c.device), (&json!("60"), &json!("61.5"), &json!("60")));
    // A window correcting its own value is no conflict.
    let form_b = form_of(&engine, &event).await;
    window_saves(&engine, "tab-b", &both, form_b, &[(SYSTOLIC, "126")]).await;
    assert_eq!(engine.conflicts().await.unwrap().len(), 1);
    server.set_down(false);
    let report = engine.flush(FlushScope::All, NOW, &mut |_| {}).await.unwrap();
    assert_eq!((report.failed, report.remaining), (0, 0), "{report:?}");
    assert_eq!(server_values(&server, &event).await[SYSTOLIC], "126");
    // The nurse sees both values and keeps window A's: it reaches the server.
    engine.resolve_conflict(&c.id, Keep::Server, NOW + 1).await.unwrap();
    let report = engine.flush(FlushScope::All, NOW + 2, &mut |_| {}).await.unwrap();
    assert_eq!((report.failed, report.remaining), (0, 0), "{report:?} {:?}", engine.failures().await.unwrap());
    let values = server_values(&server, &event).await;
    assert_eq!((&values[WEIGHT], &values[SYSTOLIC]), (&json!("61.5"), &json!("126")), "{values}");
    assert!(engine.conflicts().await.unwrap().is_empty());
}
