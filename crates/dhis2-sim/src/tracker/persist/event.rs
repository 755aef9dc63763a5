//! Writes of events and their data values.

use rusqlite::params;

use super::Writer;
use crate::db::OrgUnit;

/// An event to insert.
pub struct NewEvent<'a> {
    /// Its UID.
    pub uid: &'a str,
    /// The enrollment's row id.
    pub enrollment_id: i64,
    /// The tracked entity's row id.
    pub te_id: i64,
    /// The program UID.
    pub program: &'a str,
    /// The program stage UID.
    pub program_stage: &'a str,
    /// The org unit.
    pub org_unit: &'a OrgUnit,
    /// The status.
    pub status: &'a str,
    /// The event date.
    pub event_date: Option<String>,
    /// The due date.
    pub due_date: Option<String>,
    /// When it was completed (COMPLETED only).
    pub completed_date: Option<String>,
    /// Who completed it (COMPLETED only).
    pub completed_by: Option<String>,
    /// The client's creation time.
    pub created_at_client: Option<String>,
    /// The client's update time.
    pub last_updated_at_client: Option<String>,
    /// Who stored it.
    pub stored_by: &'a str,
}

/// The columns an update sets; `None` keeps the stored value (the completion columns are
/// always set).
pub struct EventChange<'a> {
    /// The status.
    pub status: &'a str,
    /// The event date.
    pub event_date: Option<String>,
    /// The due date.
    pub due_date: Option<String>,
    /// When it was completed.
    pub completed_date: Option<String>,
    /// Who completed it.
    pub completed_by: Option<String>,
    /// The org unit.
    pub org_unit: Option<&'a OrgUnit>,
    /// Who stored it.
    pub stored_by: Option<String>,
    /// The client's update time.
    pub last_updated_at_client: Option<String>,
}

/// A data value to write: `value: None` deletes it.
pub struct DataValueWrite {
    /// The data element UID.
    pub data_element: String,
    /// The value; `None` deletes.
    pub value: Option<String>,
    /// Provided elsewhere.
    pub provided_elsewhere: bool,
    /// Who stored it.
    pub stored_by: String,
}

impl Writer<'_> {
    /// Inserts an event; returns its row id.
    pub fn insert_event(&self, ev: &NewEvent<'_>) -> rusqlite::Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO events (uid, enrollment_id, te_id, program, program_stage, org_unit, ou_path, status, \
                 event_date, due_date, completed_date, completed_by, created, last_updated, created_at_client, \
                 last_updated_at_client, created_by, last_updated_by, stored_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15, ?16, ?16, ?17)",
            )?
            .execute(params![
                ev.uid,
                ev.enrollment_id,
                ev.te_id,
                ev.program,
                ev.program_stage,
                ev.org_unit.uid,
                ev.org_unit.path,
                ev.status,
                ev.event_date,
                ev.due_date,
                ev.completed_date,
                ev.completed_by,
                self.now,
                ev.created_at_client,
                ev.last_updated_at_client,
                self.username,
                ev.stored_by,
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Updates an event's own columns.
    pub fn update_event(&self, id: i64, change: &EventChange<'_>) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE events SET status = ?2, event_date = COALESCE(?3, event_date), due_date = COALESCE(?4, due_date), \
                 completed_date = ?5, completed_by = ?6, org_unit = COALESCE(?7, org_unit), ou_path = COALESCE(?8, ou_path), \
                 last_updated = ?9, last_updated_by = ?10, stored_by = COALESCE(?11, stored_by), \
                 last_updated_at_client = COALESCE(?12, last_updated_at_client) WHERE id = ?1",
            )?
            .execute(params![
                id,
                change.status,
                change.event_date,
                change.due_date,
                change.completed_date,
                change.completed_by,
                change.org_unit.map(|o| o.uid.as_str()),
                change.org_unit.map(|o| o.path.as_str()),
                self.now,
                self.username,
                change.stored_by,
                change.last_updated_at_client,
            ])?;
        Ok(())
    }

    /// Sets only an event's date.
    pub fn set_event_date(&self, id: i64, date: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE events SET event_date = ?2, last_updated = ?3, last_updated_by = ?4 WHERE id = ?1",
            params![id, date, self.now, self.username],
        )?;
        Ok(())
    }

    /// Writes data values; with `replace`, the stored values this list does not set are deleted.
    pub fn write_data_values(&self, event_id: i64, values: &[DataValueWrite], replace: bool) -> rusqlite::Result<()> {
        let mut del = self.conn.prepare_cached("DELETE FROM data_values WHERE event_id = ?1 AND data_element = ?2")?;
        if replace {
            let keep: Vec<&str> =
                values.iter().filter(|v| v.value.is_some()).map(|v| v.data_element.as_str()).collect();
            let existing: Vec<String> = self
                .conn
                .prepare_cached("SELECT data_element FROM data_values WHERE event_id = ?1")?
                .query_map([event_id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
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
        for dv in values {
            match &dv.value {
                Some(value) => {
                    up.execute(params![
                        event_id,
                        dv.data_element,
                        value,
                        dv.provided_elsewhere,
                        self.now,
                        dv.stored_by
                    ])?;
                }
                None => {
                    del.execute(params![event_id, dv.data_element])?;
                }
            }
        }
        Ok(())
    }

    /// Deletes an event (soft).
    pub fn delete_event(&self, id: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE events SET deleted = 1, last_updated = ?2, last_updated_by = ?3 WHERE id = ?1",
            params![id, self.now, self.username],
        )?;
        Ok(())
    }
}
