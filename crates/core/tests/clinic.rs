//! The clinic copy: download through both API families, resume after an interruption,
//! incremental refresh with deletions, local changes kept, and offline answers.
//!
//! About 1,200 lines: one fake DHIS2 serving both API families and paging that every test here
//! drives; each test reads alone.

#![allow(clippy::unwrap_used)]

mod support;

use std::cell::RefCell;

use futures::executor::block_on;
use serde_json::{json, Value};
use support::*;
use tracker_offline_core::{
    clinic::{bundle_id, parse_bundle, seal_bundle},
    download::{DownloadOptions, DownloadReport},
    engine::{Engine, EngineConfig},
    http::{HttpClient, HttpRequest, HttpResponse},
    kdf::RustPbkdf2,
    params::Target,
    random::OsRandom,
    records::SyncState,
    store::{KvStore, MemoryStore, StoreName, WriteBatch},
    CoreError, Result,
};

const OU: &str = "OuBaniNaim1";
/// A second clinic of the same district, and the district.
const OU2: &str = "OuSaeerCli1";
const DISTRICT: &str = "OuHebronDs1";
const PROGRAM: &str = "PrMchProg01";
const FIRST: &str = "AtFirstNam1";
const NID: &str = "AtNationId1";

/// A DHIS2 stand-in answering the download and login requests from an in-memory dataset.
struct FakeDhis2 {
    version: String,
    teis: RefCell<Vec<Value>>,
    requests: RefCell<Vec<String>>,
    fail_on_page: RefCell<Option<usize>>,
    /// A page answered with this JSON instead (a 200 that is not a page).
    odd_page: RefCell<Option<(usize, Value)>>,
}

fn tei(n: usize, first: &str, nid: &str, updated: &str) -> Value {
    let uid = format!("Te{n:09}");
    json!({
        "trackedEntityInstance": uid, "trackedEntityType": "TetPerson01", "orgUnit": OU,
        "created": format!("2026-01-{:02}T10:00:00.000", (n % 28) + 1), "lastUpdated": updated, "inactive": false, "deleted": false,
        "attributes": [{"attribute": FIRST, "value": first, "displayName": "First name"}, {"attribute": NID, "value": nid}],
        "enrollments": [{"enrollment": format!("En{n:09}"), "program": PROGRAM, "orgUnit": OU, "status": "ACTIVE",
            "enrollmentDate": "2026-01-05T00:00:00.000", "incidentDate": "2026-01-01T00:00:00.000",
            "events": [{"event": format!("Ev{n:09}"), "program": PROGRAM, "programStage": "PsAncVisit1", "orgUnit": OU,
                "status": "COMPLETED", "eventDate": format!("2026-02-{:02}T00:00:00.000", (n % 28) + 1),
                "dataValues": [{"dataElement": "DeWeight001", "value": "61"}]}]}]
    })
}

impl FakeDhis2 {
    fn new(version: &str, count: usize) -> Self {
        let names = ["Fatima", "Huda", "Mariam", "Aisha", "Layla"];
        let teis = (0..count)
            .map(|n| tei(n, names[n % names.len()], &format!("40{n:07}"), "2026-03-01T00:00:00.000"))
            .collect();
        Self {
            version: version.into(),
            teis: RefCell::new(teis),
            requests: RefCell::default(),
            fail_on_page: RefCell::new(None),
            odd_page: RefCell::new(None),
        }
    }
}

fn ok(v: Value) -> Result<HttpResponse> {
    Ok(HttpResponse { status: 200, headers: vec![], body: v.to_string().into_bytes() })
}

impl HttpClient for &FakeDhis2 {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse> {
        self.requests.borrow_mut().push(request.url.clone());
        let t = Target::parse(&request.url);
        match t.path.as_str() {
            // nurse2's Basic credential starts with base64("nurse2") = "bnVyc2Uy".
            "/api/me" if request.headers.iter().any(|(_, v)| v.contains("bnVyc2Uy")) => ok(json!({"id": "UsNurse0002",
                "username": "nurse2", "displayName": "Rania Khalil", "organisationUnits": [{"id": OU}]})),
            // base64("super1") and base64("nurse3"): the district's supervisor and a nurse of a
            // clinic in another district.
            "/api/me" if request.headers.iter().any(|(_, v)| v.contains("c3VwZXIx")) => ok(json!({"id": "UsSuper0001",
                "username": "super1", "displayName": "Salma Odeh", "organisationUnits": [{"id": DISTRICT}]})),
            "/api/me" if request.headers.iter().any(|(_, v)| v.contains("bnVyc2Uz")) => ok(json!({"id": "UsNurse0003",
                "username": "nurse3", "displayName": "Noor Saleh", "organisationUnits": [{"id": "OuNablusCl1"}]})),
            "/api/me" => ok(json!({"id": "UsNurse0001", "username": "nurse1", "displayName": "Amal Haddad",
                "organisationUnits": [{"id": OU, "displayName": "Bani Naim Clinic"}]})),
            "/api/system/info" => ok(json!({"version": self.version})),
            "/api/organisationUnits" => ok(json!({"organisationUnits": [
                {"id": OU, "path": "/OuPalestin1/OuHebronDs1/OuBaniNaim1", "displayName": "Bani Naim Clinic"},
                {"id": OU2, "path": "/OuPalestin1/OuHebronDs1/OuSaeerCli1", "displayName": "Sa'ir Clinic"},
                {"id": DISTRICT, "path": "/OuPalestin1/OuHebronDs1", "displayName": "Hebron"}]})),
            "/api/organisationUnits/OuHebronDs1" => {
                ok(json!({"id": DISTRICT, "path": "/OuPalestin1/OuHebronDs1", "displayName": "Hebron"}))
            }
            "/api/organisationUnits/OuBaniNaim1" => {
                ok(json!({"id": OU, "path": "/OuPalestin1/OuHebronDs1/OuBaniNaim1", "displayName": "Bani Naim Clinic",
                    "ancestors": [{"id": "OuPalestin1", "path": "/OuPalestin1", "displayName": "Palestine"},
                        {"id": DISTRICT, "path": "/OuPalestin1/OuHebronDs1", "displayName": "Hebron"}]}))
            }
            "/api/programs" => ok(
                json!({"programs": [{"id": PROGRAM, "displayName": "MCH", "trackedEntityType": {"id": "TetPerson01"},
                "programTrackedEntityAttributes": [
                    {"displayInList": true, "trackedEntityAttribute": {"id": FIRST, "displayName": "First name", "valueType": "TEXT"}},
                    {"displayInList": true, "trackedEntityAttribute": {"id": NID, "displayName": "National ID", "valueType": "TEXT"}}]}]}),
            ),
            "/api/trackedEntityInstances.json" | "/api/tracker/trackedEntities" => {
                let page: usize = t.get("page").unwrap_or("1").parse().unwrap_or(1);
                if *self.fail_on_page.borrow() == Some(page) {
                    return Err(CoreError::ServerUnreachable("Failed to fetch".into()));
                }
                if let Some((_, body)) = self.odd_page.borrow().as_ref().filter(|(p, _)| *p == page) {
                    return ok(body.clone());
                }
                let size: usize = t.get("pageSize").unwrap_or("50").parse().unwrap_or(50);
                let since = t.get("lastUpdatedStartDate").or(t.get("updatedAfter")).unwrap_or("");
                let all: Vec<Value> = self
                    .teis
                    .borrow()
                    .iter()
                    .filter(|v| v["lastUpdated"].as_str().unwrap_or("") >= since)
                    .cloned()
                    .collect();
                let total = all.len();
                let items: Vec<Value> =
                    all.into_iter().skip(page.saturating_sub(1).saturating_mul(size)).take(size).collect();
                if t.path.starts_with("/api/tracker") {
                    let items: Vec<Value> = items
                        .into_iter()
                        .map(|v| match v.as_object() {
                            Some(o) => Value::Object(tracker_offline_core::family::convert(
                                tracker_offline_core::family::Kind::TrackedEntity,
                                o,
                                tracker_offline_core::family::Naming::Tracker {
                                    minor: self.version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(40),
                                },
                            )),
                            None => v, // a malformed item is served as it is
                        })
                        .collect();
                    ok(json!({"pager": {"page": page, "pageSize": size, "total": total}, "trackedEntities": items}))
                } else {
                    ok(
                        json!({"pager": {"page": page, "pageSize": size, "total": total, "pageCount": total.div_ceil(size)},
                        "trackedEntityInstances": items}),
                    )
                }
            }
            other => Ok(HttpResponse { status: 404, headers: vec![], body: format!("no {other}").into_bytes() }),
        }
    }
}

