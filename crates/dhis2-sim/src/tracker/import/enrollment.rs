//! The legacy importer for enrollments: create (with nested events), update, status, delete.

use super::*;
use crate::tracker::{
    effects::StoredCompletion,
    persist::{EnrollmentChange, NewEnrollment},
};

impl Importer<'_> {
    /// Imports enrollments (each with nested events).
    pub fn import_enrollments(&self, items: &[Value]) -> Result<ImportSummaries, ApiError> {
        self.import_each(items, "enrollments", |item| self.import_enrollment(item, None))
    }

    pub(super) fn import_enrollment(&self, v: &Value, parent: Option<&TeRow>) -> Result<ImportSummary, ApiError> {
        let found = identify(v, "enrollment", "Enrollment", "enrollment", |u| store::enrollment_by_uid(self.conn, u))?;
        let (uid, stored) = match found {
            Ok(found) => found,
            Err(summary) => return Ok(summary),
        };
        let missing = uid.as_deref().unwrap_or("");
        Ok(match resolve(self.strategy, stored, |e| e.deleted) {
            Resolved::Delete(e) => self.delete_enrollment(&e)?,
            Resolved::MissingForDelete => ImportSummary::error(
                uid.clone(),
                format!("Enrollment {missing} cannot be deleted as it is not present in the system"),
            ),
            Resolved::Exists(e) => ImportSummary::error(
                Some(e.uid.clone()),
                format!("Enrollment {} already exists or was deleted earlier", e.uid),
            ),
            Resolved::Update(e) => self.update_enrollment(&e, v)?,
            Resolved::MissingForUpdate => {
                ImportSummary::error(uid.clone(), format!("ID {missing} doesn't point to a valid enrollment."))
            }
            Resolved::Create => self.create_enrollment(uid.unwrap_or_else(uid::generate), v, parent)?,
        })
    }

    pub(super) fn enrollment_dates(&self, v: &Value) -> Result<(Option<String>, Option<String>), String> {
        let parse = |key: &str, what: &str| match text(v, key) {
            None => Ok(None),
            Some(d) => dates::normalise(&d).map(Some).ok_or_else(|| format!("Invalid enollment {what}:  {d}")),
        };
        Ok((parse("enrollmentDate", "date")?, parse("incidentDate", "incident date")?))
    }

    pub(super) fn create_enrollment(
        &self,
        uid: String,
        v: &Value,
        parent: Option<&TeRow>,
    ) -> Result<ImportSummary, ApiError> {
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
        let (completed_date, completed_by) = self.completion_on_create(&status, v);
        let w = self.writer();
        let id = w.insert_enrollment(&NewEnrollment {
            uid: &uid,
            te_id: te.id,
            program: &program.uid,
            org_unit: &ou.uid,
            status: &status,
            enrollment_date: &enrollment_date,
            incident_date: &incident_date,
            completed_date,
            completed_by,
            followup: flag(v, "followup").unwrap_or(false),
            created_at_client: text(v, "createdAtClient").and_then(|d| dates::normalise(&d)),
            last_updated_at_client: text(v, "lastUpdatedAtClient").and_then(|d| dates::normalise(&d)),
            stored_by: &self.stored_by(text(v, "storedBy")),
        })?;
        w.insert_program_owner(te.id, &program.uid, &ou.uid)?;
        self.add_notes(NoteOwner::Enrollment(id), v)?;
        w.touch_tracked_entity(te.id)?;
        let row = store::enrollment_by_uid(self.conn, &uid)?
            .ok_or_else(|| ApiError::Internal("enrollment vanished".into()))?;
        let mut s = ImportSummary::new(Some(uid));
        s.imported = 1;
        s.events = Some(self.nested_events(&row, v)?);
        Ok(s)
    }

    pub(super) fn nested_events(&self, e: &EnrollmentRow, v: &Value) -> Result<ImportSummaries, ApiError> {
        let mut out = ImportSummaries::default();
        for ev in array(v, "events") {
            out.push(self.import_event(ev, Some(e))?);
        }
        Ok(out)
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
        self.writer().update_enrollment(
            e.id,
            &EnrollmentChange {
                org_unit: &ou.uid,
                enrollment_date,
                incident_date,
                followup: flag(v, "followup"),
                last_updated_at_client: text(v, "lastUpdatedAtClient").and_then(|d| dates::normalise(&d)),
            },
        )?;
        self.set_enrollment_status(e, &status, text(v, "completedDate").and_then(|d| dates::normalise(&d)))?;
        self.add_notes(NoteOwner::Enrollment(e.id), v)?;
        self.writer().touch_tracked_entity(e.te_id)?;
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
        let w = self.writer();
        let stored = StoredCompletion { status: &e.status, date: e.completed_date.clone(), by: e.completed_by.clone() };
        let (date, by) = effects::completion(&w, status, Some(stored), completed, None);
        w.set_enrollment_status(e.id, status, date, by)?;
        w.touch_tracked_entity(e.te_id)
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
        let w = self.writer();
        w.delete_enrollment(e.id)?;
        w.touch_tracked_entity(e.te_id)?;
        let mut s = ImportSummary::new(Some(e.uid.clone()));
        s.deleted = 1;
        s.description = Some(format!("Deletion of enrollment {} was successful", e.uid));
        Ok(s)
    }
}
