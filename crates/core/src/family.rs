//! The two API families of DHIS2 tracker data. Records are kept in the legacy naming; this
//! module renames them to and from the `/api/tracker` naming (2.36+) and builds the export
//! envelope of each server version (dhis2-api.md section 3).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::records::Object;

/// Record kinds. Stored (outbox entries, conflicts) as `tei`, `enrollment` and `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Tracked entity.
    #[serde(rename = "tei")]
    TrackedEntity,
    /// Enrollment.
    #[serde(rename = "enrollment")]
    Enrollment,
    /// Event.
    #[serde(rename = "event")]
    Event,
}

impl Kind {
    /// The stored name: `tei`, `enrollment` or `event`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TrackedEntity => "tei",
            Kind::Enrollment => "enrollment",
            Kind::Event => "event",
        }
    }

    /// Collection name in `/api/tracker` (`trackedEntities`, ...).
    pub fn tracker_collection(self) -> &'static str {
        match self {
            Kind::TrackedEntity => "trackedEntities",
            Kind::Enrollment => "enrollments",
            Kind::Event => "events",
        }
    }
}

const COMMON: &[(&str, &str)] = &[
    ("trackedEntityInstance", "trackedEntity"),
    ("createdByUserInfo", "createdBy"),
    ("lastUpdatedByUserInfo", "updatedBy"),
    ("created", "createdAt"),
    ("lastUpdated", "updatedAt"),
    ("lastUpdatedAtClient", "updatedAtClient"),
];
const ENROLLMENT: &[(&str, &str)] = &[
    ("enrollmentDate", "enrolledAt"),
    ("incidentDate", "occurredAt"),
    ("completedDate", "completedAt"),
    ("followup", "followUp"),
];
const EVENT: &[(&str, &str)] = &[
    ("eventDate", "occurredAt"),
    ("dueDate", "scheduledAt"),
    ("completedDate", "completedAt"),
    ("followup", "followUp"),
];
const VALUE: &[(&str, &str)] = &[("created", "createdAt"), ("lastUpdated", "updatedAt")];
const NOTE: &[(&str, &str)] = &[("storedDate", "storedAt")];
const OWNER: &[(&str, &str)] = &[("ownerOrgUnit", "orgUnit"), ("trackedEntityInstance", "trackedEntity")];

/// `map` with its keys renamed by `table` (its values moved, not copied).
fn rename(map: Object, table: &[&[(&str, &str)]], to_tracker: bool) -> Object {
    let mut out = Map::new();
    for (k, v) in map {
        let mut key = k.as_str();
        for t in table {
            for (legacy, tracker) in t.iter() {
                let (from, to) = if to_tracker { (legacy, tracker) } else { (tracker, legacy) };
                if key == *from {
                    key = to;
                }
            }
        }
        let key = if key == k { k } else { key.to_string() };
        out.insert(key, v);
    }
    out
}

/// Renames the keys of every object in the list under `name` of `record`, in place.
fn rename_list(record: &mut Object, name: &str, table: &[&[(&str, &str)]], to_tracker: bool) {
    if let Some(Value::Array(items)) = record.get_mut(name) {
        for item in items {
            if let Value::Object(o) = item {
                *o = rename(std::mem::take(o), table, to_tracker);
            }
        }
    }
}

/// The naming a conversion writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// The legacy endpoints' names (the records are kept in it).
    Legacy,
    /// `/api/tracker`'s names, as a server of this minor version writes them (since 2.41 its
    /// enrollments and events carry no org unit name).
    Tracker {
        /// The server's minor version (`41` for 2.41).
        minor: u32,
    },
}

/// Converts a legacy-named record (and its nested lists) to the `/api/tracker` naming, or back
/// (`Naming::Legacy`).
pub fn convert(kind: Kind, record: &Object, naming: Naming) -> Object {
    convert_owned(kind, record.clone(), naming)
}

