//! The legacy importer (`dxf2/events`): tracked entities with nested enrollments and events,
//! strategies CREATE / UPDATE / CREATE_AND_UPDATE / DELETE, and the validation messages DHIS2
//! 2.38–2.41 answers with (conflicts `{object, value}` or a `description`).
//!
//! Deviation, on purpose: a client-supplied UID that is not a valid DHIS2 UID is refused with a
//! conflict; DHIS2 silently replaces it with a new one, which would hide a client bug.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::{
    dates,
    scope::UserScope,
    store::{self, EnrollmentRow, EventRow, TeRow},
    summary::{ImportStatus, ImportSummaries, ImportSummary},
};
use crate::{db::OrgUnit, error::ApiError, model::Metadata, uid};

/// Import strategy (`strategy=`); DHIS2's code default is CREATE_AND_UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Create only; an existing UID is an error.
    Create,
    /// Update only; a missing UID is an error.
    Update,
    /// Create or update by UID.
    CreateAndUpdate,
    /// Delete by UID.
    Delete,
}

impl Strategy {
    /// Parses `strategy` / `importStrategy` (`SYNC` and the old names are accepted).
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw.map(str::trim).unwrap_or("CREATE_AND_UPDATE").to_ascii_uppercase().as_str() {
            "" | "CREATE_AND_UPDATE" | "NEW_AND_UPDATES" | "SYNC" => Ok(Strategy::CreateAndUpdate),
            "CREATE" | "NEW" => Ok(Strategy::Create),
            "UPDATE" | "UPDATES" => Ok(Strategy::Update),
            "DELETE" | "DELETES" => Ok(Strategy::Delete),
            other => Err(ApiError::BadRequest(format!(
                "Value '{other}' is not valid for parameter strategy. Valid values are: \
                 [CREATE, UPDATE, CREATE_AND_UPDATE, DELETE, SYNC, NEW_AND_UPDATES, NEW, UPDATES, DELETES]"
            ))),
        }
    }

    /// The name echoed in `importOptions.importStrategy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Create => "CREATE",
            Strategy::Update => "UPDATE",
            Strategy::CreateAndUpdate => "CREATE_AND_UPDATE",
            Strategy::Delete => "DELETE",
        }
    }
}

/// A string field: strings trimmed, numbers and booleans printed; empty → `None`.
pub fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn flag(v: &Value, key: &str) -> Option<bool> {
    match v.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn array<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

type Conflicts = Vec<(String, String)>;

/// What an event update does with the data values the payload omits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventUpdate {
    /// The whole event: omitted data values are deleted (kept in new-tracker `merge` mode).
    Whole,
    /// The whole event with `mergeDataValues=true`: omitted data values are kept.
    MergeValues,
    /// `PUT /api/events/{ev}/{de}`: only the data values sent change.
    SingleValue,
}

/// The dxf2 `ImportOptions` the legacy endpoints take from the query string.
#[derive(Debug, Clone, Default)]
pub struct LegacyOptions {
    /// `PUT /api/trackedEntityInstances/{uid}?program=P`: the program whose attributes the
    /// payload omits are deleted (none without it; a bulk POST never passes one).
    pub program: Option<String>,
    /// `ignoreEmptyCollection=true`: an update whose `attributes` list is empty leaves the
    /// attributes alone.
    pub ignore_empty_collection: bool,
    /// `mergeDataValues=true` on a bulk `POST /api/events`: an update keeps the data values
    /// the payload omits (else they are deleted).
    pub merge_data_values: bool,
}

/// Attribute values to store: `(attribute, value, storedBy)`.
type AttrValues = Vec<(String, String, Option<String>)>;

/// Checks an optional client UID: `Ok(None)` when absent, an error summary when malformed.
fn client_uid(v: &Value, key: &str, object: &str) -> Result<Option<String>, Box<ImportSummary>> {
    match text(v, key) {
        None => Ok(None),
        Some(u) if uid::is_valid(&u) => Ok(Some(u)),
        Some(u) => Err(Box::new(ImportSummary::conflicts(
            None,
            vec![(
                format!("{object}.{key}"),
                format!("Invalid UID '{u}': a UID is 11 letters or digits, starting with a letter"),
            )],
        ))),
    }
}

/// The UID of another (non-deleted) tracked entity that holds `value` for the unique
/// attribute `attribute`, if any (`except` is the tracked entity being written).
pub fn unique_value_holder(
    conn: &Connection,
    attribute: &str,
    value: &str,
    except: Option<i64>,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT t.uid FROM attribute_values a JOIN tracked_entities t ON t.id = a.te_id \
         WHERE a.attribute = ?1 AND a.value = ?2 COLLATE NOCASE AND a.value = ?2 \
         AND t.deleted = 0 AND t.id != ?3 LIMIT 1",
    )?
    .query_row(params![attribute, value, except.unwrap_or(-1)], |r| r.get(0))
    .optional()
}

/// One import run: a connection (inside the caller's transaction) and everything the checks need.
pub struct Importer<'a> {
    /// The connection (a transaction).
    pub conn: &'a Connection,
    /// Metadata.
    pub md: &'a Metadata,
    /// The authenticated user.
    pub user: &'a UserScope,
    /// Org units by UID.
    pub ous: &'a HashMap<String, OrgUnit>,
    /// Timestamp of this run.
    pub now: String,
    /// Strategy.
    pub strategy: Strategy,
    /// `http://host/api`, for `href`.
    pub base: String,
    /// New tracker semantics (`POST /api/tracker`): an update keeps the attributes and data
    /// values the payload omits, and deletes only those sent with a `null` (or empty) value.
    /// The legacy API (`false`) keeps omitted attributes too (only `legacy.program`'s are
    /// deleted) and replaces an event's data values unless `legacy.merge_data_values`.
    pub merge: bool,
    /// Legacy import options (ignored when `merge`).
    pub legacy: LegacyOptions,
}

