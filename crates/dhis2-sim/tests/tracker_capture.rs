//! Contract tests for what the legacy Tracker Capture app (31.13.x) asks at boot, on search,
//! registration and the dashboard (docs/tracker-capture-boot.md): status, content type and the
//! fields it reads, with real per-user access (the nurses are not superusers).
//!
//! About 690 lines: one test per request family of docs/tracker-capture-boot.md, in its order.

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
const ADMIN: (&str, &str) = (ADMIN_USERNAME, ADMIN_PASSWORD);

fn ct(resp: &axum::http::Response<Body>) -> String {
    resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().expect("ct").to_owned()).unwrap_or_default()
}

/// GET as a user: status, content type, JSON body.
async fn get_json(app: &Router, uri: &str, who: (&str, &str)) -> (StatusCode, String, Value) {
    let resp = send(app, get_as(uri, who.0, who.1)).await;
    let (s, c) = (resp.status(), ct(&resp));
    (s, c, body_json(resp).await)
}

/// A request with a body as a user.
fn req(method: &str, uri: &str, who: (&str, &str), content_type: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", basic(who.0, who.1))
        .header("content-type", content_type)
        .body(Body::from(body.to_owned()))
        .expect("request")
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().expect("array").iter().map(|o| o["id"].as_str().expect("id").to_owned()).collect()
}

