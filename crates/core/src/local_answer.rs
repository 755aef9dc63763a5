//! Answers the library makes itself instead of the server, in DHIS2's shapes: JSON answers
//! from the local copy, the 404 of a missing object, and the WebMessage the worker gives when it
//! cannot answer (offline and locked, not in the local copy, storage full, bad input), each with
//! its `x-tracker-offline` header saying where it came from.

use serde_json::{json, Value};

use crate::http::HttpResponse;

/// The header of every answer made by the library (its value: `local`, `cache`, `queued`,
/// `default`).
pub const LOCAL_HEADER: (&str, &str) = ("x-tracker-offline", "local");

const JSON: &str = "application/json;charset=UTF-8";

/// A JSON answer made locally, tagged with where it came from (`local`, `queued`, …).
pub fn json_answer(status: u16, body: &Value, tag: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), JSON.into()), (LOCAL_HEADER.0.into(), tag.into())],
        body: body.to_string().into_bytes(),
    }
}

/// The 404 WebMessage DHIS2 gives for a missing object.
pub fn not_found(message: String) -> HttpResponse {
    let body = json!({"httpStatus": "Not Found", "httpStatusCode": 404, "status": "ERROR", "message": message});
    json_answer(404, &body, LOCAL_HEADER.1)
}

/// The HTTP status (and its reason phrase) the worker answers a request with when it fails
/// with the library error `code` ([`crate::CoreError::code`]): the app's request was bad (400),
/// the device is full (507), or the answer is not available here now (503: offline and locked,
/// not in the local copy, storage damaged, …), which an app treats as "try again later".
pub fn error_status(code: &str) -> (u16, &'static str) {
    match code {
        "BAD_INPUT" => (400, "Bad Request"),
        "STORAGE_FULL" => (507, "Insufficient Storage"),
        _ => (503, "Service Unavailable"),
    }
}

/// The answer to a request the worker could not serve: a DHIS2 WebMessage with the library's
/// error `code` beside its readable `message`.
pub fn error_answer(code: &str, message: &str) -> HttpResponse {
    let (status, reason) = error_status(code);
    let body =
        json!({"httpStatus": reason, "httpStatusCode": status, "status": "ERROR", "message": message, "code": code});
    json_answer(status, &body, LOCAL_HEADER.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_is_answered_with_its_status_and_code() {
        for (code, status) in [
            ("BAD_INPUT", 400),
            ("STORAGE_FULL", 507),
            ("VAULT_LOCKED", 503),
            ("OFFLINE_NOT_AVAILABLE", 503),
            ("STORAGE_CORRUPT", 503),
            ("SOMETHING_NEW", 503),
        ] {
            let answer = error_answer(code, "why");
            assert_eq!(answer.status, status, "{code}");
            let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
            assert_eq!(
                (body["httpStatusCode"].as_u64(), body["status"].as_str(), body["code"].as_str()),
                (Some(u64::from(status)), Some("ERROR"), Some(code))
            );
            assert_eq!(body["message"], "why");
            assert_eq!(answer.header("x-tracker-offline"), Some("local"));
            assert_eq!(answer.header("content-type"), Some(JSON));
        }
        assert_eq!(error_answer("STORAGE_FULL", "").header("x-tracker-offline"), Some("local"));
        assert_eq!(not_found("gone".into()).status, 404);
    }
}
