//! The new tracker API (2.36+; the only one on 2.42): `POST /api/tracker` (sync or async with
//! in-memory jobs at `/api/tracker/jobs/{id}[/report]`) and the exports
//! `/api/tracker/trackedEntities|enrollments|events[/{uid}]` with the envelope and parameter
//! names of the selected version. Queries reuse the legacy query code; JSON is the legacy JSON
//! with the new field names.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, OriginalUri, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use serde_json::{json, Map, Value};

use super::{
    legacy::{api_base, parse_body, reading, Ctx},
    Params,
};
use crate::{
    auth::CurrentUser,
    db,
    error::{json_response, ApiError, WebMessage},
    fields::{FieldFilter, FilterOptions},
    state::AppState,
    tracker::{
        bundle::{self, ImportParams, ReportMode},
        query, store,
    },
    version::ServerVersion,
};

/// Routes of the new tracker API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tracker", post(import))
        .route("/tracker/jobs/{id}", get(job))
        .route("/tracker/jobs/{id}/report", get(job_report))
        .route("/tracker/trackedEntities", get(list_tes))
        .route("/tracker/trackedEntities/{uid}", get(one_te))
        .route("/tracker/enrollments", get(list_enrollments))
        .route("/tracker/enrollments/{uid}", get(one_enrollment))
        .route("/tracker/events", get(list_events))
        .route("/tracker/events/{uid}", get(one_event))
}

/// One async import job: its notifications (oldest first) and, once done, its report.
#[derive(Debug, Clone, Default)]
pub struct Job {
    /// Notifications, oldest first; the last one has `completed: true` when the job is done.
    pub notifications: Vec<Value>,
    /// The `ImportReport`, when ready.
    pub report: Option<Value>,
}

/// The in-memory tracker jobs (lost on restart, as DHIS2's).
#[derive(Debug, Clone, Default)]
pub struct Jobs(Arc<Mutex<HashMap<String, Job>>>);

impl Jobs {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Job>) -> T) -> T {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn notify(&self, id: &str, message: &str, completed: bool) {
        let note = json!({
            "uid": crate::uid::generate(),
            "level": "INFO",
            "category": "TRACKER_IMPORT_JOB",
            "time": db::now_timestamp(),
            "message": message,
            "completed": completed,
            "id": id,
        });
        self.with(|m| m.entry(id.to_owned()).or_default().notifications.push(note));
    }
}

/// `POST /api/tracker`.
pub async fn import(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let version = state.version();
    let body = parse_body(body)?;
    bundle::check_shape(&body)?;
    let ip = ImportParams::from_query(
        params.get("importStrategy"),
        params.get("atomicMode"),
        params.get("importMode"),
        version,
    )?;
    let report_mode = ReportMode::parse(params.get("reportMode"))?;
    let is_async = !params.get("async").is_some_and(|a| a.trim().eq_ignore_ascii_case("false"));
    let run = {
        let state = state.clone();
        move || async move {
            state
                .db()
                .call(move |conn| {
                    let tx = conn.transaction()?;
                    let ctx = Ctx::load(&tx, &user)?;
                    let authorities: Vec<String> =
                        db::user_roles(&tx, &user.uid)?.into_iter().flat_map(|r| r.authorities).collect();
                    let report = bundle::import(&tx, &ctx.md, &ctx.user, &ctx.ous, &authorities, &body, ip, version)?;
                    if ip.validate_only {
                        tx.rollback()?;
                    } else {
                        tx.commit()?;
                    }
                    Ok(report)
                })
                .await
        }
    };
    if !is_async {
        let report = report_mode.apply(&run().await?);
        let status = if report["status"] == "ERROR" { StatusCode::CONFLICT } else { StatusCode::OK };
        return Ok(json_response(status, &report));
    }
    let id = crate::uid::generate();
    let jobs = state.tracker_jobs().clone();
    jobs.notify(&id, "(TRACKER_IMPORT_JOB) Import:Start", false);
    let job_id = id.clone();
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        let report = match run().await {
            Ok(r) => r,
            Err(e) => json!({"status": "ERROR", "message": e.to_string(),
                "validationReport": {"errorReports": [], "warningReports": []},
                "stats": {"created": 0, "updated": 0, "deleted": 0, "ignored": 0, "total": 0}}),
        };
        jobs.with(|m| m.entry(job_id.clone()).or_default().report = Some(report));
        let secs = started.elapsed().as_secs_f64();
        jobs.notify(&job_id, &format!("(TRACKER_IMPORT_JOB) Import:Done took {secs:.3} sec."), true);
    });
    let mut response = json!({
        "id": id,
        "location": format!("{}/tracker/jobs/{id}", api_base(&headers)),
    });
    if version.minor <= 40 {
        response["responseType"] = json!("TrackerJob");
    }
    Ok(WebMessage::ok(StatusCode::OK, "Tracker job added").with_response(response).into_response())
}

