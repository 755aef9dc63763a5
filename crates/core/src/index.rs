//! The in-memory index of the clinic copy, built at unlock from small sealed index rows (one
//! per tracked entity; most of them read from the index snapshot, [`crate::index_snapshot`])
//! and kept up to date on every write. Searches, working lists and counts run on it; a
//! dashboard then opens one sealed bundle.

use std::sync::OnceLock;

use crate::fast_hash::FastHashMap;

use serde::{Deserialize, Serialize};

use crate::records::{attribute_values, flag, text, TeiBundle};

/// What the index knows of one enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentRow {
    /// UID.
    pub uid: String,
    /// Program UID.
    pub program: String,
    /// ACTIVE, COMPLETED or CANCELLED.
    pub status: String,
    /// Org unit UID.
    pub org_unit: String,
    /// Enrollment date as the server wrote it.
    pub enrollment_date: String,
    /// Follow-up flag.
    pub follow_up: bool,
    /// Soft-deleted.
    pub deleted: bool,
}

/// What the index knows of one tracked entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexRow {
    /// UID.
    pub uid: String,
    /// Tracked entity type UID.
    pub tracked_entity_type: String,
    /// Owning org unit UID.
    pub org_unit: String,
    /// Created (server format).
    pub created: String,
    /// Last updated (server format).
    pub last_updated: String,
    /// Inactive flag.
    pub inactive: bool,
    /// Soft-deleted.
    pub deleted: bool,
    /// Potential duplicate flag.
    pub potential_duplicate: bool,
    /// Attribute values (attribute UID, value).
    pub attributes: Vec<(String, String)>,
    /// Enrollments.
    pub enrollments: Vec<EnrollmentRow>,
    /// Event UIDs.
    pub events: Vec<String>,
    /// Position in the server's default order.
    #[serde(default)]
    pub ordinal: u64,
}

impl IndexRow {
    /// The index row of a bundle.
    pub fn of(bundle: &TeiBundle) -> Self {
        let t = &bundle.tei;
        let s = |k: &str| text(t, k).unwrap_or_default().to_string();
        Self {
            uid: bundle.uid().to_string(),
            tracked_entity_type: s("trackedEntityType"),
            org_unit: s("orgUnit"),
            created: s("created"),
            last_updated: s("lastUpdated"),
            inactive: flag(t, "inactive"),
            deleted: flag(t, "deleted"),
            potential_duplicate: flag(t, "potentialDuplicate"),
            attributes: attribute_values(t),
            enrollments: bundle
                .enrollments
                .iter()
                .map(|e| EnrollmentRow {
                    uid: text(e, "enrollment").unwrap_or_default().into(),
                    program: text(e, "program").unwrap_or_default().into(),
                    status: text(e, "status").unwrap_or("ACTIVE").into(),
                    org_unit: text(e, "orgUnit").unwrap_or_default().into(),
                    enrollment_date: text(e, "enrollmentDate").unwrap_or_default().into(),
                    follow_up: flag(e, "followup"),
                    deleted: flag(e, "deleted"),
                })
                .collect(),
            events: bundle.events.iter().filter_map(|e| text(e, "event").map(str::to_string)).collect(),
            ordinal: bundle.ordinal,
        }
    }

    /// The value of one attribute.
    pub fn attribute(&self, uid: &str) -> Option<&str> {
        self.attributes.iter().find(|(a, _)| a == uid).map(|(_, v)| v.as_str())
    }
}

/// A UID as a key of the index's maps: held inline when it fits (DHIS2 UIDs are 11 ASCII
/// characters), so that an unlock, which inserts one key per woman, enrollment and event (about
/// 400,000 at 50,000 women), allocates, copies and frees no string for them, and a probe
/// compares 16 bytes instead of following a pointer. Any other string is kept whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum UidKey {
    /// Byte 0 is the length, then the bytes of the UID, zero-padded.
    Inline([u8; 16]),
    Long(Box<str>),
}

impl UidKey {
    #[inline]
    fn of(uid: &str) -> Self {
        let bytes = uid.as_bytes();
        if bytes.len() >= 16 {
            return Self::Long(uid.into());
        }
        let mut packed = [0u8; 16];
        packed[0] = bytes.len() as u8;
        // A byte loop: at opt-level "z" a `copy_from_slice` of a few bytes is a call to memcpy.
        for (slot, byte) in packed[1..].iter_mut().zip(bytes) {
            *slot = *byte;
        }
        Self::Inline(packed)
    }

