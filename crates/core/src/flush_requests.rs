//! The requests a segment of the outbox becomes: bulk requests per kind in dependency order
//! (tracked entities, enrollments, events, then deletes), each record in its current local
//! state (or its tracked changes, for an update merged with the server's copy), named with its
//! author, in the naming of the API family it was captured through.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::{
    family::{convert, Kind, Naming},
    records::{Object, TeiBundle},
    write_effect::Touch,
    writes::Family,
};

/// A record of a plan: its UID and current local state (None for a delete).
pub(crate) type PlannedRecord = (String, Option<Object>);

/// Bulk sizes (records per request).
pub const TEIS_PER_REQUEST: usize = 50;

/// Enrollments per request.
pub const ENROLLMENTS_PER_REQUEST: usize = 100;

/// Events per request.
pub const EVENTS_PER_REQUEST: usize = 250;

/// One request of a flush plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRequest {
    /// Method.
    pub method: String,
    /// URL.
    pub url: String,
    /// JSON body (or raw bytes for raw entries).
    pub body: Vec<u8>,
    /// Content type.
    pub content_type: String,
    /// Records it carries, in payload order (empty for raw).
    pub uids: Vec<String>,
    /// Family (for reading the answer).
    pub family: Family,
    /// Raw entry seq, if it replays one.
    pub raw_seq: Option<u64>,
}

/// What the planner needs to know of each record: its current local state.
pub struct RecordSource<'a> {
    /// Bundles by tracked entity UID.
    pub bundles: &'a BTreeMap<String, TeiBundle>,
    /// Updates of records the server has, by record UID: the delta to send (only the fields
    /// the device changed, over the server's current header), or None when nothing is left to
    /// send. Records not listed are sent whole (creates, and changes from before fields were
    /// tracked).
    pub deltas: &'a BTreeMap<String, Option<Object>>,
    /// The author of each record's latest capture: sent as its `storedBy`, whoever's session
    /// sends it.
    pub authors: &'a BTreeMap<String, String>,
}

impl PlannedRequest {
    /// True for a request that deletes its records.
    pub fn is_delete(&self) -> bool {
        self.url.contains("strategy=DELETE") || self.url.contains("importStrategy=DELETE")
    }
}

impl RecordSource<'_> {
    /// Whether the record is in the local copy.
    pub(crate) fn exists(&self, t: &Touch) -> bool {
        self.bundles.get(&t.tei).is_some_and(|b| b.record(t.kind, &t.uid).is_some())
    }

    fn record(&self, t: &Touch) -> Option<Object> {
        let local = self.bundles.get(&t.tei).and_then(|b| b.record(t.kind, &t.uid));
        let (mut record, delta) = match self.deltas.get(&t.uid) {
            Some(delta) => (delta.clone()?, true),
            None => {
                let mut record = local?.clone();
                record.remove("enrollments");
                (record, false)
            }
        };
        if let Some(author) = self.authors.get(&t.uid) {
            name_authors(&mut record, author, delta, local);
        }
        Some(record)
    }
}

/// Names who made a record about to be sent: the record's `storedBy` is the author of its
/// latest capture, and so is that of each attribute or data value without one. In an update
/// (a delta over the server's copy, whose `storedBy` names the previous writer) every value
/// sent is one the device changed: it takes the author the local copy keeps for it (an event's
/// values are named when captured), else the record's. DHIS2 keeps `storedBy` as given;
/// `createdBy`/`lastUpdatedBy` always name the session that sent it.
fn name_authors(record: &mut Object, author: &str, delta: bool, local: Option<&Object>) {
    record.insert("storedBy".into(), Value::String(author.into()));
    for (list, id) in [("attributes", "attribute"), ("dataValues", "dataElement")] {
        let Some(Value::Array(items)) = record.get_mut(list) else { continue };
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            if delta {
                let kept = local
                    .and_then(|l| l.get(list))
                    .and_then(Value::as_array)
                    .and_then(|l| l.iter().find(|v| v.get(id).is_some() && v.get(id) == item.get(id)))
                    .and_then(|v| v.get("storedBy"))
                    .cloned();
                item.insert("storedBy".into(), kept.unwrap_or_else(|| Value::String(author.into())));
            } else {
                item.entry("storedBy").or_insert_with(|| Value::String(author.into()));
            }
        }
    }
}

