//! The legacy tracker endpoints Tracker Capture uses (`/api/trackedEntityInstances`,
//! `/api/enrollments`, `/api/events`; deprecated in 2.36, removed in 2.42, where they answer
//! 404 like any unknown path).

pub mod enrollments;
pub mod events;
pub mod tei;

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, FromRequestParts, OriginalUri},
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use rusqlite::Connection;
use serde_json::Value;

use super::Params;
use crate::{
    db::{OrgUnit, User},
    error::{json_response, ApiError, WebMessage},
    fields::{FieldFilter, FilterOptions},
    model::Metadata,
    state::AppState,
    tracker::{import::Strategy, scope::UserScope, store},
};

/// Routes of the legacy tracker API.
pub fn routes() -> Router<AppState> {
    Router::new().merge(tei::routes()).merge(enrollments::routes()).merge(events::routes())
}

/// Extractor that makes a legacy endpoint answer 404 on servers where it no longer exists.
pub struct Legacy;

impl FromRequestParts<AppState> for Legacy {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.version().minor >= 42 {
            let path = parts.extensions.get::<OriginalUri>().map_or_else(|| parts.uri.path(), |o| o.0.path());
            return Err(ApiError::NotFound(format!("No handler found for {} {path}", parts.method)));
        }
        Ok(Legacy)
    }
}

/// Parses a request body as JSON: 400 WebMessage when it is not JSON.
pub fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| ApiError::BadRequest(format!("Could not read the request body: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("Required request body is missing".into()));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("JSON parse error: {e}")))
}

/// The objects of a POST body: the wrapper's list under `key`, or the single object.
pub fn items(body: &Value, key: &str) -> Result<Vec<Value>, ApiError> {
    match body {
        Value::Object(m) => match m.get(key) {
            Some(Value::Array(list)) => Ok(list.clone()),
            Some(_) => Err(ApiError::BadRequest(format!("JSON parse error: '{key}' must be an array"))),
            None => Ok(vec![body.clone()]),
        },
        _ => Err(ApiError::BadRequest("JSON parse error: expected a JSON object".into())),
    }
}

/// `http://host/api`, the base of `href` links.
pub fn api_base(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}/api")
}

/// Metadata, the user's scope and the org units, loaded together.
pub struct Ctx {
    /// Metadata.
    pub md: Metadata,
    /// The user's scope.
    pub user: UserScope,
    /// Org units by UID.
    pub ous: HashMap<String, OrgUnit>,
}

impl Ctx {
    /// Loads everything for `user`.
    pub fn load(conn: &Connection, user: &User) -> Result<Self, ApiError> {
        Ok(Self { md: Metadata::load(conn)?, user: UserScope::load(conn, user)?, ous: store::org_units(conn)? })
    }

    /// The render context.
    pub fn rc(&self) -> store::RenderCtx<'_> {
        store::RenderCtx { md: &self.md, ous: &self.ous }
    }
}

/// The strategy of a request (`strategy`, else `importStrategy`).
pub fn strategy(params: &Params) -> Result<Strategy, ApiError> {
    Strategy::parse(params.get("strategy").or_else(|| params.get("importStrategy")))
}

/// `fields` of the request, or `default`.
pub fn fields_or(params: &Params, default: &str) -> FieldFilter {
    params.fields().unwrap_or_else(|| FieldFilter::parse(default))
}

/// Whether the requested fields need enrollments/events (DHIS2 looks for `*` or the names).
pub fn wants_children(params: &Params) -> bool {
    let joined: String = params.all("fields").collect::<Vec<_>>().join(",");
    joined.trim().is_empty() || joined.contains('*') || joined.contains("enrollments") || joined.contains("events")
}

/// Applies `filter` to each element of `out[key]` and answers 200.
pub fn filtered_list(mut out: Value, key: &str, filter: &FieldFilter) -> Response {
    if let Some(list) = out.get(key).cloned() {
        out[key] = filter.apply(&list, &FilterOptions::default());
    }
    json_response(StatusCode::OK, &out)
}

/// A 401 WebMessage with a tracker ownership message (`OWNERSHIP_ACCESS_DENIED`).
pub fn ownership_denied(message: &str) -> Response {
    WebMessage::error(StatusCode::UNAUTHORIZED, message).into_response()
}

/// Strips a `.json` suffix from a path id.
pub fn strip_json(id: &str) -> &str {
    id.strip_suffix(".json").unwrap_or(id)
}
