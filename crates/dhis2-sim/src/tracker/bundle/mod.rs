//! The new tracker importer (`POST /api/tracker`): flattens a nested or flat payload (a 400
//! when its shape or a value Jackson would parse is wrong), validates every object with DHIS2's
//! error codes (`validate::new_tracker`), then writes the valid ones (`commit`, straight to
//! `persist`) and answers the `ImportReport` (`report`).
//!
//! `atomicMode=ALL` commits nothing when any object fails; `OBJECT` commits the valid ones.
//! Relationships are accepted and ignored.

mod commit;
mod report;

use std::collections::HashMap;

use rusqlite::Connection;
use serde_json::{json, Value};

pub use report::ReportMode;

use self::{
    commit::Commit,
    report::{build_report, validation_errors_report},
};
use super::{
    dates,
    import::{text, Strategy},
    persist::Writer,
    scope::UserScope,
    validate::new_tracker::{validate_bundle, Run},
};
use crate::{db::OrgUnit, error::ApiError, model::Metadata, uid, version::ServerVersion};

/// `TrackerType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackerType {
    /// A tracked entity.
    TrackedEntity,
    /// An enrollment.
    Enrollment,
    /// An event.
    Event,
}

impl TrackerType {
    /// The JSON name (`TRACKED_ENTITY`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TrackerType::TrackedEntity => "TRACKED_ENTITY",
            TrackerType::Enrollment => "ENROLLMENT",
            TrackerType::Event => "EVENT",
        }
    }

    /// The name used in E5000 messages (`TrackerType.getName()`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            TrackerType::TrackedEntity => "trackedEntity",
            TrackerType::Enrollment => "enrollment",
            TrackerType::Event => "event",
        }
    }

    fn key(self) -> &'static str {
        match self {
            TrackerType::TrackedEntity => "trackedEntity",
            TrackerType::Enrollment => "enrollment",
            TrackerType::Event => "event",
        }
    }
}

/// Query parameters of `POST /api/tracker`.
#[derive(Debug, Clone, Copy)]
pub struct ImportParams {
    /// `importStrategy` (default CREATE_AND_UPDATE).
    pub strategy: Strategy,
    /// `atomicMode=ALL` (default) rather than OBJECT.
    pub atomic_all: bool,
    /// `importMode=VALIDATE`: validate only.
    pub validate_only: bool,
}

fn enum_param<'a>(
    raw: Option<&'a str>,
    name: &str,
    valid: &[&'a str],
    default: &'a str,
    version: ServerVersion,
) -> Result<&'a str, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(default);
    };
    if let Some(v) = valid.iter().find(|v| v.eq_ignore_ascii_case(raw)) {
        return Ok(v);
    }
    if version.minor <= 39 {
        // 2.36–2.39 (`TrackerImportParamsBuilder`): an unknown value silently becomes the default.
        return Ok(default);
    }
    Err(ApiError::BadRequest(format!(
        "Value '{raw}' is not valid for parameter {name}. Valid values are: [{}]",
        valid.join(", ")
    )))
}

impl ImportParams {
    /// Reads `importStrategy`, `atomicMode` and `importMode` as `version` does.
    pub fn from_query(
        strategy: Option<&str>,
        atomic: Option<&str>,
        mode: Option<&str>,
        version: ServerVersion,
    ) -> Result<Self, ApiError> {
        let strategy = match enum_param(
            strategy,
            "importStrategy",
            &["CREATE", "UPDATE", "CREATE_AND_UPDATE", "DELETE"],
            "CREATE_AND_UPDATE",
            version,
        )? {
            "CREATE" => Strategy::Create,
            "UPDATE" => Strategy::Update,
            "DELETE" => Strategy::Delete,
            _ => Strategy::CreateAndUpdate,
        };
        let atomic_all = enum_param(atomic, "atomicMode", &["ALL", "OBJECT"], "ALL", version)? == "ALL";
        let validate_only = enum_param(mode, "importMode", &["COMMIT", "VALIDATE"], "COMMIT", version)? == "VALIDATE";
        Ok(Self { strategy, atomic_all, validate_only })
    }
}

