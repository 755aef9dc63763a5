//! Field-level change tracking and the three-way merge. For each record the device changed
//! (not created), every field it changed is kept with its *base* (the server value it was
//! changed from) and its new value. A flush sends only those fields, after reading the
//! server's current copy: a field changed only on the server is taken, one changed only on the
//! device is sent, and one changed on both sides to different values is a [`Conflict`]: the
//! device's value is sent and the server's overwritten value is kept in the conflict log for a
//! person to see (`conflicts()`, `resolveConflict`). DHIS2 has no optimistic concurrency of its
//! own (no `updatedAt` check on import), so this is the only thing standing between a device
//! that was offline for days and the district's changes made meanwhile.
//!
//! Field keys: `attr:<attribute UID>` for a tracked entity attribute, `dv:<data element UID>`
//! for an event data value, the JSON key (legacy naming) for a header field (`status`,
//! `eventDate`, `orgUnit`, ...). A value is the JSON value; `null` means absent or cleared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::records::{text, Object};

/// One field the device changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The server's value it was changed from (`null`: absent).
    pub base: Value,
    /// The device's value now (`null`: cleared).
    pub value: Value,
    /// The app window (browser client id) that set `value`, when the write came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

impl FieldChange {
    /// A change from `base` to `value`, by no particular window.
    pub fn new(base: Value, value: Value) -> Self {
        FieldChange { base, value, window: None }
    }
}

/// The app window a local write came from, and the windows open when it was made (browser
/// client ids, as the service worker sees them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteWindow {
    /// The window that made the write.
    pub id: String,
    /// Every app window open at that moment (the writer included).
    pub open: Vec<String>,
}

/// A value one window saved, replaced before it was sent by another window that had not seen
/// it: (field key, base, the replaced value, the new value).
pub type WindowOverwrite = (String, Value, Value, Value);

/// The changed fields of one record, by field key.
pub type RecordChanges = BTreeMap<String, FieldChange>;

/// The key marking a record changed on the device before fields were tracked (an outbox
/// written by an older version): it is sent whole, as it was then.
pub const WHOLE_RECORD: &str = "*";

/// Keys that are bookkeeping (the server's or the device's), never a user's change.
const NOT_FIELDS: &[&str] = &[
    "trackedEntityInstance",
    "enrollment",
    "event",
    "attributes",
    "dataValues",
    "notes",
    "relationships",
    "enrollments",
    "events",
    "programOwners",
    "created",
    "lastUpdated",
    "createdAtClient",
    "lastUpdatedAtClient",
    "createdByUserInfo",
    "lastUpdatedByUserInfo",
    "storedBy",
    "href",
    "orgUnitName",
    "deleted",
    "potentialDuplicate",
];

/// The value lists of a record: (list key, id key, field key prefix). Notes are keyed by their
/// UID (a note is only ever added).
const LISTS: [(&str, &str, &str); 3] =
    [("attributes", "attribute", "attr:"), ("dataValues", "dataElement", "dv:"), ("notes", "note", "note:")];

fn list_of(key: &str) -> Option<(&'static str, &'static str, &str)> {
    LISTS.iter().find_map(|(list, id, prefix)| key.strip_prefix(prefix).map(|uid| (*list, *id, uid)))
}

/// The fields of a record (legacy naming) by field key.
pub fn fields_of(record: &Object) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (key, value) in record {
        if !NOT_FIELDS.contains(&key.as_str()) {
            out.insert(key.clone(), value.clone());
        }
    }
    for (list, id, prefix) in LISTS {
        for item in record.get(list).and_then(Value::as_array).into_iter().flatten() {
            if let Some(uid) = item.get(id).and_then(Value::as_str) {
                let value = item.get("value").cloned().unwrap_or(Value::Null);
                let value = if value.as_str() == Some("") { Value::Null } else { value };
                out.insert(format!("{prefix}{uid}"), value);
            }
        }
    }
    out
}

