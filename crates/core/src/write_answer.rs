//! The answer the app expects when its write is queued instead of sent: the legacy
//! endpoints' WebMessages with import summaries, and `/api/tracker`'s bundle report naming
//! every record the write creates or updates.

use serde_json::{json, Value};

use crate::{
    http::HttpResponse,
    local_answer::LOCAL_HEADER,
    records::{text, Object},
    writes::{Mutation, PreparedWrite},
};

pub(crate) fn web_message(status: u16, response: Value) -> HttpResponse {
    let (http_status, web_status) = match status {
        200 => ("OK", "OK"),
        202 => ("Accepted", "OK"),
        _ => ("OK", "OK"),
    };
    let body = json!({"httpStatus": http_status, "httpStatusCode": status, "status": web_status,
        "message": "Import was successful.", "response": response});
    local_json(status, &body)
}

pub(crate) fn local_json(status: u16, body: &Value) -> HttpResponse {
    crate::local_answer::json_answer(status, body, "queued")
}

pub(crate) fn import_summary(reference: &str, imported: bool) -> Value {
    json!({"responseType": "ImportSummary", "status": "SUCCESS",
        "importCount": {"imported": u8::from(imported), "updated": u8::from(!imported), "ignored": 0, "deleted": 0},
        "reference": reference})
}

pub(crate) fn import_summaries(refs: &[(String, bool)]) -> Value {
    let imported = refs.iter().filter(|(_, i)| *i).count();
    json!({"responseType": "ImportSummaries", "status": "SUCCESS", "imported": imported, "updated": refs.len() - imported,
        "deleted": 0, "ignored": 0, "total": refs.len(),
        "importSummaries": refs.iter().map(|(r, i)| import_summary(r, *i)).collect::<Vec<_>>()})
}

/// The answer the app gets for a queued write, in the shape the server would give.
/// `existed(uid)` tells whether a record was already known (imported vs updated counts).
pub fn synthetic_response(
    prepared: &PreparedWrite,
    job_id: &str,
    api_base: &str,
    existed: &dyn Fn(&str) -> bool,
) -> HttpResponse {
    let refs_of = |items: &[Object], key: &str| -> Vec<(String, bool)> {
        items.iter().filter_map(|o| text(o, key)).map(|u| (u.to_string(), !existed(u))).collect()
    };
    match &prepared.mutation {
        Mutation::Teis { teis, replace: false } => {
            web_message(200, import_summaries(&refs_of(teis, "trackedEntityInstance")))
        }
        Mutation::Teis { teis, replace: true } => web_message(
            200,
            import_summary(teis.first().and_then(|t| text(t, "trackedEntityInstance")).unwrap_or(""), false),
        ),
        Mutation::Enrollments(list) if prepared.method == "PUT" => {
            web_message(200, import_summary(list.first().and_then(|e| text(e, "enrollment")).unwrap_or(""), false))
        }
        Mutation::Enrollments(list) => web_message(200, import_summaries(&refs_of(list, "enrollment"))),
        Mutation::Events(list) if prepared.method == "PUT" => {
            web_message(200, import_summary(list.first().and_then(|e| text(e, "event")).unwrap_or(""), false))
        }
        Mutation::Events(list) => web_message(200, import_summaries(&refs_of(list, "event"))),
        Mutation::EventValue { event, .. } | Mutation::EventDate { event, .. } => {
            web_message(200, import_summary(event, false))
        }
        Mutation::EventNote { event, .. } => web_message(200, import_summary(event, false)),
        Mutation::EnrollmentStatus { .. } => {
            HttpResponse { status: 204, headers: vec![(LOCAL_HEADER.0.into(), "queued".into())], body: vec![] }
        }
        Mutation::Delete { uid, .. } => {
            let mut s = import_summary(uid, false);
            s["importCount"] = json!({"imported": 0, "updated": 0, "ignored": 0, "deleted": 1});
            web_message(200, s)
        }
        Mutation::TrackerImport { asynchronous: true, .. } => local_json(
            200,
            &json!({"httpStatus": "OK", "httpStatusCode": 200, "status": "OK", "message": "Tracker job added",
                "response": {"responseType": "TrackerJob", "id": job_id, "location": format!("{api_base}/tracker/jobs/{job_id}")}}),
        ),
        Mutation::TrackerImport { .. } => local_json(200, &tracker_report(prepared)),
        Mutation::Raw => local_json(
            202,
            &json!({"httpStatus": "Accepted", "httpStatusCode": 202, "status": "OK",
                "message": "The server cannot be reached; the request is queued and will be sent when it can."}),
        ),
    }
}

