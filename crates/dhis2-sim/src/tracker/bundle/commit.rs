//! Writes the objects of a validated bundle (`POST /api/tracker`): each object straight to
//! `persist`, with DHIS2's defaults from `effects`, and nothing checked again (the validation
//! before it, `validate::new_tracker`, refused every object this could not write). New tracker
//! semantics: an update keeps the attributes and data values the payload omits and deletes the
//! ones sent `null` (or empty).

use serde_json::Value;

use super::{Obj, Op, TrackerType};
use crate::{
    db::OrgUnit,
    error::ApiError,
    tracker::{
        dates,
        effects::{self, StoredCompletion},
        import::{flag, text},
        persist::{
            AttributeWrite, DataValueWrite, EnrollmentChange, EventChange, NewEnrollment, NewEvent, NewTrackedEntity,
            NoteOwner, TrackedEntityChange, Writer,
        },
        store,
    },
};

/// A date field of the payload, normalised (the shape check refused one that does not parse).
fn date(v: &Value, key: &str) -> Option<String> {
    text(v, key).and_then(|d| dates::normalise(&d))
}

fn list<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn vanished(what: &str, uid: &str) -> ApiError {
    ApiError::Internal(format!("{what} {uid} vanished between validation and commit"))
}

/// What one commit needs: the writer and the org units.
pub(crate) struct Commit<'a> {
    /// The writer (the import's transaction, time and user).
    pub w: Writer<'a>,
    /// Org units by UID.
    pub ous: &'a std::collections::HashMap<String, OrgUnit>,
}

