//! `/api/enrollments`: POST (single or `{enrollments:[…]}`; **201 whatever the outcome**, as
//! `EnrollmentController` does in 2.37–2.41), PUT and DELETE by UID, status changes
//! (`/completed`, `/cancelled`, `/incompleted` → 204), notes, GET by UID and the list.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post as post_route, put as put_route},
    Router,
};
use rusqlite::Connection;
use serde_json::json;

use super::{
    api_base, delete_record, in_transaction, list_records, parse_body, parse_object, post_records, reading,
    require_capture, require_search, strip_json, Kind, Legacy,
};
use crate::{
    api::Params,
    auth::CurrentUser,
    error::ApiError,
    fields::FilterOptions,
    state::AppState,
    tracker::{
        import::Strategy,
        query,
        store::{self, EnrollmentRow},
        summary::{self, ImportSummary},
    },
};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/enrollments", get(list).post(post))
        .route("/enrollments.json", get(list).post(post))
        .route("/enrollments/{id}", get(one).put(put).delete(delete))
        .route("/enrollments/{id}/completed", put_route(completed))
        .route("/enrollments/{id}/cancelled", put_route(cancelled))
        .route("/enrollments/{id}/incompleted", put_route(incompleted))
        .route("/enrollments/{id}/note", post_route(note))
}

/// The enrollment `id` unless it is missing or deleted.
fn live_enrollment(conn: &Connection, id: &str) -> Result<Option<EnrollmentRow>, ApiError> {
    Ok(store::enrollment_by_uid(conn, id)?.filter(|e| !e.deleted))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Enrollment not found for ID {id}"))
}

/// `POST /api/enrollments`.
pub async fn post(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    post_records(&state, user, Kind::Enrollment, &headers, &params, body).await
}

/// `PUT /api/enrollments/{id}`.
pub async fn put(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = parse_object(body)?;
    let id = strip_json(&id).to_owned();
    let base = api_base(&headers);
    let summary = in_transaction(&state, user, move |conn, ctx| match live_enrollment(conn, &id)? {
        None => Ok(ImportSummary::error(None, format!("ID {id} doesn't point to a valid enrollment."))),
        Some(e) => ctx.importer(conn, Strategy::Update, base).update_enrollment(&e, &body),
    })
    .await?;
    Ok(summary::respond(summary.web_message()))
}

/// `DELETE /api/enrollments/{id}`.
pub async fn delete(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete_record(&state, user, Kind::Enrollment, &id, &headers).await
}

async fn set_status(
    state: AppState,
    user: crate::db::User,
    id: String,
    status: &'static str,
) -> Result<Response, ApiError> {
    let id = strip_json(&id).to_owned();
    in_transaction(&state, user, move |conn, ctx| {
        let e = live_enrollment(conn, &id)?.ok_or_else(|| not_found(&id))?;
        let path = ctx.ous.get(&e.org_unit).map_or("", |o| o.path.as_str());
        require_capture(&ctx.user, path, &e.org_unit)?;
        Ok(ctx.importer(conn, Strategy::Update, String::new()).set_enrollment_status(&e, status, None)?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /api/enrollments/{id}/completed` → 204.
pub async fn completed(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_status(state, user, id, "COMPLETED").await
}

/// `PUT /api/enrollments/{id}/cancelled` → 204.
pub async fn cancelled(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_status(state, user, id, "CANCELLED").await
}

/// `PUT /api/enrollments/{id}/incompleted` → 204.
pub async fn incompleted(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_status(state, user, id, "ACTIVE").await
}

/// `POST /api/enrollments/{id}/note`: `{value}` or `{notes:[…]}`.
pub async fn note(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let id = strip_json(&id).to_owned();
    let summary = in_transaction(&state, user, move |conn, ctx| {
        let e = live_enrollment(conn, &id)?.ok_or_else(|| not_found(&id))?;
        let mut wrapper = if body.get("notes").is_some() { body } else { json!({ "notes": [body] }) };
        wrapper["status"] = json!(e.status);
        ctx.importer(conn, Strategy::Update, String::new()).update_enrollment(&e, &wrapper)
    })
    .await?;
    Ok(summary::respond(summary.web_message()))
}

/// `GET /api/enrollments/{id}`.
pub async fn one(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let id = strip_json(&id).to_owned();
    let v = reading(&state, user, move |conn, ctx| {
        let e = live_enrollment(conn, &id)?.ok_or_else(|| not_found(&id))?;
        let path = ctx.ous.get(&e.org_unit).map_or("", |o| o.path.as_str());
        require_search(&ctx.user, path, &e.org_unit)?;
        Ok(store::enrollment_json(conn, &ctx.rc(), &e, true)?)
    })
    .await?;
    Ok(crate::api::filtered_json(&v, &params, "*", &FilterOptions::default()))
}

/// `GET /api/enrollments`.
pub async fn list(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    list_records(&state, user, Kind::Enrollment, &params, "*", |conn, ctx, p| {
        query::enrollment_list(conn, &ctx.rc(), &ctx.user, p)
    })
    .await
}