/// Folds the difference between a record before and after a local write into its changes:
/// a field changed for the first time keeps the value before as its base; a field changed
/// back to its base is no longer a change. Returns the unsent values of another window still
/// open that this write replaced (two windows editing one field: the later write stands, the
/// earlier value is shown as a conflict instead of vanishing; a window that was closed or
/// reloaded since counts as seen, so one nurse correcting her own value is no conflict).
pub fn record_changes(
    before: &Object,
    after: &Object,
    changes: &mut RecordChanges,
    window: Option<&WriteWindow>,
) -> Vec<WindowOverwrite> {
    let mut overwritten = Vec::new();
    let before = fields_of(before);
    let after = fields_of(after);
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let b = before.get(key).cloned().unwrap_or(Value::Null);
        let a = after.get(key).cloned().unwrap_or(Value::Null);
        if a == b {
            continue;
        }
        let by = window.map(|w| w.id.clone());
        match changes.get_mut(key.as_str()) {
            Some(change) => {
                let other_window = match (&change.window, window) {
                    (Some(earlier), Some(now)) => earlier != &now.id && now.open.contains(earlier),
                    _ => false,
                };
                if other_window {
                    overwritten.push((key.clone(), change.base.clone(), change.value.clone(), a.clone()));
                }
                change.value = a;
                change.window = by;
                if change.value == change.base {
                    changes.remove(key.as_str());
                }
            }
            None => {
                changes.insert(key.clone(), FieldChange { base: b, value: a, window: by });
            }
        }
    }
    overwritten
}

/// Sets fields on a record (legacy naming): header keys, attributes and data values; `null`
/// removes the field.
pub fn apply_fields(record: &mut Object, fields: &BTreeMap<String, Value>) {
    for (key, value) in fields {
        if key == WHOLE_RECORD {
            continue;
        }
        match list_of(key) {
            Some((list, id, uid)) => {
                let items = record.entry(list).or_insert_with(|| Value::Array(vec![]));
                let Value::Array(items) = items else { continue };
                let position = items.iter().position(|i| i.get(id).and_then(Value::as_str) == Some(uid));
                match (position, value) {
                    (Some(p), Value::Null) => {
                        items.remove(p);
                    }
                    (Some(p), v) => {
                        if let Some(item) = items[p].as_object_mut() {
                            item.insert("value".into(), v.clone());
                        }
                    }
                    (None, Value::Null) => {}
                    (None, v) => {
                        let mut item = Map::new();
                        item.insert(id.into(), Value::String(uid.into()));
                        item.insert("value".into(), v.clone());
                        items.push(Value::Object(item));
                    }
                }
            }
            None if value.is_null() => {
                record.remove(key);
            }
            None => {
                record.insert(key.clone(), value.clone());
            }
        }
    }
}

/// What a flush does with a field changed on both sides to different values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// The device's value is sent; the server's overwritten value is kept in the conflict log.
    #[default]
    DeviceWins,
    /// The field is not sent: it waits for a person (`resolve_conflict`), while every other
    /// field of the record flows. The local copy keeps showing the device's value meanwhile.
    Hold,
}

impl ConflictPolicy {
    /// Reads the JS option: `device-wins` or `hold`.
    pub fn parse(text: &str) -> crate::error::Result<Self> {
        match text {
            "device-wins" => Ok(ConflictPolicy::DeviceWins),
            "hold" => Ok(ConflictPolicy::Hold),
            other => Err(crate::error::CoreError::BadInput(format!(
                "conflictPolicy must be 'device-wins' or 'hold', not {other:?}"
            ))),
        }
    }
}

/// A field changed on both sides to different values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    /// Id for `resolveConflict`.
    pub id: String,
    /// The record's kind (stored as `tei`, `enrollment` or `event`).
    pub kind: crate::family::Kind,
    /// The record.
    pub record: String,
    /// Its tracked entity.
    pub tei: String,
    /// The field key (`dv:<data element>`, `attr:<attribute>`, or a header field).
    pub field: String,
    /// The value both sides started from.
    pub base: Value,
    /// The value someone else saved on the server meanwhile (overwritten by the device's).
    pub server: Value,
    /// The device's value (sent).
    pub device: Value,
    /// Who made the device's change.
    pub author: String,
    /// When the device's change was made (ms since epoch).
    pub changed_at_ms: i64,
    /// When the conflict was found (ms since epoch).
    pub found_at_ms: i64,
    /// The server's last update time of the record, as it said.
    pub server_updated: Option<String>,
    /// True when the device's value was NOT sent (policy `hold`): it waits for a person.
    #[serde(default)]
    pub held: bool,
    /// Where the replaced value (`server`) came from.
    #[serde(default)]
    pub source: ConflictSource,
}

/// Where the value a conflict replaced came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictSource {
    /// Someone changed the field on the server meanwhile.
    #[default]
    Server,
    /// Another window of this device saved the field, unsent, and this one replaced it without
    /// having seen it (`server` then holds that window's value).
    Window,
}

impl Conflict {
    /// The same conflict found again (a flush repeated after a lost answer).
    pub fn same_as(&self, other: &Conflict) -> bool {
        self.record == other.record
            && self.field == other.field
            && self.server == other.server
            && self.device == other.device
    }
}