impl Commit<'_> {
    /// Writes one valid object.
    pub(crate) fn object(&self, o: &Obj) -> Result<(), ApiError> {
        match o.kind {
            TrackerType::TrackedEntity => self.tracked_entity(o),
            TrackerType::Enrollment => self.enrollment(o),
            TrackerType::Event => self.event(o),
        }
    }

    fn org_unit(&self, uid: &str) -> Result<&OrgUnit, ApiError> {
        self.ous.get(uid).ok_or_else(|| vanished("org unit", uid))
    }

    /// The attribute values a payload sets, and the attributes it clears (`null` or empty).
    fn attributes(&self, v: &Value) -> (Vec<AttributeWrite>, Vec<String>) {
        let (mut set, mut cleared) = (Vec::new(), Vec::new());
        for a in list(v, "attributes") {
            let Some(attribute) = text(a, "attribute") else { continue };
            match text(a, "value") {
                Some(value) => set.push(AttributeWrite {
                    attribute,
                    value,
                    stored_by: effects::stored_by(&self.w, text(a, "storedBy")),
                }),
                None => cleared.push(attribute),
            }
        }
        (set, cleared)
    }

    fn write_attributes(&self, te_id: i64, v: &Value) -> Result<(), ApiError> {
        let (set, cleared) = self.attributes(v);
        self.w.write_attributes(te_id, &set)?;
        self.w.delete_attributes(te_id, cleared.iter().map(String::as_str))?;
        Ok(())
    }

    fn tracked_entity(&self, o: &Obj) -> Result<(), ApiError> {
        let v = &o.v;
        let stored = store::te_by_uid(self.w.conn, &o.uid)?;
        match (o.op, stored) {
            (Op::Create, _) => {
                let ou = self.org_unit(&text(v, "orgUnit").unwrap_or_default())?;
                let te_id = self.w.insert_tracked_entity(&NewTrackedEntity {
                    uid: &o.uid,
                    tracked_entity_type: &text(v, "trackedEntityType").unwrap_or_default(),
                    org_unit: ou,
                    created_at_client: date(v, "createdAtClient"),
                    last_updated_at_client: date(v, "updatedAtClient"),
                    stored_by: &effects::stored_by(&self.w, text(v, "storedBy")),
                    inactive: flag(v, "inactive").unwrap_or(false),
                })?;
                self.w.write_attributes(te_id, &self.attributes(v).0)?;
            }
            (Op::Update, Some(te)) => {
                let ou = self.org_unit(&text(v, "orgUnit").unwrap_or(te.org_unit))?;
                self.w.update_tracked_entity(
                    te.id,
                    &TrackedEntityChange {
                        org_unit: ou,
                        last_updated_at_client: date(v, "updatedAtClient"),
                        inactive: flag(v, "inactive"),
                        stored_by: text(v, "storedBy"),
                        tracked_entity_type: text(v, "trackedEntityType"),
                    },
                )?;
                self.write_attributes(te.id, v)?;
            }
            (Op::Delete, Some(te)) => self.w.delete_tracked_entity(te.id)?,
            (_, None) => return Err(vanished("tracked entity", &o.uid)),
        }
        Ok(())
    }

    fn enrollment(&self, o: &Obj) -> Result<(), ApiError> {
        let v = &o.v;
        let stored = store::enrollment_by_uid(self.w.conn, &o.uid)?;
        if o.op == Op::Delete {
            let e = stored.ok_or_else(|| vanished("enrollment", &o.uid))?;
            self.w.delete_enrollment(e.id)?;
            self.w.touch_tracked_entity(e.te_id)?;
            return Ok(());
        }
        // The program's attributes an enrollment carries are its tracked entity's.
        let te_uid = text(v, "trackedEntity").or_else(|| stored.as_ref().map(|e| e.te_uid.clone()));
        let te = te_uid.as_deref().map(|t| store::te_by_uid(self.w.conn, t)).transpose()?.flatten();
        let te =
            te.filter(|t| !t.deleted).ok_or_else(|| vanished("tracked entity", te_uid.as_deref().unwrap_or("")))?;
        if !list(v, "attributes").is_empty() {
            self.write_attributes(te.id, v)?;
            self.w.touch_tracked_entity(te.id)?;
        }
        // The new tracker's `status` defaults to ACTIVE, for an update too (the DTO's default).
        let status = text(v, "status").unwrap_or_else(|| "ACTIVE".into()).to_ascii_uppercase();
        let id = match stored {
            None => {
                let program = text(v, "program").unwrap_or_default();
                let ou = text(v, "orgUnit").unwrap_or_default();
                let enrollment_date = date(v, "enrolledAt").unwrap_or_else(|| self.w.now.to_owned());
                let incident_date = date(v, "occurredAt").unwrap_or_else(|| enrollment_date.clone());
                let (completed_date, completed_by) =
                    effects::completion(&self.w, &status, None, date(v, "completedAt"), text(v, "completedBy"));
                let id = self.w.insert_enrollment(&NewEnrollment {
                    uid: &o.uid,
                    te_id: te.id,
                    program: &program,
                    org_unit: &ou,
                    status: &status,
                    enrollment_date: &enrollment_date,
                    incident_date: &incident_date,
                    completed_date,
                    completed_by,
                    followup: flag(v, "followUp").unwrap_or(false),
                    created_at_client: date(v, "createdAtClient"),
                    last_updated_at_client: date(v, "updatedAtClient"),
                    stored_by: &effects::stored_by(&self.w, text(v, "storedBy")),
                })?;
                self.w.insert_program_owner(te.id, &program, &ou)?;
                id
            }
            Some(e) => {
                self.w.update_enrollment(
                    e.id,
                    &EnrollmentChange {
                        org_unit: &text(v, "orgUnit").unwrap_or_else(|| e.org_unit.clone()),
                        enrollment_date: date(v, "enrolledAt"),
                        incident_date: date(v, "occurredAt"),
                        followup: flag(v, "followUp"),
                        last_updated_at_client: date(v, "updatedAtClient"),
                    },
                )?;
                let stored =
                    StoredCompletion { status: &e.status, date: e.completed_date.clone(), by: e.completed_by.clone() };
                let (date, by) = effects::completion(&self.w, &status, Some(stored), date(v, "completedAt"), None);
                self.w.set_enrollment_status(e.id, &status, date, by)?;
                e.id
            }
        };
        effects::add_notes(&self.w, NoteOwner::Enrollment(id), v)?;
        self.w.touch_tracked_entity(te.id)?;
        Ok(())
    }

    /// The data values a payload writes (`None` deletes).
    fn data_values(&self, v: &Value) -> Vec<DataValueWrite> {
        list(v, "dataValues")
            .iter()
            .filter_map(|dv| {
                Some(DataValueWrite {
                    data_element: text(dv, "dataElement")?,
                    value: text(dv, "value"),
                    provided_elsewhere: flag(dv, "providedElsewhere").unwrap_or(false),
                    stored_by: effects::stored_by(&self.w, text(dv, "storedBy")),
                })
            })
            .collect()
    }

    fn event(&self, o: &Obj) -> Result<(), ApiError> {
        let v = &o.v;
        let stored = store::event_by_uid(self.w.conn, &o.uid)?;
        let (id, enrollment_id, te_id) = match (o.op, stored) {
            (Op::Delete, Some(ev)) => {
                self.w.delete_event(ev.id)?;
                if let Some(t) = ev.te_id {
                    self.w.touch_tracked_entity(t)?;
                }
                return Ok(());
            }
            (Op::Create, _) => {
                let enrollment_uid = text(v, "enrollment").unwrap_or_default();
                let enrollment = store::enrollment_by_uid(self.w.conn, &enrollment_uid)?
                    .filter(|e| !e.deleted)
                    .ok_or_else(|| vanished("enrollment", &enrollment_uid))?;
                let stage = text(v, "programStage").unwrap_or_default();
                let program = text(v, "program").unwrap_or_else(|| enrollment.program.clone());
                let ou = self.org_unit(&text(v, "orgUnit").unwrap_or_default())?;
                let status = text(v, "status").unwrap_or_else(|| "ACTIVE".into()).to_ascii_uppercase();
                let event_date = date(v, "occurredAt");
                let due_date =
                    date(v, "scheduledAt").or_else(|| event_date.clone()).or_else(|| Some(self.w.now.to_owned()));
                let (completed_date, completed_by) =
                    effects::completion(&self.w, &status, None, date(v, "completedAt"), text(v, "completedBy"));
                let id = self.w.insert_event(&NewEvent {
                    uid: &o.uid,
                    enrollment_id: enrollment.id,
                    te_id: enrollment.te_id,
                    program: &program,
                    program_stage: &stage,
                    org_unit: ou,
                    status: &status,
                    event_date,
                    due_date,
                    completed_date,
                    completed_by,
                    created_at_client: date(v, "createdAtClient"),
                    last_updated_at_client: date(v, "updatedAtClient"),
                    stored_by: &effects::stored_by(&self.w, text(v, "storedBy")),
                })?;
                (id, Some(enrollment.id), Some(enrollment.te_id))
            }
            (Op::Update, Some(ev)) => {
                let ou = text(v, "orgUnit").map(|o| self.org_unit(&o)).transpose()?;
                let status = text(v, "status").unwrap_or_else(|| "ACTIVE".into()).to_ascii_uppercase();
                let stored = StoredCompletion {
                    status: &ev.status,
                    date: ev.completed_date.clone(),
                    by: ev.completed_by.clone(),
                };
                let (completed_date, completed_by) =
                    effects::completion(&self.w, &status, Some(stored), date(v, "completedAt"), text(v, "completedBy"));
                self.w.update_event(
                    ev.id,
                    &EventChange {
                        status: &status,
                        event_date: date(v, "occurredAt"),
                        due_date: date(v, "scheduledAt"),
                        completed_date,
                        completed_by,
                        org_unit: ou,
                        stored_by: text(v, "storedBy"),
                        last_updated_at_client: date(v, "updatedAtClient"),
                    },
                )?;
                (ev.id, ev.enrollment_id, ev.te_id)
            }
            (_, None) => return Err(vanished("event", &o.uid)),
        };
        self.w.write_data_values(id, &self.data_values(v), false)?;
        effects::add_notes(&self.w, NoteOwner::Event(id), v)?;
        if let Some(e) = enrollment_id {
            self.w.touch_enrollment(e)?;
        }
        if let Some(t) = te_id {
            self.w.touch_tracked_entity(t)?;
        }
        Ok(())
    }
}
