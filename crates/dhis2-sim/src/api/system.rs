//! System endpoints: `/api/ping` (no auth), `/api/system/ping`, `/api/system/info`,
//! `/api/system/id` (alias `/uid`).

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use serde_json::json;

use super::{filtered_json, Params};
use crate::{
    auth::CurrentUser,
    error::{json_response, ApiError},
    fields::FilterOptions,
    state::AppState,
    uid,
};

/// Largest `limit` of `/api/system/id`.
pub const MAX_UID_LIMIT: usize = 10_000;

/// Fake build revision reported by `/api/system/info`.
pub const REVISION: &str = "5ab1e00";

/// Routes that need no authentication.
pub fn public_routes() -> Router<AppState> {
    Router::new().route("/ping", get(ping))
}

/// Routes that need authentication.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/system/ping", get(ping))
        .route("/system/info", get(info))
        .route("/system/info.json", get(info))
        .route("/system/id", get(ids))
        .route("/system/id.json", get(ids))
        .route("/system/uid", get(ids))
        .route("/system/uid.json", get(ids))
}

/// `pong` as `text/plain`.
pub async fn ping() -> Response {
    let mut response = (StatusCode::OK, "pong").into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain;charset=UTF-8"));
    response
}

/// `GET /api/system/info`.
pub async fn info(State(state): State<AppState>, _user: CurrentUser, headers: HeaderMap, params: Params) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let context_path = format!("http://{host}");
    let user_agent = headers.get(header::USER_AGENT).and_then(|h| h.to_str().ok()).unwrap_or("");
    let version = state.version();
    let body = json!({
        "contextPath": context_path,
        "instanceBaseUrl": context_path,
        "userAgent": user_agent,
        "calendar": "iso8601",
        "dateFormat": "yyyy-mm-dd",
        "serverDate": crate::db::now_timestamp(),
        "serverTimeZoneId": "Etc/UTC",
        "serverTimeZoneDisplayName": "Coordinated Universal Time",
        "version": version.to_string(),
        "revision": REVISION,
        "buildTime": "2024-01-01T00:00:00.000",
        "environmentVariable": "DHIS2_HOME",
        "systemId": state.system_id(),
        "systemName": "DHIS2 simulator (tracker-offline)",
        "isMetadataVersionEnabled": false,
        "metadataSyncEnabled": false,
        "emailConfigured": false,
        "redisEnabled": false,
        "encryption": false,
        "clusterHostname": "",
    });
    filtered_json(&body, &params, "*", &FilterOptions::default())
}

/// `GET /api/system/id?limit=N`: `{"codes":[…]}` with N (default 1, at most 10000) new UIDs.
pub async fn ids(_user: CurrentUser, params: Params) -> Result<Response, ApiError> {
    let limit = match params.get("limit") {
        None => 1,
        Some(raw) => raw.trim().parse::<i64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "Value '{raw}' is not valid for parameter limit. It should be of type Integer"
            ))
        })?,
    };
    let n = usize::try_from(limit.max(0)).unwrap_or(0).min(MAX_UID_LIMIT);
    let codes: Vec<String> = (0..n).map(|_| uid::generate()).collect();
    Ok(json_response(StatusCode::OK, &json!({ "codes": codes })))
}