impl Importer<'_> {
    fn stored_by(&self, given: Option<String>) -> String {
        given.filter(|s| s.len() <= 255).unwrap_or_else(|| self.user.username.clone())
    }

    fn touch_te(&self, te_id: i64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("UPDATE tracked_entities SET last_updated = ?2, last_updated_by = ?3 WHERE id = ?1")?
            .execute(params![te_id, self.now, self.user.username])?;
        Ok(())
    }

    fn touch_enrollment(&self, id: i64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("UPDATE enrollments SET last_updated = ?2, last_updated_by = ?3 WHERE id = ?1")?
            .execute(params![id, self.now, self.user.username])?;
        Ok(())
    }

    /// Imports each of `items` with `import`; a summary that neither failed nor deleted gets the
    /// `href` of its record under `collection`.
    fn import_each(
        &self,
        items: &[Value],
        collection: &str,
        import: impl Fn(&Value) -> Result<ImportSummary, ApiError>,
    ) -> Result<ImportSummaries, ApiError> {
        let mut out = ImportSummaries::default();
        for item in items {
            let mut s = import(item)?;
            if s.status != ImportStatus::Error && self.strategy != Strategy::Delete {
                s.href = s.reference.as_ref().map(|r| format!("{}/{collection}/{r}", self.base));
            }
            out.push(s);
        }
        Ok(out)
    }

    // ---------------------------------------------------------------------------------------
    // Tracked entities
    // ---------------------------------------------------------------------------------------

    /// Imports tracked entities (each with nested enrollments and events).
    pub fn import_teis(&self, items: &[Value]) -> Result<ImportSummaries, ApiError> {
        self.import_each(items, "trackedEntityInstances", |item| self.import_tei(item))
    }

    fn import_tei(&self, v: &Value) -> Result<ImportSummary, ApiError> {
        if !v.is_object() {
            return Ok(ImportSummary::error(None, "Invalid tracked entity instance: not a JSON object"));
        }
        let uid = match client_uid(v, "trackedEntityInstance", "TrackedEntityInstance") {
            Ok(u) => u,
            Err(s) => return Ok(*s),
        };
        let existing = match &uid {
            Some(u) => store::te_by_uid(self.conn, u)?,
            None => None,
        };
        let exists_msg = |u: &str| format!("Tracked entity instance {u} already exists or was deleted earlier");
        Ok(match (self.strategy, existing) {
            (Strategy::Delete, Some(te)) if !te.deleted => self.delete_tei(&te)?,
            (Strategy::Delete, _) => ImportSummary::error(
                uid.clone(),
                format!(
                    "Tracked entity instance {} cannot be deleted as it is not present in the system",
                    uid.as_deref().unwrap_or("")
                ),
            ),
            (Strategy::Create, Some(te)) => ImportSummary::error(Some(te.uid.clone()), exists_msg(&te.uid)),
            (Strategy::CreateAndUpdate, Some(te)) if te.deleted => {
                ImportSummary::error(Some(te.uid.clone()), exists_msg(&te.uid))
            }
            (Strategy::Update | Strategy::CreateAndUpdate, Some(te)) if !te.deleted => self.update_tei(&te, v)?,
            (Strategy::Update, _) => ImportSummary::conflicts(
                uid.clone(),
                vec![(
                    "TrackedEntityInstance".into(),
                    format!(
                        "Tracked entity instance {} cannot be updated as it is not present in the system",
                        uid.as_deref().unwrap_or("")
                    ),
                )],
            ),
            (_, _) => self.create_tei(uid.unwrap_or_else(uid::generate), v)?,
        })
    }

    /// Validates attribute values (type, option set, uniqueness); returns the conflicts and
    /// the `(attribute, value, storedBy)` triples to store.
    fn check_attributes(&self, v: &Value, te_id: Option<i64>) -> Result<(Conflicts, AttrValues), ApiError> {
        let mut conflicts = Vec::new();
        let mut values = Vec::new();
        for a in array(v, "attributes") {
            let Some(attr_uid) = text(a, "attribute") else {
                conflicts.push(("Attribute.attribute".into(), "Missing required property attribute".into()));
                continue;
            };
            let Some(value) = text(a, "value") else {
                continue; // an empty value deletes
            };
            let Some(meta) = self.md.attribute(&attr_uid) else {
                conflicts.push(("Attribute.attribute".into(), format!("Invalid attribute {attr_uid}")));
                continue;
            };
            if value.chars().count() > 50_000 {
                conflicts.push((
                    "Attribute.value".into(),
                    format!("Value length is greater than 50000 chars for attribute {attr_uid}"),
                ));
                continue;
            }
            if let Some(reason) = self.md.check_value(&meta.value_type, meta.option_set.as_deref(), &value) {
                let kind = match (reason, meta.value_type.as_str()) {
                    ("value_not_valid_option", _) => format!(
                        "Value '{value}' is not a valid option for attribute {attr_uid} and option set {}",
                        meta.option_set.as_deref().unwrap_or("")
                    ),
                    (_, "NUMBER") => format!("Value '{value}' is not a valid numeric type for attribute {attr_uid}"),
                    (_, "BOOLEAN") => format!("Value '{value}' is not a valid boolean type for attribute {attr_uid}"),
                    (_, "DATE") => format!("Value '{value}' is not a valid date type for attribute {attr_uid}"),
                    (_, "TRUE_ONLY") => {
                        format!("Value '{value}' is not true (true-only type) for attribute {attr_uid}")
                    }
                    (r, _) => format!("Value '{value}' is not valid for attribute {attr_uid}: {r}"),
                };
                conflicts.push(("Attribute.value".into(), kind));
                continue;
            }
            if meta.unique {
                let other = unique_value_holder(self.conn, &attr_uid, &value, te_id)?;
                if other.is_some() {
                    conflicts.push((
                        "Attribute.value".into(),
                        format!("Non-unique attribute value '{value}' for attribute {attr_uid}"),
                    ));
                    continue;
                }
            }
            values.push((attr_uid, value, text(a, "storedBy")));
        }
        Ok((conflicts, values))
    }

    fn write_attributes(&self, te_id: i64, values: &[(String, String, Option<String>)]) -> rusqlite::Result<()> {
        let mut up = self.conn.prepare_cached(
            "INSERT INTO attribute_values (te_id, attribute, value, created, last_updated, stored_by) \
             VALUES (?1, ?2, ?3, ?4, ?4, ?5) ON CONFLICT(te_id, attribute) DO UPDATE SET \
             value = excluded.value, stored_by = excluded.stored_by, \
             last_updated = CASE WHEN value = excluded.value THEN last_updated ELSE excluded.last_updated END",
        )?;
        for (a, value, stored_by) in values {
            up.execute(params![te_id, a, value, self.now, self.stored_by(stored_by.clone())])?;
        }
        // Reserved values that are now used stay reserved (never handed out twice anyway).
        Ok(())
    }

    /// Deletes the attributes a payload sends with a `null` or empty value.
    fn delete_null_attributes(&self, te_id: i64, v: &Value) -> rusqlite::Result<()> {
        let mut del = self.conn.prepare_cached("DELETE FROM attribute_values WHERE te_id = ?1 AND attribute = ?2")?;
        for a in array(v, "attributes") {
            if let (Some(attr), None) = (text(a, "attribute"), text(a, "value")) {
                del.execute(params![te_id, attr])?;
            }
        }
        Ok(())
    }

    /// Legacy `PUT …/{tei}?program=P`: deletes P's attributes the payload omits; attributes
    /// of other programs or of the type only are kept, and without `program` (every bulk
    /// POST) nothing is (dhis2-core 2.40 AbstractTrackedEntityInstanceService:1239-1247;
    /// the bulk update passes a null program at :720).
    fn delete_omitted_program_attributes(&self, te_id: i64, v: &Value) -> rusqlite::Result<()> {
        let Some(program) = self.legacy.program.as_deref().and_then(|p| self.md.program(p)) else {
            return Ok(());
        };
        let incoming: Vec<String> = array(v, "attributes").iter().filter_map(|a| text(a, "attribute")).collect();
        let mut del = self.conn.prepare_cached("DELETE FROM attribute_values WHERE te_id = ?1 AND attribute = ?2")?;
        for pa in program.attributes.iter().filter(|pa| !incoming.contains(&pa.attribute)) {
            del.execute(params![te_id, pa.attribute])?;
        }
        Ok(())
    }

    /// Merges the `attributes` of a payload into a tracked entity (new tracker enrollments
    /// carry the program's attributes): values are checked, written, `null` ones deleted.
    /// Returns the conflicts; nothing is written when there are any.
    pub fn merge_attributes(&self, te: &TeRow, v: &Value) -> Result<Vec<(String, String)>, ApiError> {
        let (conflicts, values) = self.check_attributes(v, Some(te.id))?;
        if !conflicts.is_empty() {
            return Ok(conflicts);
        }
        self.write_attributes(te.id, &values)?;
        self.delete_null_attributes(te.id, v)?;
        if !array(v, "attributes").is_empty() {
            self.touch_te(te.id)?;
        }
        Ok(Vec::new())
    }

    fn org_unit_of(&self, v: &Value) -> Result<&OrgUnit, Option<String>> {
        match text(v, "orgUnit") {
            None => Err(None),
            Some(ou) => self.ous.get(&ou).ok_or(Some(ou)),
        }
    }

    fn check_type(&self, v: &Value) -> Conflicts {
        match text(v, "trackedEntityType") {
            None => vec![(
                "TrackedEntityInstance.trackedEntityType".into(),
                "Missing required property trackedEntityType".into(),
            )],
            Some(t) if self.md.tracked_entity_type(&t).is_none() => {
                vec![("TrackedEntityInstance.trackedEntityType".into(), format!("Invalid trackedEntityType {t}"))]
            }
            Some(_) => Vec::new(),
        }
    }

    fn create_tei(&self, uid: String, v: &Value) -> Result<ImportSummary, ApiError> {
        let mut conflicts = self.check_type(v);
        let (attr_conflicts, values) = self.check_attributes(v, None)?;
        conflicts.extend(attr_conflicts);
        if !conflicts.is_empty() {
            return Ok(ImportSummary::conflicts(Some(uid), conflicts));
        }
        let ou = match self.org_unit_of(v) {
            Ok(ou) => ou,
            Err(None) => {
                return Ok(ImportSummary::conflicts(
                    Some(uid.clone()),
                    vec![(uid, "No org unit ID in tracked entity instance object".into())],
                ))
            }
            Err(Some(bad)) => {
                return Ok(ImportSummary::conflicts(
                    Some(uid.clone()),
                    vec![(uid, format!("Invalid org unit ID: {bad}"))],
                ))
            }
        };
        if !self.user.can_capture(&ou.path) {
            return Ok(ImportSummary::error(
                Some(uid),
                format!("[User has no write access to organisation unit: {}]", ou.uid),
            ));
        }
        let tet = text(v, "trackedEntityType").unwrap_or_default();
        let stored_by = self.stored_by(text(v, "storedBy"));
        self.conn
            .prepare_cached(
                "INSERT INTO tracked_entities (uid, tracked_entity_type, org_unit, ou_path, created, last_updated, \
                 created_at_client, last_updated_at_client, created_by, last_updated_by, stored_by, inactive) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?8, ?9, ?10)",
            )?
            .execute(params![
                uid,
                tet,
                ou.uid,
                ou.path,
                self.now,
                text(v, "createdAtClient").and_then(|d| dates::normalise(&d)),
                text(v, "lastUpdatedAtClient").and_then(|d| dates::normalise(&d)),
                self.user.username,
                stored_by,
                flag(v, "inactive").unwrap_or(false),
            ])?;
        let te_id = self.conn.last_insert_rowid();
        self.write_attributes(te_id, &values)?;
        let te =
            store::te_by_uid(self.conn, &uid)?.ok_or_else(|| ApiError::Internal("inserted TEI vanished".into()))?;
        let mut s = ImportSummary::new(Some(uid));
        s.imported = 1;
        s.enrollments = Some(self.nested_enrollments(&te, v)?);
        Ok(s)
    }

    fn nested_enrollments(&self, te: &TeRow, v: &Value) -> Result<ImportSummaries, ApiError> {
        let mut out = ImportSummaries::default();
        for e in array(v, "enrollments") {
            out.push(self.import_enrollment(e, Some(te))?);
        }
        Ok(out)
    }

    fn update_tei(&self, te: &TeRow, v: &Value) -> Result<ImportSummary, ApiError> {
        let mut conflicts = Vec::new();
        if text(v, "trackedEntityType").is_some() {
            conflicts.extend(self.check_type(v));
        }
        let (attr_conflicts, values) = self.check_attributes(v, Some(te.id))?;
        conflicts.extend(attr_conflicts);
        if !conflicts.is_empty() {
            return Ok(ImportSummary::conflicts(Some(te.uid.clone()), conflicts));
        }
        let ou = match self.org_unit_of(v) {
            Ok(ou) => ou,
            Err(None) => {
                self.ous.get(&te.org_unit).ok_or_else(|| ApiError::Internal("TEI org unit vanished".into()))?
            }
            Err(Some(bad)) => {
                return Ok(ImportSummary::conflicts(
                    Some(te.uid.clone()),
                    vec![("OrganisationUnit".into(), format!("Org unit {bad} does not exist"))],
                ))
            }
        };
        if !self.user.can_capture(&te.ou_path) || !self.user.can_capture(&ou.path) {
            return Ok(ImportSummary::conflicts(
                Some(te.uid.clone()),
                vec![(
                    "TrackedEntityInstance".into(),
                    format!("User has no write access to organisation unit: {}", te.org_unit),
                )],
            ));
        }
        self.conn
            .prepare_cached(
                "UPDATE tracked_entities SET org_unit = ?2, ou_path = ?3, last_updated = ?4, last_updated_by = ?5, \
                 last_updated_at_client = COALESCE(?6, last_updated_at_client), inactive = COALESCE(?7, inactive), \
                 stored_by = COALESCE(?8, stored_by), tracked_entity_type = COALESCE(?9, tracked_entity_type) \
                 WHERE id = ?1",
            )?
            .execute(params![
                te.id,
                ou.uid,
                ou.path,
                self.now,
                self.user.username,
                text(v, "lastUpdatedAtClient").and_then(|d| dates::normalise(&d)),
                flag(v, "inactive"),
                text(v, "storedBy"),
                text(v, "trackedEntityType"),
            ])?;
        // dhis2-core 2.40 AbstractTrackedEntityInstanceService:830-834: with
        // ignoreEmptyCollection an empty `attributes` list is not handled at all.
        if self.merge || !self.legacy.ignore_empty_collection || !array(v, "attributes").is_empty() {
            self.write_attributes(te.id, &values)?;
            // An attribute sent empty is deleted (DefaultTrackedEntityAttributeValueService
            // 2.40:169 deletes a value set to empty).
            self.delete_null_attributes(te.id, v)?;
            if !self.merge {
                self.delete_omitted_program_attributes(te.id, v)?;
            }
        }
        let mut s = ImportSummary::new(Some(te.uid.clone()));
        s.updated = 1;
        let te = store::te_by_uid(self.conn, &te.uid)?.ok_or_else(|| ApiError::Internal("TEI vanished".into()))?;
        s.enrollments = Some(self.nested_enrollments(&te, v)?);
        Ok(s)
    }

    /// Deletes a tracked entity (soft), with its enrollments and events.
    pub fn delete_tei(&self, te: &TeRow) -> Result<ImportSummary, ApiError> {
        if !self.user.can_capture(&te.ou_path) {
            return Ok(ImportSummary::conflicts(
                Some(te.uid.clone()),
                vec![(te.uid.clone(), format!("User has no delete access to organisation unit: {}", te.org_unit))],
            ));
        }
        let c = self.conn;
        c.execute(
            "UPDATE tracked_entities SET deleted = 1, last_updated = ?2, last_updated_by = ?3 WHERE id = ?1",
            params![te.id, self.now, self.user.username],
        )?;
        c.execute(
            "UPDATE enrollments SET deleted = 1, last_updated = ?2, last_updated_by = ?3 WHERE te_id = ?1 AND deleted = 0",
            params![te.id, self.now, self.user.username],
        )?;
        c.execute(
            "UPDATE events SET deleted = 1, last_updated = ?2, last_updated_by = ?3 WHERE te_id = ?1 AND deleted = 0",
            params![te.id, self.now, self.user.username],
        )?;
        let mut s = ImportSummary::new(Some(te.uid.clone()));
        s.deleted = 1;
        s.description = Some(format!("Deletion of tracked entity instance {} was successful", te.uid));
        Ok(s)
    }

    // ---------------------------------------------------------------------------------------
    // Enrollments
    // ---------------------------------------------------------------------------------------

    /// Imports enrollments (each with nested events).
    pub fn import_enrollments(&self, items: &[Value]) -> Result<ImportSummaries, ApiError> {
        self.import_each(items, "enrollments", |item| self.import_enrollment(item, None))
    }

    fn import_enrollment(&self, v: &Value, parent: Option<&TeRow>) -> Result<ImportSummary, ApiError> {
        if !v.is_object() {
            return Ok(ImportSummary::error(None, "Invalid enrollment: not a JSON object"));
        }
        let uid = match client_uid(v, "enrollment", "Enrollment") {
            Ok(u) => u,
            Err(s) => return Ok(*s),
        };
        let existing = match &uid {
            Some(u) => store::enrollment_by_uid(self.conn, u)?,
            None => None,
        };
        let exists_msg = |u: &str| format!("Enrollment {u} already exists or was deleted earlier");
        Ok(match (self.strategy, existing) {
            (Strategy::Delete, Some(e)) if !e.deleted => self.delete_enrollment(&e)?,
            (Strategy::Delete, _) => ImportSummary::error(
                uid.clone(),
                format!(
                    "Enrollment {} cannot be deleted as it is not present in the system",
                    uid.as_deref().unwrap_or("")
                ),
            ),
            (Strategy::Create, Some(e)) => ImportSummary::error(Some(e.uid.clone()), exists_msg(&e.uid)),
            (Strategy::CreateAndUpdate, Some(e)) if e.deleted => {
                ImportSummary::error(Some(e.uid.clone()), exists_msg(&e.uid))
            }
            (Strategy::Update | Strategy::CreateAndUpdate, Some(e)) if !e.deleted => self.update_enrollment(&e, v)?,
            (Strategy::Update, _) => ImportSummary::error(
                uid.clone(),
                format!("ID {} doesn't point to a valid enrollment.", uid.as_deref().unwrap_or("")),
            ),
            (_, _) => self.create_enrollment(uid.unwrap_or_else(uid::generate), v, parent)?,
        })
    }

    fn enrollment_dates(&self, v: &Value) -> Result<(Option<String>, Option<String>), String> {
        let parse = |key: &str, what: &str| match text(v, key) {
            None => Ok(None),
            Some(d) => dates::normalise(&d).map(Some).ok_or_else(|| format!("Invalid enollment {what}:  {d}")),
        };
        Ok((parse("enrollmentDate", "date")?, parse("incidentDate", "incident date")?))
    }

    fn create_enrollment(&self, uid: String, v: &Value, parent: Option<&TeRow>) -> Result<ImportSummary, ApiError> {
        let te = match parent {
            Some(te) => Some(te.clone()),
            None => match text(v, "trackedEntityInstance") {
                Some(t) => store::te_by_uid(self.conn, &t)?.filter(|te| !te.deleted),
                None => None,
            },
        };
        let Some(te) = te else {
            return Ok(ImportSummary::conflicts(
                Some(uid),
                vec![(
                    "Enrollment.trackedEntityInstance".into(),
                    format!(
                        "Does not point to a valid tracked entity instance: {}",
                        text(v, "trackedEntityInstance").unwrap_or_default()
                    ),
                )],
            ));
        };
        let Some(program) = text(v, "program").and_then(|p| self.md.program(&p)) else {
            return Ok(ImportSummary::error(Some(uid), "Program can not be null"));
        };
        let ou = match self.org_unit_of(v) {
            Ok(ou) => ou,
            Err(_) => return Ok(ImportSummary::error(Some(uid), "OrganisationUnit can not be null")),
        };
        if program.program_type != "WITH_REGISTRATION" {
            return Ok(ImportSummary::error(
                Some(uid),
                format!(
                    "Provided program {} is a program without registration. An enrollment cannot be created into program without registration.",
                    program.uid
                ),
            ));
        }
        if !program.org_units.is_empty() && !program.org_units.contains(&ou.uid) {
            return Ok(ImportSummary::error(
                Some(uid),
                format!("Program is not assigned to this Organisation Unit: {}", ou.uid),
            ));
        }
        let status = text(v, "status").unwrap_or_else(|| "ACTIVE".into()).to_ascii_uppercase();
        if !matches!(status.as_str(), "ACTIVE" | "COMPLETED" | "CANCELLED") {
            return Ok(ImportSummary::conflicts(
                Some(uid),
                vec![("Enrollment.status".into(), format!("Invalid enrollment status: {status}"))],
            ));
        }
        if status != "CANCELLED" {
            let others = store::enrollments_where(
                self.conn,
                "e.te_id = ?1 AND e.program = ?2 AND e.deleted = 0",
                &[&te.id, &program.uid],
            )?;
            if status == "ACTIVE" && others.iter().any(|e| e.status == "ACTIVE") {
                return Ok(ImportSummary::error(
                    Some(uid),
                    format!(
                        "TrackedEntityInstance {} already has an active enrollment in program {}",
                        te.uid, program.uid
                    ),
                ));
            }
            if program.only_enroll_once && others.iter().any(|e| e.status != "CANCELLED") {
                return Ok(ImportSummary::error(
                    Some(uid),
                    format!(
                        "TrackedEntityInstance {} already has an active or completed enrollment in program {}, and this program only allows enrolling one time",
                        te.uid, program.uid
                    ),
                ));
            }
        }
        // Mandatory program attributes must be present on the tracked entity.
        let present: Vec<String> = store::attribute_values(self.conn, te.id)?.into_iter().map(|a| a.0).collect();
        let missing: Conflicts = program
            .attributes
            .iter()
            .filter(|pa| pa.mandatory && !present.contains(&pa.attribute))
            .map(|pa| ("Attribute.attribute".into(), format!("Missing mandatory attribute {}", pa.attribute)))
            .collect();
        if !missing.is_empty() {
            return Ok(ImportSummary::conflicts(Some(uid), missing));
        }
        let (enrollment_date, incident_date) = match self.enrollment_dates(v) {
            Ok(d) => d,
            Err(msg) => return Ok(ImportSummary::error(Some(uid), msg)),
        };
        if !self.user.can_capture(&ou.path) {
            return Ok(ImportSummary::error(
                Some(uid),
                format!("[User has no create access to organisation unit: {}]", ou.uid),
            ));
        }
        let enrollment_date = enrollment_date.unwrap_or_else(|| self.now.clone());
        let incident_date = incident_date.unwrap_or_else(|| enrollment_date.clone());
        let (completed_date, completed_by) = if status == "COMPLETED" {
            (
                text(v, "completedDate").and_then(|d| dates::normalise(&d)).or_else(|| Some(self.now.clone())),
                Some(text(v, "completedBy").unwrap_or_else(|| self.user.username.clone())),
            )
        } else {
            (None, None)
        };
        self.conn
            .prepare_cached(
                "INSERT INTO enrollments (uid, te_id, program, org_unit, status, enrollment_date, incident_date, \
                 completed_date, completed_by, followup, created, last_updated, created_at_client, \
                 last_updated_at_client, created_by, last_updated_by, stored_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14, ?14, ?15)",
            )?
            .execute(params![
                uid,
                te.id,
                program.uid,
                ou.uid,
                status,
                enrollment_date,
                incident_date,
                completed_date,
                completed_by,
                flag(v, "followup").unwrap_or(false),
                self.now,
                text(v, "createdAtClient").and_then(|d| dates::normalise(&d)),
                text(v, "lastUpdatedAtClient").and_then(|d| dates::normalise(&d)),
                self.user.username,
                self.stored_by(text(v, "storedBy")),
            ])?;
        let id = self.conn.last_insert_rowid();
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO program_owners (te_id, program, org_unit) VALUES (?1, ?2, ?3)")?
            .execute(params![te.id, program.uid, ou.uid])?;
        self.add_notes(Some(id), None, v)?;
        self.touch_te(te.id)?;
        let row = store::enrollment_by_uid(self.conn, &uid)?
            .ok_or_else(|| ApiError::Internal("enrollment vanished".into()))?;
        let mut s = ImportSummary::new(Some(uid));
        s.imported = 1;
        s.events = Some(self.nested_events(&row, v)?);
        Ok(s)
    }

    fn nested_events(&self, e: &EnrollmentRow, v: &Value) -> Result<ImportSummaries, ApiError> {
        let mut out = ImportSummaries::default();
        for ev in array(v, "events") {
            out.push(self.import_event(ev, Some(e))?);
        }
        Ok(out)
    }

    /// Adds the notes of a payload: one whose UID is stored is skipped (replays); an invalid or
    /// missing UID gets a new one; `storedDate` is kept (dhis2-core 2.40
    /// AbstractEventService:914-930, AbstractEnrollmentService:1499-1520).
    fn add_notes(&self, enrollment_id: Option<i64>, event_id: Option<i64>, v: &Value) -> rusqlite::Result<()> {
        for n in array(v, "notes") {
            let Some(value) = text(n, "value") else { continue };
            let note_uid = text(n, "note").filter(|u| uid::is_valid(u)).unwrap_or_else(uid::generate);
            if store::note_exists(self.conn, &note_uid)? {
                continue;
            }
            let stored_date =
                text(n, "storedDate").and_then(|d| dates::normalise(&d)).unwrap_or_else(|| self.now.clone());
            self.conn
                .prepare_cached(
                    "INSERT INTO notes (uid, enrollment_id, event_id, value, stored_by, stored_date) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    note_uid,
                    enrollment_id,
                    event_id,
                    value,
                    self.stored_by(text(n, "storedBy")),
                    stored_date
                ])?;
        }
        Ok(())
    }

    /// Updates an enrollment from a full payload (`PUT /api/enrollments/{id}`).
    pub fn update_enrollment(&self, e: &EnrollmentRow, v: &Value) -> Result<ImportSummary, ApiError> {
        if let Some(p) = text(v, "program") {
            if self.md.program(&p).is_none() {
                return Ok(ImportSummary::error(Some(e.uid.clone()), "Program can not be null"));
            }
        }
        let ou = match self.org_unit_of(v) {
            Ok(ou) => ou,
            Err(None) => self.ous.get(&e.org_unit).ok_or_else(|| ApiError::Internal("org unit vanished".into()))?,
            Err(Some(bad)) => {
                return Ok(ImportSummary::error(Some(e.uid.clone()), format!("Org unit {bad} does not exist")));
            }
        };
        let current_path = self.ous.get(&e.org_unit).map_or("", |o| o.path.as_str());
        if !self.user.can_capture(current_path) || !self.user.can_capture(&ou.path) {
            return Ok(ImportSummary::error(
                Some(e.uid.clone()),
                format!("[User has no write access to organisation unit: {}]", e.org_unit),
            ));
        }
        let status = text(v, "status").map_or_else(|| e.status.clone(), |s| s.to_ascii_uppercase());
        if !matches!(status.as_str(), "ACTIVE" | "COMPLETED" | "CANCELLED") {
            return Ok(ImportSummary::conflicts(
                Some(e.uid.clone()),
                vec![("Enrollment.status".into(), format!("Invalid enrollment status: {status}"))],
            ));
        }
        let (enrollment_date, incident_date) = match self.enrollment_dates(v) {
            Ok(d) => d,
            Err(msg) => return Ok(ImportSummary::error(Some(e.uid.clone()), msg)),
        };
        self.conn
            .prepare_cached(
                "UPDATE enrollments SET org_unit = ?2, enrollment_date = COALESCE(?3, enrollment_date), \
                 incident_date = COALESCE(?4, incident_date), followup = COALESCE(?5, followup), \
                 last_updated = ?6, last_updated_by = ?7, last_updated_at_client = COALESCE(?8, last_updated_at_client) \
                 WHERE id = ?1",
            )?
            .execute(params![
                e.id,
                ou.uid,
                enrollment_date,
                incident_date,
                flag(v, "followup"),
                self.now,
                self.user.username,
                text(v, "lastUpdatedAtClient").and_then(|d| dates::normalise(&d)),
            ])?;
        self.set_enrollment_status(e, &status, text(v, "completedDate").and_then(|d| dates::normalise(&d)))?;
        self.add_notes(Some(e.id), None, v)?;
        self.touch_te(e.te_id)?;
        let mut s = ImportSummary::new(Some(e.uid.clone()));
        s.updated = 1;
        let row = store::enrollment_by_uid(self.conn, &e.uid)?
            .ok_or_else(|| ApiError::Internal("enrollment vanished".into()))?;
        s.events = Some(self.nested_events(&row, v)?);
        Ok(s)
    }

    /// Sets an enrollment's status (completed date and user kept for COMPLETED).
    pub fn set_enrollment_status(
        &self,
        e: &EnrollmentRow,
        status: &str,
        completed: Option<String>,
    ) -> rusqlite::Result<()> {
        let (date, by) = match status {
            "COMPLETED" if e.status == "COMPLETED" => (e.completed_date.clone(), e.completed_by.clone()),
            "COMPLETED" => (completed.or_else(|| Some(self.now.clone())), Some(self.user.username.clone())),
            _ => (None, None),
        };
        self.conn
            .prepare_cached(
                "UPDATE enrollments SET status = ?2, completed_date = ?3, completed_by = ?4, last_updated = ?5, \
                 last_updated_by = ?6 WHERE id = ?1",
            )?
            .execute(params![e.id, status, date, by, self.now, self.user.username])?;
        self.touch_te(e.te_id)
    }

    /// Deletes an enrollment (soft) with its events.
    pub fn delete_enrollment(&self, e: &EnrollmentRow) -> Result<ImportSummary, ApiError> {
        let path = self.ous.get(&e.org_unit).map_or("", |o| o.path.as_str());
        if !self.user.can_capture(path) {
            return Ok(ImportSummary::conflicts(
                Some(e.uid.clone()),
                vec![(e.uid.clone(), format!("User has no delete access to organisation unit: {}", e.org_unit))],
            ));
        }
        self.conn.execute(
            "UPDATE enrollments SET deleted = 1, last_updated = ?2, last_updated_by = ?3 WHERE id = ?1",
            params![e.id, self.now, self.user.username],
        )?;
        self.conn.execute(
            "UPDATE events SET deleted = 1, last_updated = ?2, last_updated_by = ?3 WHERE enrollment_id = ?1",
            params![e.id, self.now, self.user.username],
        )?;
        self.touch_te(e.te_id)?;
        let mut s = ImportSummary::new(Some(e.uid.clone()));
        s.deleted = 1;
        s.description = Some(format!("Deletion of enrollment {} was successful", e.uid));
        Ok(s)
    }

    // ---------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------

    /// Imports events.
    pub fn import_events(&self, items: &[Value]) -> Result<ImportSummaries, ApiError> {
        self.import_each(items, "events", |item| self.import_event(item, None))
    }

    fn import_event(&self, v: &Value, parent: Option<&EnrollmentRow>) -> Result<ImportSummary, ApiError> {
        if !v.is_object() {
            return Ok(ImportSummary::error(None, "Invalid event: not a JSON object"));
        }
        let uid = match client_uid(v, "event", "Event") {
            Ok(u) => u,
            Err(s) => return Ok(*s),
        };
        let existing = match &uid {
            Some(u) => store::event_by_uid(self.conn, u)?,
            None => None,
        };
        Ok(match (self.strategy, existing) {
            (Strategy::Delete, Some(ev)) if !ev.deleted => self.delete_event(&ev)?,
            (Strategy::Delete, _) => {
                let mut s = ImportSummary::new(uid.clone());
                s.description = Some(format!(
                    "Event {} cannot be deleted as it is not present in the system",
                    uid.as_deref().unwrap_or("")
                ));
                s.ignored = 1;
                s
            }
            (Strategy::Create, Some(ev)) => ImportSummary::error(
                Some(ev.uid.clone()),
                format!("Event {} already exists or was deleted earlier", ev.uid),
            ),
            (Strategy::CreateAndUpdate, Some(ev)) if ev.deleted => ImportSummary::error(
                Some(ev.uid.clone()),
                format!("Event {} already exists or was deleted earlier", ev.uid),
            ),
            // Only a bulk `POST /api/events` honours mergeDataValues: events nested in a TEI or
            // enrollment, and `PUT /api/events/{ev}`, go through AbstractEventService.updateEvent,
            // which sets it to false (dhis2-core 2.40 AbstractEventService:726).
            (Strategy::Update | Strategy::CreateAndUpdate, Some(ev)) if !ev.deleted => {
                let mode = if parent.is_none() && self.legacy.merge_data_values {
                    EventUpdate::MergeValues
                } else {
                    EventUpdate::Whole
                };
                self.update_event_as(&ev, v, mode)?
            }
            (Strategy::Update, _) => ImportSummary::conflicts(
                uid.clone(),
                vec![("Invalid Event ID".into(), uid.clone().unwrap_or_default())],
            ),
            (_, _) => self.create_event(uid.unwrap_or_else(uid::generate), v, parent)?,
        })
    }

    /// Validates the data values of an event payload against its stage; returns conflicts and
    /// `(dataElement, value (None = delete), providedElsewhere, storedBy)`.
    #[allow(clippy::type_complexity)]
    fn check_data_values(
        &self,
        stage: &crate::model::ProgramStage,
        v: &Value,
    ) -> (Conflicts, Vec<(String, Option<String>, bool, Option<String>)>) {
        let mut conflicts = Vec::new();
        let mut values = Vec::new();
        for dv in array(v, "dataValues") {
            let Some(de_uid) = text(dv, "dataElement") else {
                conflicts.push(("dataElement".into(), "Missing required property dataElement".into()));
                continue;
            };
            let Some(de) = self.md.data_element(&de_uid) else {
                conflicts.push(("dataElement".into(), format!("{de_uid} is not a valid data element")));
                continue;
            };
            if !stage.data_elements.iter().any(|d| d.data_element == de_uid) {
                conflicts.push(("dataElement".into(), format!("{de_uid} is not a valid data element")));
                continue;
            }
            let value = text(dv, "value");
            if let Some(val) = &value {
                if let Some(reason) = self.md.check_value(&de.value_type, de.option_set.as_deref(), val) {
                    conflicts.push((de_uid.clone(), reason.into()));
                    continue;
                }
            }
            values.push((de_uid, value, flag(dv, "providedElsewhere").unwrap_or(false), text(dv, "storedBy")));
        }
        (conflicts, values)
    }

    fn write_data_values(
        &self,
        event_id: i64,
        values: &[(String, Option<String>, bool, Option<String>)],
        replace: bool,
    ) -> rusqlite::Result<()> {
        if replace {
            let keep: Vec<&str> = values.iter().filter(|v| v.1.is_some()).map(|v| v.0.as_str()).collect();
            let existing: Vec<String> = self
                .conn
                .prepare_cached("SELECT data_element FROM data_values WHERE event_id = ?1")?
                .query_map([event_id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut del =
                self.conn.prepare_cached("DELETE FROM data_values WHERE event_id = ?1 AND data_element = ?2")?;
            for d in existing.iter().filter(|d| !keep.contains(&d.as_str())) {
                del.execute(params![event_id, d])?;
            }
        }
        let mut up = self.conn.prepare_cached(
            "INSERT INTO data_values (event_id, data_element, value, provided_elsewhere, created, last_updated, stored_by) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6) ON CONFLICT(event_id, data_element) DO UPDATE SET \
             value = excluded.value, provided_elsewhere = excluded.provided_elsewhere, stored_by = excluded.stored_by, \
             last_updated = excluded.last_updated",
        )?;
        let mut del = self.conn.prepare_cached("DELETE FROM data_values WHERE event_id = ?1 AND data_element = ?2")?;
        for (de, value, elsewhere, stored_by) in values {
            match value {
                Some(val) => {
                    up.execute(params![event_id, de, val, elsewhere, self.now, self.stored_by(stored_by.clone())])?;
                }
                None => {
                    del.execute(params![event_id, de])?;
                }
            }
        }
        Ok(())
    }

    /// Whether the user owns the tracked entity for `program` (open/audited programs and
    /// superusers always; else the owner org unit, or the TE's own, must be in capture scope).
    pub fn owner_ok(&self, te_id: i64, te_ou: &str, program: &crate::model::Program) -> rusqlite::Result<bool> {
        if self.user.superuser || matches!(program.access_level.as_str(), "OPEN" | "AUDITED") {
            return Ok(true);
        }
        let owner: Option<String> = self
            .conn
            .prepare_cached("SELECT org_unit FROM program_owners WHERE te_id = ?1 AND program = ?2")?
            .query_row(params![te_id, program.uid], |r| r.get(0))
            .optional()?;
        let owner = owner.unwrap_or_else(|| te_ou.to_owned());
        Ok(self.ous.get(&owner).is_some_and(|o| self.user.can_capture(&o.path)))
    }

    fn create_event(&self, uid: String, v: &Value, parent: Option<&EnrollmentRow>) -> Result<ImportSummary, ApiError> {
        let program_uid = text(v, "program").or_else(|| parent.map(|p| p.program.clone()));
        let Some(program) = program_uid.as_deref().and_then(|p| self.md.program(p)) else {
            return Ok(ImportSummary::error(
                Some(uid),
                format!("Event.program does not point to a valid program: {}", program_uid.unwrap_or_default()),
            ));
        };
        let stage_uid = text(v, "programStage");
        let Some(stage) = stage_uid.as_deref().and_then(|s| self.md.stage(s)).filter(|s| s.program == program.uid)
        else {
            return Ok(ImportSummary::error(
                Some(uid),
                format!("Event.programStage does not point to a valid programStage: {}", stage_uid.unwrap_or_default()),
            ));
        };
        let ou_uid = text(v, "orgUnit").or_else(|| parent.map(|p| p.org_unit.clone()));
        let Some(ou) = ou_uid.as_deref().and_then(|o| self.ous.get(o)) else {
            return Ok(ImportSummary::error(
                Some(uid),
                format!("Event.orgUnit does not point to a valid organisation unit: {}", ou_uid.unwrap_or_default()),
            ));
        };
        // Tracker program: the event belongs to a tracked entity and one of its enrollments.
        let enrollment = match parent {
            Some(p) => Some(p.clone()),
            None => match text(v, "enrollment") {
                Some(e) => store::enrollment_by_uid(self.conn, &e)?.filter(|e| !e.deleted),
                None => None,
            },
        };
        let te = match (&enrollment, text(v, "trackedEntityInstance")) {
            (Some(e), _) => store::te_by_uid(self.conn, &e.te_uid)?,
            (None, Some(t)) => store::te_by_uid(self.conn, &t)?,
            (None, None) => None,
        }
        .filter(|t| !t.deleted);
        let Some(te) = te else {
            return Ok(ImportSummary::error(
                Some(uid),
                format!(
                    "Event.trackedEntityInstance does not point to a valid tracked entity instance: {}",
                    text(v, "trackedEntityInstance").unwrap_or_default()
                ),
            ));
        };
        let enrollment = match enrollment {
            Some(e) if e.program == program.uid && e.te_id == te.id => e,
            Some(e) => {
                return Ok(ImportSummary::error(
                    Some(uid),
                    format!(
                        "Enrollment {} does not belong to program {} and tracked entity instance {}",
                        e.uid, program.uid, te.uid
                    ),
                ))
            }
            None => {
                let active = store::enrollments_where(
                    self.conn,
                    "e.te_id = ?1 AND e.program = ?2 AND e.deleted = 0 AND e.status = 'ACTIVE' ORDER BY e.id DESC",
                    &[&te.id, &program.uid],
                )?;
                match active.into_iter().next() {
                    Some(e) => e,
                    None => {
                        return Ok(ImportSummary::error(
                            Some(uid),
                            format!("Tracked entity instance: {} is not enrolled in program: {}", te.uid, program.uid),
                        ))
                    }
                }
            }
        };
        if !stage.repeatable {
            let n: i64 = self
                .conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM events WHERE enrollment_id = ?1 AND program_stage = ?2 AND deleted = 0",
                )?
                .query_row(params![enrollment.id, stage.uid], |r| r.get(0))?;
            if n > 0 {
                return Ok(ImportSummary::error(
                    Some(uid),
                    "Program stage is not repeatable and an event already exists",
                ));
            }
        }
        let status = text(v, "status").unwrap_or_else(|| "ACTIVE".into()).to_ascii_uppercase();
        if !matches!(status.as_str(), "ACTIVE" | "COMPLETED" | "VISITED" | "SCHEDULE" | "OVERDUE" | "SKIPPED") {
            return Ok(ImportSummary::error(Some(uid), format!("Invalid event status: {status}")));
        }
        let event_date = match text(v, "eventDate") {
            Some(d) => match dates::normalise(&d) {
                Some(d) => Some(d),
                None => {
                    return Ok(ImportSummary::error(Some(uid), "Event date or Execution date format is not correct. "))
                }
            },
            None if matches!(status.as_str(), "SCHEDULE" | "OVERDUE" | "SKIPPED") => None,
            None => return Ok(ImportSummary::error(Some(uid), "Event date is required. ")),
        };
        let due_date = match text(v, "dueDate") {
            Some(d) => match dates::normalise(&d) {
                Some(d) => Some(d),
                None => return Ok(ImportSummary::error(Some(uid), format!("Invalid due date: {d}"))),
            },
            None => event_date.clone().or_else(|| Some(self.now.clone())),
        };
        if !program.org_units.is_empty() && !program.org_units.contains(&ou.uid) {
            return Ok(ImportSummary::error(
                Some(uid),
                format!("Program is not assigned to this organisation unit: {}", ou.uid),
            ));
        }
        let mut conflicts = Vec::new();
        if !self.user.can_capture(&ou.path) {
            conflicts.push((uid.clone(), format!("User has no write access to organisation unit: {}", ou.uid)));
        }
        if !self.owner_ok(te.id, &te.org_unit, program)? {
            conflicts.push((uid.clone(), "OWNERSHIP_ACCESS_DENIED".into()));
        }
        let (dv_conflicts, values) = self.check_data_values(stage, v);
        conflicts.extend(dv_conflicts);
        if !conflicts.is_empty() {
            return Ok(ImportSummary::conflicts(Some(uid), conflicts));
        }
        let (completed_date, completed_by) = if status == "COMPLETED" {
            (
                text(v, "completedDate").and_then(|d| dates::normalise(&d)).or_else(|| Some(self.now.clone())),
                Some(text(v, "completedBy").unwrap_or_else(|| self.user.username.clone())),
            )
        } else {
            (None, None)
        };
        self.conn
            .prepare_cached(
                "INSERT INTO events (uid, enrollment_id, te_id, program, program_stage, org_unit, ou_path, status, \
                 event_date, due_date, completed_date, completed_by, created, last_updated, created_at_client, \
                 last_updated_at_client, created_by, last_updated_by, stored_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15, ?16, ?16, ?17)",
            )?
            .execute(params![
                uid,
                enrollment.id,
                te.id,
                program.uid,
                stage.uid,
                ou.uid,
                ou.path,
                status,
                event_date,
                due_date,
                completed_date,
                completed_by,
                self.now,
                text(v, "createdAtClient").and_then(|d| dates::normalise(&d)),
                text(v, "lastUpdatedAtClient").and_then(|d| dates::normalise(&d)),
                self.user.username,
                self.stored_by(text(v, "storedBy")),
            ])?;
        let id = self.conn.last_insert_rowid();
        self.write_data_values(id, &values, false)?;
        self.add_notes(None, Some(id), v)?;
        self.touch_enrollment(enrollment.id)?;
        self.touch_te(te.id)?;
        let mut s = ImportSummary::new(Some(uid));
        s.imported = 1;
        Ok(s)
    }

    /// Updates an event: the whole event (`single_value = false`: omitted data values are
    /// deleted) or only the data values in the payload (`PUT /api/events/{ev}/{de}`).
    pub fn update_event(&self, ev: &EventRow, v: &Value, single_value: bool) -> Result<ImportSummary, ApiError> {
        self.update_event_as(ev, v, if single_value { EventUpdate::SingleValue } else { EventUpdate::Whole })
    }

    fn update_event_as(&self, ev: &EventRow, v: &Value, mode: EventUpdate) -> Result<ImportSummary, ApiError> {
        let single_value = mode == EventUpdate::SingleValue;
        let Some(stage) = self.md.stage(&ev.program_stage) else {
            return Ok(ImportSummary::error(
                Some(ev.uid.clone()),
                "Event.programStage does not point to a valid programStage",
            ));
        };
        let ou = if single_value {
            None
        } else {
            match text(v, "orgUnit") {
                None => None,
                Some(o) => match self.ous.get(&o) {
                    Some(ou) => Some(ou),
                    None => {
                        return Ok(ImportSummary::error(
                            Some(ev.uid.clone()),
                            format!("Event.orgUnit does not point to a valid organisation unit: {o}"),
                        ))
                    }
                },
            }
        };
        let mut conflicts = Vec::new();
        if !self.user.can_capture(&ev.ou_path) || ou.is_some_and(|o| !self.user.can_capture(&o.path)) {
            conflicts
                .push((ev.uid.clone(), format!("User has no update access to organisation unit: {}", ev.org_unit)));
        }
        let (dv_conflicts, values) = self.check_data_values(stage, v);
        conflicts.extend(dv_conflicts);
        let status = if single_value {
            ev.status.clone()
        } else {
            text(v, "status").map_or_else(|| ev.status.clone(), |s| s.to_ascii_uppercase())
        };
        if !matches!(status.as_str(), "ACTIVE" | "COMPLETED" | "VISITED" | "SCHEDULE" | "OVERDUE" | "SKIPPED") {
            conflicts.push(("Event.status".into(), format!("Invalid event status: {status}")));
        }
        let parse = |key: &str| -> Result<Option<String>, (String, String)> {
            match text(v, key) {
                None => Ok(None),
                Some(d) => {
                    dates::normalise(&d).map(Some).ok_or_else(|| (format!("Event.{key}"), format!("Invalid date: {d}")))
                }
            }
        };
        let (event_date, due_date) = if single_value {
            (None, None)
        } else {
            match (parse("eventDate"), parse("dueDate")) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(c), _) | (_, Err(c)) => {
                    conflicts.push(c);
                    (None, None)
                }
            }
        };
        if !conflicts.is_empty() {
            return Ok(ImportSummary::conflicts(Some(ev.uid.clone()), conflicts));
        }
        let (completed_date, completed_by) = match (status.as_str(), ev.status.as_str()) {
            ("COMPLETED", "COMPLETED") => (ev.completed_date.clone(), ev.completed_by.clone()),
            ("COMPLETED", _) => (
                text(v, "completedDate").and_then(|d| dates::normalise(&d)).or_else(|| Some(self.now.clone())),
                Some(text(v, "completedBy").unwrap_or_else(|| self.user.username.clone())),
            ),
            _ => (None, None),
        };
        let stored_by = if single_value { None } else { text(v, "storedBy") };
        self.conn
            .prepare_cached(
                "UPDATE events SET status = ?2, event_date = COALESCE(?3, event_date), due_date = COALESCE(?4, due_date), \
                 completed_date = ?5, completed_by = ?6, org_unit = COALESCE(?7, org_unit), ou_path = COALESCE(?8, ou_path), \
                 last_updated = ?9, last_updated_by = ?10, stored_by = COALESCE(?11, stored_by), \
                 last_updated_at_client = COALESCE(?12, last_updated_at_client) WHERE id = ?1",
            )?
            .execute(params![
                ev.id,
                status,
                event_date,
                due_date,
                completed_date,
                completed_by,
                ou.map(|o| o.uid.clone()),
                ou.map(|o| o.path.clone()),
                self.now,
                self.user.username,
                stored_by,
                text(v, "lastUpdatedAtClient").and_then(|d| dates::normalise(&d)),
            ])?;
        // dhis2-core 2.40 EventDataValueAggregator:72-101: an update's data values are the ones
        // sent with a value, plus (mergeDataValues only) the stored ones the payload does not
        // name; one sent empty is dropped, i.e. deleted, in both modes.
        self.write_data_values(ev.id, &values, mode == EventUpdate::Whole && !self.merge)?;
        if !single_value {
            self.add_notes(None, Some(ev.id), v)?;
        }
        if let Some(e) = ev.enrollment_id {
            self.touch_enrollment(e)?;
        }
        if let Some(t) = ev.te_id {
            self.touch_te(t)?;
        }
        let mut s = ImportSummary::new(Some(ev.uid.clone()));
        s.updated = 1;
        Ok(s)
    }

    /// Sets only the event date (`PUT /api/events/{ev}/eventDate`).
    pub fn set_event_date(&self, ev: &EventRow, v: &Value) -> Result<Option<String>, ApiError> {
        let Some(date) = text(v, "eventDate").and_then(|d| dates::normalise(&d)) else {
            return Ok(Some("Event date is required. ".into()));
        };
        if !self.user.can_capture(&ev.ou_path) {
            return Ok(Some(format!("User has no update access to organisation unit: {}", ev.org_unit)));
        }
        self.conn.execute(
            "UPDATE events SET event_date = ?2, last_updated = ?3, last_updated_by = ?4 WHERE id = ?1",
            params![ev.id, date, self.now, self.user.username],
        )?;
        if let Some(t) = ev.te_id {
            self.touch_te(t)?;
        }
        Ok(None)
    }

    /// Adds the notes of a payload to an event (`POST /api/events/{ev}/note`).
    pub fn add_event_notes(&self, ev: &EventRow, v: &Value) -> Result<(), ApiError> {
        self.add_notes(None, Some(ev.id), v)?;
        self.conn.execute(
            "UPDATE events SET last_updated = ?2, last_updated_by = ?3 WHERE id = ?1",
            params![ev.id, self.now, self.user.username],
        )?;
        if let Some(t) = ev.te_id {
            self.touch_te(t)?;
        }
        Ok(())
    }

    /// Deletes an event (soft).
    pub fn delete_event(&self, ev: &EventRow) -> Result<ImportSummary, ApiError> {
        if !self.user.can_capture(&ev.ou_path) {
            return Ok(ImportSummary::conflicts(
                Some(ev.uid.clone()),
                vec![("Event".into(), format!("User has no delete access to organisation unit: {}", ev.org_unit))],
            ));
        }
        self.conn.execute(
            "UPDATE events SET deleted = 1, last_updated = ?2, last_updated_by = ?3 WHERE id = ?1",
            params![ev.id, self.now, self.user.username],
        )?;
        if let Some(t) = ev.te_id {
            self.touch_te(t)?;
        }
        let mut s = ImportSummary::new(Some(ev.uid.clone()));
        s.deleted = 1;
        s.description = Some(format!("Deletion of event {} was successful", ev.uid));
        Ok(s)
    }
}
