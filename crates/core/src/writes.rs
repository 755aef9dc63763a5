//! Writes the app makes, as the service worker sees them: what each one means, the UIDs added
//! to creates before anything is sent (so a replay is idempotent), its effect on the local
//! copy, and the synthetic answer the app expects when the write is queued.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{
    error::{CoreError, Result},
    family::{convert, Kind, Naming},
    http::HttpResponse,
    params::Target,
    random::RandomSource,
    reads::LOCAL_HEADER,
    records::{is_uid, text, Object, SyncState, TeiBundle},
    uid::generate_uid,
};

/// The API family a write came through (replays use the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `/api/trackedEntityInstances`, `/api/enrollments`, `/api/events`.
    Legacy,
    /// `/api/tracker`.
    Tracker,
}

/// What a write does to tracker data, with UIDs filled in, in the legacy naming.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Create or update tracked entities (with nested enrollments and events).
    Teis {
        /// Records.
        teis: Vec<Object>,
        /// PUT: attributes not sent are removed.
        replace: bool,
    },
    /// Create or update enrollments (with nested events).
    Enrollments(Vec<Object>),
    /// Create or update events (PUT and POST both replace the data values sent).
    Events(Vec<Object>),
    /// `PUT events/{ev}/{de}`: one data value.
    EventValue {
        /// Event UID.
        event: String,
        /// `{dataElement, value, providedElsewhere?}`.
        value: Object,
    },
    /// `PUT events/{ev}/eventDate`.
    EventDate {
        /// Event UID.
        event: String,
        /// New date.
        date: String,
    },
    /// `POST events/{ev}/note`.
    EventNote {
        /// Event UID.
        event: String,
        /// Note text.
        value: String,
        /// The note's UID, given here so a replay never adds it twice (DHIS2 skips a note
        /// whose UID it already has).
        note: String,
    },
    /// `PUT enrollments/{id}/completed|cancelled|incompleted`.
    EnrollmentStatus {
        /// Enrollment UID.
        enrollment: String,
        /// COMPLETED, CANCELLED or ACTIVE.
        status: String,
    },
    /// `DELETE` of one record.
    Delete {
        /// Kind.
        kind: Kind,
        /// UID.
        uid: String,
    },
    /// `POST /api/tracker`: flat lists, already in legacy naming.
    TrackerImport {
        /// Tracked entities.
        teis: Vec<Object>,
        /// Enrollments.
        enrollments: Vec<Object>,
        /// Events.
        events: Vec<Object>,
        /// `importStrategy=DELETE`.
        delete: bool,
        /// `async` (default true): the app expects a job.
        asynchronous: bool,
    },
    /// Any other write under the API base: replayed as it was made.
    Raw,
}

/// A write ready to be sent or queued.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedWrite {
    /// HTTP method.
    pub method: String,
    /// Full URL as the app sent it.
    pub url: String,
    /// Content type of the body.
    pub content_type: String,
    /// The body to send: the app's, with UIDs added to creates.
    pub body: Vec<u8>,
    /// What it means.
    pub mutation: Mutation,
    /// API family.
    pub family: Family,
    /// The app window that made it (set by the service worker from the fetch event), so a
    /// value replaced by another open window is shown as a conflict.
    pub window: Option<crate::merge::WriteWindow>,
}

fn bad(message: impl Into<String>) -> CoreError {
    CoreError::BadInput(message.into())
}

fn ensure_uid(record: &mut Object, key: &str, rng: &impl RandomSource) -> Result<String> {
    match record.get(key) {
        Some(Value::String(uid)) if is_uid(uid) => Ok(uid.clone()),
        Some(Value::String(uid)) if !uid.is_empty() => Err(bad(format!("'{key}' is not a valid UID: {uid:?}"))),
        _ => {
            let uid = generate_uid(rng)?;
            record.insert(key.into(), Value::String(uid.clone()));
            Ok(uid)
        }
    }
}

fn objects(list: &Value, what: &str) -> Result<Vec<Object>> {
    list.as_array()
        .ok_or_else(|| bad(format!("'{what}' is not a list")))?
        .iter()
        .map(|v| v.as_object().cloned().ok_or_else(|| bad(format!("an item of '{what}' is not an object"))))
        .collect()
}

/// A single object or a `{wrapper: [...]}` bulk body.
fn single_or_bulk(body: &Value, wrapper: &str) -> Result<Vec<Object>> {
    match body.get(wrapper) {
        Some(list) => objects(list, wrapper),
        None => body.as_object().cloned().map(|o| vec![o]).ok_or_else(|| bad("the body is not a JSON object")),
    }
}

fn fill_event_uids(events: &mut [Object], rng: &impl RandomSource) -> Result<()> {
    for ev in events {
        ensure_uid(ev, "event", rng)?;
    }
    Ok(())
}

