//! Writes of enrollments and program ownership.

use rusqlite::params;

use super::Writer;

/// An enrollment to insert.
pub struct NewEnrollment<'a> {
    /// Its UID.
    pub uid: &'a str,
    /// The tracked entity's row id.
    pub te_id: i64,
    /// The program UID.
    pub program: &'a str,
    /// The org unit UID.
    pub org_unit: &'a str,
    /// ACTIVE, COMPLETED or CANCELLED.
    pub status: &'a str,
    /// The enrollment date.
    pub enrollment_date: &'a str,
    /// The incident date.
    pub incident_date: &'a str,
    /// When it was completed (COMPLETED only).
    pub completed_date: Option<String>,
    /// Who completed it (COMPLETED only).
    pub completed_by: Option<String>,
    /// Follow-up flag.
    pub followup: bool,
    /// The client's creation time.
    pub created_at_client: Option<String>,
    /// The client's update time.
    pub last_updated_at_client: Option<String>,
    /// Who stored it.
    pub stored_by: &'a str,
}

/// The columns an update sets; `None` keeps the stored value.
pub struct EnrollmentChange<'a> {
    /// The org unit UID (always set: the stored one when the payload names none).
    pub org_unit: &'a str,
    /// The enrollment date.
    pub enrollment_date: Option<String>,
    /// The incident date.
    pub incident_date: Option<String>,
    /// Follow-up flag.
    pub followup: Option<bool>,
    /// The client's update time.
    pub last_updated_at_client: Option<String>,
}

impl Writer<'_> {
    /// Inserts an enrollment; returns its row id.
    pub fn insert_enrollment(&self, e: &NewEnrollment<'_>) -> rusqlite::Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO enrollments (uid, te_id, program, org_unit, status, enrollment_date, incident_date, \
                 completed_date, completed_by, followup, created, last_updated, created_at_client, \
                 last_updated_at_client, created_by, last_updated_by, stored_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14, ?14, ?15)",
            )?
            .execute(params![
                e.uid,
                e.te_id,
                e.program,
                e.org_unit,
                e.status,
                e.enrollment_date,
                e.incident_date,
                e.completed_date,
                e.completed_by,
                e.followup,
                self.now,
                e.created_at_client,
                e.last_updated_at_client,
                self.username,
                e.stored_by,
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records the owner org unit of a tracked entity in a program, unless one is recorded.
    pub fn insert_program_owner(&self, te_id: i64, program: &str, org_unit: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO program_owners (te_id, program, org_unit) VALUES (?1, ?2, ?3)")?
            .execute(params![te_id, program, org_unit])?;
        Ok(())
    }

    /// Updates an enrollment's own columns (not its status).
    pub fn update_enrollment(&self, id: i64, change: &EnrollmentChange<'_>) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE enrollments SET org_unit = ?2, enrollment_date = COALESCE(?3, enrollment_date), \
                 incident_date = COALESCE(?4, incident_date), followup = COALESCE(?5, followup), \
                 last_updated = ?6, last_updated_by = ?7, last_updated_at_client = COALESCE(?8, last_updated_at_client) \
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                change.org_unit,
                change.enrollment_date,
                change.incident_date,
                change.followup,
                self.now,
                self.username,
                change.last_updated_at_client,
            ])?;
        Ok(())
    }

    /// Sets an enrollment's status with its completion date and user (`None` for other statuses).
    pub fn set_enrollment_status(
        &self,
        id: i64,
        status: &str,
        completed_date: Option<String>,
        completed_by: Option<String>,
    ) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE enrollments SET status = ?2, completed_date = ?3, completed_by = ?4, last_updated = ?5, \
                 last_updated_by = ?6 WHERE id = ?1",
            )?
            .execute(params![id, status, completed_date, completed_by, self.now, self.username])?;
        Ok(())
    }

    /// Deletes an enrollment (soft) with its events.
    pub fn delete_enrollment(&self, id: i64) -> rusqlite::Result<()> {
        let stamp = params![id, self.now, self.username];
        self.conn.execute(
            "UPDATE enrollments SET deleted = 1, last_updated = ?2, last_updated_by = ?3 WHERE id = ?1",
            stamp,
        )?;
        self.conn.execute(
            "UPDATE events SET deleted = 1, last_updated = ?2, last_updated_by = ?3 WHERE enrollment_id = ?1",
            stamp,
        )?;
        Ok(())
    }
}
