//! Contract tests of App Management (`/api/apps`) against DHIS2 2.41's behaviour (see the module
//! doc of `dhis2_sim::api::apps`): install from a multipart zip, list, serve, override a bundled
//! app at `/dhis-web-{key}/`, refuse bad zips with DHIS2's texts and no trace, delete, persist.

#![allow(clippy::expect_used)]

mod common;

use std::io::Write;

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    Router,
};
use common::*;
use dhis2_sim::seed::*;
use serde_json::{json, Value};

const ADMIN: (&str, &str) = (ADMIN_USERNAME, ADMIN_PASSWORD);
const NURSE1: (&str, &str) = (NURSE1_USERNAME, NURSE1_PASSWORD);

/// A zip of `(name, bytes)` entries, deflated.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        out.start_file(*name, options).expect("entry");
        out.write_all(bytes).expect("write");
    }
    out.finish().expect("finish").into_inner()
}

fn manifest(short_name: &str, version: &str, href: &str) -> Vec<u8> {
    json!({
        "name": format!("{short_name} app"),
        "short_name": short_name,
        "version": version,
        "launch_path": "index.html",
        "activities": { "dhis": { "href": href } },
    })
    .to_string()
    .into_bytes()
}

/// `POST /api/apps` with the zip in part `file`, as App Management's upload does.
fn upload(zip: &[u8], file_name: &str, who: (&str, &str)) -> Request<Body> {
    let boundary = "----sim-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
             Content-Type: application/zip\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(zip);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Request::builder()
        .method("POST")
        .uri("/api/apps")
        .header("authorization", basic(who.0, who.1))
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(Body::from(body))
        .expect("request")
}

