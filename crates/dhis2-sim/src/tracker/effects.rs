//! DHIS2's defaults when a tracker object is written, the same in both importers: who stored a
//! row, the completion stamp, the notes of a payload (a replayed note is not added twice).
//! The checks come before (legacy `import/*`, new tracker `validate/*`); the SQL after
//! (`persist`).

use serde_json::Value;

use super::{
    dates,
    import::text,
    persist::{NewNote, NoteOwner, Writer},
    store,
};
use crate::uid;

/// `storedBy`: the payload's when it fits the column (255), else the user's name.
pub fn stored_by(w: &Writer<'_>, given: Option<String>) -> String {
    given.filter(|s| s.len() <= 255).unwrap_or_else(|| w.username.to_owned())
}

/// The stored completion of a row being updated: its status, date and user.
pub struct StoredCompletion<'r> {
    /// The stored status.
    pub status: &'r str,
    /// When it was completed.
    pub date: Option<String>,
    /// Who completed it.
    pub by: Option<String>,
}

/// The completion date and user a row takes for `status`: a row completed before keeps its
/// stamp; a row completed now takes the given date (or now) and user (or this user); any other
/// status clears them.
pub fn completion(
    w: &Writer<'_>,
    status: &str,
    stored: Option<StoredCompletion<'_>>,
    given_date: Option<String>,
    given_by: Option<String>,
) -> (Option<String>, Option<String>) {
    match (status, stored) {
        ("COMPLETED", Some(s)) if s.status == "COMPLETED" => (s.date, s.by),
        ("COMPLETED", _) => {
            (given_date.or_else(|| Some(w.now.to_owned())), Some(given_by.unwrap_or_else(|| w.username.to_owned())))
        }
        _ => (None, None),
    }
}

/// Adds the notes of a payload: one whose UID is stored is skipped (replays); an invalid or
/// missing UID gets a new one; `storedDate` is kept (dhis2-core 2.40
/// AbstractEventService:914-930, AbstractEnrollmentService:1499-1520).
pub fn add_notes(w: &Writer<'_>, owner: NoteOwner, v: &Value) -> rusqlite::Result<()> {
    let notes = v.get("notes").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    for n in notes {
        let Some(value) = text(n, "value") else { continue };
        let note_uid = text(n, "note").filter(|u| uid::is_valid(u)).unwrap_or_else(uid::generate);
        if store::note_exists(w.conn, &note_uid)? {
            continue;
        }
        let stored_date = text(n, "storedDate").and_then(|d| dates::normalise(&d)).unwrap_or_else(|| w.now.to_owned());
        let note = NewNote {
            uid: &note_uid,
            value: &value,
            stored_by: &stored_by(w, text(n, "storedBy")),
            stored_date: &stored_date,
        };
        w.insert_note(owner, &note)?;
    }
    Ok(())
}