/// One object of the flattened bundle.
#[derive(Debug, Clone)]
pub(crate) struct Obj {
    /// Its type.
    pub kind: TrackerType,
    /// Its UID (generated when the payload has none).
    pub uid: String,
    /// Position in its type's list (objectReports `index`).
    pub index: usize,
    /// The payload (new field names), children removed.
    pub v: Value,
    /// Parent UID: the TE of an enrollment, the enrollment of an event.
    pub parent: Option<String>,
    /// Per-object strategy, resolved against the database.
    pub op: Op,
    /// The UID is stored already (deleted or not).
    pub existed: bool,
}

/// What an object does to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Create it.
    Create,
    /// Update the stored object.
    Update,
    /// Delete the stored object.
    Delete,
}

/// One `errorReport` (or `warningReport`).
#[derive(Debug, Clone)]
pub(crate) struct ErrorReport {
    /// `E1000`, …
    pub code: &'static str,
    /// The code's message with its arguments.
    pub message: String,
    /// The object's type.
    pub kind: TrackerType,
    /// The object's UID.
    pub uid: String,
    /// The arguments (2.41+ `args`).
    pub args: Vec<String>,
}

fn list<'v>(v: &'v Value, key: &str) -> Result<&'v [Value], ApiError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a.as_slice()),
        Some(_) => Err(ApiError::BadRequest(format!("JSON parse error: '{key}' must be an array"))),
    }
}

fn without(v: &Value, keys: &[&str]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(k, _)| !keys.contains(&k.as_str())).map(|(k, x)| (k.clone(), x.clone())).collect(),
        ),
        other => other.clone(),
    }
}

/// The statuses of each type (DHIS2's `EnrollmentStatus`, `EventStatus`).
fn statuses(kind: TrackerType) -> &'static [&'static str] {
    match kind {
        TrackerType::TrackedEntity => &[],
        TrackerType::Enrollment => &["ACTIVE", "COMPLETED", "CANCELLED"],
        TrackerType::Event => &["ACTIVE", "COMPLETED", "VISITED", "SCHEDULE", "OVERDUE", "SKIPPED"],
    }
}

/// The values DHIS2 parses while it reads the body (Jackson: an enum, an `Instant`), so one it
/// cannot parse refuses the whole request with a 400: a status outside its type's enum, a date
/// that is not one. Two dates stay per-object errors, as the validation reports them: an
/// enrollment's `enrolledAt` (E1025) and the `occurredAt` of an event that is not scheduled
/// (E1031).
fn check_values(kind: TrackerType, v: &Value) -> Result<(), ApiError> {
    let status = text(v, "status").map(|s| s.to_ascii_uppercase());
    if let Some(status) = &status {
        if kind != TrackerType::TrackedEntity && !statuses(kind).contains(&status.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "JSON parse error: '{status}' is not one of the {} statuses [{}]",
                kind.name(),
                statuses(kind).join(", ")
            )));
        }
    }
    let scheduled = matches!(status.as_deref(), Some("SCHEDULE" | "OVERDUE" | "SKIPPED"));
    let date_keys: &[&str] = match kind {
        TrackerType::TrackedEntity => &[],
        TrackerType::Enrollment => &["occurredAt"],
        TrackerType::Event if scheduled => &["scheduledAt", "occurredAt"],
        TrackerType::Event => &["scheduledAt"],
    };
    for key in date_keys {
        if let Some(d) = text(v, key).filter(|d| dates::normalise(d).is_none()) {
            return Err(ApiError::BadRequest(format!("JSON parse error: {key} '{d}' is not a date")));
        }
    }
    Ok(())
}

/// Builds one flattened object: `(type, payload, parent, index)`.
type MakeObj<'a> = dyn Fn(TrackerType, &Value, Option<String>, usize) -> Result<Obj, ApiError> + 'a;

