//! Table tests of how the flush reads the server's answers to writes: only an answer in the
//! DHIS2 shape expected for the request, naming the records, counts; everything else is "not
//! reached" (retried) or leaves the unnamed records queued.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use tracker_offline_core::{
    answer::{interpret, raw_accepted, Verdict},
    http::HttpResponse,
    writes::Family,
};

fn answer(status: u16, content_type: &str, body: &str) -> HttpResponse {
    HttpResponse { status, headers: vec![("content-type".into(), content_type.into())], body: body.as_bytes().to_vec() }
}

fn json_answer(status: u16, body: Value) -> HttpResponse {
    answer(status, "application/json;charset=UTF-8", &body.to_string())
}

fn uids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// (accepted, refused, warned) UIDs of a per-record verdict.
fn split(v: Verdict) -> (Vec<String>, Vec<String>, Vec<String>) {
    match v {
        Verdict::PerRecord { ok, refused, warnings } => {
            (ok.into_iter().collect(), refused.into_keys().collect(), warnings.into_keys().collect())
        }
        other => panic!("expected a per-record verdict, got {other:?}"),
    }
}

const A: &str = "Ev000000001";
const B: &str = "Ev000000002";

#[test]
fn html_with_200_is_not_evidence_in_either_family() {
    let portal = answer(200, "text/html", "<!DOCTYPE html><html><body>Login</body></html>");
    for family in [Family::Legacy, Family::Tracker] {
        assert!(matches!(interpret(Some(&portal), &uids(&[A]), family), Verdict::Retry(_)), "{family:?}");
    }
    // Served without a content type, still HTML.
    let bare = HttpResponse { status: 200, headers: vec![], body: b"<html><body>Sign in</body></html>".to_vec() };
    assert!(matches!(interpret(Some(&bare), &uids(&[A]), Family::Legacy), Verdict::Retry(_)));
    assert!(!raw_accepted(&bare));
    assert!(!raw_accepted(&portal));
    assert!(raw_accepted(&json_answer(200, json!({"status": "OK"}))));
    assert!(raw_accepted(&HttpResponse { status: 204, headers: vec![], body: vec![] }));
}

#[test]
fn unknown_json_and_redirects_are_not_evidence() {
    let unknown = json_answer(200, json!({"hello": "world"}));
    assert!(matches!(interpret(Some(&unknown), &uids(&[A]), Family::Legacy), Verdict::Retry(_)));
    assert!(matches!(interpret(Some(&unknown), &uids(&[A]), Family::Tracker), Verdict::Retry(_)));
    let redirect = answer(302, "text/html", "");
    assert!(matches!(interpret(Some(&redirect), &uids(&[A]), Family::Legacy), Verdict::Retry(_)));
    let array = json_answer(200, json!([1, 2]));
    assert!(matches!(interpret(Some(&array), &uids(&[A]), Family::Tracker), Verdict::Retry(_)));
}

#[test]
fn legacy_success_with_conflicts_is_accepted_with_the_servers_warning() {
    let body = json!({"httpStatusCode": 200, "status": "OK", "response": {"responseType": "ImportSummaries",
        "importSummaries": [
            {"responseType": "ImportSummary", "status": "SUCCESS", "reference": A,
             "importCount": {"imported": 0, "updated": 1, "ignored": 0, "deleted": 0},
             "conflicts": [{"object": "DeWeight001", "value": "value_not_numeric"}]},
            {"responseType": "ImportSummary", "status": "SUCCESS", "reference": B,
             "importCount": {"imported": 1, "updated": 0, "ignored": 0, "deleted": 0}}]}});
    let (ok, refused, warned) = split(interpret(Some(&json_answer(200, body)), &uids(&[A, B]), Family::Legacy));
    assert_eq!(ok, uids(&[A, B]));
    assert!(refused.is_empty());
    assert_eq!(warned, uids(&[A]));
}

