//! The legacy importer (`dxf2/events`): tracked entities with nested enrollments and events,
//! strategies CREATE / UPDATE / CREATE_AND_UPDATE / DELETE, and the validation messages DHIS2
//! 2.38–2.41 answers with (conflicts `{object, value}` or a `description`).
//!
//! Deviation, on purpose: a client-supplied UID that is not a valid DHIS2 UID is refused with a
//! conflict; DHIS2 silently replaces it with a new one, which would hide a client bug.

mod enrollment;
mod event;
mod tracked_entity;

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::{
    dates, effects,
    persist::{AttributeWrite, DataValueWrite, NoteOwner, Writer},
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

/// A boolean field: JSON booleans and the strings `true` / `false`.
pub fn flag(v: &Value, key: &str) -> Option<bool> {
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

/// What an import strategy does with an object, given its stored row (`None`: not stored).
enum Resolved<R> {
    /// Create it (its UID is not stored).
    Create,
    /// Update the stored row.
    Update(R),
    /// Delete the stored row.
    Delete(R),
    /// CREATE of a stored UID, or CREATE_AND_UPDATE of a deleted one.
    Exists(R),
    /// UPDATE of a UID not stored, or deleted.
    MissingForUpdate,
    /// DELETE of a UID not stored, or deleted.
    MissingForDelete,
}

/// Resolves `strategy` against the stored row (`deleted` tells a soft-deleted one).
fn resolve<R>(strategy: Strategy, stored: Option<R>, deleted: impl Fn(&R) -> bool) -> Resolved<R> {
    match (strategy, stored) {
        (Strategy::Delete, Some(row)) if !deleted(&row) => Resolved::Delete(row),
        (Strategy::Delete, _) => Resolved::MissingForDelete,
        (Strategy::Create, Some(row)) => Resolved::Exists(row),
        (Strategy::CreateAndUpdate, Some(row)) if deleted(&row) => Resolved::Exists(row),
        (Strategy::Update | Strategy::CreateAndUpdate, Some(row)) if !deleted(&row) => Resolved::Update(row),
        (Strategy::Update, _) => Resolved::MissingForUpdate,
        (_, _) => Resolved::Create,
    }
}

/// An object's client UID (when it has one) and its stored row (when there is one).
type Identified<R> = (Option<String>, Option<R>);

/// An object's client UID and its stored row (`load`); `Err(summary)` when the object is not a
/// JSON object (`what` names it) or its UID is malformed.
fn identify<R>(
    v: &Value,
    key: &str,
    object: &str,
    what: &str,
    load: impl FnOnce(&str) -> rusqlite::Result<Option<R>>,
) -> Result<Result<Identified<R>, ImportSummary>, ApiError> {
    if !v.is_object() {
        return Ok(Err(ImportSummary::error(None, format!("Invalid {what}: not a JSON object"))));
    }
    let uid = match client_uid(v, key, object) {
        Ok(u) => u,
        Err(s) => return Ok(Err(*s)),
    };
    let stored = uid.as_deref().map(load).transpose()?.flatten();
    Ok(Ok((uid, stored)))
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
        effects::stored_by(&self.writer(), given)
    }

    /// The completion stamp of a row created with `status` (the payload's date and user, or
    /// now and this user).
    fn completion_on_create(&self, status: &str, v: &Value) -> (Option<String>, Option<String>) {
        let date = text(v, "completedDate").and_then(|d| dates::normalise(&d));
        effects::completion(&self.writer(), status, None, date, text(v, "completedBy"))
    }

    fn add_notes(&self, owner: NoteOwner, v: &Value) -> rusqlite::Result<()> {
        effects::add_notes(&self.writer(), owner, v)
    }

    /// The writer of this run (its connection, time and user).
    fn writer(&self) -> Writer<'_> {
        Writer { conn: self.conn, now: &self.now, username: &self.user.username }
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
}