type E<'a> = Engine<MemoryStore, RustPbkdf2, OsRandom, &'a FakeDhis2>;

fn engine<'a>(store: &MemoryStore, server: &'a FakeDhis2) -> E<'a> {
    Engine::new(
        EngineConfig::new("http://127.0.0.1:9/api", fast_policy()).unwrap(),
        store.clone(),
        RustPbkdf2,
        OsRandom,
        server,
    )
}

/// nurse1 logged in online at T0 through a new engine over `store`.
async fn logged_in<'a>(store: &MemoryStore, server: &'a FakeDhis2) -> E<'a> {
    let e = engine(store, server);
    e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
    e
}

/// nurse1 logged in online and downloaded the clinic copy at T0.
async fn downloaded<'a>(store: &MemoryStore, server: &'a FakeDhis2) -> E<'a> {
    let e = logged_in(store, server).await;
    download(&e).await.unwrap();
    e
}

/// A new engine over `store` (a page reload), nurse1 logged in offline at T0.
async fn reloaded<'a>(store: &MemoryStore, server: &'a FakeDhis2) -> E<'a> {
    let e = engine(store, server);
    e.vault().login_offline("nurse1", "Nurse1!clinic", T0).await.unwrap();
    e
}

/// Downloads the clinic copy at T0, with the default options and no progress shown.
async fn download<S: KvStore>(e: &Engine<S, RustPbkdf2, OsRandom, &FakeDhis2>) -> Result<DownloadReport> {
    e.download(DownloadOptions::default(), T0, &mut |_| {}).await
}

async fn body(e: &E<'_>, url: &str) -> Value {
    let r = e.answer_offline(&format!("http://127.0.0.1:9/api/{url}")).await.unwrap().unwrap();
    assert_eq!(r.header("x-tracker-offline"), Some("local"));
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn download_then_answer_the_apps_reads_offline() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.40.3", 120);
        let e = logged_in(&store, &server).await;
        let mut seen = Vec::new();
        let report = e.download(DownloadOptions::default(), T0, &mut |p| seen.push(p)).await.unwrap();
        assert_eq!(report.tracked_entities, 120);
        assert_eq!(report.pages, 3);
        assert_eq!(report.records, 120);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.last().unwrap().done, 120);
        assert_eq!(seen[0].total, Some(120));
        assert!(server
            .requests
            .borrow()
            .iter()
            .any(|u| u.contains("/trackedEntityInstances.json?ou=OuBaniNaim1&ouMode=DESCENDANTS")));

        // A fresh engine (page reload): everything comes back from storage after login.
        let e = reloaded(&store, &server).await;
        let grid = body(&e, &format!("trackedEntityInstances/query.json?ou={OU}&ouMode=DESCENDANTS&program={PROGRAM}&attribute={FIRST}:LIKE:fat&pageSize=10&page=1&totalPages=true")).await;
        assert_eq!(grid["metaData"]["pager"]["total"], 24);
        assert_eq!(grid["rows"].as_array().unwrap().len(), 10);
        let headers: Vec<&str> =
            grid["headers"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
        assert_eq!(&headers[..5], &["instance", "created", "lastupdated", "ou", "ouname"]);
        assert_eq!(grid["rows"][0][4], "Bani Naim Clinic");
        let count = body(
            &e,
            &format!("trackedEntityInstances/count.json?ou={OU}&ouMode=DESCENDANTS&attribute={FIRST}:LIKE:FAT"),
        )
        .await;
        assert_eq!(count, 24);
        // Exact national ID.
        let by_id = body(
            &e,
            &format!("trackedEntityInstances/query.json?ou={OU}&program={PROGRAM}&attribute={NID}:EQ:400000007"),
        )
        .await;
        assert_eq!(by_id["rows"].as_array().unwrap().len(), 1);
        assert_eq!(by_id["rows"][0][0], "Te000000007");
        // Ordering.
        let ordered = body(&e, &format!("trackedEntityInstances/query.json?ou={OU}&order={NID}:desc&pageSize=2")).await;
        assert_eq!(ordered["rows"][0][0], "Te000000119");
        // Dashboard.
        let dash = body(&e, &format!("trackedEntityInstances/Te000000007.json?program={PROGRAM}&fields=*")).await;
        assert_eq!(dash["attributes"][0]["value"], "Mariam");
        assert_eq!(dash["enrollments"][0]["events"][0]["event"], "Ev000000007");
        let events = body(
            &e,
            "events.json?ouMode=ACCESSIBLE&trackedEntityInstance=Te000000007&program=PrMchProg01&skipPaging=true&fields=*",
        )
        .await;
        assert_eq!(events, json!({"events": [dash["enrollments"][0]["events"][0].clone()]}));
        let enrollments = body(&e, "enrollments?trackedEntityInstance=Te000000007").await;
        assert_eq!(enrollments["enrollments"][0]["enrollment"], "En000000007");
        // The new family, in the 2.40 envelope.
        let tes =
            body(&e, &format!("tracker/trackedEntities?orgUnit={OU}&program={PROGRAM}&pageSize=5&totalPages=true"))
                .await;
        assert_eq!(tes["instances"].as_array().unwrap().len(), 5);
        assert_eq!(tes["total"], 120);
        // The Capture app's working list orders by the new API's names (`order=createdAt:desc`);
        // offline that order was ignored (the default order came back).
        let created = |v: &serde_json::Value| -> Vec<String> {
            v["instances"].as_array().unwrap().iter().map(|t| t["createdAt"].as_str().unwrap().to_string()).collect()
        };
        let newest = body(
            &e,
            &format!("tracker/trackedEntities?orgUnit={OU}&program={PROGRAM}&order=createdAt:desc&pageSize=120&fields=trackedEntity,createdAt"),
        )
        .await;
        let default = body(
            &e,
            &format!(
                "tracker/trackedEntities?orgUnit={OU}&program={PROGRAM}&pageSize=120&fields=trackedEntity,createdAt"
            ),
        )
        .await;
        let (newest, default) = (created(&newest), created(&default));
        assert_eq!(newest.len(), 120);
        assert!(newest.windows(2).all(|w| w[0] >= w[1]), "not newest first: {newest:?}");
        assert_ne!(newest, default, "the order was ignored");
        assert!(tes["instances"][0].get("trackedEntity").is_some());
        let ev = body(&e, "tracker/events/Ev000000007").await;
        assert_eq!(ev["occurredAt"], "2026-02-08T00:00:00.000");
        // Unknown UID: DHIS2's 404 shape.
        let missing =
            e.answer_offline("http://127.0.0.1:9/api/trackedEntityInstances/Te999999999.json").await.unwrap().unwrap();
        assert_eq!(missing.status, 404);
        // Bad parameters: a clear error.
        let err = e
            .answer_offline("http://127.0.0.1:9/api/trackedEntityInstances/query.json?pageSize=abc")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "BAD_INPUT");
        // Not under the API base: not ours.
        assert!(e.answer_offline("http://127.0.0.1:9/index.html").await.unwrap().is_none());
    });
}