/// `GET /api/tracker/jobs/{id}`: the job's notifications.
pub async fn job(State(state): State<AppState>, _u: CurrentUser, Path(id): Path<String>) -> Result<Response, ApiError> {
    let notes = state.tracker_jobs().with(|m| m.get(&id).map(|j| j.notifications.clone()));
    match notes {
        Some(n) => Ok(json_response(StatusCode::OK, &Value::Array(n))),
        None => Err(ApiError::NotFound(format!("Job with id {id} could not be found."))),
    }
}

/// `GET /api/tracker/jobs/{id}/report[?reportMode=]`: the ImportReport (404 until ready).
pub async fn job_report(
    State(state): State<AppState>,
    _u: CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let mode = ReportMode::parse(params.get("reportMode"))?;
    match state.tracker_jobs().with(|m| m.get(&id).and_then(|j| j.report.clone())) {
        Some(r) => Ok(json_response(StatusCode::OK, &mode.apply(&r))),
        None => Err(ApiError::NotFound(format!("Import report for job {id} could not be found."))),
    }
}

// -------------------------------------------------------------------------------------------
// Exports
// -------------------------------------------------------------------------------------------

/// Which export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TrackedEntities,
    Enrollments,
    Events,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::TrackedEntities => "trackedEntities",
            Kind::Enrollments => "enrollments",
            Kind::Events => "events",
        }
    }

    fn legacy_key(self) -> &'static str {
        match self {
            Kind::TrackedEntities => "trackedEntityInstances",
            Kind::Enrollments => "enrollments",
            Kind::Events => "events",
        }
    }

    fn default_fields(self) -> &'static str {
        match self {
            Kind::TrackedEntities => "*,!relationships,!enrollments,!events,!programOwners",
            Kind::Enrollments => "*,!relationships,!events,!attributes",
            Kind::Events => "*,!relationships",
        }
    }
}