/// Flattens the payload into TEs, enrollments and events (in that order), assigning missing UIDs.
fn flatten(body: &Value) -> Result<Vec<Obj>, ApiError> {
    if !body.is_object() {
        return Err(ApiError::BadRequest("JSON parse error: expected a JSON object".into()));
    }
    let (mut tes, mut ens, mut evs) = (Vec::new(), Vec::new(), Vec::new());
    let mk = |kind: TrackerType, v: &Value, parent: Option<String>, index: usize| -> Result<Obj, ApiError> {
        if !v.is_object() {
            return Err(ApiError::BadRequest(format!("JSON parse error: a {} must be a JSON object", kind.name())));
        }
        check_values(kind, v)?;
        let uid = text(v, kind.key()).unwrap_or_else(uid::generate);
        let mut v = without(v, &["enrollments", "events", "relationships"]);
        v[kind.key()] = json!(uid);
        Ok(Obj { kind, uid, index, v, parent, op: Op::Create, existed: false })
    };
    fn push_events(evs: &mut Vec<Obj>, list_v: &[Value], enrollment: &str, mk: &MakeObj<'_>) -> Result<(), ApiError> {
        for ev in list_v {
            let mut o = mk(TrackerType::Event, ev, Some(enrollment.to_owned()), evs.len())?;
            o.v["enrollment"] = json!(enrollment);
            evs.push(o);
        }
        Ok(())
    }
    let push_enrollment = |ens: &mut Vec<Obj>, evs: &mut Vec<Obj>, e: &Value, te: Option<&str>| {
        let te = te.map(str::to_owned).or_else(|| text(e, "trackedEntity"));
        let mut o = mk(TrackerType::Enrollment, e, te.clone(), ens.len())?;
        if let Some(t) = &te {
            o.v["trackedEntity"] = json!(t);
        }
        push_events(evs, list(e, "events")?, &o.uid, &mk)?;
        ens.push(o);
        Ok::<(), ApiError>(())
    };
    for te in list(body, "trackedEntities")? {
        let o = mk(TrackerType::TrackedEntity, te, None, tes.len())?;
        for e in list(te, "enrollments")? {
            push_enrollment(&mut ens, &mut evs, e, Some(&o.uid))?;
        }
        tes.push(o);
    }
    for e in list(body, "enrollments")? {
        push_enrollment(&mut ens, &mut evs, e, None)?;
    }
    for ev in list(body, "events")? {
        let parent = text(ev, "enrollment");
        evs.push(mk(TrackerType::Event, ev, parent, evs.len())?);
    }
    // `relationships` are accepted and ignored.
    let _ = list(body, "relationships")?;
    Ok(tes.into_iter().chain(ens).chain(evs).collect())
}

/// Checks the shape of a payload (an object whose lists hold objects): a 400 otherwise, so an
/// async import refuses it before a job is created.
pub fn check_shape(body: &Value) -> Result<(), ApiError> {
    flatten(body).map(|_| ())
}

/// Runs an import inside `conn`'s transaction and returns the `ImportReport` JSON for
/// `version`.
#[allow(clippy::too_many_arguments)]
pub fn import(
    conn: &Connection,
    md: &Metadata,
    user: &UserScope,
    ous: &HashMap<String, OrgUnit>,
    authorities: &[String],
    body: &Value,
    params: ImportParams,
    version: ServerVersion,
) -> Result<Value, ApiError> {
    let started = std::time::Instant::now();
    let mut objs = flatten(body)?;
    let mut run = Run::new(conn, md, user, ous, authorities, params);
    let valid = validate_bundle(&mut run, &mut objs)?;
    let validation_ms = started.elapsed().as_secs_f64();
    if params.atomic_all && !run.errors.is_empty() {
        // dhis2-core 2.41 DefaultTrackerImportService:107-110 / ImportReport.withValidationErrors:
        // status ERROR, every object of the bundle ignored, no bundleReport.
        return Ok(validation_errors_report(&run, objs.len(), version, validation_ms));
    }
    let mut done = vec![false; objs.len()];
    if !params.validate_only {
        let now = crate::db::now_timestamp();
        let commit = Commit { w: Writer { conn, now: &now, username: &user.username }, ous };
        for ((o, ok), done) in objs.iter().zip(&valid).zip(&mut done) {
            if *ok {
                commit.object(o)?;
                *done = true;
            }
        }
    }
    // A completed import is OK even when objects failed validation (atomicMode=OBJECT;
    // 2.41 DefaultTrackerImportService:119-120, withImportCompleted(Status.OK, …)).
    let timings = (validation_ms, started.elapsed().as_secs_f64());
    Ok(build_report(&objs, &done, &run, "OK", version, timings))
}