#[test]
fn legacy_web_message_error_with_a_2xx_status_refuses() {
    // POST /api/enrollments answers 201 even for ERROR (2.37-2.41).
    let body = json!({"httpStatus": "Created", "httpStatusCode": 201, "status": "OK",
        "response": {"responseType": "ImportSummaries", "status": "ERROR", "importSummaries": [
            {"responseType": "ImportSummary", "status": "ERROR", "reference": A,
             "description": "TrackedEntityInstance Te000000009 already has an active enrollment in program PrMchProg01"}]}});
    let (ok, refused, _) = split(interpret(Some(&json_answer(201, body)), &uids(&[A]), Family::Legacy));
    assert!(ok.is_empty());
    assert_eq!(refused, uids(&[A]));
}

#[test]
fn legacy_nested_summaries_are_read() {
    // A TEI summary carrying its enrollment's summary, which refuses.
    let tei = "Te000000001";
    let enrollment = "En000000001";
    let body = json!({"httpStatusCode": 409, "status": "ERROR", "response": {"responseType": "ImportSummaries",
        "importSummaries": [{"responseType": "ImportSummary", "status": "SUCCESS", "reference": tei,
            "enrollments": {"responseType": "ImportSummaries", "importSummaries": [
                {"responseType": "ImportSummary", "status": "ERROR", "reference": enrollment,
                 "conflicts": [{"object": "Enrollment", "value": "Enrollment date is in the future"}]}]}}]}});
    let (ok, refused, _) = split(interpret(Some(&json_answer(409, body)), &uids(&[tei, enrollment]), Family::Legacy));
    assert_eq!(ok, uids(&[tei]));
    assert_eq!(refused, uids(&[enrollment]));
}

#[test]
fn legacy_summaries_that_omit_a_record_leave_it_queued() {
    let body = json!({"httpStatusCode": 200, "status": "OK", "response": {"responseType": "ImportSummaries",
        "importSummaries": [{"responseType": "ImportSummary", "status": "SUCCESS", "reference": A}]}});
    let (ok, refused, _) = split(interpret(Some(&json_answer(200, body)), &uids(&[A, B]), Family::Legacy));
    assert_eq!(ok, uids(&[A]));
    assert!(refused.is_empty(), "B is neither accepted nor refused: sent again");
    // Summaries without references name records by position only when one per record came.
    let body = json!({"httpStatusCode": 200, "status": "OK", "response": {"responseType": "ImportSummaries",
        "importSummaries": [{"responseType": "ImportSummary", "status": "SUCCESS"}]}});
    let (ok, _, _) = split(interpret(Some(&json_answer(200, body)), &uids(&[A, B]), Family::Legacy));
    assert!(ok.is_empty());
}

#[test]
fn legacy_success_that_ignored_the_record_is_not_acceptance() {
    let body = json!({"httpStatusCode": 200, "status": "OK", "response": {"responseType": "ImportSummaries",
        "importSummaries": [{"responseType": "ImportSummary", "status": "SUCCESS", "reference": A,
            "importCount": {"imported": 0, "updated": 0, "ignored": 1, "deleted": 0},
            "description": "Event date is required"}]}});
    let (ok, refused, _) = split(interpret(Some(&json_answer(200, body)), &uids(&[A]), Family::Legacy));
    assert!(ok.is_empty());
    assert_eq!(refused, uids(&[A]));
}

#[test]
fn tracker_job_answers_point_to_the_report() {
    let body = json!({"httpStatus": "OK", "httpStatusCode": 200, "status": "OK", "message": "Tracker job added",
        "response": {"responseType": "TrackerJob", "id": "LkXBUdIgbe3",
                     "location": "https://dhis2.example/api/tracker/jobs/LkXBUdIgbe3"}});
    assert_eq!(
        interpret(Some(&json_answer(200, body)), &uids(&[A]), Family::Tracker),
        Verdict::Job { location: "https://dhis2.example/api/tracker/jobs/LkXBUdIgbe3".into() }
    );
    // 2.41+: no responseType, still a job.
    let body = json!({"httpStatus": "OK", "httpStatusCode": 200, "status": "OK", "message": "Tracker job added",
        "response": {"id": "LkXBUdIgbe3", "location": "/api/tracker/jobs/LkXBUdIgbe3"}});
    assert!(matches!(interpret(Some(&json_answer(200, body)), &uids(&[A]), Family::Tracker), Verdict::Job { .. }));
}

