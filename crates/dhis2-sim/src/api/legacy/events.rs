//! `/api/events`: POST (single or `{events:[…]}`), PUT the whole event (omitted data values
//! are deleted), PUT one data value, PUT the event date, POST a note, DELETE, GET by UID and
//! the list with DHIS2's slim or full pager.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post as post_route, put as put_route},
    Router,
};
use rusqlite::Connection;
use serde_json::{json, Value};

use super::{
    api_base, delete_record, in_transaction, list_records, parse_body, parse_object, post_records, reading,
    require_capture, require_search, strip_json, Kind, Legacy,
};
use crate::{
    api::Params,
    auth::CurrentUser,
    error::{ApiError, WebMessage},
    fields::FilterOptions,
    state::AppState,
    tracker::{
        import::Strategy,
        query,
        store::{self, EventRow},
        summary::{self, ImportSummary},
    },
};

/// Default `fields` of the event list (`EventController.getEvents`).
pub const DEFAULT_LIST_FIELDS: &str = "event,uid,program,programStage,programType,status,assignedUser,orgUnit,\
                                       orgUnitName,eventDate,created,lastUpdated,followup,deleted,dataValues";

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(list).post(post))
        .route("/events.json", get(list).post(post))
        .route("/events/{id}", get(one).put(put).delete(delete))
        .route("/events/{id}/eventDate", put_route(event_date))
        .route("/events/{id}/note", post_route(note))
        .route("/events/{id}/{de}", put_route(put_value))
}

/// The event `id` unless it is missing or deleted.
fn live_event(conn: &Connection, id: &str) -> Result<Option<EventRow>, ApiError> {
    Ok(store::event_by_uid(conn, id)?.filter(|e| !e.deleted))
}

/// The event `id`, else 404.
fn live_event_or_404(conn: &Connection, id: &str) -> Result<EventRow, ApiError> {
    live_event(conn, id)?.ok_or_else(|| ApiError::NotFound(format!("Event not found for ID {id}")))
}

/// `POST /api/events`.
pub async fn post(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    post_records(&state, user, Kind::Event, &headers, &params, body).await
}

async fn update(
    state: AppState,
    user: crate::db::User,
    id: String,
    body: Value,
    single_value: bool,
) -> Result<Response, ApiError> {
    let summary = in_transaction(&state, user, move |conn, ctx| match live_event(conn, &id)? {
        None => Ok(ImportSummary::conflicts(Some(id.clone()), vec![("Invalid Event ID".into(), id.clone())])),
        Some(ev) => ctx.importer(conn, Strategy::Update, String::new()).update_event(&ev, &body, single_value),
    })
    .await?;
    Ok(summary::respond(summary.web_message()))
}

/// `PUT /api/events/{ev}`: the whole event.
pub async fn put(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = parse_object(body)?;
    update(state, user, strip_json(&id).to_owned(), body, false).await
}

/// `PUT /api/events/{ev}/{de}`: one data value (the body is the event with that value).
pub async fn put_value(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((id, de)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = parse_object(body)?;
    let de = strip_json(&de).to_owned();
    let known = {
        let de = de.clone();
        state.db().call(move |conn| Ok(crate::model::Metadata::load(conn)?.data_element(&de).is_some())).await?
    };
    if !known {
        return Err(ApiError::NotFound(format!("DataElement not found for ID {de}")));
    }
    update(state, user, strip_json(&id).to_owned(), body, true).await
}

/// `PUT /api/events/{ev}/eventDate`: `{"eventDate": "…"}`.
pub async fn event_date(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let id = strip_json(&id).to_owned();
    let msg = in_transaction(&state, user, move |conn, ctx| {
        let ev = live_event_or_404(conn, &id)?;
        if let Some(err) = ctx.importer(conn, Strategy::Update, String::new()).set_event_date(&ev, &body)? {
            return Err(ApiError::Conflict(err));
        }
        Ok(format!("Event updated {id}"))
    })
    .await?;
    Ok(WebMessage::ok(StatusCode::OK, msg).into_response())
}

/// `POST /api/events/{ev}/note`: `{"value": "…"}` or `{"notes":[…]}`.
pub async fn note(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let id = strip_json(&id).to_owned();
    let msg = in_transaction(&state, user, move |conn, ctx| {
        let ev = live_event_or_404(conn, &id)?;
        require_capture(&ctx.user, &ev.ou_path, &ev.org_unit)?;
        let notes = if body.get("notes").is_some() { body } else { json!({ "notes": [body] }) };
        ctx.importer(conn, Strategy::Update, String::new()).add_event_notes(&ev, &notes)?;
        Ok(format!("Event updated: {id}"))
    })
    .await?;
    Ok(WebMessage::ok(StatusCode::OK, msg).into_response())
}

/// `DELETE /api/events/{ev}`.
pub async fn delete(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete_record(&state, user, Kind::Event, &id, &headers).await
}

/// `GET /api/events/{ev}`.
pub async fn one(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let id = strip_json(&id).to_owned();
    let base = api_base(&headers);
    let v = reading(&state, user, move |conn, ctx| {
        let ev = live_event_or_404(conn, &id)?;
        require_search(&ctx.user, &ev.ou_path, &ev.org_unit)?;
        let mut v = store::event_json(conn, &ctx.rc(), &ev)?;
        v["href"] = json!(format!("{base}/events/{id}"));
        Ok(v)
    })
    .await?;
    Ok(crate::api::filtered_json(&v, &params, "*", &FilterOptions::default()))
}

/// `GET /api/events[.json]`.
pub async fn list(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
) -> Result<Response, ApiError> {
    list_records(&state, user, Kind::Event, &params, DEFAULT_LIST_FIELDS, |conn, ctx, p| {
        query::event_list(conn, &ctx.rc(), &ctx.user, p)
    })
    .await
}
