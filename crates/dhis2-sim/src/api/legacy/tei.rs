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

use super::{
    api_base, delete_record, import_one, legacy_options, list_records, parse_object, post_records, reading, strip_json,
    wants_children, Kind, Legacy,
};
use crate::{
    api::Params,
    auth::CurrentUser,
    error::{json_response, ApiError},
    fields::FilterOptions,
    state::AppState,
    tracker::{import::Strategy, query, store},
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
    post_records(&state, user, Kind::Tei, &headers, &params, body).await
}

/// `PUT /api/trackedEntityInstances/{uid}[?program=P]`: updates the attributes sent (an empty
/// value deletes); omitted ones are kept, except P's when `program=P` is given, which are
/// deleted (dhis2-core 2.40 `TrackedEntityInstanceController`:510-521 passes `program` to
/// `AbstractTrackedEntityInstanceService.updateAttributeValues`, :1239-1247).
pub async fn put(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut body = parse_object(body)?;
    let id = strip_json(&id).to_owned();
    body["trackedEntityInstance"] = json!(id);
    let mut opts = legacy_options(&params);
    opts.program = params.get("program").map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned);
    import_one(&state, user, Kind::Tei, Strategy::Update, opts, api_base(&headers), id, body).await
}

/// `DELETE /api/trackedEntityInstances/{uid}`.
pub async fn delete(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete_record(&state, user, Kind::Tei, &id, &headers).await
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
    let result = reading(&state, user, move |conn, ctx| {
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
        Ok(v) => Ok(crate::api::filtered_json(&v, &params, "*", &FilterOptions::default())),
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
    list_records(&state, user, Kind::Tei, &params, "*", move |conn, ctx, p| {
        query::te_list(conn, &ctx.rc(), &ctx.user, p, children)
    })
    .await
}

/// `GET /api/trackedEntityInstances/query.json`: the grid.
pub async fn grid(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    let out = reading(&state, user, move |conn, ctx| query::grid(conn, &ctx.md, &ctx.user, &ctx.ous, &params)).await?;
    Ok(json_response(StatusCode::OK, &out))
}

/// `GET /api/trackedEntityInstances/count.json`: a bare number.
pub async fn count(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    let n = reading(&state, user, move |conn, ctx| query::count(conn, &ctx.md, &ctx.user, &ctx.ous, &params)).await?;
    Ok(json_response(StatusCode::OK, &json!(n)).into_response())
}