/// Gives the records nested under `parent[key]` the parent's UID in `link` (when they lack
/// it), then UIDs of their own with `fill`.
fn fill_nested(
    parent: &mut Object,
    key: &str,
    link: &str,
    parent_uid: &str,
    fill: impl FnOnce(&mut [Object]) -> Result<()>,
) -> Result<()> {
    if let Some(list) = parent.get(key) {
        let mut children = objects(list, key)?;
        for child in &mut children {
            child.entry(link).or_insert_with(|| Value::String(parent_uid.to_string()));
        }
        fill(&mut children)?;
        parent.insert(key.into(), Value::Array(children.into_iter().map(Value::Object).collect()));
    }
    Ok(())
}

fn fill_enrollment_uids(enrollments: &mut [Object], rng: &impl RandomSource) -> Result<()> {
    for e in enrollments {
        let uid = ensure_uid(e, "enrollment", rng)?;
        fill_nested(e, "events", "enrollment", &uid, |events| fill_event_uids(events, rng))?;
    }
    Ok(())
}

fn fill_tei_uids(teis: &mut [Object], rng: &impl RandomSource) -> Result<()> {
    for t in teis {
        let uid = ensure_uid(t, "trackedEntityInstance", rng)?;
        fill_nested(t, "enrollments", "trackedEntityInstance", &uid, |list| fill_enrollment_uids(list, rng))?;
    }
    Ok(())
}

fn rebuild_bulk(original: &Value, wrapper: &str, items: &[Object]) -> Value {
    let list = Value::Array(items.iter().cloned().map(Value::Object).collect());
    if original.get(wrapper).is_some() {
        let mut out = original.as_object().cloned().unwrap_or_default();
        out.insert(wrapper.into(), list);
        Value::Object(out)
    } else {
        items.first().cloned().map(Value::Object).unwrap_or(Value::Null)
    }
}

/// How deeply a write's JSON body may nest. DHIS2 records are a few levels deep; the local
/// copy stores a record up to two levels deeper than the body gave it, and must read it back
/// (serde_json reads at most 128 levels), so a deeper body is refused before anything is stored.
pub const MAX_BODY_DEPTH: usize = 64;

/// Levels of nesting of a JSON value (a scalar is 0, `[]` and `{}` are 1).
fn json_depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn strip_json(s: &str) -> &str {
    s.strip_suffix(".json").unwrap_or(s)
}

