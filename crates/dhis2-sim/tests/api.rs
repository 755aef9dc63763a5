//! Router-level tests of the DHIS2 contract: auth, sessions, `/api/me`, system endpoints,
//! errors, persistence across restarts, static files and CORS.

mod common;

use axum::http::{header, StatusCode};
use common::*;
use dhis2_sim::seed::*;
use serde_json::json;

const UNAUTHORIZED: &str =
    r#"{"httpStatus":"Unauthorized","httpStatusCode":401,"status":"ERROR","message":"Unauthorized"}"#;

#[tokio::test]
async fn me_with_basic_has_the_240_shape() {
    let (app, _dir) = demo_app("2.40");
    let resp = send(&app, get_as("/api/me", NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[header::CONTENT_TYPE].to_str().expect("ct").starts_with("application/json"));
    let me = body_json(resp).await;
    assert_eq!(me["id"], NURSE1_UID);
    assert_eq!(me["username"], NURSE1_USERNAME);
    assert_eq!(me["displayName"], NURSE1_DISPLAY_NAME);
    assert_eq!(me["name"], NURSE1_DISPLAY_NAME);
    assert_eq!(me["firstName"], "Amal");
    assert_eq!(me["surname"], "Haddad");
    for key in ["organisationUnits", "dataViewOrganisationUnits", "teiSearchOrganisationUnits"] {
        assert_eq!(me[key], json!([{ "id": OU_BANI_NAIM }]), "{key}");
    }
    assert_eq!(me["userRoles"], json!([{ "id": ROLE_DATA_ENTRY }]));
    // Programs with data read access (the MCH program, through the "MCH nurses" group).
    assert_eq!(me["programs"], json!([dhis2_sim::seed::PROGRAM_MCH]));
    let authorities = me["authorities"].as_array().expect("authorities");
    assert!(authorities.contains(&json!("F_TRACKED_ENTITY_INSTANCE_ADD")));
    assert!(!authorities.contains(&json!("ALL")));
    assert_eq!(me["userCredentials"]["username"], NURSE1_USERNAME);
    assert_eq!(me["userCredentials"]["userRoles"], json!([{ "id": ROLE_DATA_ENTRY }]));

    // The .json alias and the superuser.
    let resp = send(&app, get_as("/api/me.json", ADMIN_USERNAME, ADMIN_PASSWORD)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let me = body_json(resp).await;
    assert_eq!(me["id"], ADMIN_UID);
    assert_eq!(me["displayName"], ADMIN_DISPLAY_NAME);
    assert_eq!(me["organisationUnits"], json!([{ "id": OU_PALESTINE }]));
    assert!(me["authorities"].as_array().expect("authorities").contains(&json!("ALL")));
}

#[tokio::test]
async fn me_fields_filter_expands_org_units() {
    let (app, _dir) = demo_app("2.40");
    let uri = "/api/me?fields=id,displayName,organisationUnits%5Bid,displayName,name,code,level,path%5D";
    let me = body_json(send(&app, get_as(uri, NURSE2_USERNAME, NURSE2_PASSWORD)).await).await;
    assert_eq!(
        me,
        json!({
            "id": NURSE2_UID,
            "displayName": NURSE2_DISPLAY_NAME,
            "organisationUnits": [{
                "id": OU_BANI_NAIM,
                "displayName": "Bani Naim Clinic",
                "name": "Bani Naim Clinic",
                "code": "PS_HEBRON_BANI_NAIM",
                "level": 3,
                "path": format!("/{OU_PALESTINE}/{OU_HEBRON}/{OU_BANI_NAIM}"),
            }]
        })
    );

    // Tracker Capture's own request, raw brackets in the query.
    let uri = "/api/me?fields=id,displayName,userCredentials[username,userRoles[id,name]],organisationUnits[id,name]";
    let me = body_json(send(&app, get_as(uri, NURSE1_USERNAME, NURSE1_PASSWORD)).await).await;
    assert_eq!(
        me,
        json!({
            "id": NURSE1_UID,
            "displayName": NURSE1_DISPLAY_NAME,
            "userCredentials": {
                "username": NURSE1_USERNAME,
                "userRoles": [{"id": ROLE_DATA_ENTRY, "name": "Tracker data entry"}]
            },
            "organisationUnits": [{"id": OU_BANI_NAIM, "name": "Bani Naim Clinic"}]
        })
    );

    // Exclusions and `:all`.
    let uri = "/api/me?fields=:all,!userCredentials,!settings,!authorities";
    let me = body_json(send(&app, get_as(uri, NURSE1_USERNAME, NURSE1_PASSWORD)).await).await;
    assert!(me.get("userCredentials").is_none());
    assert!(me.get("authorities").is_none());
    assert_eq!(me["organisationUnits"], json!([{ "id": OU_BANI_NAIM }]));
}

#[tokio::test]
async fn user_credentials_depend_on_version() {
    for (version, present) in [("2.39", true), ("2.40", true), ("2.41", true), ("2.42", false)] {
        let (app, _dir) = demo_app(version);
        let me = body_json(send(&app, get_as("/api/me", ADMIN_USERNAME, ADMIN_PASSWORD)).await).await;
        assert_eq!(me.get("userCredentials").is_some(), present, "{version}");
        assert_eq!(me["username"], ADMIN_USERNAME, "{version}");
        let me = body_json(
            send(&app, get_as("/api/me?fields=userCredentials[username]", ADMIN_USERNAME, ADMIN_PASSWORD)).await,
        )
        .await;
        if present {
            assert_eq!(me, json!({"userCredentials": {"username": ADMIN_USERNAME}}));
        } else {
            assert_eq!(me, json!({}));
        }
    }
}

#[tokio::test]
async fn wrong_password_is_401_json_without_www_authenticate() {
    let (app, _dir) = demo_app("2.40");
    for req in [
        get_as("/api/me", NURSE1_USERNAME, "wrong"),
        get_as("/api/me", "nobody", NURSE1_PASSWORD),
        get_as("/api/me", NURSE1_USERNAME, NURSE2_PASSWORD),
        get("/api/me", &[("authorization", "Basic %%%not-base64")]),
        get("/api/me", &[("authorization", "Basic bm9jb2xvbg==")]),
    ] {
        let resp = send(&app, req).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert!(resp.headers().get(header::SET_COOKIE).is_none());
        assert_eq!(String::from_utf8(body_bytes(resp).await).expect("utf8"), UNAUTHORIZED);
    }
}

#[tokio::test]
async fn no_credentials_redirect_unless_xhr() {
    let (app, _dir) = demo_app("2.40");
    let resp = send(&app, get("/api/me", &[])).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers()[header::LOCATION], "/dhis-web-commons/security/login.action");

    let resp = send(&app, get("/api/me", &[("x-requested-with", "XMLHttpRequest")])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
    assert_eq!(body_json(resp).await, serde_json::from_str::<serde_json::Value>(UNAUTHORIZED).expect("json"));

    // The login page the redirect points to exists.
    let resp = send(&app, get("/dhis-web-commons/security/login.action", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn basic_login_sets_a_session_cookie_that_authenticates() {
    let (app, _dir) = demo_app("2.40");
    let resp = send(&app, get_as("/api/me", NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let raw = resp.headers()[header::SET_COOKIE].to_str().expect("cookie").to_owned();
    assert!(raw.starts_with("JSESSIONID="), "{raw}");
    assert!(raw.contains("; Path=/"), "{raw}");
    assert!(raw.contains("HttpOnly"), "{raw}");
    let id = session_cookie(&resp).expect("session");
    assert!(id.len() >= 16);

    let cookie = format!("JSESSIONID={id}");
    let resp = send(&app, get("/api/me", &[("cookie", &cookie)])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get(header::SET_COOKIE).is_none());
    assert_eq!(body_json(resp).await["id"], NURSE1_UID);

    // Basic again with the same session: no new cookie.
    let resp =
        send(&app, get("/api/me", &[("cookie", &cookie), ("authorization", &basic(NURSE1_USERNAME, NURSE1_PASSWORD))]))
            .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get(header::SET_COOKIE).is_none());

    // Basic as another user wins over the cookie, and gets its own session.
    let resp =
        send(&app, get("/api/me", &[("cookie", &cookie), ("authorization", &basic(NURSE2_USERNAME, NURSE2_PASSWORD))]))
            .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(session_cookie(&resp).is_some());
    assert_eq!(body_json(resp).await["id"], NURSE2_UID);

    // Wrong Basic credentials of another user are refused even with a valid cookie; those of
    // the session's own user are not checked at all, as on DHIS2 (tests/auth_session.rs).
    let resp =
        send(&app, get("/api/me", &[("cookie", &cookie), ("authorization", &basic(NURSE2_USERNAME, "bad"))])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp =
        send(&app, get("/api/me", &[("cookie", &cookie), ("authorization", &basic(NURSE1_USERNAME, "bad"))])).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // An unknown session id is not a login.
    let resp = send(
        &app,
        get(
            "/api/me",
            &[("cookie", "JSESSIONID=0123456789ABCDEF0123456789ABCDEF"), ("x-requested-with", "XMLHttpRequest")],
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn restart_drops_sessions_but_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on(dir.path(), "2.40");
    let resp = send(&app, get_as("/api/me", NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    let cookie = format!("JSESSIONID={}", session_cookie(&resp).expect("cookie"));
    let info = body_json(send(&app, get("/api/system/info", &[("cookie", &cookie)])).await).await;
    let system_id = info["systemId"].as_str().expect("systemId").to_owned();
    drop(app);

    // Restart on the same data directory (seeding again is a no-op).
    let app = app_on(dir.path(), "2.40");
    let resp = send(&app, get("/api/me", &[("cookie", &cookie), ("x-requested-with", "XMLHttpRequest")])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = send(&app, get("/api/me", &[("cookie", &cookie)])).await;
    assert_eq!(resp.status(), StatusCode::FOUND);

    let resp = send(&app, get_as("/api/me", NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(resp).await["id"], NURSE1_UID);

    let info = body_json(send(&app, get_as("/api/system/info", ADMIN_USERNAME, ADMIN_PASSWORD)).await).await;
    assert_eq!(info["systemId"], system_id.as_str(), "systemId is persistent");

    let state = dhis2_sim::open_state(&config(dir.path(), "2.40")).expect("state");
    let conn = state.db().lock();
    assert_eq!(dhis2_sim::db::count_users(&conn).expect("count"), 4);
    assert_eq!(dhis2_sim::db::count_org_units(&conn).expect("count"), 5);
}

#[tokio::test]
async fn disabled_user_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dhis2_sim::open_state(&config(dir.path(), "2.40")).expect("state");
    let app = dhis2_sim::router(state.clone(), None);
    let resp = send(&app, get_as("/api/me", NURSE2_USERNAME, NURSE2_PASSWORD)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = format!("JSESSIONID={}", session_cookie(&resp).expect("cookie"));

    assert!(dhis2_sim::db::set_user_disabled(&state.db().lock(), NURSE2_UID, true).expect("disable"));
    let resp = send(&app, get_as("/api/me", NURSE2_USERNAME, NURSE2_PASSWORD)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(String::from_utf8(body_bytes(resp).await).expect("utf8"), UNAUTHORIZED);
    let resp = send(&app, get("/api/me", &[("cookie", &cookie), ("x-requested-with", "XMLHttpRequest")])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "session of a disabled user");
}

#[tokio::test]
async fn ping_endpoints() {
    let (app, _dir) = demo_app("2.40");
    let resp = send(&app, get("/api/ping", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_bytes(resp).await, b"pong");

    let resp = send(&app, get("/api/system/ping", &[])).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let resp = send(&app, get("/api/system/ping", &[("x-requested-with", "XMLHttpRequest")])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = send(&app, get_as("/api/system/ping", NURSE1_USERNAME, NURSE1_PASSWORD)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_bytes(resp).await, b"pong");
}

#[tokio::test]
async fn system_info_needs_auth_and_reports_version() {
    let (app, _dir) = demo_app("2.41");
    let resp = send(&app, get("/api/system/info", &[("x-requested-with", "XMLHttpRequest")])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let info = body_json(
        send(
            &app,
            get(
                "/api/system/info",
                &[("authorization", &basic(NURSE1_USERNAME, NURSE1_PASSWORD)), ("host", "clinic.example:8080")],
            ),
        )
        .await,
    )
    .await;
    assert_eq!(info["version"], "2.41.0");
    assert_eq!(info["contextPath"], "http://clinic.example:8080");
    for key in ["revision", "serverDate", "systemId", "systemName"] {
        assert!(info[key].is_string(), "{key}");
    }
    let info = body_json(
        send(&app, get_as("/api/system/info?fields=version,revision", NURSE1_USERNAME, NURSE1_PASSWORD)).await,
    )
    .await;
    assert_eq!(info.as_object().expect("object").len(), 2);
}

#[tokio::test]
async fn system_id_generates_valid_uids() {
    let (app, _dir) = demo_app("2.40");
    let codes = |v: serde_json::Value| -> Vec<String> {
        v["codes"].as_array().expect("codes").iter().map(|c| c.as_str().expect("str").to_owned()).collect()
    };
    let one = codes(body_json(send(&app, get_as("/api/system/id", ADMIN_USERNAME, ADMIN_PASSWORD)).await).await);
    assert_eq!(one.len(), 1);
    let many =
        codes(body_json(send(&app, get_as("/api/system/id?limit=500", ADMIN_USERNAME, ADMIN_PASSWORD)).await).await);
    assert_eq!(many.len(), 500);
    assert!(many.iter().all(|c| is_uid(c)), "{many:?}");
    let unique: std::collections::HashSet<_> = many.iter().collect();
    assert_eq!(unique.len(), 500);
    let capped = codes(
        body_json(send(&app, get_as("/api/system/uid.json?limit=20000", ADMIN_USERNAME, ADMIN_PASSWORD)).await).await,
    );
    assert_eq!(capped.len(), 10_000);
    assert!(capped.iter().all(|c| is_uid(c)));

    let resp = send(&app, get_as("/api/system/id?limit=abc", ADMIN_USERNAME, ADMIN_PASSWORD)).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let msg = body_json(resp).await;
    assert_eq!(msg["httpStatus"], "Bad Request");
    assert_eq!(msg["httpStatusCode"], 400);
    assert_eq!(msg["status"], "ERROR");

    let resp = send(&app, get("/api/system/id", &[("x-requested-with", "XMLHttpRequest")])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_web_messages() {
    let (app, _dir) = demo_app("2.40");
    let resp = send(&app, get_as("/api/nothingHere", ADMIN_USERNAME, ADMIN_PASSWORD)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let msg = body_json(resp).await;
    assert_eq!(msg["httpStatus"], "Not Found");
    assert_eq!(msg["httpStatusCode"], 404);
    assert_eq!(msg["status"], "ERROR");
    assert!(msg["message"].as_str().expect("message").contains("/api/nothingHere"));

    // Unknown paths are still behind the login, as on DHIS2.
    let resp = send(&app, get("/api/nothingHere", &[("x-requested-with", "XMLHttpRequest")])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let req = axum::http::Request::builder()
        .method("DELETE")
        .uri("/api/me")
        .header("authorization", basic(ADMIN_USERNAME, ADMIN_PASSWORD))
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = send(&app, req).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body_json(resp).await["httpStatusCode"], 405);

    // Without --www, other paths are 404 WebMessages too.
    let resp = send(&app, get("/index.html", &[])).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(body_json(resp).await["httpStatusCode"], 404);
}

#[tokio::test]
async fn me_authorization_endpoints() {
    let (app, _dir) = demo_app("2.40");
    let v = body_json(
        send(&app, get_as("/api/me/authorization/F_UNCOMPLETE_EVENT", NURSE1_USERNAME, NURSE1_PASSWORD)).await,
    )
    .await;
    assert_eq!(v, json!(false));
    let v =
        body_json(send(&app, get_as("/api/me/authorization/F_UNCOMPLETE_EVENT", ADMIN_USERNAME, ADMIN_PASSWORD)).await)
            .await;
    assert_eq!(v, json!(true));
    let v = body_json(send(&app, get_as("/api/me/authorization", NURSE1_USERNAME, NURSE1_PASSWORD)).await).await;
    assert!(v.as_array().expect("list").contains(&json!("M_dhis-web-tracker-capture")));
}

#[tokio::test]
async fn cors_echoes_origin_with_credentials() {
    let (app, _dir) = demo_app("2.40");
    let req = axum::http::Request::builder()
        .method("OPTIONS")
        .uri("/api/me")
        .header("origin", "http://localhost:9000")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization,x-requested-with")
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = send(&app, req).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "http://localhost:9000");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed = h["access-control-allow-headers"].to_str().expect("headers").to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("x-requested-with"));

    let resp = send(
        &app,
        get(
            "/api/me",
            &[("origin", "http://localhost:9000"), ("authorization", &basic(NURSE1_USERNAME, NURSE1_PASSWORD))],
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["access-control-allow-origin"], "http://localhost:9000");
}

#[tokio::test]
async fn static_files_are_served_but_api_never_falls_through() {
    let data = tempfile::tempdir().expect("tempdir");
    let www = tempfile::tempdir().expect("tempdir");
    std::fs::write(www.path().join("index.html"), "<h1>demo</h1>").expect("write");
    std::fs::write(www.path().join("app.js"), "export {}").expect("write");
    std::fs::write(www.path().join("app.mjs"), "export {}").expect("write");
    std::fs::write(www.path().join("core_bg.wasm"), b"\0asm\x01\0\0\0").expect("write");
    std::fs::create_dir(www.path().join("api")).expect("mkdir");
    std::fs::write(www.path().join("api").join("secret.txt"), "no").expect("write");
    let mut cfg = config(data.path(), "2.40");
    cfg.www = Some(www.path().to_owned());
    let app = dhis2_sim::build_app(&cfg).expect("app");

    let resp = send(&app, get("/", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_bytes(resp).await, b"<h1>demo</h1>");
    for (path, mime) in
        [("/app.js", "text/javascript"), ("/app.mjs", "text/javascript"), ("/core_bg.wasm", "application/wasm")]
    {
        let resp = send(&app, get(path, &[])).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], mime, "{path}");
    }
    let resp = send(&app, get_as("/api/secret.txt", ADMIN_USERNAME, ADMIN_PASSWORD)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(body_json(resp).await["httpStatusCode"], 404);
    let resp = send(&app, get("/missing.js", &[])).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[test]
fn seeding_twice_does_not_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dhis2_sim::db::Db::open(dir.path()).expect("db");
    let mut conn = db.lock();
    assert!(dhis2_sim::seed::seed_demo(&mut conn).expect("seed"));
    assert!(!dhis2_sim::seed::seed_demo(&mut conn).expect("seed again"));
    assert_eq!(dhis2_sim::db::count_users(&conn).expect("count"), 4);
    assert_eq!(dhis2_sim::db::count_org_units(&conn).expect("count"), 5);
    drop(conn);
    drop(db);
    // And across a reopen with --seed demo.
    let state = dhis2_sim::open_state(&config(dir.path(), "2.40")).expect("state");
    assert_eq!(dhis2_sim::db::count_users(&state.db().lock()).expect("count"), 4);
}