#[test]
fn org_unit_reads_offline_are_answered_from_the_clinic_copy_in_the_servers_shape() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.41.1", 3);
        downloaded(&store, &server).await;
        assert!(server
            .requests
            .borrow()
            .iter()
            .any(|u| u.contains("OuBaniNaim1?fields=id,path,displayName,ancestors[")));
        let e = reloaded(&store, &server).await;

        // The Capture app's forms: one org unit with its ancestors, root first.
        let one = body(&e, "41/organisationUnits/OuBaniNaim1?fields=displayName,ancestors[id,displayName]").await;
        assert_eq!(
            one,
            json!({"displayName": "Bani Naim Clinic", "ancestors": [
                {"id": "OuPalestin1", "displayName": "Palestine"}, {"id": DISTRICT, "displayName": "Hebron"}]})
        );
        // Its name cache: a batch by id, ordered by name, paged as DHIS2 pages metadata.
        let batch = body(&e, &format!("41/organisationUnits?fields=id,displayName,ancestors[id,displayName]&filter=id:in:[{OU},{OU2}]&pageSize=50")).await;
        assert_eq!(batch["pager"], json!({"page": 1, "pageCount": 1, "total": 2, "pageSize": 50}));
        let names: Vec<&str> =
            batch["organisationUnits"].as_array().unwrap().iter().map(|o| o["displayName"].as_str().unwrap()).collect();
        assert_eq!(names, ["Bani Naim Clinic", "Sa'ir Clinic"]);
        assert_eq!(batch["organisationUnits"][1]["ancestors"][1]["id"], DISTRICT);
        // Its org unit tree: the roots, then a unit's children.
        let roots =
            body(&e, "41/organisationUnits?level=1&paging=false&fields=id,path,displayName,children::isNotEmpty").await;
        assert_eq!(
            roots,
            json!({"organisationUnits": [{"id": "OuPalestin1", "path": "/OuPalestin1", "displayName": "Palestine", "children": true}]})
        );
        let children = body(&e, &format!("41/organisationUnits?paging=false&filter=id:in:[{DISTRICT}]&fields=children[displayName,path,children::size]")).await;
        assert_eq!(
            children["organisationUnits"][0]["children"],
            json!([{"displayName": "Bani Naim Clinic", "path": "/OuPalestin1/OuHebronDs1/OuBaniNaim1", "children": 0},
                {"displayName": "Sa'ir Clinic", "path": "/OuPalestin1/OuHebronDs1/OuSaeerCli1", "children": 0}])
        );
        // Its picker's search within her search hierarchy (her capture units when she has none).
        let found = body(
            &e,
            "41/organisationUnits?fields=id,path&paging=true&query=bani&withinUserSearchHierarchy=true&pageSize=15",
        )
        .await;
        assert_eq!(found["organisationUnits"], json!([{"id": OU, "path": "/OuPalestin1/OuHebronDs1/OuBaniNaim1"}]));
        let none =
            body(&e, "41/organisationUnits?fields=id&paging=false&query=sa'ir&withinUserSearchHierarchy=true").await;
        assert_eq!(none["organisationUnits"], json!([]), "outside her hierarchy");
        let by_level = body(&e, "organisationUnits.json?filter=level:ge:3&filter=parent.id:eq:OuHebronDs1&paging=false&order=displayName:desc").await;
        assert_eq!(
            by_level["organisationUnits"],
            json!([{"id": OU2, "displayName": "Sa'ir Clinic"}, {"id": OU, "displayName": "Bani Naim Clinic"}])
        );

        // `me` with the fields her profile holds (the Capture app's org unit selector).
        let me = body(&e, "41/me?fields=id,username,organisationUnits[id,path],authorities").await;
        assert_eq!(
            me,
            json!({"id": "UsNurse0001", "username": "nurse1", "authorities": [],
                "organisationUnits": [{"id": OU, "path": "/OuPalestin1/OuHebronDs1/OuBaniNaim1"}]})
        );

        // And with what the server's `me` answers told online, whatever their selection: the
        // Capture app's registration form asks `me?fields=settings[keyUiLocale]`.
        for (url, answer) in [
            (
                "41/me?fields=id,firstName,surname,userRoles[id],organisationUnits[id,path],settings",
                json!({"id": "UsNurse0001", "firstName": "Amal", "userRoles": [{"id": "UrNurse0001"}],
                    "organisationUnits": [{"id": OU, "path": "/OuPalestin1/OuHebronDs1/OuBaniNaim1"}],
                    "settings": {"keyUiLocale": "ar", "keyDbLocale": "en"}}),
            ),
            ("me?fields=organisationUnits[id,code]", json!({"organisationUnits": [{"id": OU, "code": "BN01"}]})),
        ] {
            let url = format!("http://127.0.0.1:9/api/{url}");
            assert!(e.cache_response(&url, 200, "application/json", answer.to_string().as_bytes()).await.unwrap());
        }
        assert_eq!(body(&e, "41/me?fields=settings[keyUiLocale]").await, json!({"settings": {"keyUiLocale": "ar"}}));
        assert_eq!(
            body(&e, "41/me?fields=firstName,organisationUnits[id,code,displayName]").await,
            json!({"firstName": "Amal", "organisationUnits": [{"id": OU, "code": "BN01", "displayName": "Bani Naim Clinic"}]})
        );
        // The next nurse on the device is told nothing of hers.
        e.login("nurse2", "Nurse2!clinic", T0).await.unwrap();
        let url = "http://127.0.0.1:9/api/41/me?fields=settings[keyUiLocale]";
        assert!(e.answer_offline(url).await.unwrap().is_none());
        assert_eq!(body(&e, "41/me?fields=username").await, json!({"username": "nurse2"}));

        // What it cannot answer truthfully stays unanswered: an org unit it does not hold, a
        // filter or a switch it does not know, a field of `me` nobody told.
        for unknown in [
            "41/me?fields=email",
            "41/me?fields=id,userGroups[id]",
            "41/me?fields=*",
            "41/me",
            "41/me/dashboard",
            "41/organisationUnits/OuJeninCl01?fields=displayName",
            "41/organisationUnits?filter=code:eq:X",
            "41/organisationUnits?includeDescendants=true",
            "41/organisationUnits/OuBaniNaim1?includeChildren=true",
            "41/organisationUnits/OuBaniNaim1/children",
        ] {
            assert!(
                e.answer_offline(&format!("http://127.0.0.1:9/api/{unknown}")).await.unwrap().is_none(),
                "{unknown}"
            );
        }
        // An answer the server gave online to the same URL comes first.
        let url = "http://127.0.0.1:9/api/41/organisationUnits/OuBaniNaim1?fields=displayName";
        e.cache_response(url, 200, "application/json", br#"{"displayName":"Bani Naim (online)"}"#).await.unwrap();
        let r = e.answer_offline(url).await.unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&r.body).unwrap(), json!({"displayName": "Bani Naim (online)"}));
    })
}