/// Understands a write to `relative` (path under the API base) and adds UIDs to creates; a
/// tracker body sent on is written as a server of minor version `minor` reads it.
pub fn prepare_write(
    method: &str,
    url: &str,
    api_path: &str,
    minor: u32,
    content_type: &str,
    body: &[u8],
    rng: &impl RandomSource,
) -> Result<PreparedWrite> {
    let method = method.to_ascii_uppercase();
    let target = Target::parse(url);
    let relative = target.relative_to(api_path).ok_or_else(|| bad("not under the API base"))?.to_string();
    let parts: Vec<&str> = relative.trim_matches('/').split('/').collect();
    let parts: Vec<&str> = match parts.first() {
        Some(p) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => parts[1..].to_vec(),
        _ => parts,
    };
    let raw = |body: &[u8]| PreparedWrite {
        method: method.clone(),
        url: url.to_string(),
        content_type: content_type.to_string(),
        body: body.to_vec(),
        mutation: Mutation::Raw,
        family: Family::Legacy,
        window: None,
    };
    let json_body = || -> Result<Value> {
        if body.is_empty() {
            return Ok(Value::Null);
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
        if json_depth(&value) > MAX_BODY_DEPTH {
            return Err(bad(format!("the body is nested deeper than {MAX_BODY_DEPTH} levels")));
        }
        Ok(value)
    };
    let strategy_delete =
        target.get("strategy").or(target.get("importStrategy")).is_some_and(|s| s.eq_ignore_ascii_case("DELETE"));
    let mut family = Family::Legacy;
    let (mutation, new_body) = match (method.as_str(), parts.as_slice()) {
        (_, [t]) if strategy_delete && matches!(strip_json(t), "trackedEntityInstances" | "enrollments" | "events") => {
            return Ok(raw(body));
        }
        ("POST", [t]) if strip_json(t) == "trackedEntityInstances" => {
            let v = json_body()?;
            let mut teis = single_or_bulk(&v, "trackedEntityInstances")?;
            fill_tei_uids(&mut teis, rng)?;
            (Mutation::Teis { teis: teis.clone(), replace: false }, rebuild_bulk(&v, "trackedEntityInstances", &teis))
        }
        ("PUT", ["trackedEntityInstances", uid]) => {
            let v = json_body()?;
            let mut tei = v.as_object().cloned().ok_or_else(|| bad("the body is not a JSON object"))?;
            let uid = strip_json(uid).to_string();
            if !is_uid(&uid) {
                return Err(bad(format!("not a UID: {uid:?}")));
            }
            tei.insert("trackedEntityInstance".into(), Value::String(uid));
            let mut teis = vec![tei];
            fill_tei_uids(&mut teis, rng)?;
            (Mutation::Teis { teis: teis.clone(), replace: true }, Value::Object(teis.remove(0)))
        }
        ("POST", [e]) if strip_json(e) == "enrollments" => {
            let v = json_body()?;
            let mut enrollments = single_or_bulk(&v, "enrollments")?;
            fill_enrollment_uids(&mut enrollments, rng)?;
            (Mutation::Enrollments(enrollments.clone()), rebuild_bulk(&v, "enrollments", &enrollments))
        }
        ("PUT", ["enrollments", uid]) => {
            let v = json_body()?;
            let mut e = v.as_object().cloned().ok_or_else(|| bad("the body is not a JSON object"))?;
            e.insert("enrollment".into(), Value::String(strip_json(uid).into()));
            let mut list = vec![e];
            fill_enrollment_uids(&mut list, rng)?;
            (Mutation::Enrollments(list.clone()), Value::Object(list.remove(0)))
        }
        ("PUT", ["enrollments", uid, action]) if matches!(*action, "completed" | "cancelled" | "incompleted") => {
            let status = match *action {
                "completed" => "COMPLETED",
                "cancelled" => "CANCELLED",
                _ => "ACTIVE",
            };
            (Mutation::EnrollmentStatus { enrollment: strip_json(uid).into(), status: status.into() }, json_body()?)
        }
        ("POST", [e]) if strip_json(e) == "events" => {
            let v = json_body()?;
            let mut events = single_or_bulk(&v, "events")?;
            fill_event_uids(&mut events, rng)?;
            (Mutation::Events(events.clone()), rebuild_bulk(&v, "events", &events))
        }
        ("PUT", ["events", uid]) => {
            let v = json_body()?;
            let mut ev = v.as_object().cloned().ok_or_else(|| bad("the body is not a JSON object"))?;
            ev.insert("event".into(), Value::String(strip_json(uid).into()));
            (Mutation::Events(vec![ev.clone()]), Value::Object(ev))
        }
        ("PUT", ["events", uid, "eventDate"]) => {
            let v = json_body()?;
            let date = v.get("eventDate").and_then(Value::as_str).ok_or_else(|| bad("eventDate missing"))?;
            (Mutation::EventDate { event: strip_json(uid).into(), date: date.into() }, v)
        }
        ("POST", ["events", uid, "note"]) => {
            let mut v = json_body()?;
            let value = v.get("value").and_then(Value::as_str).ok_or_else(|| bad("note value missing"))?.to_string();
            let Value::Object(note_body) = &mut v else { return Err(bad("the note is not a JSON object")) };
            let note = ensure_uid(note_body, "note", rng)?;
            (Mutation::EventNote { event: strip_json(uid).into(), value, note }, v)
        }
        ("PUT", ["events", uid, de]) => {
            let v = json_body()?;
            let value = v
                .get("dataValues")
                .and_then(Value::as_array)
                .and_then(|l| l.first())
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| bad("dataValues with one value expected"))?;
            if text(&value, "dataElement").is_some_and(|d| d != *de) {
                return Err(bad("the data element in the body differs from the URL"));
            }
            (Mutation::EventValue { event: strip_json(uid).into(), value }, v)
        }
        ("DELETE", [collection, uid]) => {
            let kind = match *collection {
                "trackedEntityInstances" => Kind::TrackedEntity,
                "enrollments" => Kind::Enrollment,
                "events" => Kind::Event,
                _ => return Ok(raw(body)),
            };
            (Mutation::Delete { kind, uid: strip_json(uid).into() }, Value::Null)
        }
        ("POST", [t]) if strip_json(t) == "tracker" => {
            family = Family::Tracker;
            let v = json_body()?;
            let obj = v.as_object().ok_or_else(|| bad("the body is not a JSON object"))?;
            // Relationships are not kept in the local copy: an import carrying any is kept as
            // it was written (replayed in order, under its author), never captured without them.
            if obj.get("relationships").and_then(Value::as_array).is_some_and(|l| !l.is_empty()) {
                return Ok(raw(body));
            }
            let list = |key: &str| -> Result<Vec<Object>> {
                obj.get(key).map(|l| objects(l, key)).transpose().map(Option::unwrap_or_default)
            };
            let kinds = [Kind::TrackedEntity, Kind::Enrollment, Kind::Event];
            let mut lists: Vec<Vec<Object>> = Vec::new();
            for kind in kinds {
                let items = list(kind.tracker_collection())?;
                lists.push(items.iter().map(|o| convert(kind, o, Naming::Legacy)).collect());
            }
            let (mut events, mut enrollments, mut teis) = (lists.remove(2), lists.remove(1), lists.remove(0));
            fill_tei_uids(&mut teis, rng)?;
            fill_enrollment_uids(&mut enrollments, rng)?;
            fill_event_uids(&mut events, rng)?;
            // The body sent on is rebuilt in the tracker naming with the UIDs.
            let mut out = obj.clone();
            for (kind, items) in
                [(Kind::TrackedEntity, &teis), (Kind::Enrollment, &enrollments), (Kind::Event, &events)]
            {
                if obj.contains_key(kind.tracker_collection()) {
                    out.insert(
                        kind.tracker_collection().into(),
                        Value::Array(
                            items.iter().map(|o| Value::Object(convert(kind, o, Naming::Tracker { minor }))).collect(),
                        ),
                    );
                }
            }
            let asynchronous = target.flag("async") != Some(false);
            (
                Mutation::TrackerImport { teis, enrollments, events, delete: strategy_delete, asynchronous },
                Value::Object(out),
            )
        }
        _ => return Ok(raw(body)),
    };
    let body = if new_body.is_null() { body.to_vec() } else { new_body.to_string().into_bytes() };
    Ok(PreparedWrite {
        method,
        url: url.into(),
        content_type: content_type.into(),
        body,
        mutation,
        family,
        window: None,
    })
}

