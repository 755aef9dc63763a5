//! Server escrow of the data key (issue 13, item 4) against a stateful fake of DHIS2's
//! dataStore and `/api/sharing`: new keys public read/write, no sharing at creation, PUT of a
//! missing key 404 or create by version, faults that cut the network before or after a request
//! is applied. After every request the fake checks that no entry holding the data key can be
//! read by anyone but its owner and the users it is meant for.
//!
//! About 660 lines: one fake dataStore with sharing that every test here drives.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
};

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use futures::executor::block_on;
use serde_json::{json, Value};
use support::*;
use tracker_offline_core::{
    clinic::METADATA_ID,
    engine::{Engine, EngineConfig},
    escrow::EscrowSharing,
    http::{HttpClient, HttpRequest, HttpResponse},
    kdf::RustPbkdf2,
    metadata::{ClinicMetadata, OrgUnitInfo},
    random::OsRandom,
    store::{MemoryStore, StoreName},
    CoreError, Result,
};

const NURSE1_UID: &str = "UsNurse0001";
const NURSE2_UID: &str = "UsNurse0002";
const INTRUDER_UID: &str = "UsIntrude01";
const USERS: [(&str, &str, &str); 3] = [
    ("nurse1", "Nurse1!clinic", NURSE1_UID),
    ("nurse2", "Nurse2!clinic", NURSE2_UID),
    ("intruder", "Intruder!1", INTRUDER_UID),
];
const NS: &str = "tracker-offline-escrow";

#[derive(Debug, Clone)]
struct Entry {
    id: String,
    value: Value,
    owner: String,
    public: String,
    users: Vec<(String, String)>,
    groups: Vec<(String, String)>,
}

/// What a fault does to the request it matches.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    /// The request never reaches the server; the network stays down.
    Before,
    /// The server applies the request, the answer is lost; the network stays down.
    After,
    /// The request never reaches the server; only this one request fails.
    Once,
}

type Hook = Box<dyn FnOnce(&mut Server)>;

struct Server {
    version: String,
    put_creates: bool,
    entries: BTreeMap<String, Entry>,
    next_id: u32,
    /// (method, url, body) of every request that reached the fake (even those cut).
    log: Vec<(String, String, String)>,
    down: bool,
    fault: Option<(&'static str, &'static str, Cut)>,
    /// Runs once after the first request matching (method, path part) has been applied.
    hook: Option<(&'static str, &'static str, Hook)>,
    /// Base64 of the data key, once known: what must never be readable by others.
    secret: Option<String>,
    /// Who may read an entry holding the secret, besides its owner.
    allowed: BTreeSet<String>,
    violations: Vec<String>,
}

struct Fake(RefCell<Server>);

impl Fake {
    fn new(version: &str, put_creates: bool) -> Self {
        Fake(RefCell::new(Server {
            version: version.into(),
            put_creates,
            entries: BTreeMap::new(),
            next_id: 0,
            log: Vec::new(),
            down: false,
            fault: None,
            hook: None,
            secret: None,
            allowed: BTreeSet::new(),
            violations: Vec::new(),
        }))
    }

    /// The next request matching (method, path part) meets the network fault `cut`.
    fn cut(&self, method: &'static str, part: &'static str, cut: Cut) {
        self.0.borrow_mut().fault = Some((method, part, cut));
    }

    /// `hook` changes the server once, right after the first request matching (method, path part).
    fn after(&self, method: &'static str, part: &'static str, hook: impl FnOnce(&mut Server) + 'static) {
        self.0.borrow_mut().hook = Some((method, part, Box::new(hook)));
    }
}

fn respond(status: u16, body: Value) -> HttpResponse {
    HttpResponse { status, headers: vec![], body: body.to_string().into_bytes() }
}

fn message(status: u16, text: &str) -> HttpResponse {
    respond(status, json!({"httpStatusCode": status, "status": if status < 300 {"OK"} else {"ERROR"}, "message": text}))
}