/// The outcome of merging one record's changes with the server's current copy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MergedRecord {
    /// The fields to send (device-only changes and conflicts the device wins).
    pub send: BTreeMap<String, Value>,
    /// Fields changed on both sides: (field, base, server, device).
    pub conflicts: Vec<(String, Value, Value, Value)>,
    /// Fields the server already holds with the device's value.
    pub already: Vec<String>,
}

/// Three-way merge of one record: `changes` against the server's current `server` record.
pub fn merge_record(changes: &RecordChanges, server: Option<&Object>) -> MergedRecord {
    let server_fields = server.map(fields_of);
    let mut merged = MergedRecord::default();
    for (key, change) in changes.iter().filter(|(k, _)| k.as_str() != WHOLE_RECORD) {
        let Some(server_fields) = &server_fields else {
            merged.send.insert(key.clone(), change.value.clone());
            continue;
        };
        let now = server_fields.get(key).cloned().unwrap_or(Value::Null);
        if now == change.value {
            merged.already.push(key.clone());
        } else if now == change.base {
            merged.send.insert(key.clone(), change.value.clone());
        } else {
            merged.conflicts.push((key.clone(), change.base.clone(), now, change.value.clone()));
            merged.send.insert(key.clone(), change.value.clone());
        }
    }
    merged
}

/// The record to send for an update: the server's current header (or the local one when the
/// server's copy is unknown) with the fields to send applied, and only those attributes or
/// data values. A cleared value is sent as `null` on `/api/tracker` and as `""` on the legacy
/// endpoints (both delete it there).
pub fn delta_record(base_record: &Object, send: &BTreeMap<String, Value>, legacy: bool) -> Object {
    let mut out = Object::new();
    for (key, value) in base_record {
        if !matches!(
            key.as_str(),
            "attributes" | "dataValues" | "notes" | "relationships" | "enrollments" | "events" | "programOwners"
        ) {
            out.insert(key.clone(), value.clone());
        }
    }
    let header: BTreeMap<String, Value> =
        send.iter().filter(|(k, _)| list_of(k).is_none()).map(|(k, v)| (k.clone(), v.clone())).collect();
    apply_fields(&mut out, &header);
    for (list, id, prefix) in LISTS {
        let items: Vec<Value> = send
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|uid| (uid, v)))
            .map(|(uid, v)| {
                let value = match v {
                    Value::Null if legacy => Value::String(String::new()),
                    other => other.clone(),
                };
                let mut item = Map::new();
                item.insert(id.into(), Value::String(uid.into()));
                item.insert("value".into(), value);
                Value::Object(item)
            })
            .collect();
        if !items.is_empty() {
            out.insert(list.into(), Value::Array(items));
        }
    }
    out
}

