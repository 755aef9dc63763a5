//! Tracker metadata: tracked entity types, attributes, option sets, data elements, programs and
//! program stages, with value-type checks and their DHIS2 JSON shapes.
//!
//! The metadata is small and read-mostly: it is kept as one JSON document in the `metadata`
//! table (written by the seed) and loaded whole where a request needs it. The JSON shapes the
//! metadata endpoints answer, with what a viewer may see of sharing, are in [`json`].

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::db::OrgUnit;

mod json;

pub use json::{
    attribute_json, data_element_json, option_set_json, program_json, program_stage_json, tracked_entity_type_json,
};

/// Key of the metadata document in the `metadata` table.
pub const METADATA_KEY: &str = "tracker";

/// A tracked entity type and its attributes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackedEntityType {
    /// UID.
    pub uid: String,
    /// Name.
    pub name: String,
    /// `trackedEntityTypeAttributes`.
    pub attributes: Vec<TypeAttribute>,
    /// Metadata and data sharing.
    #[serde(default)]
    pub sharing: Sharing,
}

/// A `trackedEntityTypeAttribute`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TypeAttribute {
    /// UID of the link object.
    pub uid: String,
    /// Attribute UID.
    pub attribute: String,
    /// Mandatory on registration.
    pub mandatory: bool,
    /// Searchable.
    pub searchable: bool,
    /// Shown in lists.
    pub display_in_list: bool,
}

/// A tracked entity attribute.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attribute {
    /// UID.
    pub uid: String,
    /// Name.
    pub name: String,
    /// Short name.
    pub short_name: String,
    /// Code.
    pub code: String,
    /// DHIS2 value type (`TEXT`, `DATE`, `PHONE_NUMBER`, …).
    pub value_type: String,
    /// Values must be unique across all tracked entities.
    pub unique: bool,
    /// Values come from a text pattern (`/generate`).
    pub generated: bool,
    /// Text pattern of a generated attribute, e.g. `"MCH-" + SEQUENTIAL(######)`.
    pub pattern: Option<String>,
    /// Option set UID.
    pub option_set: Option<String>,
    /// `displayInListNoProgram`.
    pub display_in_list_no_program: bool,
}

/// An option set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OptionSet {
    /// UID.
    pub uid: String,
    /// Name.
    pub name: String,
    /// Value type of the codes.
    pub value_type: String,
    /// Version.
    pub version: i64,
    /// Options, in order.
    pub options: Vec<OptionItem>,
}

/// One option.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OptionItem {
    /// UID.
    pub uid: String,
    /// Code (the stored value).
    pub code: String,
    /// Name.
    pub name: String,
}

/// A data element (domain TRACKER).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataElement {
    /// UID.
    pub uid: String,
    /// Name.
    pub name: String,
    /// Short name.
    pub short_name: String,
    /// Code.
    pub code: String,
    /// DHIS2 value type.
    pub value_type: String,
    /// Option set UID.
    pub option_set: Option<String>,
}

/// A program (always WITH_REGISTRATION here).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Program {
    /// UID.
    pub uid: String,
    /// Name.
    pub name: String,
    /// Short name.
    pub short_name: String,
    /// Code.
    pub code: String,
    /// Metadata version (clients re-fetch when it changes).
    pub version: i64,
    /// `WITH_REGISTRATION` or `WITHOUT_REGISTRATION`.
    pub program_type: String,
    /// Tracked entity type UID.
    pub tracked_entity_type: String,
    /// `OPEN`, `AUDITED`, `PROTECTED` or `CLOSED`.
    pub access_level: String,
    /// `programTrackedEntityAttributes`.
    pub attributes: Vec<ProgramAttribute>,
    /// Program stage UIDs, in order.
    pub stages: Vec<String>,
    /// Org units the program is assigned to.
    pub org_units: Vec<String>,
    /// Label of the enrollment date.
    pub enrollment_date_label: String,
    /// Label of the incident date.
    pub incident_date_label: String,
    /// Whether the incident date is shown.
    pub display_incident_date: bool,
    /// A tracked entity may be enrolled only once.
    pub only_enroll_once: bool,
    /// Metadata and data sharing.
    #[serde(default)]
    pub sharing: Sharing,
}

/// A `programTrackedEntityAttribute`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProgramAttribute {
    /// UID of the link object.
    pub uid: String,
    /// Attribute UID.
    pub attribute: String,
    /// Mandatory at enrollment.
    pub mandatory: bool,
    /// Searchable.
    pub searchable: bool,
    /// Shown in the working list (a `query.json` column).
    pub display_in_list: bool,
    /// Order.
    pub sort_order: i64,
}

