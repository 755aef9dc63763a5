//! Writes of tracked entities and their attribute values.

use rusqlite::params;

use super::Writer;
use crate::db::OrgUnit;

/// A tracked entity to insert.
pub struct NewTrackedEntity<'a> {
    /// Its UID.
    pub uid: &'a str,
    /// Its type.
    pub tracked_entity_type: &'a str,
    /// Its registration org unit.
    pub org_unit: &'a OrgUnit,
    /// The client's creation time.
    pub created_at_client: Option<String>,
    /// The client's update time.
    pub last_updated_at_client: Option<String>,
    /// Who stored it.
    pub stored_by: &'a str,
    /// Inactive.
    pub inactive: bool,
}

/// The columns an update sets; `None` keeps the stored value.
pub struct TrackedEntityChange<'a> {
    /// The registration org unit (always set: the stored one when the payload names none).
    pub org_unit: &'a OrgUnit,
    /// The client's update time.
    pub last_updated_at_client: Option<String>,
    /// Inactive.
    pub inactive: Option<bool>,
    /// Who stored it.
    pub stored_by: Option<String>,
    /// Its type.
    pub tracked_entity_type: Option<String>,
}

/// An attribute value to store.
pub struct AttributeWrite {
    /// The attribute UID.
    pub attribute: String,
    /// The value.
    pub value: String,
    /// Who stored it.
    pub stored_by: String,
}

impl Writer<'_> {
    /// Inserts a tracked entity; returns its row id.
    pub fn insert_tracked_entity(&self, te: &NewTrackedEntity<'_>) -> rusqlite::Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO tracked_entities (uid, tracked_entity_type, org_unit, ou_path, created, last_updated, \
                 created_at_client, last_updated_at_client, created_by, last_updated_by, stored_by, inactive) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?8, ?9, ?10)",
            )?
            .execute(params![
                te.uid,
                te.tracked_entity_type,
                te.org_unit.uid,
                te.org_unit.path,
                self.now,
                te.created_at_client,
                te.last_updated_at_client,
                self.username,
                te.stored_by,
                te.inactive,
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Updates a tracked entity's own columns.
    pub fn update_tracked_entity(&self, te_id: i64, change: &TrackedEntityChange<'_>) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE tracked_entities SET org_unit = ?2, ou_path = ?3, last_updated = ?4, last_updated_by = ?5, \
                 last_updated_at_client = COALESCE(?6, last_updated_at_client), inactive = COALESCE(?7, inactive), \
                 stored_by = COALESCE(?8, stored_by), tracked_entity_type = COALESCE(?9, tracked_entity_type) \
                 WHERE id = ?1",
            )?
            .execute(params![
                te_id,
                change.org_unit.uid,
                change.org_unit.path,
                self.now,
                self.username,
                change.last_updated_at_client,
                change.inactive,
                change.stored_by,
                change.tracked_entity_type,
            ])?;
        Ok(())
    }

    /// Stores attribute values (insert or replace); `last_updated` moves only when a value changes.
    pub fn write_attributes(&self, te_id: i64, values: &[AttributeWrite]) -> rusqlite::Result<()> {
        let mut up = self.conn.prepare_cached(
            "INSERT INTO attribute_values (te_id, attribute, value, created, last_updated, stored_by) \
             VALUES (?1, ?2, ?3, ?4, ?4, ?5) ON CONFLICT(te_id, attribute) DO UPDATE SET \
             value = excluded.value, stored_by = excluded.stored_by, \
             last_updated = CASE WHEN value = excluded.value THEN last_updated ELSE excluded.last_updated END",
        )?;
        for a in values {
            up.execute(params![te_id, a.attribute, a.value, self.now, a.stored_by])?;
        }
        Ok(())
    }

    /// Deletes attribute values.
    pub fn delete_attributes<'s>(
        &self,
        te_id: i64,
        attributes: impl IntoIterator<Item = &'s str>,
    ) -> rusqlite::Result<()> {
        let mut del = self.conn.prepare_cached("DELETE FROM attribute_values WHERE te_id = ?1 AND attribute = ?2")?;
        for attribute in attributes {
            del.execute(params![te_id, attribute])?;
        }
        Ok(())
    }

    /// Deletes a tracked entity (soft) with its enrollments and events.
    pub fn delete_tracked_entity(&self, te_id: i64) -> rusqlite::Result<()> {
        let stamp = params![te_id, self.now, self.username];
        self.conn.execute(
            "UPDATE tracked_entities SET deleted = 1, last_updated = ?2, last_updated_by = ?3 WHERE id = ?1",
            stamp,
        )?;
        self.conn.execute(
            "UPDATE enrollments SET deleted = 1, last_updated = ?2, last_updated_by = ?3 WHERE te_id = ?1 AND deleted = 0",
            stamp,
        )?;
        self.conn.execute(
            "UPDATE events SET deleted = 1, last_updated = ?2, last_updated_by = ?3 WHERE te_id = ?1 AND deleted = 0",
            stamp,
        )?;
        Ok(())
    }
}