fn web_message(status: u16, response: Value) -> HttpResponse {
    let (http_status, web_status) = match status {
        200 => ("OK", "OK"),
        202 => ("Accepted", "OK"),
        _ => ("OK", "OK"),
    };
    let body = json!({"httpStatus": http_status, "httpStatusCode": status, "status": web_status,
        "message": "Import was successful.", "response": response});
    local_json(status, &body)
}

fn local_json(status: u16, body: &Value) -> HttpResponse {
    crate::local_answer::json_answer(status, body, "queued")
}

fn import_summary(reference: &str, imported: bool) -> Value {
    json!({"responseType": "ImportSummary", "status": "SUCCESS",
        "importCount": {"imported": u8::from(imported), "updated": u8::from(!imported), "ignored": 0, "deleted": 0},
        "reference": reference})
}

fn import_summaries(refs: &[(String, bool)]) -> Value {
    let imported = refs.iter().filter(|(_, i)| *i).count();
    json!({"responseType": "ImportSummaries", "status": "SUCCESS", "imported": imported, "updated": refs.len() - imported,
        "deleted": 0, "ignored": 0, "total": refs.len(),
        "importSummaries": refs.iter().map(|(r, i)| import_summary(r, *i)).collect::<Vec<_>>()})
}

/// The answer the app gets for a queued write, in the shape the server would give.
/// `existed(uid)` tells whether a record was already known (imported vs updated counts).
pub fn synthetic_response(
    prepared: &PreparedWrite,
    job_id: &str,
    api_base: &str,
    existed: &dyn Fn(&str) -> bool,
) -> HttpResponse {
    let refs_of = |items: &[Object], key: &str| -> Vec<(String, bool)> {
        items.iter().filter_map(|o| text(o, key)).map(|u| (u.to_string(), !existed(u))).collect()
    };
    match &prepared.mutation {
        Mutation::Teis { teis, replace: false } => {
            web_message(200, import_summaries(&refs_of(teis, "trackedEntityInstance")))
        }
        Mutation::Teis { teis, replace: true } => web_message(
            200,
            import_summary(teis.first().and_then(|t| text(t, "trackedEntityInstance")).unwrap_or(""), false),
        ),
        Mutation::Enrollments(list) if prepared.method == "PUT" => {
            web_message(200, import_summary(list.first().and_then(|e| text(e, "enrollment")).unwrap_or(""), false))
        }
        Mutation::Enrollments(list) => web_message(200, import_summaries(&refs_of(list, "enrollment"))),
        Mutation::Events(list) if prepared.method == "PUT" => {
            web_message(200, import_summary(list.first().and_then(|e| text(e, "event")).unwrap_or(""), false))
        }
        Mutation::Events(list) => web_message(200, import_summaries(&refs_of(list, "event"))),
        Mutation::EventValue { event, .. } | Mutation::EventDate { event, .. } => {
            web_message(200, import_summary(event, false))
        }
        Mutation::EventNote { event, .. } => web_message(200, import_summary(event, false)),
        Mutation::EnrollmentStatus { .. } => {
            HttpResponse { status: 204, headers: vec![(LOCAL_HEADER.0.into(), "queued".into())], body: vec![] }
        }
        Mutation::Delete { uid, .. } => {
            let mut s = import_summary(uid, false);
            s["importCount"] = json!({"imported": 0, "updated": 0, "ignored": 0, "deleted": 1});
            web_message(200, s)
        }
        Mutation::TrackerImport { asynchronous: true, .. } => local_json(
            200,
            &json!({"httpStatus": "OK", "httpStatusCode": 200, "status": "OK", "message": "Tracker job added",
                "response": {"responseType": "TrackerJob", "id": job_id, "location": format!("{api_base}/tracker/jobs/{job_id}")}}),
        ),
        Mutation::TrackerImport { .. } => local_json(200, &tracker_report(prepared)),
        Mutation::Raw => local_json(
            202,
            &json!({"httpStatus": "Accepted", "httpStatusCode": 202, "status": "OK",
                "message": "The server cannot be reached; the request is queued and will be sent when it can."}),
        ),
    }
}

/// The records nested under `key` of each of `parents`.
fn nested<'a>(parents: &[&'a Object], key: &str) -> Vec<&'a Object> {
    parents.iter().filter_map(|p| p.get(key).and_then(Value::as_array)).flatten().filter_map(Value::as_object).collect()
}