fn strip_local_fields(mut o: Object) -> Object {
    o.remove("events");
    o.remove("enrollments");
    o
}

/// Builds the requests for the records of one segment (entries of one family, in order), for a
/// server of minor version `minor`.
pub fn plan_segment(
    api: &str,
    family: Family,
    minor: u32,
    touches: &[Touch],
    source: &RecordSource<'_>,
) -> Vec<PlannedRequest> {
    let mut seen = BTreeSet::new();
    let mut by_kind: BTreeMap<(Kind, bool), Vec<PlannedRecord>> = BTreeMap::new();
    for t in touches {
        if !seen.insert((t.uid.clone(), t.deleted)) {
            continue;
        }
        let record = if t.deleted { None } else { source.record(t) };
        if !t.deleted && record.is_none() {
            continue; // removed locally since (a later delete covers it)
        }
        by_kind.entry((t.kind, t.deleted)).or_default().push((t.uid.clone(), record));
    }
    let mut out = Vec::new();
    let order: [(Kind, bool); 6] = [
        (Kind::TrackedEntity, false),
        (Kind::Enrollment, false),
        (Kind::Event, false),
        (Kind::Event, true),
        (Kind::Enrollment, true),
        (Kind::TrackedEntity, true),
    ];
    for key in order {
        let Some(items) = by_kind.get(&key) else { continue };
        let (kind, deleted) = key;
        let (legacy_path, chunk, uid_key) = match kind {
            Kind::TrackedEntity => ("trackedEntityInstances", TEIS_PER_REQUEST, "trackedEntityInstance"),
            Kind::Enrollment => ("enrollments", ENROLLMENTS_PER_REQUEST, "enrollment"),
            Kind::Event => ("events", EVENTS_PER_REQUEST, "event"),
        };
        for part in items.chunks(chunk) {
            let uids: Vec<String> = part.iter().map(|(u, _)| u.clone()).collect();
            let records: Vec<Object> = part
                .iter()
                .map(|(u, r)| match r {
                    Some(r) => strip_local_fields(r.clone()),
                    None => {
                        let mut o = Object::new();
                        o.insert(uid_key.into(), Value::String(u.clone()));
                        o
                    }
                })
                .collect();
            let strategy = if deleted { "DELETE" } else { "CREATE_AND_UPDATE" };
            // Legacy events: values omitted from an update are kept, not deleted (DHIS2's
            // default replaces an event's whole value set).
            let merge_values = if kind == Kind::Event && !deleted { "&mergeDataValues=true" } else { "" };
            let (url, body) = match family {
                Family::Legacy => (
                    format!("{api}/{legacy_path}?strategy={strategy}{merge_values}"),
                    json!({ legacy_path: records.into_iter().map(Value::Object).collect::<Vec<_>>() }),
                ),
                Family::Tracker => (
                    format!(
                        "{api}/tracker?async=false&importStrategy={strategy}&atomicMode=OBJECT&reportMode=WARNINGS"
                    ),
                    json!({ kind.tracker_collection(): records.iter().map(|r| Value::Object(convert(kind, r, Naming::Tracker { minor }))).collect::<Vec<_>>() }),
                ),
            };
            out.push(PlannedRequest {
                method: "POST".into(),
                url,
                body: body.to_string().into_bytes(),
                content_type: "application/json".into(),
                uids,
                family,
                raw_seq: None,
            });
        }
    }
    out
}

/// The same request without some records.
pub(crate) fn replan_without(request: &PlannedRequest, skip: &[String]) -> PlannedRequest {
    let mut body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    if let Some(obj) = body.as_object_mut() {
        for (_, list) in obj.iter_mut() {
            if let Value::Array(items) = list {
                items.retain(|i| {
                    let own = ["event", "enrollment", "trackedEntity", "trackedEntityInstance"]
                        .iter()
                        .find_map(|k| i.get(*k).and_then(Value::as_str));
                    !own.is_some_and(|u| skip.iter().any(|s| s == u))
                });
            }
        }
    }
    PlannedRequest {
        body: body.to_string().into_bytes(),
        uids: request.uids.iter().filter(|u| !skip.contains(u)).cloned().collect(),
        ..request.clone()
    }
}
