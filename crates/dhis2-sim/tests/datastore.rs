//! Router tests of `/api/dataStore`, `/api/userDataStore` and `/api/sharing?type=dataStore`:
//! every verb, the DHIS2 error shapes, per-key sharing by server version, persistence.

#![allow(clippy::expect_used)]

mod common;

use axum::{
    body::Body,
    http::{Request, StatusCode},
    Router,
};
use common::*;
use dhis2_sim::seed::*;
use serde_json::{json, Value};

const NURSE1: (&str, &str) = (NURSE1_USERNAME, NURSE1_PASSWORD);
const NURSE2: (&str, &str) = (NURSE2_USERNAME, NURSE2_PASSWORD);
const ADMIN: (&str, &str) = (ADMIN_USERNAME, ADMIN_PASSWORD);

/// A request as `who`, with an optional JSON body.
fn req(method: &str, uri: &str, who: (&str, &str), body: Option<Value>) -> Request<Body> {
    let b = Request::builder().method(method).uri(uri).header("authorization", basic(who.0, who.1));
    match body {
        Some(v) => b.header("content-type", "application/json").body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .expect("request")
}

async fn call(app: &Router, method: &str, uri: &str, who: (&str, &str), body: Option<Value>) -> (StatusCode, Value) {
    let resp = send(app, req(method, uri, who, body)).await;
    let status = resp.status();
    let bytes = body_bytes(resp).await;
    let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
    (status, json)
}

fn web_message(status: u16, reason: &str, outcome: &str, message: &str) -> Value {
    json!({"httpStatus": reason, "httpStatusCode": status, "status": outcome, "message": message})
}

#[tokio::test]
async fn datastore_verbs_and_errors() {
    let (app, dir) = demo_app("2.40");
    assert_eq!(call(&app, "GET", "/api/dataStore", NURSE1, None).await, (StatusCode::OK, json!([])));
    assert_eq!(
        call(&app, "GET", "/api/dataStore/capture", NURSE1, None).await,
        (StatusCode::NOT_FOUND, web_message(404, "Not Found", "ERROR", "Namespace not found: 'capture'"))
    );
    assert_eq!(
        call(&app, "GET", "/api/dataStore/capture/cfg", NURSE1, None).await,
        (StatusCode::NOT_FOUND, web_message(404, "Not Found", "ERROR", "Key 'cfg' not found in namespace 'capture'"))
    );

    let value = json!({"theme": "dark", "n": [1, 2, 3], "nested": {"a": null}});
    assert_eq!(
        call(&app, "POST", "/api/dataStore/capture/cfg", NURSE1, Some(value.clone())).await,
        (StatusCode::CREATED, web_message(201, "Created", "OK", "Key created: 'cfg'"))
    );
    assert_eq!(
        call(&app, "POST", "/api/dataStore/capture/cfg", NURSE1, Some(json!(1))).await,
        (
            StatusCode::CONFLICT,
            web_message(409, "Conflict", "ERROR", "Key 'cfg' already exists in namespace 'capture'")
        )
    );
    assert_eq!(call(&app, "GET", "/api/dataStore/capture/cfg", NURSE2, None).await, (StatusCode::OK, value));

    assert_eq!(
        call(&app, "PUT", "/api/dataStore/capture/cfg", NURSE2, Some(json!("v2"))).await,
        (StatusCode::OK, web_message(200, "OK", "OK", "Key updated: 'cfg'"))
    );
    assert_eq!(call(&app, "GET", "/api/dataStore/capture/cfg", NURSE1, None).await, (StatusCode::OK, json!("v2")));
    // 2.40.0 answers a PUT of a missing key with 404 (see put_creates_a_missing_key_only_from_…).
    assert_eq!(
        call(&app, "PUT", "/api/dataStore/capture/other", NURSE1, Some(json!([true]))).await,
        (StatusCode::NOT_FOUND, web_message(404, "Not Found", "ERROR", "Key 'other' not found in namespace 'capture'"))
    );
    assert_eq!(
        call(&app, "POST", "/api/dataStore/capture/other", NURSE1, Some(json!([true]))).await,
        (StatusCode::CREATED, web_message(201, "Created", "OK", "Key created: 'other'"))
    );
    assert_eq!(
        call(&app, "POST", "/api/dataStore/secret/k?encrypt=true", NURSE1, Some(json!({"pin": "1234"}))).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&app, "GET", "/api/dataStore/capture", NURSE1, None).await,
        (StatusCode::OK, json!(["cfg", "other"]))
    );
    assert_eq!(call(&app, "GET", "/api/dataStore", NURSE1, None).await, (StatusCode::OK, json!(["capture", "secret"])));

    // metaData: the entry without its value, with sharing.
    let (status, meta) = call(&app, "GET", "/api/dataStore/capture/cfg/metaData", NURSE2, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(is_uid(meta["id"].as_str().expect("id")), "{meta}");
    assert_eq!(meta["key"], "cfg");
    assert_eq!(meta["namespace"], "capture");
    assert_eq!(meta["encrypted"], false);
    assert!(meta.get("value").is_none(), "{meta}");
    assert_eq!(meta["sharing"]["public"], "rw------");
    assert_eq!(meta["sharing"]["owner"], NURSE1_UID);
    assert_eq!(meta["createdBy"]["id"], NURSE1_UID);
    assert_eq!(meta["lastUpdatedBy"]["id"], NURSE2_UID);
    assert!(meta["created"].is_string() && meta["lastUpdated"].is_string());
    let (_, meta) = call(&app, "GET", "/api/dataStore/secret/k/metaData", NURSE1, None).await;
    assert_eq!(meta["encrypted"], true);
    assert_eq!(call(&app, "GET", "/api/dataStore/secret/k", NURSE1, None).await.1, json!({"pin": "1234"}));

    // Bad bodies.
    let bad = Request::builder()
        .method("PUT")
        .uri("/api/dataStore/capture/cfg")
        .header("authorization", basic(NURSE1.0, NURSE1.1))
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .expect("request");
    let resp = send(&app, bad).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(resp).await, web_message(400, "Bad Request", "ERROR", "Invalid JSON value for key 'cfg'"));
    let text = Request::builder()
        .method("POST")
        .uri("/api/dataStore/capture/new")
        .header("authorization", basic(NURSE1.0, NURSE1.1))
        .header("content-type", "text/plain")
        .body(Body::from("1"))
        .expect("request");
    let resp = send(&app, text).await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body_json(resp).await["message"], "Content type 'text/plain' not supported");

    // Survives a restart.
    drop(app);
    let app = app_on(dir.path(), "2.40");
    assert_eq!(call(&app, "GET", "/api/dataStore/capture/cfg", NURSE1, None).await, (StatusCode::OK, json!("v2")));

    // Deletes.
    assert_eq!(
        call(&app, "DELETE", "/api/dataStore/capture/cfg", NURSE1, None).await,
        (StatusCode::OK, web_message(200, "OK", "OK", "Key 'cfg' deleted from namespace 'capture'"))
    );
    assert_eq!(call(&app, "DELETE", "/api/dataStore/capture/cfg", NURSE1, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        call(&app, "DELETE", "/api/dataStore/capture", NURSE1, None).await,
        (StatusCode::OK, web_message(200, "OK", "OK", "Namespace deleted: 'capture'"))
    );
    assert_eq!(
        call(&app, "DELETE", "/api/dataStore/capture", NURSE1, None).await,
        (StatusCode::NOT_FOUND, web_message(404, "Not Found", "ERROR", "Namespace not found: 'capture'"))
    );
    assert_eq!(call(&app, "GET", "/api/dataStore", NURSE1, None).await, (StatusCode::OK, json!(["secret"])));

    // Unauthenticated: the usual 401.
    let resp = send(&app, get("/api/dataStore", &[("x-requested-with", "XMLHttpRequest")])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// `PUT /api/dataStore/{ns}/{key}` of a key that does not exist: DHIS2 2.39.0-2.39.2 and
/// 2.40.0 answer 404 (`updateKeyJsonValue` calls `getExistingEntry` before reading the value, so
/// a bad body does not matter there); 2.38.5+, 2.39.3+ and 2.40.1+ create it (`putEntry`: 201
/// "Key created", with `?encrypt=true` honoured). POST of an existing key is 409 everywhere.
#[tokio::test]
async fn put_creates_a_missing_key_only_from_2_39_3_and_2_40_1() {
    let not_found = web_message(404, "Not Found", "ERROR", "Key 'k' not found in namespace 'ns'");
    for (version, creates) in [
        ("2.39.0", false),
        ("2.39.2", false),
        ("2.39.3", true),
        ("2.39.5", true),
        ("2.40", false),
        ("2.40.1", true),
        ("2.40.3", true),
        ("2.41", true),
        ("2.42", true),
    ] {
        let (app, _dir) = demo_app(version);
        let put = call(&app, "PUT", "/api/dataStore/ns/k?encrypt=true", NURSE1, Some(json!({"v": 1}))).await;
        if creates {
            assert_eq!(put, (StatusCode::CREATED, web_message(201, "Created", "OK", "Key created: 'k'")), "{version}");
            assert_eq!(call(&app, "GET", "/api/dataStore/ns/k", NURSE1, None).await.1, json!({"v": 1}), "{version}");
            let (_, meta) = call(&app, "GET", "/api/dataStore/ns/k/metaData", NURSE1, None).await;
            assert_eq!(meta["encrypted"], true, "{version}");
            assert_eq!(meta["sharing"]["public"], "rw------", "{version}: new keys are public");
        } else {
            assert_eq!(put, (StatusCode::NOT_FOUND, not_found.clone()), "{version}");
            assert_eq!(call(&app, "GET", "/api/dataStore/ns/k", NURSE1, None).await.0, StatusCode::NOT_FOUND);
            assert_eq!(call(&app, "GET", "/api/dataStore/ns", NURSE1, None).await.0, StatusCode::NOT_FOUND);
            // The key is looked up before the body is parsed.
            let bad = Request::builder()
                .method("PUT")
                .uri("/api/dataStore/ns/k")
                .header("authorization", basic(NURSE1.0, NURSE1.1))
                .header("content-type", "application/json")
                .body(Body::from("{not json"))
                .expect("request");
            assert_eq!(send(&app, bad).await.status(), StatusCode::NOT_FOUND, "{version}");
            assert_eq!(
                call(&app, "POST", "/api/dataStore/ns/k", NURSE1, Some(json!({"v": 1}))).await.0,
                StatusCode::CREATED
            );
        }
        // Existing key: PUT updates, POST conflicts, on every version.
        assert_eq!(
            call(&app, "PUT", "/api/dataStore/ns/k", NURSE1, Some(json!({"v": 2}))).await,
            (StatusCode::OK, web_message(200, "OK", "OK", "Key updated: 'k'")),
            "{version}"
        );
        assert_eq!(
            call(&app, "POST", "/api/dataStore/ns/k", NURSE1, Some(json!({"v": 3}))).await,
            (StatusCode::CONFLICT, web_message(409, "Conflict", "ERROR", "Key 'k' already exists in namespace 'ns'")),
            "{version}"
        );
        assert_eq!(call(&app, "GET", "/api/dataStore/ns/k", NURSE1, None).await.1, json!({"v": 2}), "{version}");
    }
}

/// nurse1 creates a key and makes it private; what nurse2 may do depends on the version.
async fn private_key(version: &str) -> (Router, tempfile::TempDir, String) {
    let (app, dir) = demo_app(version);
    assert_eq!(call(&app, "POST", "/api/dataStore/ns/k", NURSE1, Some(json!({"v": 1}))).await.0, StatusCode::CREATED);
    let (_, meta) = call(&app, "GET", "/api/dataStore/ns/k/metaData", NURSE1, None).await;
    let id = meta["id"].as_str().expect("id").to_owned();
    let (status, sharing) = call(&app, "GET", &format!("/api/sharing?type=dataStore&id={id}"), NURSE1, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sharing["object"]["id"], json!(id));
    assert_eq!(sharing["object"]["publicAccess"], "rw------");
    assert_eq!(sharing["object"]["user"]["id"], NURSE1_UID);
    assert_eq!(sharing["object"]["userAccesses"], json!([]));
    assert_eq!(sharing["meta"]["allowPublicAccess"], true);
    let private = json!({"object": {"publicAccess": "--------", "userAccesses": [], "userGroupAccesses": []}});
    assert_eq!(
        call(&app, "POST", &format!("/api/sharing?type=dataStore&id={id}"), NURSE1, Some(private)).await,
        (StatusCode::OK, web_message(200, "OK", "OK", "Access control set"))
    );
    (app, dir, id)
}

#[tokio::test]
async fn read_sharing_is_enforced_by_version() {
    let denied = web_message(403, "Forbidden", "ERROR", "Access denied for key 'k' in namespace 'ns'");
    for (version, enforced) in [("2.40", false), ("2.40.2", false), ("2.40.3", true), ("2.41", true), ("2.39.5", true)]
    {
        let (app, _dir, id) = private_key(version).await;
        let read = call(&app, "GET", "/api/dataStore/ns/k", NURSE2, None).await;
        let meta = call(&app, "GET", "/api/dataStore/ns/k/metaData", NURSE2, None).await;
        if enforced {
            assert_eq!(read, (StatusCode::FORBIDDEN, denied.clone()), "{version}");
            assert_eq!(meta, (StatusCode::FORBIDDEN, denied.clone()), "{version}");
        } else {
            assert_eq!(read, (StatusCode::OK, json!({"v": 1})), "{version}");
            assert_eq!(meta.0, StatusCode::OK, "{version}");
        }
        // Writes are checked on every version.
        assert_eq!(
            call(&app, "PUT", "/api/dataStore/ns/k", NURSE2, Some(json!(2))).await,
            (StatusCode::FORBIDDEN, denied.clone()),
            "{version}"
        );
        assert_eq!(call(&app, "DELETE", "/api/dataStore/ns/k", NURSE2, None).await.0, StatusCode::FORBIDDEN);
        assert_eq!(call(&app, "DELETE", "/api/dataStore/ns", NURSE2, None).await.0, StatusCode::FORBIDDEN);
        // The key list is not filtered; owner and superuser keep access.
        assert_eq!(call(&app, "GET", "/api/dataStore/ns", NURSE2, None).await, (StatusCode::OK, json!(["k"])));
        assert_eq!(call(&app, "GET", "/api/dataStore/ns/k", NURSE1, None).await.0, StatusCode::OK);
        assert_eq!(call(&app, "GET", "/api/dataStore/ns/k", ADMIN, None).await.0, StatusCode::OK);
        // Sharing itself needs manage access.
        let share_uri = format!("/api/sharing?type=dataStore&id={id}");
        let to_nurse2 = |access: &str| {
            json!({"object": {"publicAccess": "--------",
                              "userAccesses": [{"id": NURSE2_UID, "access": access}, {"id": "NoSuchUser1", "access": "rw------"}],
                              "userGroupAccesses": []}})
        };
        assert_eq!(
            call(&app, "POST", &share_uri, NURSE2, Some(to_nurse2("rw------"))).await,
            (
                StatusCode::FORBIDDEN,
                web_message(403, "Forbidden", "ERROR", "You do not have manage access to this object.")
            )
        );
        // Read-only share: nurse2 reads on every version, still cannot write.
        assert_eq!(call(&app, "POST", &share_uri, NURSE1, Some(to_nurse2("r-------"))).await.0, StatusCode::OK);
        assert_eq!(call(&app, "GET", "/api/dataStore/ns/k", NURSE2, None).await.0, StatusCode::OK, "{version}");
        assert_eq!(call(&app, "PUT", "/api/dataStore/ns/k", NURSE2, Some(json!(2))).await.0, StatusCode::FORBIDDEN);
        let (_, sharing) = call(&app, "GET", &share_uri, NURSE2, None).await;
        assert_eq!(
            sharing["object"]["userAccesses"],
            json!([{"id": NURSE2_UID, "name": NURSE2_DISPLAY_NAME, "displayName": NURSE2_DISPLAY_NAME, "access": "r-------"}])
        );
        // Read-write share (data half dropped: no data sharing on dataStore).
        assert_eq!(call(&app, "POST", &share_uri, ADMIN, Some(to_nurse2("rwrw----"))).await.0, StatusCode::OK);
        assert_eq!(call(&app, "PUT", "/api/dataStore/ns/k", NURSE2, Some(json!(2))).await.0, StatusCode::OK);
        let (_, meta) = call(&app, "GET", "/api/dataStore/ns/k/metaData", NURSE2, None).await;
        assert_eq!(meta["sharing"]["users"][NURSE2_UID]["access"], "rw------");
        assert_eq!(meta["sharing"]["public"], "--------");
    }
}

#[tokio::test]
async fn sharing_errors() {
    let (app, _dir, id) = private_key("2.41").await;
    let ok_body = json!({"object": {"publicAccess": "r-------"}});
    assert_eq!(
        call(&app, "GET", "/api/sharing?type=dataStore&id=NoSuchEntry", NURSE1, None).await,
        (
            StatusCode::NOT_FOUND,
            web_message(404, "Not Found", "ERROR", "Object of type dataStore with ID NoSuchEntry was not found.")
        )
    );
    assert_eq!(
        call(&app, "POST", &format!("/api/sharing?type=program&id={id}"), NURSE1, Some(ok_body.clone())).await,
        (StatusCode::CONFLICT, web_message(409, "Conflict", "ERROR", "Type program is not supported."))
    );
    assert_eq!(
        call(
            &app,
            "POST",
            &format!("/api/sharing?type=dataStore&id={id}"),
            NURSE1,
            Some(json!({"object": {"publicAccess": "xx"}}))
        )
        .await,
        (StatusCode::CONFLICT, web_message(409, "Conflict", "ERROR", "Invalid public access string: xx"))
    );
    assert_eq!(call(&app, "GET", "/api/sharing?id=x", NURSE1, None).await.0, StatusCode::BAD_REQUEST);
    // Private and enforced: nurse2 may not even read the sharing.
    assert_eq!(
        call(&app, "GET", &format!("/api/sharing?type=dataStore&id={id}"), NURSE2, None).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn user_datastore_is_per_user() {
    let (app, _dir) = demo_app("2.40");
    assert_eq!(
        call(&app, "POST", "/api/userDataStore/settings/theme", NURSE1, Some(json!({"dark": true}))).await,
        (StatusCode::CREATED, web_message(201, "Created", "OK", "Key 'theme' in namespace 'settings' created."))
    );
    assert_eq!(
        call(&app, "POST", "/api/userDataStore/settings/theme", NURSE1, Some(json!(1))).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        call(&app, "GET", "/api/userDataStore/settings/theme", NURSE1, None).await,
        (StatusCode::OK, json!({"dark": true}))
    );
    assert_eq!(call(&app, "GET", "/api/userDataStore", NURSE1, None).await, (StatusCode::OK, json!(["settings"])));
    assert_eq!(
        call(&app, "GET", "/api/userDataStore/settings", NURSE1, None).await,
        (StatusCode::OK, json!(["theme"]))
    );
    // Isolation: nurse2 and the shared dataStore see nothing.
    assert_eq!(call(&app, "GET", "/api/userDataStore", NURSE2, None).await, (StatusCode::OK, json!([])));
    assert_eq!(
        call(&app, "GET", "/api/userDataStore/settings/theme", NURSE2, None).await,
        (
            StatusCode::NOT_FOUND,
            web_message(404, "Not Found", "ERROR", "Key 'theme' not found in namespace 'settings'")
        )
    );
    assert_eq!(
        call(&app, "GET", "/api/userDataStore/settings", NURSE2, None).await,
        (StatusCode::NOT_FOUND, web_message(404, "Not Found", "ERROR", "Namespace not found: 'settings'"))
    );
    assert_eq!(call(&app, "GET", "/api/dataStore", NURSE1, None).await, (StatusCode::OK, json!([])));
    assert_eq!(
        call(&app, "POST", "/api/userDataStore/settings/theme", NURSE2, Some(json!(2))).await.0,
        StatusCode::CREATED
    );
    assert_eq!(call(&app, "GET", "/api/userDataStore/settings/theme", NURSE1, None).await.1, json!({"dark": true}));

    // Superuser on another user's store.
    assert_eq!(
        call(&app, "GET", "/api/userDataStore/settings/theme?username=nurse1", ADMIN, None).await,
        (StatusCode::OK, json!({"dark": true}))
    );
    assert_eq!(
        call(&app, "PUT", "/api/userDataStore/settings/theme?username=nurse1", ADMIN, Some(json!({"dark": false})))
            .await,
        (StatusCode::OK, web_message(200, "OK", "OK", "Key updated: 'theme'"))
    );
    assert_eq!(call(&app, "GET", "/api/userDataStore/settings/theme", NURSE1, None).await.1, json!({"dark": false}));
    assert_eq!(call(&app, "GET", "/api/userDataStore?username=nurse1", ADMIN, None).await.1, json!(["settings"]));
    assert_eq!(call(&app, "GET", "/api/userDataStore", ADMIN, None).await.1, json!([]));
    assert_eq!(
        call(&app, "GET", "/api/userDataStore/settings/theme?username=nurse1", NURSE2, None).await,
        (
            StatusCode::CONFLICT,
            web_message(
                409,
                "Conflict",
                "ERROR",
                "Only superusers can read or write other users data using the `username` parameter."
            )
        )
    );
    assert_eq!(
        call(&app, "GET", "/api/userDataStore?username=ghost", ADMIN, None).await,
        (StatusCode::CONFLICT, web_message(409, "Conflict", "ERROR", "No user with username ghost exists."))
    );

    // PUT does not create in the userDataStore; deletes.
    assert_eq!(
        call(&app, "PUT", "/api/userDataStore/settings/nope", NURSE1, Some(json!(1))).await,
        (StatusCode::NOT_FOUND, web_message(404, "Not Found", "ERROR", "Key 'nope' not found in namespace 'settings'"))
    );
    assert_eq!(
        call(&app, "DELETE", "/api/userDataStore/settings/theme", NURSE1, None).await,
        (StatusCode::OK, web_message(200, "OK", "OK", "Key 'theme' deleted from the namespace 'settings'."))
    );
    assert_eq!(call(&app, "GET", "/api/userDataStore/settings/theme", NURSE2, None).await.1, json!(2));
    assert_eq!(
        call(&app, "DELETE", "/api/userDataStore/settings?username=nurse2", ADMIN, None).await,
        (StatusCode::OK, web_message(200, "OK", "OK", "Namespace deleted: 'settings'"))
    );
    assert_eq!(call(&app, "GET", "/api/userDataStore", NURSE2, None).await.1, json!([]));
}