/// The ImportReport of a queued `/api/tracker` import.
pub fn tracker_report(prepared: &PreparedWrite) -> Value {
    let Mutation::TrackerImport { teis, enrollments, events, delete, .. } = &prepared.mutation else {
        return Value::Null;
    };
    // Nested records count as the server counts them: a tracked entity's enrollments, an
    // enrollment's events (the Capture app registers a woman, her enrollment and its first
    // visit in one nested payload and reads their UIDs here).
    let teis: Vec<&Object> = teis.iter().collect();
    let mut enrollments: Vec<&Object> = enrollments.iter().collect();
    enrollments.extend(nested(&teis, "enrollments"));
    let mut events: Vec<&Object> = events.iter().collect();
    events.extend(nested(&enrollments, "events"));
    let report = |kind: &str, items: &[&Object], key: &str| {
        json!({"trackerType": kind, "stats": {"created": if *delete { 0 } else { items.len() }, "updated": 0,
            "deleted": if *delete { items.len() } else { 0 }, "ignored": 0, "total": items.len()},
            "objectReports": items.iter().filter_map(|o| text(o, key)).map(|u| json!({"trackerType": kind, "uid": u, "errorReports": []})).collect::<Vec<_>>()})
    };
    let total = teis.len() + enrollments.len() + events.len();
    json!({"status": "OK",
        "validationReport": {"errorReports": [], "warningReports": []},
        "stats": {"created": if *delete { 0 } else { total }, "updated": 0, "deleted": if *delete { total } else { 0 }, "ignored": 0, "total": total},
        "bundleReport": {"status": "OK", "typeReportMap": {
            "TRACKED_ENTITY": report("TRACKED_ENTITY", &teis, "trackedEntityInstance"),
            "ENROLLMENT": report("ENROLLMENT", &enrollments, "enrollment"),
            "EVENT": report("EVENT", &events, "event")}}})
}

/// A record touched by a write: sent at the next flush in its current local state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Touch {
    /// Record kind (stored as `tei`, `enrollment` or `event`).
    pub kind: Kind,
    /// Record UID.
    pub uid: String,
    /// Owning tracked entity.
    pub tei: String,
    /// The record was deleted.
    pub deleted: bool,
}

