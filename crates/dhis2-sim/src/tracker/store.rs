//! Rows of the tracker tables, their loaders, and their legacy JSON shapes
//! (`dxf2/events/trackedentity/TrackedEntityInstance`, `…/enrollment/Enrollment`,
//! `…/event/Event`).

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{json, Map, Value};

use crate::{db::OrgUnit, model::Metadata};

/// A row of `tracked_entities`.
#[derive(Debug, Clone)]
pub struct TeRow {
    /// Row id.
    pub id: i64,
    /// UID.
    pub uid: String,
    /// Tracked entity type UID.
    pub tracked_entity_type: String,
    /// Registration org unit UID.
    pub org_unit: String,
    /// Path of the org unit.
    pub ou_path: String,
    /// Server creation time.
    pub created: String,
    /// Server update time.
    pub last_updated: String,
    /// Client creation time.
    pub created_at_client: Option<String>,
    /// Client update time.
    pub last_updated_at_client: Option<String>,
    /// Username of the creator.
    pub created_by: String,
    /// Username of the last updater.
    pub last_updated_by: String,
    /// `storedBy`.
    pub stored_by: Option<String>,
    /// Inactive flag.
    pub inactive: bool,
    /// Potential duplicate flag.
    pub potential_duplicate: bool,
    /// Soft-deleted.
    pub deleted: bool,
}

const TE_COLS: &str = "id, uid, tracked_entity_type, org_unit, ou_path, created, last_updated, created_at_client, \
                       last_updated_at_client, created_by, last_updated_by, stored_by, inactive, potential_duplicate, deleted";

fn te_from_row(r: &Row<'_>) -> rusqlite::Result<TeRow> {
    Ok(TeRow {
        id: r.get(0)?,
        uid: r.get(1)?,
        tracked_entity_type: r.get(2)?,
        org_unit: r.get(3)?,
        ou_path: r.get(4)?,
        created: r.get(5)?,
        last_updated: r.get(6)?,
        created_at_client: r.get(7)?,
        last_updated_at_client: r.get(8)?,
        created_by: r.get(9)?,
        last_updated_by: r.get(10)?,
        stored_by: r.get(11)?,
        inactive: r.get(12)?,
        potential_duplicate: r.get(13)?,
        deleted: r.get(14)?,
    })
}

/// The tracked entity with this UID (deleted ones included).
pub fn te_by_uid(conn: &Connection, uid: &str) -> rusqlite::Result<Option<TeRow>> {
    conn.prepare_cached(&format!("SELECT {TE_COLS} FROM tracked_entities WHERE uid = ?1"))?
        .query_row([uid], te_from_row)
        .optional()
}

/// The tracked entities with these row ids, in the given order.
pub fn tes_by_ids(conn: &Connection, ids: &[i64]) -> rusqlite::Result<Vec<TeRow>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {TE_COLS} FROM tracked_entities WHERE id = ?1"))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = stmt.query_row([id], te_from_row).optional()? {
            out.push(row);
        }
    }
    Ok(out)
}

/// A row of `enrollments` (with its tracked entity's UID).
#[derive(Debug, Clone)]
pub struct EnrollmentRow {
    /// Row id.
    pub id: i64,
    /// UID.
    pub uid: String,
    /// Tracked entity row id.
    pub te_id: i64,
    /// Tracked entity UID.
    pub te_uid: String,
    /// Tracked entity type UID.
    pub te_type: String,
    /// Program UID.
    pub program: String,
    /// Org unit UID.
    pub org_unit: String,
    /// `ACTIVE`, `COMPLETED` or `CANCELLED`.
    pub status: String,
    /// Enrollment date.
    pub enrollment_date: String,
    /// Incident date.
    pub incident_date: Option<String>,
    /// Completion date.
    pub completed_date: Option<String>,
    /// Who completed it.
    pub completed_by: Option<String>,
    /// Follow-up flag.
    pub followup: bool,
    /// Server creation time.
    pub created: String,
    /// Server update time.
    pub last_updated: String,
    /// Client creation time.
    pub created_at_client: Option<String>,
    /// Client update time.
    pub last_updated_at_client: Option<String>,
    /// Username of the creator.
    pub created_by: String,
    /// Username of the last updater.
    pub last_updated_by: String,
    /// `storedBy`.
    pub stored_by: Option<String>,
    /// Soft-deleted.
    pub deleted: bool,
}