/// A program stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProgramStage {
    /// UID.
    pub uid: String,
    /// Name.
    pub name: String,
    /// Program UID.
    pub program: String,
    /// More than one event per enrollment allowed.
    pub repeatable: bool,
    /// Order in the program.
    pub sort_order: i64,
    /// An event is created with the enrollment.
    pub auto_generate_event: bool,
    /// Days from the incident date to the first due date.
    pub min_days_from_start: i64,
    /// Label of the event date.
    pub execution_date_label: String,
    /// `programStageDataElements`.
    pub data_elements: Vec<StageDataElement>,
    /// Metadata and data sharing.
    #[serde(default)]
    pub sharing: Sharing,
}

/// A `programStageDataElement`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageDataElement {
    /// UID of the link object.
    pub uid: String,
    /// Data element UID.
    pub data_element: String,
    /// Compulsory to complete the event.
    pub compulsory: bool,
    /// Order.
    pub sort_order: i64,
}

/// All tracker metadata of the simulator.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metadata {
    /// Tracked entity types.
    pub tracked_entity_types: Vec<TrackedEntityType>,
    /// Tracked entity attributes.
    pub attributes: Vec<Attribute>,
    /// Option sets.
    pub option_sets: Vec<OptionSet>,
    /// Data elements.
    pub data_elements: Vec<DataElement>,
    /// Programs.
    pub programs: Vec<Program>,
    /// Program stages.
    pub program_stages: Vec<ProgramStage>,
    /// User groups (the subjects of `userGroupAccesses`).
    #[serde(default)]
    pub user_groups: Vec<UserGroup>,
}

/// Sharing of a metadata object, as DHIS2 stores it: access strings of 8 characters, metadata
/// read/write then data read/write (`rwrw----`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sharing {
    /// `publicAccess`.
    pub public_access: String,
    /// `userGroupAccesses`.
    #[serde(default)]
    pub user_group_accesses: Vec<SharingEntry>,
    /// `userAccesses`.
    #[serde(default)]
    pub user_accesses: Vec<SharingEntry>,
}

impl Default for Sharing {
    /// Everyone reads and writes metadata and data (databases seeded before sharing existed).
    fn default() -> Self {
        Self::public("rwrw----")
    }
}

impl Sharing {
    /// Public access only.
    pub fn public(access: &str) -> Self {
        Self { public_access: access.into(), user_group_accesses: Vec::new(), user_accesses: Vec::new() }
    }

    /// The same sharing with one more user group.
    pub fn with_group(mut self, group: &str, access: &str) -> Self {
        self.user_group_accesses.push(SharingEntry { id: group.into(), access: access.into() });
        self
    }

    /// The sharing as DHIS2 shows it on an object (`publicAccess`, `userGroupAccesses`, …).
    pub fn to_json(&self) -> Value {
        let entries = |list: &[SharingEntry]| -> Vec<Value> {
            list.iter().map(|e| json!({"id": e.id, "access": e.access})).collect()
        };
        json!({
            "publicAccess": self.public_access,
            "externalAccess": false,
            "userGroupAccesses": entries(&self.user_group_accesses),
            "userAccesses": entries(&self.user_accesses),
        })
    }
}

/// One user or user group in a [`Sharing`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SharingEntry {
    /// User or user group UID.
    pub id: String,
    /// Access string.
    pub access: String,
}

/// A user group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserGroup {
    /// UID.
    pub uid: String,
    /// Name.
    pub name: String,
    /// Member user UIDs.
    pub members: Vec<String>,
}

/// Who is asking: what [`Access`](Viewer::access) objects and sharing filters are computed for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Viewer {
    /// User UID.
    pub uid: String,
    /// Superuser (authority `ALL`): every access flag is true, as DHIS2's `AclService`.
    pub superuser: bool,
    /// UIDs of the user's groups.
    pub groups: Vec<String>,
    /// The user's authorities.
    pub authorities: Vec<String>,
}

/// Positions in an access string.
const META_READ: usize = 0;
const META_WRITE: usize = 1;
const DATA_READ: usize = 2;
const DATA_WRITE: usize = 3;

impl Viewer {
    /// A superuser viewer (seeding, internal use).
    pub fn superuser() -> Self {
        Self { superuser: true, ..Self::default() }
    }