/// Applies a mutation to the bundles it concerns. `bundle_of(tei)` gives a loaded bundle (or
/// None if unknown); `owner_of(uid)` the tracked entity of an enrollment or event. Returns the
/// changed bundles and the touched records; an Err means the write cannot be applied locally
/// (it is then queued raw).
pub fn apply_mutation(
    prepared: &PreparedWrite,
    author: &str,
    now: &str,
    bundle_of: &mut dyn FnMut(&str) -> Option<TeiBundle>,
    owner_of: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<TeiBundle>, Vec<Touch>)> {
    let mut changed: Vec<TeiBundle> = Vec::new();
    let mut touches: Vec<Touch> = Vec::new();
    // Works on `changed` first so several records of one bundle accumulate.
    let mut take = |tei: &str, changed: &mut Vec<TeiBundle>| -> Option<TeiBundle> {
        if let Some(i) = changed.iter().position(|b| b.uid() == tei) {
            return Some(changed.remove(i));
        }
        bundle_of(tei)
    };
    let touch =
        |kind: Kind, uid: &str, tei: &str, deleted: bool| Touch { kind, uid: uid.into(), tei: tei.into(), deleted };
    let mark = |b: &mut TeiBundle, uid: &str| {
        let next = if b.state(uid) == SyncState::ToPost { SyncState::ToPost } else { SyncState::ToUpdate };
        b.sync.insert(uid.to_string(), next);
    };
    let not_local = |what: &str, uid: &str| CoreError::BadInput(format!("{what} {uid} is not in the local copy"));

    let upsert_enrollment = |b: &mut TeiBundle, mut e: Object, touches: &mut Vec<Touch>| -> Result<()> {
        let uid = text(&e, "enrollment").unwrap_or_default().to_string();
        let tei = b.uid().to_string();
        let nested = e.remove("events");
        e.insert("trackedEntityInstance".into(), Value::String(tei.clone()));
        e.insert("lastUpdated".into(), Value::String(now.into()));
        match b.enrollments.iter_mut().find(|x| text(x, "enrollment") == Some(uid.as_str())) {
            Some(existing) => {
                for (k, v) in e {
                    existing.insert(k, v);
                }
                mark(b, &uid);
            }
            None => {
                e.entry("created").or_insert_with(|| Value::String(now.into()));
                e.entry("status").or_insert_with(|| json!("ACTIVE"));
                b.enrollments.push(e);
                b.sync.insert(uid.clone(), SyncState::ToPost);
            }
        }
        touches.push(touch(Kind::Enrollment, &uid, &tei, false));
        if let Some(Value::Array(events)) = nested {
            for ev in events {
                if let Value::Object(mut ev) = ev {
                    ev.entry("enrollment").or_insert_with(|| Value::String(uid.clone()));
                    upsert_event(b, ev, author, now, touches, &mark);
                }
            }
        }
        Ok(())
    };

    match &prepared.mutation {
        Mutation::Raw => return Err(CoreError::BadInput("not a tracker write".into())),
        Mutation::Teis { teis, replace } => {
            for t in teis {
                let mut t = t.clone();
                let uid = text(&t, "trackedEntityInstance").unwrap_or_default().to_string();
                let nested = t.remove("enrollments");
                let mut b = match take(&uid, &mut changed) {
                    Some(mut b) => {
                        for (k, v) in t {
                            if k != "attributes" || *replace {
                                b.tei.insert(k, v);
                            } else if let Value::Array(new_attrs) = v {
                                merge_attributes(&mut b.tei, new_attrs);
                            }
                        }
                        mark(&mut b, &uid);
                        b
                    }
                    None => {
                        t.entry("created").or_insert_with(|| Value::String(now.into()));
                        let mut b = TeiBundle { tei: t, ..Default::default() };
                        b.sync.insert(uid.clone(), SyncState::ToPost);
                        b
                    }
                };
                b.tei.insert("lastUpdated".into(), Value::String(now.into()));
                touches.push(touch(Kind::TrackedEntity, &uid, &uid, false));
                if let Some(Value::Array(list)) = nested {
                    for e in list {
                        if let Value::Object(e) = e {
                            upsert_enrollment(&mut b, e, &mut touches)?;
                        }
                    }
                }
                changed.push(b);
            }
        }
        Mutation::Enrollments(list) => {
            for e in list {
                let tei = text(e, "trackedEntityInstance")
                    .map(str::to_string)
                    .or_else(|| text(e, "enrollment").and_then(owner_of))
                    .ok_or_else(|| bad("enrollment without trackedEntityInstance"))?;
                let mut b = take(&tei, &mut changed).ok_or_else(|| not_local("tracked entity", &tei))?;
                upsert_enrollment(&mut b, e.clone(), &mut touches)?;
                changed.push(b);
            }
        }
        Mutation::Events(list) => {
            for ev in list {
                let uid = text(ev, "event").unwrap_or_default().to_string();
                let tei = text(ev, "trackedEntityInstance")
                    .map(str::to_string)
                    .or_else(|| owner_of(&uid))
                    .or_else(|| text(ev, "enrollment").and_then(owner_of))
                    .ok_or_else(|| not_local("event", &uid))?;
                let mut b = take(&tei, &mut changed).ok_or_else(|| not_local("tracked entity", &tei))?;
                upsert_event(&mut b, ev.clone(), author, now, &mut touches, &mark);
                changed.push(b);
            }
        }
        Mutation::EventValue { event, .. } | Mutation::EventDate { event, .. } | Mutation::EventNote { event, .. } => {
            // A change to one event of a known bundle: value, date or note.
            let tei = owner_of(event).ok_or_else(|| not_local("event", event))?;
            let mut b = take(&tei, &mut changed).ok_or_else(|| not_local("tracked entity", &tei))?;
            let ev = b
                .events
                .iter_mut()
                .find(|e| text(e, "event") == Some(event.as_str()))
                .ok_or_else(|| not_local("event", event))?;
            match &prepared.mutation {
                Mutation::EventValue { value, .. } => set_data_value(ev, value, author, now),
                Mutation::EventDate { date, .. } => {
                    ev.insert("eventDate".into(), Value::String(date.clone()));
                }
                Mutation::EventNote { value, note, .. } => {
                    if let Value::Array(list) = ev.entry("notes").or_insert_with(|| json!([])) {
                        list.push(json!({"note": note, "value": value, "storedBy": author, "storedDate": now}));
                    }
                }
                _ => {}
            }
            ev.insert("lastUpdated".into(), Value::String(now.into()));
            mark(&mut b, event);
            touches.push(touch(Kind::Event, event, &tei, false));
            changed.push(b);
        }
        Mutation::EnrollmentStatus { enrollment, status } => {
            let tei = owner_of(enrollment).ok_or_else(|| not_local("enrollment", enrollment))?;
            let mut b = take(&tei, &mut changed).ok_or_else(|| not_local("tracked entity", &tei))?;
            let e = b
                .enrollments
                .iter_mut()
                .find(|e| text(e, "enrollment") == Some(enrollment.as_str()))
                .ok_or_else(|| not_local("enrollment", enrollment))?;
            e.insert("status".into(), Value::String(status.clone()));
            if status == "COMPLETED" {
                e.insert("completedDate".into(), Value::String(now.into()));
            }
            e.insert("lastUpdated".into(), Value::String(now.into()));
            mark(&mut b, enrollment);
            touches.push(touch(Kind::Enrollment, enrollment, &tei, false));
            changed.push(b);
        }
        Mutation::Delete { kind, uid } => {
            let tei = match kind {
                Kind::TrackedEntity => uid.clone(),
                _ => owner_of(uid).ok_or_else(|| not_local("record", uid))?,
            };
            let mut b = take(&tei, &mut changed).ok_or_else(|| not_local("tracked entity", &tei))?;
            match kind {
                Kind::Event => b.events.retain(|e| text(e, "event") != Some(uid.as_str())),
                Kind::Enrollment => {
                    b.enrollments.retain(|e| text(e, "enrollment") != Some(uid.as_str()));
                    b.events.retain(|e| text(e, "enrollment") != Some(uid.as_str()));
                }
                Kind::TrackedEntity => {
                    b.tei.insert("deleted".into(), Value::Bool(true));
                }
            }
            // Sent even for a record never sent (its create's answer may have been lost after
            // the server committed); the flush counts "does not exist" as done.
            b.sync.remove(uid);
            touches.push(touch(*kind, uid, &tei, true));
            changed.push(b);
        }
        Mutation::TrackerImport { teis, enrollments, events, delete, .. } => {
            if *delete {
                return Err(bad("tracker deletes are queued raw"));
            }
            // Flat lists: events name their tracked entity through an enrollment of the same payload.
            let mut events = events.clone();
            for ev in &mut events {
                if text(ev, "trackedEntityInstance").is_none() {
                    let tei = text(ev, "enrollment")
                        .and_then(|en| enrollments.iter().find(|e| text(e, "enrollment") == Some(en)))
                        .and_then(|e| text(e, "trackedEntityInstance"))
                        .map(str::to_string);
                    if let Some(tei) = tei {
                        ev.insert("trackedEntityInstance".into(), Value::String(tei));
                    }
                }
            }
            let pending: std::cell::RefCell<Vec<TeiBundle>> = std::cell::RefCell::new(std::mem::take(&mut changed));
            let mut sub = prepared.clone();
            for mutation in [
                Mutation::Teis { teis: teis.clone(), replace: false },
                Mutation::Enrollments(enrollments.clone()),
                Mutation::Events(events),
            ] {
                let empty = match &mutation {
                    Mutation::Teis { teis, .. } => teis.is_empty(),
                    Mutation::Enrollments(l) | Mutation::Events(l) => l.is_empty(),
                    _ => true,
                };
                if empty {
                    continue;
                }
                sub.mutation = mutation;
                let mut lookup = |tei: &str| -> Option<TeiBundle> {
                    let mut p = pending.borrow_mut();
                    match p.iter().position(|b| b.uid() == tei) {
                        Some(i) => Some(p.remove(i)),
                        None => bundle_of(tei),
                    }
                };
                let owner = |uid: &str| -> Option<String> {
                    pending
                        .borrow()
                        .iter()
                        .find(|b| {
                            b.enrollments.iter().any(|e| text(e, "enrollment") == Some(uid))
                                || b.events.iter().any(|e| text(e, "event") == Some(uid))
                        })
                        .map(|b| b.uid().to_string())
                        .or_else(|| owner_of(uid))
                };
                let (bundles, t) = apply_mutation(&sub, author, now, &mut lookup, &owner)?;
                pending.borrow_mut().extend(bundles);
                touches.extend(t);
            }
            changed = pending.into_inner();
        }
    }
    Ok((changed, touches))
}

