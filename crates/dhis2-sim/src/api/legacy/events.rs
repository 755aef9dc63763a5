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

/// `POST /api/events`.
pub async fn post(
    _l: Legacy,
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let list = items(&body, "events")?;
    let strategy = strategy(&params)?;
    let base = api_base(&headers);
    let summaries = state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let out = importer(&tx, &ctx, strategy, base).import_events(&list)?;
            tx.commit()?;
            Ok(out)
        })
        .await?;
    let opts = summary::import_options(strategy.as_str(), false);
    Ok(summary::respond(summaries.web_message(&opts, false)))
}

async fn update(
    state: AppState,
    user: crate::db::User,
    id: String,
    body: Value,
    single_value: bool,
) -> Result<Response, ApiError> {
    let summary = state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let out = match store::event_by_uid(&tx, &id)?.filter(|e| !e.deleted) {
                None => ImportSummary::conflicts(Some(id.clone()), vec![("Invalid Event ID".into(), id.clone())]),
                Some(ev) => {
                    importer(&tx, &ctx, Strategy::Update, String::new()).update_event(&ev, &body, single_value)?
                }
            };
            tx.commit()?;
            Ok(out)
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
    let body = parse_body(body)?;
    if !body.is_object() {
        return Err(ApiError::BadRequest("JSON parse error: expected a JSON object".into()));
    }
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
    let body = parse_body(body)?;
    if !body.is_object() {
        return Err(ApiError::BadRequest("JSON parse error: expected a JSON object".into()));
    }
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
    let msg = state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let Some(ev) = store::event_by_uid(&tx, &id)?.filter(|e| !e.deleted) else {
                return Err(ApiError::NotFound(format!("Event not found for ID {id}")));
            };
            if let Some(err) = importer(&tx, &ctx, Strategy::Update, String::new()).set_event_date(&ev, &body)? {
                return Err(ApiError::Conflict(err));
            }
            tx.commit()?;
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
    let msg = state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let Some(ev) = store::event_by_uid(&tx, &id)?.filter(|e| !e.deleted) else {
                return Err(ApiError::NotFound(format!("Event not found for ID {id}")));
            };
            if !ctx.user.can_capture(&ev.ou_path) {
                return Err(ApiError::Conflict(format!(
                    "[User has no write access to organisation unit: {}]",
                    ev.org_unit
                )));
            }
            let notes = if body.get("notes").is_some() { body } else { json!({ "notes": [body] }) };
            importer(&tx, &ctx, Strategy::Update, String::new()).add_event_notes(&ev, &notes)?;
            tx.commit()?;
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
    let id = strip_json(&id).to_owned();
    let base = api_base(&headers);
    let summary = state
        .db()
        .call(move |conn| {
            let tx = conn.transaction()?;
            let ctx = Ctx::load(&tx, &user)?;
            let body = json!({ "event": id });
            let out = importer(&tx, &ctx, Strategy::Delete, base).import_events(std::slice::from_ref(&body))?;
            tx.commit()?;
            Ok(out.summaries.into_iter().next().unwrap_or_else(|| ImportSummary::error(Some(id), "Nothing deleted")))
        })
        .await?;
    Ok(summary::respond(summary.web_message()))
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
    let v = state
        .db()
        .call(move |conn| {
            let ctx = Ctx::load(conn, &user)?;
            let ev = store::event_by_uid(conn, &id)?
                .filter(|e| !e.deleted)
                .ok_or_else(|| ApiError::NotFound(format!("Event not found for ID {id}")))?;
            if !ctx.user.can_search(&ev.ou_path) {
                return Err(ApiError::Conflict(format!(
                    "[User has no read access to organisation unit: {}]",
                    ev.org_unit
                )));
            }
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
    let p = params.clone();
    let out = state
        .db()
        .call(move |conn| {
            let ctx = Ctx::load(conn, &user)?;
            query::event_list(conn, &ctx.rc(), &ctx.user, &p)
        })
        .await?;
    Ok(filtered_list(out, "events", &fields_or(&params, DEFAULT_LIST_FIELDS)))
}
