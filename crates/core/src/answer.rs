//! Reading the server's answer to a write: evidence or nothing. An answer counts only when it
//! parses as the DHIS2 shape expected for the request (legacy import summaries, a `/api/tracker`
//! ImportReport) and names the records it speaks of. Anything else (a captive portal's or an SSO
//! login page's HTML with status 200, unknown JSON, a redirect) means the server was not
//! reached and the write is tried again later. Records an answer does not name stay queued and
//! are sent again (replays are idempotent: known UIDs, `CREATE_AND_UPDATE`), as DHIS2's
//! Android SDK does. A record accepted with conflicts (a value the server ignored) keeps the
//! server's warning for the user.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{http::HttpResponse, writes::Family};

/// How the server answered one request, per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An import answer. Records of the request that are in neither map were not named by
    /// the server: they stay queued and are sent again.
    PerRecord {
        /// Accepted.
        ok: BTreeSet<String>,
        /// Refused with reasons.
        refused: BTreeMap<String, Vec<String>>,
        /// Accepted, with the server's warnings (values it ignored, ...).
        warnings: BTreeMap<String, Vec<String>>,
    },
    /// The import was queued as an asynchronous job: its report is at this URL.
    Job {
        /// `…/tracker/jobs/{id}` as the server gave it (the report is at `…/report`).
        location: String,
    },
    /// Not evidence of anything: try again later (network error, 5xx, timeout, HTML, unknown
    /// JSON, a redirect).
    Retry(String),
    /// A new login is needed.
    AuthRequired,
}

impl Verdict {
    fn per_record() -> Self {
        Verdict::PerRecord { ok: BTreeSet::new(), refused: BTreeMap::new(), warnings: BTreeMap::new() }
    }
}

