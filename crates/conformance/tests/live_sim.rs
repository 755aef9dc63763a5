//! The real core engine against a real `dhis2-sim` process (HTTP over loopback, see
//! `tracker_offline_conformance::live`): what a struggling server does to a flush, with the
//! sim's fault rules, checked on the server's own data. A record the importer always fails on
//! is found by halves and moved aside at the error limit while the rest flows; a reverse proxy's
//! 413 splits requests down to one record; a server process killed in the middle of a flush and
//! started again loses nothing and duplicates nothing; a damaged stored entry is reported and
//! holds nothing back; a password changed on the server while the device was offline is sent
//! once, never again until she logs in online, so DHIS2's failed-login lockout never locks her;
//! captures start no flush while the device backs off, and the backoff grows with each failure.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tracker_offline_conformance::live::{
    admin, admin_call, basic, call_as, capture, device, device_over, now_ms, reference, register, sim_binary, Device,
    Loopback, Sim, NURSE1_PASSWORD, OU, P,
};
use tracker_offline_core::flush::{FlushReport, FlushScope};

/// Runs a test body on one thread with a `LocalSet` (the loopback client needs one).
fn run<F: std::future::Future<Output = ()>>(body: F) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, body);
}

/// A dhis2-sim process of version 2.40.3 with the demo seed: the device's and the test's own
/// loopback clients, and its API base.
fn started_sim() -> (Sim, Loopback, Loopback, String) {
    let sim = Sim::start(&sim_binary(), &["--version", "2.40.3"]);
    let (net, ctl) = (Loopback::new(sim.addr), Loopback::new(sim.addr));
    let api = sim.api();
    (sim, net, ctl, api)
}

/// One flush as the page asks for it; when the device is backing off (nothing sent, a wait
/// given), it waits as asked and asks again.
async fn flush(device: &Device<'_>) -> FlushReport {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let report = device.flush(FlushScope::All, now_ms(), &mut |_| {}).await.expect("flush");
        match report.retry_after_ms {
            Some(wait) if report.requests == 0 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(wait.min(3_000))).await;
            }
            _ => return report,
        }
    }
}

/// `n` registrations made offline (woman, enrollment, visit), national IDs from `first`.
async fn offline_registrations(device: &Device<'_>, api: &str, first: u64, n: u64) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(register(device, api, &format!("{}", first + i), &format!("{}.5", 50 + i)).await);
    }
    out
}

/// What the server holds of a registration: (tracked entity found, enrollments, events).
async fn on_server(net: &Loopback, tei: &str) -> (bool, Vec<String>, Vec<String>) {
    let (status, back) =
        admin_call(net, "GET", &format!("/api/trackedEntityInstances/{tei}.json?fields=*"), None).await;
    if status == 404 {
        return (false, Vec::new(), Vec::new());
    }
    assert_eq!(status, 200, "{back}");
    let enrollments = back["enrollments"].as_array().cloned().unwrap_or_default();
    let events = enrollments
        .iter()
        .flat_map(|e| e["events"].as_array().cloned().unwrap_or_default())
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect();
    (true, enrollments.iter().map(|e| e["enrollment"].as_str().unwrap_or_default().to_string()).collect(), events)
}

/// Women of the clinic in the MCH program, on the server.
async fn women_on_server(net: &Loopback) -> usize {
    let list = admin(
        net,
        "GET",
        &format!("/api/trackedEntityInstances.json?ou={OU}&program={P}&fields=trackedEntityInstance&skipPaging=true"),
        None,
    )
    .await;
    list["trackedEntityInstances"].as_array().map_or(0, Vec::len)
}

/// Every registration on the server exactly as made: the woman once, one enrollment, one visit.
async fn assert_each_once(net: &Loopback, registrations: &[(String, String, String)]) {
    for (tei, enrollment, event) in registrations {
        let (found, enrollments, events) = on_server(net, tei).await;
        assert!(found, "{tei} is on the server");
        assert_eq!(enrollments, std::slice::from_ref(enrollment), "{tei}: her enrollment, once");
        assert_eq!(events, std::slice::from_ref(event), "{tei}: her visit, once");
    }
}