#[test]
fn a_woman_registered_offline_reads_back_through_the_tracker_api_with_her_program_owner() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.41.1", 3);
        let e = downloaded(&store, &server).await;
        // The Capture app's registration: a tracked entity with its enrollment (no enrollment
        // UID: the server names it) and a first visit, in one request.
        let body = json!({"trackedEntities": [{"trackedEntity": "TeNewWoman1", "orgUnit": OU, "trackedEntityType": "TetPerson01",
            "attributes": [{"attribute": FIRST, "value": "Fatima"}, {"attribute": NID, "value": "912345678"}],
            "enrollments": [{"program": PROGRAM, "status": "ACTIVE", "orgUnit": OU, "occurredAt": "2026-10-01",
                "enrolledAt": "2026-12-05", "attributes": [],
                "events": [{"event": "EvNewVisit1", "programStage": "PsAncVisit1", "program": PROGRAM, "orgUnit": OU,
                    "status": "ACTIVE", "occurredAt": "2026-12-05", "dataValues": []}]}]}]})
        .to_string();
        let prepared = e
            .prepare_write("POST", "http://127.0.0.1:9/api/41/tracker?async=false", "application/json", body.as_bytes())
            .unwrap();
        e.capture_write(&prepared, T0).await.unwrap();
        // What its enrollment page asks next.
        let tei = body_of(
            &e,
            "41/tracker/trackedEntities/TeNewWoman1?fields=attributes,trackedEntityType,programOwners[program,orgUnit]",
        )
        .await;
        assert_eq!(tei["programOwners"], json!([{"program": PROGRAM, "orgUnit": OU}]), "{tei}");
        assert_eq!(tei["trackedEntityType"], "TetPerson01");
        let full = body_of(&e, &format!("41/tracker/trackedEntities/TeNewWoman1?program={PROGRAM}&fields=enrollments[*,!attributes],attributes,inactive")).await;
        assert_eq!(full["inactive"], false, "{full}");
        assert_eq!(full["enrollments"][0]["events"][0]["event"], "EvNewVisit1");
        assert_eq!(full["enrollments"][0]["notes"], json!([]));
        // Her visit's page asks its relationships: a record made here has none.
        let fields = "fields=from,to,relationshipType,relationship,createdAt";
        for asked in ["event=EvNewVisit1", "trackedEntity=TeNewWoman1"] {
            let none = body_of(&e, &format!("41/tracker/relationships?{asked}&{fields}")).await;
            assert_eq!(
                none,
                json!({"pager": {"page": 1, "pageSize": 50}, "page": 1, "pageSize": 50, "relationships": []}),
                "{asked}"
            );
        }
        // A record not in the local copy, or no record named: not answered.
        for unknown in ["41/tracker/relationships?event=EvUnknown01", "41/tracker/relationships?fields=from"] {
            assert!(
                e.answer_offline(&format!("http://127.0.0.1:9/api/{unknown}")).await.unwrap().is_none(),
                "{unknown}"
            );
        }
    })
}

#[test]
fn program_metadata_read_online_in_one_shape_answers_offline_in_another() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.41.1", 0);
        let e = logged_in(&store, &server).await;
        // The Capture app's boot: the program's whole metadata, one list; its type on its own.
        let programs = json!({"pager": {"page": 1}, "programs": [{"id": PROGRAM, "version": 3, "displayName": "MCH",
            "enrollmentDateLabel": "Date of registration", "onlyEnrollOnce": true,
            "trackedEntityType": {"id": "TetPerson01"},
            "programStages": [{"id": "PsAncVisit1", "name": "ANC visit", "repeatable": true}]}]});
        let url = format!("http://127.0.0.1:9/api/41/programs?fields=id,version,displayName,enrollmentDateLabel,onlyEnrollOnce,trackedEntityType[id],programStages[id,name,repeatable]&filter=id:in:[{PROGRAM}]&pageSize=1");
        assert!(e.cache_response(&url, 200, "application/json", programs.to_string().as_bytes()).await.unwrap());
        let other = json!({"programs": [{"id": PROGRAM, "programStages": [{"id": "PsAncVisit1", "autoGenerateEvent": false}]}]});
        let url = "http://127.0.0.1:9/api/41/programs?fields=id,programStages[id,autoGenerateEvent]&paging=false";
        assert!(e.cache_response(url, 200, "application/json", other.to_string().as_bytes()).await.unwrap());
        let tet = json!({"id": "TetPerson01", "displayName": "Person", "access": {"read": true}});
        let url = "http://127.0.0.1:9/api/41/trackedEntityTypes/TetPerson01?fields=id,displayName,access";
        assert!(e.cache_response(url, 200, "application/json", tet.to_string().as_bytes()).await.unwrap());

        // Its enrollment page, never opened online: the same objects, other selections.
        let program = body(&e, &format!("41/programs/{PROGRAM}?fields=displayName,onlyEnrollOnce,programStages[name,autoGenerateEvent],description")).await;
        assert_eq!(
            program,
            json!({"displayName": "MCH", "onlyEnrollOnce": true,
                "programStages": [{"name": "ANC visit", "autoGenerateEvent": false}]}),
            "merged by id, a field never seen left out as DHIS2 leaves out nulls"
        );
        let tet = body(&e, "41/trackedEntityTypes/TetPerson01?fields=displayName,access").await;
        assert_eq!(tet, json!({"displayName": "Person", "access": {"read": true}}));
        let list = body(&e, &format!("41/programs?filter=id:in:[{PROGRAM}]&fields=id,version&paging=false")).await;
        assert_eq!(list, json!({"programs": [{"id": PROGRAM, "version": 3}]}));
        // A nurse new to the device sees the same (program metadata is the clinic's).
        e.login("nurse2", "Nurse2!clinic", T0).await.unwrap();
        assert_eq!(body(&e, &format!("41/programs/{PROGRAM}?fields=version")).await, json!({"version": 3}));
        // A filter on an empty list matches nothing, whatever the resource.
        let none = body(&e, "41/optionGroups?fields=id,optionSet,options&filter=optionSet.id:in:[]").await;
        assert_eq!(none, json!({"optionGroups": [], "pager": {"page": 1, "pageCount": 1, "total": 0, "pageSize": 50}}));
        // Not known: not answered.
        for unknown in [
            "41/optionGroups?filter=optionSet.id:in:[OsAny00001]".to_string(),
            "41/programs/PrOtherProg?fields=id".to_string(),
            format!("41/programs?filter=id:in:[{PROGRAM},PrOtherProg]"),
            "41/programs?filter=displayName:eq:MCH".to_string(),
            "41/programs".to_string(),
        ] {
            assert!(
                e.answer_offline(&format!("http://127.0.0.1:9/api/{unknown}")).await.unwrap().is_none(),
                "{unknown}"
            );
        }
        assert!(!contains(&dump(&store).await, "Date of registration"), "sealed");
    })
}

/// Issue 14: the Capture app's profile widget reads the program with its attributes' names
/// (`programTrackedEntityAttributes[trackedEntityAttribute[id,displayFormName,…]]`), a read
/// never made online when the dashboard was not opened online; the boot read the program with
/// only its attributes' ids, and the attributes themselves with their names. Offline, a
/// reference (an attribute, a data element, an option set, a stage, the type) is answered with
/// what is known of that object: the widget shows each value with its label.
#[test]
fn references_in_metadata_read_offline_carry_what_their_own_reads_said() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.41.1", 0);
        let e = logged_in(&store, &server).await;
        let online = [
            (
                format!("programs?fields=id,programTrackedEntityAttributes[trackedEntityAttribute[id],mandatory],programStages[id,programStageDataElements[dataElement[id]]]&filter=id:in:[{PROGRAM}]"),
                json!({"programs": [{"id": PROGRAM, "programTrackedEntityAttributes": [
                    {"trackedEntityAttribute": {"id": "AtFirstNam1"}, "mandatory": true}],
                    "programStages": [{"id": "PsAncVisit1", "programStageDataElements": [{"dataElement": {"id": "DeWeightKg1"}}]}]}]}),
            ),
            (
                "trackedEntityAttributes?fields=id,displayName,displayFormName,valueType&filter=id:in:[AtFirstNam1]".to_string(),
                json!({"trackedEntityAttributes": [{"id": "AtFirstNam1", "displayName": "First name", "displayFormName": "First name (as in ID)", "valueType": "TEXT"}]}),
            ),
            (
                "dataElements?fields=id,displayFormName,valueType&filter=id:in:[DeWeightKg1]".to_string(),
                json!({"dataElements": [{"id": "DeWeightKg1", "displayFormName": "Weight (kg)", "valueType": "NUMBER"}]}),
            ),
        ];
        for (path, answer) in online {
            let url = format!("http://127.0.0.1:9/api/41/{path}");
            assert!(
                e.cache_response(&url, 200, "application/json", answer.to_string().as_bytes()).await.unwrap(),
                "{path}"
            );
        }
        let program = body(&e, &format!("41/programs/{PROGRAM}?fields=programTrackedEntityAttributes[trackedEntityAttribute[id,displayFormName,valueType,unique],mandatory],programStages[programStageDataElements[dataElement[id,displayFormName]]]")).await;
        assert_eq!(
            program,
            json!({"programTrackedEntityAttributes": [{"trackedEntityAttribute": {"id": "AtFirstNam1",
                "displayFormName": "First name (as in ID)", "valueType": "TEXT"}, "mandatory": true}],
                "programStages": [{"programStageDataElements": [{"dataElement": {"id": "DeWeightKg1", "displayFormName": "Weight (kg)"}}]}]})
        );
    })
}

