//! The legacy importer for tracked entities: create (with nested enrollments and events),
//! update (attributes merged as DHIS2 does), delete.

use super::*;

impl Importer<'_> {
    /// Imports tracked entities (each with nested enrollments and events).
    pub fn import_teis(&self, items: &[Value]) -> Result<ImportSummaries, ApiError> {
        self.import_each(items, "trackedEntityInstances", |item| self.import_tei(item))
    }

    pub(super) fn import_tei(&self, v: &Value) -> Result<ImportSummary, ApiError> {
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
    pub(super) fn check_attributes(&self, v: &Value, te_id: Option<i64>) -> Result<(Conflicts, AttrValues), ApiError> {
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

    pub(super) fn write_attributes(
        &self,
        te_id: i64,
        values: &[(String, String, Option<String>)],
    ) -> rusqlite::Result<()> {
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
    pub(super) fn delete_null_attributes(&self, te_id: i64, v: &Value) -> rusqlite::Result<()> {
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
    pub(super) fn delete_omitted_program_attributes(&self, te_id: i64, v: &Value) -> rusqlite::Result<()> {
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

    pub(super) fn org_unit_of(&self, v: &Value) -> Result<&OrgUnit, Option<String>> {
        match text(v, "orgUnit") {
            None => Err(None),
            Some(ou) => self.ous.get(&ou).ok_or(Some(ou)),
        }
    }

    pub(super) fn check_type(&self, v: &Value) -> Conflicts {
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

    pub(super) fn create_tei(&self, uid: String, v: &Value) -> Result<ImportSummary, ApiError> {
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

    pub(super) fn nested_enrollments(&self, te: &TeRow, v: &Value) -> Result<ImportSummaries, ApiError> {
        let mut out = ImportSummaries::default();
        for e in array(v, "enrollments") {
            out.push(self.import_enrollment(e, Some(te))?);
        }
        Ok(out)
    }

    pub(super) fn update_tei(&self, te: &TeRow, v: &Value) -> Result<ImportSummary, ApiError> {
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
}