const EN_COLS: &str = "e.id, e.uid, e.te_id, t.uid, t.tracked_entity_type, e.program, e.org_unit, e.status, \
                       e.enrollment_date, e.incident_date, e.completed_date, e.completed_by, e.followup, e.created, \
                       e.last_updated, e.created_at_client, e.last_updated_at_client, e.created_by, \
                       e.last_updated_by, e.stored_by, e.deleted";

/// `FROM` clause matching [`EN_COLS`].
pub const EN_FROM: &str = "enrollments e JOIN tracked_entities t ON t.id = e.te_id";

fn en_from_row(r: &Row<'_>) -> rusqlite::Result<EnrollmentRow> {
    Ok(EnrollmentRow {
        id: r.get(0)?,
        uid: r.get(1)?,
        te_id: r.get(2)?,
        te_uid: r.get(3)?,
        te_type: r.get(4)?,
        program: r.get(5)?,
        org_unit: r.get(6)?,
        status: r.get(7)?,
        enrollment_date: r.get(8)?,
        incident_date: r.get(9)?,
        completed_date: r.get(10)?,
        completed_by: r.get(11)?,
        followup: r.get(12)?,
        created: r.get(13)?,
        last_updated: r.get(14)?,
        created_at_client: r.get(15)?,
        last_updated_at_client: r.get(16)?,
        created_by: r.get(17)?,
        last_updated_by: r.get(18)?,
        stored_by: r.get(19)?,
        deleted: r.get(20)?,
    })
}

/// The enrollment with this UID (deleted ones included).
pub fn enrollment_by_uid(conn: &Connection, uid: &str) -> rusqlite::Result<Option<EnrollmentRow>> {
    conn.prepare_cached(&format!("SELECT {EN_COLS} FROM {EN_FROM} WHERE e.uid = ?1"))?
        .query_row([uid], en_from_row)
        .optional()
}

/// Enrollments matching a `WHERE` clause over [`EN_FROM`] (aliases `e`, `t`).
pub fn enrollments_where(
    conn: &Connection,
    where_sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<EnrollmentRow>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {EN_COLS} FROM {EN_FROM} WHERE {where_sql}"))?;
    let rows = stmt.query_map(args, en_from_row)?;
    rows.collect()
}

/// The non-deleted enrollments of a tracked entity, oldest first.
pub fn enrollments_of(conn: &Connection, te_id: i64) -> rusqlite::Result<Vec<EnrollmentRow>> {
    enrollments_where(conn, "e.te_id = ?1 AND e.deleted = 0 ORDER BY e.id", &[&te_id])
}

/// A row of `events` (with enrollment and tracked entity UIDs).
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Row id.
    pub id: i64,
    /// UID.
    pub uid: String,
    /// Enrollment row id.
    pub enrollment_id: Option<i64>,
    /// Enrollment UID.
    pub enrollment_uid: Option<String>,
    /// Enrollment status.
    pub enrollment_status: Option<String>,
    /// Tracked entity row id.
    pub te_id: Option<i64>,
    /// Tracked entity UID.
    pub te_uid: Option<String>,
    /// Program UID.
    pub program: String,
    /// Program stage UID.
    pub program_stage: String,
    /// Org unit UID.
    pub org_unit: String,
    /// Org unit path.
    pub ou_path: String,
    /// `ACTIVE`, `COMPLETED`, `VISITED`, `SCHEDULE`, `OVERDUE` or `SKIPPED`.
    pub status: String,
    /// Event (occurred) date.
    pub event_date: Option<String>,
    /// Due (scheduled) date.
    pub due_date: Option<String>,
    /// Completion date.
    pub completed_date: Option<String>,
    /// Who completed it.
    pub completed_by: Option<String>,
    /// Server creation time.
    pub created: String,
    /// Server update time.
    pub last_updated: String,
    /// Client creation time.
    pub created_at_client: Option<String>,
    /// Client update time.
    pub last_updated_at_client: Option<String>,
    /// Username of the creator.
    pub created_by: String,
    /// Username of the last updater.
    pub last_updated_by: String,
    /// `storedBy`.
    pub stored_by: Option<String>,
    /// Soft-deleted.
    pub deleted: bool,
}

