//! Tracker metadata: tracked entity types, attributes, option sets, data elements, programs and
//! program stages, with value-type checks and their DHIS2 JSON shapes.
//!
//! The metadata is small and read-mostly: it is kept as one JSON document in the `metadata`
//! table (written by the seed) and loaded whole where a request needs it.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::db::OrgUnit;

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

fn access(write: bool) -> Value {
    json!({
        "read": true, "update": write, "externalize": false, "delete": write, "write": write, "manage": write,
        "data": {"read": true, "write": true}
    })
}

/// An option set as JSON (options embedded).
pub fn option_set_json(os: &OptionSet) -> Value {
    json!({
        "id": os.uid,
        "name": os.name,
        "displayName": os.name,
        "valueType": os.value_type,
        "version": os.version,
        "options": os.options.iter().enumerate().map(|(i, o)| json!({
            "id": o.uid, "code": o.code, "name": o.name, "displayName": o.name, "sortOrder": i + 1,
            "optionSet": {"id": os.uid},
        })).collect::<Vec<_>>(),
        "access": access(false),
    })
}

fn option_set_ref(md: &Metadata, uid: Option<&str>) -> Option<Value> {
    uid.map(|u| md.option_set(u).map_or_else(|| json!({ "id": u }), option_set_json))
}

/// A tracked entity attribute as JSON.
pub fn attribute_json(md: &Metadata, a: &Attribute) -> Value {
    let mut v = json!({
        "id": a.uid,
        "name": a.name,
        "displayName": a.name,
        "shortName": a.short_name,
        "displayShortName": a.short_name,
        "formName": a.name,
        "displayFormName": a.name,
        "code": a.code,
        "valueType": a.value_type,
        "aggregationType": "NONE",
        "unique": a.unique,
        "orgunitScope": false,
        "generated": a.generated,
        "pattern": a.pattern.clone().unwrap_or_default(),
        "confidential": false,
        "inherit": false,
        "skipSynchronization": false,
        "displayInListNoProgram": a.display_in_list_no_program,
        "displayOnVisitSchedule": false,
        "access": access(false),
    });
    if let Some(os) = option_set_ref(md, a.option_set.as_deref()) {
        v["optionSet"] = os;
        v["optionSetValue"] = json!(true);
    } else {
        v["optionSetValue"] = json!(false);
    }
    v
}

fn attribute_or_ref(md: &Metadata, uid: &str) -> Value {
    md.attribute(uid).map_or_else(|| json!({ "id": uid }), |a| attribute_json(md, a))
}

/// A tracked entity type as JSON.
pub fn tracked_entity_type_json(md: &Metadata, t: &TrackedEntityType) -> Value {
    json!({
        "id": t.uid,
        "name": t.name,
        "displayName": t.name,
        "description": format!("A {}", t.name.to_lowercase()),
        "allowAuditLog": false,
        "featureType": "NONE",
        "minAttributesRequiredToSearch": 1,
        "maxTeiCountToReturn": 0,
        "trackedEntityTypeAttributes": t.attributes.iter().map(|ta| {
            let attr = md.attribute(&ta.attribute);
            json!({
                "id": ta.uid,
                "displayName": format!("{} {}", t.name, attr.map_or(ta.attribute.as_str(), |a| a.name.as_str())),
                "mandatory": ta.mandatory,
                "searchable": ta.searchable,
                "displayInList": ta.display_in_list,
                "valueType": attr.map_or("TEXT", |a| a.value_type.as_str()),
                "trackedEntityAttribute": attribute_or_ref(md, &ta.attribute),
                "trackedEntityType": {"id": t.uid},
            })
        }).collect::<Vec<_>>(),
        "access": access(false),
    })
}

/// A data element as JSON.
pub fn data_element_json(md: &Metadata, d: &DataElement) -> Value {
    let mut v = json!({
        "id": d.uid,
        "name": d.name,
        "displayName": d.name,
        "shortName": d.short_name,
        "displayShortName": d.short_name,
        "formName": d.name,
        "displayFormName": d.name,
        "code": d.code,
        "valueType": d.value_type,
        "domainType": "TRACKER",
        "aggregationType": "NONE",
        "zeroIsSignificant": false,
        "access": access(false),
    });
    if let Some(os) = option_set_ref(md, d.option_set.as_deref()) {
        v["optionSet"] = os;
        v["optionSetValue"] = json!(true);
    } else {
        v["optionSetValue"] = json!(false);
    }
    v
}