#[test]
fn tracker_report_names_the_persisted_records() {
    let report = |objects: Vec<&str>, errors: Value, warnings: Value| {
        json!({"status": if errors.as_array().unwrap().is_empty() { "OK" } else { "ERROR" },
            "validationReport": {"errorReports": errors, "warningReports": warnings},
            "stats": {"created": objects.len(), "updated": 0, "deleted": 0, "ignored": 0, "total": objects.len()},
            "bundleReport": {"typeReportMap": {"EVENT": {"trackerType": "EVENT", "stats": {},
                "objectReports": objects.iter().map(|u| json!({"trackerType": "EVENT", "uid": u, "errorReports": []})).collect::<Vec<_>>()}}}})
    };
    // Both named.
    let (ok, _, _) = split(interpret(
        Some(&json_answer(200, report(vec![A, B], json!([]), json!([])))),
        &uids(&[A, B]),
        Family::Tracker,
    ));
    assert_eq!(ok, uids(&[A, B]));
    // One named, one refused.
    let errors = json!([{"uid": B, "errorCode": "E1083", "message": "User does not have authority to update a completed event", "trackerType": "EVENT"}]);
    let (ok, refused, _) =
        split(interpret(Some(&json_answer(409, report(vec![A], errors, json!([])))), &uids(&[A, B]), Family::Tracker));
    assert_eq!((ok, refused), (uids(&[A]), uids(&[B])));
    // One omitted: stays queued.
    let (ok, refused, _) = split(interpret(
        Some(&json_answer(200, report(vec![A], json!([]), json!([])))),
        &uids(&[A, B]),
        Family::Tracker,
    ));
    assert_eq!(ok, uids(&[A]));
    assert!(refused.is_empty());
    // A warning on an accepted record is kept.
    let warnings =
        json!([{"uid": A, "errorCode": "E1017", "message": "Attribute value ignored", "trackerType": "EVENT"}]);
    let (ok, _, warned) =
        split(interpret(Some(&json_answer(200, report(vec![A], json!([]), warnings))), &uids(&[A]), Family::Tracker));
    assert_eq!((ok, warned), (uids(&[A]), uids(&[A])));
}

#[test]
fn tracker_report_without_object_reports_counts_only_when_the_stats_add_up() {
    let stats = |created: u64, ignored: u64| {
        json!({"status": "OK", "validationReport": {"errorReports": [], "warningReports": []},
            "stats": {"created": created, "updated": 0, "deleted": 0, "ignored": ignored, "total": created + ignored}})
    };
    let (ok, _, _) = split(interpret(Some(&json_answer(200, stats(2, 0))), &uids(&[A, B]), Family::Tracker));
    assert_eq!(ok, uids(&[A, B]));
    let (ok, refused, _) = split(interpret(Some(&json_answer(200, stats(1, 1))), &uids(&[A, B]), Family::Tracker));
    assert!(ok.is_empty() && refused.is_empty(), "which one was ignored is unknown: both sent again");
}

#[test]
fn a_refusal_of_the_whole_request_refuses_every_record() {
    let body = json!({"httpStatus": "Bad Request", "httpStatusCode": 400, "status": "ERROR", "message": "Invalid JSON payload"});
    for family in [Family::Legacy, Family::Tracker] {
        let (ok, refused, _) = split(interpret(Some(&json_answer(400, body.clone())), &uids(&[A, B]), family));
        assert!(ok.is_empty());
        assert_eq!(refused, uids(&[A, B]));
    }
}