/// The body of a local answer (from the copy or the cache).
async fn body_of(e: &E<'_>, url: &str) -> Value {
    let r = e.answer_offline(&format!("http://127.0.0.1:9/api/{url}")).await.unwrap().unwrap();
    assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn interrupted_download_resumes_and_later_runs_are_incremental_with_deletions() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.40.3", 120);
        let e = logged_in(&store, &server).await;
        *server.fail_on_page.borrow_mut() = Some(2);
        let err = download(&e).await.unwrap_err();
        assert_eq!(err.code(), "SERVER_UNREACHABLE");
        assert_eq!(e.record_count(), 50, "page 1 was kept");
        *server.fail_on_page.borrow_mut() = None;
        server.requests.borrow_mut().clear();
        let report = download(&e).await.unwrap();
        assert!(report.resumed);
        assert!(server.requests.borrow().iter().all(|u| !u.contains("&page=1&")), "page 1 is not fetched again");
        assert_eq!(e.record_count(), 120);

        // A local change to one TEI, then the server deletes it and changes another.
        let mut b =
            parse_bundle(&e.vault().get_record(StoreName::Records, &bundle_id("Te000000003")).await.unwrap().unwrap())
                .unwrap();
        b.sync.insert("Te000000003".into(), SyncState::ToUpdate);
        let (batch, _) = seal_bundle(e.vault(), WriteBatch::new(), &b).unwrap();
        e.vault().commit(batch).await.unwrap();
        {
            let mut teis = server.teis.borrow_mut();
            for n in [3usize, 4] {
                teis[n]["deleted"] = json!(true);
                teis[n]["lastUpdated"] = json!("2026-06-01T00:00:00.000");
            }
            teis[5]["attributes"][0]["value"] = json!("Zainab");
            teis[5]["lastUpdated"] = json!("2026-06-01T00:00:00.000");
        }
        server.requests.borrow_mut().clear();
        let later = T0 + 200 * DAY;
        let report = e.download(DownloadOptions::default(), later, &mut |_| {}).await.unwrap();
        assert!(report.incremental);
        assert!(server.requests.borrow().iter().any(|u| u.contains("lastUpdatedStartDate=")));
        assert_eq!(report.tracked_entities, 1);
        assert_eq!(report.deleted, 1);
        assert_eq!(report.kept_local, 1);
        assert_eq!(e.record_count(), 119);
        let grid = body(&e, &format!("trackedEntityInstances/query.json?ou={OU}&attribute={FIRST}:EQ:zainab")).await;
        assert_eq!(grid["rows"][0][0], "Te000000005");
    });
}

#[test]
fn a_2_42_server_is_read_through_the_tracker_api() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.42.0", 30);
        let e = logged_in(&store, &server).await;
        let report = download(&e).await.unwrap();
        assert_eq!(report.tracked_entities, 30);
        assert!(server
            .requests
            .borrow()
            .iter()
            .any(|u| u.contains("/tracker/trackedEntities?orgUnits=OuBaniNaim1&orgUnitMode=DESCENDANTS")));
        let dash = body(&e, "trackedEntityInstances/Te000000001.json").await;
        assert_eq!(dash["enrollments"][0]["enrollmentDate"], "2026-01-05T00:00:00.000");
        let tes = body(&e, &format!("tracker/trackedEntities?orgUnits={OU}&pageSize=5&totalPages=true")).await;
        assert_eq!(tes["pager"]["total"], 30);
        assert!(tes.get("page").is_none());
    });
}

/// A page with malformed records (an invalid event UID, `enrollments` that is not a list, an
/// item that is not an object) stores its good records and reports the bad ones, in both API
/// families; the bad ones are not stored and the download completes.
#[test]
fn a_page_with_bad_records_stores_the_good_ones_and_reports_the_bad_ones() {
    for version in ["2.40.3", "2.42.0"] {
        block_on(async {
            let store = MemoryStore::new();
            let server = FakeDhis2::new(version, 5);
            server.teis.borrow_mut()[1]["enrollments"][0]["events"][0]["event"] = json!("not-a-uid");
            server.teis.borrow_mut()[3]["enrollments"] = json!("oops");
            server.teis.borrow_mut().push(json!("not a record"));
            let e = logged_in(&store, &server).await;
            let report = download(&e).await.unwrap();
            assert_eq!(report.tracked_entities, 3, "{version}");
            assert_eq!(report.skipped, 3, "{version}");
            assert_eq!(report.records, 3, "{version}");
            let skipped: Vec<Option<&str>> = report.skipped_records.iter().map(|s| s.uid.as_deref()).collect();
            assert_eq!(skipped, vec![Some("Te000000001"), Some("Te000000003"), None], "{version}");
            assert!(report.skipped_records[0].reason.contains("not-a-uid"), "{:?}", report.skipped_records);
            assert!(report.skipped_records[1].reason.contains("enrollments"), "{:?}", report.skipped_records);
            let dash = body(&e, "trackedEntityInstances/Te000000002.json").await;
            assert_eq!(dash["enrollments"][0]["events"][0]["event"], "Ev000000002");
            let missing =
                e.answer_offline("http://127.0.0.1:9/api/trackedEntityInstances/Te000000001.json").await.unwrap();
            assert_eq!(missing.unwrap().status, 404, "a bad record is not stored");
            assert!(e.last_download_at().await.is_some(), "the download completed");
        });
    }
}

/// Found by the fuzz harness (tests/fuzz.rs, target `download`): a 2.42 server's 200 without
/// the `trackedEntities` list (another JSON) was taken for an empty last page: the run ended
/// as complete and the next incremental run started after records never received.
#[test]
fn a_tracker_page_without_its_list_is_an_error_not_an_empty_page() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.42.0", 120);
        *server.odd_page.borrow_mut() = Some((2, json!({"pager": {"page": 2, "pageSize": 50}})));
        let e = logged_in(&store, &server).await;
        let err = download(&e).await.unwrap_err();
        assert_eq!(err.code(), "BAD_RESPONSE");
        assert_eq!(e.record_count(), 50, "page 1 was kept");
        assert_eq!(e.last_download_at().await, None, "the run is not complete");
        *server.odd_page.borrow_mut() = Some((2, json!({"trackedEntities": "x"})));
        assert_eq!(download(&e).await.unwrap_err().code(), "BAD_RESPONSE");
        *server.odd_page.borrow_mut() = None;
        let report = download(&e).await.unwrap();
        assert!(report.resumed);
        assert_eq!(e.record_count(), 120);
    });
}

