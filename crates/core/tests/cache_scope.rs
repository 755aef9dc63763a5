//! Whose the sealed read cache is (issue 13, item 5): every cached read is kept per user unless
//! it is metadata of the allow-list, and the API version segment (`/api/40/me`) never changes
//! that decision. A shift change offline must never show nurse2 what the server told nurse1.

#![allow(clippy::unwrap_used)]

mod support;

use std::cell::Cell;

use futures::executor::block_on;
use serde_json::json;
use support::*;
use tracker_offline_core::{
    engine::{Engine, EngineConfig},
    http::{HttpClient, HttpRequest, HttpResponse},
    kdf::RustPbkdf2,
    params::Target,
    random::OsRandom,
    store::MemoryStore,
    CoreError, Result,
};

const API: &str = "http://127.0.0.1:9/api";

/// A server that knows nurse1 and nurse2 (`/api/me` by the Basic credential), and can be gone.
struct Server {
    online: Cell<bool>,
}

impl HttpClient for &Server {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse> {
        if !self.online.get() {
            return Err(CoreError::ServerUnreachable("Failed to fetch".into()));
        }
        let ok =
            |v: serde_json::Value| Ok(HttpResponse { status: 200, headers: vec![], body: v.to_string().into_bytes() });
        match Target::parse(&request.url).path.as_str() {
            // nurse2's Basic credential starts with base64("nurse2") = "bnVyc2Uy".
            "/api/me" if request.headers.iter().any(|(_, v)| v.contains("bnVyc2Uy")) => {
                ok(json!({"id": "UsNurse0002", "username": "nurse2", "displayName": "Rania Khalil",
                    "organisationUnits": [{"id": "OuBaniNaim1"}]}))
            }
            "/api/me" => ok(json!({"id": "UsNurse0001", "username": "nurse1", "displayName": "Amal Haddad",
                "organisationUnits": [{"id": "OuBaniNaim1"}]})),
            other => Ok(HttpResponse { status: 404, headers: vec![], body: format!("no {other}").into_bytes() }),
        }
    }
}

type E<'a> = Engine<MemoryStore, RustPbkdf2, OsRandom, &'a Server>;

fn engine<'a>(store: &MemoryStore, server: &'a Server) -> E<'a> {
    Engine::new(EngineConfig::new(API, fast_policy()).unwrap(), store.clone(), RustPbkdf2, OsRandom, server)
}

/// Both nurses have logged in online on this device; nurse1's session is open, online.
async fn two_nurses(e: &E<'_>, server: &Server) {
    server.online.set(true);
    e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
    e.login("nurse2", "Nurse2!clinic", T0).await.unwrap(); // handover from nurse1's session
    e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
}

/// The server is gone; nurse1 logs out and nurse2 logs in offline.
async fn shift_change_offline(e: &E<'_>, server: &Server) {
    server.online.set(false);
    e.logout();
    e.login("nurse2", "Nurse2!clinic", T0 + 1).await.unwrap();
}

/// The offline answer to a GET: status, `x-tracker-offline`, body.
async fn read(e: &E<'_>, url: &str) -> Option<(u16, String, String)> {
    e.answer_read_offline("GET", url, b"").await.unwrap().map(|r| {
        let how = r.header("x-tracker-offline").unwrap_or_default().to_string();
        (r.status, how, String::from_utf8(r.body).unwrap())
    })
}

#[test]
fn a_versioned_profile_read_never_answers_the_previous_user() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server { online: Cell::new(false) };
        let e = engine(&store, &server);
        two_nurses(&e, &server).await;
        let nurse1 = br#"{"id":"UsNurse0001","displayName":"Amal Haddad"}"#;
        for url in [
            format!("{API}/40/me?fields=id,displayName"),
            format!("{API}/me?fields=id,displayName"),
            format!("{API}/41/me.json?fields=id,displayName,organisationUnits"),
        ] {
            assert!(e.cache_response(&url, 200, "application/json", nurse1).await.unwrap(), "{url} is kept");
        }
        shift_change_offline(&e, &server).await;
        for url in [
            format!("{API}/40/me?fields=id,displayName"),
            format!("{API}/me?fields=id,displayName"),
            format!("{API}/41/me.json?fields=id,displayName,organisationUnits"),
            format!("{API}/38/me?fields=id,displayName"),
        ] {
            let answer = read(&e, &url).await;
            assert!(
                answer.as_ref().is_none_or(|a| !a.2.contains("Amal")),
                "{url} answered nurse1's profile: {answer:?}"
            );
            // Nothing of nurse2's was kept from the server: her answer is built from her own
            // profile (crate::metadata_answers).
            let (status, how, body) = answer.unwrap();
            assert_eq!((status, how.as_str()), (200, "local"), "{url}");
            assert!(body.contains("Rania Khalil") && body.contains("UsNurse0002"), "{url}: {body}");
        }
        // nurse2's own profile, kept under a version, answers her under any version.
        server.online.set(true);
        e.login("nurse2", "Nurse2!clinic", T0 + 2).await.unwrap();
        let nurse2 = br#"{"id":"UsNurse0002","displayName":"Rania Khalil"}"#;
        assert!(e
            .cache_response(&format!("{API}/40/me?fields=id,displayName"), 200, "application/json", nurse2)
            .await
            .unwrap());
        e.logout();
        server.online.set(false);
        e.login("nurse2", "Nurse2!clinic", T0 + 3).await.unwrap();
        for url in [format!("{API}/40/me?fields=id,displayName"), format!("{API}/me?fields=id,displayName")] {
            let (status, how, body) = read(&e, &url).await.unwrap();
            assert_eq!((status, how.as_str()), (200, "cache"), "{url}");
            assert!(body.contains("Rania Khalil"), "{url}: {body}");
        }
        // nurse1, back offline, still has hers.
        e.logout();
        e.login("nurse1", "Nurse1!clinic", T0 + 4).await.unwrap();
        let (_, _, body) = read(&e, &format!("{API}/40/me?fields=id,displayName")).await.unwrap();
        assert!(body.contains("Amal Haddad"));
        assert!(!contains(&dump(&store).await, "Amal Haddad"), "sealed");
    });
}