    /// The viewer for a user, given its groups as stored in `md`.
    pub fn for_user(md: &Metadata, uid: &str, superuser: bool, authorities: Vec<String>) -> Self {
        let groups =
            md.user_groups.iter().filter(|g| g.members.iter().any(|m| m == uid)).map(|g| g.uid.clone()).collect();
        Self { uid: uid.into(), superuser: superuser || authorities.iter().any(|a| a == "ALL"), groups, authorities }
    }

    fn grants(&self, s: &Sharing, pos: usize) -> bool {
        let has = |access: &str| access.as_bytes().get(pos).is_some_and(|c| *c != b'-');
        has(&s.public_access)
            || s.user_accesses.iter().any(|e| e.id == self.uid && has(&e.access))
            || s.user_group_accesses.iter().any(|e| self.groups.contains(&e.id) && has(&e.access))
    }

    fn has_authority(&self, authority: &str) -> bool {
        self.superuser || self.authorities.iter().any(|a| a == authority)
    }

    /// Metadata read (an object the viewer cannot read is left out of lists, as DHIS2 does).
    pub fn can_read(&self, s: &Sharing) -> bool {
        self.superuser || self.grants(s, META_READ)
    }

    /// Data read.
    pub fn can_read_data(&self, s: &Sharing) -> bool {
        self.superuser || self.grants(s, DATA_READ)
    }

    /// Data write.
    pub fn can_write_data(&self, s: &Sharing) -> bool {
        self.superuser || self.grants(s, DATA_WRITE)
    }

    /// DHIS2's `access` object. `sharing` is `None` for objects without sharing here (read by
    /// all); `authority` is what creating and changing such objects needs; `data` adds the
    /// `data{read,write}` part of data-shareable types (programs, stages, tracked entity types).
    pub fn access(&self, sharing: Option<&Sharing>, authority: &str, data: bool) -> Value {
        let su = self.superuser;
        let (read, meta_write) = match sharing {
            Some(s) => (self.can_read(s), su || self.grants(s, META_WRITE)),
            None => (true, true),
        };
        let write = su || (meta_write && self.has_authority(authority));
        let mut v = json!({
            "manage": write, "externalize": su, "write": write, "read": read, "update": write, "delete": write,
        });
        if data {
            let (dr, dw) = sharing.map_or((true, true), |s| (self.can_read_data(s), self.can_write_data(s)));
            v["data"] = json!({"read": dr, "write": dw});
        }
        v
    }
}

/// Authorities that create and change each kind of metadata.
pub mod authority {
    /// Programs.
    pub const PROGRAM: &str = "F_PROGRAM_PUBLIC_ADD";
    /// Program stages.
    pub const PROGRAM_STAGE: &str = "F_PROGRAMSTAGE_ADD";
    /// Tracked entity types.
    pub const TRACKED_ENTITY_TYPE: &str = "F_TRACKED_ENTITY_ADD";
    /// Tracked entity attributes.
    pub const ATTRIBUTE: &str = "F_TRACKED_ENTITY_ATTRIBUTE_ADD";
    /// Data elements.
    pub const DATA_ELEMENT: &str = "F_DATAELEMENT_PUBLIC_ADD";
    /// Option sets.
    pub const OPTION_SET: &str = "F_OPTIONSET_PUBLIC_ADD";
}

