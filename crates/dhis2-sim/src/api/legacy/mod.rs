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
use serde_json::{json, Value};

use super::Params;
use crate::{
    db::{OrgUnit, User},
    error::{json_response, ApiError, WebMessage},
    fields::{FieldFilter, FilterOptions},
    model::Metadata,
    state::AppState,
    tracker::{
        import::{Importer, LegacyOptions, Strategy},
        scope::UserScope,
        store,
        summary::{self, ImportSummaries, ImportSummary},
    },
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

    /// An importer over `conn` with this context (never merging, as the legacy API does not).
    pub fn importer<'a>(&'a self, conn: &'a Connection, strategy: Strategy, base: String) -> Importer<'a> {
        Importer {
            conn,
            md: &self.md,
            user: &self.user,
            ous: &self.ous,
            now: crate::db::now_timestamp(),
            strategy,
            base,
            merge: false,
            legacy: LegacyOptions::default(),
        }
    }
}

/// Runs `work` with the user's context in one transaction, committed when `work` succeeds.
pub async fn in_transaction<T, F>(state: &AppState, user: User, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &Ctx) -> Result<T, ApiError> + Send + 'static,
{
    state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let out = work(&tx, &ctx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
}

/// Runs `work` with the user's context, reading only.
pub async fn reading<T, F>(state: &AppState, user: User, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &Ctx) -> Result<T, ApiError> + Send + 'static,
{
    state
        .db()
        .call(move |conn| {
            let ctx = Ctx::load(conn, &user)?;
            work(conn, &ctx)
        })
        .await
}

/// The record kinds of the legacy API, for the handlers they share.
#[derive(Clone, Copy)]
pub enum Kind {
    /// `/api/trackedEntityInstances`.
    Tei,
    /// `/api/enrollments`.
    Enrollment,
    /// `/api/events`.
    Event,
}

impl Kind {
    /// The key of the list in a POST body and in a list response.
    pub fn list_key(self) -> &'static str {
        match self {
            Kind::Tei => "trackedEntityInstances",
            Kind::Enrollment => "enrollments",
            Kind::Event => "events",
        }
    }

    /// The key of one record's UID.
    pub fn id_key(self) -> &'static str {
        match self {
            Kind::Tei => "trackedEntityInstance",
            Kind::Enrollment => "enrollment",
            Kind::Event => "event",
        }
    }

    /// Whether a POST answers 201 whatever the outcome (`EnrollmentController` in 2.37–2.41).
    fn always_created(self) -> bool {
        matches!(self, Kind::Enrollment)
    }

    /// Imports `items` of this kind.
    fn import(self, importer: &Importer<'_>, items: &[Value]) -> Result<ImportSummaries, ApiError> {
        match self {
            Kind::Tei => importer.import_teis(items),
            Kind::Enrollment => importer.import_enrollments(items),
            Kind::Event => importer.import_events(items),
        }
    }
}

/// `POST` of a list of `kind` (single object or `{<list key>:[…]}`) with the request's strategy.
pub async fn post_records(
    state: &AppState,
    user: User,
    kind: Kind,
    headers: &HeaderMap,
    params: &Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let list = items(&body, kind.list_key())?;
    let strategy = strategy(params)?;
    let base = api_base(headers);
    let opts = legacy_options(params);
    let summaries = in_transaction(state, user, move |conn, ctx| {
        let mut importer = ctx.importer(conn, strategy, base);
        importer.legacy = opts;
        kind.import(&importer, &list)
    })
    .await?;
    let opts = summary::import_options(strategy.as_str(), false);
    Ok(summary::respond(summaries.web_message(&opts, kind.always_created())))
}

/// Imports the one record `body` (UID `id`) with `strategy` and `opts`; answers its summary,
/// or an error summary ("Nothing deleted", "Nothing imported") when the import gave none.
#[allow(clippy::too_many_arguments)]
pub async fn import_one(
    state: &AppState,
    user: User,
    kind: Kind,
    strategy: Strategy,
    opts: LegacyOptions,
    base: String,
    id: String,
    body: Value,
) -> Result<Response, ApiError> {
    let nothing = if strategy == Strategy::Delete { "Nothing deleted" } else { "Nothing imported" };
    let summary = in_transaction(state, user, move |conn, ctx| {
        let mut importer = ctx.importer(conn, strategy, base);
        importer.legacy = opts;
        let out = kind.import(&importer, std::slice::from_ref(&body))?;
        Ok(out.summaries.into_iter().next().unwrap_or_else(|| ImportSummary::error(Some(id), nothing)))
    })
    .await?;
    Ok(summary::respond(summary.web_message()))
}

/// `DELETE` of the `kind` record `id`.
pub async fn delete_record(
    state: &AppState,
    user: User,
    kind: Kind,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let id = strip_json(id).to_owned();
    let body = json!({ kind.id_key(): id });
    import_one(state, user, kind, Strategy::Delete, LegacyOptions::default(), api_base(headers), id, body).await
}

/// `GET` of the `kind` list: `list` renders it, then `fields` (else `default_fields`) applies.
pub async fn list_records<F>(
    state: &AppState,
    user: User,
    kind: Kind,
    params: &Params,
    default_fields: &str,
    list: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(&Connection, &Ctx, &Params) -> Result<Value, ApiError> + Send + 'static,
{
    let p = params.clone();
    let out = reading(state, user, move |conn, ctx| list(conn, ctx, &p)).await?;
    Ok(filtered_list(out, kind.list_key(), &fields_or(params, default_fields)))
}

/// Parses a request body that must be one JSON object (400 otherwise).
pub fn parse_object(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = parse_body(body)?;
    if !body.is_object() {
        return Err(ApiError::BadRequest("JSON parse error: expected a JSON object".into()));
    }
    Ok(body)
}

/// 409 unless the user may capture in the org unit `org_unit` (at `ou_path`).
pub fn require_capture(user: &UserScope, ou_path: &str, org_unit: &str) -> Result<(), ApiError> {
    if user.can_capture(ou_path) {
        return Ok(());
    }
    Err(ApiError::Conflict(format!("[User has no write access to organisation unit: {org_unit}]")))
}

/// 409 unless the user may search in the org unit `org_unit` (at `ou_path`).
pub fn require_search(user: &UserScope, ou_path: &str, org_unit: &str) -> Result<(), ApiError> {
    if user.can_search(ou_path) {
        return Ok(());
    }
    Err(ApiError::Conflict(format!("[User has no read access to organisation unit: {org_unit}]")))
}

/// The dxf2 `ImportOptions` flags of a request (`program` is the TEI PUT's own parameter).
pub fn legacy_options(params: &Params) -> LegacyOptions {
    let on = |name: &str| params.get(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    LegacyOptions {
        program: None,
        ignore_empty_collection: on("ignoreEmptyCollection"),
        merge_data_values: on("mergeDataValues"),
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