/// The server's last update time of a record, as it said (`lastUpdated`).
pub fn server_updated(record: Option<&Object>) -> Option<String> {
    record.and_then(|r| text(r, "lastUpdated")).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn changes_keep_their_first_base_and_vanish_when_reverted() {
        let v0 = obj(json!({"event": "Ev000000001", "status": "ACTIVE", "lastUpdated": "x",
            "dataValues": [{"dataElement": "DeWeight001", "value": "60"}, {"dataElement": "DeHeight01", "value": "160"}]}));
        let mut v1 = v0.clone();
        apply_fields(&mut v1, &BTreeMap::from([("dv:DeWeight001".to_string(), json!("61"))]));
        v1.insert("lastUpdated".into(), json!("y"));
        let mut changes = RecordChanges::new();
        record_changes(&v0, &v1, &mut changes, None);
        assert_eq!(changes.len(), 1, "bookkeeping is not a change: {changes:?}");
        let mut v2 = v1.clone();
        apply_fields(
            &mut v2,
            &BTreeMap::from([("dv:DeWeight001".to_string(), json!("62")), ("dv:DeHeight01".to_string(), Value::Null)]),
        );
        record_changes(&v1, &v2, &mut changes, None);
        assert_eq!(changes["dv:DeWeight001"], FieldChange::new(json!("60"), json!("62")));
        assert_eq!(changes["dv:DeHeight01"], FieldChange::new(json!("160"), Value::Null));
        let mut v3 = v2.clone();
        apply_fields(&mut v3, &BTreeMap::from([("dv:DeWeight001".to_string(), json!("60"))]));
        record_changes(&v2, &v3, &mut changes, None);
        assert!(!changes.contains_key("dv:DeWeight001"), "back to its base: no change");
    }

    #[test]
    fn three_way_merge_takes_one_sided_changes_and_reports_both_sided_ones() {
        let changes: RecordChanges = [
            ("dv:A".to_string(), FieldChange::new(json!("1"), json!("2"))),
            ("dv:B".to_string(), FieldChange::new(json!("1"), json!("2"))),
            ("dv:C".to_string(), FieldChange::new(json!("1"), json!("2"))),
            ("status".to_string(), FieldChange::new(json!("ACTIVE"), json!("COMPLETED"))),
        ]
        .into();
        let server = obj(json!({"status": "ACTIVE", "dataValues": [
            {"dataElement": "A", "value": "1"}, {"dataElement": "B", "value": "2"}, {"dataElement": "C", "value": "9"},
            {"dataElement": "D", "value": "district"}]}));
        let merged = merge_record(&changes, Some(&server));
        assert_eq!(merged.send.keys().collect::<Vec<_>>(), ["dv:A", "dv:C", "status"]);
        assert_eq!(merged.already, ["dv:B"]);
        assert_eq!(merged.conflicts, vec![("dv:C".to_string(), json!("1"), json!("9"), json!("2"))]);
        let delta = delta_record(&server, &merged.send, true);
        assert_eq!(delta["status"], "COMPLETED");
        let values = delta["dataValues"].as_array().unwrap();
        assert_eq!(values.len(), 2, "only the device's fields: {values:?}");
        assert!(!values.iter().any(|v| v["dataElement"] == "D"), "the district's value is not sent");
    }

    #[test]
    fn a_value_replaced_by_another_open_window_is_reported_once_and_a_window_correcting_itself_is_not() {
        let with =
            |v: &str| obj(json!({"status": "ACTIVE", "dataValues": [{"dataElement": "DeWeight001", "value": v}]}));
        let window =
            |id: &str, open: &[&str]| WriteWindow { id: id.into(), open: open.iter().map(|s| s.to_string()).collect() };
        let mut changes = RecordChanges::new();
        assert!(record_changes(&with("60"), &with("61"), &mut changes, Some(&window("tab-a", &["tab-a", "tab-b"])))
            .is_empty());
        // The same window corrects its own value: no conflict.
        assert!(record_changes(&with("61"), &with("62"), &mut changes, Some(&window("tab-a", &["tab-a", "tab-b"])))
            .is_empty());
        // Another open window saves the same field: the replaced value is reported.
        let replaced =
            record_changes(&with("62"), &with("70"), &mut changes, Some(&window("tab-b", &["tab-a", "tab-b"])));
        assert_eq!(replaced, vec![("dv:DeWeight001".to_string(), json!("60"), json!("62"), json!("70"))]);
        assert_eq!(changes["dv:DeWeight001"].window.as_deref(), Some("tab-b"));
        // A window closed (or reloaded) since its write counts as seen.
        let replaced = record_changes(&with("70"), &with("71"), &mut changes, Some(&window("tab-c", &["tab-c"])));
        assert!(replaced.is_empty(), "{replaced:?}");
        // A stale form putting the base back still shows what it replaced.
        record_changes(&with("71"), &with("72"), &mut changes, Some(&window("tab-c", &["tab-c", "tab-d"])));
        let replaced =
            record_changes(&with("72"), &with("60"), &mut changes, Some(&window("tab-d", &["tab-c", "tab-d"])));
        assert_eq!(replaced, vec![("dv:DeWeight001".to_string(), json!("60"), json!("72"), json!("60"))]);
        assert!(!changes.contains_key("dv:DeWeight001"), "back to its base: nothing to send");
    }

    #[test]
    fn the_policy_option_is_read_strictly() {
        assert_eq!(ConflictPolicy::parse("hold").ok(), Some(ConflictPolicy::Hold));
        assert_eq!(ConflictPolicy::parse("device-wins").ok(), Some(ConflictPolicy::DeviceWins));
        assert!(matches!(ConflictPolicy::parse("server-wins"), Err(crate::error::CoreError::BadInput(_))));
    }

    #[test]
    fn a_cleared_value_is_sent_as_a_delete_in_each_family() {
        let send = BTreeMap::from([("attr:AtPhone0001".to_string(), Value::Null)]);
        let base = obj(json!({"trackedEntityInstance": "Te000000001", "orgUnit": "OuBaniNaim1"}));
        assert_eq!(delta_record(&base, &send, true)["attributes"][0]["value"], "");
        assert_eq!(delta_record(&base, &send, false)["attributes"][0]["value"], Value::Null);
    }
}
