//! The local model of tracker data. Records are kept as JSON objects in the legacy Web API
//! naming (`trackedEntityInstance`, `eventDate`, ...), exactly as the server sent them, so that
//! answers given offline carry every field the server gave; [`family`](crate::family) renames
//! them for the `/api/tracker` family. A [`TeiBundle`] holds one tracked entity with its
//! enrollments and events and each record's [`SyncState`]: it is the unit sealed in the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    error::{CoreError, Result},
    family::Kind,
};

/// A JSON object.
pub type Object = Map<String, Value>;

/// Where a record stands with the server, as in the DHIS2 Android SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    /// Same as the server's copy.
    #[default]
    Synced,
    /// Created here, not yet on the server.
    ToPost,
    /// Changed here since the server's copy.
    ToUpdate,
    /// The server refused the last attempt; kept for the user.
    Error,
}

impl SyncState {
    /// True when the record holds local changes the server has not accepted.
    pub fn has_local_changes(self) -> bool {
        !matches!(self, SyncState::Synced)
    }
}

/// A tracked entity with its enrollments and events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TeiBundle {
    /// The tracked entity without `enrollments`.
    pub tei: Object,
    /// Enrollments without nested `events`.
    pub enrollments: Vec<Object>,
    /// Events of the tracked entity.
    pub events: Vec<Object>,
    /// Sync state per record UID (absent = synced).
    #[serde(default)]
    pub sync: BTreeMap<String, SyncState>,
    /// Position in the server's default order (download order); local creates come last.
    #[serde(default)]
    pub ordinal: u64,
    /// Unsent field changes of records that exist on the server, by record UID (see
    /// [`merge`](crate::merge)). Records created here are sent whole and have none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changes: BTreeMap<String, crate::merge::RecordChanges>,
    /// When a flush last settled each record with the server (ms since epoch, device clock): a
    /// download page fetched before that is older than the record and is not taken for it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settled_at: BTreeMap<String, i64>,
}

/// String field of a record.
pub fn text<'a>(record: &'a Object, key: &str) -> Option<&'a str> {
    record.get(key).and_then(Value::as_str)
}