const EV_COLS: &str = "v.id, v.uid, v.enrollment_id, e.uid, e.status, v.te_id, t.uid, v.program, v.program_stage, \
                       v.org_unit, v.ou_path, v.status, v.event_date, v.due_date, v.completed_date, v.completed_by, \
                       v.created, v.last_updated, v.created_at_client, v.last_updated_at_client, v.created_by, \
                       v.last_updated_by, v.stored_by, v.deleted";

/// `FROM` clause matching the event columns.
pub const EV_FROM: &str =
    "events v LEFT JOIN enrollments e ON e.id = v.enrollment_id LEFT JOIN tracked_entities t ON t.id = v.te_id";

fn ev_from_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: r.get(0)?,
        uid: r.get(1)?,
        enrollment_id: r.get(2)?,
        enrollment_uid: r.get(3)?,
        enrollment_status: r.get(4)?,
        te_id: r.get(5)?,
        te_uid: r.get(6)?,
        program: r.get(7)?,
        program_stage: r.get(8)?,
        org_unit: r.get(9)?,
        ou_path: r.get(10)?,
        status: r.get(11)?,
        event_date: r.get(12)?,
        due_date: r.get(13)?,
        completed_date: r.get(14)?,
        completed_by: r.get(15)?,
        created: r.get(16)?,
        last_updated: r.get(17)?,
        created_at_client: r.get(18)?,
        last_updated_at_client: r.get(19)?,
        created_by: r.get(20)?,
        last_updated_by: r.get(21)?,
        stored_by: r.get(22)?,
        deleted: r.get(23)?,
    })
}

/// The event with this UID (deleted ones included).
pub fn event_by_uid(conn: &Connection, uid: &str) -> rusqlite::Result<Option<EventRow>> {
    conn.prepare_cached(&format!("SELECT {EV_COLS} FROM {EV_FROM} WHERE v.uid = ?1"))?
        .query_row([uid], ev_from_row)
        .optional()
}

/// Events matching a `WHERE` clause (with `ORDER`/`LIMIT`) over [`EV_FROM`] (aliases `v`, `e`, `t`).
pub fn events_where(
    conn: &Connection,
    where_sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<EventRow>> {
    let mut stmt = conn.prepare(&format!("SELECT {EV_COLS} FROM {EV_FROM} WHERE {where_sql}"))?;
    let rows = stmt.query_map(args, ev_from_row)?;
    rows.collect()
}

/// All org units by UID (the tree is small).
pub fn org_units(conn: &Connection) -> rusqlite::Result<HashMap<String, OrgUnit>> {
    let mut stmt = conn.prepare_cached(
        "SELECT uid, name, short_name, code, parent, level, path, created, last_updated FROM organisation_units",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(OrgUnit {
            uid: r.get(0)?,
            name: r.get(1)?,
            short_name: r.get(2)?,
            code: r.get(3)?,
            parent: r.get(4)?,
            level: r.get(5)?,
            path: r.get(6)?,
            created: r.get(7)?,
            last_updated: r.get(8)?,
        })
    })?;
    rows.map(|r| r.map(|o| (o.uid.clone(), o))).collect()
}

