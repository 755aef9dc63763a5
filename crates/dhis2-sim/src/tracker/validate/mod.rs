//! The checks of the tracker importers, apart from their writes. `new_tracker` validates a
//! flattened `/api/tracker` bundle and reports DHIS2's E-codes; `values` checks attribute and
//! data values for both importers, as typed problems each importer words its own way; the
//! legacy importer (`import/*`) checks the rest inline with DHIS2's legacy conflict texts.

pub mod codes;
pub mod new_tracker;
pub mod values;

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::scope::UserScope;
use crate::{db::OrgUnit, model::Program};

/// Whether the user owns the tracked entity for `program` (open/audited programs and
/// superusers always; else the owner org unit, or the TE's own, must be in capture scope).
pub fn owns(
    conn: &Connection,
    user: &UserScope,
    ous: &HashMap<String, OrgUnit>,
    te_id: i64,
    te_ou: &str,
    program: &Program,
) -> rusqlite::Result<bool> {
    if user.superuser || matches!(program.access_level.as_str(), "OPEN" | "AUDITED") {
        return Ok(true);
    }
    let owner: Option<String> = conn
        .prepare_cached("SELECT org_unit FROM program_owners WHERE te_id = ?1 AND program = ?2")?
        .query_row(params![te_id, program.uid], |r| r.get(0))
        .optional()?;
    let owner = owner.unwrap_or_else(|| te_ou.to_owned());
    Ok(ous.get(&owner).is_some_and(|o| user.can_capture(&o.path)))
}