/// The records nested under `key` of each of `parents`.
pub(crate) fn nested<'a>(parents: &[&'a Object], key: &str) -> Vec<&'a Object> {
    parents.iter().filter_map(|p| p.get(key).and_then(Value::as_array)).flatten().filter_map(Value::as_object).collect()
}

/// The ImportReport of a queued `/api/tracker` import.
pub fn tracker_report(prepared: &PreparedWrite) -> Value {
    let Mutation::TrackerImport { teis, enrollments, events, delete, .. } = &prepared.mutation else {
        return Value::Null;
    };
    // Nested records count as the server counts them: a tracked entity's enrollments, an
    // enrollment's events (the Capture app registers a woman, her enrollment and its first
    // visit in one nested payload and reads their UIDs here).
    let teis: Vec<&Object> = teis.iter().collect();
    let mut enrollments: Vec<&Object> = enrollments.iter().collect();
    enrollments.extend(nested(&teis, "enrollments"));
    let mut events: Vec<&Object> = events.iter().collect();
    events.extend(nested(&enrollments, "events"));
    let report = |kind: &str, items: &[&Object], key: &str| {
        json!({"trackerType": kind, "stats": {"created": if *delete { 0 } else { items.len() }, "updated": 0,
            "deleted": if *delete { items.len() } else { 0 }, "ignored": 0, "total": items.len()},
            "objectReports": items.iter().filter_map(|o| text(o, key)).map(|u| json!({"trackerType": kind, "uid": u, "errorReports": []})).collect::<Vec<_>>()})
    };
    let total = teis.len() + enrollments.len() + events.len();
    json!({"status": "OK",
        "validationReport": {"errorReports": [], "warningReports": []},
        "stats": {"created": if *delete { 0 } else { total }, "updated": 0, "deleted": if *delete { total } else { 0 }, "ignored": 0, "total": total},
        "bundleReport": {"status": "OK", "typeReportMap": {
            "TRACKED_ENTITY": report("TRACKED_ENTITY", &teis, "trackedEntityInstance"),
            "ENROLLMENT": report("ENROLLMENT", &enrollments, "enrollment"),
            "EVENT": report("EVENT", &events, "event")}}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{random::DeterministicRandom, records::is_uid, writes::prepare_write};

    /// The Capture app registers a woman as one nested payload (`trackedEntities[].enrollments[]
    /// .events[]`, the enrollment without a UID: the server makes it) to `/api/41/tracker?async=
    /// false`, and reads the UIDs of the new woman AND of her enrollment from the bundle report
    /// (`typeReportMap.ENROLLMENT.objectReports[0].uid`) to open her dashboard. Offline, the local
    /// answer named only the top-level lists: no enrollment, so the app could not go on.
    #[test]
    fn a_nested_registration_is_answered_with_every_record_it_creates() {
        let body = json!({"trackedEntities": [{"trackedEntity": "CaptureTei1", "orgUnit": "OuBaniNaim1",
            "trackedEntityType": "TetPerson01", "attributes": [{"attribute": "AtFirstNam1", "value": "Sawsan"}],
            "enrollments": [{"program": "PrMchProg01", "status": "ACTIVE", "orgUnit": "OuBaniNaim1",
                "occurredAt": "2026-12-01", "enrolledAt": "2026-12-01",
                "events": [{"event": "CaptureEvt1", "programStage": "PsAncVisit1", "program": "PrMchProg01",
                    "orgUnit": "OuBaniNaim1", "status": "ACTIVE", "occurredAt": "2026-12-01", "dataValues": []}]}]}]});
        let rng = DeterministicRandom::new(2);
        let prepared = prepare_write(
            "POST",
            "/api/41/tracker?async=false",
            "/api",
            41,
            "application/json",
            body.to_string().as_bytes(),
            &rng,
        )
        .unwrap();
        let sent: Value = serde_json::from_slice(&prepared.body).unwrap();
        let enrollment = sent["trackedEntities"][0]["enrollments"][0]["enrollment"].as_str().unwrap().to_string();
        assert!(is_uid(&enrollment), "the enrollment is given its UID here: {sent}");
        let report = tracker_report(&prepared);
        let types = &report["bundleReport"]["typeReportMap"];
        assert_eq!(types["TRACKED_ENTITY"]["objectReports"][0]["uid"], "CaptureTei1", "{report}");
        assert_eq!(types["ENROLLMENT"]["objectReports"][0]["uid"], enrollment.as_str(), "{report}");
        assert_eq!(types["EVENT"]["objectReports"][0]["uid"], "CaptureEvt1", "{report}");
        assert_eq!(report["stats"]["created"], 3, "{report}");
        assert_eq!(types["ENROLLMENT"]["stats"]["created"], 1, "{report}");
    }
}