fn user_of(request: &HttpRequest) -> Option<&'static str> {
    let header = request.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization"))?;
    let decoded = String::from_utf8(B64.decode(header.1.strip_prefix("Basic ")?).ok()?).ok()?;
    let (name, password) = decoded.split_once(':')?;
    USERS.iter().find(|(u, p, _)| *u == name && *p == password).map(|(_, _, uid)| *uid)
}

fn me_json(uid: &str) -> Value {
    let (username, _, _) = USERS.iter().find(|(_, _, u)| *u == uid).unwrap();
    json!({"id": uid, "username": username, "displayName": username,
           "organisationUnits": [{"id": "DiszpKrYNg8", "displayName": "Bani Naim Clinic"}]})
}

impl Entry {
    fn can(&self, uid: &str, what: usize) -> bool {
        let grants = |a: &str| a.as_bytes().get(what).is_some_and(|c| *c != b'-');
        self.owner == uid || grants(&self.public) || self.users.iter().any(|(id, a)| id == uid && grants(a))
    }
}

impl Server {
    fn handle(&mut self, r: &HttpRequest, body: &str) -> HttpResponse {
        let Some(uid) = user_of(r) else { return message(401, "Unauthorized") };
        let (path, query) = r.url.split_once('?').unwrap_or((&r.url, ""));
        let path = path.strip_prefix("/api").unwrap_or(path);
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = r.method.as_str();
        match (method, parts.as_slice()) {
            ("GET", ["me"]) => respond(200, me_json(uid)),
            ("GET", ["system", "info"]) => respond(200, json!({"version": self.version})),
            (_, ["dataStore", ns, key]) => self.entry(method, uid, &format!("{ns}/{key}"), key, ns, body),
            ("GET", ["dataStore", ns, key, "metaData"]) => match self.entries.get(&format!("{ns}/{key}")) {
                None => message(404, &format!("Key '{key}' not found in namespace '{ns}'")),
                Some(e) if !e.can(uid, 0) => message(403, "Access denied"),
                Some(e) => {
                    let users: serde_json::Map<String, Value> =
                        e.users.iter().map(|(id, a)| (id.clone(), json!({"id": id, "access": a}))).collect();
                    let groups: serde_json::Map<String, Value> =
                        e.groups.iter().map(|(id, a)| (id.clone(), json!({"id": id, "access": a}))).collect();
                    respond(
                        200,
                        json!({"id": e.id, "key": key, "namespace": ns, "createdBy": {"id": e.owner},
                               "sharing": {"owner": e.owner, "external": false, "public": e.public,
                                           "users": users, "userGroups": groups}}),
                    )
                }
            },
            ("POST" | "PUT", ["sharing"]) => {
                let id = query.split('&').find_map(|p| p.strip_prefix("id=")).unwrap_or_default();
                let Some(e) = self.entries.values_mut().find(|e| e.id == id) else {
                    return message(404, "Object not found");
                };
                if !e.can(uid, 1) {
                    return message(403, "You do not have manage access to this object.");
                }
                let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                let o = &v["object"];
                let list = |k: &str| -> Vec<(String, String)> {
                    o[k].as_array()
                        .map(|l| {
                            l.iter()
                                .map(|a| {
                                    let access = a["access"].as_str().unwrap_or("--------");
                                    (
                                        a["id"].as_str().unwrap_or_default().to_string(),
                                        format!("{}------", &access[..2]),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                e.public = o["publicAccess"].as_str().unwrap_or("--------").to_string();
                e.users = list("userAccesses");
                e.groups = list("userGroupAccesses");
                message(200, "Access control set")
            }
            ("GET", ["sharing"]) => {
                let id = query.split('&').find_map(|p| p.strip_prefix("id=")).unwrap_or_default();
                let Some(e) = self.entries.values().find(|e| e.id == id) else {
                    return message(404, "Object not found");
                };
                let access = |l: &[(String, String)]| -> Vec<Value> {
                    l.iter().map(|(id, a)| json!({"id": id, "access": a})).collect()
                };
                respond(
                    200,
                    json!({"object": {"id": e.id, "publicAccess": e.public, "externalAccess": false,
                                      "user": {"id": e.owner}, "userAccesses": access(&e.users),
                                      "userGroupAccesses": access(&e.groups)}}),
                )
            }
            _ => message(404, "Not found"),
        }
    }

    fn entry(&mut self, method: &str, uid: &str, path: &str, key: &str, ns: &str, body: &str) -> HttpResponse {
        let not_found = || message(404, &format!("Key '{key}' not found in namespace '{ns}'"));
        let create = |s: &mut Self| {
            s.next_id += 1;
            let entry = Entry {
                id: format!("DsEntry{:04}", s.next_id),
                value: serde_json::from_str(body).unwrap_or(Value::Null),
                owner: uid.into(),
                public: "rw------".into(),
                users: vec![],
                groups: vec![],
            };
            s.entries.insert(path.into(), entry);
            message(201, &format!("Key created: '{key}'"))
        };
        match (method, self.entries.get_mut(path)) {
            ("GET", None) | ("DELETE", None) => not_found(),
            ("GET", Some(e)) if e.can(uid, 0) => raw(e.value.clone()),
            ("POST", None) => create(self),
            ("POST", Some(e)) if e.can(uid, 0) => {
                message(409, &format!("Key '{key}' already exists in namespace '{ns}'"))
            }
            ("PUT", None) if self.put_creates => create(self),
            ("PUT", None) => not_found(),
            ("PUT", Some(e)) if e.can(uid, 1) => {
                e.value = serde_json::from_str(body).unwrap_or(Value::Null);
                message(200, &format!("Key updated: '{key}'"))
            }
            ("DELETE", Some(e)) if e.can(uid, 1) => {
                self.entries.remove(path);
                message(200, &format!("Key '{key}' deleted from namespace '{ns}'"))
            }
            _ => message(403, &format!("Access denied for key '{key}' in namespace '{ns}'")),
        }
    }

    /// No entry holding the secret may be readable by anyone but its owner (nurse1) and the
    /// users it is shared with on purpose, nor writable by anyone but its owner.
    fn check(&mut self, after: &str) {
        let Some(secret) = self.secret.clone() else { return };
        for (path, e) in &self.entries {
            if !e.value.to_string().contains(&secret) {
                continue;
            }
            let public_reads = e.public.as_bytes()[..2] != *b"--";
            let strangers = e.users.iter().any(|(id, _)| !self.allowed.contains(id)) || !e.groups.is_empty();
            let writers = e.users.iter().any(|(_, a)| a.as_bytes()[1] == b'w');
            if e.owner != NURSE1_UID || public_reads || strangers || writers {
                self.violations.push(format!("after {after}: {path} holds the data key and is {e:?}"));
            }
        }
    }
}

fn raw(value: Value) -> HttpResponse {
    respond(200, value)
}

impl HttpClient for &Fake {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse> {
        let mut s = self.0.borrow_mut();
        let body = request.body.as_deref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        s.log.push((request.method.clone(), request.url.clone(), body.clone()));
        let unreachable = || Err(CoreError::ServerUnreachable("Failed to fetch".into()));
        if s.down {
            return unreachable();
        }
        let matches = |m: &str, part: &str| request.method == m && request.url.contains(part);
        let cut = match s.fault {
            Some((m, part, cut)) if matches(m, part) => {
                s.fault = None;
                Some(cut)
            }
            _ => None,
        };
        if matches!(cut, Some(Cut::Before | Cut::Once)) {
            s.down = cut == Some(Cut::Before);
            return unreachable();
        }
        let answer = s.handle(&request, &body);
        let what = format!("{} {}", request.method, request.url);
        s.check(&what);
        if let Some((m, part, _)) = &s.hook {
            if matches(m, part) {
                let (_, _, hook) = s.hook.take().unwrap();
                hook(&mut s);
                s.check(&format!("the hook after {what}"));
            }
        }
        if cut == Some(Cut::After) {
            s.down = true;
            return unreachable();
        }
        Ok(answer)
    }
}

type FakeEngine<'a> = Engine<MemoryStore, RustPbkdf2, OsRandom, &'a Fake>;

fn nurse2() -> EscrowSharing {
    EscrowSharing { users: vec![NURSE2_UID.into()], user_groups: vec![] }
}

/// nurse1 logged in online on a new device; the fake watches her data key from now on.
async fn logged_in(fake: &Fake) -> FakeEngine<'_> {
    let config = EngineConfig::new("/api", fast_policy()).unwrap();
    let e = Engine::new(config, MemoryStore::new(), RustPbkdf2, OsRandom, fake);
    e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
    e.vault().put_record(StoreName::Records, "tei:PQfMcpmXeFE", b"Fatima").await.unwrap();
    let key = e.vault().export_data_key().unwrap();
    let mut s = fake.0.borrow_mut();
    s.secret = Some(B64.encode(&key[..]));
    s.allowed = [NURSE2_UID.to_string()].into();
    s.log.clear();
    drop(s);
    e
}

/// The requests whose body carries the data key.
fn bodies_with_the_key(fake: &Fake) -> Vec<(String, String)> {
    let s = fake.0.borrow();
    let secret = s.secret.clone().unwrap();
    s.log.iter().filter(|(_, _, b)| b.contains(&secret)).map(|(m, u, _)| (m.clone(), u.clone())).collect()
}

/// Enabling escrow fails, and no request ever carried the data key.
async fn refused_without_sending_the_key(e: &FakeEngine<'_>, fake: &Fake) {
    assert!(e.enable_escrow(&nurse2()).await.is_err());
    no_violations(fake);
    assert!(bodies_with_the_key(fake).is_empty(), "{:#?}", fake.0.borrow().log);
}

/// nurse1 enables escrow on a 2.41 server that `hook` changes right after the first request
/// matching (method, path part): it fails and no request carried the key. The fake, to look into.
async fn refused_when(method: &'static str, part: &'static str, hook: impl FnOnce(&mut Server) + 'static) -> Fake {
    let fake = Fake::new("2.41.0", true);
    let e = logged_in(&fake).await;
    fake.after(method, part, hook);
    refused_without_sending_the_key(&e, &fake).await;
    fake
}

fn no_violations(fake: &Fake) {
    let s = fake.0.borrow();
    assert!(s.violations.is_empty(), "{:#?}\nrequests: {:#?}", s.violations, s.log);
}

/// nurse2's first login on the device, the vault locked: only the escrow can let her in.
async fn nurse2_joins(e: &FakeEngine<'_>) -> bool {
    e.logout();
    match e.login("nurse2", "Nurse2!clinic", T0 + 1000).await {
        Ok(out) => {
            assert!(out.handover);
            assert_eq!(e.vault().get_record(StoreName::Records, "tei:PQfMcpmXeFE").await.unwrap().unwrap(), b"Fatima");
            true
        }
        Err(err) => {
            assert_eq!(err.code(), "HANDOVER_REQUIRED");
            false
        }
    }
}

#[test]
fn the_key_is_only_ever_held_by_an_entry_already_restricted_and_checked() {
    for (version, put_creates) in [("2.41.0", true), ("2.40.3", true), ("2.39.5", true), ("2.36.13", false)] {
        block_on(async {
            let fake = Fake::new(version, put_creates);
            let e = logged_in(&fake).await;
            e.enable_escrow(&nurse2()).await.unwrap();
            no_violations(&fake);
            // One request carries the key: a write to the entry, after its sharing was set and
            // read back; never a create (a created entry is public read/write).
            let with_key = bodies_with_the_key(&fake);
            assert_eq!(with_key.len(), 1, "{version}: {with_key:?}");
            assert_eq!(with_key[0].0, "PUT", "{version}");
            let log = fake.0.borrow().log.clone();
            let write =
                log.iter().position(|(m, _, b)| m == "PUT" && b.contains(&fake.0.borrow().secret.clone().unwrap()));
            let write = write.unwrap();
            let shared = log.iter().position(|(m, u, _)| m == "POST" && u.contains("/sharing?")).unwrap();
            assert!(shared < write, "{version}: {log:#?}");
            assert!(
                log[shared + 1..write]
                    .iter()
                    .any(|(m, u, _)| m == "GET" && (u.contains("metaData") || u.contains("/sharing?"))),
                "{version}: the sharing is read back before the key is written: {log:#?}"
            );
            // What is stored: owner nurse1, private, nurse2 read-only.
            {
                let s = fake.0.borrow();
                assert_eq!(s.entries.len(), 1);
                let entry = s.entries.values().next().unwrap();
                assert_eq!((entry.owner.as_str(), entry.public.as_str()), (NURSE1_UID, "--------"));
                assert_eq!(entry.users, vec![(NURSE2_UID.to_string(), "r-------".to_string())]);
            }
            assert!(nurse2_joins(&e).await, "{version}");
        });
    }
}

/// The network fails after the entry is created and before its sharing is changed (the
/// answer to the create lost, or the sharing request never arriving): the server never holds
/// a readable data key, and a retry once the network is back succeeds.
#[test]
fn a_network_failure_between_the_create_and_the_sharing_leaves_no_readable_key() {
    let faults: [(&str, &str, Cut); 5] = [
        ("POST", "/dataStore/", Cut::After),
        ("PUT", "/dataStore/", Cut::After),
        ("POST", "/sharing?", Cut::Before),
        ("POST", "/sharing?", Cut::After),
        ("GET", "/metaData", Cut::Before),
    ];
    for (method, part, cut) in faults {
        block_on(async {
            let fake = Fake::new("2.41.0", true);
            let e = logged_in(&fake).await;
            fake.cut(method, part, cut);
            let outcome = e.enable_escrow(&nurse2()).await;
            no_violations(&fake);
            {
                let s = fake.0.borrow();
                let secret = s.secret.clone().unwrap();
                if outcome.is_err() {
                    // Whatever is left holds no key, or is private to the owner and nurse2.
                    for entry in s.entries.values() {
                        assert!(
                            !entry.value.to_string().contains(&secret) || entry.public == "--------",
                            "{method} {part} {cut:?}: {entry:?}"
                        );
                    }
                }
            }
            // The network is back: enabling again works, over whatever was left.
            fake.0.borrow_mut().down = false;
            e.enable_escrow(&nurse2()).await.unwrap();
            no_violations(&fake);
            assert!(nurse2_joins(&e).await, "{method} {part} {cut:?}");
        });
    }
}

/// A failure the library sees while the network still works (one request lost, a refusal):
/// the entry it created is deleted.
#[test]
fn every_failure_path_deletes_the_entry() {
    let faults: [(&str, &str, Cut); 3] =
        [("POST", "/sharing?", Cut::Once), ("GET", "/metaData", Cut::Once), ("PUT", "/dataStore/", Cut::Once)];
    for (method, part, cut) in faults {
        block_on(async {
            let fake = Fake::new("2.41.0", true);
            let e = logged_in(&fake).await;
            fake.cut(method, part, cut);
            assert!(e.enable_escrow(&nurse2()).await.is_err(), "{method} {part}");
            no_violations(&fake);
            let s = fake.0.borrow();
            assert!(s.entries.is_empty(), "{method} {part}: {:?}\n{:#?}", s.entries, s.log);
        });
    }
    // The server refuses the sharing.
    block_on(refused_when("POST", "/dataStore/", |s| {
        // nurse1 loses manage access: the sharing POST answers 403.
        let entry = s.entries.values_mut().next().unwrap();
        entry.owner = INTRUDER_UID.into();
        entry.public = "r-------".into();
    }));
}

/// Someone else holds the entry's name, or swaps the entry while nurse1 sets it up (a new
/// entry is public read/write until its sharing changes): the key is never sent.
#[test]
fn an_entry_someone_else_owns_never_receives_the_key() {
    // Squatted before: intruder created it, public read/write.
    block_on(async {
        let fake = Fake::new("2.41.0", true);
        let e = logged_in(&fake).await;
        let vault_id = e.vault().vault_id().await.unwrap().unwrap();
        fake.0.borrow_mut().entries.insert(
            format!("{NS}/vault-{vault_id}"),
            Entry {
                id: "DsSquat0001".into(),
                value: json!({}),
                owner: INTRUDER_UID.into(),
                public: "rw------".into(),
                users: vec![],
                groups: vec![],
            },
        );
        refused_without_sending_the_key(&e, &fake).await;
    });
    // Swapped in the window: intruder deletes nurse1's new entry and creates his own.
    block_on(refused_when("POST", "/dataStore/", |s| {
        let entry = s.entries.values_mut().next().unwrap();
        entry.id = "DsSwapped01".into();
        entry.owner = INTRUDER_UID.into();
    }));
    // Intruder adds himself to the sharing in the window: nurse1's sharing replaces it.
    block_on(async {
        let fake = Fake::new("2.41.0", true);
        let e = logged_in(&fake).await;
        fake.after("POST", "/dataStore/", |s| {
            let entry = s.entries.values_mut().next().unwrap();
            entry.users.push((INTRUDER_UID.into(), "rw------".into()));
        });
        e.enable_escrow(&nurse2()).await.unwrap();
        no_violations(&fake);
        let s = fake.0.borrow();
        assert_eq!(s.entries.values().next().unwrap().users, vec![(NURSE2_UID.to_string(), "r-------".to_string())]);
    });
    // The server drops the sharing silently (answers 200, changes nothing): the read-back
    // catches it.
    let fake = block_on(refused_when("POST", "/sharing?", |s| {
        s.entries.values_mut().next().unwrap().public = "r-------".into();
    }));
    assert!(fake.0.borrow().entries.is_empty(), "deleted");
}

/// DHIS2 2.39.0-2.39.2 and 2.40.0 answer a PUT of a missing key with 404 (only POST creates);
/// later versions create. The entry is created by POST on every version; if it is gone when
/// the key is written (PUT 404), it is created again by POST (empty, then restricted and
/// checked), never by sending the key to a new, public entry.
#[test]
fn a_404_to_the_put_of_a_missing_key_is_followed_by_a_post() {
    block_on(async {
        let fake = Fake::new("2.36.13", false);
        let e = logged_in(&fake).await;
        // The entry disappears after its sharing was read back, before the key is written:
        // once the sharing is set, the next read of the entry's metaData deletes it.
        fake.after("POST", "/sharing?", |s| {
            s.hook = Some((
                "GET",
                "/metaData",
                Box::new(|s: &mut Server| {
                    if s.entries.values().next().is_some_and(|e| e.public == "--------") {
                        s.entries.clear();
                    }
                }),
            ))
        });
        e.enable_escrow(&nurse2()).await.unwrap();
        no_violations(&fake);
        let log = fake.0.borrow().log.clone();
        let methods: Vec<&str> =
            log.iter().filter(|(_, u, _)| u.contains("/dataStore/")).map(|(m, _, _)| m.as_str()).collect();
        let first_put = methods.iter().position(|m| *m == "PUT").unwrap();
        assert!(methods[first_put + 1..].contains(&"POST"), "{log:#?}");
        assert_eq!(bodies_with_the_key(&fake).iter().filter(|(m, _)| m == "POST").count(), 0, "{log:#?}");
        assert!(nurse2_joins(&e).await);
    });
}

/// An entry without the key (left by an interrupted escrow) is not an error at login: the
/// user is simply asked for a handover.
#[test]
fn a_placeholder_entry_lets_nobody_in_and_breaks_nothing() {
    block_on(async {
        let fake = Fake::new("2.41.0", true);
        let e = logged_in(&fake).await;
        fake.cut("PUT", "/dataStore/", Cut::Before);
        assert!(e.enable_escrow(&nurse2()).await.is_err());
        fake.0.borrow_mut().down = false;
        assert!(!fake.0.borrow().entries.is_empty(), "the entry could not be deleted: the network was down");
        assert!(!nurse2_joins(&e).await);
    });
}

/// Issue 13 item 6: a first login through the escrow is checked against the org units of the
/// clinic copied here, as a colleague's handover is: a user the server would not show the
/// clinic is not let into its data, and nothing is written for her.
#[test]
fn an_escrow_login_of_a_user_outside_the_clinic_is_refused_and_writes_nothing() {
    block_on(async {
        let fake = Fake::new("2.41.0", true);
        let e = logged_in(&fake).await;
        e.enable_escrow(&nurse2()).await.unwrap();
        // The clinic copied on this device lies outside nurse2's org unit (the fake's users
        // all have DiszpKrYNg8).
        let mut clinic = ClinicMetadata { capture_org_units: vec!["OuNablus001".into()], ..Default::default() };
        for (id, path) in [("DiszpKrYNg8", "/Pal/Hebron/DiszpKrYNg8"), ("OuNablus001", "/Pal/Nablus/OuNablus001")] {
            clinic
                .org_units
                .insert(id.into(), OrgUnitInfo { id: id.into(), path: path.into(), display_name: id.into() });
        }
        e.vault().put_record(StoreName::Cache, METADATA_ID, &serde_json::to_vec(&clinic).unwrap()).await.unwrap();
        e.logout();
        let err = e.login("nurse2", "Nurse2!clinic", T0 + 1000).await.unwrap_err();
        assert_eq!(err.code(), "OUTSIDE_CLINIC", "{err}");
        assert!(!e.vault().is_registered("nurse2").await.unwrap(), "nothing written for her");
        assert!(e.status().await.unwrap().locked);
        no_violations(&fake);
    });
}

/// Issue 13 item 7: after a removal rotates the data key, the escrow still holds the old key,
/// which opens nothing: a first login through it is HANDOVER_REQUIRED, never a half-joined
/// vault. Enabling escrow again (what the `escrow` option does at its owner's online login)
/// writes the current key over it, and the escrow lets a colleague in again.
#[test]
fn after_a_removal_the_old_escrowed_key_opens_nothing_and_escrow_again_writes_the_new_one() {
    block_on(async {
        let fake = Fake::new("2.41.0", true);
        let e = logged_in(&fake).await;
        e.enable_escrow(&nurse2()).await.unwrap();
        // nurse2 joins by escrow, then nurse1 (logged in again) removes her from the device.
        assert!(nurse2_joins(&e).await);
        e.logout();
        e.login("nurse1", "Nurse1!clinic", T0 + 2000).await.unwrap();
        e.remove_user("nurse2").await.unwrap();
        let new_key = e.vault().export_data_key().unwrap();
        fake.0.borrow_mut().secret = Some(B64.encode(&new_key[..]));
        assert!(!nurse2_joins(&e).await, "the old escrowed key let her in after the rotation");
        assert!(!e.vault().is_registered("nurse2").await.unwrap());
        e.login("nurse1", "Nurse1!clinic", T0 + 3000).await.unwrap();
        e.enable_escrow(&nurse2()).await.unwrap();
        assert!(nurse2_joins(&e).await, "escrow again did not write the new key");
        no_violations(&fake);
    });
}
