//! The request plans the service worker carries out (`fetch_plan`), through an engine with a
//! scripted server: how reads and writes are answered locked and unlocked, online, during
//! the offline fast path and behind queued work, and what a sync trigger does with a report.
#![allow(clippy::unwrap_used)]

mod support;

use futures::executor::block_on;
use support::*;
use tracker_offline_core::{
    fetch_plan::{AfterNetwork, ReadPlan, WritePlan},
    flush::FlushReport,
    http::HttpResponse,
    store::{KvStore, MemoryStore, StoreName},
};

const T0: i64 = 1_760_000_000_000;
const ME: &str = r#"{"id":"xE7jOejl9FI","username":"nurse1","displayName":"Amal Haddad",
  "organisationUnits":[{"id":"DiszpKrYNg8","displayName":"Bani Naim Clinic"}]}"#;
const REGISTRATION: &str = r#"{"trackedEntityType":"TetPerson01","orgUnit":"DiszpKrYNg8",
  "attributes":[{"attribute":"AtFirstNam1","value":"Fatima"}]}"#;

fn code_of(answer: &HttpResponse) -> (u16, String) {
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    (answer.status, body["code"].as_str().unwrap_or_default().to_string())
}

async fn logged_in<'a>(store: &MemoryStore, http: &'a ScriptedHttp) -> TestEngine<'a> {
    let e = engine(store, http);
    http.push(Answer::Status(200, ME));
    http.push(Answer::Status(200, r#"{"id":"xE7jOejl9FI"}"#));
    e.login("nurse1", "Nurse1!clinic", T0).await.unwrap();
    e
}

#[test]
fn a_locked_vault_sends_writes_as_they_are_and_answers_reads_it_cannot_make_with_vault_locked() {
    block_on(async {
        let store = MemoryStore::new();
        let http = ScriptedHttp::default();
        let e = engine(&store, &http);
        assert_eq!(e.plan_read(false, T0), ReadPlan::NetworkFirst);
        assert_eq!(e.plan_read(true, T0), ReadPlan::NetworkOnly, "a credential check never gets a local answer");
        let WritePlan::SendAsIs { if_unreachable } =
            e.plan_write("POST", "/api/trackedEntityInstances", "application/json", REGISTRATION.as_bytes(), T0).await
        else {
            panic!("a locked vault cannot queue")
        };
        assert_eq!(code_of(&if_unreachable), (503, "VAULT_LOCKED".into()));
        assert_eq!(code_of(&e.answer_read_locally("GET", "/api/me", &[]).await), (503, "VAULT_LOCKED".into()));
        let answer = AfterNetwork { use_answer: true, keep_copy: false };
        assert_eq!(e.after_network(Some(200), None, false, T0), answer, "nothing is kept while locked");
    });
}

#[test]
fn writes_are_sent_while_the_server_answers_and_queued_behind_a_failure_and_behind_queued_work() {
    block_on(async {
        let store = MemoryStore::new();
        let http = ScriptedHttp::default();
        let e = logged_in(&store, &http).await;
        let plan =
            || e.plan_write("POST", "/api/trackedEntityInstances", "application/json", REGISTRATION.as_bytes(), T0);
        let WritePlan::Send(prepared) = plan().await else { panic!("online with an empty outbox: sent") };
        assert!(String::from_utf8_lossy(&prepared.body).contains("\"trackedEntityInstance\""), "a client UID is added");
        // The server does not answer: the fast path answers reads locally and queues writes.
        assert_eq!(e.after_network(None, None, false, T0), AfterNetwork { use_answer: false, keep_copy: false });
        assert_eq!(e.plan_read(false, T0 + 1), ReadPlan::Local);
        let WritePlan::Queue(prepared) = plan().await else { panic!("during the fast path: queued") };
        let (queued, answer) = e.capture_answer(&prepared, T0 + 2).await;
        assert!(queued);
        assert_eq!(answer.status, 200, "the app gets the answer the server would give");
        assert_eq!(store.count(StoreName::Outbox).await.unwrap(), 1);
        // The server answers again; the next write still queues behind the first.
        let answered = e.after_network(Some(200), None, false, T0 + 60_000);
        assert_eq!(answered, AfterNetwork { use_answer: true, keep_copy: true });
        assert_eq!(e.plan_read(false, T0 + 60_001), ReadPlan::NetworkFirst);
        assert!(matches!(plan().await, WritePlan::Queue(_)), "a later write never overtakes a queued one");
    });
}

#[test]
fn a_malformed_write_is_refused_at_once_and_a_failed_capture_writes_nothing() {
    block_on(async {
        let store = MemoryStore::new();
        let http = ScriptedHttp::default();
        let e = logged_in(&store, &http).await;
        let WritePlan::Refuse { answer } =
            e.plan_write("POST", "/api/trackedEntityInstances", "application/json", b"{not json", T0).await
        else {
            panic!("a malformed body is refused")
        };
        assert_eq!(code_of(&answer), (400, "BAD_INPUT".into()));
        let WritePlan::Send(prepared) =
            e.plan_write("POST", "/api/trackedEntityInstances", "application/json", REGISTRATION.as_bytes(), T0).await
        else {
            panic!("sent")
        };
        e.logout();
        let (queued, answer) = e.capture_answer(&prepared, T0).await;
        assert!(!queued);
        assert_eq!(code_of(&answer), (503, "VAULT_LOCKED".into()));
        assert_eq!(store.count(StoreName::Outbox).await.unwrap(), 0);
    });
}

#[test]
fn only_answers_the_server_took_are_used_and_only_successes_and_not_found_are_kept() {
    block_on(async {
        let store = MemoryStore::new();
        let http = ScriptedHttp::default();
        let e = logged_in(&store, &http).await;
        let table: &[(Option<u16>, bool, bool, bool)] = &[
            // status, redirected, use_answer, keep_copy
            (Some(200), false, true, true),
            (Some(204), false, true, true),
            (Some(404), false, true, true),
            (Some(200), true, true, false),
            (Some(401), false, true, false),
            (Some(409), false, true, false),
            (Some(429), false, false, false),
            (Some(500), false, false, false),
            (Some(503), false, false, false),
            (None, false, false, false),
        ];
        for (i, &(status, redirected, use_answer, keep_copy)) in table.iter().enumerate() {
            // Far apart, so that each outcome is judged after the previous one's backoff.
            let now = T0 + i as i64 * 3_600_000;
            let got = e.after_network(status, None, redirected, now);
            assert_eq!(got, AfterNetwork { use_answer, keep_copy }, "{status:?} redirected={redirected}");
        }
        assert_eq!(code_of(&e.answer_read_locally("GET", "/api/programs/Unknown00001", &[]).await).0, 503);
    });
}

#[test]
fn a_sync_trigger_comes_again_only_while_entries_wait_for_the_server() {
    let report = |remaining: u64, stopped: Option<&str>| FlushReport {
        remaining,
        stopped: stopped.map(str::to_string),
        ..FlushReport::default()
    };
    for stopped in ["SERVER_UNREACHABLE", "SERVER_BUSY", "BACKING_OFF"] {
        assert!(report(3, Some(stopped)).waits_for_server(), "{stopped}");
        assert!(!report(0, Some(stopped)).waits_for_server(), "{stopped} with nothing left");
    }
    assert!(!report(3, Some("AUTH_REQUIRED")).waits_for_server(), "a password refused waits for the nurse");
    assert!(!report(3, None).waits_for_server());
}

#[test]
fn a_flush_scope_is_all_or_author_and_anything_else_is_bad_input() {
    use tracker_offline_core::flush::FlushScope;
    assert_eq!(FlushScope::parse(None).unwrap(), FlushScope::All);
    assert_eq!(FlushScope::parse(Some("all")).unwrap(), FlushScope::All);
    assert_eq!(FlushScope::parse(Some("author")).unwrap(), FlushScope::Author);
    for bad in ["everyone", "", "ALL"] {
        assert_eq!(FlushScope::parse(Some(bad)).unwrap_err().code(), "BAD_INPUT", "{bad}");
    }
}