async fn status_and_json(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = send(app, req).await;
    let status = resp.status();
    let bytes = body_bytes(resp).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn text_of(app: &Router, req: Request<Body>) -> (StatusCode, String, Option<String>) {
    let resp = send(app, req).await;
    let status = resp.status();
    let location = resp.headers().get(header::LOCATION).map(|v| v.to_str().expect("ascii").to_owned());
    let bytes = body_bytes(resp).await;
    (status, String::from_utf8_lossy(&bytes).into_owned(), location)
}

fn conflict(message: &str) -> Value {
    json!({"httpStatus": "Conflict", "httpStatusCode": 409, "status": "ERROR", "message": message})
}

async fn keys(app: &Router) -> Vec<String> {
    let (status, list) = status_and_json(app, get_as("/api/apps", ADMIN.0, ADMIN.1)).await;
    assert_eq!(status, StatusCode::OK);
    list.as_array().expect("array").iter().map(|a| a["key"].as_str().expect("key").to_owned()).collect()
}

fn delete_as(uri: &str, who: (&str, &str)) -> Request<Body> {
    Request::builder()
        .method("DELETE")
        .uri(uri)
        .header("authorization", basic(who.0, who.1))
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn an_installed_app_is_listed_served_with_the_server_url_filled_in_and_deleted() {
    let (app, _dir) = demo_app("2.41.4");
    let zip = zip_of(&[
        ("manifest.webapp", &manifest("Clinic Tools!", "1.0.0", "*")),
        ("index.html", b"<base href=\"__DHIS2_BASE_URL__\"><p>tools</p>"),
        ("js/app.js", b"console.log('app');"),
        ("img/", b""),
    ]);
    let (status, _) = status_and_json(&app, upload(&zip, "clinic-tools-1.0.0.zip", ADMIN)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (_, list) = status_and_json(&app, get_as("/api/apps", ADMIN.0, ADMIN.1)).await;
    let tools = list.as_array().expect("array").iter().find(|a| a["key"] == "Clinic-Tools").expect("listed");
    assert_eq!(tools["version"], "1.0.0");
    assert_eq!(tools["bundled"], false);
    assert_eq!(tools["folderName"], "apps/clinic-tools-1.0.0");
    assert_eq!(tools["baseUrl"], "http://localhost/api/apps/Clinic-Tools");
    assert_eq!(tools["launchUrl"], "http://localhost/api/apps/Clinic-Tools/index.html");

    let host = [("host", "clinic.example:8080"), ("authorization", &basic(ADMIN.0, ADMIN.1))];
    let (status, html, _) = text_of(&app, get("/api/apps/Clinic-Tools/index.html", &host)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html, "<base href=\"http://clinic.example:8080\"><p>tools</p>");
    let (status, manifest) = status_and_json(&app, get("/api/apps/Clinic-Tools/manifest.webapp", &host)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(manifest["activities"]["dhis"]["href"], "http://clinic.example:8080");
    let resp = send(&app, get_as("/api/apps/Clinic-Tools/js/app.js", ADMIN.0, ADMIN.1)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/javascript");
    assert!(resp.headers().contains_key(header::LAST_MODIFIED), "files are served with Last-Modified");
    let (status, _, location) = text_of(&app, get_as("/api/apps/Clinic-Tools", ADMIN.0, ADMIN.1)).await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(location.as_deref(), Some("/api/apps/Clinic-Tools/"));
    let (status, html, _) = text_of(&app, get_as("/api/apps/Clinic-Tools/", ADMIN.0, ADMIN.1)).await;
    assert_eq!((status, html.contains("tools")), (StatusCode::OK, true), "a folder serves its index.html");
    let (status, _, _) = text_of(&app, get_as("/api/apps/Clinic-Tools/missing.js", ADMIN.0, ADMIN.1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = status_and_json(&app, get_as("/api/apps/nothing/index.html", ADMIN.0, ADMIN.1)).await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::NOT_FOUND, Some("App 'nothing' not found.")));
    // Installed apps need a login, like everything under /api.
    let (status, _, location) = text_of(&app, get("/api/apps/Clinic-Tools/index.html", &[])).await;
    assert_eq!((status, location.as_deref()), (StatusCode::FOUND, Some("/dhis-web-commons/security/login.action")));

    // A nurse cannot remove it; the admin can, once.
    let (status, _) = status_and_json(&app, delete_as("/api/apps/Clinic-Tools", NURSE1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = status_and_json(&app, delete_as("/api/apps/Clinic-Tools", ADMIN)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!keys(&app).await.contains(&"Clinic-Tools".to_owned()));
    let (status, body) = status_and_json(&app, delete_as("/api/apps/Clinic-Tools", ADMIN)).await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::NOT_FOUND, Some("App does not exist: Clinic-Tools")));
    let (status, _) = status_and_json(&app, get_as("/api/apps/Clinic-Tools/index.html", ADMIN.0, ADMIN.1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_zips_are_refused_with_dhis2s_texts_and_leave_nothing_installed() {
    let (app, dir) = demo_app("2.41.4");
    let good = manifest("tools", "1", "*");
    let cases: Vec<(&str, Vec<u8>, StatusCode, Value)> = vec![
        ("not a zip", b"PK? no".to_vec(), StatusCode::CONFLICT, conflict("Manifest file missing from zip file")),
        (
            "no manifest",
            zip_of(&[("index.html", b"x")]),
            StatusCode::CONFLICT,
            conflict("Manifest file missing from zip file"),
        ),
        (
            "manifest not JSON",
            zip_of(&[("manifest.webapp", b"{name:"), ("index.html", b"x")]),
            StatusCode::CONFLICT,
            conflict("Manifest file missing from zip file"),
        ),
        (
            "zip slip",
            zip_of(&[("manifest.webapp", &good), ("../../escaped.js", b"x")]),
            StatusCode::CONFLICT,
            conflict("Zip file could not be read"),
        ),
        (
            "zip bomb (ratio over 100)",
            zip_of(&[("manifest.webapp", &good), ("big.txt", &vec![b'a'; 1_000_000])]),
            StatusCode::CONFLICT,
            conflict("Zip file could not be read"),
        ),
        (
            "no version",
            zip_of(&[("manifest.webapp", br#"{"short_name":"tools","activities":{"dhis":{"href":"*"}}}"#)]),
            StatusCode::CONFLICT,
            conflict("App could not be installed on file system"),
        ),
    ];
    for (what, zip, status, body) in cases {
        let (got, json) = status_and_json(&app, upload(&zip, "tools.zip", ADMIN)).await;
        assert_eq!((got, json), (status, body), "{what}");
    }
    assert!(keys(&app).await.is_empty(), "nothing installed");
    assert!(!dir.path().join("escaped.js").exists() && !dir.path().join("apps/escaped.js").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("apps")).expect("apps dir").collect();
    assert!(leftovers.is_empty(), "no half-unpacked folder: {leftovers:?}");

    // Without the authority, or without the file part.
    let zip = zip_of(&[("manifest.webapp", &good)]);
    let (status, _) = status_and_json(&app, upload(&zip, "tools.zip", NURSE1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let req = Request::builder()
        .method("POST")
        .uri("/api/apps")
        .header("authorization", basic(ADMIN.0, ADMIN.1))
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=b")
        .body(Body::from("--b\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--b--\r\n"))
        .expect("request");
    let (status, _) = status_and_json(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A namespace is one app's.
    let with_namespace = |short: &str| {
        json!({"short_name": short, "version": "1", "activities": {"dhis": {"href": "*", "namespace": "clinic"}}})
            .to_string()
            .into_bytes()
    };
    let (status, _) =
        status_and_json(&app, upload(&zip_of(&[("manifest.webapp", &with_namespace("one"))]), "one.zip", ADMIN)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) =
        status_and_json(&app, upload(&zip_of(&[("manifest.webapp", &with_namespace("two"))]), "two.zip", ADMIN)).await;
    assert_eq!((status, body), (StatusCode::CONFLICT, conflict("Namespace defined in manifest is already in use")));
}

#[tokio::test]
async fn an_app_with_a_bundled_key_overrides_it_and_a_newer_zip_replaces_it_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_on(dir.path(), "2.41.4");
    // Packed inside one folder, as many build tools do.
    let v1 = zip_of(&[
        ("tracker-capture/manifest.webapp", &manifest("tracker-capture", "0.1.0", "..")),
        ("tracker-capture/index.html", b"<p>v1</p>"),
        ("tracker-capture/old.js", b"old"),
    ]);
    let (status, _) = status_and_json(&app, upload(&v1, "tracker-capture-0.1.0.zip", ADMIN)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, html, _) = text_of(&app, get_as("/dhis-web-tracker-capture/index.html", NURSE1.0, NURSE1.1)).await;
    assert_eq!((status, html.as_str()), (StatusCode::OK, "<p>v1</p>"));
    let (_, html, _) = text_of(&app, get_as("/dhis-web-tracker-capture/", NURSE1.0, NURSE1.1)).await;
    assert_eq!(html, "<p>v1</p>");
    // The override path keeps an href that is not "*" (Tracker Capture's "..").
    let (_, manifest_json) =
        status_and_json(&app, get_as("/dhis-web-tracker-capture/manifest.webapp", NURSE1.0, NURSE1.1)).await;
    assert_eq!(manifest_json["activities"]["dhis"]["href"], "..");
    // /api/apps/<bundled key>/ sends the browser to the override.
    let (status, _, location) =
        text_of(&app, get_as("/api/apps/tracker-capture/index.html?x=1", NURSE1.0, NURSE1.1)).await;
    assert!(status.is_redirection());
    assert_eq!(location.as_deref(), Some("http://localhost/dhis-web-tracker-capture/index.html?x=1"));
    // Bundled apps need a login too.
    let (status, _, location) = text_of(&app, get("/dhis-web-tracker-capture/index.html", &[])).await;
    assert_eq!((status, location.as_deref()), (StatusCode::FOUND, Some("/dhis-web-commons/security/login.action")));
    let (_, list) = status_and_json(&app, get_as("/api/apps", ADMIN.0, ADMIN.1)).await;
    assert_eq!(list[0]["baseUrl"], "http://localhost/dhis-web-tracker-capture");
    assert_eq!(list[0]["bundled"], true);

    // The newer zip (another file name) replaces the older folder; a restart finds it.
    let v2 = zip_of(&[("manifest.webapp", &manifest("tracker-capture", "0.2.0", "..")), ("index.html", b"<p>v2</p>")]);
    let (status, _) = status_and_json(&app, upload(&v2, "tracker-capture-0.2.0.zip", ADMIN)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    drop(app);
    let app = app_on(dir.path(), "2.41.4");
    let (_, html, _) = text_of(&app, get_as("/dhis-web-tracker-capture/index.html", NURSE1.0, NURSE1.1)).await;
    assert_eq!(html, "<p>v2</p>");
    let (status, _, _) = text_of(&app, get_as("/dhis-web-tracker-capture/old.js", NURSE1.0, NURSE1.1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing of the older version is left");
    let folders: Vec<String> = std::fs::read_dir(dir.path().join("apps"))
        .expect("apps dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(folders, vec!["tracker-capture-0.2.0".to_owned()]);
    assert_eq!(keys(&app).await, vec!["tracker-capture".to_owned()]);
}