/// What the JSON renderers need besides the rows.
pub struct RenderCtx<'a> {
    /// Metadata.
    pub md: &'a Metadata,
    /// Org units by UID.
    pub ous: &'a HashMap<String, OrgUnit>,
}

fn user_info(username: &str) -> Value {
    json!({ "username": username })
}

fn put_opt(m: &mut Map<String, Value>, key: &str, v: Option<&String>) {
    if let Some(v) = v {
        m.insert(key.into(), json!(v));
    }
}

/// A stored attribute value: `(attribute, value, created, lastUpdated, storedBy)`.
pub type AttributeValueRow = (String, String, String, String, Option<String>);

/// The attribute values of a tracked entity.
pub fn attribute_values(conn: &Connection, te_id: i64) -> rusqlite::Result<Vec<AttributeValueRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT attribute, value, created, last_updated, stored_by FROM attribute_values WHERE te_id = ?1",
    )?;
    let rows = stmt.query_map([te_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
    rows.collect()
}

/// The legacy JSON of a tracked entity. `program` limits `programOwners` (as DHIS2 does);
/// without it only the type's attributes are shown. `children` adds enrollments with events.
pub fn te_json(
    conn: &Connection,
    rc: &RenderCtx<'_>,
    te: &TeRow,
    program: Option<&str>,
    children: bool,
) -> rusqlite::Result<Value> {
    let type_attrs = rc.md.type_attribute_uids(&te.tracked_entity_type);
    let program_attrs: Vec<&str> = program
        .and_then(|p| rc.md.program(p))
        .map(|p| p.attributes.iter().map(|a| a.attribute.as_str()).collect())
        .unwrap_or_default();
    let mut attrs = attribute_values(conn, te.id)?;
    // Program attribute order first, then type order, then the rest.
    let order = |a: &str| {
        program_attrs.iter().position(|x| *x == a).or_else(|| type_attrs.iter().position(|x| *x == a).map(|i| i + 100))
    };
    attrs.retain(|(a, ..)| order(a).is_some());
    attrs.sort_by_key(|(a, ..)| order(a));
    let attributes: Vec<Value> = attrs
        .iter()
        .map(|(a, value, created, updated, stored_by)| {
            let meta = rc.md.attribute(a);
            let mut m = Map::new();
            m.insert("lastUpdated".into(), json!(updated));
            put_opt(&mut m, "storedBy", stored_by.as_ref());
            if let Some(meta) = meta {
                m.insert("code".into(), json!(meta.code));
                m.insert("displayName".into(), json!(meta.name));
                m.insert("valueType".into(), json!(meta.value_type));
            }
            m.insert("created".into(), json!(created));
            m.insert("attribute".into(), json!(a));
            m.insert("value".into(), json!(value));
            Value::Object(m)
        })
        .collect();

    let mut owners_stmt = conn.prepare_cached("SELECT program, org_unit FROM program_owners WHERE te_id = ?1")?;
    let owners: Vec<(String, String)> =
        owners_stmt.query_map([te.id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    let program_owners: Vec<Value> = owners
        .iter()
        .filter(|(p, _)| program.is_none_or(|want| want == p))
        .map(|(p, ou)| json!({"ownerOrgUnit": ou, "program": p, "trackedEntityInstance": te.uid}))
        .collect();

    let mut m = Map::new();
    m.insert("created".into(), json!(te.created));
    m.insert("orgUnit".into(), json!(te.org_unit));
    put_opt(&mut m, "createdAtClient", te.created_at_client.as_ref());
    m.insert("trackedEntityInstance".into(), json!(te.uid));
    m.insert("lastUpdated".into(), json!(te.last_updated));
    m.insert("trackedEntityType".into(), json!(te.tracked_entity_type));
    put_opt(&mut m, "lastUpdatedAtClient", te.last_updated_at_client.as_ref());
    put_opt(&mut m, "storedBy", te.stored_by.as_ref());
    m.insert("potentialDuplicate".into(), json!(te.potential_duplicate));
    m.insert("inactive".into(), json!(te.inactive));
    m.insert("deleted".into(), json!(te.deleted));
    m.insert("featureType".into(), json!("NONE"));
    m.insert("createdByUserInfo".into(), user_info(&te.created_by));
    m.insert("lastUpdatedByUserInfo".into(), user_info(&te.last_updated_by));
    m.insert("programOwners".into(), Value::Array(program_owners));
    if children {
        let enrollments = enrollments_of(conn, te.id)?
            .iter()
            .map(|e| enrollment_json(conn, rc, e, true))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        m.insert("enrollments".into(), Value::Array(enrollments));
    } else {
        m.insert("enrollments".into(), json!([]));
    }
    m.insert("relationships".into(), json!([]));
    m.insert("attributes".into(), Value::Array(attributes));
    Ok(Value::Object(m))
}

fn notes_json(conn: &Connection, column: &str, id: i64) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT uid, value, stored_by, stored_date FROM notes WHERE {column} = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([id], |r| {
        let (uid, value, stored_by, date): (String, String, Option<String>, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        Ok(json!({"note": uid, "value": value, "storedBy": stored_by, "storedDate": date, "lastUpdated": date}))
    })?;
    rows.collect()
}

/// The legacy JSON of an enrollment; `with_events` nests its non-deleted events.
pub fn enrollment_json(
    conn: &Connection,
    rc: &RenderCtx<'_>,
    e: &EnrollmentRow,
    with_events: bool,
) -> rusqlite::Result<Value> {
    let mut m = Map::new();
    m.insert("storedBy".into(), json!(e.stored_by.clone().unwrap_or_else(|| e.created_by.clone())));
    put_opt(&mut m, "createdAtClient", e.created_at_client.as_ref());
    m.insert("program".into(), json!(e.program));
    m.insert("lastUpdated".into(), json!(e.last_updated));
    m.insert("created".into(), json!(e.created));
    m.insert("orgUnit".into(), json!(e.org_unit));
    m.insert("trackedEntityInstance".into(), json!(e.te_uid));
    m.insert("enrollment".into(), json!(e.uid));
    m.insert("trackedEntityType".into(), json!(e.te_type));
    put_opt(&mut m, "lastUpdatedAtClient", e.last_updated_at_client.as_ref());
    m.insert("orgUnitName".into(), json!(rc.ous.get(&e.org_unit).map_or("", |o| o.name.as_str())));
    m.insert("enrollmentDate".into(), json!(e.enrollment_date));
    m.insert("followup".into(), json!(e.followup));
    m.insert("deleted".into(), json!(e.deleted));
    if let Some(d) = &e.incident_date {
        m.insert("incidentDate".into(), json!(d));
    }
    m.insert("status".into(), json!(e.status));
    put_opt(&mut m, "completedDate", e.completed_date.as_ref());
    put_opt(&mut m, "completedBy", e.completed_by.as_ref());
    m.insert("createdByUserInfo".into(), user_info(&e.created_by));
    m.insert("lastUpdatedByUserInfo".into(), user_info(&e.last_updated_by));
    m.insert("notes".into(), Value::Array(notes_json(conn, "enrollment_id", e.id)?));
    m.insert("relationships".into(), json!([]));
    m.insert("attributes".into(), json!([]));
    if with_events {
        let events = events_where(conn, "v.enrollment_id = ?1 AND v.deleted = 0 ORDER BY v.id", &[&e.id])?
            .iter()
            .map(|ev| event_json(conn, rc, ev))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        m.insert("events".into(), Value::Array(events));
    } else {
        m.insert("events".into(), json!([]));
    }
    Ok(Value::Object(m))
}

/// The legacy JSON of an event, data values and notes included.
pub fn event_json(conn: &Connection, rc: &RenderCtx<'_>, ev: &EventRow) -> rusqlite::Result<Value> {
    let mut stmt = conn.prepare_cached(
        "SELECT data_element, value, provided_elsewhere, created, last_updated, stored_by \
         FROM data_values WHERE event_id = ?1",
    )?;
    let mut values: Vec<(String, String, bool, String, String, Option<String>)> = stmt
        .query_map([ev.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(stage) = rc.md.stage(&ev.program_stage) {
        let pos = |d: &str| stage.data_elements.iter().position(|x| x.data_element == d).unwrap_or(usize::MAX);
        values.sort_by_key(|v| pos(&v.0));
    }
    let data_values: Vec<Value> = values
        .into_iter()
        .map(|(de, value, elsewhere, created, updated, stored_by)| {
            let mut m = Map::new();
            m.insert("lastUpdated".into(), json!(updated));
            put_opt(&mut m, "storedBy", stored_by.as_ref());
            m.insert("created".into(), json!(created));
            m.insert("dataElement".into(), json!(de));
            m.insert("value".into(), json!(value));
            m.insert("providedElsewhere".into(), json!(elsewhere));
            Value::Object(m)
        })
        .collect();
    let mut m = Map::new();
    put_opt(&mut m, "storedBy", ev.stored_by.as_ref());
    put_opt(&mut m, "dueDate", ev.due_date.as_ref());
    put_opt(&mut m, "createdAtClient", ev.created_at_client.as_ref());
    m.insert("program".into(), json!(ev.program));
    m.insert("event".into(), json!(ev.uid));
    m.insert("programStage".into(), json!(ev.program_stage));
    m.insert("orgUnit".into(), json!(ev.org_unit));
    put_opt(&mut m, "trackedEntityInstance", ev.te_uid.as_ref());
    put_opt(&mut m, "enrollment", ev.enrollment_uid.as_ref());
    put_opt(&mut m, "enrollmentStatus", ev.enrollment_status.as_ref());
    m.insert("status".into(), json!(ev.status));
    m.insert("orgUnitName".into(), json!(rc.ous.get(&ev.org_unit).map_or("", |o| o.name.as_str())));
    m.insert("lastUpdated".into(), json!(ev.last_updated));
    m.insert("created".into(), json!(ev.created));
    put_opt(&mut m, "lastUpdatedAtClient", ev.last_updated_at_client.as_ref());
    put_opt(&mut m, "completedBy", ev.completed_by.as_ref());
    put_opt(&mut m, "completedDate", ev.completed_date.as_ref());
    m.insert("followup".into(), json!(false));
    m.insert("deleted".into(), json!(ev.deleted));
    put_opt(&mut m, "eventDate", ev.event_date.as_ref());
    m.insert("attributeOptionCombo".into(), json!("HllvX50cXC0"));
    m.insert("attributeCategoryOptions".into(), json!("xYerKDKCefk"));
    m.insert("createdByUserInfo".into(), user_info(&ev.created_by));
    m.insert("lastUpdatedByUserInfo".into(), user_info(&ev.last_updated_by));
    m.insert("dataValues".into(), Value::Array(data_values));
    m.insert("notes".into(), Value::Array(notes_json(conn, "event_id", ev.id)?));
    m.insert("relationships".into(), json!([]));
    Ok(Value::Object(m))
}

/// Whether a note with `uid` is stored.
pub fn note_exists(conn: &Connection, uid: &str) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("SELECT 1 FROM notes WHERE uid = ?1")?.query_row([uid], |_| Ok(())).optional()?.is_some())
}

/// Inserts a note; returns its UID.
pub fn insert_note(
    conn: &Connection,
    enrollment_id: Option<i64>,
    event_id: Option<i64>,
    value: &str,
    stored_by: &str,
    now: &str,
) -> rusqlite::Result<String> {
    let uid = crate::uid::generate();
    conn.prepare_cached(
        "INSERT INTO notes (uid, enrollment_id, event_id, value, stored_by, stored_date) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![uid, enrollment_id, event_id, value, stored_by, now])?;
    Ok(uid)
}
