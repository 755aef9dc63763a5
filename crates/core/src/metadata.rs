//! The slice of metadata the offline reads need: org unit paths and names (for `ouMode` and
//! `ouname`), program attributes (for grid headers), the server version (for the export
//! envelope) and the user's org units. Parsed from the server's own metadata answers.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CoreError, Result};

/// An org unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgUnitInfo {
    /// UID.
    pub id: String,
    /// `/root/.../self` path of UIDs.
    pub path: String,
    /// Name.
    pub display_name: String,
}

/// A tracked entity attribute as a program uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeInfo {
    /// UID.
    pub id: String,
    /// Name.
    pub display_name: String,
    /// DHIS2 value type (TEXT, DATE, NUMBER, ...).
    pub value_type: String,
    /// Shown in the working list.
    pub display_in_list: bool,
}

/// A tracker program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgramInfo {
    /// UID.
    pub id: String,
    /// Name.
    pub display_name: String,
    /// Tracked entity type UID.
    pub tracked_entity_type: String,
    /// Program attributes, in program order.
    pub attributes: Vec<AttributeInfo>,
}

/// Everything the offline reads need besides the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClinicMetadata {
    /// Server version (e.g. `2.40.3`).
    pub server_version: String,
    /// Org units by UID.
    pub org_units: HashMap<String, OrgUnitInfo>,
    /// Programs.
    pub programs: Vec<ProgramInfo>,
    /// The user's capture org units.
    pub capture_org_units: Vec<String>,
    /// The user's search org units.
    #[serde(default)]
    pub search_org_units: Vec<String>,
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

impl ClinicMetadata {
    /// Reads `{organisationUnits:[{id,path,displayName}]}`.
    pub fn add_org_units(&mut self, body: &[u8]) -> Result<usize> {
        let v: Value = serde_json::from_slice(body).map_err(|e| CoreError::BadResponse(format!("org units: {e}")))?;
        let list = v
            .get("organisationUnits")
            .and_then(Value::as_array)
            .ok_or_else(|| CoreError::BadResponse("org units: no 'organisationUnits' list".into()))?;
        for ou in list {
            let id = str_of(ou, "id");
            if id.is_empty() {
                continue;
            }
            let name = ou.get("displayName").or_else(|| ou.get("name")).and_then(Value::as_str).unwrap_or_default();
            self.org_units.insert(id.clone(), OrgUnitInfo { id, path: str_of(ou, "path"), display_name: name.into() });
        }
        Ok(list.len())
    }

    /// Reads `{programs:[{id,displayName,trackedEntityType{id},programTrackedEntityAttributes[...]}]}`.
    pub fn set_programs(&mut self, body: &[u8]) -> Result<()> {
        let v: Value = serde_json::from_slice(body).map_err(|e| CoreError::BadResponse(format!("programs: {e}")))?;
        let list = v
            .get("programs")
            .and_then(Value::as_array)
            .ok_or_else(|| CoreError::BadResponse("programs: no 'programs' list".into()))?;
        self.programs = list
            .iter()
            .filter(|p| p.get("trackedEntityType").is_some())
            .map(|p| ProgramInfo {
                id: str_of(p, "id"),
                display_name: str_of(p, "displayName"),
                tracked_entity_type: p.get("trackedEntityType").map(|t| str_of(t, "id")).unwrap_or_default(),
                attributes: p
                    .get("programTrackedEntityAttributes")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(|pa| {
                                let a = pa.get("trackedEntityAttribute")?;
                                Some(AttributeInfo {
                                    id: str_of(a, "id"),
                                    display_name: str_of(a, "displayName"),
                                    value_type: a.get("valueType").and_then(Value::as_str).unwrap_or("TEXT").into(),
                                    display_in_list: pa.get("displayInList").and_then(Value::as_bool).unwrap_or(false),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        Ok(())
    }

    /// True if `org_unit` lies in the user's search scope (search or capture org units and
    /// everything below them).
    pub fn in_search_scope(&self, org_unit: &str) -> bool {
        let path = self.path_of(org_unit);
        self.search_org_units.iter().chain(&self.capture_org_units).any(|root| path.split('/').any(|p| p == root))
    }

    /// A program by UID.
    pub fn program(&self, id: &str) -> Option<&ProgramInfo> {
        self.programs.iter().find(|p| p.id == id)
    }

    /// The path of an org unit, or `/uid` when unknown.
    pub fn path_of(&self, id: &str) -> String {
        self.org_units.get(id).map(|o| o.path.clone()).filter(|p| !p.is_empty()).unwrap_or_else(|| format!("/{id}"))
    }

    /// The name of an org unit.
    pub fn name_of(&self, id: &str) -> String {
        self.org_units.get(id).map(|o| o.display_name.clone()).unwrap_or_default()
    }

    /// Major.minor of the server version as a number like 40 for 2.40 (0 when unknown).
    pub fn minor_version(&self) -> u32 {
        self.server_version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0)
    }
}