/// Found by the fuzz harness (tests/fuzz.rs, target `stored`): a damaged download cursor (still
/// authentic) made the next download panic: a last-run time at the end of i64 overflowed the
/// incremental margin, a page number at the end of usize the paging. Fuller damage (no total
/// per step, a step beyond the steps) would index out of bounds or never download again. A
/// cursor that does not fit its steps is ignored (a full run), and its numbers never overflow.
#[test]
fn a_damaged_download_cursor_never_stops_the_download() {
    let steps = json!([[OU, PROGRAM]]);
    let cursors = [
        json!({"steps": steps, "step": 0, "page": 1, "since": null, "runStartedMs": 0, "done": 0, "totals": [null],
            "complete": true, "lastCompleteMs": i64::MIN, "lastCompleteServerMs": i64::MIN}),
        json!({"steps": steps, "step": 0, "page": 1, "since": null, "runStartedMs": 0, "done": 0, "totals": [],
            "complete": false, "lastCompleteMs": null}),
        json!({"steps": steps, "step": 5, "page": 1, "since": null, "runStartedMs": 0, "done": 0, "totals": [null],
            "complete": false, "lastCompleteMs": null}),
        json!({"steps": steps, "step": 0, "page": usize::MAX, "since": null, "runStartedMs": 0, "done": 0,
            "totals": [null], "complete": false, "lastCompleteMs": null}),
        json!({"steps": steps, "step": 0, "page": 0, "since": null, "runStartedMs": 0, "done": 0, "totals": [null],
            "complete": false, "lastCompleteMs": null}),
    ];
    for cursor in cursors {
        block_on(async {
            let store = MemoryStore::new();
            let server = FakeDhis2::new("2.40.3", 3);
            let e = logged_in(&store, &server).await;
            e.vault()
                .put_record(StoreName::Cache, tracker_offline_core::clinic::CURSOR_ID, cursor.to_string().as_bytes())
                .await
                .unwrap();
            let report = download(&e).await.unwrap();
            assert_eq!(report.records, 3, "{cursor}");
            assert!(e.last_download_at().await.is_some(), "{cursor}");
        });
    }
    // Numbers at the end of their range that still fit (a page this run could have reached):
    // the run continues from there without overflowing.
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.40.3", 3);
        let e = logged_in(&store, &server).await;
        let cursor = json!({"steps": steps, "step": 0, "page": usize::MAX, "since": null, "runStartedMs": 0,
            "done": u64::MAX, "totals": [u64::MAX], "complete": false, "lastCompleteMs": null});
        e.vault()
            .put_record(StoreName::Cache, tracker_offline_core::clinic::CURSOR_ID, cursor.to_string().as_bytes())
            .await
            .unwrap();
        let report = download(&e).await.unwrap();
        assert!(report.resumed);
        assert!(e.last_download_at().await.is_some());
    });
}

#[test]
fn locked_vault_answers_nothing_and_damaged_rows_are_skipped() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.40.3", 10);
        let e = downloaded(&store, &server).await;
        e.logout();
        let err = e.answer_offline("http://127.0.0.1:9/api/trackedEntityInstances/query.json").await.unwrap_err();
        assert_eq!(err, CoreError::VaultLocked);
        let rows = store.list(StoreName::Index).await.unwrap();
        let mut damaged = rows[0].1.clone();
        damaged[20] ^= 1;
        store.raw_put(StoreName::Index, &rows[0].0, damaged).unwrap();
        e.vault().login_offline("nurse1", "Nurse1!clinic", T0).await.unwrap();
        let count = body(&e, &format!("trackedEntityInstances/count.json?ou={OU}")).await;
        assert_eq!(count, 9);
    });
}

#[test]
fn cached_api_responses_are_sealed_and_served() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.40.3", 0);
        let e = logged_in(&store, &server).await;
        let url = "http://127.0.0.1:9/api/programs.json?fields=id,displayName&paging=false";
        assert!(e
            .cache_response(url, 200, "application/json", br#"{"programs":[{"displayName":"Maternal care"}]}"#)
            .await
            .unwrap());
        assert!(!e.cache_response("http://127.0.0.1:9/api/events.json", 200, "application/json", b"{}").await.unwrap());
        assert!(!e.cache_response("http://127.0.0.1:9/api/me", 500, "application/json", b"{}").await.unwrap());
        let r = e.answer_offline(url).await.unwrap().unwrap();
        assert_eq!(r.body, br#"{"programs":[{"displayName":"Maternal care"}]}"#);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(e.answer_offline("http://127.0.0.1:9/api/programs.json?other=1").await.unwrap().is_none());
        assert!(!contains(&dump(&store).await, "Maternal care"));
    });
}