/// Successful import requests (2xx) to `path` logged by the sim whose body names `uid`.
fn imports_naming(log: &Value, path: &str, uid: &str) -> usize {
    log.as_array()
        .expect("request log")
        .iter()
        .filter(|e| e["path"] == path && e["status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
        .filter(|e| e["body"].to_string().contains(uid))
        .count()
}

#[test]
fn a_record_the_importer_always_fails_on_is_found_by_halves_and_moved_aside_while_the_rest_flows() {
    run(async {
        let started = Instant::now();
        let sim = Sim::start(&sim_binary(), &["--version", "2.40.3"]);
        // The device's network, and the district's (admin) one, never down.
        let (net, ctl) = (Loopback::new(sim.addr), Loopback::new(sim.addr));
        let api = sim.api();
        let device = device(&api, &net).await;
        device.set_server_error_limit(3).unwrap();
        let before = women_on_server(&ctl).await;

        // 20 registrations offline; the 8th woman's record crashes the server's importer,
        // whichever API carries her UID.
        net.down.set(true);
        let registrations = offline_registrations(&device, &api, 471_000_000, 20).await;
        let (poison, poison_enrollment, poison_event) = registrations[7].clone();
        let others: Vec<_> = registrations.iter().filter(|r| r.0 != poison).cloned().collect();
        let rules = json!([{"path": "/api", "method": "POST", "bodyContains": poison, "status": 500,
            "message": "java.lang.NullPointerException: Cannot invoke \"Object.getClass()\""}]);
        let (status, set) = admin_call(&ctl, "POST", "/__sim/faults", Some(rules)).await;
        assert_eq!(status, 200, "{set}");
        net.down.set(false);

        // First flush: the 19 others arrive whole; hers (3 entries) waits, not failed yet.
        let report = flush(&device).await;
        assert_eq!((report.sent, report.failed, report.remaining), (57, 0, 3), "{report:?}");
        assert!(report.stopped.is_none(), "{report:?}");
        assert_each_once(&ctl, &others).await;
        assert!(!on_server(&ctl, &poison).await.0);
        // Found by halves: 20 -> 10+10 -> 5+5 -> 2+3 -> 1+1 (or so), not record by record.
        let (_, counters) = admin_call(&ctl, "GET", "/__sim/counters", None).await;
        let tei_posts = counters["byPath"]["POST /api/trackedEntityInstances"].as_u64().unwrap_or(0);
        assert!((3..=10).contains(&tei_posts), "{tei_posts} requests to find her: {counters}");

        // Below the limit her entries stay pending; at the third error they are failures
        // with the server's answer, and nothing else was sent again.
        let report = flush(&device).await;
        assert_eq!((report.sent, report.failed, report.remaining), (0, 0, 3), "{report:?}");
        let report = flush(&device).await;
        assert_eq!((report.sent, report.failed, report.remaining), (0, 3, 0), "{report:?}");
        let status = device.status().await.unwrap();
        assert_eq!((status.pending, status.failed), (0, 3), "{status:?}");
        let failures = device.failures().await.unwrap();
        let hers = failures.iter().find(|f| f.records.contains(&poison)).expect("her registration is a failure");
        assert!(
            hers.reasons.iter().any(|r| r.contains("HTTP 500") && r.contains("NullPointerException")),
            "{:?}",
            hers.reasons
        );
        for uid in [&poison_enrollment, &poison_event] {
            assert!(failures.iter().any(|f| f.records.contains(uid)), "{uid} waits as a failure: {failures:?}");
        }
        let report = flush(&device).await;
        assert_eq!((report.sent, report.requests, report.remaining), (0, 0, 0), "nothing left to send: {report:?}");

        // Exactly once: the server holds 19 more women, and each accepted record went in one
        // successful request only.
        assert_eq!(women_on_server(&ctl).await, before + 19);
        let log = admin(&ctl, "GET", "/__sim/requests?method=POST", None).await;
        for (tei, enrollment, event) in &others {
            assert_eq!(imports_naming(&log, "/api/trackedEntityInstances", tei), 1, "{tei}");
            assert_eq!(imports_naming(&log, "/api/enrollments", enrollment), 1, "{enrollment}");
            assert_eq!(imports_naming(&log, "/api/events", event), 1, "{event}");
        }

        // The importer is fixed; a person retries her registration: it arrives.
        admin_call(&ctl, "DELETE", "/__sim/faults", None).await;
        for f in device.failures().await.unwrap() {
            device.retry(&f.id).await.unwrap();
        }
        let report = flush(&device).await;
        assert_eq!((report.sent, report.failed, report.remaining), (3, 0, 0), "{report:?}");
        assert_each_once(&ctl, &registrations).await;
        assert_eq!(women_on_server(&ctl).await, before + 20);
        eprintln!("poison record: {:.1} s, {tei_posts} requests to find her", started.elapsed().as_secs_f64());
    });
}

/// Bytes nginx lets through in the 413 test: more than any one record's request of a
/// registration (about 480 bytes for a woman, 290 for an enrollment, 390 for a visit, each
/// record and value naming its author), less than any two (about 950, 580 and 770). Checked on
/// the request log below.
const PROXY_LIMIT: u64 = 540;

#[test]
fn a_proxy_refusing_large_bodies_gets_every_registration_one_record_at_a_time() {
    run(async {
        let started = Instant::now();
        let (_sim, net, ctl, api) = started_sim();
        let device = device(&api, &net).await;
        let before = women_on_server(&ctl).await;
        net.down.set(true);
        let registrations = offline_registrations(&device, &api, 473_000_000, 10).await;
        // nginx in front of the server: client_max_body_size fits one record, not two.
        let rules = json!([{"path": "/api", "method": "POST", "bodyLargerThan": PROXY_LIMIT, "status": 413}]);
        let (status, set) = admin_call(&ctl, "POST", "/__sim/faults", Some(rules)).await;
        assert_eq!(status, 200, "{set}");
        admin_call(&ctl, "DELETE", "/__sim/requests", None).await;
        net.down.set(false);

        let report = flush(&device).await;
        assert_eq!((report.sent, report.failed, report.remaining), (30, 0, 0), "{report:?}");
        assert!(report.stopped.is_none(), "{report:?}");
        assert!(device.failures().await.unwrap().is_empty());
        assert_each_once(&ctl, &registrations).await;
        assert_eq!(women_on_server(&ctl).await, before + 10);

        // The proxy refused the large requests; every request that got through carried one
        // record (the limit fits one, not two), and each record went through once.
        let log = admin(&ctl, "GET", "/__sim/requests?method=POST", None).await;
        let entries = log.as_array().expect("log");
        let refused = entries.iter().filter(|e| e["status"] == 413).count();
        assert!(refused >= 3 * 9, "{refused} requests refused with 413: one per split");
        for e in entries.iter().filter(|e| e["status"] != 413) {
            let records =
                e["body"].as_object().and_then(|b| b.values().next()).and_then(Value::as_array).map_or(0, Vec::len);
            assert_eq!(records, 1, "{e}");
            assert!(e["bodySize"].as_u64().unwrap() <= PROXY_LIMIT, "{e}");
        }
        assert!(entries.iter().filter(|e| e["status"] == 413).all(|e| e["bodySize"].as_u64().unwrap() > PROXY_LIMIT));
        for (tei, enrollment, event) in &registrations {
            assert_eq!(imports_naming(&log, "/api/trackedEntityInstances", tei), 1, "{tei}");
            assert_eq!(imports_naming(&log, "/api/enrollments", enrollment), 1, "{enrollment}");
            assert_eq!(imports_naming(&log, "/api/events", event), 1, "{event}");
        }
        eprintln!("413 halving: {:.1} s", started.elapsed().as_secs_f64());
    });
}

#[test]
fn a_server_killed_in_the_middle_of_a_flush_and_restarted_loses_nothing_and_duplicates_nothing() {
    run(async {
        let started = Instant::now();
        let (mut sim, net, ctl, api) = started_sim();
        let device = device(&api, &net).await;
        let before = women_on_server(&ctl).await;
        net.down.set(true);
        let registrations = offline_registrations(&device, &api, 474_000_000, 10).await;
        // The enrollments' import commits, and its answer is held back long enough to kill
        // the process before it is sent: work done on the server, no answer on the device.
        let rules = json!([{"path": "/api/enrollments", "method": "POST", "answerDelayMs": 5_000, "times": 1}]);
        let (status, set) = admin_call(&ctl, "POST", "/__sim/faults", Some(rules)).await;
        assert_eq!(status, 200, "{set}");
        net.down.set(false);

        let mut progress = |_: &FlushReport| {};
        let flushing = device.flush(FlushScope::All, now_ms(), &mut progress);
        let killer = async {
            // Once the enrollments are on the server (their answer not sent yet): kill -9.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (_, enrollments, _) = on_server(&ctl, &registrations[9].0).await;
                if !enrollments.is_empty() {
                    break;
                }
                assert!(Instant::now() < deadline, "the enrollments never reached the server");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sim.kill();
        };
        let (report, ()) = tokio::join!(flushing, killer);
        let report = report.expect("flush");
        assert_eq!(report.stopped.as_deref(), Some("SERVER_UNREACHABLE"), "{report:?}");
        // The women were answered; the enrollments and visits are still pending on the device.
        assert_eq!((report.sent, report.failed, report.remaining), (10, 0, 20), "{report:?}");

        // The server comes back on the same database; the device flushes again.
        sim.restart();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let report = flush(&device).await;
            assert_eq!(report.failed, 0, "{report:?} {:?}", device.failures().await.unwrap());
            if report.remaining == 0 && report.stopped.is_none() {
                break;
            }
            assert!(Instant::now() < deadline, "still not drained: {report:?}");
            tokio::time::sleep(Duration::from_millis(report.retry_after_ms.unwrap_or(500).min(3_000))).await;
        }
        let status = device.status().await.unwrap();
        assert_eq!((status.pending, status.failed), (0, 0), "{status:?}");
        assert_each_once(&ctl, &registrations).await;
        assert_eq!(women_on_server(&ctl).await, before + 10, "no woman twice, none lost");
        eprintln!("kill and restart: {:.1} s", started.elapsed().as_secs_f64());
    });
}

#[test]
fn a_damaged_stored_entry_is_reported_and_the_rest_reaches_the_server_once() {
    use tracker_offline_core::store::{KvStore, MemoryStore, StoreName};
    run(async {
        let started = Instant::now();
        let (_sim, net, ctl, api) = started_sim();
        let store = MemoryStore::new();
        let device = device_over(&api, &net, store.clone()).await;
        let before = women_on_server(&ctl).await;
        net.down.set(true);
        let registrations = offline_registrations(&device, &api, 475_000_000, 5).await;
        // A sixth woman and her enrollment; then her visit, whose stored entry gets damaged.
        let tei = reference(
            &capture(
                &device,
                &api,
                "POST",
                "trackedEntityInstances",
                json!({"trackedEntityType": "TetPerson01",
                "orgUnit": OU, "attributes": [{"attribute": "AtNationId1", "value": "475000099"},
                {"attribute": "AtFirstNam1", "value": "Huda"}, {"attribute": "AtLastName1", "value": "Amro"},
                {"attribute": "AtBirthDat1", "value": "1990-05-06"}]}),
            )
            .await,
        );
        let enrollment = reference(
            &capture(
                &device,
                &api,
                "POST",
                "enrollments",
                json!({"trackedEntityInstance": tei, "program": P,
                "orgUnit": OU, "status": "ACTIVE", "enrollmentDate": "2026-11-28", "incidentDate": "2026-11-28"}),
            )
            .await,
        );
        let keys_before: Vec<String> =
            store.list(StoreName::Outbox).await.unwrap().into_iter().map(|(k, _)| k).collect();
        capture(
            &device,
            &api,
            "POST",
            "events.json",
            json!({"events": [{"trackedEntityInstance": tei, "program": P,
            "programStage": "PsAncVisit1", "enrollment": enrollment, "orgUnit": OU, "status": "ACTIVE",
            "eventDate": "2026-11-28", "dataValues": [{"dataElement": "DeWeightKg1", "value": "61"}]}]}),
        )
        .await;
        let mut new: Vec<(String, Vec<u8>)> = store
            .list(StoreName::Outbox)
            .await
            .unwrap()
            .into_iter()
            .filter(|(k, _)| !keys_before.contains(k))
            .collect();
        assert_eq!(new.len(), 1, "the visit is one stored entry");
        let (key, mut sealed) = new.remove(0);
        let last = sealed.len() - 1;
        sealed[last] ^= 0xff;
        store.raw_put(StoreName::Outbox, &key, sealed).unwrap();
        let status = device.status().await.unwrap();
        assert_eq!((status.pending, status.failed), (17, 1), "never counted as nothing: {status:?}");

        net.down.set(false);
        let report = flush(&device).await;
        assert_eq!((report.sent, report.remaining, report.stopped.as_deref()), (17, 0, None), "{report:?}");
        let failures = device.failures().await.unwrap();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].id, format!("damaged:{key}"));
        assert!(failures[0].reasons[0].starts_with("STORAGE_CORRUPT"), "{:?}", failures[0].reasons);

        // On the server: the five registrations once, the sixth woman and her enrollment once,
        // and no visit of hers (its entry could not be read).
        assert_each_once(&ctl, &registrations).await;
        let (found, enrollments, events) = on_server(&ctl, &tei).await;
        assert!(found);
        assert_eq!(enrollments, std::slice::from_ref(&enrollment));
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(women_on_server(&ctl).await, before + 6);

        // The nurse discards it: gone from the device, nothing else sent.
        device.discard(&failures[0].id).await.unwrap();
        assert!(device.failures().await.unwrap().is_empty());
        let status = device.status().await.unwrap();
        assert_eq!((status.pending, status.failed), (0, 0), "{status:?}");
        eprintln!("damaged entry: {:.1} s", started.elapsed().as_secs_f64());
    });
}