/// [`convert`] of a record the caller gives up: its values are moved, not copied (a download
/// converts every woman it receives from `/api/tracker`).
pub fn convert_owned(kind: Kind, record: Object, naming: Naming) -> Object {
    let to_tracker = matches!(naming, Naming::Tracker { .. });
    let own: &[&[(&str, &str)]] = match kind {
        Kind::TrackedEntity => &[COMMON],
        Kind::Enrollment => &[COMMON, ENROLLMENT],
        Kind::Event => &[COMMON, EVENT],
    };
    let mut out = rename(record, own, to_tracker);
    if kind == Kind::Enrollment && to_tracker {
        // The tracker family's enrollment has no tracked entity type.
        out.remove("trackedEntityType");
    }
    if matches!(kind, Kind::Enrollment | Kind::Event) && matches!(naming, Naming::Tracker { minor } if minor >= 41) {
        // Since 2.41 the tracker family's enrollments and events carry no org unit name.
        out.remove("orgUnitName");
    }
    rename_list(&mut out, "programOwners", &[OWNER], to_tracker);
    rename_list(&mut out, "attributes", &[VALUE], to_tracker);
    rename_list(&mut out, "dataValues", &[VALUE], to_tracker);
    rename_list(&mut out, "notes", &[NOTE], to_tracker);
    for (child, child_kind) in [("enrollments", Kind::Enrollment), ("events", Kind::Event)] {
        if let Some(Value::Array(items)) = out.get_mut(child) {
            for item in items {
                if let Value::Object(o) = item {
                    *o = convert_owned(child_kind, std::mem::take(o), naming);
                }
            }
        }
    }
    out
}

/// Paging facts of a list answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// 1-based page.
    pub page: usize,
    /// Page size.
    pub page_size: usize,
    /// Total matches.
    pub total: usize,
    /// Totals were asked for.
    pub total_pages: bool,
    /// Paging was switched off.
    pub skip_paging: bool,
}

impl Paging {
    /// Number of pages.
    pub fn page_count(&self) -> usize {
        self.total.div_ceil(self.page_size.max(1)).max(1)
    }
}

/// The `/api/tracker/{collection}` export envelope of server minor version `minor` (40 for
/// 2.40): `instances` with top-level paging up to 2.40, a named list with `pager` after.
pub fn tracker_envelope(minor: u32, kind: Kind, items: Vec<Value>, paging: Paging, url: &str) -> Value {
    tracker_list_envelope(minor, kind.tracker_collection(), items, paging, url)
}

/// The envelope of a `/api/tracker` export list named `name` (`relationships`, …), as
/// [`tracker_envelope`].
pub fn tracker_list_envelope(minor: u32, name: &str, items: Vec<Value>, paging: Paging, url: &str) -> Value {
    if minor <= 40 {
        let mut out = Map::new();
        if !paging.skip_paging {
            out.insert("page".into(), json!(paging.page));
            out.insert("pageSize".into(), json!(paging.page_size));
            if paging.total_pages {
                out.insert("total".into(), json!(paging.total));
                out.insert("pageCount".into(), json!(paging.page_count()));
            }
        }
        out.insert("instances".into(), Value::Array(items));
        return Value::Object(out);
    }
    let mut pager = Map::new();
    pager.insert("page".into(), json!(paging.page));
    pager.insert("pageSize".into(), json!(paging.page_size));
    if paging.total_pages {
        pager.insert("total".into(), json!(paging.total));
        pager.insert("pageCount".into(), json!(paging.page_count()));
    }
    if paging.page > 1 {
        pager.insert("prevPage".into(), json!(page_link(url, paging.page - 1)));
    }
    if paging.total > paging.page.saturating_mul(paging.page_size) {
        pager.insert("nextPage".into(), json!(page_link(url, paging.page + 1)));
    }
    let mut out = Map::new();
    if !paging.skip_paging {
        out.insert("pager".into(), Value::Object(pager));
        if minor == 41 {
            out.insert("page".into(), json!(paging.page));
            out.insert("pageSize".into(), json!(paging.page_size));
        }
    }
    out.insert(name.into(), Value::Array(items));
    Value::Object(out)
}