#[test]
fn per_user_reads_are_kept_per_user_and_server_pages_are_reads() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.40.3", 0);
        let e = engine(&store, &server);
        let me = "http://127.0.0.1:9/api/me.json?fields=id,displayName";
        let tree = "http://127.0.0.1:9/dhis-web-commons-ajax-json/getOrganisationUnitTree.action";
        let layout = "http://127.0.0.1:9/api/userSettings/keyTrackerDashboardLayout";
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();

        // What is a read: API GETs, GETs and AJAX POSTs of dhis-web-commons pages; not the app.
        assert!(e.is_server_read("GET", me));
        assert!(!e.is_server_read("POST", "http://127.0.0.1:9/api/events"));
        assert!(e.is_server_read("POST", tree));
        assert!(e.is_server_read("GET", "http://127.0.0.1:9/dhis-web-commons/ouwt/setorgunit.action?id=x"));
        assert!(!e.is_server_read("POST", "http://127.0.0.1:9/dhis-web-commons-security/logout.action"));
        assert!(e.is_server_read("POST", "http://127.0.0.1:9/api/i18n"), "translations are read with a POST");
        assert!(!e.is_server_read("PUT", "http://127.0.0.1:9/dhis-web-commons/ouwt/setorgunit.action"));
        assert!(!e.is_server_read("GET", "http://127.0.0.1:9/tracker-capture/index.html"));
        assert!(!e.is_server_read("GET", "http://127.0.0.1:9/dhis-web-commonsX/a"));

        assert!(e.cache_response(me, 200, "application/json", br#"{"displayName":"Amal Haddad"}"#).await.unwrap());
        assert!(e
            .cache_read("POST", tree, b"versionOnly=false", 200, "application/json", br#"{"username":"nurse1"}"#)
            .await
            .unwrap());
        assert!(e
            .cache_read("POST", tree, b"versionOnly=true", 200, "application/json", br#"{"version":"v1"}"#)
            .await
            .unwrap());
        // A key never set answers 404; the app expects that answer offline too. Other 404s are not kept.
        assert!(e.cache_response(layout, 404, "application/json", br#"{"httpStatusCode":404}"#).await.unwrap());
        assert!(!e.cache_response("http://127.0.0.1:9/api/programs/x", 404, "application/json", b"{}").await.unwrap());

        let answer = |m: &'static str, u: &'static str, b: &'static [u8]| {
            let e = &e;
            async move {
                e.answer_read_offline(m, u, b).await.unwrap().map(|r| (r.status, String::from_utf8(r.body).unwrap()))
            }
        };
        assert_eq!(answer("GET", me, b"").await, Some((200, r#"{"displayName":"Amal Haddad"}"#.into())));
        // jQuery's cache buster does not make a different read.
        let busted = "http://127.0.0.1:9/api/me.json?fields=id,displayName&_=1795692005192";
        assert_eq!(e.answer_read_offline("GET", busted, b"").await.unwrap().map(|r| r.status), Some(200));
        assert_eq!(answer("POST", tree, b"versionOnly=false").await, Some((200, r#"{"username":"nurse1"}"#.into())));
        assert_eq!(answer("POST", tree, b"versionOnly=true").await, Some((200, r#"{"version":"v1"}"#.into())));
        assert_eq!(answer("GET", layout, b"").await.map(|a| a.0), Some(404));
        // Never read online: a key is taken as unset, potential duplicates as none known.
        let unseen = "http://127.0.0.1:9/api/dataStore/tracker-capture/keyTrackerDashboardDefaultLayout";
        assert_eq!(answer("GET", unseen, b"").await.map(|a| a.0), Some(404));
        // And a namespace: its key list is a 404, its entries query an empty list (the Capture
        // app's enrollment page reads `dataStore/capture?fields=.`, as the server answers it).
        let namespace = "http://127.0.0.1:9/api/41/dataStore/capture";
        let (status, body) = answer("GET", namespace, b"").await.unwrap();
        assert_eq!((status, body.contains("Namespace not found: 'capture'")), (404, true), "{body}");
        let entries = "http://127.0.0.1:9/api/41/dataStore/capture?fields=.";
        let (status, body) = answer("GET", entries, b"").await.unwrap();
        assert_eq!((status, body.as_str()), (200, r#"{"entries":[],"pager":{"page":1,"pageSize":50}}"#));
        let duplicates = "http://127.0.0.1:9/api/potentialDuplicates?teis=Te000000001";
        assert_eq!(answer("GET", duplicates, b"").await, Some((200, r#"{"potentialDuplicates":[]}"#.into())));
        assert_eq!(answer("GET", "http://127.0.0.1:9/api/programs/unseen.json", b"").await, None);
        // Her saved working lists (per user, read when she opens a working list online): never
        // read on this device, none known; the app then shows its default list instead of "an
        // error occurred loading the working lists".
        for (resource, url) in [
            ("trackedEntityInstanceFilters", "http://127.0.0.1:9/api/41/trackedEntityInstanceFilters?filter=program.id:eq:PrMchProg01&fields=id,displayName"),
            ("programStageWorkingLists", "http://127.0.0.1:9/api/41/programStageWorkingLists?filter=program.id:eq:PrMchProg01&fields=id"),
            ("eventFilters", "http://127.0.0.1:9/api/41/eventFilters?filter=program:eq:PrEvtProg01&fields=id"),
        ] {
            let (status, body) = answer("GET", url, b"").await.unwrap();
            assert_eq!(status, 200, "{url}");
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body[resource], json!([]), "{url}: {body}");
        }
        assert!(!contains(&dump(&store).await, "Amal Haddad"));

        // Shift change: nurse2 never sees nurse1's profile or tree; shared metadata stays shared.
        let programs = "http://127.0.0.1:9/api/programs.json?fields=id";
        assert!(e.cache_response(programs, 200, "application/json", br#"{"programs":[]}"#).await.unwrap());
        e.login("nurse2", "Nurse2!clinic", T0).await.unwrap(); // handover from nurse1's session
                                                               // Her own `me`, built from her profile (nothing of hers was kept from the server).
        let own = r#"{"displayName":"Rania Khalil","id":"UsNurse0002"}"#;
        assert_eq!(answer("GET", me, b"").await, Some((200, own.into())));
        assert_eq!(answer("POST", tree, b"versionOnly=false").await, None);
        assert_eq!(answer("GET", programs, b"").await.map(|a| a.0), Some(200));
        e.logout();
        assert_eq!(answer("GET", me, b"").await, None, "locked: no per-user answer");
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        assert_eq!(answer("POST", tree, b"versionOnly=false").await, Some((200, r#"{"username":"nurse1"}"#.into())));
    });
}

#[test]
fn a_lost_server_session_is_renewed_only_for_the_logged_in_user() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.40.3", 0);
        let e = engine(&store, &server);
        assert!(!e.renew_session().await, "nobody logged in");
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        let before = server.requests.borrow().len();
        assert!(e.renew_session().await);
        assert!(server.requests.borrow()[before..].iter().any(|u| u.contains("/api/me")));
        e.logout();
        assert!(!e.renew_session().await, "the password is gone with the session");
    });
}

/// Issue 13 item 6: the data key goes at a shift change only to a colleague whose org units
/// cover the clinic copied here; nobody is handed a clinic the server would not show her.
#[test]
fn a_colleague_whose_org_units_do_not_cover_the_clinic_is_not_handed_its_data() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.40.3", 10);
        let e = downloaded(&store, &server).await;

        let err = e.login("nurse3", "Nurse3!nablus", T0).await.unwrap_err();
        assert_eq!(err.code(), "OUTSIDE_CLINIC", "{err}");
        assert!(!e.vault().is_registered("nurse3").await.unwrap(), "nothing written for her");
        assert_eq!(e.vault().session_info().unwrap().username, "nurse1", "nurse1's session stays open");
        e.logout();
        let offline = e.vault().login_offline("nurse3", "Nurse3!nablus", T0).await.unwrap_err();
        assert_eq!(offline.code(), "UNKNOWN_USER_OFFLINE");

        // The district's supervisor covers the clinic (her org unit is above it).
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        let out = e.login("super1", "Super1!district", T0).await.unwrap();
        assert!(out.handover);
    });
}

/// Issue 13 item 6: offline reads show the logged-in user only the women of her org units,
/// although one data key opens the whole copy (here the district's supervisor downloaded two
/// clinics, and a nurse of one of them logs in on the same device).
#[test]
fn offline_reads_show_only_the_logged_in_users_org_units() {
    block_on(async {
        let store = MemoryStore::new();
        let server = FakeDhis2::new("2.40.3", 10);
        for n in 5..10 {
            let mut teis = server.teis.borrow_mut();
            teis[n]["orgUnit"] = json!(OU2);
            teis[n]["enrollments"][0]["orgUnit"] = json!(OU2);
            teis[n]["enrollments"][0]["events"][0]["orgUnit"] = json!(OU2);
        }
        let e = engine(&store, &server);
        e.login("nurse2", "Nurse2!clinic", T0).await.unwrap(); // her clinic: OU only
        e.login("super1", "Super1!district", T0).await.unwrap(); // handover: the district covers OU
        download(&e).await.unwrap();
        let district_wide =
            body(&e, &format!("trackedEntityInstances.json?ou={DISTRICT}&ouMode=DESCENDANTS&paging=false")).await;
        assert_eq!(district_wide["trackedEntityInstances"].as_array().unwrap().len(), 10);
        e.logout();

        e.vault().login_offline("nurse2", "Nurse2!clinic", T0).await.unwrap();
        let e = engine(&store, &server); // a reload: the copy comes back from storage
        e.vault().login_offline("nurse2", "Nurse2!clinic", T0).await.unwrap();
        let uids = |v: &Value, list: &str| -> Vec<String> {
            v[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["trackedEntityInstance"].as_str().unwrap().to_string())
                .collect()
        };
        let mine = body(&e, &format!("trackedEntityInstances.json?ou={OU}&ouMode=DESCENDANTS&paging=false")).await;
        assert_eq!(uids(&mine, "trackedEntityInstances").len(), 5);
        let accessible = body(&e, "trackedEntityInstances.json?ouMode=ACCESSIBLE&paging=false").await;
        assert_eq!(uids(&accessible, "trackedEntityInstances"), uids(&mine, "trackedEntityInstances"));
        let all = body(&e, "trackedEntityInstances.json?ouMode=ALL&paging=false").await;
        assert_eq!(uids(&all, "trackedEntityInstances").len(), 5, "ALL is still only what she may see");
        let count = body(&e, &format!("trackedEntityInstances/count.json?ou={OU}&ouMode=DESCENDANTS")).await;
        assert_eq!(count, 5);
        // The other clinic: a 409 for the query, as the server answers outside the search scope,
        // and nothing by UID (the woman, her enrollment, her visit).
        let other = e
            .answer_offline(&format!("http://127.0.0.1:9/api/trackedEntityInstances.json?ou={OU2}&paging=false"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(other.status, 409);
        let by_uid = |path: String| {
            let e = &e;
            async move { e.answer_offline(&format!("http://127.0.0.1:9/api/{path}")).await.unwrap().unwrap().status }
        };
        assert_eq!(by_uid("trackedEntityInstances/Te000000007.json".into()).await, 404);
        assert_eq!(by_uid("enrollments/En000000007.json".into()).await, 404);
        assert_eq!(by_uid("events/Ev000000007.json".into()).await, 404);
        assert_eq!(by_uid("tracker/trackedEntities/Te000000007".into()).await, 404);
        assert_eq!(by_uid("trackedEntityInstances/Te000000002.json".into()).await, 200);
        let events = body(&e, "events.json?paging=false").await;
        assert_eq!(events["events"].as_array().unwrap().len(), 5, "the event list is hers too");
        e.logout();

        // The supervisor, offline, still sees the district.
        e.vault().login_offline("super1", "Super1!district", T0).await.unwrap();
        let all = body(&e, &format!("trackedEntityInstances.json?ou={DISTRICT}&ouMode=DESCENDANTS&paging=false")).await;
        assert_eq!(all["trackedEntityInstances"].as_array().unwrap().len(), 10);
    });
}

/// A store whose writes take a turn of the executor (a transaction waiting for its commit, as
/// IndexedDB's do) and note how many requests the server had had when each was applied.
struct SlowStore<'a> {
    inner: MemoryStore,
    server: &'a FakeDhis2,
    /// Per write: its operation count, and the server's request count when it was applied.
    writes: RefCell<Vec<(usize, usize)>>,
    /// Reads of `records` (a `get`, or a `get_many` of any length).
    record_reads: RefCell<usize>,
}

impl KvStore for SlowStore<'_> {
    async fn get(&self, store: StoreName, key: &str) -> Result<Option<Vec<u8>>> {
        *self.record_reads.borrow_mut() += usize::from(store == StoreName::Records);
        self.inner.get(store, key).await
    }
    async fn get_many(&self, store: StoreName, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        *self.record_reads.borrow_mut() += usize::from(store == StoreName::Records);
        self.inner.get_many(store, keys).await
    }
    async fn list(&self, store: StoreName) -> Result<Vec<(String, Vec<u8>)>> {
        self.inner.list(store).await
    }
    async fn count(&self, store: StoreName) -> Result<u64> {
        self.inner.count(store).await
    }
    async fn write(&self, batch: WriteBatch) -> Result<()> {
        yield_once().await;
        self.writes.borrow_mut().push((batch.len(), self.server.requests.borrow().len()));
        self.inner.write(batch).await
    }
}

impl Clone for SlowStore<'_> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            server: self.server,
            writes: RefCell::default(),
            record_reads: RefCell::default(),
        }
    }
}

#[test]
fn the_next_page_is_on_its_way_while_a_page_is_stored_and_a_page_reads_its_women_at_once() {
    block_on(async {
        let server = FakeDhis2::new("2.40.3", 160);
        let store = SlowStore {
            inner: MemoryStore::new(),
            server: &server,
            writes: RefCell::default(),
            record_reads: RefCell::default(),
        };
        let e = Engine::new(EngineConfig::new("/api", fast_policy()).unwrap(), store, RustPbkdf2, OsRandom, &server);
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        let report = download(&e).await.unwrap();
        assert_eq!((report.tracked_entities, report.pages), (160, 4));
        let requests = server.requests.borrow().clone();
        let page_request = |page: usize| {
            requests
                .iter()
                .position(|u| {
                    u.starts_with("/api/trackedEntityInstances.json") && u.contains(&format!("&page={page}&"))
                })
                .unwrap()
        };
        // The writes that store a page (50 women, their index rows, the manifest): for pages 1
        // to 3, the next page had been asked for when the page was committed.
        let page_writes: Vec<usize> =
            e.vault().store().writes.borrow().iter().filter(|(ops, _)| *ops >= 40).map(|(_, seen)| *seen).collect();
        assert_eq!(page_writes.len(), 4, "{page_writes:?}");
        for page in 1..=3 {
            assert!(
                page_writes[page - 1] > page_request(page + 1),
                "page {page} was committed before page {} was asked for: {requests:?} {page_writes:?}",
                page + 1
            );
        }
        assert_eq!(e.record_count(), 160);
        // The stored copies of a page's women are read at once, not one by one.
        assert_eq!(*e.vault().store().record_reads.borrow(), 4, "reads of records for 4 pages");
    });
}

#[test]
fn an_unlock_reads_the_index_snapshot_and_only_the_rows_written_since() {
    use tracker_offline_core::index_snapshot::{chunk_id, CHUNKS};
    block_on(async {
        let memory = MemoryStore::new();
        let store = ReadsCounted::new(memory.clone(), StoreName::Index);
        let server = FakeDhis2::new("2.40.3", 120);
        let e = Engine::new(
            EngineConfig::new("http://127.0.0.1:9/api", fast_policy()).unwrap(),
            store.clone(),
            RustPbkdf2,
            OsRandom,
            &server,
        );
        e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
        download(&e).await.unwrap();
        let relogin = || async {
            e.logout();
            e.vault().login_offline("nurse1", "Nurse1!clinic", T0).await.unwrap();
            store.take_count();
        };
        let read = |url: String| {
            let e = &e;
            async move {
                let r = e.answer_offline(&format!("http://127.0.0.1:9/api/{url}")).await.unwrap().unwrap();
                serde_json::from_slice::<Value>(&r.body).unwrap()
            }
        };
        let grid = format!("trackedEntityInstances/query.json?ou={OU}&program={PROGRAM}&paging=false");
        let count = format!("trackedEntityInstances/count.json?ou={OU}");

        // The first load after the download opens every row and writes the snapshot.
        relogin().await;
        store.take_keys_listed();
        let first = read(grid.clone()).await;
        assert_eq!(first["rows"].as_array().unwrap().len(), 120);
        assert_eq!(store.take_count(), 120, "no snapshot yet: every row is read");
        assert_eq!(store.take_keys_listed(), 120, "no snapshot yet: every key is listed");
        let chunk_ids: Vec<String> = (0..CHUNKS).map(chunk_id).collect();
        let chunk_refs: Vec<&str> = chunk_ids.iter().map(String::as_str).collect();
        let chunks = e.vault().open_copies(&chunk_refs).await.unwrap();
        assert!(chunks.iter().flatten().flatten().count() > 50, "120 rows spread over the chunks");
        assert!(!contains(&dump(&memory).await, "Fatima"), "the snapshot is sealed");

        // The next unlock answers the same from the snapshot alone.
        relogin().await;
        store.take_keys_listed();
        assert_eq!(read(grid.clone()).await, first);
        assert_eq!(store.take_count(), 0, "the snapshot holds every row");
        // Only the prefixes where the manifest moved since (the login's own write, in the
        // register) are listed again, not the whole index store.
        let listed = store.take_keys_listed();
        assert!(listed <= 4, "{listed} index keys listed: the chunks' prefixes are current");

        // A row changed and a row removed since: the changed one is read, the removed one gone.
        let mut b =
            parse_bundle(&e.vault().get_record(StoreName::Records, &bundle_id("Te000000005")).await.unwrap().unwrap())
                .unwrap();
        b.tei["attributes"][0]["value"] = json!("Zainab");
        let (batch, _) = seal_bundle(e.vault(), WriteBatch::new(), &b).unwrap();
        let batch = e.vault().delete_into(batch, StoreName::Records, &bundle_id("Te000000004")).unwrap();
        let batch = e.vault().delete_into(batch, StoreName::Index, &bundle_id("Te000000004")).unwrap();
        e.vault().commit(batch).await.unwrap();
        relogin().await;
        assert_eq!(read(count.clone()).await, 119);
        assert_eq!(store.take_count(), 1, "only the row written since the snapshot");
        let zainab = read(format!("trackedEntityInstances/query.json?ou={OU}&attribute={FIRST}:EQ:zainab")).await;
        assert_eq!(zainab["rows"].as_array().unwrap().len(), 1);
        assert_eq!(zainab["rows"][0][0], "Te000000005");

        // A row's stored bytes damaged: its snapshot copy (of the envelope the manifest names)
        // still answers; the damaged bytes are never read.
        let key7 = e.vault().record_storage_key(StoreName::Index, &bundle_id("Te000000007")).unwrap();
        let mut damaged = memory.get(StoreName::Index, &key7).await.unwrap().unwrap();
        damaged[20] ^= 1;
        memory.raw_put(StoreName::Index, &key7, damaged).unwrap();
        relogin().await;
        assert_eq!(read(count.clone()).await, 119);

        // Every chunk damaged: every row is read and opened again (the damaged one skipped),
        // and the snapshot is written again.
        for id in &chunk_ids {
            let key = format!("copy:{id}");
            if let Some(mut bytes) = memory.get(StoreName::Cache, &key).await.unwrap() {
                bytes[20] ^= 1;
                memory.raw_put(StoreName::Cache, &key, bytes).unwrap();
            }
        }
        relogin().await;
        assert_eq!(read(count.clone()).await, 118, "the damaged row is skipped");
        assert_eq!(store.take_count(), 119);
        relogin().await;
        assert_eq!(read(count.clone()).await, 118);
        assert_eq!(store.take_count(), 1, "the snapshot was written again; the damaged row is read each time");
        assert_eq!(
            read(format!("trackedEntityInstances/query.json?ou={OU}&attribute={FIRST}:EQ:zainab")).await["rows"][0][0],
            "Te000000005"
        );
    });
}
