//! Writes the app makes, as the service worker sees them: what each one means and the UIDs
//! added to creates before anything is sent (so a replay is idempotent). Their effect on the
//! local copy is [`crate::write_effect`]; the answer the app expects when one is queued,
//! [`crate::write_answer`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    api_path::{strip_json, unversioned},
    error::{CoreError, Result},
    family::{convert, Kind, Naming},
    params::Target,
    random::RandomSource,
    records::{is_uid, text, Object},
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

pub(crate) fn bad(message: impl Into<String>) -> CoreError {
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
    let parts: Vec<&str> = unversioned(relative.trim_matches('/')).split('/').collect();
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

/// What kind of record a queued write changes ([`Change`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    /// A woman (tracked entity).
    TrackedEntity,
    /// An enrollment.
    Enrollment,
    /// An event (a visit).
    Event,
    /// Anything else (a user setting, a dataStore key, ...).
    Other,
}

/// What a queued write does to its record ([`Change`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeAction {
    /// Creates it (a legacy `POST`).
    Create,
    /// Changes it (a legacy `PUT`).
    Update,
    /// Deletes it.
    Delete,
    /// Creates or changes it (`/api/tracker` imports with `CREATE_AND_UPDATE`).
    Save,
}

/// What a queued write changes, for people and screens (never the record's content): the
/// kind of record, the action, the record's UID and, for a single value, its data element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Kind of record.
    pub kind: ChangeKind,
    /// What the write does to it.
    pub action: ChangeAction,
    /// Its UID, when the write names one record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// The data element of a single value (`PUT events/{event}/{dataElement}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_element: Option<String>,
}

/// The change a queued write makes, from its summary (`METHOD /path`, [`describe`]) and the
/// records it touches.
pub fn change_of(summary: &str, touches: &[crate::write_effect::Touch]) -> Change {
    let (method, path) = summary.split_once(' ').unwrap_or((summary, ""));
    let relative = path.rfind("/api/").map_or(path, |i| &path[i + 5..]);
    let parts: Vec<&str> = unversioned(relative.trim_matches('/')).split('/').map(strip_json).collect();
    let action = match method {
        "POST" => ChangeAction::Create,
        "DELETE" => ChangeAction::Delete,
        _ => ChangeAction::Update,
    };
    let kind_of = |k: Kind| match k {
        Kind::TrackedEntity => ChangeKind::TrackedEntity,
        Kind::Enrollment => ChangeKind::Enrollment,
        Kind::Event => ChangeKind::Event,
    };
    let named = |n: usize| parts.get(n).filter(|p| !p.is_empty()).map(|p| p.to_string());
    let first = touches.first();
    let (kind, action, record, data_element) = match parts.first().copied().unwrap_or_default() {
        "trackedEntityInstances" => (ChangeKind::TrackedEntity, action, named(1), None),
        "enrollments" => (ChangeKind::Enrollment, action, named(1), None),
        "events" => (ChangeKind::Event, action, named(1), named(2)),
        "tracker" => match first {
            Some(t) if touches.iter().all(|t| t.deleted) => (kind_of(t.kind), ChangeAction::Delete, None, None),
            Some(t) => (kind_of(t.kind), ChangeAction::Save, None, None),
            None => (ChangeKind::Other, ChangeAction::Save, None, None),
        },
        _ => (ChangeKind::Other, action, None, None),
    };
    let record = match kind {
        ChangeKind::Other => None,
        _ => record.or_else(|| first.filter(|t| kind_of(t.kind) == kind).map(|t| t.uid.clone())),
    };
    Change { kind, action, record, data_element }
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
    use serde_json::json;

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

    #[test]
    fn a_queued_write_is_described_by_kind_action_record_and_value() {
        use crate::write_effect::Touch;
        let touch = |kind, uid: &str, deleted| Touch { kind, uid: uid.into(), tei: "Te000000001".into(), deleted };
        let registration =
            [touch(Kind::TrackedEntity, "Te000000001", false), touch(Kind::Enrollment, "En000000001", false)];
        let change = |kind, action, record: Option<&str>, de: Option<&str>| Change {
            kind,
            action,
            record: record.map(str::to_string),
            data_element: de.map(str::to_string),
        };
        let table: Vec<(&str, Vec<Touch>, Change)> = vec![
            (
                "POST /api/trackedEntityInstances",
                registration.to_vec(),
                change(ChangeKind::TrackedEntity, ChangeAction::Create, Some("Te000000001"), None),
            ),
            (
                "PUT /dhis/api/40/trackedEntityInstances/Te000000001",
                vec![touch(Kind::TrackedEntity, "Te000000001", false)],
                change(ChangeKind::TrackedEntity, ChangeAction::Update, Some("Te000000001"), None),
            ),
            (
                "POST /api/enrollments",
                vec![touch(Kind::Enrollment, "En000000001", false)],
                change(ChangeKind::Enrollment, ChangeAction::Create, Some("En000000001"), None),
            ),
            (
                "PUT /api/events/Ev000000001/DeWeightKg1",
                vec![touch(Kind::Event, "Ev000000001", false)],
                change(ChangeKind::Event, ChangeAction::Update, Some("Ev000000001"), Some("DeWeightKg1")),
            ),
            (
                "DELETE /api/events/Ev000000001.json",
                vec![touch(Kind::Event, "Ev000000001", true)],
                change(ChangeKind::Event, ChangeAction::Delete, Some("Ev000000001"), None),
            ),
            (
                "POST /api/41/tracker",
                registration.to_vec(),
                change(ChangeKind::TrackedEntity, ChangeAction::Save, Some("Te000000001"), None),
            ),
            (
                "POST /api/tracker",
                vec![touch(Kind::Event, "Ev000000001", true)],
                change(ChangeKind::Event, ChangeAction::Delete, Some("Ev000000001"), None),
            ),
            ("PUT /api/userSettings/keyUiLocale", vec![], change(ChangeKind::Other, ChangeAction::Update, None, None)),
            ("", vec![], change(ChangeKind::Other, ChangeAction::Update, None, None)),
        ];
        for (summary, touches, expected) in table {
            assert_eq!(change_of(summary, &touches), expected, "{summary}");
        }
        let shown = serde_json::to_value(change_of("PUT /api/events/Ev000000001/DeWeightKg1", &[])).unwrap();
        assert_eq!(
            shown,
            json!({"kind": "event", "action": "update", "record": "Ev000000001", "dataElement": "DeWeightKg1"})
        );
    }
}