/// The same request URL for another page (`page=` moved to the end, as the server writes it).
fn page_link(url: &str, page: usize) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !p.starts_with("page=")).collect();
    let page_param = format!("page={page}");
    params.push(&page_param);
    format!("{base}?{}", params.join("&"))
}

/// The items of a `/api/tracker` export page, whichever envelope the server used.
pub fn tracker_items(kind: Kind, body: &Value) -> Option<&Vec<Value>> {
    body.get(kind.tracker_collection()).or_else(|| body.get("instances")).and_then(Value::as_array)
}

/// [`tracker_items`] taken out of `body` (the list is removed from it, not copied).
pub fn take_tracker_items(kind: Kind, body: &mut Value) -> Option<Vec<Value>> {
    let name = if body.get(kind.tracker_collection()).is_some() { kind.tracker_collection() } else { "instances" };
    take_list(body, name)
}

/// The list under `name` taken out of the object `body` (removed from it, not copied); None
/// when there is none (or it is not a list).
pub fn take_list(body: &mut Value, name: &str) -> Option<Vec<Value>> {
    match body.as_object_mut()?.remove(name) {
        Some(Value::Array(items)) => Some(items),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trip() {
        let legacy = json!({"event": "EvAncVisit1", "trackedEntityInstance": "PQfMcpmXeFE", "eventDate": "2026-01-02T00:00:00.000",
            "dueDate": "2026-01-01T00:00:00.000", "created": "c", "dataValues": [{"dataElement": "d", "value": "1", "created": "x"}]});
        let o = legacy.as_object().unwrap();
        let t = convert(Kind::Event, o, Naming::Tracker { minor: 40 });
        assert_eq!(t["trackedEntity"], "PQfMcpmXeFE");
        assert_eq!(t["occurredAt"], "2026-01-02T00:00:00.000");
        assert_eq!(t["scheduledAt"], "2026-01-01T00:00:00.000");
        assert_eq!(t["createdAt"], "c");
        assert_eq!(t["dataValues"][0]["createdAt"], "x");
        assert_eq!(Value::Object(convert(Kind::Event, &t, Naming::Legacy)), legacy);
    }

    /// Found by the fuzz harness (tests/fuzz.rs, target `reads`): a huge `page` overflowed the
    /// next-page test of the 2.41+ envelope.
    #[test]
    fn a_huge_page_number_has_no_next_page() {
        let p = Paging { page: usize::MAX, page_size: 50, total: 3, total_pages: true, skip_paging: false };
        let v = tracker_envelope(42, Kind::Event, vec![], p, "http://h/api/tracker/events?page=1");
        assert!(v["pager"].get("nextPage").is_none());
        assert_eq!(v["pager"]["pageCount"], 1);
    }

    #[test]
    fn envelopes_per_version() {
        let p = Paging { page: 1, page_size: 50, total: 3, total_pages: true, skip_paging: false };
        let v40 =
            tracker_envelope(40, Kind::TrackedEntity, vec![json!(1)], p, "http://h/api/tracker/trackedEntities?page=1");
        assert_eq!(v40["instances"], json!([1]));
        assert_eq!(v40["total"], 3);
        let v41 = tracker_envelope(
            41,
            Kind::Event,
            vec![],
            Paging { page: 2, page_size: 1, ..p },
            "http://h/api/x?page=2&a=b",
        );
        assert_eq!(v41["pager"]["nextPage"], "http://h/api/x?a=b&page=3");
        assert_eq!(v41["pager"]["prevPage"], "http://h/api/x?a=b&page=1");
        assert_eq!(v41["pager"]["pageCount"], 3);
        assert_eq!(v41["page"], 2);
        assert!(v41.get("events").is_some());
        let v42 = tracker_envelope(42, Kind::Enrollment, vec![], p, "http://h/api/x");
        assert!(v42.get("page").is_none());
        assert_eq!(tracker_items(Kind::Enrollment, &v42).unwrap().len(), 0);
    }
}