/// Renames the legacy JSON of a tracked entity, enrollment or event (recursively) to the new
/// field names; `orgUnitName` only up to 2.40.
pub fn to_new(v: &Value, version: ServerVersion) -> Value {
    const RENAMES: &[(&str, &str)] = &[
        ("trackedEntityInstance", "trackedEntity"),
        ("created", "createdAt"),
        ("lastUpdated", "updatedAt"),
        ("lastUpdatedAtClient", "updatedAtClient"),
        ("createdByUserInfo", "createdBy"),
        ("lastUpdatedByUserInfo", "updatedBy"),
        ("enrollmentDate", "enrolledAt"),
        ("incidentDate", "occurredAt"),
        ("eventDate", "occurredAt"),
        ("dueDate", "scheduledAt"),
        ("completedDate", "completedAt"),
        ("followup", "followUp"),
        ("storedDate", "storedAt"),
        ("ownerOrgUnit", "orgUnit"),
    ];
    match v {
        Value::Array(a) => Value::Array(a.iter().map(|x| to_new(x, version)).collect()),
        Value::Object(m) => {
            let is_enrollment = m.contains_key("enrollmentDate");
            let mut out = Map::new();
            for (k, x) in m {
                if k == "orgUnitName" && version.minor >= 41 {
                    continue;
                }
                if k == "trackedEntityType" && is_enrollment {
                    continue;
                }
                let key = RENAMES.iter().find(|(a, _)| a == k).map_or(k.as_str(), |(_, b)| b);
                out.insert(key.to_owned(), to_new(x, version));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Translates the new export parameters of `version` into the legacy query's names.
fn legacy_params(kind: Kind, params: &Params, version: ServerVersion) -> Result<(Params, bool), ApiError> {
    let minor = version.minor;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut paging = true;
    for (k, v) in &params.0 {
        let k = k.as_str();
        let mapped: Option<&str> = match k {
            "orgUnit" if kind == Kind::Events => Some("orgUnit"),
            "orgUnit" if minor <= 41 => Some("ou"),
            "orgUnits" if minor >= 41 && kind != Kind::Events => Some("ou"),
            "ouMode" if minor <= 41 => Some("ouMode"),
            "orgUnitMode" if minor >= 41 => Some("ouMode"),
            "trackedEntity" if minor <= 41 || kind != Kind::TrackedEntities => Some("trackedEntityInstance"),
            "trackedEntities" if minor >= 41 && kind == Kind::TrackedEntities => Some("trackedEntityInstance"),
            "skipPaging" if minor <= 41 => {
                if v.trim().eq_ignore_ascii_case("true") {
                    paging = false;
                }
                None
            }
            "paging" if minor >= 41 => {
                if v.trim().eq_ignore_ascii_case("false") {
                    paging = false;
                }
                None
            }
            "updatedAfter" => Some(if kind == Kind::Enrollments { "lastUpdated" } else { "lastUpdatedStartDate" }),
            "updatedBefore" => Some("lastUpdatedEndDate"),
            "occurredAfter" if kind == Kind::Events => Some("startDate"),
            "occurredBefore" if kind == Kind::Events => Some("endDate"),
            "event" if minor <= 41 && kind == Kind::Events => Some("event"),
            "events" if minor >= 41 && kind == Kind::Events => Some("event"),
            "enrollments" if kind == Kind::Events => Some("enrollment"),
            "program"
            | "programStage"
            | "programStatus"
            | "status"
            | "followUp"
            | "trackedEntityType"
            | "includeDeleted"
            | "order"
            | "filter"
            | "attribute"
            | "enrollment"
            | "page"
            | "pageSize"
            | "enrollmentEnrolledAfter"
            | "enrollmentEnrolledBefore" => Some(k),
            _ => None,
        };
        if let Some(m) = mapped {
            let m = match m {
                "enrollmentEnrolledAfter" => "programStartDate",
                "enrollmentEnrolledBefore" => "programEndDate",
                other => other,
            };
            out.push((m.to_owned(), v.clone()));
        }
    }
    if minor >= 41 {
        if let Some(ps) = params.get("pageSize").and_then(|p| p.trim().parse::<i64>().ok()) {
            if ps < 1 {
                return Err(ApiError::BadRequest("pageSize must be greater than or equal to 1".into()));
            }
        }
    }
    if paging {
        out.push(("totalPages".into(), "true".into()));
    } else {
        out.push(("skipPaging".into(), "true".into()));
    }
    Ok((Params(out), paging))
}

fn page_url(headers: &HeaderMap, uri: &OriginalUri, page: i64) -> String {
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let mut query: Vec<String> = uri
        .0
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("page="))
        .map(str::to_owned)
        .collect();
    query.push(format!("page={page}"));
    format!("http://{host}{}?{}", uri.0.path(), query.join("&"))
}

async fn export_list(
    kind: Kind,
    state: AppState,
    user: db::User,
    params: Params,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Result<Response, ApiError> {
    let version = state.version();
    let (lp, paging) = legacy_params(kind, &params, version)?;
    let children = params.fields().is_some() && super::legacy::wants_children(&params);
    let page: i64 = params.get("page").and_then(|p| p.trim().parse().ok()).unwrap_or(1).max(1);
    let page_size: i64 = params.get("pageSize").and_then(|p| p.trim().parse().ok()).unwrap_or(50).max(1);
    let total_pages = params.get("totalPages").is_some_and(|t| t.trim().eq_ignore_ascii_case("true"));
    let out = reading(&state, user, move |conn, ctx| match kind {
        Kind::TrackedEntities => query::te_list(conn, &ctx.rc(), &ctx.user, &lp, children),
        Kind::Enrollments => query::enrollment_list(conn, &ctx.rc(), &ctx.user, &lp),
        Kind::Events => query::event_list(conn, &ctx.rc(), &ctx.user, &lp),
    })
    .await?;
    let filter = params.fields().unwrap_or_else(|| FieldFilter::parse(kind.default_fields()));
    let items = to_new(out.get(kind.legacy_key()).unwrap_or(&json!([])), version);
    let items = filter.apply(&items, &FilterOptions::default());
    let total = out.pointer("/pager/total").and_then(Value::as_i64).unwrap_or(0);
    let page_count = (total + page_size - 1) / page_size;
    let mut body = Map::new();
    if version.minor <= 40 {
        body.insert("instances".into(), items);
        if paging {
            body.insert("page".into(), json!(page));
            body.insert("pageSize".into(), json!(page_size));
            if total_pages {
                body.insert("total".into(), json!(total));
                body.insert("pageCount".into(), json!(page_count));
            }
        }
    } else {
        if paging {
            let mut pager = Map::new();
            pager.insert("page".into(), json!(page));
            pager.insert("pageSize".into(), json!(page_size));
            if total_pages {
                pager.insert("total".into(), json!(total));
                pager.insert("pageCount".into(), json!(page_count));
            }
            if page > 1 {
                pager.insert("prevPage".into(), json!(page_url(&headers, &uri, page - 1)));
            }
            if total > page * page_size {
                pager.insert("nextPage".into(), json!(page_url(&headers, &uri, page + 1)));
            }
            body.insert("pager".into(), Value::Object(pager));
        }
        body.insert(kind.key().into(), items);
        if paging && version.minor == 41 {
            body.insert("page".into(), json!(page));
            body.insert("pageSize".into(), json!(page_size));
        }
    }
    Ok(json_response(StatusCode::OK, &Value::Object(body)))
}

/// `GET /api/tracker/trackedEntities`.
pub async fn list_tes(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Result<Response, ApiError> {
    export_list(Kind::TrackedEntities, state, user, params, headers, uri).await
}

/// `GET /api/tracker/enrollments`.
pub async fn list_enrollments(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Result<Response, ApiError> {
    export_list(Kind::Enrollments, state, user, params, headers, uri).await
}

/// `GET /api/tracker/events`.
pub async fn list_events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Params,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Result<Response, ApiError> {
    export_list(Kind::Events, state, user, params, headers, uri).await
}

/// `GET /api/tracker/trackedEntities/{uid}?program=&fields=`: up to 2.41 a TE outside the
/// ownership scope is a 401 `OWNERSHIP_ACCESS_DENIED` (as the legacy API); on 2.42 a 404.
pub async fn one_te(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(uid): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let version = state.version();
    let program = params.get("program").map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned);
    let children = params.fields().is_some() && super::legacy::wants_children(&params);
    let result = reading(&state, user, move |conn, ctx| {
        let not_found = || ApiError::NotFound(format!("TrackedEntity with id {uid} could not be found."));
        let te = store::te_by_uid(conn, &uid)?.filter(|t| !t.deleted).ok_or_else(not_found)?;
        let prog = match &program {
            Some(p) => Some(
                ctx.md
                    .program(p)
                    .ok_or_else(|| ApiError::BadRequest(format!("Program is specified but does not exist: {p}")))?,
            ),
            None => None,
        };
        match query::check_te_read(conn, &ctx.md, &ctx.user, &ctx.ous, &te, prog)? {
            Ok(()) => {}
            Err(_) if version.minor >= 42 => return Err(not_found()),
            Err(query::TeReadDenied::OutsideSearchScope(msg)) => return Err(ApiError::Conflict(msg)),
            Err(query::TeReadDenied::Ownership(msg)) => return Ok(Err(msg)),
        }
        Ok(Ok(store::te_json(conn, &ctx.rc(), &te, program.as_deref(), children)?))
    })
    .await?;
    match result {
        Ok(v) => Ok(super::filtered_json(
            &to_new(&v, version),
            &params,
            Kind::TrackedEntities.default_fields(),
            &FilterOptions::default(),
        )),
        Err(msg) => Ok(super::legacy::ownership_denied(msg)),
    }
}

/// `GET /api/tracker/enrollments/{uid}`.
pub async fn one_enrollment(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(uid): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let version = state.version();
    let with_events = params.fields().is_some() && super::legacy::wants_children(&params);
    let v = reading(&state, user, move |conn, ctx| {
        let e = store::enrollment_by_uid(conn, &uid)?
            .filter(|e| !e.deleted)
            .filter(|e| ctx.ous.get(&e.org_unit).is_some_and(|o| ctx.user.can_search(&o.path)))
            .ok_or_else(|| ApiError::NotFound(format!("Enrollment with id {uid} could not be found.")))?;
        Ok(store::enrollment_json(conn, &ctx.rc(), &e, with_events)?)
    })
    .await?;
    Ok(super::filtered_json(
        &to_new(&v, version),
        &params,
        Kind::Enrollments.default_fields(),
        &FilterOptions::default(),
    ))
}

/// `GET /api/tracker/events/{uid}`.
pub async fn one_event(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(uid): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let version = state.version();
    let v = reading(&state, user, move |conn, ctx| {
        let e = store::event_by_uid(conn, &uid)?
            .filter(|e| !e.deleted && ctx.user.can_search(&e.ou_path))
            .ok_or_else(|| ApiError::NotFound(format!("Event with id {uid} could not be found.")))?;
        Ok(store::event_json(conn, &ctx.rc(), &e)?)
    })
    .await?;
    Ok(super::filtered_json(&to_new(&v, version), &params, Kind::Events.default_fields(), &FilterOptions::default()))
}