    fn as_str(&self) -> &str {
        match self {
            // The bytes are those of a whole `&str` (see `of`): always UTF-8.
            Self::Inline(packed) => {
                std::str::from_utf8(&packed[1..=usize::from(packed[0]).min(15)]).unwrap_or_default()
            }
            Self::Long(uid) => uid,
        }
    }
}

/// All index rows, with a reverse map from enrollment and event UIDs to their tracked entity.
#[derive(Debug, Default, Clone)]
pub struct ClinicIndex {
    rows: FastHashMap<UidKey, IndexRow>,
    /// Built at the first question about an owner, then kept up to date: an unlock needs only
    /// the rows to answer its first page, and the map holds one entry per enrollment and event
    /// (about 350,000 at 50,000 women, the larger part of building the index).
    owner_of: OnceLock<FastHashMap<UidKey, UidKey>>,
}

impl ClinicIndex {
    /// An index of `rows` (each upserted in turn), sized for them at once.
    pub fn of_rows(rows: Vec<IndexRow>) -> Self {
        let mut index = Self::default();
        index.rows.reserve(rows.len());
        for row in rows {
            index.upsert(row);
        }
        index
    }

    /// Adds or replaces a row.
    pub fn upsert(&mut self, row: IndexRow) {
        let key = UidKey::of(&row.uid);
        self.forget_owned(&key);
        if let Some(owner_of) = self.owner_of.get_mut() {
            insert_owned(owner_of, &key, &row);
        }
        self.rows.insert(key, row);
    }

    /// Removes the row under `key` and, once the owner map is built, its records from it.
    fn forget_owned(&mut self, key: &UidKey) {
        let Some(old) = self.rows.remove(key) else { return };
        if let Some(owner_of) = self.owner_of.get_mut() {
            for e in &old.enrollments {
                owner_of.remove(&UidKey::of(&e.uid));
            }
            for e in &old.events {
                owner_of.remove(&UidKey::of(e));
            }
        }
    }

    /// Removes a row.
    pub fn remove(&mut self, uid: &str) {
        self.forget_owned(&UidKey::of(uid));
    }

    /// One row.
    pub fn get(&self, uid: &str) -> Option<&IndexRow> {
        self.rows.get(&UidKey::of(uid))
    }

    /// The tracked entity owning an enrollment or event UID.
    pub fn owner(&self, record_uid: &str) -> Option<&str> {
        let owner_of = self.owner_of.get_or_init(|| {
            let mut owner_of = FastHashMap::default();
            owner_of.reserve(self.rows.values().map(|r| r.enrollments.len() + r.events.len()).sum());
            for (key, row) in &self.rows {
                insert_owned(&mut owner_of, key, row);
            }
            owner_of
        });
        owner_of.get(&UidKey::of(record_uid)).map(UidKey::as_str)
    }

    /// Every row, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = &IndexRow> {
        self.rows.values()
    }

    /// Number of tracked entities.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The next free position at the end of the server order (the last one, once a row holds
    /// the largest: positions only order rows, ties go by UID).
    pub fn next_ordinal(&self) -> u64 {
        self.rows.values().map(|r| r.ordinal).max().map_or(1, |m| m.saturating_add(1))
    }

    /// Forgets everything (lock).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.owner_of = OnceLock::new();
    }
}

