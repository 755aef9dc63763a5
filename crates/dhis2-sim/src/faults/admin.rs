//! The admin API of the fault layer (`/__sim/…`): fault rules, the request log and its
//! counters, the overload limit and lockouts, for tests to set and read.

use super::*;

/// `/__sim/…`: rules, request log, counters, overload limit, login lockout.
pub(super) async fn admin(state: &AppState, req: Request) -> Response {
    let faults = state.faults();
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    match (method.clone(), path.as_str()) {
        (Method::GET, "/__sim/faults") => json_response(StatusCode::OK, &faults.rules_json()),
        (Method::POST | Method::PUT, "/__sim/faults") => {
            let seed = Query::<BTreeMap<String, String>>::try_from_uri(req.uri())
                .ok()
                .and_then(|q| q.0.get("seed").and_then(|s| s.parse::<u64>().ok()));
            let bytes = match axum::body::to_bytes(req.into_body(), READ_BODY_LIMIT).await {
                Ok(b) => b,
                Err(e) => return ApiError::BadRequest(format!("Cannot read request body: {e}")).into_response(),
            };
            match RuleSet::parse(&bytes) {
                Ok(mut set) => {
                    if set.seed.is_none() {
                        set.seed = seed;
                    }
                    faults.set_rules(set);
                    json_response(StatusCode::OK, &faults.rules_json())
                }
                Err(e) => ApiError::BadRequest(e).into_response(),
            }
        }
        (Method::DELETE, "/__sim/faults") => {
            faults.set_rules(RuleSet::default());
            json_response(StatusCode::OK, &faults.rules_json())
        }
        (Method::GET, "/__sim/requests") => match Query::<LogFilter>::try_from_uri(req.uri()) {
            Ok(Query(filter)) => json_response(StatusCode::OK, &json!(faults.requests(&filter))),
            Err(e) => ApiError::BadRequest(e.body_text()).into_response(),
        },
        (Method::DELETE, "/__sim/requests" | "/__sim/counters") => {
            faults.clear_requests();
            WebMessage::ok(StatusCode::OK, "Request log cleared").into_response()
        }
        (Method::GET, "/__sim/counters") => json_response(StatusCode::OK, &faults.counters_json()),
        (Method::GET, "/__sim/load") => json_response(StatusCode::OK, &faults.load().to_json()),
        (Method::PUT | Method::POST, "/__sim/load") => {
            let bytes = match axum::body::to_bytes(req.into_body(), READ_BODY_LIMIT).await {
                Ok(b) => b,
                Err(e) => return ApiError::BadRequest(format!("Cannot read request body: {e}")).into_response(),
            };
            match faults.load().update(&bytes) {
                Ok(()) => json_response(StatusCode::OK, &faults.load().to_json()),
                Err(e) => ApiError::BadRequest(e).into_response(),
            }
        }
        (Method::DELETE, "/__sim/load") => {
            faults.load().configure(None, faults.load().retry_after_secs());
            json_response(StatusCode::OK, &faults.load().to_json())
        }
        (Method::GET, "/__sim/lockout") => json_response(StatusCode::OK, &state.login_lockout().to_json()),
        (Method::PUT | Method::POST, "/__sim/lockout") => {
            let bytes = match axum::body::to_bytes(req.into_body(), READ_BODY_LIMIT).await {
                Ok(b) => b,
                Err(e) => return ApiError::BadRequest(format!("Cannot read request body: {e}")).into_response(),
            };
            match parse_lockout(&bytes) {
                Ok(lockout) => {
                    state.login_lockout().set_lockout(lockout);
                    json_response(StatusCode::OK, &state.login_lockout().to_json())
                }
                Err(e) => ApiError::BadRequest(e).into_response(),
            }
        }
        (Method::DELETE, "/__sim/lockout") => {
            state.login_lockout().clear();
            json_response(StatusCode::OK, &state.login_lockout().to_json())
        }
        (_, "/__sim/faults" | "/__sim/requests" | "/__sim/counters" | "/__sim/load" | "/__sim/lockout") => {
            ApiError::MethodNotAllowed(format!("Request method '{method}' is not supported")).into_response()
        }
        _ => ApiError::NotFound(format!("No handler found for {method} {path}")).into_response(),
    }
}

/// The body of `PUT /__sim/lockout`: `{"lockoutMs": N}`.
fn parse_lockout(bytes: &[u8]) -> Result<Duration, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("Invalid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("Expected an object {\"lockoutMs\": N}".into());
    };
    if let Some(other) = fields.keys().find(|k| *k != "lockoutMs") {
        return Err(format!("Unknown field: {other}"));
    }
    let ms = fields.get("lockoutMs").ok_or("lockoutMs is required")?;
    ms.as_u64().map(Duration::from_millis).ok_or_else(|| format!("lockoutMs must be a non-negative integer: {ms}"))
}
