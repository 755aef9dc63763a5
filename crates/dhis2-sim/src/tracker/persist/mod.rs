//! Writes of the tracker tables, and nothing else: every `INSERT`, `UPDATE` and `DELETE` of
//! tracked entities, enrollments, events, attribute and data values, notes and program owners.
//! The importers decide what to write (their checks and DHIS2's defaults); these functions take
//! the decided values and write them, stamping `last_updated` and `last_updated_by`.

mod enrollment;
mod event;
mod tracked_entity;

pub use enrollment::{EnrollmentChange, NewEnrollment};
pub use event::{DataValueWrite, EventChange, NewEvent};
pub use tracked_entity::{AttributeWrite, NewTrackedEntity, TrackedEntityChange};

use rusqlite::{params, Connection};

/// Who writes and when: the connection (inside the caller's transaction) and the stamp every
/// written row's audit columns take.
#[derive(Clone, Copy)]
pub struct Writer<'a> {
    /// The connection (a transaction).
    pub conn: &'a Connection,
    /// The time of this import.
    pub now: &'a str,
    /// The user who writes.
    pub username: &'a str,
}

/// A note to add to an enrollment or an event.
pub struct NewNote<'a> {
    /// Its UID.
    pub uid: &'a str,
    /// The text.
    pub value: &'a str,
    /// Who wrote it.
    pub stored_by: &'a str,
    /// When it was written.
    pub stored_date: &'a str,
}

/// What a note belongs to.
#[derive(Clone, Copy)]
pub enum NoteOwner {
    /// An enrollment (row id).
    Enrollment(i64),
    /// An event (row id).
    Event(i64),
}

impl Writer<'_> {
    /// Marks a tracked entity as updated now, by this user.
    pub fn touch_tracked_entity(&self, te_id: i64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("UPDATE tracked_entities SET last_updated = ?2, last_updated_by = ?3 WHERE id = ?1")?
            .execute(params![te_id, self.now, self.username])?;
        Ok(())
    }

    /// Marks an enrollment as updated now, by this user.
    pub fn touch_enrollment(&self, id: i64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("UPDATE enrollments SET last_updated = ?2, last_updated_by = ?3 WHERE id = ?1")?
            .execute(params![id, self.now, self.username])?;
        Ok(())
    }

    /// Marks an event as updated now, by this user.
    pub fn touch_event(&self, id: i64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("UPDATE events SET last_updated = ?2, last_updated_by = ?3 WHERE id = ?1")?
            .execute(params![id, self.now, self.username])?;
        Ok(())
    }

    /// Inserts a note.
    pub fn insert_note(&self, owner: NoteOwner, note: &NewNote<'_>) -> rusqlite::Result<()> {
        let (enrollment_id, event_id) = match owner {
            NoteOwner::Enrollment(id) => (Some(id), None),
            NoteOwner::Event(id) => (None, Some(id)),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO notes (uid, enrollment_id, event_id, value, stored_by, stored_date) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![note.uid, enrollment_id, event_id, note.value, note.stored_by, note.stored_date])?;
        Ok(())
    }
}