/// A program stage as JSON (data elements embedded).
pub fn program_stage_json(md: &Metadata, s: &ProgramStage) -> Value {
    json!({
        "id": s.uid,
        "name": s.name,
        "displayName": s.name,
        "description": s.name,
        "program": {"id": s.program},
        "repeatable": s.repeatable,
        "sortOrder": s.sort_order,
        "autoGenerateEvent": s.auto_generate_event,
        "minDaysFromStart": s.min_days_from_start,
        "executionDateLabel": s.execution_date_label,
        "displayExecutionDateLabel": s.execution_date_label,
        "generatedByEnrollmentDate": false,
        "openAfterEnrollment": false,
        "blockEntryForm": false,
        "hideDueDate": false,
        "validationStrategy": "ON_COMPLETE",
        "featureType": "NONE",
        "allowGenerateNextVisit": s.repeatable,
        "remindCompleted": false,
        "preGenerateUID": false,
        "enableUserAssignment": false,
        "programStageDataElements": s.data_elements.iter().map(|psde| json!({
            "id": psde.uid,
            "compulsory": psde.compulsory,
            "sortOrder": psde.sort_order,
            "allowProvidedElsewhere": false,
            "allowFutureDate": false,
            "displayInReports": true,
            "programStage": {"id": s.uid},
            "dataElement": md.data_element(&psde.data_element)
                .map_or_else(|| json!({"id": psde.data_element}), |d| data_element_json(md, d)),
            "access": access(false),
        })).collect::<Vec<_>>(),
        "programStageSections": [],
        "access": access(false),
    })
}

/// A program as JSON (attributes and stages embedded, org units as references).
pub fn program_json(md: &Metadata, p: &Program, org_units: &[OrgUnit]) -> Value {
    let tet = md.tracked_entity_type(&p.tracked_entity_type);
    let attributes: Vec<Value> = p
        .attributes
        .iter()
        .map(|pa| {
            let attr = md.attribute(&pa.attribute);
            json!({
                "id": pa.uid,
                "displayName": format!("{} {}", p.name, attr.map_or(pa.attribute.as_str(), |a| a.name.as_str())),
                "mandatory": pa.mandatory,
                "searchable": pa.searchable,
                "displayInList": pa.display_in_list,
                "sortOrder": pa.sort_order,
                "allowFutureDate": false,
                "renderOptionsAsRadio": false,
                "valueType": attr.map_or("TEXT", |a| a.value_type.as_str()),
                "program": {"id": p.uid},
                "trackedEntityAttribute": attribute_or_ref(md, &pa.attribute),
                "access": access(false),
            })
        })
        .collect();
    let stages: Vec<Value> = p
        .stages
        .iter()
        .map(|s| md.stage(s).map_or_else(|| json!({"id": s}), |st| program_stage_json(md, st)))
        .collect();
    let ous: Vec<Value> =
        org_units.iter().filter(|o| p.org_units.contains(&o.uid)).map(crate::api::me::org_unit_json).collect();
    let mut v = json!({
        "id": p.uid,
        "name": p.name,
        "displayName": p.name,
        "shortName": p.short_name,
        "displayShortName": p.short_name,
        "code": p.code,
        "version": p.version,
        "programType": p.program_type,
        "accessLevel": p.access_level,
        "categoryCombo": {"id": "bjDvmb4bfuf", "name": "default", "displayName": "default"},
        "enrollmentDateLabel": p.enrollment_date_label,
        "displayEnrollmentDateLabel": p.enrollment_date_label,
        "incidentDateLabel": p.incident_date_label,
        "displayIncidentDateLabel": p.incident_date_label,
        "displayIncidentDate": p.display_incident_date,
        "onlyEnrollOnce": p.only_enroll_once,
    });
    let extra = json!({
        "selectEnrollmentDatesInFuture": false,
        "selectIncidentDatesInFuture": false,
        "displayFrontPageList": true,
        "useFirstStageDuringRegistration": false,
        "ignoreOverdueEvents": false,
        "skipOffline": false,
        "withoutRegistration": p.program_type != "WITH_REGISTRATION",
        "registration": p.program_type == "WITH_REGISTRATION",
        "featureType": "NONE",
        "minAttributesRequiredToSearch": 1,
        "maxTeiCountToReturn": 0,
        "completeEventsExpiryDays": 0,
        "expiryDays": 0,
        "openDaysAfterCoEndDate": 0,
        "programSections": [],
        "programIndicators": [],
        "programRuleVariables": [],
        "userRoles": [],
        "notificationTemplates": [],
    });
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
        m.insert(
            "trackedEntityType".into(),
            tet.map_or_else(|| json!({"id": p.tracked_entity_type}), |t| tracked_entity_type_json(md, t)),
        );
        m.insert("programTrackedEntityAttributes".into(), Value::Array(attributes));
        m.insert("programStages".into(), Value::Array(stages));
        m.insert("organisationUnits".into(), Value::Array(ous));
        m.insert("access".into(), access(false));
    }
    v
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
