//! `/api/trackedEntityInstances`: POST (single or `{trackedEntityInstances:[…]}`, nested
//! enrollments and events), PUT and DELETE by UID, GET by UID (ownership 401), the list, and
//! the `query.json` grid with its `count.json`.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use serde_json::json;

use super::{api_base, fields_or, filtered_list, items, parse_body, strategy, strip_json, wants_children, Ctx, Legacy};
use crate::{
    api::Params,
    auth::CurrentUser,
    error::{json_response, ApiError},
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
        .route("/trackedEntityInstances", get(list).post(post))
        .route("/trackedEntityInstances.json", get(list).post(post))
        .route("/trackedEntityInstances/query", get(grid))
        .route("/trackedEntityInstances/query.json", get(grid))
        .route("/trackedEntityInstances/count", get(count))
        .route("/trackedEntityInstances/count.json", get(count))
        .route("/trackedEntityInstances/{id}", get(one).put(put).delete(delete))
}

/// `POST /api/trackedEntityInstances`.
pub async fn post(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let list = items(&body, "trackedEntityInstances")?;
    let strategy = strategy(&params)?;
    let base = api_base(&headers);
    let summaries = state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let importer = importer(&tx, &ctx, strategy, base);
            let out = importer.import_teis(&list)?;
            tx.commit()?;
            Ok(out)
        })
        .await?;
    let opts = summary::import_options(strategy.as_str(), false);
    Ok(summary::respond(summaries.web_message(&opts, false)))
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

/// `PUT /api/trackedEntityInstances/{uid}`: replaces the attributes (omitted ones are deleted).
pub async fn put(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut body = parse_body(body)?;
    if !body.is_object() {
        return Err(ApiError::BadRequest("JSON parse error: expected a JSON object".into()));
    }
    let id = strip_json(&id).to_owned();
    body["trackedEntityInstance"] = json!(id);
    let base = api_base(&headers);
    let summary = state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let out = importer(&tx, &ctx, Strategy::Update, base).import_teis(std::slice::from_ref(&body))?;
            tx.commit()?;
            Ok(out.summaries.into_iter().next().unwrap_or_else(|| ImportSummary::error(Some(id), "Nothing imported")))
        })
        .await?;
    Ok(summary::respond(summary.web_message()))
}

/// `DELETE /api/trackedEntityInstances/{uid}`.
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
            let body = json!({ "trackedEntityInstance": id });
            let out = importer(&tx, &ctx, Strategy::Delete, base).import_teis(std::slice::from_ref(&body))?;
            tx.commit()?;
            Ok(out.summaries.into_iter().next().unwrap_or_else(|| ImportSummary::error(Some(id), "Nothing deleted")))
        })
        .await?;
    Ok(summary::respond(summary.web_message()))
}

/// `GET /api/trackedEntityInstances/{uid}[.json]?program=&fields=`.
pub async fn one(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let id = strip_json(&id).to_owned();
    let program = params.get("program").map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned);
    let children = wants_children(&params);
    let result = state
        .db()
        .call(move |conn| {
            let ctx = Ctx::load(conn, &user)?;
            let not_found = || ApiError::NotFound(format!("TrackedEntityInstance with id {id} could not be found."));
            let te = store::te_by_uid(conn, &id)?.filter(|t| !t.deleted).ok_or_else(not_found)?;
            let prog = match &program {
                Some(p) => Some(
                    ctx.md
                        .program(p)
                        .ok_or_else(|| ApiError::NotFound(format!("Program with id {p} could not be found.")))?,
                ),
                None => None,
            };
            match query::check_te_read(conn, &ctx.md, &ctx.user, &ctx.ous, &te, prog)? {
                Ok(()) => {}
                Err(query::TeReadDenied::OutsideSearchScope(msg)) => return Err(ApiError::Conflict(msg)),
                Err(query::TeReadDenied::Ownership(msg)) => return Ok(Err(msg)),
            }
            Ok(Ok(store::te_json(conn, &ctx.rc(), &te, program.as_deref(), children)?))
        })
        .await?;
    match result {
        Ok(v) => Ok(super::super::filtered_json(&v, &params, "*", &FilterOptions::default())),
        Err(msg) => Ok(super::ownership_denied(msg)),
    }
}

/// `GET /api/trackedEntityInstances[.json]`.
pub async fn list(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    let children = wants_children(&params);
    let p = params.clone();
    let out = state
        .db()
        .call(move |conn| {
            let ctx = Ctx::load(conn, &user)?;
            query::te_list(conn, &ctx.rc(), &ctx.user, &p, children)
        })
        .await?;
    Ok(filtered_list(out, "trackedEntityInstances", &fields_or(&params, "*")))
}

/// `GET /api/trackedEntityInstances/query.json`: the grid.
pub async fn grid(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    let out = state
        .db()
        .call(move |conn| {
            let ctx = Ctx::load(conn, &user)?;
            query::grid(conn, &ctx.md, &ctx.user, &ctx.ous, &params)
        })
        .await?;
    Ok(json_response(StatusCode::OK, &out))
}

/// `GET /api/trackedEntityInstances/count.json`: a bare number.
pub async fn count(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    let n = state
        .db()
        .call(move |conn| {
            let ctx = Ctx::load(conn, &user)?;
            query::count(conn, &ctx.md, &ctx.user, &ctx.ous, &params)
        })
        .await?;
    Ok(json_response(StatusCode::OK, &json!(n)).into_response())
}
