//! Router-level contract tests of the MCH metadata endpoints, the legacy tracker API
//! (`trackedEntityInstances`, `enrollments`, `events`, `query.json`), ownership, storedBy,
//! reserved values and persistence, against docs/dhis2-api.md.
//!
//! About 1,050 lines: each test reads alone, in the order of docs/dhis2-api.md's sections.

#![allow(clippy::expect_used, clippy::panic)]

mod common;

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use common::*;
use dhis2_sim::seed::*;
use serde_json::{json, Value};

fn with_body(method: &str, uri: &str, user: (&str, &str), body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", basic(user.0, user.1))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

const NURSE: (&str, &str) = (NURSE1_USERNAME, NURSE1_PASSWORD);
const ADMIN: (&str, &str) = (ADMIN_USERNAME, ADMIN_PASSWORD);
const MIDWIFE: (&str, &str) = (MIDWIFE1_USERNAME, MIDWIFE1_PASSWORD);

async fn call(app: &axum::Router, method: &str, uri: &str, user: (&str, &str), body: Value) -> (StatusCode, Value) {
    let resp = send(app, with_body(method, uri, user, &body.to_string())).await;
    let status = resp.status();
    let bytes = body_bytes(resp).await;
    let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    (status, v)
}

async fn get_json(app: &axum::Router, uri: &str, user: (&str, &str)) -> (StatusCode, Value) {
    let resp = send(app, get_as(uri, user.0, user.1)).await;
    let status = resp.status();
    (status, body_json(resp).await)
}

fn person(uid: Option<&str>, ou: &str, national_id: &str, first: &str) -> Value {
    let mut v = json!({
        "trackedEntityType": TET_PERSON,
        "orgUnit": ou,
        "attributes": [
            {"attribute": ATTR_NATIONAL_ID, "value": national_id},
            {"attribute": ATTR_FIRST_NAME, "value": first},
            {"attribute": ATTR_LAST_NAME, "value": "Haddad"},
            {"attribute": ATTR_DOB, "value": "1990-04-12"},
            {"attribute": ATTR_PHONE, "value": "+970599123456"},
        ]
    });
    if let Some(u) = uid {
        v["trackedEntityInstance"] = json!(u);
    }
    v
}

/// Registers a woman with an enrollment and one ANC event (nested), as admin; returns the UIDs.
async fn register(app: &axum::Router, te: &str, ou: &str, national_id: &str) -> (String, String, String) {
    let en = format!("En{}", &te[2..]);
    let ev = format!("Ev{}", &te[2..]);
    let mut body = person(Some(te), ou, national_id, "Maryam");
    body["enrollments"] = json!([{
        "enrollment": en, "program": PROGRAM_MCH, "orgUnit": ou, "status": "ACTIVE",
        "enrollmentDate": "2024-03-01", "incidentDate": "2024-01-10",
        "events": [{"event": ev, "programStage": STAGE_ANC, "orgUnit": ou, "status": "ACTIVE",
                    "eventDate": "2024-03-01", "dataValues": [{"dataElement": DE_WEIGHT, "value": "61.5"}]}]
    }]);
    let (status, v) = call(app, "POST", "/api/trackedEntityInstances", ADMIN, body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    (te.to_owned(), en, ev)
}

// -------------------------------------------------------------------------------------------
// Metadata
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn metadata_endpoints_have_dhis2_shapes() {
    let (app, _dir) = demo_app("2.40");
    let (s, v) = get_json(&app, "/api/programs", NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["pager"], json!({"page": 1, "pageCount": 1, "total": 1, "pageSize": 50}));
    assert_eq!(v["programs"], json!([{"id": PROGRAM_MCH, "displayName": "Maternal and Child Health"}]));

    // Tracker Capture's boot request.
    let uri = "/api/programs.json?filter=programType:eq:WITH_REGISTRATION&paging=false&fields=id,version,\
               programTrackedEntityAttributes[trackedEntityAttribute[id,optionSet[id,version]]],\
               programStages[id,programStageDataElements[dataElement[id,optionSet[id,version]]]]";
    let (s, v) = get_json(&app, uri, NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.get("pager").is_none());
    let p = &v["programs"][0];
    assert_eq!(p["version"], 1);
    assert_eq!(p["programTrackedEntityAttributes"].as_array().map(Vec::len), Some(6));
    let stages = p["programStages"].as_array().expect("stages");
    assert_eq!(stages.len(), 4);
    let delivery = stages.iter().find(|s| s["id"] == STAGE_DELIVERY).expect("delivery");
    let mode = delivery["programStageDataElements"]
        .as_array()
        .expect("psdes")
        .iter()
        .find(|d| d["dataElement"]["id"] == DE_DELIVERY_MODE)
        .expect("mode");
    assert_eq!(mode["dataElement"]["optionSet"], json!({"id": OS_DELIVERY_MODE, "version": 1}));

    let (_, v) = get_json(&app, &format!("/api/programs/{PROGRAM_MCH}"), NURSE).await;
    assert_eq!(v["programType"], "WITH_REGISTRATION");
    assert_eq!(v["trackedEntityType"], json!({"id": TET_PERSON}), "references collapse under *");
    let ous: Vec<&str> =
        v["organisationUnits"].as_array().expect("ous").iter().filter_map(|o| o["id"].as_str()).collect();
    assert_eq!(ous.len(), 3);
    assert!(ous.contains(&OU_BANI_NAIM));

    let (_, v) =
        get_json(&app, &format!("/api/programStages/{STAGE_ANC}.json?fields=id,repeatable,program"), NURSE).await;
    assert_eq!(v, json!({"id": STAGE_ANC, "repeatable": true, "program": {"id": PROGRAM_MCH}}));

    let (_, v) =
        get_json(&app, "/api/trackedEntityAttributes?fields=id,valueType,unique,generated&paging=false", NURSE).await;
    let attrs = v["trackedEntityAttributes"].as_array().expect("attrs");
    assert!(attrs.contains(&json!({"id": ATTR_NATIONAL_ID, "valueType": "TEXT", "unique": true, "generated": false})));
    assert!(attrs.contains(&json!({"id": ATTR_REG_NUMBER, "valueType": "TEXT", "unique": true, "generated": true})));
    assert!(attrs.contains(&json!({"id": ATTR_DOB, "valueType": "DATE", "unique": false, "generated": false})));

    let (_, v) =
        get_json(&app, &format!("/api/optionSets/{OS_DELIVERY_MODE}?fields=id,options[code,name]"), NURSE).await;
    assert_eq!(
        v["options"],
        json!([{"code": "NORMAL", "name": "Normal"}, {"code": "CAESAREAN", "name": "Caesarean"}, {"code": "ASSISTED", "name": "Assisted"}])
    );
    let (_, v) = get_json(&app, "/api/optionSets.json?filter=id:in:[OsSex000001,OsBirthOut1]&fields=id", NURSE).await;
    assert_eq!(v["optionSets"].as_array().map(Vec::len), Some(2));
    let (_, v) = get_json(&app, "/api/dataElements?paging=false&fields=id,valueType", NURSE).await;
    let des = v["dataElements"].as_array().expect("des");
    for vt in ["NUMBER", "INTEGER_POSITIVE", "DATE", "TEXT", "BOOLEAN", "TRUE_ONLY"] {
        assert!(des.iter().any(|d| d["valueType"] == vt), "{vt}");
    }
    let (_, v) = get_json(
        &app,
        "/api/trackedEntityTypes?fields=id,trackedEntityTypeAttributes[trackedEntityAttribute[id]]",
        NURSE,
    )
    .await;
    assert_eq!(v["trackedEntityTypes"][0]["id"], TET_PERSON);
    let (_, v) = get_json(&app, &format!("/api/organisationUnits/{OU_HEBRON}?fields=id,level,children"), NURSE).await;
    assert_eq!(v["level"], 2);
    assert_eq!(v["children"].as_array().map(Vec::len), Some(3));
    let (_, v) = get_json(&app, &format!("/api/programs/orgUnits?programs={PROGRAM_MCH}"), NURSE).await;
    assert_eq!(v[PROGRAM_MCH].as_array().map(Vec::len), Some(3));

    let (s, v) = get_json(&app, "/api/programs/NoSuchProg1", NURSE).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["httpStatusCode"], 404);
    assert_eq!(v["message"], "Program with id NoSuchProg1 could not be found.");
}

// -------------------------------------------------------------------------------------------
// Registration flow (Tracker Capture's three calls) and reads
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn tracker_capture_registration_flow() {
    let (app, _dir) = demo_app("2.40");
    // 1. TEI without UID: the server assigns one.
    let (s, v) =
        call(&app, "POST", "/api/trackedEntityInstances", NURSE, person(None, OU_BANI_NAIM, "401234567", "Amal")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["httpStatus"], "OK");
    assert_eq!(v["status"], "OK");
    assert_eq!(v["message"], "Import was successful.");
    let r = &v["response"];
    assert_eq!(r["responseType"], "ImportSummaries");
    assert_eq!(
        (r["status"].as_str(), r["imported"].as_i64(), r["total"].as_i64()),
        (Some("SUCCESS"), Some(1), Some(1))
    );
    let is = &r["importSummaries"][0];
    assert_eq!(is["responseType"], "ImportSummary");
    assert_eq!(is["status"], "SUCCESS");
    assert_eq!(is["importCount"], json!({"imported": 1, "updated": 0, "ignored": 0, "deleted": 0}));
    assert_eq!(is["conflicts"], json!([]));
    let tei = is["reference"].as_str().expect("reference").to_owned();
    assert!(is_uid(&tei));
    assert!(is["href"].as_str().expect("href").ends_with(&format!("/api/trackedEntityInstances/{tei}")));
    assert_eq!(is["enrollments"]["importSummaries"], json!([]));

    // 2. Enrollment: 201 (2.37–2.41 quirk).
    let body = json!({"trackedEntityInstance": tei, "program": PROGRAM_MCH, "status": "ACTIVE", "orgUnit": OU_BANI_NAIM,
                      "enrollmentDate": "2024-05-01", "incidentDate": "2024-03-01"});
    let (s, v) = call(&app, "POST", "/api/enrollments", NURSE, body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["httpStatus"].as_str(), v["httpStatusCode"].as_i64(), v["status"].as_str()),
        (Some("Created"), Some(201), Some("OK"))
    );
    assert_eq!(v["response"]["status"], "SUCCESS");
    let enrollment = v["response"]["importSummaries"][0]["reference"].as_str().expect("enrollment").to_owned();

    // 3. Events (bulk wrapper, .json path).
    let body = json!({"events": [{"trackedEntityInstance": tei, "program": PROGRAM_MCH, "programStage": STAGE_ANC,
        "enrollment": enrollment, "orgUnit": OU_BANI_NAIM, "dataValues": [{"dataElement": DE_GEST_WEEKS, "value": "9"}],
        "notes": [{"value": "First visit"}], "status": "ACTIVE", "eventDate": "2024-05-01"}]});
    let (s, v) = call(&app, "POST", "/api/events.json", NURSE, body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let event = v["response"]["importSummaries"][0]["reference"].as_str().expect("event").to_owned();

    // Dashboard read.
    let (s, v) =
        get_json(&app, &format!("/api/trackedEntityInstances/{tei}.json?program={PROGRAM_MCH}&fields=*"), NURSE).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["trackedEntityInstance"], tei);
    assert_eq!(v["trackedEntityType"], TET_PERSON);
    assert_eq!(v["orgUnit"], OU_BANI_NAIM);
    assert_eq!(v["attributes"].as_array().map(Vec::len), Some(5));
    assert_eq!(v["attributes"][0]["attribute"], ATTR_NATIONAL_ID);
    assert_eq!(v["attributes"][0]["storedBy"], NURSE1_USERNAME);
    assert_eq!(
        v["programOwners"],
        json!([{"ownerOrgUnit": OU_BANI_NAIM, "program": PROGRAM_MCH, "trackedEntityInstance": tei}])
    );
    let e = &v["enrollments"][0];
    assert_eq!((e["enrollment"].as_str(), e["status"].as_str()), (Some(enrollment.as_str()), Some("ACTIVE")));
    assert_eq!(e["enrollmentDate"], "2024-05-01T00:00:00.000");
    assert_eq!(e["incidentDate"], "2024-03-01T00:00:00.000");
    let ev = &e["events"][0];
    assert_eq!(ev["event"], event);
    assert_eq!(ev["storedBy"], NURSE1_USERNAME);
    assert_eq!(ev["dataValues"][0]["value"], "9");
    assert_eq!(ev["dataValues"][0]["storedBy"], NURSE1_USERNAME);
    assert_eq!(ev["notes"][0]["value"], "First visit");
    assert_eq!(ev["eventDate"], "2024-05-01T00:00:00.000");

    // Events of the TEI, as the dashboard asks for them.
    let uri =
        format!("/api/events.json?ouMode=ACCESSIBLE&trackedEntityInstance={tei}&program={PROGRAM_MCH}&skipPaging=true");
    let (s, v) = get_json(&app, &uri, NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.get("pager").is_none());
    assert_eq!(v["events"][0]["event"], event);
    assert!(v["events"][0].get("storedBy").is_none(), "default event list fields");

    // Single event and enrollment.
    let (s, v) = get_json(&app, &format!("/api/events/{event}"), NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["enrollment"], enrollment);
    let (s, v) = get_json(&app, &format!("/api/enrollments?trackedEntityInstance={tei}"), NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["enrollments"][0]["enrollment"], enrollment);
    assert_eq!(v["pager"], json!({"page": 1, "pageSize": 50, "isLastPage": true}));

    // Complete the enrollment: 204.
    let resp = send(&app, with_body("PUT", &format!("/api/enrollments/{enrollment}/completed"), NURSE, "")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (_, v) = get_json(&app, &format!("/api/enrollments/{enrollment}"), NURSE).await;
    assert_eq!(v["status"], "COMPLETED");
    assert_eq!(v["completedBy"], NURSE1_USERNAME);
    let resp = send(&app, with_body("PUT", "/api/enrollments/NoSuchEnr01/completed", NURSE, "")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn enrollment_post_is_201_even_when_it_fails() {
    let (app, _dir) = demo_app("2.41");
    let (tei, ..) = register(&app, "TeQuirk0001", OU_BANI_NAIM, "402000001").await;
    let body = json!({"trackedEntityInstance": tei, "program": "NoSuchProg1", "orgUnit": OU_BANI_NAIM});
    let (s, v) = call(&app, "POST", "/api/enrollments", NURSE, body).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["httpStatusCode"], 201);
    assert_eq!(v["status"], "ERROR");
    assert_eq!(v["response"]["status"], "ERROR");
    assert_eq!(v["response"]["importSummaries"][0]["description"], "Program can not be null");
    // A second ACTIVE enrollment in the same program.
    let body =
        json!({"trackedEntityInstance": tei, "program": PROGRAM_MCH, "orgUnit": OU_BANI_NAIM, "status": "ACTIVE"});
    let (s, v) = call(&app, "POST", "/api/enrollments", NURSE, body).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        v["response"]["importSummaries"][0]["description"],
        format!("TrackedEntityInstance {tei} already has an active enrollment in program {PROGRAM_MCH}")
    );
}

#[tokio::test]
async fn mandatory_attributes_are_checked_at_enrollment() {
    let (app, _dir) = demo_app("2.40");
    let body = json!({"trackedEntityInstance": "TeNoDob0001", "trackedEntityType": TET_PERSON, "orgUnit": OU_BANI_NAIM,
                      "attributes": [{"attribute": ATTR_NATIONAL_ID, "value": "403000001"}]});
    let (s, _) = call(&app, "POST", "/api/trackedEntityInstances", NURSE, body).await;
    assert_eq!(s, StatusCode::OK);
    let body = json!({"trackedEntityInstance": "TeNoDob0001", "program": PROGRAM_MCH, "orgUnit": OU_BANI_NAIM});
    let (s, v) = call(&app, "POST", "/api/enrollments", NURSE, body).await;
    assert_eq!(s, StatusCode::CREATED);
    let conflicts = v["response"]["importSummaries"][0]["conflicts"].as_array().expect("conflicts").clone();
    assert!(conflicts.contains(
        &json!({"object": "Attribute.attribute", "value": format!("Missing mandatory attribute {ATTR_FIRST_NAME}")})
    ));
}

// -------------------------------------------------------------------------------------------
// Strategies, UIDs, conflicts, errors
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn strategies_and_idempotent_creates() {
    let (app, _dir) = demo_app("2.40");
    let tei = "TeStrat0001";
    let body = json!({"trackedEntityInstances": [person(Some(tei), OU_BANI_NAIM, "404000001", "Lina")]});
    let (s, v) = call(&app, "POST", "/api/trackedEntityInstances", NURSE, body.clone()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["response"]["importSummaries"][0]["reference"], tei);
    // Same UID again (default CREATE_AND_UPDATE): an update, never a duplicate.
    let (s, v) = call(&app, "POST", "/api/trackedEntityInstances", NURSE, body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["response"]["imported"].as_i64(), v["response"]["updated"].as_i64()), (Some(0), Some(1)));
    let (_, n) = get_json(
        &app,
        &format!("/api/trackedEntityInstances/count.json?ou={OU_BANI_NAIM}&program={PROGRAM_MCH}"),
        NURSE,
    )
    .await;
    assert_eq!(n, json!(0), "no enrollment yet, so no match for the program");
    let (_, n) = get_json(
        &app,
        &format!("/api/trackedEntityInstances/count.json?ou={OU_BANI_NAIM}&trackedEntityType={TET_PERSON}"),
        NURSE,
    )
    .await;
    assert_eq!(n, json!(1));

    // CREATE with an existing UID: 409 ERROR.
    let (s, v) = call(&app, "POST", "/api/trackedEntityInstances?strategy=CREATE", NURSE, body.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!((v["httpStatus"].as_str(), v["status"].as_str()), (Some("Conflict"), Some("ERROR")));
    assert_eq!(v["message"], "An error occurred, please check import summary.");
    assert_eq!(
        v["response"]["importSummaries"][0]["description"],
        format!("Tracked entity instance {tei} already exists or was deleted earlier")
    );
    assert_eq!(v["response"]["ignored"], 1);

    // UPDATE of an unknown UID.
    let other = json!({"trackedEntityInstances": [person(Some("TeUnknown01"), OU_BANI_NAIM, "404000002", "Reem")]});
    let (s, v) = call(&app, "POST", "/api/trackedEntityInstances?strategy=UPDATE", NURSE, other).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["response"]["importSummaries"][0]["status"], "ERROR");

    // DELETE, then it is gone (and cannot be re-created).
    let (s, v) = call(
        &app,
        "POST",
        "/api/trackedEntityInstances?strategy=DELETE",
        NURSE,
        json!({"trackedEntityInstances": [{"trackedEntityInstance": tei}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["response"]["deleted"], 1);
    let (s, v) = get_json(&app, &format!("/api/trackedEntityInstances/{tei}"), NURSE).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["message"], format!("TrackedEntityInstance with id {tei} could not be found."));
    let (s, _) = call(&app, "POST", "/api/trackedEntityInstances", NURSE, body).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Unknown strategy: 400.
    let (s, v) = call(&app, "POST", "/api/events?strategy=MERGE", NURSE, json!({"events": []})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["httpStatusCode"], 400);
}

#[tokio::test]
async fn bad_input_gets_dhis2_errors() {
    let (app, _dir) = demo_app("2.40");
    // Malformed JSON: 400 WebMessage.
    let resp = send(&app, with_body("POST", "/api/trackedEntityInstances", NURSE, "{\"trackedEntityType\":")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v = body_json(resp).await;
    assert_eq!((v["httpStatus"].as_str(), v["status"].as_str()), (Some("Bad Request"), Some("ERROR")));
    let resp = send(&app, with_body("POST", "/api/events", NURSE, "[1,2]")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = send(&app, with_body("PUT", "/api/events/EvWhatever1", NURSE, "not json")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // A bad client UID.
    let (s, v) = call(
        &app,
        "POST",
        "/api/trackedEntityInstances",
        NURSE,
        person(Some("1bad-uid"), OU_BANI_NAIM, "405000001", "Ola"),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v["response"]["importSummaries"][0]["conflicts"][0]["object"],
        "TrackedEntityInstance.trackedEntityInstance"
    );

    // Unknown org unit and type.
    let (s, v) = call(
        &app,
        "POST",
        "/api/trackedEntityInstances",
        NURSE,
        person(Some("TeBadOu0001"), "NoSuchOu001", "405000002", "Ola"),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v["response"]["importSummaries"][0]["conflicts"][0],
        json!({"object": "TeBadOu0001", "value": "Invalid org unit ID: NoSuchOu001"})
    );
    let mut p = person(None, OU_BANI_NAIM, "405000003", "Ola");
    p["trackedEntityType"] = json!("NoSuchTet01");
    let (_, v) = call(&app, "POST", "/api/trackedEntityInstances", NURSE, p).await;
    assert_eq!(
        v["response"]["importSummaries"][0]["conflicts"][0],
        json!({"object": "TrackedEntityInstance.trackedEntityType", "value": "Invalid trackedEntityType NoSuchTet01"})
    );

    // Bad attribute values.
    let mut p = person(None, OU_BANI_NAIM, "405000004", "Ola");
    p["attributes"][3]["value"] = json!("12/04/1990");
    let (s, v) = call(&app, "POST", "/api/trackedEntityInstances", NURSE, p).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v["response"]["importSummaries"][0]["conflicts"][0],
        json!({"object": "Attribute.value", "value": format!("Value '12/04/1990' is not a valid date type for attribute {ATTR_DOB}")})
    );

    // Unknown program on an event.
    let (tei, en, _) = register(&app, "TeBadIn0001", OU_BANI_NAIM, "405000005").await;
    let ev = json!({"trackedEntityInstance": tei, "program": "NoSuchProg1", "programStage": STAGE_ANC, "orgUnit": OU_BANI_NAIM, "eventDate": "2024-05-01"});
    let (s, v) = call(&app, "POST", "/api/events", NURSE, ev).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v["response"]["importSummaries"][0]["description"],
        "Event.program does not point to a valid program: NoSuchProg1"
    );
    // Unknown stage; option value not in the option set; repeat of a non-repeatable stage.
    let ev = json!({"enrollment": en, "program": PROGRAM_MCH, "programStage": "NoSuchStag1", "orgUnit": OU_BANI_NAIM, "eventDate": "2024-05-01"});
    let (s, v) = call(&app, "POST", "/api/events", NURSE, ev).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v["response"]["importSummaries"][0]["description"],
        "Event.programStage does not point to a valid programStage: NoSuchStag1"
    );
    let ev = json!({"enrollment": en, "program": PROGRAM_MCH, "programStage": STAGE_DELIVERY, "orgUnit": OU_BANI_NAIM, "eventDate": "2024-09-01",
                    "dataValues": [{"dataElement": DE_DELIVERY_MODE, "value": "Vaginal"}]});
    let (s, v) = call(&app, "POST", "/api/events", NURSE, ev.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v["response"]["importSummaries"][0]["conflicts"][0],
        json!({"object": DE_DELIVERY_MODE, "value": "value_not_valid_option"})
    );
    let mut ok = ev.clone();
    ok["dataValues"][0]["value"] = json!("CAESAREAN");
    let (s, _) = call(&app, "POST", "/api/events", NURSE, ok.clone()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&app, "POST", "/api/events", NURSE, ok).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v["response"]["importSummaries"][0]["description"],
        "Program stage is not repeatable and an event already exists"
    );
    // Missing event date.
    let ev = json!({"enrollment": en, "program": PROGRAM_MCH, "programStage": STAGE_ANC, "orgUnit": OU_BANI_NAIM});
    let (_, v) = call(&app, "POST", "/api/events", NURSE, ev).await;
    assert_eq!(v["response"]["importSummaries"][0]["description"], "Event date is required. ");
}

#[tokio::test]
async fn non_unique_national_id_is_a_conflict() {
    let (app, _dir) = demo_app("2.40");
    register(&app, "TeUniq00001", OU_BANI_NAIM, "406000001").await;
    let (s, v) =
        call(&app, "POST", "/api/trackedEntityInstances", NURSE, person(None, OU_BANI_NAIM, "406000001", "Noor")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let is = &v["response"]["importSummaries"][0];
    assert_eq!(is["status"], "ERROR");
    assert_eq!(
        is["conflicts"][0],
        json!({"object": "Attribute.value", "value": format!("Non-unique attribute value '406000001' for attribute {ATTR_NATIONAL_ID}")})
    );
    // The owner itself may resend its own value.
    let (s, _) = call(
        &app,
        "PUT",
        "/api/trackedEntityInstances/TeUniq00001",
        ADMIN,
        person(None, OU_BANI_NAIM, "406000001", "Noor"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn put_replaces_attributes_and_data_values() {
    let (app, _dir) = demo_app("2.40");
    let (tei, _en, ev) = register(&app, "TePut000001", OU_BANI_NAIM, "407000001").await;
    // PUT TEI without the phone: the phone is deleted. Single ImportSummary back.
    let mut p = person(None, OU_BANI_NAIM, "407000001", "Salma");
    p["attributes"].as_array_mut().expect("attrs").pop();
    let (s, v) = call(&app, "PUT", &format!("/api/trackedEntityInstances/{tei}?program={PROGRAM_MCH}"), NURSE, p).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["response"]["responseType"], "ImportSummary");
    assert_eq!(v["response"]["importCount"]["updated"], 1);
    let (_, t) = get_json(
        &app,
        &format!("/api/trackedEntityInstances/{tei}?program={PROGRAM_MCH}&fields=attributes[attribute,value]"),
        NURSE,
    )
    .await;
    let attrs = t["attributes"].as_array().expect("attrs");
    assert_eq!(attrs.len(), 4);
    assert!(attrs.contains(&json!({"attribute": ATTR_FIRST_NAME, "value": "Salma"})));

    // PUT a single value, then the whole event without it.
    let body = json!({"event": ev, "orgUnit": OU_BANI_NAIM, "program": PROGRAM_MCH, "programStage": STAGE_ANC, "status": "ACTIVE",
                      "trackedEntityInstance": tei, "dataValues": [{"dataElement": DE_HAEMOGLOBIN, "value": "11.2", "providedElsewhere": false}]});
    let (s, v) = call(&app, "PUT", &format!("/api/events/{ev}/{DE_HAEMOGLOBIN}"), NURSE, body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["response"]["responseType"], "ImportSummary");
    let (_, e) =
        get_json(&app, &format!("/api/events/{ev}?fields=dataValues[dataElement,value,storedBy]"), NURSE).await;
    assert_eq!(e["dataValues"].as_array().map(Vec::len), Some(2), "single-value PUT keeps the others: {e}");
    let body = json!({"event": ev, "orgUnit": OU_BANI_NAIM, "program": PROGRAM_MCH, "programStage": STAGE_ANC, "status": "COMPLETED",
                      "completedDate": "2024-03-02", "eventDate": "2024-03-01", "trackedEntityInstance": tei,
                      "dataValues": [{"dataElement": DE_HAEMOGLOBIN, "value": "11.4"}]});
    let (s, _) = call(&app, "PUT", &format!("/api/events/{ev}"), NURSE, body).await;
    assert_eq!(s, StatusCode::OK);
    let (_, e) = get_json(&app, &format!("/api/events/{ev}"), NURSE).await;
    assert_eq!(
        e["dataValues"],
        json!([{"lastUpdated": e["dataValues"][0]["lastUpdated"], "storedBy": NURSE1_USERNAME,
        "created": e["dataValues"][0]["created"], "dataElement": DE_HAEMOGLOBIN, "value": "11.4", "providedElsewhere": false}])
    );
    assert_eq!(e["status"], "COMPLETED");
    assert_eq!(e["completedDate"], "2024-03-02T00:00:00.000");
    assert_eq!(e["completedBy"], NURSE1_USERNAME);

    // Event date, note, invalid value type, delete.
    let (s, v) =
        call(&app, "PUT", &format!("/api/events/{ev}/eventDate"), NURSE, json!({"eventDate": "2024-03-05"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["message"], format!("Event updated {ev}"));
    let (s, v) =
        call(&app, "POST", &format!("/api/events/{ev}/note"), NURSE, json!({"value": "Call back next week"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["message"], format!("Event updated: {ev}"));
    let (_, e) = get_json(&app, &format!("/api/events/{ev}?fields=eventDate,notes[value,storedBy]"), NURSE).await;
    assert_eq!(
        e,
        json!({"eventDate": "2024-03-05T00:00:00.000", "notes": [{"value": "Call back next week", "storedBy": NURSE1_USERNAME}]})
    );
    let body = json!({"event": ev, "dataValues": [{"dataElement": DE_WEIGHT, "value": "heavy"}]});
    let (s, v) = call(&app, "PUT", &format!("/api/events/{ev}/{DE_WEIGHT}"), NURSE, body).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["response"]["conflicts"][0], json!({"object": DE_WEIGHT, "value": "value_not_numeric"}));
    let resp = send(&app, with_body("DELETE", &format!("/api/events/{ev}"), NURSE, "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v = body_json(resp).await;
    assert_eq!(v["response"]["importCount"]["deleted"], 1);
    let (s, _) = get_json(&app, &format!("/api/events/{ev}"), NURSE).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn stored_by_comes_from_the_user_unless_given() {
    let (app, _dir) = demo_app("2.40");
    let (tei, en, _) = register(&app, "TeStore0001", OU_BANI_NAIM, "408000001").await;
    let ev = json!({"event": "EvStoreBy01", "enrollment": en, "trackedEntityInstance": tei, "program": PROGRAM_MCH,
                    "programStage": STAGE_ANC, "orgUnit": OU_BANI_NAIM, "eventDate": "2024-04-01", "storedBy": NURSE2_USERNAME,
                    "dataValues": [{"dataElement": DE_WEIGHT, "value": "63", "storedBy": NURSE2_USERNAME},
                                   {"dataElement": DE_GEST_WEEKS, "value": "14"}]});
    let (s, v) = call(&app, "POST", "/api/events", NURSE, ev).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, e) = get_json(&app, "/api/events/EvStoreBy01", ADMIN).await;
    assert_eq!(e["storedBy"], NURSE2_USERNAME);
    let by: Vec<(&str, &str)> = e["dataValues"]
        .as_array()
        .expect("dvs")
        .iter()
        .map(|d| (d["dataElement"].as_str().unwrap_or(""), d["storedBy"].as_str().unwrap_or("")))
        .collect();
    assert!(by.contains(&(DE_WEIGHT, NURSE2_USERNAME)));
    assert!(by.contains(&(DE_GEST_WEEKS, NURSE1_USERNAME)));
    assert_eq!(e["createdByUserInfo"]["username"], NURSE1_USERNAME);

    // lastUpdated of the TEI moves with its events (incremental sync picks it up).
    let (_, before) = get_json(&app, &format!("/api/trackedEntityInstances/{tei}?fields=lastUpdated"), ADMIN).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (s, _) = call(&app, "POST", "/api/events/EvStoreBy01/note", NURSE, json!({"value": "x"})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, after) = get_json(&app, &format!("/api/trackedEntityInstances/{tei}?fields=lastUpdated"), ADMIN).await;
    assert!(after["lastUpdated"].as_str() > before["lastUpdated"].as_str());
    let since = before["lastUpdated"].as_str().expect("ts");
    let (_, list) = get_json(
        &app,
        &format!("/api/trackedEntityInstances?ou={OU_BANI_NAIM}&program={PROGRAM_MCH}&lastUpdatedStartDate={since}&fields=trackedEntityInstance"),
        ADMIN,
    )
    .await;
    assert_eq!(list, json!({"trackedEntityInstances": [{"trackedEntityInstance": tei}]}));
}

/// The attributes of `tei` as `{attribute: value}` (read as admin, no program).
async fn attribute_map(app: &axum::Router, tei: &str) -> serde_json::Map<String, Value> {
    let (s, t) =
        get_json(app, &format!("/api/trackedEntityInstances/{tei}?fields=attributes[attribute,value]"), ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    t["attributes"]
        .as_array()
        .expect("attrs")
        .iter()
        .map(|a| (a["attribute"].as_str().expect("attr").to_owned(), a["value"].clone()))
        .collect()
}

fn attrs(pairs: &[(&str, &str)]) -> Value {
    Value::Array(pairs.iter().map(|(a, v)| json!({"attribute": a, "value": v})).collect())
}

// dhis2-core 2.40 AbstractTrackedEntityInstanceService: the bulk update passes program = null
// (:720) and updateAttributeValues deletes omitted values only for a given program (:1239-1247).
#[tokio::test]
async fn legacy_tei_updates_keep_omitted_attributes_unless_program_given() {
    let (app, _dir) = demo_app("2.40");
    let (tei, _en, _ev) = register(&app, "TeKeepAtt01", OU_BANI_NAIM, "409000001").await;
    let body = |pairs: &[(&str, &str)]| {
        json!({"trackedEntityInstance": tei, "trackedEntityType": TET_PERSON, "orgUnit": OU_BANI_NAIM,
               "attributes": attrs(pairs)})
    };
    // Bulk POST (CREATE_AND_UPDATE, then UPDATE) without phone, last name, date of birth: all kept.
    for uri in ["/api/trackedEntityInstances", "/api/trackedEntityInstances?strategy=UPDATE"] {
        let wrapper =
            json!({"trackedEntityInstances": [body(&[(ATTR_NATIONAL_ID, "409000001"), (ATTR_FIRST_NAME, "Huda")])]});
        let (s, v) = call(&app, "POST", uri, ADMIN, wrapper).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["response"]["updated"], 1, "{v}");
        let m = attribute_map(&app, &tei).await;
        assert_eq!(m.len(), 5, "{uri}: omitted attributes kept: {m:?}");
        assert_eq!(m[ATTR_FIRST_NAME], "Huda");
        assert_eq!(m[ATTR_PHONE], "+970599123456");
    }
    // PUT without program: omitted kept, one sent empty is deleted.
    let (s, v) = call(
        &app,
        "PUT",
        &format!("/api/trackedEntityInstances/{tei}"),
        ADMIN,
        body(&[(ATTR_NATIONAL_ID, "409000001"), (ATTR_DOB, "")]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let m = attribute_map(&app, &tei).await;
    assert!(!m.contains_key(ATTR_DOB), "empty value deletes: {m:?}");
    assert_eq!(m.len(), 4, "{m:?}");
    // PUT ?program=Nutrition: only that program's omitted attributes (last name) are deleted.
    let (s, v) = call(
        &app,
        "PUT",
        &format!("/api/trackedEntityInstances/{tei}?program={PROGRAM_NUTRITION}"),
        ADMIN,
        body(&[(ATTR_NATIONAL_ID, "409000001"), (ATTR_FIRST_NAME, "Huda")]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let m = attribute_map(&app, &tei).await;
    assert!(!m.contains_key(ATTR_LAST_NAME), "{m:?}");
    assert_eq!(m.keys().filter(|k| *k == ATTR_PHONE || *k == ATTR_NATIONAL_ID || *k == ATTR_FIRST_NAME).count(), 3);
    assert_eq!(m.len(), 3, "{m:?}");
    // ignoreEmptyCollection=true with no attributes: nothing happens to them.
    let (s, v) = call(
        &app,
        "PUT",
        &format!("/api/trackedEntityInstances/{tei}?program={PROGRAM_MCH}&ignoreEmptyCollection=true"),
        ADMIN,
        body(&[]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(attribute_map(&app, &tei).await.len(), 3);
    // PUT ?program=MCH: MCH's omitted attributes (first name, phone) are deleted.
    let (s, v) = call(
        &app,
        "PUT",
        &format!("/api/trackedEntityInstances/{tei}?program={PROGRAM_MCH}"),
        ADMIN,
        body(&[(ATTR_NATIONAL_ID, "409000001")]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let m = attribute_map(&app, &tei).await;
    assert_eq!(m.keys().collect::<Vec<_>>(), vec![ATTR_NATIONAL_ID], "{m:?}");
}

/// The data values of event `ev` as `{dataElement: value}`.
async fn data_value_map(app: &axum::Router, ev: &str) -> serde_json::Map<String, Value> {
    let (s, e) = get_json(app, &format!("/api/events/{ev}?fields=dataValues[dataElement,value]"), ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    e["dataValues"]
        .as_array()
        .expect("dataValues")
        .iter()
        .map(|d| (d["dataElement"].as_str().expect("de").to_owned(), d["value"].clone()))
        .collect()
}

// dhis2-core 2.40 EventDataValueAggregator:72-101 (bulk import honours mergeDataValues) and
// AbstractEventService:726 (PUT /api/events/{ev} forces it to false; the single-value PUT merges).
#[tokio::test]
async fn legacy_event_updates_merge_data_values_only_when_asked() {
    let (app, _dir) = demo_app("2.40");
    let (tei, en, ev) = register(&app, "TeMergeDv01", OU_BANI_NAIM, "410000001").await;
    let event = |pairs: &[(&str, &str)]| {
        let dvs: Vec<Value> = pairs.iter().map(|(d, v)| json!({"dataElement": d, "value": v})).collect();
        json!({"event": ev, "enrollment": en, "trackedEntityInstance": tei, "program": PROGRAM_MCH,
               "programStage": STAGE_ANC, "orgUnit": OU_BANI_NAIM, "status": "ACTIVE", "eventDate": "2024-03-01",
               "dataValues": dvs})
    };
    let post = |uri: &'static str, body: Value| {
        let app = app.clone();
        async move {
            let (s, v) = call(&app, "POST", uri, ADMIN, json!({"events": [body]})).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            assert_eq!(v["response"]["updated"], 1, "{v}");
        }
    };
    // Without mergeDataValues a bulk update replaces the set: the weight is gone.
    post("/api/events", event(&[(DE_HAEMOGLOBIN, "11.2")])).await;
    assert_eq!(data_value_map(&app, &ev).await.keys().collect::<Vec<_>>(), vec![DE_HAEMOGLOBIN]);
    // mergeDataValues=true keeps the omitted haemoglobin.
    post("/api/events?mergeDataValues=true", event(&[(DE_WEIGHT, "62")])).await;
    let m = data_value_map(&app, &ev).await;
    assert_eq!((m.len(), &m[DE_WEIGHT], &m[DE_HAEMOGLOBIN]), (2, &json!("62"), &json!("11.2")), "{m:?}");
    // ...and a value sent empty is still deleted.
    post("/api/events?strategy=UPDATE&mergeDataValues=true", event(&[(DE_WEIGHT, "")])).await;
    assert_eq!(data_value_map(&app, &ev).await.keys().collect::<Vec<_>>(), vec![DE_HAEMOGLOBIN]);
    // PUT /api/events/{ev} replaces whatever mergeDataValues says.
    let (s, v) =
        call(&app, "PUT", &format!("/api/events/{ev}?mergeDataValues=true"), ADMIN, event(&[(DE_WEIGHT, "63")])).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(data_value_map(&app, &ev).await.keys().collect::<Vec<_>>(), vec![DE_WEIGHT]);
    // PUT /api/events/{ev}/{de} changes only the values sent; an empty one is deleted.
    let (s, v) =
        call(&app, "PUT", &format!("/api/events/{ev}/{DE_HAEMOGLOBIN}"), ADMIN, event(&[(DE_HAEMOGLOBIN, "11.0")]))
            .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(data_value_map(&app, &ev).await.len(), 2);
    let (s, v) = call(&app, "PUT", &format!("/api/events/{ev}/{DE_WEIGHT}"), ADMIN, event(&[(DE_WEIGHT, "")])).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let m = data_value_map(&app, &ev).await;
    assert_eq!(m.keys().collect::<Vec<_>>(), vec![DE_HAEMOGLOBIN], "{m:?}");
    assert_eq!(m[DE_HAEMOGLOBIN], "11.0");
}

// dhis2-core 2.40 AbstractEventService:914-930: a note's invalid UID is replaced, a stored UID
// is skipped, storedDate is kept.
#[tokio::test]
async fn legacy_notes_keep_stored_date_and_skip_known_uids() {
    let (app, _dir) = demo_app("2.40");
    let (_tei, _en, ev) = register(&app, "TeNotesLg01", OU_BANI_NAIM, "411000001").await;
    let notes = json!([
        {"note": "NtLegacy001", "value": "Known", "storedDate": "2024-03-01T09:30:00.000"},
        {"note": "not a uid", "value": "Renamed", "storedDate": "2024-03-02T10:00:00.000"},
    ]);
    for _ in 0..2 {
        let (s, v) = call(&app, "POST", &format!("/api/events/{ev}/note"), NURSE, json!({"notes": notes})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, e) = get_json(&app, &format!("/api/events/{ev}?fields=notes[note,value,storedDate]"), NURSE).await;
    let list = e["notes"].as_array().expect("notes");
    let known: Vec<&Value> = list.iter().filter(|n| n["value"] == "Known").collect();
    assert_eq!(known.len(), 1, "a stored UID is not added again: {e}");
    assert_eq!(known[0]["note"], "NtLegacy001");
    assert_eq!(known[0]["storedDate"], "2024-03-01T09:30:00.000");
    let renamed: Vec<&Value> = list.iter().filter(|n| n["value"] == "Renamed").collect();
    assert_eq!(renamed.len(), 2, "a generated UID each time: {e}");
    for n in renamed {
        let u = n["note"].as_str().expect("uid");
        assert!(u.len() == 11 && u.chars().all(|c| c.is_ascii_alphanumeric()), "{u}");
        assert_eq!(n["storedDate"], "2024-03-02T10:00:00.000");
    }
}

// -------------------------------------------------------------------------------------------
// query.json grid
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn query_grid_filters_pages_and_orders() {
    let (app, _dir) = demo_app("2.40");
    for (i, (name, ou)) in
        [("Amal", OU_BANI_NAIM), ("Amira", OU_BANI_NAIM), ("Basma", OU_BANI_NAIM), ("Dalia", OU_DURA)]
            .iter()
            .enumerate()
    {
        let te = format!("TeGrid0000{i}");
        let mut body = person(Some(&te), ou, &format!("40900000{i}"), name);
        body["enrollments"] = json!([{"program": PROGRAM_MCH, "orgUnit": ou, "enrollmentDate": "2024-01-01"}]);
        let (s, v) = call(&app, "POST", "/api/trackedEntityInstances", ADMIN, body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let uri = format!("/api/trackedEntityInstances/query.json?ou={OU_BANI_NAIM}&ouMode=SELECTED&program={PROGRAM_MCH}&pageSize=50&page=1&totalPages=false");
    let (s, g) = get_json(&app, &uri, NURSE).await;
    assert_eq!(s, StatusCode::OK, "{g}");
    let names: Vec<&str> =
        g["headers"].as_array().expect("headers").iter().filter_map(|h| h["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "instance",
            "created",
            "lastupdated",
            "ou",
            "ouname",
            "te",
            "inactive",
            "potentialduplicate",
            ATTR_NATIONAL_ID,
            ATTR_FIRST_NAME,
            ATTR_LAST_NAME,
            ATTR_DOB,
            ATTR_PHONE,
            ATTR_REG_NUMBER
        ]
    );
    assert_eq!(
        g["headers"][0],
        json!({"name": "instance", "column": "Instance", "type": "java.lang.String", "hidden": false, "meta": false})
    );
    assert_eq!(g["headers"][9]["column"], "First name");
    assert_eq!(g["width"], 14);
    assert_eq!(g["height"], 3);
    assert_eq!(g["metaData"]["pager"], json!({"page": 1, "pageCount": 0, "total": 0, "pageSize": 50}));
    assert_eq!(g["metaData"]["names"], json!({TET_PERSON: "Person"}));
    let row = &g["rows"][0];
    assert_eq!(row[0], "TeGrid00000");
    assert_eq!(row[3], OU_BANI_NAIM);
    assert_eq!(row[4], "Bani Naim Clinic");
    assert_eq!(row[6], "false");
    assert_eq!(row[9], "Amal");
    assert_eq!(row[13], Value::Null);
    assert!(row[1].as_str().expect("created").contains(' '), "grid timestamps use a space");

    // Duplicate check of the registration form: ACCESSIBLE + LIKE, case-insensitive.
    let uri = format!("/api/trackedEntityInstances/query.json?ouMode=ACCESSIBLE&program={PROGRAM_MCH}&attribute={ATTR_FIRST_NAME}:LIKE:am&pageSize=50&page=1&totalPages=false");
    let (_, g) = get_json(&app, &uri, NURSE).await;
    assert_eq!(g["height"], 2, "Amal and Amira, not Dalia in Dura: {g}");
    let uri = format!("/api/trackedEntityInstances/query.json?ouMode=ACCESSIBLE&program={PROGRAM_MCH}&attribute={ATTR_NATIONAL_ID}:EQ:409000002");
    let (_, g) = get_json(&app, &uri, NURSE).await;
    assert_eq!(g["rows"][0][0], "TeGrid00002");
    let uri = format!("/api/trackedEntityInstances/query.json?ouMode=ACCESSIBLE&program={PROGRAM_MCH}&filter={ATTR_FIRST_NAME}:EQ:nobody");
    let (_, g) = get_json(&app, &uri, NURSE).await;
    assert_eq!(g["rows"], json!([]));

    // Descendants as admin, ordering, paging with totals.
    let uri = format!("/api/trackedEntityInstances/query.json?ou={OU_HEBRON}&ouMode=DESCENDANTS&program={PROGRAM_MCH}&order={ATTR_FIRST_NAME}:desc&pageSize=3&page=2&totalPages=true");
    let (_, g) = get_json(&app, &uri, ADMIN).await;
    assert_eq!(g["metaData"]["pager"], json!({"page": 2, "pageCount": 2, "total": 4, "pageSize": 3}));
    assert_eq!(g["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(g["rows"][0][9], "Amal", "last in descending order");
    let uri =
        format!("/api/trackedEntityInstances/count.json?ou={OU_PALESTINE}&ouMode=DESCENDANTS&program={PROGRAM_MCH}");
    let (_, n) = get_json(&app, &uri, ADMIN).await;
    assert_eq!(n, json!(4));
    let uri = format!("/api/trackedEntityInstances/query.json?ou={OU_HEBRON}&ouMode=CHILDREN&program={PROGRAM_MCH}");
    let (_, g) = get_json(&app, &uri, ADMIN).await;
    assert_eq!(g["height"], 4);

    // Errors: org unit outside the search scope, no program or type, ALL for a nurse.
    let uri = format!("/api/trackedEntityInstances/query.json?ou={OU_DURA}&program={PROGRAM_MCH}");
    let (s, v) = get_json(&app, &uri, NURSE).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["message"], format!("Organisation unit is not part of the search scope: {OU_DURA}"));
    let (s, _) = get_json(&app, &format!("/api/trackedEntityInstances/query.json?ou={OU_BANI_NAIM}"), NURSE).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) =
        get_json(&app, &format!("/api/trackedEntityInstances/query.json?ouMode=ALL&program={PROGRAM_MCH}"), NURSE)
            .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) =
        get_json(&app, &format!("/api/trackedEntityInstances/query.json?ouMode=SIDEWAYS&program={PROGRAM_MCH}"), NURSE)
            .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // The TEI list: pager only with totalPages=true.
    let uri = format!("/api/trackedEntityInstances.json?ou={OU_BANI_NAIM}&program={PROGRAM_MCH}&fields=trackedEntityInstance&pageSize=2");
    let (_, v) = get_json(&app, &uri, NURSE).await;
    assert_eq!(
        v,
        json!({"trackedEntityInstances": [{"trackedEntityInstance": "TeGrid00000"}, {"trackedEntityInstance": "TeGrid00001"}]})
    );
    let (_, v) = get_json(&app, &format!("{uri}&totalPages=true"), NURSE).await;
    assert_eq!(v["pager"], json!({"page": 1, "pageCount": 2, "total": 3, "pageSize": 2}));
}

#[tokio::test]
async fn event_list_pager_shapes() {
    let (app, _dir) = demo_app("2.40");
    register(&app, "TePager0001", OU_BANI_NAIM, "410000001").await;
    register(&app, "TePager0002", OU_BANI_NAIM, "410000002").await;
    let base = format!("/api/events.json?orgUnit={OU_BANI_NAIM}&program={PROGRAM_MCH}&pageSize=1");
    let (_, v) = get_json(&app, &base, NURSE).await;
    assert_eq!(v["pager"], json!({"page": 1, "pageSize": 1, "isLastPage": false}));
    assert_eq!(v["events"].as_array().map(Vec::len), Some(1));
    let (_, v) = get_json(&app, &format!("{base}&totalPages=true"), NURSE).await;
    assert_eq!(v["pager"], json!({"page": 1, "pageCount": 2, "total": 2, "pageSize": 1}));
    let (_, v) = get_json(&app, &format!("{base}&paging=false"), NURSE).await;
    assert!(v.get("pager").is_none());
    assert_eq!(v["events"].as_array().map(Vec::len), Some(2));
    let (_, v) = get_json(&app, &format!("{base}&page=2"), NURSE).await;
    assert_eq!(v["pager"]["isLastPage"], true);
}

// -------------------------------------------------------------------------------------------
// Ownership and scope
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn ownership_401_for_tracked_entities_outside_capture_scope() {
    let (app, _dir) = demo_app("2.40");
    let (tei, _, ev) = register(&app, "TeDura00001", OU_DURA, "411000001").await;
    // The midwife searches the district but captures only in Bani Naim: 401, break the glass.
    let (s, v) =
        get_json(&app, &format!("/api/trackedEntityInstances/{tei}.json?program={PROGRAM_MCH}&fields=*"), MIDWIFE)
            .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        v,
        json!({"httpStatus": "Unauthorized", "httpStatusCode": 401, "status": "ERROR", "message": "OWNERSHIP_ACCESS_DENIED"})
    );
    // Without a program she sees the tracked entity type's attributes.
    let (s, _) = get_json(&app, &format!("/api/trackedEntityInstances/{tei}"), MIDWIFE).await;
    assert_eq!(s, StatusCode::OK);
    // A nurse outside her search scope: 409 (read access check comes first).
    let (s, v) = get_json(&app, &format!("/api/trackedEntityInstances/{tei}?program={PROGRAM_MCH}"), NURSE).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["message"], format!("[User has no read access to organisation unit: {OU_DURA}]"));
    // The superuser reads it.
    let (s, _) = get_json(&app, &format!("/api/trackedEntityInstances/{tei}?program={PROGRAM_MCH}"), ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    // Writes outside the capture scope are refused.
    let body = json!({"event": ev, "dataValues": [{"dataElement": DE_WEIGHT, "value": "70"}]});
    let (s, v) = call(&app, "PUT", &format!("/api/events/{ev}/{DE_WEIGHT}"), NURSE, body).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) =
        call(&app, "POST", "/api/trackedEntityInstances", NURSE, person(None, OU_YATTA, "411000002", "Hiba")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v["response"]["importSummaries"][0]["description"],
        format!("[User has no write access to organisation unit: {OU_YATTA}]")
    );
}

// -------------------------------------------------------------------------------------------
// Versions, reserved values, persistence
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn legacy_endpoints_are_gone_in_242() {
    let (app, _dir) = demo_app("2.42");
    for uri in [
        "/api/trackedEntityInstances/query.json?ouMode=ACCESSIBLE&program=PrMchProg01",
        "/api/events.json",
        "/api/enrollments",
    ] {
        let (s, v) = get_json(&app, uri, NURSE).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(v["message"], format!("No handler found for GET {}", uri.split('?').next().unwrap_or(uri)));
    }
    let (s, _) =
        call(&app, "POST", "/api/trackedEntityInstances", NURSE, person(None, OU_BANI_NAIM, "412000001", "Sara")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = get_json(&app, "/api/programs", NURSE).await;
    assert_eq!(s, StatusCode::OK, "metadata stays");
}

#[tokio::test]
async fn generated_values_are_never_handed_out_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on(dir.path(), "2.40");
    // Tracker Capture asks what `generate` needs first; the demo pattern needs nothing.
    let (s, v) = get_json(&app, &format!("/api/trackedEntityAttributes/{ATTR_REG_NUMBER}/requiredValues"), NURSE).await;
    assert_eq!((s, v), (StatusCode::OK, serde_json::json!({"REQUIRED": [], "OPTIONAL": []})));
    let (s, v) = get_json(&app, &format!("/api/trackedEntityAttributes/{ATTR_REG_NUMBER}/generate"), NURSE).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["ownerObject"], "TRACKEDENTITYATTRIBUTE");
    assert_eq!(v["ownerUid"], ATTR_REG_NUMBER);
    assert_eq!(v["key"], "MCH-######");
    assert_eq!(v["value"], "MCH-000001");
    assert!(v["created"].is_string() && v["expiryDate"].is_string());
    let (_, list) = get_json(
        &app,
        &format!("/api/trackedEntityAttributes/{ATTR_REG_NUMBER}/generateAndReserve?numberToReserve=3"),
        NURSE,
    )
    .await;
    let values: Vec<&str> = list.as_array().expect("list").iter().filter_map(|v| v["value"].as_str()).collect();
    assert_eq!(values, ["MCH-000002", "MCH-000003", "MCH-000004"]);
    // After a restart the sequence continues.
    drop(app);
    let app = app_on(dir.path(), "2.40");
    let (_, v) = get_json(&app, &format!("/api/trackedEntityAttributes/{ATTR_REG_NUMBER}/generate"), NURSE).await;
    assert_eq!(v["value"], "MCH-000005");
    let (s, _) = get_json(&app, &format!("/api/trackedEntityAttributes/{ATTR_NATIONAL_ID}/generate"), NURSE).await;
    assert_eq!(s, StatusCode::CONFLICT, "not a generated attribute");
    let (s, _) = get_json(&app, "/api/trackedEntityAttributes/NoSuchAttr1/generate", NURSE).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = get_json(
        &app,
        &format!("/api/trackedEntityAttributes/{ATTR_REG_NUMBER}/generateAndReserve?numberToReserve=x"),
        NURSE,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tracked_entities_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on(dir.path(), "2.40");
    let (tei, en, ev) = register(&app, "TeRestart01", OU_BANI_NAIM, "413000001").await;
    drop(app);
    let app = app_on(dir.path(), "2.40");
    let (s, v) =
        get_json(&app, &format!("/api/trackedEntityInstances/{tei}?program={PROGRAM_MCH}&fields=*"), NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["enrollments"][0]["enrollment"], en);
    assert_eq!(v["enrollments"][0]["events"][0]["event"], ev);
    assert_eq!(v["enrollments"][0]["events"][0]["dataValues"][0]["value"], "61.5");
}

#[test]
fn generator_adds_tracked_entities_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), "2.40");
    cfg.tracked_entities = 300;
    let state = dhis2_sim::open_state(&cfg).expect("state");
    let n = |state: &dhis2_sim::AppState| {
        state.db().lock().query_row("SELECT COUNT(*) FROM tracked_entities", [], |r| r.get::<_, i64>(0)).expect("count")
    };
    assert_eq!(n(&state), 300);
    drop(state);
    let state = dhis2_sim::open_state(&cfg).expect("state again");
    assert_eq!(n(&state), 300, "a restart does not generate again");
}