/// Boolean field of a record (absent = false).
pub fn flag(record: &Object, key: &str) -> bool {
    record.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// True if `uid` has the DHIS2 UID form: 11 characters, a letter then letters or digits.
pub fn is_uid(uid: &str) -> bool {
    let bytes = uid.as_bytes();
    bytes.len() == 11 && bytes[0].is_ascii_alphabetic() && bytes.iter().all(u8::is_ascii_alphanumeric)
}

/// The UID of a record under `key`, checked.
pub fn uid_of(record: &Object, key: &str) -> Result<String> {
    match text(record, key) {
        Some(uid) if is_uid(uid) => Ok(uid.to_string()),
        Some(other) => Err(CoreError::BadInput(format!("'{key}' is not a valid UID: {other:?}"))),
        None => Err(CoreError::BadInput(format!("record without '{key}'"))),
    }
}

/// Attribute values of a tracked entity as (attribute UID, value).
pub fn attribute_values(tei: &Object) -> Vec<(String, String)> {
    tei.get("attributes")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|a| {
                    let attribute = a.get("attribute")?.as_str()?.to_string();
                    let value = match a.get("value")? {
                        Value::String(s) => s.clone(),
                        Value::Null => return None,
                        other => other.to_string(),
                    };
                    Some((attribute, value))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl TeiBundle {
    /// Splits a legacy tracked entity (with nested `enrollments[].events[]`) into a bundle.
    pub fn from_nested(mut tei: Object) -> Result<Self> {
        let tei_uid = uid_of(&tei, "trackedEntityInstance")?;
        let mut enrollments = Vec::new();
        let mut events = Vec::new();
        if let Some(list) = tei.remove("enrollments") {
            let Value::Array(list) = list else {
                return Err(CoreError::BadInput("'enrollments' is not a list".into()));
            };
            for item in list {
                let Value::Object(mut enrollment) = item else {
                    return Err(CoreError::BadInput("an enrollment is not an object".into()));
                };
                uid_of(&enrollment, "enrollment")?;
                enrollment.entry("trackedEntityInstance").or_insert_with(|| Value::String(tei_uid.clone()));
                if let Some(nested) = enrollment.remove("events") {
                    let Value::Array(nested) = nested else {
                        return Err(CoreError::BadInput("'events' is not a list".into()));
                    };
                    for ev in nested {
                        let Value::Object(mut ev) = ev else {
                            return Err(CoreError::BadInput("an event is not an object".into()));
                        };
                        uid_of(&ev, "event")?;
                        ev.entry("trackedEntityInstance").or_insert_with(|| Value::String(tei_uid.clone()));
                        if let Some(enr) = enrollment.get("enrollment").cloned() {
                            ev.entry("enrollment").or_insert(enr);
                        }
                        events.push(ev);
                    }
                }
                enrollments.push(enrollment);
            }
        }
        Ok(Self {
            tei,
            enrollments,
            events,
            sync: BTreeMap::new(),
            ordinal: 0,
            changes: BTreeMap::new(),
            settled_at: BTreeMap::new(),
        })
    }

    /// The tracked entity's UID.
    pub fn uid(&self) -> &str {
        text(&self.tei, "trackedEntityInstance").unwrap_or_default()
    }

    /// One record of the bundle by kind (`tei`, `enrollment`, `event`) and UID.
    pub fn record(&self, kind: Kind, uid: &str) -> Option<&Object> {
        match kind {
            Kind::TrackedEntity => (self.uid() == uid).then_some(&self.tei),
            Kind::Enrollment => self.enrollments.iter().find(|e| text(e, "enrollment") == Some(uid)),
            Kind::Event => self.events.iter().find(|e| text(e, "event") == Some(uid)),
        }
    }

    /// One record of the bundle, to change.
    pub fn record_mut(&mut self, kind: Kind, uid: &str) -> Option<&mut Object> {
        match kind {
            Kind::TrackedEntity => (self.uid() == uid).then_some(&mut self.tei),
            Kind::Enrollment => self.enrollments.iter_mut().find(|e| text(e, "enrollment") == Some(uid)),
            Kind::Event => self.events.iter_mut().find(|e| text(e, "event") == Some(uid)),
        }
    }

    /// Sync state of one record.
    pub fn state(&self, uid: &str) -> SyncState {
        self.sync.get(uid).copied().unwrap_or_default()
    }

    /// True if any record of the bundle has unsent local changes.
    pub fn has_local_changes(&self) -> bool {
        self.sync.values().any(|s| s.has_local_changes())
    }

    /// Merges a fresh server copy, field by field: a record without unsent changes takes the
    /// server's version; one with tracked field changes takes the server's version with the
    /// device's changed fields applied over it (their bases stay, so the flush still sees a
    /// field changed on both sides); one with untracked changes (an older outbox) keeps its
    /// local version. Local-only records are kept.
    pub fn merge_from_server(&mut self, server: TeiBundle) {
        self.merge_from_server_fetched_at(server, i64::MAX);
    }

    /// [`merge_from_server`](Self::merge_from_server) for a server copy fetched at
    /// `fetched_at_ms`: a record a flush settled after that keeps its local version (the page
    /// is older than what the flush sent).
    pub fn merge_from_server_fetched_at(&mut self, server: TeiBundle, fetched_at_ms: i64) {
        let tei_uid = self.uid().to_string();
        let sync = self.sync.clone();
        let changes = self.changes.clone();
        let settled_at = self.settled_at.clone();
        let merged = MergeRule { sync: &sync, changes: &changes, settled_at: &settled_at, fetched_at_ms };
        self.tei = merged.record(&tei_uid, &self.tei, server.tei);
        merge_list(&mut self.enrollments, server.enrollments, "enrollment", &merged);
        merge_list(&mut self.events, server.events, "event", &merged);
    }

    /// Events with `followup` filled from their enrollment where they lack it (the tracker
    /// family always reports an event's follow-up; it is its enrollment's).
    pub fn fill_event_followup(&self, mut event: Object) -> Object {
        if !event.contains_key("followup") {
            let follow = text(&event, "enrollment")
                .and_then(|en| self.enrollments.iter().find(|e| text(e, "enrollment") == Some(en)))
                .map(|e| flag(e, "followup"))
                .unwrap_or(false);
            event.insert("followup".into(), Value::Bool(follow));
        }
        event
    }

    /// The tracked entity in the legacy nested shape, enrollments filtered to `program` if
    /// given, each with its events.
    pub fn to_nested(&self, program: Option<&str>) -> Object {
        let mut tei = self.tei.clone();
        let enrollments: Vec<Value> = self
            .enrollments
            .iter()
            .filter(|e| program.is_none() || text(e, "program") == program)
            .map(|e| {
                let mut e = e.clone();
                let uid = text(&e, "enrollment").map(str::to_string);
                let events: Vec<Value> = self
                    .events
                    .iter()
                    .filter(|ev| uid.is_some() && text(ev, "enrollment") == uid.as_deref())
                    .cloned()
                    .map(Value::Object)
                    .collect();
                e.insert("events".into(), Value::Array(events));
                Value::Object(e)
            })
            .collect();
        tei.insert("enrollments".into(), Value::Array(enrollments));
        tei
    }
}

/// How a server record replaces its local version (see [`TeiBundle::merge_from_server`]).
struct MergeRule<'a> {
    sync: &'a BTreeMap<String, SyncState>,
    changes: &'a BTreeMap<String, crate::merge::RecordChanges>,
    settled_at: &'a BTreeMap<String, i64>,
    fetched_at_ms: i64,
}

impl MergeRule<'_> {
    fn record(&self, uid: &str, local: &Object, server: Object) -> Object {
        if self.settled_at.get(uid).is_some_and(|t| *t > self.fetched_at_ms) {
            return local.clone();
        }
        let pending = self.sync.get(uid).is_some_and(|s| s.has_local_changes());
        match self.changes.get(uid) {
            _ if !pending => server,
            Some(c) if !c.contains_key(crate::merge::WHOLE_RECORD) => {
                let mut record = server;
                let values = c.iter().map(|(k, f)| (k.clone(), f.value.clone())).collect();
                crate::merge::apply_fields(&mut record, &values);
                record
            }
            _ => local.clone(),
        }
    }
}

fn merge_list(local: &mut Vec<Object>, server: Vec<Object>, key: &str, merged: &MergeRule<'_>) {
    for record in server {
        let Some(uid) = text(&record, key).map(str::to_string) else { continue };
        match local.iter_mut().find(|r| text(r, key) == Some(uid.as_str())) {
            Some(existing) => *existing = merged.record(&uid, existing, record),
            None => local.push(record),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn uid_form() {
        assert!(is_uid("PQfMcpmXeFE"));
        assert!(!is_uid("1QfMcpmXeFE"));
        assert!(!is_uid("PQfMcpmXeF"));
        assert!(!is_uid("PQfMcpmXe-E"));
    }

    #[test]
    fn nested_round_trip_and_merge_keeps_local_changes() {
        let nested = obj(json!({
            "trackedEntityInstance": "PQfMcpmXeFE", "orgUnit": "OuBaniNaim1",
            "attributes": [{"attribute": "AtFirstNam1", "value": "Fatima"}],
            "enrollments": [{"enrollment": "EnFatima001", "program": "PrMchProg01",
                "events": [{"event": "EvAncVisit1", "programStage": "PsAncVisit1", "dataValues": []}]}]
        }));
        let mut bundle = TeiBundle::from_nested(nested.clone()).unwrap();
        assert_eq!(bundle.events.len(), 1);
        assert_eq!(text(&bundle.events[0], "enrollment"), Some("EnFatima001"));
        assert_eq!(text(&bundle.events[0], "trackedEntityInstance"), Some("PQfMcpmXeFE"));
        let back = bundle.to_nested(Some("PrMchProg01"));
        assert_eq!(back["enrollments"][0]["events"][0]["event"], "EvAncVisit1");
        assert_eq!(bundle.to_nested(Some("PrOther0001"))["enrollments"], json!([]));

        bundle.events[0].insert("status".into(), json!("COMPLETED"));
        bundle.sync.insert("EvAncVisit1".into(), SyncState::ToUpdate);
        let mut server = TeiBundle::from_nested(nested).unwrap();
        server.tei.insert("inactive".into(), json!(true));
        server.events[0].insert("status".into(), json!("ACTIVE"));
        bundle.merge_from_server(server);
        assert_eq!(bundle.tei["inactive"], json!(true), "synced record takes the server's copy");
        assert_eq!(bundle.events[0]["status"], json!("COMPLETED"), "pending record keeps local copy");
    }

    #[test]
    fn a_page_fetched_before_a_flush_settled_never_reverts_what_it_sent() {
        let nested = obj(json!({"trackedEntityInstance": "PQfMcpmXeFE", "enrollments": [{"enrollment": "EnFatima001",
            "program": "PrMchProg01", "events": [{"event": "EvAncVisit1", "status": "ACTIVE",
            "dataValues": [{"dataElement": "DeWeightKg1", "value": "60"}]}]}]}));
        // The page was fetched at t=1000, before the flush; the flush settled at t=2000 with the
        // nurse's 61.5 now on the server and in the local copy.
        let stale_page = TeiBundle::from_nested(nested.clone()).unwrap();
        let mut local = TeiBundle::from_nested(nested).unwrap();
        local.events[0]["dataValues"][0]["value"] = json!("61.5");
        local.settled_at.insert("EvAncVisit1".into(), 2_000);
        local.merge_from_server_fetched_at(stale_page.clone(), 1_000);
        assert_eq!(local.events[0]["dataValues"][0]["value"], "61.5", "the older page does not put 60 back");
        // A page fetched after the settle is taken.
        let mut fresh = stale_page;
        fresh.events[0]["dataValues"][0]["value"] = json!("63");
        local.merge_from_server_fetched_at(fresh, 3_000);
        assert_eq!(local.events[0]["dataValues"][0]["value"], "63");
    }

    #[test]
    fn malformed_nested_records_are_refused() {
        assert!(TeiBundle::from_nested(obj(json!({"trackedEntityInstance": "bad"}))).is_err());
        assert!(TeiBundle::from_nested(obj(json!({"trackedEntityInstance": "PQfMcpmXeFE", "enrollments": 3}))).is_err());
        assert!(TeiBundle::from_nested(obj(
            json!({"trackedEntityInstance": "PQfMcpmXeFE", "enrollments": [{"enrollment": 1}]})
        ))
        .is_err());
    }
}
