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
use serde_json::{json, Value};

use super::{api_base, fields_or, filtered_list, items, parse_body, strategy, strip_json, Ctx, Legacy};
use crate::{
    api::Params,
    auth::CurrentUser,
    error::{ApiError, WebMessage},
    fields::FilterOptions,
    state::AppState,
    tracker::{
        import::{Importer, Strategy},
        query, store,
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

fn importer<'a>(conn: &'a rusqlite::Connection, ctx: &'a Ctx, strategy: Strategy, base: String) -> Importer<'a> {
    Importer {
        conn,
        md: &ctx.md,
        user: &ctx.user,
        ous: &ctx.ous,
        now: crate::db::now_timestamp(),
        strategy,
        base,
        merge: false,
    }
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
    let body = parse_body(body)?;
    let list = items(&body, "enrollments")?;
    let strategy = strategy(&params)?;
    let base = api_base(&headers);
    let summaries = state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let out = importer(&tx, &ctx, strategy, base).import_enrollments(&list)?;
            tx.commit()?;
            Ok(out)
        })
        .await?;
    let opts = summary::import_options(strategy.as_str(), false);
    Ok(summary::respond(summaries.web_message(&opts, true)))
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
    let body = parse_body(body)?;
    if !body.is_object() {
        return Err(ApiError::BadRequest("JSON parse error: expected a JSON object".into()));
    }
    let id = strip_json(&id).to_owned();
    let base = api_base(&headers);
    let summary = state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let out = match store::enrollment_by_uid(&tx, &id)?.filter(|e| !e.deleted) {
                None => ImportSummary::error(None, format!("ID {id} doesn't point to a valid enrollment.")),
                Some(e) => importer(&tx, &ctx, Strategy::Update, base).update_enrollment(&e, &body)?,
            };
            tx.commit()?;
            Ok(out)
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
    let id = strip_json(&id).to_owned();
    let base = api_base(&headers);
    let summary = state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let body = json!({ "enrollment": id });
            let out = importer(&tx, &ctx, Strategy::Delete, base).import_enrollments(std::slice::from_ref(&body))?;
            tx.commit()?;
            Ok(out.summaries.into_iter().next().unwrap_or_else(|| ImportSummary::error(Some(id), "Nothing deleted")))
        })
        .await?;
    Ok(summary::respond(summary.web_message()))
}

async fn set_status(
    state: AppState,
    user: crate::db::User,
    id: String,
    status: &'static str,
) -> Result<Response, ApiError> {
    let id = strip_json(&id).to_owned();
    let done = state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let Some(e) = store::enrollment_by_uid(&tx, &id)?.filter(|e| !e.deleted) else {
                return Ok(Err(format!("Enrollment not found for ID {id}")));
            };
            let path = ctx.ous.get(&e.org_unit).map_or("", |o| o.path.as_str());
            if !ctx.user.can_capture(path) {
                return Err(ApiError::Conflict(format!(
                    "[User has no write access to organisation unit: {}]",
                    e.org_unit
                )));
            }
            importer(&tx, &ctx, Strategy::Update, String::new()).set_enrollment_status(&e, status, None)?;
            tx.commit()?;
            Ok(Ok(()))
        })
        .await?;
    match done {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(msg) => Err(ApiError::NotFound(msg)),
    }
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
    let summary = state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let Some(e) = store::enrollment_by_uid(&tx, &id)?.filter(|e| !e.deleted) else {
                return Err(ApiError::NotFound(format!("Enrollment not found for ID {id}")));
            };
            let notes: Value = if body.get("notes").is_some() { body } else { json!({ "notes": [body] }) };
            let imp = importer(&tx, &ctx, Strategy::Update, String::new());
            let mut wrapper = notes;
            wrapper["status"] = json!(e.status);
            let out = imp.update_enrollment(&e, &wrapper)?;
            tx.commit()?;
            Ok(out)
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
    let v = state
        .db()
        .call(move |conn| {
            let ctx = Ctx::load(conn, &user)?;
            let e = store::enrollment_by_uid(conn, &id)?
                .filter(|e| !e.deleted)
                .ok_or_else(|| ApiError::NotFound(format!("Enrollment not found for ID {id}")))?;
            let path = ctx.ous.get(&e.org_unit).map_or("", |o| o.path.as_str());
            if !ctx.user.can_search(path) {
                return Err(ApiError::Conflict(format!(
                    "[User has no read access to organisation unit: {}]",
                    e.org_unit
                )));
            }
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
    let p = params.clone();
    let out = state
        .db()
        .call(move |conn| {
            let ctx = Ctx::load(conn, &user)?;
            query::enrollment_list(conn, &ctx.rc(), &ctx.user, &p)
        })
        .await?;
    Ok(filtered_list(out, "enrollments", &fields_or(&params, "*")))
}

/// A WebMessage helper kept for symmetry with events (`ok("…")`).
pub fn ok_message(message: impl Into<String>) -> Response {
    WebMessage::ok(StatusCode::OK, message).into_response()
}
