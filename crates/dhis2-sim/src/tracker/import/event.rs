//! The legacy importer for events: create, update (whole or one value), date, notes, delete.

use super::*;
use crate::tracker::validate::{self, values};
use crate::tracker::{
    effects::StoredCompletion,
    persist::{EventChange, NewEvent},
};

impl Importer<'_> {
    /// Imports events.
    pub fn import_events(&self, items: &[Value]) -> Result<ImportSummaries, ApiError> {
        self.import_each(items, "events", |item| self.import_event(item, None))
    }

    pub(super) fn import_event(&self, v: &Value, parent: Option<&EnrollmentRow>) -> Result<ImportSummary, ApiError> {
        let found = identify(v, "event", "Event", "event", |u| store::event_by_uid(self.conn, u))?;
        let (uid, stored) = match found {
            Ok(found) => found,
            Err(summary) => return Ok(summary),
        };
        Ok(match resolve(self.strategy, stored, |ev| ev.deleted) {
            Resolved::Delete(ev) => self.delete_event(&ev)?,
            Resolved::MissingForDelete => {
                let mut s = ImportSummary::new(uid.clone());
                s.description = Some(format!(
                    "Event {} cannot be deleted as it is not present in the system",
                    uid.as_deref().unwrap_or("")
                ));
                s.ignored = 1;
                s
            }
            Resolved::Exists(ev) => ImportSummary::error(
                Some(ev.uid.clone()),
                format!("Event {} already exists or was deleted earlier", ev.uid),
            ),
            // Only a bulk `POST /api/events` honours mergeDataValues: events nested in a TEI or
            // enrollment, and `PUT /api/events/{ev}`, go through AbstractEventService.updateEvent,
            // which sets it to false (dhis2-core 2.40 AbstractEventService:726).
            Resolved::Update(ev) => {
                let mode = if parent.is_none() && self.legacy.merge_data_values {
                    EventUpdate::MergeValues
                } else {
                    EventUpdate::Whole
                };
                self.update_event_as(&ev, v, mode)?
            }
            Resolved::MissingForUpdate => ImportSummary::conflicts(
                uid.clone(),
                vec![("Invalid Event ID".into(), uid.clone().unwrap_or_default())],
            ),
            Resolved::Create => self.create_event(uid.unwrap_or_else(uid::generate), v, parent)?,
        })
    }

    /// Validates the data values of an event payload against its stage; returns conflicts and
    /// the values to write (`None` deletes).
    pub(super) fn check_data_values(
        &self,
        stage: &crate::model::ProgramStage,
        v: &Value,
    ) -> (Conflicts, Vec<DataValueWrite>) {
        let mut conflicts = Vec::new();
        let mut values = Vec::new();
        for dv in array(v, "dataValues") {
            match values::data_value(self.md, stage, dv) {
                Err(problem) => conflicts.push(problem.legacy_conflict()),
                Ok((data_element, value)) => values.push(DataValueWrite {
                    data_element,
                    value,
                    provided_elsewhere: flag(dv, "providedElsewhere").unwrap_or(false),
                    stored_by: self.stored_by(text(dv, "storedBy")),
                }),
            }
        }
        (conflicts, values)
    }

    pub(super) fn create_event(
        &self,
        uid: String,
        v: &Value,
        parent: Option<&EnrollmentRow>,
    ) -> Result<ImportSummary, ApiError> {
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
        if !validate::owns(self.conn, self.user, self.ous, te.id, &te.org_unit, program)? {
            conflicts.push((uid.clone(), "OWNERSHIP_ACCESS_DENIED".into()));
        }
        let (dv_conflicts, values) = self.check_data_values(stage, v);
        conflicts.extend(dv_conflicts);
        if !conflicts.is_empty() {
            return Ok(ImportSummary::conflicts(Some(uid), conflicts));
        }
        let (completed_date, completed_by) = self.completion_on_create(&status, v);
        let w = self.writer();
        let id = w.insert_event(&NewEvent {
            uid: &uid,
            enrollment_id: enrollment.id,
            te_id: te.id,
            program: &program.uid,
            program_stage: &stage.uid,
            org_unit: ou,
            status: &status,
            event_date,
            due_date,
            completed_date,
            completed_by,
            created_at_client: text(v, "createdAtClient").and_then(|d| dates::normalise(&d)),
            last_updated_at_client: text(v, "lastUpdatedAtClient").and_then(|d| dates::normalise(&d)),
            stored_by: &self.stored_by(text(v, "storedBy")),
        })?;
        w.write_data_values(id, &values, false)?;
        self.add_notes(NoteOwner::Event(id), v)?;
        w.touch_enrollment(enrollment.id)?;
        w.touch_tracked_entity(te.id)?;
        let mut s = ImportSummary::new(Some(uid));
        s.imported = 1;
        Ok(s)
    }

    /// Updates an event: the whole event (`single_value = false`: omitted data values are
    /// deleted) or only the data values in the payload (`PUT /api/events/{ev}/{de}`).
    pub fn update_event(&self, ev: &EventRow, v: &Value, single_value: bool) -> Result<ImportSummary, ApiError> {
        self.update_event_as(ev, v, if single_value { EventUpdate::SingleValue } else { EventUpdate::Whole })
    }

    pub(super) fn update_event_as(
        &self,
        ev: &EventRow,
        v: &Value,
        mode: EventUpdate,
    ) -> Result<ImportSummary, ApiError> {
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
        let stored =
            StoredCompletion { status: &ev.status, date: ev.completed_date.clone(), by: ev.completed_by.clone() };
        let (completed_date, completed_by) = effects::completion(
            &self.writer(),
            &status,
            Some(stored),
            text(v, "completedDate").and_then(|d| dates::normalise(&d)),
            text(v, "completedBy"),
        );
        let stored_by = if single_value { None } else { text(v, "storedBy") };
        let w = self.writer();
        w.update_event(
            ev.id,
            &EventChange {
                status: &status,
                event_date,
                due_date,
                completed_date,
                completed_by,
                org_unit: ou,
                stored_by,
                last_updated_at_client: text(v, "lastUpdatedAtClient").and_then(|d| dates::normalise(&d)),
            },
        )?;
        // dhis2-core 2.40 EventDataValueAggregator:72-101: an update's data values are the ones
        // sent with a value, plus (mergeDataValues only) the stored ones the payload does not
        // name; one sent empty is dropped, i.e. deleted, in both modes.
        w.write_data_values(ev.id, &values, mode == EventUpdate::Whole && !self.merge)?;
        if !single_value {
            self.add_notes(NoteOwner::Event(ev.id), v)?;
        }
        if let Some(e) = ev.enrollment_id {
            w.touch_enrollment(e)?;
        }
        if let Some(t) = ev.te_id {
            w.touch_tracked_entity(t)?;
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
        let w = self.writer();
        w.set_event_date(ev.id, &date)?;
        if let Some(t) = ev.te_id {
            w.touch_tracked_entity(t)?;
        }
        Ok(None)
    }

    /// Adds the notes of a payload to an event (`POST /api/events/{ev}/note`).
    pub fn add_event_notes(&self, ev: &EventRow, v: &Value) -> Result<(), ApiError> {
        self.add_notes(NoteOwner::Event(ev.id), v)?;
        let w = self.writer();
        w.touch_event(ev.id)?;
        if let Some(t) = ev.te_id {
            w.touch_tracked_entity(t)?;
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
        let w = self.writer();
        w.delete_event(ev.id)?;
        if let Some(t) = ev.te_id {
            w.touch_tracked_entity(t)?;
        }
        let mut s = ImportSummary::new(Some(ev.uid.clone()));
        s.deleted = 1;
        s.description = Some(format!("Deletion of event {} was successful", ev.uid));
        Ok(s)
    }
}