/// Names `owner` as the tracked entity of `row`'s enrollments and events.
fn insert_owned(owner_of: &mut FastHashMap<UidKey, UidKey>, owner: &UidKey, row: &IndexRow) {
    for e in &row.enrollments {
        owner_of.insert(UidKey::of(&e.uid), owner.clone());
    }
    for e in &row.events {
        owner_of.insert(UidKey::of(e), owner.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzz harness (tests/fuzz.rs, target `stored`): an index row holding the
    /// largest position (damaged storage) made the next position overflow.
    #[test]
    fn the_next_position_after_the_largest_is_the_largest() {
        let mut index = ClinicIndex::default();
        assert_eq!(index.next_ordinal(), 1);
        let mut row = IndexRow::of(&TeiBundle::default());
        row.uid = "PQfMcpmXeFE".into();
        row.ordinal = u64::MAX;
        index.upsert(row);
        assert_eq!(index.next_ordinal(), u64::MAX);
    }

    /// The maps key UIDs inline up to 15 bytes and whole beyond: both find their rows and
    /// owners, and a replaced row's records no longer name it.
    #[test]
    fn rows_and_owners_are_found_whatever_the_length_of_their_uids() {
        let mut index = ClinicIndex::default();
        for (n, uid) in ["PQfMcpmXeFE", "", "a-fifteen-bytes", "sixteen-bytes-uid", "صفاء-٣"].into_iter().enumerate()
        {
            let mut row = IndexRow::of(&TeiBundle::default());
            row.uid = uid.into();
            row.events = vec![format!("event-{uid}"), format!("e{n}")];
            index.upsert(row);
        }
        for (n, uid) in ["PQfMcpmXeFE", "", "a-fifteen-bytes", "sixteen-bytes-uid", "صفاء-٣"].into_iter().enumerate()
        {
            assert_eq!(index.get(uid).map(|r| r.uid.as_str()), Some(uid));
            assert_eq!(index.owner(&format!("event-{uid}")), Some(uid));
            assert_eq!(index.owner(&format!("e{n}")), Some(uid));
        }
        assert_eq!(index.len(), 5);
        assert_eq!(index.get("PQfMcpmXeF"), None);
        let mut moved = IndexRow::of(&TeiBundle::default());
        moved.uid = "sixteen-bytes-uid".into();
        moved.events = vec!["e0".into()];
        index.upsert(moved);
        assert_eq!(index.owner("event-sixteen-bytes-uid"), None);
        assert_eq!(index.owner("e0"), Some("sixteen-bytes-uid"));
        index.remove("sixteen-bytes-uid");
        assert_eq!(index.owner("e0"), None);
        assert_eq!(index.get("sixteen-bytes-uid"), None);
    }

    /// The owner map is built at the first question: rows replaced and removed before it are
    /// answered as they are now, and it is kept up to date after it.
    #[test]
    fn owners_asked_first_after_changes_are_those_of_the_rows_as_they_are() {
        let row = |uid: &str, enrollment: &str, events: &[&str]| {
            let mut row = IndexRow::of(&TeiBundle::default());
            row.uid = uid.into();
            row.enrollments = vec![EnrollmentRow {
                uid: enrollment.into(),
                program: "PrMchProg01".into(),
                status: "ACTIVE".into(),
                org_unit: "OuBaniNaim1".into(),
                enrollment_date: String::new(),
                follow_up: false,
                deleted: false,
            }];
            row.events = events.iter().map(|e| e.to_string()).collect();
            row
        };
        let mut index = ClinicIndex::of_rows(vec![
            row("TeAmal00001", "EnAmal00001", &["EvAmal00001", "EvAmal00002"]),
            row("TeHuda00001", "EnHuda00001", &["EvHuda00001"]),
            row("TeNoor00001", "EnNoor00001", &["EvNoor00001"]),
        ]);
        index.upsert(row("TeAmal00001", "EnAmal00001", &["EvAmal00001"]));
        index.remove("TeNoor00001");
        assert_eq!(index.owner("EvAmal00001"), Some("TeAmal00001"));
        assert_eq!(index.owner("EnAmal00001"), Some("TeAmal00001"));
        assert_eq!(index.owner("EvAmal00002"), None, "no longer the row's");
        assert_eq!(index.owner("EvNoor00001"), None, "the row was removed");
        assert_eq!(index.owner("EnHuda00001"), Some("TeHuda00001"));
        index.upsert(row("TeNoor00001", "EnNoor00001", &["EvNoor00001", "EvAmal00002"]));
        assert_eq!(index.owner("EvAmal00002"), Some("TeNoor00001"), "kept up to date once built");
        index.clear();
        assert_eq!(index.owner("EvNoor00001"), None);
        index.upsert(row("TeHuda00001", "EnHuda00001", &["EvHuda00001"]));
        assert_eq!(index.owner("EvHuda00001"), Some("TeHuda00001"), "built again after a lock");
    }
}