impl Metadata {
    /// Loads the metadata document (empty metadata when none was seeded).
    pub fn load(conn: &Connection) -> rusqlite::Result<Self> {
        let json: Option<String> =
            conn.query_row("SELECT json FROM metadata WHERE key = ?1", [METADATA_KEY], |r| r.get(0)).optional()?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default())
    }

    /// Stores the metadata document (replacing any earlier one).
    pub fn save(&self, conn: &Connection) -> rusqlite::Result<()> {
        let json = serde_json::to_string(self).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        conn.execute(
            "INSERT INTO metadata (key, json) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET json = excluded.json",
            rusqlite::params![METADATA_KEY, json],
        )?;
        Ok(())
    }

    /// Whether any metadata is stored.
    pub fn exists(conn: &Connection) -> rusqlite::Result<bool> {
        conn.query_row("SELECT COUNT(*) FROM metadata WHERE key = ?1", [METADATA_KEY], |r| r.get::<_, i64>(0))
            .map(|n| n > 0)
    }

    /// The program with this UID.
    pub fn program(&self, uid: &str) -> Option<&Program> {
        self.programs.iter().find(|p| p.uid == uid)
    }

    /// The program stage with this UID.
    pub fn stage(&self, uid: &str) -> Option<&ProgramStage> {
        self.program_stages.iter().find(|s| s.uid == uid)
    }

    /// The attribute with this UID.
    pub fn attribute(&self, uid: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.uid == uid)
    }

    /// The data element with this UID.
    pub fn data_element(&self, uid: &str) -> Option<&DataElement> {
        self.data_elements.iter().find(|d| d.uid == uid)
    }

    /// The option set with this UID.
    pub fn option_set(&self, uid: &str) -> Option<&OptionSet> {
        self.option_sets.iter().find(|o| o.uid == uid)
    }

    /// The tracked entity type with this UID.
    pub fn tracked_entity_type(&self, uid: &str) -> Option<&TrackedEntityType> {
        self.tracked_entity_types.iter().find(|t| t.uid == uid)
    }

    /// Attributes shown for a tracked entity without a program: those of its type.
    pub fn type_attribute_uids(&self, tet: &str) -> Vec<&str> {
        self.tracked_entity_type(tet)
            .map(|t| t.attributes.iter().map(|a| a.attribute.as_str()).collect())
            .unwrap_or_default()
    }

    /// `{id: Attribute}` for quick lookups.
    pub fn attribute_index(&self) -> HashMap<&str, &Attribute> {
        self.attributes.iter().map(|a| (a.uid.as_str(), a)).collect()
    }

    /// Checks a value against a value type (and option set); `None` when valid, else a short
    /// DHIS2-style reason such as `value_not_numeric`.
    pub fn check_value(&self, value_type: &str, option_set: Option<&str>, value: &str) -> Option<&'static str> {
        if let Some(os) = option_set.and_then(|u| self.option_set(u)) {
            return if os.options.iter().any(|o| o.code == value) { None } else { Some("value_not_valid_option") };
        }
        check_value_type(value_type, value)
    }
}

/// Checks a value against a DHIS2 value type; `None` when valid, else the reason key DHIS2's
/// `ValidationUtils.dataValueIsValid` would give.
pub fn check_value_type(value_type: &str, value: &str) -> Option<&'static str> {
    let is_int = |v: &str| v.parse::<i64>().is_ok();
    match value_type {
        "NUMBER" | "UNIT_INTERVAL" | "PERCENTAGE" => {
            (value.parse::<f64>().map(|f| f.is_finite()) != Ok(true)).then_some("value_not_numeric")
        }
        "INTEGER" => (!is_int(value)).then_some("value_not_integer"),
        "INTEGER_POSITIVE" => (value.parse::<i64>().map(|v| v > 0) != Ok(true)).then_some("value_not_positive_integer"),
        "INTEGER_NEGATIVE" => (value.parse::<i64>().map(|v| v < 0) != Ok(true)).then_some("value_not_negative_integer"),
        "INTEGER_ZERO_OR_POSITIVE" => {
            (value.parse::<i64>().map(|v| v >= 0) != Ok(true)).then_some("value_not_zero_or_positive_integer")
        }
        "BOOLEAN" => (!matches!(value, "true" | "false" | "1" | "0")).then_some("value_not_bool"),
        "TRUE_ONLY" => (value != "true").then_some("value_not_true_only"),
        "DATE" | "AGE" => crate::tracker::dates::parse_date_time(value).is_none().then_some("value_not_valid_date"),
        "DATETIME" => crate::tracker::dates::parse_date_time(value).is_none().then_some("value_not_valid_datetime"),
        "PHONE_NUMBER" => {
            let ok = !value.is_empty()
                && value.len() <= 50
                && value.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'));
            (!ok).then_some("value_not_valid_phone_number")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_types() {
        assert_eq!(check_value_type("NUMBER", "12.5"), None);
        assert_eq!(check_value_type("NUMBER", "abc"), Some("value_not_numeric"));
        assert_eq!(check_value_type("INTEGER_POSITIVE", "0"), Some("value_not_positive_integer"));
        assert_eq!(check_value_type("INTEGER_POSITIVE", "3"), None);
        assert_eq!(check_value_type("TRUE_ONLY", "false"), Some("value_not_true_only"));
        assert_eq!(check_value_type("BOOLEAN", "false"), None);
        assert_eq!(check_value_type("DATE", "2024-02-30"), Some("value_not_valid_date"));
        assert_eq!(check_value_type("DATE", "2024-02-28"), None);
        assert_eq!(check_value_type("PHONE_NUMBER", "+970 59 123 4567"), None);
        assert_eq!(check_value_type("PHONE_NUMBER", "call me"), Some("value_not_valid_phone_number"));
        assert_eq!(check_value_type("TEXT", "anything"), None);
    }
}