#[test]
fn a_password_changed_on_the_server_is_sent_once_and_never_locks_her_account() {
    use tracker_offline_core::{download::DownloadOptions, CoreError};
    run(async {
        let started = Instant::now();
        let (_sim, net, ctl, api) = started_sim();
        // DHIS2's failed-login lockout on: 4 failures in a row lock the username.
        let (status, set) =
            admin_call(&ctl, "POST", "/api/systemSettings/keyLockMultipleFailedLogins?value=true", None).await;
        assert_eq!(status, 200, "{set}");
        let lockout = admin(&ctl, "GET", "/__sim/lockout", None).await;
        let threshold = lockout["maxFailedAttempts"].as_u64().unwrap();
        assert_eq!(threshold, 4, "{lockout}");
        let device = device(&api, &net).await;
        let before = women_on_server(&ctl).await;

        // Offline, she registers 3 women; meanwhile her password is changed on the server
        // (on another computer, or the district resets it).
        net.down.set(true);
        let mut registrations = offline_registrations(&device, &api, 476_000_000, 3).await;
        const NEW_PASSWORD: &str = "Nurse1!renewed";
        let (status, changed) = call_as(
            &ctl,
            &basic("nurse1", NURSE1_PASSWORD),
            "PUT",
            "/api/me/changePassword",
            Some(json!({"oldPassword": NURSE1_PASSWORD, "newPassword": NEW_PASSWORD})),
        )
        .await;
        assert_eq!(status, 202, "{changed}");
        admin_call(&ctl, "DELETE", "/__sim/requests", None).await;

        // Back online: the first request with the old password is refused.
        net.down.set(false);
        let report = device.flush(FlushScope::All, now_ms(), &mut |_| {}).await.unwrap();
        assert_eq!(report.stopped.as_deref(), Some("AUTH_REQUIRED"), "{report:?}");
        assert_eq!((report.sent, report.failed, report.remaining), (0, 0, 9), "{report:?}");
        assert!(device.status().await.unwrap().auth_required);

        // A busy day after that: more captures, each followed by the flush a capture asks
        // for, the nurse's "send now", session renewals and downloads: nothing goes out.
        for round in 0..threshold * 3 {
            registrations.push(register(&device, &api, &format!("{}", 476_000_100 + round), "61.5").await);
            let report = device.flush(FlushScope::All, now_ms(), &mut |_| {}).await.unwrap();
            assert_eq!((report.stopped.as_deref(), report.requests), (Some("AUTH_REQUIRED"), 0), "{report:?}");
            assert!(!device.renew_session().await, "no session renewal with the refused password");
            if round % 4 == 0 {
                let downloaded = device.download(DownloadOptions::default(), now_ms(), &mut |_| {}).await;
                assert!(matches!(downloaded, Err(CoreError::AuthRequired)), "{downloaded:?}");
            }
        }
        let queued = 3 * registrations.len() as u64;

        // On the server: exactly one request carried the old password; her account is not
        // locked, and she can log in with the new one.
        let refused = admin(&ctl, "GET", "/__sim/requests?status=401", None).await;
        assert_eq!(refused.as_array().unwrap().len(), 1, "one request with the old password: {refused}");
        let lockout = admin(&ctl, "GET", "/__sim/lockout", None).await;
        assert_eq!(lockout["failedLogins"]["nurse1"]["attempts"], 1, "{lockout}");
        assert_eq!(lockout["failedLogins"]["nurse1"]["locked"], false, "{lockout}");
        let (status, me) = call_as(&ctl, &basic("nurse1", NEW_PASSWORD), "GET", "/api/me?fields=username", None).await;
        assert_eq!((status, &me["username"]), (200, &json!("nurse1")), "not locked: {me}");
        assert_eq!(women_on_server(&ctl).await, before, "nothing arrived");

        // The device kept everything.
        let status = device.status().await.unwrap();
        assert_eq!((status.pending, status.failed, status.auth_required), (queued, 0, true), "{status:?}");

        // She logs in online with the new password: the queue drains, exactly once.
        device.login("nurse1", NEW_PASSWORD, now_ms()).await.expect("online login with the new password");
        assert!(!device.status().await.unwrap().auth_required);
        let report = flush(&device).await;
        assert_eq!(
            (report.sent, report.failed, report.remaining, report.stopped.as_deref()),
            (queued, 0, 0, None),
            "{report:?}"
        );
        let report = flush(&device).await;
        assert_eq!((report.sent, report.requests, report.remaining), (0, 0, 0), "nothing left: {report:?}");
        assert_each_once(&ctl, &registrations).await;
        assert_eq!(women_on_server(&ctl).await, before + registrations.len());
        let log = admin(&ctl, "GET", "/__sim/requests?method=POST", None).await;
        for (tei, enrollment, event) in &registrations {
            assert_eq!(imports_naming(&log, "/api/trackedEntityInstances", tei), 1, "{tei}");
            assert_eq!(imports_naming(&log, "/api/enrollments", enrollment), 1, "{enrollment}");
            assert_eq!(imports_naming(&log, "/api/events", event), 1, "{event}");
        }
        let refused = admin(&ctl, "GET", "/__sim/requests?status=401", None).await;
        assert_eq!(refused.as_array().unwrap().len(), 1, "still the one: {refused}");
        eprintln!("changed password: {:.1} s", started.elapsed().as_secs_f64());
    });
}

