//! The legacy importer for tracked entities: create (with nested enrollments and events),
//! update (attributes merged as DHIS2 does), delete.

use super::*;
use crate::tracker::persist::{NewTrackedEntity, TrackedEntityChange};
use crate::tracker::validate::values::{self, ValueProblem};

impl Importer<'_> {
    /// Imports tracked entities (each with nested enrollments and events).
    pub fn import_teis(&self, items: &[Value]) -> Result<ImportSummaries, ApiError> {
        self.import_each(items, "trackedEntityInstances", |item| self.import_tei(item))
    }

    pub(super) fn import_tei(&self, v: &Value) -> Result<ImportSummary, ApiError> {
        let found = identify(v, "trackedEntityInstance", "TrackedEntityInstance", "tracked entity instance", |u| {
            store::te_by_uid(self.conn, u)
        })?;
        let (uid, stored) = match found {
            Ok(found) => found,
            Err(summary) => return Ok(summary),
        };
        let missing = uid.as_deref().unwrap_or("");
        Ok(match resolve(self.strategy, stored, |te| te.deleted) {
            Resolved::Delete(te) => self.delete_tei(&te)?,
            Resolved::MissingForDelete => ImportSummary::error(
                uid.clone(),
                format!("Tracked entity instance {missing} cannot be deleted as it is not present in the system"),
            ),
            Resolved::Exists(te) => ImportSummary::error(
                Some(te.uid.clone()),
                format!("Tracked entity instance {} already exists or was deleted earlier", te.uid),
            ),
            Resolved::Update(te) => self.update_tei(&te, v)?,
            Resolved::MissingForUpdate => ImportSummary::conflicts(
                uid.clone(),
                vec![(
                    "TrackedEntityInstance".into(),
                    format!("Tracked entity instance {missing} cannot be updated as it is not present in the system"),
                )],
            ),
            Resolved::Create => self.create_tei(uid.unwrap_or_else(uid::generate), v)?,
        })
    }

    /// Validates attribute values (type, option set, uniqueness); returns the conflicts and
    /// the values to store.
    pub(super) fn check_attributes(
        &self,
        v: &Value,
        te_id: Option<i64>,
    ) -> Result<(Conflicts, Vec<AttributeWrite>), ApiError> {
        let mut conflicts = Vec::new();
        let mut values = Vec::new();
        for a in array(v, "attributes") {
            let Some(attr_uid) = text(a, "attribute") else {
                conflicts.push(ValueProblem::AttributeMissing.legacy_conflict());
                continue;
            };
            let Some(value) = text(a, "value") else {
                continue; // an empty value deletes
            };
            let Some(meta) = self.md.attribute(&attr_uid) else {
                conflicts.push(ValueProblem::AttributeUnknown { attribute: attr_uid }.legacy_conflict());
                continue;
            };
            // The legacy importer's own rule (the new tracker has no length check).
            if value.chars().count() > 50_000 {
                conflicts.push((
                    "Attribute.value".into(),
                    format!("Value length is greater than 50000 chars for attribute {attr_uid}"),
                ));
                continue;
            }
            if let Some(problem) = values::attribute_value(self.conn, self.md, meta, &value, te_id)? {
                conflicts.push(problem.legacy_conflict());
                continue;
            }
            values.push(AttributeWrite { attribute: attr_uid, value, stored_by: self.stored_by(text(a, "storedBy")) });
        }
        Ok((conflicts, values))
    }

    /// Deletes the attributes a payload sends with a `null` or empty value.
    pub(super) fn delete_null_attributes(&self, te_id: i64, v: &Value) -> rusqlite::Result<()> {
        let cleared: Vec<String> = array(v, "attributes")
            .iter()
            .filter(|a| text(a, "value").is_none())
            .filter_map(|a| text(a, "attribute"))
            .collect();
        self.writer().delete_attributes(te_id, cleared.iter().map(String::as_str))
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
        let omitted = program.attributes.iter().filter(|pa| !incoming.contains(&pa.attribute));
        self.writer().delete_attributes(te_id, omitted.map(|pa| pa.attribute.as_str()))
    }

    /// Merges the `attributes` of a payload into a tracked entity (new tracker enrollments
    /// carry the program's attributes): values are checked, written, `null` ones deleted.
    /// Returns the conflicts; nothing is written when there are any.
    pub fn merge_attributes(&self, te: &TeRow, v: &Value) -> Result<Vec<(String, String)>, ApiError> {
        let (conflicts, values) = self.check_attributes(v, Some(te.id))?;
        if !conflicts.is_empty() {
            return Ok(conflicts);
        }
        self.writer().write_attributes(te.id, &values)?;
        self.delete_null_attributes(te.id, v)?;
        if !array(v, "attributes").is_empty() {
            self.writer().touch_tracked_entity(te.id)?;
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
        let te_id = self.writer().insert_tracked_entity(&NewTrackedEntity {
            uid: &uid,
            tracked_entity_type: &text(v, "trackedEntityType").unwrap_or_default(),
            org_unit: ou,
            created_at_client: text(v, "createdAtClient").and_then(|d| dates::normalise(&d)),
            last_updated_at_client: text(v, "lastUpdatedAtClient").and_then(|d| dates::normalise(&d)),
            stored_by: &self.stored_by(text(v, "storedBy")),
            inactive: flag(v, "inactive").unwrap_or(false),
        })?;
        self.writer().write_attributes(te_id, &values)?;
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
        self.writer().update_tracked_entity(
            te.id,
            &TrackedEntityChange {
                org_unit: ou,
                last_updated_at_client: text(v, "lastUpdatedAtClient").and_then(|d| dates::normalise(&d)),
                inactive: flag(v, "inactive"),
                stored_by: text(v, "storedBy"),
                tracked_entity_type: text(v, "trackedEntityType"),
            },
        )?;
        // dhis2-core 2.40 AbstractTrackedEntityInstanceService:830-834: with
        // ignoreEmptyCollection an empty `attributes` list is not handled at all.
        if self.merge || !self.legacy.ignore_empty_collection || !array(v, "attributes").is_empty() {
            self.writer().write_attributes(te.id, &values)?;
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
        self.writer().delete_tracked_entity(te.id)?;
        let mut s = ImportSummary::new(Some(te.uid.clone()));
        s.deleted = 1;
        s.description = Some(format!("Deletion of tracked entity instance {} was successful", te.uid));
        Ok(s)
    }
}
