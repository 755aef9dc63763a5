//! Contract tests for what the Capture app (dhis2/capture-app, on the app platform) asks at
//! boot and for its tracker work, on 2.41 and 2.42 (the sim's README, "The Capture app"):
//! app-runtime names the API version in every path (`/api/41/...`), the platform itself does
//! not (`/api/system/info`, `/api/me`). Status, content type and the fields the app reads,
//! with real per-user access (the nurses are not superusers).

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

mod common;

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    Router,
};
use common::*;
use dhis2_sim::seed::*;
use serde_json::{json, Value};

const NURSE: (&str, &str) = (NURSE1_USERNAME, NURSE1_PASSWORD);

/// GET as a user: status, content type, JSON body (Null when the body is not JSON).
async fn get_json(app: &Router, uri: &str, who: (&str, &str)) -> (StatusCode, String, Value) {
    let resp = send(app, get_as(uri, who.0, who.1)).await;
    let status = resp.status();
    let ct = resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = body_bytes(resp).await;
    (status, ct, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn post_json(app: &Router, uri: &str, who: (&str, &str), body: &Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("authorization", basic(who.0, who.1))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = send(app, req).await;
    let status = resp.status();
    (status, body_json(resp).await)
}

/// Every resource answers under the server's API version, and under older ones, as without
/// one; a version after the server's is a 404 naming the path asked for.
#[tokio::test]
async fn the_api_answers_under_its_version() {
    for (version, minor) in [("2.41", 41), ("2.42", 42)] {
        let (app, _dir) = demo_app(version);
        let (_, _, plain) = get_json(&app, "/api/me", NURSE).await;
        for path in [format!("/api/{minor}/me"), format!("/api/{}/me", minor - 1), "/api/28/me".to_string()] {
            let (status, ct, body) = get_json(&app, &path, NURSE).await;
            assert_eq!(status, StatusCode::OK, "{version} {path}");
            assert!(ct.starts_with("application/json"), "{version} {path}: {ct}");
            assert_eq!(body, plain, "{version} {path}");
        }
        let (status, _, body) = get_json(&app, &format!("/api/{}/me", minor + 1), NURSE).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{version}: {body}");
        assert!(body["message"].as_str().unwrap().contains(&format!("/api/{}/me", minor + 1)), "{body}");
        // Unauthenticated, a versioned path is refused like any other.
        let ajax = [("x-requested-with", "XMLHttpRequest")];
        let resp = send(&app, get(&format!("/api/{minor}/me"), &ajax)).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{version}");
        let (status, _, info) = get_json(&app, &format!("/api/{minor}/system/info.json"), NURSE).await;
        assert_eq!((status, info["version"].as_str().unwrap().starts_with(version)), (StatusCode::OK, true));
    }
}

/// The boot of the Capture app (v102.4.3's requests as observed in a browser, and v107's
/// `init.ts` and metadata loaders), in order, as a nurse.
#[tokio::test]
async fn the_capture_app_boots() {
    for (version, minor) in [("2.41", 41), ("2.42", 42)] {
        let (app, _dir) = demo_app(version);
        let v = |path: &str| format!("/api/{minor}/{path}");
        let (status, _, info) = get_json(&app, "/api/system/info", NURSE).await;
        assert_eq!(status, StatusCode::OK);
        // app-runtime takes its API version from the minor of `version`.
        let minor_of = info["version"].as_str().unwrap().split('.').nth(1).unwrap().parse::<u32>().unwrap();
        assert_eq!(minor_of, minor, "{info}");

        let (status, _, settings) = get_json(&app, &v("userSettings"), NURSE).await;
        assert_eq!(status, StatusCode::OK, "{version}");
        assert_eq!(settings["keyUiLocale"], "en", "{settings}");

        let (_, _, me) = get_json(&app, &v("me?fields=id"), NURSE).await;
        assert_eq!(me, json!({"id": NURSE1_UID}), "{version}");

        let (status, _, me) = get_json(&app, &v("me?fields=authorities,avatar,email,name,settings"), NURSE).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["name"], NURSE1_DISPLAY_NAME, "{me}");
        assert!(me["authorities"].is_array(), "{me}");
        assert_eq!(me["settings"]["keyUiLocale"], "en", "{me}");

        let fields = "id,firstName,surname,userRoles[id],userGroups[id],organisationUnits[id,path],\
                      teiSearchOrganisationUnits[id,path],settings";
        let (_, _, me) = get_json(&app, &v(&format!("me?fields={fields}")), NURSE).await;
        assert_eq!(
            me["organisationUnits"],
            json!([{"id": OU_BANI_NAIM, "path": format!("/{OU_PALESTINE}/{OU_HEBRON}/{OU_BANI_NAIM}")}]),
            "{me}"
        );
        assert!(me["userRoles"].as_array().unwrap().iter().all(|r| r.as_object().unwrap().len() == 1), "{me}");
        assert!(me["settings"]["keyDbLocale"].is_string() || me["settings"]["keyDbLocale"].is_null(), "{me}");

        let (status, _, info) =
            get_json(&app, &v("system/info?fields=dateFormat,serverTimeZoneId,calendar"), NURSE).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(info.as_object().unwrap().len(), 3, "{info}");
        assert_eq!(info["calendar"], "iso8601", "{info}");

        // No rule engine chosen: a 404 the app reads as "default".
        let (status, _, _) = get_json(&app, &v("dataStore/capture/ruleEngine"), NURSE).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let fields = "id,version,programTrackedEntityAttributes[trackedEntityAttribute[id,optionSet[id,version]]],\
                      programStages[id,programStageDataElements[dataElement[id,optionSet[id,version]]]]";
        let (status, _, programs) =
            get_json(&app, &v(&format!("programs?fields={fields}&pageSize=1000&page=1")), NURSE).await;
        assert_eq!(status, StatusCode::OK);
        let mch =
            programs["programs"].as_array().unwrap().iter().find(|p| p["id"] == PROGRAM_MCH).expect("MCH program");
        assert!(mch["version"].is_number(), "{mch}");
        assert!(mch["programTrackedEntityAttributes"][0]["trackedEntityAttribute"]["id"].is_string(), "{mch}");
        assert!(mch["programStages"][0]["programStageDataElements"][0]["dataElement"]["id"].is_string(), "{mch}");
        assert!(programs["pager"]["page"] == 1 || programs.get("pager").is_none(), "{programs}");

        let (status, _, orgs) = get_json(&app, &v(&format!("programs/orgUnits?programs={PROGRAM_MCH}")), NURSE).await;
        assert_eq!(status, StatusCode::OK);
        assert!(orgs[PROGRAM_MCH].as_array().unwrap().iter().any(|o| o == OU_BANI_NAIM), "{orgs}");

        // The program itself, with the field list the app sends (storePrograms): it lacks some
        // commas (`dataEntryForm[id,htmlCode]programStageSections[...]`, `...]]programSections`),
        // which DHIS2 reads as separate items. Without its stages the enrollment page offers no
        // "New event" and shows no stages.
        let fields = "id,displayName,programType,access[*],trackedEntityType[id],\
                      categoryCombo[id,displayName,isDefault,categories[id,displayName]],\
                      programStages[id,access,repeatable,name,displayName,formType,dataEntryForm[id,htmlCode]\
                      programStageSections[id,displayName,sortOrder,dataElements[id]],\
                      programStageDataElements[compulsory,renderType[*],dataElement[id]]]\
                      programSections[id,%20displayDescription,%20sortOrder,%20trackedEntityAttributes],\
                      programTrackedEntityAttributes[trackedEntityAttribute[id],displayInList,searchable,mandatory]";
        let (status, _, programs) =
            get_json(&app, &v(&format!("programs?fields={fields}&filter=id:in:[{PROGRAM_MCH}]&pageSize=1")), NURSE)
                .await;
        assert_eq!(status, StatusCode::OK);
        let mch = &programs["programs"][0];
        let anc = mch["programStages"].as_array().and_then(|l| l.iter().find(|s| s["id"] == STAGE_ANC));
        let anc = anc.unwrap_or_else(|| panic!("the ANC stage: {mch}"));
        assert_eq!(anc["access"]["data"]["write"], true, "{anc}");
        assert!(anc["programStageSections"].is_array(), "{anc}");
        assert!(anc["programStageDataElements"][0]["dataElement"]["id"].is_string(), "{anc}");
        assert!(mch["programSections"].is_array(), "{mch}");
        // Its category combination: the default one, as DHIS2 describes it (the event form reads
        // `isDefault`, else maps over `categories`: it failed with "Something went wrong").
        assert_eq!(mch["categoryCombo"]["isDefault"], true, "{mch}");
        assert_eq!(mch["categoryCombo"]["categories"][0]["displayName"], "default", "{mch}");
        assert!(mch["programTrackedEntityAttributes"][0]["trackedEntityAttribute"]["id"].is_string(), "{mch}");

        // The options of the program's categories, as the app asks at boot (its boot stops on
        // a 404): the default option, readable and writable.
        let (status, _, options) = get_json(
            &app,
            &v("categoryOptions?fields=id,displayName,categories~pluck,%20organisationUnits~pluck,%20access[*]\
                &filter=categories.id:in:[GLevLNI9wkl]&filter=access.data.read:in:[true]&page=1&pageSize=10000"),
            NURSE,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{options}");
        let option = &options["categoryOptions"][0];
        assert_eq!(option["categories"], json!(["GLevLNI9wkl"]), "{options}");
        assert_eq!(option["organisationUnits"], json!([]), "{options}");
        assert_eq!(option["access"]["data"]["write"], true, "{options}");

        let (status, _, types) = get_json(
            &app,
            &v("trackedEntityTypes?fields=id,trackedEntityTypeAttributes[trackedEntityAttribute[optionSet[id,version]]]&pageSize=1000&page=1"),
            NURSE,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(types["trackedEntityTypes"].as_array().unwrap().iter().any(|t| t["id"] == TET_PERSON), "{types}");

        // Identifiable objects always carry their translations and attribute values (empty
        // here); the app reads `option.translations.find(...)` (its boot stopped without them).
        let fields = "id,displayName,code,attributeValues,version,valueType,options[id,displayName,attributeValues,code,style,%20translations]";
        let (status, _, sets) = get_json(&app, &v(&format!("optionSets?fields={fields}")), NURSE).await;
        assert_eq!(status, StatusCode::OK);
        let option = &sets["optionSets"][0]["options"][0];
        assert_eq!((&option["translations"], &option["attributeValues"]), (&json!([]), &json!([])), "{sets}");
        assert_eq!(sets["optionSets"][0]["attributeValues"], json!([]), "{sets}");

        let (status, _, ous) = get_json(
            &app,
            &v("organisationUnits?fields=id,displayName~rename(name),path&withinUserHierarchy=true&pageSize=2"),
            NURSE,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let first = &ous["organisationUnits"][0];
        assert!(first["name"].is_string() && first.get("displayName").is_none(), "{ous}");

        // The registration form names the org unit with its ancestors (it stopped with a
        // TypeError on `ancestors.length` without them).
        let (status, _, clinic) = get_json(
            &app,
            &v(&format!("organisationUnits?fields=id,displayName,ancestors%5Bid,displayName%5D&filter=id:in:%5B{OU_BANI_NAIM}%5D&pageSize=50")),
            NURSE,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let ancestors: Vec<&str> = clinic["organisationUnits"][0]["ancestors"]
            .as_array()
            .unwrap_or_else(|| panic!("{clinic}"))
            .iter()
            .map(|a| a["id"].as_str().unwrap())
            .collect();
        assert_eq!(ancestors, [OU_PALESTINE, OU_HEBRON], "from the root down: {clinic}");
    }
}

/// A registration with enrollment as the Capture app posts it (`POST /api/<v>/tracker?async=false`, the enrollment without a UID: the server
/// makes it), then the working list, a search by name and the dashboard find her by the UIDs
/// the app takes from the bundle report; the visit is completed as the app does it.
#[tokio::test]
async fn the_capture_app_lists_searches_and_registers() {
    for (version, minor) in [("2.41", 41), ("2.42", 42)] {
        let (app, _dir) = demo_app(version);
        let v = |path: &str| format!("/api/{minor}/{path}");
        let tei = "CaptureTei1";
        let event = "CaptureEvt1";
        let registration = json!({"trackedEntities": [{
            "trackedEntity": tei, "orgUnit": OU_BANI_NAIM, "trackedEntityType": TET_PERSON,
            "attributes": [
                {"attribute": ATTR_NATIONAL_ID, "value": "409551177"}, {"attribute": ATTR_FIRST_NAME, "value": "Sawsan"},
                {"attribute": ATTR_LAST_NAME, "value": "Qawasmeh"}, {"attribute": ATTR_DOB, "value": "1995-04-02"}],
            "enrollments": [{
                "program": PROGRAM_MCH, "status": "ACTIVE", "orgUnit": OU_BANI_NAIM,
                "occurredAt": "2026-12-01", "enrolledAt": "2026-12-01", "attributes": [],
                "events": [{"event": event, "programStage": STAGE_ANC, "program": PROGRAM_MCH, "orgUnit": OU_BANI_NAIM,
                            "status": "ACTIVE", "occurredAt": "2026-12-01", "dataValues": []}]}]}]});
        let (status, report) = post_json(&app, &v("tracker?async=false"), NURSE, &registration).await;
        assert_eq!(status, StatusCode::OK, "{version}: {report}");
        let types = &report["bundleReport"]["typeReportMap"];
        assert_eq!(types["TRACKED_ENTITY"]["objectReports"][0]["uid"], tei, "{report}");
        let enrollment =
            types["ENROLLMENT"]["objectReports"][0]["uid"].as_str().expect("the enrollment's UID").to_owned();
        assert!(is_uid(&enrollment), "{enrollment}");

        let list = format!(
            "tracker/trackedEntities?program={PROGRAM_MCH}&orgUnits={OU_BANI_NAIM}&orgUnitMode=SELECTED&page=1&pageSize=15\
             &order=createdAt:desc&fields=trackedEntity,createdAt,inactive,attributes[attribute,value],programOwners[orgUnit,program]"
        );
        let (status, _, rows) = get_json(&app, &v(&list), NURSE).await;
        assert_eq!(status, StatusCode::OK, "{version}: {rows}");
        let rows = rows.get("trackedEntities").or_else(|| rows.get("instances")).expect("a list").clone();
        let row = rows.as_array().unwrap().iter().find(|r| r["trackedEntity"] == tei).expect("the new woman listed");
        assert_eq!(row["programOwners"][0]["orgUnit"], OU_BANI_NAIM, "{row}");
        assert_eq!(row["attributes"].as_array().unwrap().len(), 4, "{row}");

        let (status, _, found) = get_json(
            &app,
            &v(&format!(
                "tracker/trackedEntities?filter={ATTR_FIRST_NAME}:LIKE:sawsan&fields=attributes,enrollments,trackedEntity,orgUnit\
                 &program={PROGRAM_MCH}&page=1&pageSize=5&orgUnitMode=ACCESSIBLE"
            )),
            NURSE,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let found = found.get("trackedEntities").or_else(|| found.get("instances")).unwrap().clone();
        assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
        assert_eq!(found[0]["trackedEntity"], tei);

        let (status, _, dashboard) = get_json(
            &app,
            &v(&format!("tracker/trackedEntities/{tei}?program={PROGRAM_MCH}&fields=enrollments[*,!attributes],attributes,inactive")),
            NURSE,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{dashboard}");
        assert_eq!(dashboard["enrollments"][0]["enrollment"], enrollment.as_str(), "{dashboard}");
        assert_eq!(dashboard["enrollments"][0]["events"][0]["event"], event, "{dashboard}");
        assert!(dashboard["enrollments"][0].get("attributes").is_none(), "{dashboard}");

        // The visit completed: the whole event again, importStrategy=UPDATE.
        let completed = json!({"events": [{"event": event, "programStage": STAGE_ANC, "program": PROGRAM_MCH,
            "orgUnit": OU_BANI_NAIM, "trackedEntity": tei, "enrollment": enrollment, "status": "COMPLETED",
            "occurredAt": "2026-12-01", "dataValues": []}]});
        let (status, report) =
            post_json(&app, &v("tracker?async=false&importStrategy=UPDATE"), NURSE, &completed).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        let (_, _, ev) = get_json(&app, &v(&format!("tracker/events/{event}")), NURSE).await;
        assert_eq!(ev["status"], "COMPLETED", "{ev}");
    }
}

/// The enrollment page reads `dataStore/capture?fields=.` (the entries query): a namespace
/// never used is an empty list, not a 404 (the key list still says 404); entries carry their
/// key and the fields asked (`.` as `value`).
#[tokio::test]
async fn the_enrollment_page_layout_is_read_with_the_entries_query() {
    for version in ["2.41", "2.42"] {
        let (app, _dir) = demo_app(version);
        let (status, _, body) = get_json(&app, "/api/41/dataStore/capture?fields=.", NURSE).await;
        assert_eq!((status, &body), (StatusCode::OK, &json!({"pager": {"page": 1, "pageSize": 50}, "entries": []})));
        let (status, _, _) = get_json(&app, "/api/41/dataStore/capture", NURSE).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "the key list of an unused namespace");
        let layout = json!({"PrMchProg01": {"leftColumn": [{"name": "QuickActions"}], "rightColumn": []}});
        let (status, _) = post_json(&app, "/api/dataStore/capture/enrollmentOverviewLayout", NURSE, &layout).await;
        assert_eq!(status, StatusCode::CREATED);
        let (_, _, body) = get_json(&app, "/api/41/dataStore/capture?fields=.", NURSE).await;
        assert_eq!(body["entries"], json!([{"key": "enrollmentOverviewLayout", "value": layout}]));
        let (_, _, body) =
            get_json(&app, "/api/dataStore/capture?fields=PrMchProg01.rightColumn&headless=true", NURSE).await;
        assert_eq!(body, json!([{"key": "enrollmentOverviewLayout", "PrMchProg01.rightColumn": []}]));
    }
}