/// The API requests the sim logged since its log was last cleared.
async fn api_requests(ctl: &Loopback) -> Vec<Value> {
    let log = admin(ctl, "GET", "/__sim/requests", None).await;
    log.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or_default().starts_with("/api"))
        .cloned()
        .collect()
}

#[test]
fn captures_start_no_flush_while_the_device_backs_off_and_the_backoff_grows_with_each_failure() {
    run(async {
        let started = Instant::now();
        let (mut sim, net, ctl, api) = started_sim();
        let device = device(&api, &net).await;
        let before = women_on_server(&ctl).await;

        // The server process dies; she keeps registering. The flush her first capture asks for
        // finds no server: the device backs off (full jitter: 1-5 s after one failure).
        sim.kill();
        let mut registrations = offline_registrations(&device, &api, 478_000_000, 3).await;
        let t0 = now_ms();
        let report = device.flush_if_due(FlushScope::All, t0, &mut |_| {}).await.unwrap();
        assert_eq!(report.stopped.as_deref(), Some("SERVER_UNREACHABLE"), "{report:?}");
        let wait = report.next_try_in_ms.expect("a backoff");
        assert!((1_000..=5_000).contains(&wait), "{report:?}");

        // The server is back, but answers 503 (no Retry-After) to the next two writes. Until
        // the backoff ends, every capture's flush sends nothing at all.
        sim.restart();
        let rules = json!([{"path": "/api", "method": "POST", "status": 503, "times": 2}]);
        let (status, set) = admin_call(&ctl, "POST", "/__sim/faults", Some(rules)).await;
        assert_eq!(status, 200, "{set}");
        let mut due = t0 + wait as i64;
        let mut failures = 1u32;
        for round in 0..2u64 {
            admin_call(&ctl, "DELETE", "/__sim/requests", None).await;
            for i in 0..4 {
                let nid = format!("{}", 478_000_100 + round * 10 + i);
                registrations.push(register(&device, &api, &nid, "58.5").await);
                let report = device.flush_if_due(FlushScope::All, due - 1, &mut |_| {}).await.unwrap();
                assert_eq!((report.stopped.as_deref(), report.requests), (Some("BACKING_OFF"), 0), "{report:?}");
                assert_eq!(report.next_try_in_ms, Some(1), "{report:?}");
                assert_eq!(report.remaining, 3 * registrations.len() as u64, "{report:?}");
            }
            assert_eq!(api_requests(&ctl).await, Vec::<Value>::new(), "nothing reached the server while backing off");
            // Due: one flush, one 503, and a longer backoff (at most 5 s doubled per failure).
            let report = device.flush_if_due(FlushScope::All, due, &mut |_| {}).await.unwrap();
            assert_eq!(report.stopped.as_deref(), Some("SERVER_BUSY"), "{report:?}");
            let posts = api_requests(&ctl).await.into_iter().filter(|r| r["method"] == "POST").count();
            assert_eq!(posts, 1, "one write tried, then the device stopped");
            let wait = report.next_try_in_ms.expect("a backoff");
            failures += 1;
            assert!((1_000..=5_000u64 << (failures - 1)).contains(&wait), "failure {failures}: {report:?}");
            due += wait as i64;
        }

        // The nurse's own "send now" is not held by the device's backoff (the server set no
        // Retry-After): everything arrives once.
        let report = device.flush_if_due(FlushScope::All, due - 1, &mut |_| {}).await.unwrap();
        assert_eq!(report.stopped.as_deref(), Some("BACKING_OFF"), "{report:?}");
        let report = device.flush(FlushScope::All, due - 1, &mut |_| {}).await.unwrap();
        let queued = 3 * registrations.len() as u64;
        assert_eq!(
            (report.sent, report.failed, report.remaining, report.stopped.as_deref()),
            (queued, 0, 0, None),
            "{report:?}"
        );
        // An answer ends the backoff: the next capture's flush may go at once.
        let report = device.flush_if_due(FlushScope::All, due - 1, &mut |_| {}).await.unwrap();
        assert_eq!((report.stopped.as_deref(), report.next_try_in_ms), (None, None), "{report:?}");
        assert_each_once(&ctl, &registrations).await;
        assert_eq!(women_on_server(&ctl).await, before + registrations.len());
        eprintln!("backoff: {:.1} s", started.elapsed().as_secs_f64());
    });
}