fn merge_attributes(tei: &mut Object, new_attrs: Vec<Value>) {
    let mut current = tei.get("attributes").and_then(Value::as_array).cloned().unwrap_or_default();
    for a in new_attrs {
        let id = a.get("attribute").and_then(Value::as_str).map(str::to_string);
        match current.iter_mut().find(|c| c.get("attribute").and_then(Value::as_str).map(str::to_string) == id) {
            Some(c) => *c = a,
            None => current.push(a),
        }
    }
    tei.insert("attributes".into(), Value::Array(current));
}

fn set_data_value(ev: &mut Object, value: &Object, author: &str, now: &str) {
    let de = text(value, "dataElement").unwrap_or_default().to_string();
    let empty = match value.get("value") {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    };
    let list = ev.entry("dataValues").or_insert_with(|| json!([]));
    let Value::Array(list) = list else { return };
    list.retain(|v| v.get("dataElement").and_then(Value::as_str) != Some(de.as_str()));
    if !empty {
        let mut v = value.clone();
        v.insert("storedBy".into(), Value::String(author.into()));
        v.insert("lastUpdated".into(), Value::String(now.into()));
        v.entry("created").or_insert_with(|| Value::String(now.into()));
        list.push(Value::Object(v));
    }
}

fn upsert_event(
    b: &mut TeiBundle,
    mut ev: Object,
    author: &str,
    now: &str,
    touches: &mut Vec<Touch>,
    mark: &dyn Fn(&mut TeiBundle, &str),
) {
    let uid = text(&ev, "event").unwrap_or_default().to_string();
    let tei = b.uid().to_string();
    ev.insert("trackedEntityInstance".into(), Value::String(tei.clone()));
    ev.insert("storedBy".into(), Value::String(author.into()));
    ev.insert("lastUpdated".into(), Value::String(now.into()));
    if let Some(Value::Array(values)) = ev.get_mut("dataValues") {
        for v in values.iter_mut() {
            if let Value::Object(v) = v {
                v.entry("storedBy").or_insert_with(|| Value::String(author.into()));
            }
        }
    }
    // An event without its enrollment belongs, as on the server, to the woman's enrollment in
    // its program (the legacy PUT of a whole event does not repeat it).
    if !ev.contains_key("enrollment") {
        let program = text(&ev, "program").map(str::to_string);
        let known =
            b.events.iter().find(|x| text(x, "event") == Some(uid.as_str())).and_then(|x| x.get("enrollment").cloned());
        let by_program = || {
            let mut of_program =
                b.enrollments.iter().filter(|e| program.is_some() && text(e, "program") == program.as_deref());
            let all: Vec<&Object> = of_program.by_ref().collect();
            all.iter()
                .find(|e| text(e, "status") == Some("ACTIVE"))
                .or(all.last())
                .and_then(|e| e.get("enrollment").cloned())
        };
        if let Some(enrollment) = known.or_else(by_program) {
            ev.insert("enrollment".into(), enrollment);
        }
    }
    match b.events.iter_mut().find(|x| text(x, "event") == Some(uid.as_str())) {
        Some(existing) => {
            let created = existing.get("created").cloned();
            *existing = ev;
            if let Some(c) = created {
                existing.entry("created").or_insert(c);
            }
            mark(b, &uid);
        }
        None => {
            ev.entry("created").or_insert_with(|| Value::String(now.into()));
            b.events.push(ev);
            b.sync.insert(uid.clone(), SyncState::ToPost);
        }
    }
    touches.push(Touch { kind: Kind::Event, uid, tei, deleted: false });
}

