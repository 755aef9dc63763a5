//! Router-level contract tests of the new tracker API: `POST /api/tracker` (sync and async,
//! strategies, atomic modes, import modes, error codes, E5000 chains, ImportReport per
//! version), the exports with their per-version envelopes and parameter names, default
//! fields, ownership, storedBy, and the legacy ↔ new cross test (docs/dhis2-api.md §2–3).
//!
//! About 820 lines: each test reads alone, in the order of docs/dhis2-api.md's sections.

#![allow(clippy::expect_used, clippy::panic)]

mod common;

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use common::*;
use dhis2_sim::seed::*;
use serde_json::{json, Value};

const NURSE: (&str, &str) = (NURSE1_USERNAME, NURSE1_PASSWORD);
const ADMIN: (&str, &str) = (ADMIN_USERNAME, ADMIN_PASSWORD);
const MIDWIFE: (&str, &str) = (MIDWIFE1_USERNAME, MIDWIFE1_PASSWORD);

async fn call(app: &axum::Router, method: &str, uri: &str, user: (&str, &str), body: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", basic(user.0, user.1))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = send(app, req).await;
    let status = resp.status();
    let bytes = body_bytes(resp).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn get_json(app: &axum::Router, uri: &str, user: (&str, &str)) -> (StatusCode, Value) {
    let resp = send(app, get_as(uri, user.0, user.1)).await;
    let status = resp.status();
    let bytes = body_bytes(resp).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// `POST /api/tracker?async=false&…`.
async fn sync(app: &axum::Router, query: &str, user: (&str, &str), body: Value) -> (StatusCode, Value) {
    call(app, "POST", &format!("/api/tracker?async=false{query}"), user, body).await
}

fn te(uid: &str, ou: &str, national_id: &str) -> Value {
    json!({
        "trackedEntity": uid, "trackedEntityType": TET_PERSON, "orgUnit": ou,
        "attributes": [
            {"attribute": ATTR_NATIONAL_ID, "value": national_id},
            {"attribute": ATTR_FIRST_NAME, "value": "Maryam"},
            {"attribute": ATTR_LAST_NAME, "value": "Haddad"},
            {"attribute": ATTR_DOB, "value": "1990-04-12"},
        ]
    })
}

fn enrollment(uid: &str, ou: &str) -> Value {
    json!({"enrollment": uid, "program": PROGRAM_MCH, "orgUnit": ou, "status": "ACTIVE",
           "enrolledAt": "2024-03-01T00:00:00.000", "occurredAt": "2024-01-10T00:00:00.000"})
}

fn event(uid: &str, enrollment: &str, ou: &str) -> Value {
    json!({"event": uid, "enrollment": enrollment, "program": PROGRAM_MCH, "programStage": STAGE_ANC,
           "orgUnit": ou, "status": "ACTIVE", "occurredAt": "2024-03-01T00:00:00.000",
           "dataValues": [{"dataElement": DE_WEIGHT, "value": "61.5"}]})
}

/// A nested TE → enrollment → event payload.
fn nested(t: &str, en: &str, ev: &str, ou: &str, national_id: &str) -> Value {
    let mut body = te(t, ou, national_id);
    let mut e = enrollment(en, ou);
    e["events"] = json!([event(ev, en, ou)]);
    body["enrollments"] = json!([e]);
    json!({ "trackedEntities": [body] })
}

fn codes(report: &Value) -> Vec<(String, String)> {
    report["validationReport"]["errorReports"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| (e["errorCode"].as_str().unwrap_or("").to_owned(), e["uid"].as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn has_code(report: &Value, code: &str) -> bool {
    codes(report).iter().any(|(c, _)| c == code)
}

#[tokio::test]
async fn sync_nested_import_then_export_with_default_fields() {
    let (app, _d) = demo_app("2.40");
    let (status, r) =
        sync(&app, "", NURSE, nested("TeNew000001", "EnNew000001", "EvNew000001", OU_BANI_NAIM, "401000001")).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "OK");
    assert_eq!(r["stats"], json!({"created": 3, "updated": 0, "deleted": 0, "ignored": 0, "total": 3}));
    let tes = &r["bundleReport"]["typeReportMap"]["TRACKED_ENTITY"];
    assert_eq!(tes["trackerType"], "TRACKED_ENTITY");
    assert_eq!(tes["objectReports"][0]["uid"], "TeNew000001");
    assert_eq!(tes["objectReports"][0]["index"], 0, "index up to 2.40");
    assert!(r.get("timingsStats").is_none(), "timingsStats only with reportMode=FULL");
    assert!(r["bundleReport"].get("status").is_none(), "bundleReport.status only up to 2.39");
    assert_eq!(r["validationReport"]["errorReports"], json!([]));

    // Default TE fields: *,!relationships,!enrollments,!events,!programOwners.
    let (status, t) = get_json(&app, "/api/tracker/trackedEntities/TeNew000001", NURSE).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["trackedEntity"], "TeNew000001");
    assert_eq!(t["trackedEntityType"], TET_PERSON);
    assert!(t["createdAt"].is_string() && t["updatedAt"].is_string());
    for absent in ["enrollments", "relationships", "programOwners", "events", "trackedEntityInstance", "created"] {
        assert!(t.get(absent).is_none(), "{absent} in {t}");
    }
    let attrs = t["attributes"].as_array().expect("attributes");
    assert!(attrs.iter().any(|a| a["attribute"] == ATTR_NATIONAL_ID && a["value"] == "401000001"));
    assert!(attrs[0]["createdAt"].is_string() && attrs[0]["updatedAt"].is_string());

    // fields=* nests enrollments with their events.
    let (_, t) = get_json(&app, "/api/tracker/trackedEntities/TeNew000001?fields=*", NURSE).await;
    let en = &t["enrollments"][0];
    assert_eq!(en["enrollment"], "EnNew000001");
    assert!(en["enrolledAt"].as_str().expect("enrolledAt").starts_with("2024-03-01"));
    assert!(en["occurredAt"].as_str().expect("occurredAt").starts_with("2024-01-10"));
    assert_eq!(en["followUp"], false);
    let ev = &en["events"][0];
    assert_eq!(ev["event"], "EvNew000001");
    assert!(ev["occurredAt"].as_str().expect("occurredAt").starts_with("2024-03-01"));
    assert_eq!(ev["dataValues"][0]["value"], "61.5");
    assert_eq!(ev["dataValues"][0]["storedBy"], NURSE1_USERNAME);
    assert!(ev["dataValues"][0]["createdAt"].is_string());
    assert_eq!(ev["storedBy"], NURSE1_USERNAME);
    assert_eq!(ev["createdBy"]["username"], NURSE1_USERNAME);

    // Default enrollment fields: *,!relationships,!events,!attributes.
    let (status, e) = get_json(&app, "/api/tracker/enrollments/EnNew000001", NURSE).await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["trackedEntity"], "TeNew000001");
    for absent in ["events", "attributes", "relationships", "enrollmentDate"] {
        assert!(e.get(absent).is_none(), "{absent} in {e}");
    }
    let (status, ev) = get_json(&app, "/api/tracker/events/EvNew000001", NURSE).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ev["enrollment"], "EnNew000001");
    assert!(ev.get("relationships").is_none());
    let (status, _) = get_json(&app, "/api/tracker/events/EvMissing01", NURSE).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn flat_payload_is_accepted_and_relationships_ignored() {
    let (app, _d) = demo_app("2.40");
    let body = json!({
        "trackedEntities": [te("TeFlat00001", OU_BANI_NAIM, "401000002")],
        "enrollments": [{"trackedEntity": "TeFlat00001", "enrollment": "EnFlat00001", "program": PROGRAM_MCH,
                         "orgUnit": OU_BANI_NAIM, "enrolledAt": "2024-03-01", "occurredAt": "2024-02-01"}],
        "events": [event("EvFlat00001", "EnFlat00001", OU_BANI_NAIM)],
        "relationships": []
    });
    let (status, r) = sync(&app, "", NURSE, body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["stats"]["created"], 3);
}

async fn wait_report(app: &axum::Router, id: &str) -> Value {
    for _ in 0..200 {
        let (status, r) = get_json(app, &format!("/api/tracker/jobs/{id}/report"), NURSE).await;
        if status == StatusCode::OK {
            return r;
        }
        assert_eq!(status, StatusCode::NOT_FOUND);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("job {id} never finished");
}

#[tokio::test]
async fn async_import_is_a_job_with_notifications_and_report() {
    for (version, response_type) in [("2.40", true), ("2.41", false)] {
        let (app, _d) = demo_app(version);
        let (status, wm) = call(
            &app,
            "POST",
            "/api/tracker",
            NURSE,
            nested("TeAsync0001", "EnAsync0001", "EvAsync0001", OU_BANI_NAIM, "401000003"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{wm}");
        assert_eq!(wm["httpStatus"], "OK");
        assert_eq!(wm["httpStatusCode"], 200);
        assert_eq!(wm["status"], "OK");
        assert_eq!(wm["message"], "Tracker job added");
        assert_eq!(wm["response"].get("responseType").is_some(), response_type, "{version}: {wm}");
        if response_type {
            assert_eq!(wm["response"]["responseType"], "TrackerJob");
        }
        let id = wm["response"]["id"].as_str().expect("id").to_owned();
        assert!(is_uid(&id));
        assert!(wm["response"]["location"].as_str().expect("location").ends_with(&format!("/api/tracker/jobs/{id}")));
        let report = wait_report(&app, &id).await;
        assert_eq!(report["status"], "OK", "{report}");
        assert_eq!(report["stats"]["created"], 3);
        let (status, notes) = get_json(&app, &format!("/api/tracker/jobs/{id}"), NURSE).await;
        assert_eq!(status, StatusCode::OK);
        let notes = notes.as_array().expect("notifications");
        assert_eq!(notes.last().expect("last")["completed"], true);
        assert_eq!(notes[0]["completed"], false);
    }
    let (app, _d) = demo_app("2.40");
    let (status, _) = get_json(&app, "/api/tracker/jobs/JobMissing1/report", NURSE).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn strategies_and_existence_codes() {
    let (app, _d) = demo_app("2.40");
    let (s, _) =
        sync(&app, "", NURSE, nested("TeStrat0001", "EnStrat0001", "EvStrat0001", OU_BANI_NAIM, "401000004")).await;
    assert_eq!(s, StatusCode::OK);

    // CREATE on existing UIDs: E1002, E1080, E1030.
    let (s, r) = sync(
        &app,
        "&importStrategy=CREATE",
        NURSE,
        json!({"trackedEntities": [te("TeStrat0001", OU_BANI_NAIM, "401000004")]}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert_eq!(r["status"], "ERROR");
    assert_eq!(codes(&r), vec![("E1002".to_owned(), "TeStrat0001".to_owned())]);
    let e = &r["validationReport"]["errorReports"][0];
    assert_eq!(e["trackerType"], "TRACKED_ENTITY");
    assert_eq!(e["message"], "TrackedEntity: `TeStrat0001`, already exists.");
    assert!(e.get("args").is_none(), "args only from 2.41");
    assert_eq!(r["stats"]["ignored"], 1);
    let (_, r) = sync(&app, "&importStrategy=CREATE", NURSE, json!({"enrollments": [{"trackedEntity": "TeStrat0001", "enrollment": "EnStrat0001", "program": PROGRAM_MCH, "orgUnit": OU_BANI_NAIM, "enrolledAt": "2024-03-01"}]})).await;
    assert!(has_code(&r, "E1080"), "{r}");
    let (_, r) = sync(
        &app,
        "&importStrategy=CREATE",
        NURSE,
        json!({"events": [event("EvStrat0001", "EnStrat0001", OU_BANI_NAIM)]}),
    )
    .await;
    assert!(has_code(&r, "E1030"), "{r}");

    // UPDATE / DELETE on missing UIDs: E1063, E1081, E1032.
    let (s, r) = sync(
        &app,
        "&importStrategy=UPDATE",
        NURSE,
        json!({"trackedEntities": [te("TeMissing01", OU_BANI_NAIM, "401000099")]}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(has_code(&r, "E1063"), "{r}");
    let (_, r) =
        sync(&app, "&importStrategy=DELETE", NURSE, json!({"enrollments": [{"enrollment": "EnMissing01"}]})).await;
    assert!(has_code(&r, "E1081"), "{r}");
    let (_, r) = sync(
        &app,
        "&importStrategy=UPDATE",
        NURSE,
        json!({"events": [event("EvMissing01", "EnStrat0001", OU_BANI_NAIM)]}),
    )
    .await;
    assert!(has_code(&r, "E1032"), "{r}");
    let (_, r) =
        sync(&app, "&importStrategy=DELETE", NURSE, json!({"trackedEntities": [{"trackedEntity": "TeMissing01"}]}))
            .await;
    assert!(has_code(&r, "E1063"), "{r}");

    // CREATE_AND_UPDATE (the default) updates; omitted data values are kept, null deletes.
    let mut ev = event("EvStrat0001", "EnStrat0001", OU_BANI_NAIM);
    ev["dataValues"] = json!([{"dataElement": DE_GEST_WEEKS, "value": "20"}]);
    let (s, r) = sync(&app, "", NURSE, json!({"events": [ev.clone()]})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["stats"]["updated"], 1);
    let (_, e) = get_json(&app, "/api/tracker/events/EvStrat0001", NURSE).await;
    let dvs = e["dataValues"].as_array().expect("dataValues");
    assert_eq!(dvs.len(), 2, "{e}");
    ev["dataValues"] = json!([{"dataElement": DE_WEIGHT, "value": null}]);
    let (s, r) = sync(&app, "&importStrategy=UPDATE", NURSE, json!({"events": [ev]})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (_, e) = get_json(&app, "/api/tracker/events/EvStrat0001", NURSE).await;
    let dvs = e["dataValues"].as_array().expect("dataValues");
    assert_eq!(dvs.len(), 1, "{e}");
    assert_eq!(dvs[0]["dataElement"], DE_GEST_WEEKS);

    // DELETE of the event, then it is gone (and cannot be updated: E1082).
    let (s, r) = sync(&app, "&importStrategy=DELETE", NURSE, json!({"events": [{"event": "EvStrat0001"}]})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["stats"]["deleted"], 1);
    let (s, _) = get_json(&app, "/api/tracker/events/EvStrat0001", NURSE).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, r) = sync(&app, "", NURSE, json!({"events": [event("EvStrat0001", "EnStrat0001", OU_BANI_NAIM)]})).await;
    assert!(has_code(&r, "E1082"), "{r}");
}

#[tokio::test]
async fn atomic_modes_all_and_object() {
    let (app, _d) = demo_app("2.40");
    let body = json!({"trackedEntities": [te("TeAtomic001", OU_BANI_NAIM, "401000005"), te("TeAtomic002", OU_DURA, "401000006")]});
    let (s, r) = sync(&app, "", NURSE, body.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert_eq!(codes(&r), vec![("E1000".to_owned(), "TeAtomic002".to_owned())]);
    assert_eq!(
        r["validationReport"]["errorReports"][0]["message"],
        "User: `nurse1` has no capture scope access to OrganisationUnit: `OuDuraClin1`."
    );
    assert_eq!(r["stats"], json!({"created": 0, "updated": 0, "deleted": 0, "ignored": 2, "total": 2}));
    // ImportReport.withValidationErrors (2.41 DefaultTrackerImportService:107-110): no bundleReport.
    assert_eq!(r["status"], "ERROR");
    assert!(r.get("bundleReport").is_none(), "{r}");
    let (s, _) = get_json(&app, "/api/tracker/trackedEntities/TeAtomic001", NURSE).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "ALL commits nothing");

    // OBJECT: a completed import is OK and 200 even with errors (:119-120).
    let (s, r) = sync(&app, "&atomicMode=OBJECT", NURSE, body).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "OK");
    assert_eq!(codes(&r), vec![("E1000".to_owned(), "TeAtomic002".to_owned())]);
    assert!(r["bundleReport"]["typeReportMap"].is_object(), "{r}");
    assert_eq!(r["stats"]["created"], 1);
    assert_eq!(r["stats"]["ignored"], 1);
    let (s, _) = get_json(&app, "/api/tracker/trackedEntities/TeAtomic001", NURSE).await;
    assert_eq!(s, StatusCode::OK, "OBJECT commits the valid one");
}

#[tokio::test]
async fn import_mode_validate_and_unknown_enum_values() {
    let (app, _d) = demo_app("2.40");
    let body = json!({"trackedEntities": [te("TeValid0001", OU_BANI_NAIM, "401000007")]});
    let (s, r) = sync(&app, "&importMode=VALIDATE", NURSE, body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "OK");
    let (s, _) = get_json(&app, "/api/tracker/trackedEntities/TeValid0001", NURSE).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "VALIDATE commits nothing");
    // 2.40: unknown enum value → 400.
    let (s, wm) = sync(&app, "&importMode=VALIDATION", NURSE, body.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{wm}");
    // 2.39: unknown values become the default, so VALIDATION commits.
    let (app, _d) = demo_app("2.39");
    let (s, r) = sync(&app, "&importMode=VALIDATION&importStrategy=BOGUS", NURSE, body).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["bundleReport"]["status"], "OK", "bundleReport.status up to 2.39");
    let (s, _) = get_json(&app, "/api/tracker/trackedEntities/TeValid0001", NURSE).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn error_codes_access_uniqueness_references() {
    let (app, _d) = demo_app("2.41");
    let (s, _) =
        sync(&app, "", ADMIN, nested("TeCodes0001", "EnCodes0001", "EvCodes0001", OU_BANI_NAIM, "401000008")).await;
    assert_eq!(s, StatusCode::OK);

    // E1064: a unique attribute value held by another TE (2.41: args present, no index/timings).
    let (s, r) =
        sync(&app, "", NURSE, json!({"trackedEntities": [te("TeCodes0002", OU_BANI_NAIM, "401000008")]})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(has_code(&r, "E1064"), "{r}");
    let e = &r["validationReport"]["errorReports"][0];
    assert_eq!(e["args"], json!(["401000008", ATTR_NATIONAL_ID]));
    assert!(r.get("timingsStats").is_none());
    let (_, r) = sync(&app, "&atomicMode=OBJECT", NURSE, json!({"trackedEntities": [te("TeCodes0003", OU_BANI_NAIM, "401000050"), te("TeCodes0004", OU_BANI_NAIM, "401000050")]})).await;
    assert_eq!(codes(&r), vec![("E1064".to_owned(), "TeCodes0004".to_owned())], "unique within the payload too");
    assert!(r["bundleReport"]["typeReportMap"]["TRACKED_ENTITY"]["objectReports"][0].get("index").is_none());

    // E1083: the nurse (no F_UNCOMPLETE_EVENT) re-opens a completed event.
    let mut ev = event("EvCompl0001", "EnCodes0001", OU_BANI_NAIM);
    ev["status"] = json!("COMPLETED");
    let (s, r) = sync(&app, "", ADMIN, json!({"events": [ev.clone()]})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    ev["status"] = json!("ACTIVE");
    let (s, r) = sync(&app, "", NURSE, json!({"events": [ev.clone()]})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(codes(&r), vec![("E1083".to_owned(), "EvCompl0001".to_owned())], "{r}");
    let (s, _) = sync(&app, "", ADMIN, json!({"events": [ev]})).await;
    assert_eq!(s, StatusCode::OK, "a superuser may");

    // Unknown references.
    let mut bad_te = te("TeCodes0005", "OuUnknown01", "401000009");
    bad_te["trackedEntityType"] = json!("TetUnknown1");
    let (_, r) = sync(&app, "", ADMIN, json!({"trackedEntities": [bad_te]})).await;
    assert!(has_code(&r, "E1005") && has_code(&r, "E1049"), "{r}");
    let (_, r) = sync(&app, "", ADMIN, json!({"enrollments": [{"trackedEntity": "TeCodes0001", "program": "PrUnknown01", "orgUnit": "OuUnknown01", "enrolledAt": "2024-01-01"}]})).await;
    assert!(has_code(&r, "E1069") && has_code(&r, "E1070"), "{r}");
    let (_, r) = sync(&app, "", ADMIN, json!({"enrollments": [{"trackedEntity": "TeNowhere01", "program": PROGRAM_MCH, "orgUnit": OU_BANI_NAIM, "enrolledAt": "2024-01-01"}]})).await;
    assert!(has_code(&r, "E1068"), "{r}");
    let mut bad_ev = event("EvCodes0002", "EnCodes0001", "OuUnknown01");
    bad_ev["programStage"] = json!("PsUnknown01");
    bad_ev["program"] = json!("PrUnknown01");
    let (_, r) = sync(&app, "", ADMIN, json!({"events": [bad_ev]})).await;
    assert!(has_code(&r, "E1013") && has_code(&r, "E1010") && has_code(&r, "E1011"), "{r}");
    // E1015: a second active enrollment.
    let (_, r) = sync(&app, "", ADMIN, json!({"enrollments": [{"trackedEntity": "TeCodes0001", "program": PROGRAM_MCH, "orgUnit": OU_BANI_NAIM, "enrolledAt": "2024-05-01"}]})).await;
    assert!(has_code(&r, "E1015"), "{r}");
    // E1302 / E1305: bad data values.
    let mut ev = event("EvCodes0003", "EnCodes0001", OU_BANI_NAIM);
    ev["dataValues"] = json!([{"dataElement": DE_WEIGHT, "value": "heavy"}, {"dataElement": DE_APGAR, "value": "5"}]);
    let (_, r) = sync(&app, "", ADMIN, json!({"events": [ev]})).await;
    assert!(has_code(&r, "E1302") && has_code(&r, "E1305"), "{r}");
}

#[tokio::test]
async fn e5000_marks_the_children_of_a_failed_creation() {
    let (app, _d) = demo_app("2.40");
    let (s, r) = sync(&app, "", NURSE, nested("TeChain0001", "EnChain0001", "EvChain0001", OU_DURA, "401000010")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let c = codes(&r);
    assert!(c.contains(&("E1000".to_owned(), "TeChain0001".to_owned())), "{r}");
    // The enrollment in Dura fails on its own (E1000); in Bani Naim it would be E5000.
    let mut body = te("TeChain0002", OU_DURA, "401000011");
    let mut e = enrollment("EnChain0002", OU_BANI_NAIM);
    e["events"] = json!([event("EvChain0002", "EnChain0002", OU_BANI_NAIM)]);
    body["enrollments"] = json!([e]);
    let (_, r) = sync(&app, "&atomicMode=OBJECT", NURSE, json!({"trackedEntities": [body]})).await;
    assert_eq!(
        codes(&r),
        vec![
            ("E1000".to_owned(), "TeChain0002".to_owned()),
            ("E5000".to_owned(), "EnChain0002".to_owned()),
            ("E5000".to_owned(), "EvChain0002".to_owned()),
        ],
        "{r}"
    );
    let msgs: Vec<&str> = r["validationReport"]["errorReports"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(msgs[1], "enrollment `EnChain0002` cannot be created because trackedEntity `TeChain0002` referenced by it could not be created.");
    assert_eq!(
        msgs[2],
        "event `EvChain0002` cannot be created because enrollment `EnChain0002` referenced by it could not be created."
    );
    assert_eq!(r["stats"]["ignored"], 3);
}

#[tokio::test]
async fn stored_by_comes_from_the_user_unless_the_payload_sets_it() {
    let (app, _d) = demo_app("2.41");
    let (s, _) =
        sync(&app, "", NURSE, nested("TeStore0001", "EnStore0001", "EvStore0001", OU_BANI_NAIM, "401000012")).await;
    assert_eq!(s, StatusCode::OK);
    let mut ev = event("EvStore0002", "EnStore0001", OU_BANI_NAIM);
    ev["storedBy"] = json!("offline-app");
    ev["dataValues"] = json!([{"dataElement": DE_WEIGHT, "value": "60", "storedBy": "device-7"}]);
    let (s, r) = sync(&app, "", NURSE, json!({"events": [ev]})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (_, e) = get_json(&app, "/api/tracker/events/EvStore0001", NURSE).await;
    assert_eq!(e["storedBy"], NURSE1_USERNAME);
    assert_eq!(e["dataValues"][0]["storedBy"], NURSE1_USERNAME);
    let (_, e) = get_json(&app, "/api/tracker/events/EvStore0002", NURSE).await;
    assert_eq!(e["storedBy"], "offline-app");
    assert_eq!(e["dataValues"][0]["storedBy"], "device-7");
    assert_eq!(e["createdBy"]["username"], NURSE1_USERNAME);
}

#[tokio::test]
async fn legacy_and_new_api_see_each_others_writes() {
    for version in ["2.40", "2.41"] {
        let (app, _d) = demo_app(version);
        // Legacy create → new read.
        let body = json!({
            "trackedEntityInstance": "TeLegacy001", "trackedEntityType": TET_PERSON, "orgUnit": OU_BANI_NAIM,
            "attributes": [{"attribute": ATTR_NATIONAL_ID, "value": "401000013"}, {"attribute": ATTR_FIRST_NAME, "value": "Lina"},
                           {"attribute": ATTR_LAST_NAME, "value": "Saleh"}, {"attribute": ATTR_DOB, "value": "1992-01-01"}],
            "enrollments": [{"enrollment": "EnLegacy001", "program": PROGRAM_MCH, "orgUnit": OU_BANI_NAIM,
                "enrollmentDate": "2024-02-01", "incidentDate": "2024-01-01",
                "events": [{"event": "EvLegacy001", "programStage": STAGE_ANC, "orgUnit": OU_BANI_NAIM,
                            "eventDate": "2024-02-01", "dataValues": [{"dataElement": DE_WEIGHT, "value": "58"}]}]}]
        });
        let (s, v) = call(&app, "POST", "/api/trackedEntityInstances", NURSE, body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, t) = get_json(&app, "/api/tracker/trackedEntities/TeLegacy001?fields=*", NURSE).await;
        assert_eq!(s, StatusCode::OK, "{t}");
        assert_eq!(t["enrollments"][0]["enrollment"], "EnLegacy001");
        assert!(t["enrollments"][0]["enrolledAt"].as_str().expect("enrolledAt").starts_with("2024-02-01"));
        assert_eq!(t["enrollments"][0]["events"][0]["event"], "EvLegacy001");
        assert_eq!(t["enrollments"][0]["events"][0]["dataValues"][0]["value"], "58");
        let (s, l) =
            get_json(&app, &format!("/api/tracker/events?program={PROGRAM_MCH}&orgUnit={OU_BANI_NAIM}"), NURSE).await;
        assert_eq!(s, StatusCode::OK, "{l}");
        let key = if version == "2.40" { "instances" } else { "events" };
        assert!(l[key].as_array().expect("events").iter().any(|e| e["event"] == "EvLegacy001"), "{l}");

        // New create → legacy read.
        let (s, r) =
            sync(&app, "", NURSE, nested("TeNewApi001", "EnNewApi001", "EvNewApi001", OU_BANI_NAIM, "401000014")).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let (s, t) = get_json(&app, "/api/trackedEntityInstances/TeNewApi001?fields=*", NURSE).await;
        assert_eq!(s, StatusCode::OK, "{t}");
        assert_eq!(t["trackedEntityInstance"], "TeNewApi001");
        let en = &t["enrollments"][0];
        assert_eq!(en["enrollment"], "EnNewApi001");
        assert!(en["enrollmentDate"].as_str().expect("enrollmentDate").starts_with("2024-03-01"));
        assert!(en["incidentDate"].as_str().expect("incidentDate").starts_with("2024-01-10"));
        assert_eq!(en["events"][0]["event"], "EvNewApi001");
        assert!(en["events"][0]["eventDate"].as_str().expect("eventDate").starts_with("2024-03-01"));
        assert_eq!(en["events"][0]["storedBy"], NURSE1_USERNAME);
        let (s, e) = get_json(&app, "/api/events/EvNewApi001", NURSE).await;
        assert_eq!(s, StatusCode::OK, "{e}");
        assert_eq!(e["dataValues"][0]["value"], "61.5");
    }
}

async fn seed_three(app: &axum::Router) {
    for (i, ou) in [OU_BANI_NAIM, OU_BANI_NAIM, OU_DURA].iter().enumerate() {
        let t = format!("TePage0000{i}");
        let en = format!("EnPage0000{i}");
        let ev = format!("EvPage0000{i}");
        let (s, r) = sync(app, "", ADMIN, nested(&t, &en, &ev, ou, &format!("40200000{i}"))).await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
}

#[tokio::test]
async fn envelope_2_40_instances_and_old_param_names() {
    let (app, _d) = demo_app("2.40");
    seed_three(&app).await;
    let q = format!("/api/tracker/trackedEntities?program={PROGRAM_MCH}&orgUnit={OU_BANI_NAIM};{OU_DURA}&pageSize=2");
    let (s, v) = get_json(&app, &q, ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["instances"].as_array().expect("instances").len(), 2);
    assert_eq!(v["page"], 1);
    assert_eq!(v["pageSize"], 2);
    assert!(v.get("total").is_none() && v.get("pager").is_none(), "{v}");
    let (_, v) = get_json(&app, &format!("{q}&totalPages=true"), ADMIN).await;
    assert_eq!(v["total"], 3);
    assert_eq!(v["pageCount"], 2);
    let (_, v) = get_json(
        &app,
        &format!(
            "/api/tracker/trackedEntities?program={PROGRAM_MCH}&orgUnit={OU_HEBRON}&ouMode=DESCENDANTS&skipPaging=true"
        ),
        ADMIN,
    )
    .await;
    assert_eq!(v["instances"].as_array().expect("instances").len(), 3);
    assert!(v.get("page").is_none(), "{v}");
    let (_, v) = get_json(
        &app,
        &format!("/api/tracker/trackedEntities?trackedEntity=TePage00000;TePage00002&program={PROGRAM_MCH}"),
        ADMIN,
    )
    .await;
    assert_eq!(v["instances"].as_array().expect("instances").len(), 2, "{v}");
    let (_, v) = get_json(&app, &format!("/api/tracker/enrollments?orgUnit={OU_BANI_NAIM}"), ADMIN).await;
    assert_eq!(v["instances"].as_array().expect("instances").len(), 2, "{v}");
    assert!(v["instances"][0].get("attributes").is_none());
    let (_, v) = get_json(&app, &format!("/api/tracker/events?orgUnit={OU_DURA}"), ADMIN).await;
    assert_eq!(v["instances"].as_array().expect("instances").len(), 1, "{v}");
    // updatedAfter in the future → nothing.
    let (_, v) =
        get_json(&app, &format!("/api/tracker/events?orgUnit={OU_BANI_NAIM}&updatedAfter=2999-01-01"), ADMIN).await;
    assert_eq!(v["instances"], json!([]), "{v}");
}

#[tokio::test]
async fn envelope_2_41_pager_plus_deprecated_page_and_both_param_names() {
    let (app, _d) = demo_app("2.41");
    seed_three(&app).await;
    let (s, v) = get_json(&app, &format!("/api/tracker/trackedEntities?program={PROGRAM_MCH}&orgUnits={OU_BANI_NAIM},{OU_DURA}&pageSize=2&totalPages=true"), ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["trackedEntities"].as_array().expect("list").len(), 2);
    assert_eq!(v["pager"]["page"], 1);
    assert_eq!(v["pager"]["pageSize"], 2);
    assert_eq!(v["pager"]["total"], 3);
    assert!(v["pager"]["nextPage"].as_str().expect("nextPage").contains("page=2"));
    assert_eq!(v["page"], 1, "deprecated top-level page");
    assert_eq!(v["pageSize"], 2);
    // Old names still accepted.
    let (_, v) = get_json(
        &app,
        &format!(
            "/api/tracker/trackedEntities?program={PROGRAM_MCH}&orgUnit={OU_HEBRON}&ouMode=DESCENDANTS&skipPaging=true"
        ),
        ADMIN,
    )
    .await;
    assert_eq!(v["trackedEntities"].as_array().expect("list").len(), 3, "{v}");
    let (_, v) = get_json(&app, &format!("/api/tracker/trackedEntities?program={PROGRAM_MCH}&orgUnits={OU_HEBRON}&orgUnitMode=DESCENDANTS&paging=false"), ADMIN).await;
    assert_eq!(v["trackedEntities"].as_array().expect("list").len(), 3, "{v}");
    assert!(v.get("pager").is_none());
    let (s, _) = get_json(&app, &format!("/api/tracker/events?orgUnit={OU_BANI_NAIM}&pageSize=0"), ADMIN).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn version_2_42_new_names_only_pager_and_no_legacy() {
    let (app, _d) = demo_app("2.42");
    seed_three(&app).await;
    let (s, _) = get_json(&app, "/api/trackedEntityInstances/TePage00000", ADMIN).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "legacy API gone");
    let (s, v) = get_json(
        &app,
        &format!("/api/tracker/trackedEntities?program={PROGRAM_MCH}&orgUnits={OU_BANI_NAIM}&pageSize=1&page=2"),
        ADMIN,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["trackedEntities"].as_array().expect("list").len(), 1);
    assert_eq!(v["pager"]["page"], 2);
    assert!(v["pager"]["prevPage"].as_str().expect("prevPage").contains("page=1"));
    assert!(v.get("page").is_none(), "no deprecated top-level page on 2.42");
    // The old singular orgUnit is ignored for TEs (ACCESSIBLE: all three for admin).
    let (_, v) = get_json(
        &app,
        &format!("/api/tracker/trackedEntities?program={PROGRAM_MCH}&orgUnit={OU_DURA}&paging=false"),
        ADMIN,
    )
    .await;
    assert_eq!(v["trackedEntities"].as_array().expect("list").len(), 3, "{v}");
    // Events keep the singular orgUnit; enrollments use orgUnits.
    let (_, v) = get_json(&app, &format!("/api/tracker/events?orgUnit={OU_DURA}"), ADMIN).await;
    assert_eq!(v["events"].as_array().expect("list").len(), 1, "{v}");
    let (_, v) = get_json(&app, &format!("/api/tracker/enrollments?orgUnits={OU_DURA}"), ADMIN).await;
    assert_eq!(v["enrollments"].as_array().expect("list").len(), 1, "{v}");
}

#[tokio::test]
async fn ownership_401_up_to_2_41_and_404_on_2_42() {
    for (version, expected) in [("2.40", StatusCode::UNAUTHORIZED), ("2.42", StatusCode::NOT_FOUND)] {
        let (app, _d) = demo_app(version);
        let (s, _) =
            sync(&app, "", ADMIN, nested("TeOwner0001", "EnOwner0001", "EvOwner0001", OU_DURA, "401000015")).await;
        assert_eq!(s, StatusCode::OK);
        // midwife1 searches Hebron District but captures only Bani Naim; MCH is PROTECTED.
        let (s, v) =
            get_json(&app, &format!("/api/tracker/trackedEntities/TeOwner0001?program={PROGRAM_MCH}"), MIDWIFE).await;
        assert_eq!(s, expected, "{version}: {v}");
        if expected == StatusCode::UNAUTHORIZED {
            assert_eq!(v["message"], "OWNERSHIP_ACCESS_DENIED");
        }
    }
}

#[tokio::test]
async fn bad_input_is_a_dhis2_error_never_a_panic() {
    let (app, _d) = demo_app("2.40");
    for body in
        ["[]", "{\"trackedEntities\": 5}", "{\"trackedEntities\": [1]}", "{\"events\": [\"x\"]}", "{not json", ""]
    {
        let req = Request::builder()
            .method("POST")
            .uri("/api/tracker")
            .header("authorization", basic(NURSE.0, NURSE.1))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request");
        let resp = send(&app, req).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let v = body_json(resp).await;
        assert_eq!(v["httpStatusCode"], 400, "{body}: {v}");
    }
    // A malformed UID is E1048; odd value types are reported, not panicked on.
    let mut t = te("bad uid", OU_BANI_NAIM, "401000016");
    t["attributes"] = json!([{"attribute": 7, "value": {"x": 1}}, {"value": "v"}]);
    let (s, r) = sync(&app, "", NURSE, json!({"trackedEntities": [t]})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(has_code(&r, "E1048"), "{r}");
    let (s, r) =
        sync(&app, "", NURSE, json!({"events": [{"event": 12, "dataValues": "no"}], "enrollments": [{}]})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert!(has_code(&r, "E1122") && has_code(&r, "E1048"), "{r}");
}

#[tokio::test]
async fn cascade_delete_needs_the_authority() {
    let (app, _d) = demo_app("2.40");
    let (s, _) =
        sync(&app, "", NURSE, nested("TeCascad001", "EnCascad001", "EvCascad001", OU_BANI_NAIM, "401000017")).await;
    assert_eq!(s, StatusCode::OK);
    // The data entry role has no F_TEI_CASCADE_DELETE / F_ENROLLMENT_CASCADE_DELETE.
    let (s, r) =
        sync(&app, "&importStrategy=DELETE", NURSE, json!({"trackedEntities": [{"trackedEntity": "TeCascad001"}]}))
            .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(has_code(&r, "E1100"), "{r}");
    let (_, r) =
        sync(&app, "&importStrategy=DELETE", NURSE, json!({"enrollments": [{"enrollment": "EnCascad001"}]})).await;
    assert!(has_code(&r, "E1103"), "{r}");
    // Events first, then the enrollment, then the TE: allowed.
    let (s, r) = sync(&app, "&importStrategy=DELETE", NURSE, json!({"events": [{"event": "EvCascad001"}]})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) =
        sync(&app, "&importStrategy=DELETE", NURSE, json!({"enrollments": [{"enrollment": "EnCascad001"}]})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) =
        sync(&app, "&importStrategy=DELETE", NURSE, json!({"trackedEntities": [{"trackedEntity": "TeCascad001"}]}))
            .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["stats"]["deleted"], 1);
    // The admin (ALL) deletes with children in one go.
    let (s, _) =
        sync(&app, "", ADMIN, nested("TeCascad002", "EnCascad002", "EvCascad002", OU_BANI_NAIM, "401000018")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) =
        sync(&app, "&importStrategy=DELETE", ADMIN, json!({"trackedEntities": [{"trackedEntity": "TeCascad002"}]}))
            .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, _) = get_json(&app, "/api/tracker/events/EvCascad002", ADMIN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

// dhis2-core 2.40 DefaultTrackerImportService.buildImportReport (:323-345), 2.41 (:166-189):
// warnings only with reportMode WARNINGS/FULL (the key stays), timingsStats only with FULL.
// Notes (2.41 ValidationUtils:102-117, :268): a stored note UID is warning E1119 and the note
// is not added again; a malformed note UID is E1048.
#[tokio::test]
async fn report_mode_and_note_validation() {
    let (app, _d) = demo_app("2.40");
    let (s, r) =
        sync(&app, "", NURSE, nested("TeNotes0001", "EnNotes0001", "EvNotes0001", OU_BANI_NAIM, "401000070")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let mut ev = event("EvNotes0001", "EnNotes0001", OU_BANI_NAIM);
    ev["notes"] = json!([{"note": "NtNotes0001", "value": "First visit"}]);
    let (s, r) = sync(&app, "&reportMode=FULL", NURSE, json!({"events": [ev.clone()]})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["validationReport"]["warningReports"], json!([]));
    assert!(r["timingsStats"].is_object(), "FULL keeps timingsStats up to 2.40: {r}");

    // The same note again: warning E1119, the event still updated, the note not duplicated.
    let warning = json!([{"message": "A Tracker Note with uid `NtNotes0001` already exists.", "warningCode": "E1119",
                          "trackerType": "EVENT", "uid": "EvNotes0001"}]);
    for (mode, warnings, timings) in [
        ("", json!([]), false),
        ("&reportMode=ERRORS", json!([]), false),
        ("&reportMode=WARNINGS", warning.clone(), false),
        ("&reportMode=full", warning.clone(), true),
    ] {
        let (s, r) = sync(&app, mode, NURSE, json!({"events": [ev.clone()]})).await;
        assert_eq!(s, StatusCode::OK, "{mode}: {r}");
        assert_eq!(r["status"], "OK");
        assert_eq!(r["stats"]["updated"], 1, "{mode}: {r}");
        assert_eq!(r["validationReport"]["warningReports"], warnings, "{mode}: {r}");
        assert_eq!(r["validationReport"]["errorReports"], json!([]));
        assert_eq!(r.get("timingsStats").is_some(), timings, "{mode}: {r}");
    }
    let (_, e) = get_json(&app, "/api/tracker/events/EvNotes0001?fields=notes", NURSE).await;
    assert_eq!(e["notes"].as_array().map(Vec::len), Some(1), "{e}");

    // A malformed note UID: E1048 on the event (ALL: nothing committed, 409).
    ev["notes"] = json!([{"note": "bad-note", "value": "Second visit"}]);
    let (s, r) = sync(&app, "", NURSE, json!({"events": [ev]})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert_eq!(codes(&r), vec![("E1048".to_owned(), "EvNotes0001".to_owned())]);
    assert!(r.get("bundleReport").is_none());
    assert_eq!(r["stats"]["ignored"], 1);

    // An unknown reportMode is a 400.
    let (s, _) = sync(&app, "&reportMode=VERBOSE", NURSE, json!({"events": []})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

// The bundle is checked once, before anything is written: a rule the commit used to find late
// (a second event of a non-repeatable stage in the same bundle) is E1039 at validation, and a
// value DHIS2 cannot deserialize (a status outside the enum, a date that is not one) refuses
// the whole request with a 400, as Jackson does, with nothing written.
#[tokio::test]
async fn a_bundle_is_checked_before_anything_is_written() {
    let (app, _d) = demo_app("2.40");
    let (s, r) =
        sync(&app, "", NURSE, nested("TeOnceChk01", "EnOnceChk01", "EvOnceChk01", OU_BANI_NAIM, "401000090")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let delivery = |uid: &str| {
        json!({"event": uid, "enrollment": "EnOnceChk01", "program": PROGRAM_MCH, "programStage": STAGE_DELIVERY,
               "orgUnit": OU_BANI_NAIM, "status": "ACTIVE", "occurredAt": "2024-06-01T00:00:00.000"})
    };
    let two = json!({"events": [delivery("EvDeliv0001"), delivery("EvDeliv0002")]});
    let (s, r) = sync(&app, "", NURSE, two.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert_eq!(codes(&r), vec![("E1039".to_owned(), "EvDeliv0002".to_owned())], "{r}");
    let (s, _) = get_json(&app, "/api/tracker/events/EvDeliv0001", NURSE).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "atomicMode=ALL writes nothing");
    let (s, r) = sync(&app, "&atomicMode=OBJECT", NURSE, two).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["stats"]["created"], 1, "{r}");
    assert_eq!(r["stats"]["ignored"], 1, "{r}");
    let (s, _) = get_json(&app, "/api/tracker/events/EvDeliv0001", NURSE).await;
    assert_eq!(s, StatusCode::OK);

    for (key, value) in [("status", "DONE"), ("scheduledAt", "next week")] {
        let mut ev = event("EvBadValue1", "EnOnceChk01", OU_BANI_NAIM);
        ev[key] = json!(value);
        let (s, r) = sync(&app, "", NURSE, json!({"events": [ev]})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{key}: {r}");
        assert_eq!(r["httpStatusCode"], 400, "{r}");
        assert!(r["message"].as_str().is_some_and(|m| m.contains(value)), "{r}");
    }
    let mut en = enrollment("EnBadValue1", OU_BANI_NAIM);
    en["trackedEntity"] = json!("TeOnceChk01");
    en["occurredAt"] = json!("2024-13-45");
    let (s, r) = sync(&app, "", NURSE, json!({"enrollments": [en]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    let (s, _) = get_json(&app, "/api/tracker/events/EvBadValue1", NURSE).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A lower-case status is read as DHIS2's enum, as before.
    let mut ev = event("EvLowCase01", "EnOnceChk01", OU_BANI_NAIM);
    ev["status"] = json!("completed");
    let (s, r) = sync(&app, "", NURSE, json!({"events": [ev]})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (_, e) = get_json(&app, "/api/tracker/events/EvLowCase01", NURSE).await;
    assert_eq!(e["status"], "COMPLETED", "{e}");
    assert!(e["completedAt"].is_string(), "{e}");
}