/// The readable reasons of a legacy import summary (its conflicts and description).
pub fn conflicts_text(summary: &Value) -> Vec<String> {
    let mut reasons: Vec<String> = summary
        .get("conflicts")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|c| {
                    let object = c.get("object").and_then(Value::as_str).unwrap_or_default();
                    let value = c.get("value").and_then(Value::as_str).unwrap_or_default();
                    if object.is_empty() {
                        value.to_string()
                    } else {
                        format!("{object}: {value}")
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(d) = summary.get("description").and_then(Value::as_str) {
        if !d.is_empty() {
            reasons.push(d.to_string());
        }
    }
    reasons
}

/// The `message` of a WebMessage, or the status.
pub fn message_of(body: &Value, status: u16) -> String {
    body.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"))
}

/// The body as a JSON object, if it is one (an HTML page, an empty body or a JSON array is not).
fn json_object(response: &HttpResponse) -> Option<Value> {
    let content_type = response.header("content-type").unwrap_or("application/json").to_ascii_lowercase();
    if content_type.contains("html") {
        return None;
    }
    serde_json::from_slice::<Value>(&response.body).ok().filter(Value::is_object)
}

/// True for a DHIS2 WebMessage (`{httpStatus, httpStatusCode, status, message, ...}`).
fn is_web_message(body: &Value) -> bool {
    body.get("httpStatusCode").is_some_and(Value::is_u64) || body.get("message").is_some_and(Value::is_string)
}

/// Reads a server answer to a bulk request for `uids` (in payload order).
pub fn interpret(response: Option<&HttpResponse>, uids: &[String], family: Family) -> Verdict {
    let Some(response) = response else { return Verdict::Retry("the server cannot be reached".into()) };
    let status = response.status;
    if status >= 500 || status == 408 || status == 429 {
        return Verdict::Retry(format!("HTTP {status}"));
    }
    if (300..400).contains(&status) {
        return Verdict::Retry(format!("HTTP {status}: a redirect, not an import answer"));
    }
    let body = json_object(response);
    if status == 401 {
        let text = String::from_utf8_lossy(&response.body);
        if text.contains("OWNERSHIP_ACCESS_DENIED") || text.contains("PROGRAM_ACCESS_CLOSED") {
            let reason = format!("ownership: {}", message_of(body.as_ref().unwrap_or(&Value::Null), status));
            return refuse_all(uids, reason);
        }
        return Verdict::AuthRequired;
    }
    let Some(body) = body else {
        return if (200..300).contains(&status) {
            Verdict::Retry(format!("HTTP {status} without a DHIS2 answer (a portal or login page?)"))
        } else {
            // A 4xx page that is not DHIS2's JSON: the request was refused as a whole.
            refuse_all(uids, format!("HTTP {status}"))
        };
    };
    let verdict = match family {
        Family::Legacy => read_legacy(&body, uids),
        Family::Tracker => read_tracker(&body, uids),
    };
    match verdict {
        Some(v) => v,
        // DHIS2 refused the request as a whole with a WebMessage (400 bad JSON, 403, 404, ...).
        None if (400..500).contains(&status) && is_web_message(&body) => refuse_all(uids, message_of(&body, status)),
        None if (400..500).contains(&status) => refuse_all(uids, format!("HTTP {status}")),
        None => Verdict::Retry(format!("HTTP {status} with JSON that is not a DHIS2 import answer")),
    }
}

fn refuse_all(uids: &[String], reason: String) -> Verdict {
    Verdict::PerRecord {
        ok: BTreeSet::new(),
        refused: uids.iter().map(|u| (u.clone(), vec![reason.clone()])).collect(),
        warnings: BTreeMap::new(),
    }
}

/// The import summaries of a legacy answer: a WebMessage's `response`, or the summaries
/// themselves (older servers answer them at the top level).
fn legacy_summaries(body: &Value) -> Option<Vec<Value>> {
    for candidate in [body.get("response"), Some(body)].into_iter().flatten() {
        if let Some(list) = candidate.get("importSummaries").and_then(Value::as_array) {
            return Some(list.clone());
        }
        if candidate.get("responseType").and_then(Value::as_str) == Some("ImportSummary") {
            return Some(vec![candidate.clone()]);
        }
    }
    None
}

/// Legacy import summaries, nested ones included (a TEI summary carries its enrollments',
/// an enrollment summary its events'). None when the body holds no summaries at all.
fn read_legacy(body: &Value, uids: &[String]) -> Option<Verdict> {
    let summaries = legacy_summaries(body)?;
    let ours: BTreeSet<&str> = uids.iter().map(String::as_str).collect();
    let mut verdict = Verdict::per_record();
    let by_position = summaries.len() == uids.len();
    for (i, summary) in summaries.iter().enumerate() {
        let uid = match summary.get("reference").and_then(Value::as_str) {
            Some(r) => Some(r.to_string()),
            // A summary without reference names a record only by its position, and only when
            // the server answered one summary per record sent.
            None if by_position => uids.get(i).cloned(),
            None => None,
        };
        if let Some(uid) = uid {
            classify_legacy(summary, &uid, &ours, &mut verdict);
        }
        collect_nested(summary, &ours, &mut verdict);
    }
    Some(verdict)
}

fn collect_nested(summary: &Value, ours: &BTreeSet<&str>, verdict: &mut Verdict) {
    for key in ["enrollments", "events"] {
        let Some(list) = summary.get(key).and_then(|n| n.get("importSummaries")).and_then(Value::as_array) else {
            continue;
        };
        for nested in list {
            if let Some(uid) = nested.get("reference").and_then(Value::as_str) {
                classify_legacy(nested, uid, ours, verdict);
            }
            collect_nested(nested, ours, verdict);
        }
    }
}

fn classify_legacy(summary: &Value, uid: &str, ours: &BTreeSet<&str>, verdict: &mut Verdict) {
    let Verdict::PerRecord { ok, refused, warnings } = verdict else { return };
    if !ours.contains(uid) {
        return;
    }
    let reasons = conflicts_text(summary);
    // A record named by several summaries of one answer is refused if any refuses it, whatever
    // their order: never both accepted and refused, and its warnings only while accepted.
    let mut refuse = |reasons: Vec<String>| {
        ok.remove(uid);
        warnings.remove(uid);
        refused.entry(uid.to_string()).or_default().extend(reasons);
    };
    match summary.get("status").and_then(Value::as_str) {
        Some("SUCCESS") | Some("OK") | Some("WARNING") => {
            let ignored = summary.pointer("/importCount/ignored").and_then(Value::as_u64).unwrap_or(0);
            if ignored > 0 {
                // DHIS2 says SUCCESS but ignored the object: it is not on the server.
                let mut r = reasons;
                if r.is_empty() {
                    r.push("the server ignored the record".into());
                }
                refuse(r);
                return;
            }
            if refused.contains_key(uid) {
                return;
            }
            ok.insert(uid.to_string());
            if !reasons.is_empty() {
                warnings.entry(uid.to_string()).or_default().extend(reasons);
            }
        }
        Some("ERROR") => {
            let mut r = reasons;
            if r.is_empty() {
                r.push("the server refused the record".into());
            }
            refuse(r);
        }
        // A summary without a known status names nothing.
        _ => {}
    }
}

/// The `/api/tracker` answers: an ImportReport, or an async job. None when the body is neither.
fn read_tracker(body: &Value, uids: &[String]) -> Option<Verdict> {
    let job = body.get("response").filter(|r| {
        r.get("responseType").and_then(Value::as_str) == Some("TrackerJob")
            || (r.get("id").is_some_and(Value::is_string) && r.get("location").is_some_and(Value::is_string))
    });
    if let Some(job) = job {
        let location = job.get("location").and_then(Value::as_str).map(str::to_string)?;
        return Some(Verdict::Job { location });
    }
    let status = body.get("status").and_then(Value::as_str)?;
    if !matches!(status, "OK" | "WARNING" | "ERROR") {
        return None;
    }
    let report = body.get("validationReport");
    let bundle = body.get("bundleReport").or_else(|| body.get("persistenceReport"));
    if report.is_none() && bundle.is_none() && body.get("stats").is_none() {
        return None;
    }
    let ours: BTreeSet<&str> = uids.iter().map(String::as_str).collect();
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut warnings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unowned_errors = Vec::new();
    let reports = |key: &str| -> Vec<Value> {
        report.and_then(|r| r.get(key)).and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let line = |e: &Value| {
        let code = e.get("errorCode").and_then(Value::as_str).unwrap_or_default();
        let message = e.get("message").and_then(Value::as_str).unwrap_or_default();
        format!("{code}: {message}")
    };
    for e in reports("errorReports") {
        match e.get("uid").and_then(Value::as_str).filter(|u| ours.contains(u)) {
            Some(uid) => refused.entry(uid.to_string()).or_default().push(line(&e)),
            None => unowned_errors.push(line(&e)),
        }
    }
    for w in reports("warningReports") {
        if let Some(uid) = w.get("uid").and_then(Value::as_str).filter(|u| ours.contains(u)) {
            warnings.entry(uid.to_string()).or_default().push(line(&w));
        }
    }
    // Named as persisted: the object reports of the bundle report, without errors of their own.
    let mut ok: BTreeSet<String> = BTreeSet::new();
    let mut named_any = false;
    if let Some(types) = bundle.and_then(|b| b.get("typeReportMap")).and_then(Value::as_object) {
        for type_report in types.values() {
            for object in type_report.get("objectReports").and_then(Value::as_array).into_iter().flatten() {
                named_any = true;
                let Some(uid) = object.get("uid").and_then(Value::as_str).filter(|u| ours.contains(u)) else {
                    continue;
                };
                let own_errors = object.get("errorReports").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
                if own_errors == 0 && !refused.contains_key(uid) {
                    ok.insert(uid.to_string());
                }
            }
        }
    }
    // Without object reports (a server answering in the ERRORS report mode), the counts are
    // evidence only when they add up: every record sent is created, updated or deleted.
    if !named_any && refused.is_empty() && unowned_errors.is_empty() {
        let stats = body.get("stats");
        let count = |k: &str| stats.and_then(|s| s.get(k)).and_then(Value::as_u64).unwrap_or(0);
        let done = count("created").saturating_add(count("updated")).saturating_add(count("deleted"));
        if count("ignored") == 0 && done == uids.len() as u64 && status != "ERROR" {
            ok.extend(uids.iter().cloned());
        }
    }
    // An error the server could not tie to one of our records, with nothing named: the
    // whole request was refused (e.g. E1000 on the payload).
    if !unowned_errors.is_empty() && ok.is_empty() && refused.is_empty() {
        return Some(Verdict::PerRecord {
            ok,
            refused: uids.iter().map(|u| (u.clone(), unowned_errors.clone())).collect(),
            // Nothing was accepted: no warning on an accepted record to keep.
            warnings: BTreeMap::new(),
        });
    }
    warnings.retain(|uid, _| ok.contains(uid));
    Some(Verdict::PerRecord { ok, refused, warnings })
}

/// Whether the answer to a write the app sent straight through accepts every one of `uids`:
/// import summaries or an ImportReport naming them all as accepted, or (single-object
/// endpoints such as `PUT events/{ev}/{de}` or `PUT enrollments/{id}/completed`) a 204 or a
/// WebMessage whose status is OK without summaries.
pub fn accepts_all(response: &HttpResponse, uids: &[String], family: Family) -> bool {
    match interpret(Some(response), uids, family) {
        Verdict::PerRecord { ok, refused, .. } => refused.is_empty() && uids.iter().all(|u| ok.contains(u)),
        Verdict::Retry(_) if (200..300).contains(&response.status) => {
            if response.body.iter().all(u8::is_ascii_whitespace) {
                return response.header("content-type").is_none_or(|c| !c.to_ascii_lowercase().contains("html"));
            }
            json_object(response).is_some_and(|body| {
                is_web_message(&body)
                    && matches!(body.get("status").and_then(Value::as_str), Some("OK") | Some("SUCCESS"))
                    && body.pointer("/response/status").and_then(Value::as_str).is_none_or(|s| s != "ERROR")
            })
        }
        _ => false,
    }
}

/// True when a WebMessage says the request succeeded (`status` OK or SUCCESS).
pub fn is_import_success(response: &HttpResponse) -> bool {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    matches!(body.get("status").and_then(Value::as_str), Some("OK") | Some("SUCCESS"))
}

/// Whether the answer to a replayed raw request (user settings, dataStore, ...) is the server's
/// acceptance: a 2xx that is not an HTML page (a portal or a login page answers 200 with HTML).
pub fn raw_accepted(response: &HttpResponse) -> bool {
    if !(200..300).contains(&response.status) {
        return response.status == 409 && is_import_success(response);
    }
    let content_type = response.header("content-type").unwrap_or_default().to_ascii_lowercase();
    let looks_html = {
        let start: Vec<u8> =
            response.body.iter().copied().skip_while(u8::is_ascii_whitespace).take(15).collect::<Vec<u8>>();
        let start = String::from_utf8_lossy(&start).to_ascii_lowercase();
        start.starts_with("<!doctype html") || start.starts_with("<html")
    };
    !content_type.contains("html") && !looks_html
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(body: Value) -> HttpResponse {
        HttpResponse { status: 409, headers: vec![], body: body.to_string().into_bytes() }
    }

    /// Found by the fuzz harness (tests/fuzz.rs, target `answers`): an ImportReport refused as a
    /// whole (an error tied to no record) kept the warnings of records it refused.
    #[test]
    fn a_report_refused_as_a_whole_warns_about_nothing() {
        let uid = "EvAnc000001".to_string();
        let body = json!({"status": "ERROR", "validationReport": {
            "errorReports": [{"errorCode": "E1302", "message": "Value not numeric", "trackerType": "EVENT"}],
            "warningReports": [{"warningCode": "E1017", "message": "Attribute value ignored", "uid": uid}]}});
        let response = HttpResponse { status: 409, headers: vec![], body: body.to_string().into_bytes() };
        let Verdict::PerRecord { ok, refused, warnings } =
            interpret(Some(&response), std::slice::from_ref(&uid), Family::Tracker)
        else {
            panic!("a verdict per record")
        };
        assert!(ok.is_empty() && warnings.is_empty(), "{warnings:?}");
        assert_eq!(refused[&uid], vec!["E1302: Value not numeric".to_string()]);
    }

    /// Found by the fuzz harness (tests/fuzz.rs, target `answers`): huge counts in the stats of
    /// an ImportReport without object reports overflowed their sum, and on a 32-bit target (the
    /// browser's wasm32) a count above 2^32 was cut to a small one that could match the records
    /// sent and accept them all.
    #[test]
    fn huge_import_counts_are_no_evidence() {
        let uids = vec!["EvAnc000001".to_string()];
        for stats in [
            json!({"created": u64::MAX, "updated": 1, "deleted": 0, "ignored": 0}),
            json!({"created": (1u64 << 32) + 1, "updated": 0, "deleted": 0, "ignored": 0}),
        ] {
            let body =
                json!({"status": "OK", "validationReport": {"errorReports": [], "warningReports": []}, "stats": stats});
            let response = HttpResponse { status: 200, headers: vec![], body: body.to_string().into_bytes() };
            assert!(!accepts_all(&response, &uids, Family::Tracker), "{stats}");
        }
    }

    /// Found by the fuzz harness (tests/fuzz.rs, target `answers`): a record named by two
    /// summaries, one refusing it, was both accepted and refused when the refusal came first
    /// (and kept a warning of an acceptance that did not stand); the order of the summaries
    /// no longer matters.
    #[test]
    fn a_record_refused_by_one_summary_is_refused_whatever_the_order() {
        let uid = "EvAnc000001".to_string();
        let success = json!({"responseType": "ImportSummary", "status": "SUCCESS", "reference": uid,
            "conflicts": [{"object": "DeWeightKg1", "value": "value ignored"}]});
        let error = json!({"responseType": "ImportSummary", "status": "ERROR", "reference": uid,
            "conflicts": [{"object": "DeWeightKg1", "value": "value_not_numeric"}]});
        let ignored = json!({"responseType": "ImportSummary", "status": "SUCCESS", "reference": uid,
            "importCount": {"imported": 0, "ignored": 1}});
        for summaries in [vec![error.clone(), success.clone()], vec![success.clone(), error], vec![success, ignored]] {
            let body = json!({"httpStatusCode": 409, "status": "ERROR",
                "response": {"responseType": "ImportSummaries", "importSummaries": summaries}});
            let Verdict::PerRecord { ok, refused, warnings } =
                interpret(Some(&answer(body)), std::slice::from_ref(&uid), Family::Legacy)
            else {
                panic!("a verdict per record")
            };
            assert!(ok.is_empty() && warnings.is_empty(), "{ok:?} {warnings:?}");
            assert!(refused.contains_key(&uid));
        }
    }
}