#[tokio::test]
async fn user_and_system_settings() {
    let (app, _dir) = demo_app("2.40");
    let (s, c, v) = get_json(&app, "/api/userSettings.json?key=keyDbLocale&key=keyUiLocale&key=keyStyle", NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(c.starts_with("application/json"), "{c}");
    assert_eq!(v["keyUiLocale"], "en");
    assert_eq!(v.as_object().expect("object").len(), 3, "{v}");

    let (s, _, v) =
        get_json(&app, "/api/systemSettings?key=keyGoogleMapsApiKey&key=keyCalendar&key=keyDateFormat", NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["keyCalendar"], "iso8601");
    assert_eq!(v["keyDateFormat"], "yyyy-MM-dd");
    assert!(v.get("keyApplicationTitle").is_none(), "only the asked keys: {v}");

    // The dashboard layout: 404 WebMessage until saved, then the saved JSON as text.
    let (s, c, v) = get_json(&app, "/api/userSettings/keyTrackerDashboardLayout", NURSE).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(c.starts_with("application/json"));
    assert_eq!(v["httpStatusCode"], 404);
    assert_eq!(v["status"], "ERROR");
    let layout = r#"{"customLayout":{"MCH":{"widgets":[]}}}"#;
    let resp =
        send(&app, req("POST", "/api/userSettings/keyTrackerDashboardLayout", NURSE, "application/json", layout)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(resp).await["message"], "User setting saved");
    let resp = send(&app, get_as("/api/userSettings/keyTrackerDashboardLayout", NURSE.0, NURSE.1)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(ct(&resp).starts_with("text/plain"));
    assert_eq!(String::from_utf8(body_bytes(resp).await).expect("utf8"), layout);
    // Per user: nurse2 has none.
    let resp =
        send(&app, get_as("/api/userSettings/keyTrackerDashboardLayout", NURSE2_USERNAME, NURSE2_PASSWORD)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = send(&app, get_as("/api/userSettings/keyUiLocale", NURSE.0, NURSE.1)).await;
    assert_eq!(String::from_utf8(body_bytes(resp).await).expect("utf8"), "en");
}

#[tokio::test]
async fn me_as_tracker_capture_asks() {
    let (app, _dir) = demo_app("2.40");
    let ou = "[id,displayName,programs[id],level,code,path,children[id,displayName,programs[id],level,children[id]]]";
    let uri = format!(
        "/api/me.json?fields=id,displayName,userCredentials[username,userRoles[id,programs,authorities]],\
         organisationUnits{ou},dataViewOrganisationUnits{ou},teiSearchOrganisationUnits{ou}"
    );
    let (s, _, me) = get_json(&app, &uri, NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["id"], NURSE1_UID);
    assert!(me.get("authorities").is_none(), "not asked for");
    assert_eq!(me["userCredentials"]["username"], NURSE1_USERNAME);
    let role = &me["userCredentials"]["userRoles"][0];
    assert_eq!(role["id"], ROLE_DATA_ENTRY);
    assert_eq!(role["programs"], json!([]));
    assert!(!role["authorities"].as_array().expect("authorities").contains(&json!("ALL")));
    // nurse1 sees only her clinic, with its programs.
    assert_eq!(ids(&me["organisationUnits"]), vec![OU_BANI_NAIM]);
    assert_eq!(me["organisationUnits"][0]["programs"], json!([{"id": PROGRAM_MCH}]));
    assert_eq!(me["organisationUnits"][0]["children"], json!([]));
    assert_eq!(ids(&me["teiSearchOrganisationUnits"]), vec![OU_BANI_NAIM]);

    // The superuser: the root with its children two levels down, and ALL when asked.
    let (_, _, me) = get_json(&app, &format!("{uri},authorities"), ADMIN).await;
    assert_eq!(ids(&me["organisationUnits"]), vec![OU_PALESTINE]);
    let hebron = &me["organisationUnits"][0]["children"][0];
    assert_eq!(hebron["id"], OU_HEBRON);
    assert_eq!(hebron["level"], 2);
    assert_eq!(hebron["children"].as_array().expect("clinics").len(), 3);
    assert!(me["authorities"].as_array().expect("authorities").contains(&json!("ALL")));
    let (_, _, me) = get_json(&app, "/api/me?fields=authorities,userGroups[id],programs", NURSE).await;
    assert!(!me["authorities"].as_array().expect("authorities").contains(&json!("ALL")));
    assert_eq!(me["userGroups"], json!([{"id": GROUP_MCH_NURSES}]));
    assert_eq!(me["programs"], json!([PROGRAM_MCH]));
}

fn form(uri: &str, who: (&str, &str), body: &str) -> Request<Body> {
    req("POST", uri, who, "application/x-www-form-urlencoded; charset=UTF-8", body)
}

#[tokio::test]
async fn org_unit_tree_is_rooted_at_the_users_org_units() {
    let (app, _dir) = demo_app("2.40");
    let tree = "/dhis-web-commons-ajax-json/getOrganisationUnitTree.action";
    let resp = send(&app, form(tree, NURSE, "versionOnly=true")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(ct(&resp).starts_with("application/json"));
    let v = body_json(resp).await;
    assert_eq!(v["username"], NURSE1_USERNAME);
    assert_eq!(v["roots"], json!([OU_BANI_NAIM]));
    assert_eq!(v["realRoot"], false);
    assert!(v["version"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v.get("organisationUnits").is_none());
    let version = v["version"].clone();

    let v = body_json(send(&app, form(tree, NURSE, "versionOnly=false")).await).await;
    assert_eq!(v["version"], version, "stable");
    let ous = v["organisationUnits"].as_object().expect("map");
    assert_eq!(ous.keys().collect::<Vec<_>>(), vec![OU_BANI_NAIM]);
    let clinic = &ous[OU_BANI_NAIM];
    assert_eq!(clinic["id"], OU_BANI_NAIM);
    assert_eq!(clinic["n"], "Bani Naim Clinic");
    assert_eq!(clinic["l"], 3);
    assert_eq!(clinic["c"], json!([]));
    assert_eq!(clinic["pid"], OU_HEBRON);

    let v = body_json(send(&app, form(tree, ADMIN, "versionOnly=false")).await).await;
    assert_eq!(v["roots"], json!([OU_PALESTINE]));
    assert_eq!(v["realRoot"], true);
    let ous = v["organisationUnits"].as_object().expect("map");
    assert_eq!(ous.len(), 5);
    assert_eq!(ous[OU_HEBRON]["c"], json!([OU_BANI_NAIM, OU_DURA, OU_YATTA]));
    assert!(ous[OU_PALESTINE].get("pid").is_none());

    // The lazy expansions (partial template: no realRoot, no levels).
    let v = body_json(send(&app, form(&format!("{tree}?parentId={OU_HEBRON}"), ADMIN, "")).await).await;
    assert_eq!(v["organisationUnits"].as_object().expect("map").len(), 3);
    assert!(v.get("realRoot").is_none());
    let v = body_json(send(&app, form(&format!("{tree}?leafId={OU_DURA}"), ADMIN, "")).await).await;
    assert!(v["organisationUnits"].as_object().expect("map").contains_key(OU_PALESTINE));

    // Unauthenticated XHR: 401 JSON, never the tree.
    let resp = send(&app, get(tree, &[("x-requested-with", "XMLHttpRequest")])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn ouwt_selection_actions() {
    let (app, _dir) = demo_app("2.40");
    let resp = send(&app, form("/dhis-web-commons/ouwt/clearselected.action", NURSE, "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(ct(&resp).starts_with("text/xml"));
    assert!(String::from_utf8(body_bytes(resp).await).expect("utf8").contains("<message type=\"success\">"));
    let resp = send(&app, form("/dhis-web-commons/ouwt/setorgunit.action", NURSE, &format!("id={OU_BANI_NAIM}"))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(resp).await, json!({"selectedUnits": [{"id": OU_BANI_NAIM, "name": "Bani Naim Clinic"}]}));
    let v = body_json(send(&app, form("/dhis-web-commons/ouwt/getselected.action", NURSE, "")).await).await;
    assert_eq!(v["selectedUnits"][0]["id"], OU_BANI_NAIM);
    // Per user.
    let v = body_json(send(&app, form("/dhis-web-commons/ouwt/getselected.action", ADMIN, "")).await).await;
    assert_eq!(v["selectedUnits"], json!([]));
}

#[tokio::test]
async fn optional_lists_and_levels() {
    let (app, _dir) = demo_app("2.40");
    for (uri, key) in [
        ("/api/constants.json?paging=false&fields=id,displayName,value", "constants"),
        ("/api/relationshipTypes.json?paging=false&fields=id,code,displayName,access[*]", "relationshipTypes"),
        ("/api/optionGroups.json?paging=false&fields=id,name,shortName,displayName,options[id]", "optionGroups"),
        ("/api/trackedEntityInstanceFilters?fields=*&paging=false", "trackedEntityInstanceFilters"),
    ] {
        let (s, c, v) = get_json(&app, uri, NURSE).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
        assert!(c.starts_with("application/json"));
        assert_eq!(v[key], json!([]), "{uri}");
    }
    let (_, _, v) =
        get_json(&app, "/api/organisationUnits.json?paging=true&pageSize=1000&fields=id,displayName,path", NURSE).await;
    assert_eq!(v["organisationUnits"].as_array().expect("ous").len(), 5);
    assert!(v["pager"].is_object());
    let (s, _, v) = get_json(
        &app,
        "/api/organisationUnitLevels.json?filter=level:gt:1&fields=id,displayName,level&paging=false",
        NURSE,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let levels: Vec<i64> = v["organisationUnitLevels"]
        .as_array()
        .expect("levels")
        .iter()
        .map(|l| l["level"].as_i64().expect("n"))
        .collect();
    assert_eq!(levels, vec![2, 3]);
}

#[tokio::test]
async fn tracked_entity_types_with_access() {
    let (app, _dir) = demo_app("2.40");
    let uri = "/api/trackedEntityTypes.json?paging=false&fields=id,displayName,featureType,maxTeiCountToReturn,\
               minAttributesRequiredToSearch,trackedEntityTypeAttributes[*,trackedEntityAttribute[id,unique,displayInListNoProgram]],\
               style,access[data[read,write]]";
    let (s, _, v) = get_json(&app, uri, NURSE).await;
    assert_eq!(s, StatusCode::OK);
    let tet = &v["trackedEntityTypes"][0];
    assert_eq!(tet["id"], TET_PERSON);
    assert_eq!(tet["access"], json!({"data": {"read": true, "write": true}}));
    let tea = &tet["trackedEntityTypeAttributes"][0];
    assert_eq!(
        tea["trackedEntityAttribute"],
        json!({"id": ATTR_NATIONAL_ID, "unique": true, "displayInListNoProgram": true})
    );
    assert!(tea["mandatory"].is_boolean());

    // Metadata access differs: the nurse reads, the superuser also writes.
    let (_, _, v) = get_json(&app, "/api/trackedEntityTypes?fields=id,access", NURSE).await;
    assert_eq!(v["trackedEntityTypes"][0]["access"]["read"], true);
    assert_eq!(v["trackedEntityTypes"][0]["access"]["write"], false);
    let (_, _, v) = get_json(&app, "/api/trackedEntityTypes?fields=id,access", ADMIN).await;
    let a = &v["trackedEntityTypes"][0]["access"];
    for k in ["read", "write", "update", "delete", "manage"] {
        assert_eq!(a[k], true, "{k}");
    }
    assert_eq!(a["data"], json!({"read": true, "write": true}));
}

#[tokio::test]
async fn programs_in_each_selection() {
    let (app, _dir) = demo_app("2.40");
    // 8. The meta list.
    let uri = "/api/programs.json?filter=programType:eq:WITH_REGISTRATION&paging=false&fields=id,version,\
               programTrackedEntityAttributes[trackedEntityAttribute[id,optionSet[id,version]]],\
               programStages[id,programStageDataElements[dataElement[id,optionSet[id,version],style]]]";
    let (s, _, v) = get_json(&app, uri, NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.get("pager").is_none());
    assert_eq!(ids(&v["programs"]), vec![PROGRAM_MCH], "the nutrition program is not shared with the nurses");
    let p = &v["programs"][0];
    assert_eq!(p["version"], 1);
    let delivery =
        p["programStages"].as_array().expect("stages").iter().find(|s| s["id"] == STAGE_DELIVERY).expect("delivery");
    let mode = delivery["programStageDataElements"]
        .as_array()
        .expect("psdes")
        .iter()
        .find(|d| d["dataElement"]["id"] == DE_DELIVERY_MODE)
        .expect("mode");
    assert_eq!(mode["dataElement"]["optionSet"], json!({"id": OS_DELIVERY_MODE, "version": 1}));
    let (_, _, v) = get_json(&app, uri, ADMIN).await;
    assert_eq!(ids(&v["programs"]), vec![PROGRAM_MCH, PROGRAM_NUTRITION]);

    // 9. The batch with filter=id:in: exactly the readable asked ones.
    let fields = "fields=id,displayFormName,version,displayEnrollmentDateLabel,enrollmentDateLabel,displayName,\
                  onlyEnrollOnce,displayFrontPageList,programType,accessLevel,displayIncidentDate,\
                  trackedEntityType[id,displayName],categoryCombo[id,displayName,isDefault],\
                  programStages[*,programStageDataElements[*,dataElement[*,optionSet[id]]]],\
                  programTrackedEntityAttributes[*,trackedEntityAttribute[id,unique,orgunitScope]]";
    let uri = format!("/api/programs.json?{fields}&paging=false&filter=id:in:[{PROGRAM_MCH},{PROGRAM_NUTRITION}]");
    let (_, _, v) = get_json(&app, &uri, NURSE).await;
    assert_eq!(ids(&v["programs"]), vec![PROGRAM_MCH]);
    let p = &v["programs"][0];
    assert_eq!(p["trackedEntityType"], json!({"id": TET_PERSON, "displayName": "Person"}));
    assert_eq!(p["displayFrontPageList"], true);
    assert_eq!(p["categoryCombo"]["id"], "bjDvmb4bfuf");
    let pta = &p["programTrackedEntityAttributes"][0];
    assert_eq!(pta["trackedEntityAttribute"]["id"], ATTR_NATIONAL_ID);
    assert_eq!(pta["access"]["read"], true, "an attribute without access.read is dropped by the app");
    for k in ["mandatory", "displayInList", "searchable", "sortOrder"] {
        assert!(!pta[k].is_null(), "{k}");
    }
    let stage = &p["programStages"][0];
    assert_eq!(stage["id"], STAGE_ANC);
    assert!(stage["sortOrder"].is_number());
    assert_eq!(stage["programStageDataElements"][0]["access"]["read"], true);
    assert_eq!(stage["programStageDataElements"][0]["dataElement"]["valueType"], "NUMBER");
    let (_, _, v) = get_json(&app, &uri, ADMIN).await;
    assert_eq!(ids(&v["programs"]), vec![PROGRAM_MCH, PROGRAM_NUTRITION]);
    let (_, _, v) = get_json(&app, &format!("/api/programs?fields=id&filter=id:in:[{PROGRAM_NUTRITION}]"), ADMIN).await;
    assert_eq!(ids(&v["programs"]), vec![PROGRAM_NUTRITION]);

    // 15. Access: data read/write for the nurses' group; full for the superuser.
    let uri = "/api/programs.json?paging=false&fields=id,displayName,access[data[read,write]],programStages[access[data[read,write]]]";
    let (_, _, v) = get_json(&app, uri, NURSE).await;
    assert_eq!(v["programs"][0]["access"], json!({"data": {"read": true, "write": true}}));
    assert_eq!(v["programs"][0]["programStages"][0]["access"], json!({"data": {"read": true, "write": true}}));
    let (_, _, v) = get_json(&app, "/api/programs?fields=id,access", NURSE).await;
    assert_eq!(v["programs"][0]["access"]["write"], false);
    assert_eq!(v["programs"][0]["access"]["manage"], false);
    let (_, _, v) = get_json(&app, "/api/programs?fields=id,access", ADMIN).await;
    assert_eq!(v["programs"][1]["access"]["write"], true);
    assert_eq!(v["programs"][1]["access"]["data"], json!({"read": true, "write": true}));

    // A program the user cannot read does not exist for her.
    let (s, _, _) = get_json(&app, &format!("/api/programs/{PROGRAM_NUTRITION}"), NURSE).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn program_stages_and_org_units() {
    let (app, _dir) = demo_app("2.40");
    let (s, _, v) =
        get_json(&app, "/api/programStages.json?paging=false&fields=id,program,access[data[read,write]]", NURSE).await;
    assert_eq!(s, StatusCode::OK);
    let stages = v["programStages"].as_array().expect("stages");
    assert_eq!(stages.len(), 4, "the nutrition stage is hidden");
    assert_eq!(stages[0]["program"], json!({"id": PROGRAM_MCH}));
    assert_eq!(stages[0]["access"], json!({"data": {"read": true, "write": true}}));
    let (_, _, v) = get_json(&app, "/api/programStages.json?paging=false&fields=id", ADMIN).await;
    assert_eq!(v["programStages"].as_array().expect("stages").len(), 5);

    let (s, _, v) = get_json(&app, &format!("/api/programs/orgUnits.json?programs={PROGRAM_MCH}"), NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({PROGRAM_MCH: [OU_BANI_NAIM, OU_DURA, OU_YATTA]}));
    let (_, _, v) = get_json(&app, &format!("/api/programs/orgUnits.json?programs={PROGRAM_NUTRITION}"), NURSE).await;
    assert_eq!(v, json!({}));
    let (_, _, v) = get_json(&app, &format!("/api/programs/orgUnits.json?programs={PROGRAM_NUTRITION}"), ADMIN).await;
    assert_eq!(v, json!({PROGRAM_NUTRITION: [OU_DURA, OU_YATTA]}));
}

#[tokio::test]
async fn rules_indicators_variables_are_empty_lists() {
    let (app, _dir) = demo_app("2.40");
    for kind in ["programIndicators", "programRules", "programRuleVariables"] {
        let uri = format!("/api/{kind}.json?paging=false&fields=id&filter=program.id:in:[{PROGRAM_MCH}]");
        let (s, c, v) = get_json(&app, &uri, NURSE).await;
        assert_eq!(s, StatusCode::OK, "{kind}");
        assert!(c.starts_with("application/json"));
        assert_eq!(v, json!({ kind: [] }), "{kind}");
        // The batch form (no .json, id:in).
        let (s, _, v) =
            get_json(&app, &format!("/api/{kind}?fields=id,displayName&filter=id:in:[X]&paging=false"), NURSE).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v[kind], json!([]));
    }
}

#[tokio::test]
async fn attributes_and_option_sets() {
    let (app, _dir) = demo_app("2.40");
    let (s, _, v) = get_json(
        &app,
        "/api/trackedEntityAttributes.json?paging=false&filter=displayInListNoProgram:eq:true&fields=id,optionSet[id,version]",
        NURSE,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["trackedEntityAttributes"].as_array().expect("attrs").len(), 6);
    let uri = format!(
        "/api/trackedEntityAttributes.json?paging=false&fields=:all,optionSet[id,version],trackedEntityType[id,displayName]\
         &filter=id:in:[{ATTR_NATIONAL_ID},{ATTR_REG_NUMBER}]"
    );
    let (_, _, v) = get_json(&app, &uri, NURSE).await;
    let attrs = v["trackedEntityAttributes"].as_array().expect("attrs");
    assert_eq!(ids(&v["trackedEntityAttributes"]), vec![ATTR_NATIONAL_ID, ATTR_REG_NUMBER]);
    assert_eq!(attrs[1]["generated"], true);
    assert_eq!(attrs[1]["unique"], true);
    assert_eq!(attrs[1]["valueType"], "TEXT");
    assert_eq!(attrs[0]["displayName"], "National ID");

    let uri = format!(
        "/api/optionSets.json?paging=false&fields=id,displayName,version,options[id,displayName,code]&filter=id:in:[{OS_SEX}]"
    );
    let (s, _, v) = get_json(&app, &uri, NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ids(&v["optionSets"]), vec![OS_SEX]);
    assert_eq!(
        v["optionSets"][0]["options"][0],
        json!({"id": "OpSexFemal1", "displayName": "Female", "code": "FEMALE"})
    );
}

#[tokio::test]
async fn dashboard_calls() {
    let (app, _dir) = demo_app("2.40");
    let (s, _, v) = get_json(&app, "/api/potentialDuplicates?teis=TeiNoSuch01", NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["potentialDuplicates"], json!([]));

    // dataStore and userDataStore keys the dashboard reads: 404 WebMessages until written.
    for uri in [
        "/api/dataStore/tracker-capture/keyTrackerDashboardDefaultLayout",
        "/api/dataStore/tracker-capture/keyDefaultLayoutLocked",
        &format!("/api/userDataStore/trackerCaptureGridColumns/{PROGRAM_MCH}"),
    ] {
        let (s, c, v) = get_json(&app, uri, NURSE).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        assert!(c.starts_with("application/json"));
        assert_eq!(v["httpStatus"], "Not Found");
        assert_eq!(v["httpStatusCode"], 404);
        assert_eq!(v["status"], "ERROR");
        assert!(v["message"].is_string());
    }

    // A working list: the grid with the program's list attributes.
    let uri = format!(
        "/api/trackedEntityInstances/query.json?ou={OU_BANI_NAIM}&ouMode=SELECTED&program={PROGRAM_MCH}\
         &pageSize=50&page=1&totalPages=false"
    );
    let (s, _, v) = get_json(&app, &uri, NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["headers"].is_array() && v["rows"].is_array() && v["metaData"]["pager"].is_object());
}

#[tokio::test]
async fn files_script_and_style() {
    let (app, _dir) = demo_app("2.40");
    // Unset: 200 with an empty body, as DHIS2's FileController.
    let resp = send(&app, get_as("/api/files/script", NURSE.0, NURSE.1)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(ct(&resp), "application/javascript; charset=UTF-8");
    assert!(body_bytes(resp).await.is_empty());
    let resp = send(&app, get_as("/api/files/style", NURSE.0, NURSE.1)).await;
    assert_eq!(ct(&resp), "text/css; charset=UTF-8");

    // Unauthenticated, as a <script> tag asks (no XHR header): a 401 JSON, never HTML.
    for uri in ["/api/files/script", "/api/files/style"] {
        let resp = send(&app, get(uri, &[("accept", "*/*")])).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{uri}");
        assert!(ct(&resp).starts_with("application/json"), "{uri}");
    }
    // The login page's style needs no login.
    assert_eq!(send(&app, get("/api/files/style/external", &[])).await.status(), StatusCode::OK);

    // Writes need F_INSERT_CUSTOM_JS_CSS or ALL.
    let resp = send(&app, req("POST", "/api/files/script", NURSE, "application/javascript", "var x = 1;")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = send(&app, req("POST", "/api/files/script", ADMIN, "application/javascript", "var i = 1;")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        body_json(resp).await,
        json!({"httpStatus": "OK", "httpStatusCode": 200, "status": "OK", "message": "Custom script created"})
    );
    let resp = send(&app, req("POST", "/api/files/style", ADMIN, "text/css", "body { width: 100%; }")).await;
    assert_eq!(body_json(resp).await["message"], "Custom style created");
    let resp = send(&app, get_as("/api/files/script", NURSE.0, NURSE.1)).await;
    assert_eq!(body_bytes(resp).await, b"var i = 1;");
    let resp = send(&app, get("/api/files/style/external", &[])).await;
    assert_eq!(body_bytes(resp).await, b"body { width: 100%; }");

    let resp = send(&app, req("DELETE", "/api/files/script", ADMIN, "text/plain", "")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = send(&app, get_as("/api/files/script", NURSE.0, NURSE.1)).await;
    assert!(body_bytes(resp).await.is_empty());
}

#[tokio::test]
async fn files_from_the_command_line_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extras = dhis2_sim::Extras {
        files_script: Some("console.log('custom');".into()),
        files_style: Some("h1 { color: red; }".into()),
        ..Default::default()
    };
    let app = dhis2_sim::build_app_with(&config(dir.path(), "2.40"), &extras).expect("app");
    let resp = send(&app, get_as("/api/files/script", NURSE.0, NURSE.1)).await;
    assert_eq!(body_bytes(resp).await, b"console.log('custom');");
    let resp = send(&app, get_as("/api/files/style", NURSE.0, NURSE.1)).await;
    assert_eq!(body_bytes(resp).await, b"h1 { color: red; }");
}

#[tokio::test]
async fn header_bar_endpoints() {
    let (app, _dir) = demo_app("2.40");
    let (s, _, v) = get_json(&app, "/api/me/authorization", NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.as_array().expect("list").contains(&json!("M_dhis-web-tracker-capture")));
    let (s, _, v) = get_json(&app, "/api/system/info", NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["version"], "2.40.0");
    let (s, _, v) = get_json(&app, "/api/apps", NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!([]));
    // DHIS2's English strings for the header bar's keys; unknown keys translate to themselves.
    let resp = send(&app, req("POST", "/api/i18n", NURSE, "application/json", r#"["apps","profile"]"#)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(resp).await, json!({"apps": "apps", "profile": "Profile"}));
    let resp = send(&app, get_as("/dhis-web-commons/menu/getModules.action", NURSE.0, NURSE.1)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(resp).await, json!({"modules": []}));
    // The Angular template the real server serves may stay a 404.
    let resp = send(&app, get_as("/dhis-web-commons/angular-forms/error-messages.html", NURSE.0, NURSE.1)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn static_apps_are_served_under_their_name() {
    let data = tempfile::tempdir().expect("data");
    let www = tempfile::tempdir().expect("www");
    std::fs::write(www.path().join("index.html"), "<!doctype html><title>TC</title>").expect("index");
    std::fs::write(www.path().join("sw.js"), "self.addEventListener('fetch', () => {});").expect("sw");
    std::fs::write(www.path().join("app.wasm"), b"\0asm").expect("wasm");
    std::fs::create_dir(www.path().join("i18n")).expect("i18n");
    std::fs::write(www.path().join("i18n/i18n_app.properties"), "hello=Hello").expect("props");
    let extras = dhis2_sim::Extras {
        apps: vec![dhis2_sim::parse_app(&format!("tracker-capture={}", www.path().display())).expect("spec")],
        ..Default::default()
    };
    let app = dhis2_sim::build_app_with(&config(data.path(), "2.40"), &extras).expect("app");

    let resp = send(&app, get("/tracker-capture", &[])).await;
    assert!(resp.status().is_redirection());
    assert_eq!(resp.headers()[header::LOCATION], "/tracker-capture/");
    let resp = send(&app, get("/tracker-capture/", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(ct(&resp).starts_with("text/html"));
    let resp = send(&app, get("/tracker-capture/sw.js", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(ct(&resp), "text/javascript");
    assert!(resp.headers().get("service-worker-allowed").is_none(), "scope /tracker-capture/ needs none");
    assert_eq!(ct(&send(&app, get("/tracker-capture/app.wasm", &[])).await), "application/wasm");
    let resp = send(&app, get("/tracker-capture/i18n/i18n_app.properties", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_bytes(resp).await, b"hello=Hello");
    let resp = send(&app, get("/tracker-capture/i18n", &[])).await;
    assert!(resp.status().is_redirection());
    assert_eq!(resp.headers()[header::LOCATION], "/tracker-capture/i18n/");
    assert_eq!(send(&app, get("/tracker-capture/nope.js", &[])).await.status(), StatusCode::NOT_FOUND);
    // The API is untouched and lists the app; the menu too.
    let (_, _, v) = get_json(&app, "/api/apps", NURSE).await;
    assert_eq!(v[0]["key"], "tracker-capture");
    let resp = send(&app, get_as("/dhis-web-commons/menu/getModules.action", NURSE.0, NURSE.1)).await;
    assert_eq!(body_json(resp).await["modules"][0]["defaultAction"], "../tracker-capture/index.html");

    assert!(dhis2_sim::parse_app("api=/tmp").is_err());
    assert!(dhis2_sim::parse_app("icons=/tmp").is_err());
    assert!(dhis2_sim::parse_app("a/b=/tmp").is_err());
    // A bundled app's folder is App Management's (it panicked at start: "Overlapping method route").
    assert!(dhis2_sim::parse_app("dhis-web-capture=/tmp").unwrap_err().contains("POST /api/apps"));
    assert!(dhis2_sim::parse_app("dhis-web-tracker-capture=/tmp").is_err());
    assert!(dhis2_sim::parse_app("dhis-web-capture-offline=/tmp").is_ok());
    assert!(dhis2_sim::parse_app("nodir").is_err());
}

/// What the d2-ui header bar (28.0.3, `initHeaderBar(…, '../api')`) needs to render its apps
/// and profile menus: d2's init calls, the help link it waits for, its strings, images and
/// the logout link.
#[tokio::test]
async fn header_bar_renders_with_profile_menu() {
    let (app, _dir) = demo_app("2.40");
    // d2 init: me (the fields d2 asks), authorities, user settings, system info, apps.
    let me = "/api/me?fields=%3Aall%2CorganisationUnits%5Bid%5D%2CuserGroups%5Bid%5D%2CuserCredentials%5B%3Aall%2C!user%2CuserRoles%5Bid%5D";
    let (s, c, v) = get_json(&app, me, NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(c.starts_with("application/json"), "{c}");
    // The avatar shows the initials of firstName and surname; the menu the displayName.
    assert_eq!(v["firstName"], "Amal");
    assert_eq!(v["surname"], "Haddad");
    assert_eq!(v["displayName"], "Amal Haddad");
    assert_eq!(v["userCredentials"]["username"], "nurse1");
    assert_eq!(v["organisationUnits"], json!([{"id": OU_BANI_NAIM}]));
    let (s, c, v) = get_json(&app, "/api/me/authorization", NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(c.starts_with("application/json"), "{c}");
    assert!(v.is_array());
    let (s, c, v) = get_json(&app, "/api/userSettings", NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(c.starts_with("application/json"), "{c}");
    assert_eq!(v["keyUiLocale"], "en");
    let resp =
        send(&app, get("/api/system/info", &[("authorization", &basic(NURSE.0, NURSE.1)), ("host", "sim:1")])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v = body_json(resp).await;
    assert_eq!(v["contextPath"], "http://sim:1");
    assert_eq!(v["version"], "2.40.0");
    let (s, _, v) = get_json(&app, "/api/apps", ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.is_array());

    // helpPageLink: d2 asks for text/plain, and its promise never settles on an error (the
    // bar then stays hidden), so it must be a 200 with a value.
    let plain = [("authorization", basic(NURSE.0, NURSE.1)), ("accept", "text/plain".to_owned())];
    let plain: Vec<(&str, &str)> = plain.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = send(&app, get("/api/systemSettings/helpPageLink", &plain)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(ct(&resp).starts_with("text/plain"), "{}", ct(&resp));
    let link = String::from_utf8(body_bytes(resp).await).expect("utf8");
    assert!(link.starts_with("https://"), "{link}");
    let (s, c, v) = get_json(&app, "/api/systemSettings/helpPageLink", NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(c.starts_with("application/json"), "{c}");
    assert_eq!(v["helpPageLink"], json!(link));
    // A key without a value is an empty string, never a 404 (as DHIS2).
    let resp = send(&app, get("/api/systemSettings/keyApplicationNotification", &plain)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(body_bytes(resp).await.is_empty());
    let (s, _, v) = get_json(&app, "/api/systemSettings/keyApplicationNotification", NURSE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"keyApplicationNotification": ""}));
    let (_, _, v) = get_json(&app, "/api/systemSettings/applicationTitle.json", NURSE).await;
    assert!(v["applicationTitle"].as_str().is_some_and(|t| !t.is_empty()), "{v}");

    // The bar's strings (d2 drops a translation equal to its key and shows `** key **`).
    let keys = r#"["log_out","app_search_placeholder","manage_my_apps","settings","about_dhis2","no_results_found"]"#;
    let resp = send(&app, req("POST", "/api/i18n", NURSE, "application/json", keys)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(ct(&resp).starts_with("application/json"));
    assert_eq!(
        body_json(resp).await,
        json!({"log_out": "Log out", "app_search_placeholder": "Search apps", "manage_my_apps": "Manage my apps",
               "settings": "Settings", "about_dhis2": "About DHIS 2", "no_results_found": "No results found"})
    );

    // The logo: no login needed, a 302 to the style's default banner, which is a PNG.
    let resp = send(&app, get("/api/staticContent/logo_banner", &[("host", "sim:1")])).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers()[header::LOCATION], "http://sim:1/dhis-web-commons/css/light_blue/logo_banner.png");
    let resp = send(&app, get("/dhis-web-commons/css/light_blue/logo_banner.png", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(ct(&resp), "image/png");
    assert!(body_bytes(resp).await.starts_with(b"\x89PNG"));
    let resp = send(&app, get("/api/staticContent/logo_front", &[])).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let resp = send(&app, get("/dhis-web-commons/security/logo_front.png", &[])).await;
    assert_eq!(ct(&resp), "image/png");
    let (s, _, v) = get_json(&app, "/api/staticContent/nope", NURSE).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["message"], "Key does not exist.");
    let resp = send(&app, get("/dhis-web-commons/css/themes/light_blue/light_blue.css", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(ct(&resp).starts_with("text/css"));

    // Menu icons: PNGs behind the login.
    for icon in ["program", "function-profile", "function-account", "function-about-dhis2", "usersettings"] {
        let resp = send(&app, get_as(&format!("/icons/{icon}.png"), NURSE.0, NURSE.1)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{icon}");
        assert_eq!(ct(&resp), "image/png");
        assert!(body_bytes(resp).await.starts_with(b"\x89PNG"), "{icon}");
    }
    let resp = send(&app, get("/icons/program.png", &[])).await;
    assert_eq!(resp.status(), StatusCode::FOUND, "needs a login");
    let resp = send(&app, get_as("/icons/nope.png", NURSE.0, NURSE.1)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// The profile menu's "Log out" link: `<root>/dhis-web-commons-security/logout.action` ends
/// the session, deletes the cookie and redirects to `/`.
#[tokio::test]
async fn logout_action_ends_the_session() {
    let (app, _dir) = demo_app("2.40");
    let resp = send(&app, get_as("/api/me", NURSE.0, NURSE.1)).await;
    let cookie = format!("JSESSIONID={}", session_cookie(&resp).expect("session"));
    let xhr = [("cookie", cookie.as_str()), ("x-requested-with", "XMLHttpRequest")];
    assert_eq!(send(&app, get("/api/me", &xhr)).await.status(), StatusCode::OK);

    let resp = send(&app, get("/dhis-web-commons-security/logout.action", &[("cookie", cookie.as_str())])).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers()[header::LOCATION], "/");
    let set = resp.headers()[header::SET_COOKIE].to_str().expect("cookie");
    assert!(set.starts_with("JSESSIONID=;") && set.contains("Max-Age=0") && set.contains("Path=/"), "{set}");
    assert_eq!(send(&app, get("/api/me", &xhr)).await.status(), StatusCode::UNAUTHORIZED);

    // Without a session (and with POST) it answers the same.
    let resp = send(
        &app,
        Request::builder()
            .method("POST")
            .uri("/dhis-web-commons-security/logout.action")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
}