/// Reads whose answer depends on who asks (the Capture app reads them under `/api/4x/`).
const PERSONAL: &[&str] = &[
    "41/messageConversations?fields=id,displayName&pageSize=5",
    "messageConversations?fields=id",
    "dataStore/capture/useNewDashboard",
    "40/dataStore/capture/ruleEngine",
    "40/dataStore/capture",
    "userDataStore/capture/lastSelectedOrgUnit",
    "41/userDataStore/trackerCaptureGridColumns/PrMchProg01",
    "organisationUnits?userOnly=true&fields=id,displayName,path",
    "40/organisationUnits?userOnly=true&fields=id",
    "organisationUnits?fields=id&withinUserHierarchy=true&query=Bani",
    "me/authorization",
    "40/me/authorization/F_TEI_CASCADE_DELETE",
    "userSettings",
    "40/userSettings?key=keyUiLocale",
    "userSettings/keyTrackerDashboardLayout",
    "40/programs/orgUnits?programs=PrMchProg01",
    "system/info",
    "systemSettings?key=keyCalendar",
    "apps",
    "41/trackedEntityInstanceFilters?fields=*&paging=false",
];

#[test]
fn personal_reads_are_kept_per_user_whatever_the_version() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server { online: Cell::new(false) };
        let e = engine(&store, &server);
        two_nurses(&e, &server).await;
        for path in PERSONAL {
            let url = format!("{API}/{path}");
            let kept = e.cache_response(&url, 200, "application/json", br#"{"secret":"only-nurse1"}"#).await.unwrap();
            assert!(kept, "{path} is kept");
        }
        shift_change_offline(&e, &server).await;
        for path in PERSONAL {
            let answer = read(&e, &format!("{API}/{path}")).await;
            assert!(
                answer.as_ref().is_none_or(|a| !a.2.contains("only-nurse1")),
                "{path} answered nurse2 with nurse1's answer: {answer:?}"
            );
            // Not available, or the default answer of a read never made on this device: a key
            // unset (404), her saved working lists none (200, an empty list).
            if let Some((status, how, body)) = answer {
                assert_eq!(how, "default", "{path}");
                assert!(status == 404 || (status == 200 && body.contains("[]")), "{path}: {status} {body}");
            }
        }
        // A key of the dataStore never read by her is unset, with or without the version.
        for path in ["dataStore/capture/useNewDashboard", "40/dataStore/capture/ruleEngine", "40/userSettings/keyX"] {
            assert_eq!(read(&e, &format!("{API}/{path}")).await.map(|a| (a.0, a.1)), Some((404, "default".into())));
        }
        e.logout();
        e.login("nurse1", "Nurse1!clinic", T0 + 2).await.unwrap();
        for path in PERSONAL {
            let (status, how, body) = read(&e, &format!("{API}/{path}")).await.unwrap();
            assert_eq!((status, how.as_str(), body.as_str()), (200, "cache", r#"{"secret":"only-nurse1"}"#), "{path}");
        }
    });
}

#[test]
fn metadata_of_the_allow_list_is_shared_by_the_clinic_whatever_the_version() {
    block_on(async {
        let store = MemoryStore::new();
        let server = Server { online: Cell::new(false) };
        let e = engine(&store, &server);
        two_nurses(&e, &server).await;
        let shared = [
            ("40/programs/PrMchProg01.json?fields=id,displayName", "programs/PrMchProg01.json?fields=id,displayName"),
            ("programs?fields=id&paging=false", "40/programs?fields=id&paging=false"),
            ("41/programs?fields=id&paging=false", "programs?fields=id&paging=false"),
            ("trackedEntityTypes.json?fields=id", "40/trackedEntityTypes.json?fields=id"),
            ("41/optionSets?fields=id,options[id]", "optionSets?fields=id,options[id]"),
            ("40/programRules?fields=id&paging=false", "programRules?fields=id&paging=false"),
            ("programStages.json?fields=id", "programStages.json?fields=id"),
            (
                "40/trackedEntityAttributes/AtNationId1/requiredValues",
                "trackedEntityAttributes/AtNationId1/requiredValues",
            ),
        ];
        for (kept, _) in shared {
            let body = format!(r#"{{"from":"{kept}"}}"#);
            assert!(e
                .cache_response(&format!("{API}/{kept}"), 200, "application/json", body.as_bytes())
                .await
                .unwrap());
        }
        shift_change_offline(&e, &server).await;
        for (kept, asked) in shared {
            let answer = read(&e, &format!("{API}/{asked}")).await;
            let (status, how, body) = answer.unwrap_or_else(|| panic!("{asked} (kept as {kept}) is not served"));
            assert_eq!((status, how.as_str()), (200, "cache"), "{asked}");
            assert!(body.contains(kept), "{asked}: {body}");
        }
    });
}