/// A summary of the write for lists and failure screens (no record content).
pub fn describe(prepared: &PreparedWrite) -> String {
    let target = Target::parse(&prepared.url);
    format!("{} {}", prepared.method, target.path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::DeterministicRandom;

    /// The Capture app registers a woman as one nested payload (`trackedEntities[].enrollments[]
    /// .events[]`, the enrollment without a UID: the server makes it) to `/api/41/tracker?async=
    /// false`, and reads the UIDs of the new woman AND of her enrollment from the bundle report
    /// (`typeReportMap.ENROLLMENT.objectReports[0].uid`) to open her dashboard. Offline, the local
    /// answer named only the top-level lists: no enrollment, so the app could not go on.
    #[test]
    fn a_nested_registration_is_answered_with_every_record_it_creates() {
        let body = json!({"trackedEntities": [{"trackedEntity": "CaptureTei1", "orgUnit": "OuBaniNaim1",
            "trackedEntityType": "TetPerson01", "attributes": [{"attribute": "AtFirstNam1", "value": "Sawsan"}],
            "enrollments": [{"program": "PrMchProg01", "status": "ACTIVE", "orgUnit": "OuBaniNaim1",
                "occurredAt": "2026-12-01", "enrolledAt": "2026-12-01",
                "events": [{"event": "CaptureEvt1", "programStage": "PsAncVisit1", "program": "PrMchProg01",
                    "orgUnit": "OuBaniNaim1", "status": "ACTIVE", "occurredAt": "2026-12-01", "dataValues": []}]}]}]});
        let rng = DeterministicRandom::new(2);
        let prepared = prepare_write(
            "POST",
            "/api/41/tracker?async=false",
            "/api",
            41,
            "application/json",
            body.to_string().as_bytes(),
            &rng,
        )
        .unwrap();
        let sent: Value = serde_json::from_slice(&prepared.body).unwrap();
        let enrollment = sent["trackedEntities"][0]["enrollments"][0]["enrollment"].as_str().unwrap().to_string();
        assert!(is_uid(&enrollment), "the enrollment is given its UID here: {sent}");
        let report = tracker_report(&prepared);
        let types = &report["bundleReport"]["typeReportMap"];
        assert_eq!(types["TRACKED_ENTITY"]["objectReports"][0]["uid"], "CaptureTei1", "{report}");
        assert_eq!(types["ENROLLMENT"]["objectReports"][0]["uid"], enrollment.as_str(), "{report}");
        assert_eq!(types["EVENT"]["objectReports"][0]["uid"], "CaptureEvt1", "{report}");
        assert_eq!(report["stats"]["created"], 3, "{report}");
        assert_eq!(types["ENROLLMENT"]["stats"]["created"], 1, "{report}");
    }

    /// Found by the fuzz harness (tests/fuzz.rs, target `writes`): an event whose value nested
    /// 120 levels parsed as a body, was captured, and its bundle (two levels deeper) could no
    /// longer be read: every read of that woman failed with STORAGE_CORRUPT.
    #[test]
    fn a_body_nested_too_deeply_is_refused_before_anything_is_stored() {
        let mut value = serde_json::json!("61");
        for _ in 0..120 {
            value = Value::Array(vec![value]);
        }
        let body = json!({"program": "PrMchProg01", "programStage": "PsAncVisit1", "orgUnit": "OuBaniNaim1",
            "dataValues": [{"dataElement": "DeWeightKg1", "value": value}]});
        let rng = DeterministicRandom::new(1);
        let err =
            prepare_write("POST", "/api/events", "/api", 40, "application/json", body.to_string().as_bytes(), &rng)
                .unwrap_err();
        assert_eq!(err.code(), "BAD_INPUT");
        assert!(err.to_string().contains("nested deeper"), "{err}");
        let shallow = json!({"events": [{"program": "PrMchProg01", "dataValues": [{"dataElement": "DeWeightKg1", "value": "61"}]}]});
        assert!(prepare_write("POST", "/api/events", "/api", 40, "", shallow.to_string().as_bytes(), &rng).is_ok());
        assert_eq!(json_depth(&shallow), 5);
    }
}
