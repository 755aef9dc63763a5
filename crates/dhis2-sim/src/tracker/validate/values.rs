//! The checks of attribute and data values, shared by both importers. Each check finds a typed
//! [`ValueProblem`]; the legacy importer says it in DHIS2's legacy conflict words
//! ([`ValueProblem::legacy_conflict`]), the new tracker as an error code
//! ([`ValueProblem::error_code`]).

use rusqlite::Connection;
use serde_json::Value;

use crate::{
    model::{Attribute, Metadata, ProgramStage},
    tracker::import::{text, unique_value_holder},
};

/// A problem with one attribute value or data value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueProblem {
    /// An `attributes` entry names no attribute.
    AttributeMissing,
    /// No such attribute.
    AttributeUnknown {
        /// The attribute UID given.
        attribute: String,
    },
    /// The value is not a code of the attribute's option set.
    AttributeNotAnOption {
        /// The attribute UID.
        attribute: String,
        /// The value given.
        value: String,
        /// The option set UID.
        option_set: String,
    },
    /// The value does not fit the attribute's value type.
    AttributeInvalid {
        /// The attribute UID.
        attribute: String,
        /// The value given.
        value: String,
        /// The attribute's value type.
        value_type: String,
        /// Why (`value_not_numeric`, …).
        reason: &'static str,
    },
    /// Another tracked entity holds this value of a unique attribute.
    AttributeNotUnique {
        /// The attribute UID.
        attribute: String,
        /// The value given.
        value: String,
    },
    /// A `dataValues` entry names no data element.
    DataElementMissing,
    /// No such data element.
    DataElementUnknown {
        /// The data element UID given.
        data_element: String,
    },
    /// The data element is not in the event's program stage.
    DataElementNotInStage {
        /// The data element UID.
        data_element: String,
        /// The stage UID.
        stage: String,
    },
    /// The value is not a code of the data element's option set.
    DataValueNotAnOption {
        /// The data element UID.
        data_element: String,
        /// The value given.
        value: String,
        /// The option set UID.
        option_set: String,
    },
    /// The value does not fit the data element's value type.
    DataValueInvalid {
        /// The data element UID.
        data_element: String,
        /// Why (`value_not_numeric`, …).
        reason: &'static str,
    },
}

impl ValueProblem {
    /// The legacy importer's conflict: `(object, value)` as DHIS2 2.38-2.41 words it.
    pub fn legacy_conflict(&self) -> (String, String) {
        match self {
            Self::AttributeMissing => ("Attribute.attribute".into(), "Missing required property attribute".into()),
            Self::AttributeUnknown { attribute } => {
                ("Attribute.attribute".into(), format!("Invalid attribute {attribute}"))
            }
            Self::AttributeNotAnOption { attribute, value, option_set } => (
                "Attribute.value".into(),
                format!("Value '{value}' is not a valid option for attribute {attribute} and option set {option_set}"),
            ),
            Self::AttributeInvalid { attribute, value, value_type, reason } => {
                let message = match value_type.as_str() {
                    "NUMBER" => format!("Value '{value}' is not a valid numeric type for attribute {attribute}"),
                    "BOOLEAN" => format!("Value '{value}' is not a valid boolean type for attribute {attribute}"),
                    "DATE" => format!("Value '{value}' is not a valid date type for attribute {attribute}"),
                    "TRUE_ONLY" => format!("Value '{value}' is not true (true-only type) for attribute {attribute}"),
                    _ => format!("Value '{value}' is not valid for attribute {attribute}: {reason}"),
                };
                ("Attribute.value".into(), message)
            }
            Self::AttributeNotUnique { attribute, value } => {
                ("Attribute.value".into(), format!("Non-unique attribute value '{value}' for attribute {attribute}"))
            }
            Self::DataElementMissing => ("dataElement".into(), "Missing required property dataElement".into()),
            Self::DataElementUnknown { data_element } | Self::DataElementNotInStage { data_element, .. } => {
                ("dataElement".into(), format!("{data_element} is not a valid data element"))
            }
            Self::DataValueNotAnOption { data_element, .. } => (data_element.clone(), "value_not_valid_option".into()),
            Self::DataValueInvalid { data_element, reason } => (data_element.clone(), (*reason).into()),
        }
    }

    /// The new tracker's error: its code (`ValidationCode`) and the message's arguments.
    pub fn error_code(&self) -> (&'static str, Vec<String>) {
        match self {
            Self::AttributeMissing => ("E1075", vec![String::new()]),
            Self::AttributeUnknown { attribute } => ("E1006", vec![attribute.clone()]),
            Self::AttributeNotAnOption { value, option_set, .. }
            | Self::DataValueNotAnOption { value, option_set, .. } => {
                ("E1125", vec![value.clone(), option_set.clone()])
            }
            Self::AttributeInvalid { value_type, reason, .. } => ("E1007", vec![value_type.clone(), (*reason).into()]),
            Self::AttributeNotUnique { attribute, value } => ("E1064", vec![value.clone(), attribute.clone()]),
            Self::DataElementMissing => ("E1304", vec![String::new()]),
            Self::DataElementUnknown { data_element } => ("E1304", vec![data_element.clone()]),
            Self::DataElementNotInStage { data_element, stage } => ("E1305", vec![data_element.clone(), stage.clone()]),
            Self::DataValueInvalid { data_element, reason } => ("E1302", vec![data_element.clone(), (*reason).into()]),
        }
    }
}

/// Checks a value of a known attribute: its option set or value type, then that no other stored
/// tracked entity holds it when the attribute is unique (`te_id` is the one being written).
pub fn attribute_value(
    conn: &Connection,
    md: &Metadata,
    meta: &Attribute,
    value: &str,
    te_id: Option<i64>,
) -> rusqlite::Result<Option<ValueProblem>> {
    let (attribute, value) = (meta.uid.clone(), value.to_owned());
    if let Some(reason) = md.check_value(&meta.value_type, meta.option_set.as_deref(), &value) {
        return Ok(Some(match (reason, &meta.option_set) {
            ("value_not_valid_option", Some(os)) => {
                ValueProblem::AttributeNotAnOption { attribute, value, option_set: os.clone() }
            }
            _ => ValueProblem::AttributeInvalid { attribute, value, value_type: meta.value_type.clone(), reason },
        }));
    }
    if meta.unique && unique_value_holder(conn, &attribute, &value, te_id)?.is_some() {
        return Ok(Some(ValueProblem::AttributeNotUnique { attribute, value }));
    }
    Ok(None)
}

/// Checks one entry of an event's `dataValues` against its stage; returns the data element and
/// the value (`None`: sent empty, which deletes).
pub fn data_value(md: &Metadata, stage: &ProgramStage, dv: &Value) -> Result<(String, Option<String>), ValueProblem> {
    let Some(data_element) = text(dv, "dataElement") else {
        return Err(ValueProblem::DataElementMissing);
    };
    let Some(meta) = md.data_element(&data_element) else {
        return Err(ValueProblem::DataElementUnknown { data_element });
    };
    if !stage.data_elements.iter().any(|d| d.data_element == data_element) {
        return Err(ValueProblem::DataElementNotInStage { data_element, stage: stage.uid.clone() });
    }
    let value = text(dv, "value");
    if let Some(v) = &value {
        if let Some(reason) = md.check_value(&meta.value_type, meta.option_set.as_deref(), v) {
            return Err(match (reason, &meta.option_set) {
                ("value_not_valid_option", Some(os)) => {
                    ValueProblem::DataValueNotAnOption { data_element, value: v.clone(), option_set: os.clone() }
                }
                _ => ValueProblem::DataValueInvalid { data_element, reason },
            });
        }
    }
    Ok((data_element, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_problem_in_the_words_of_each_importer() {
        let not_unique = ValueProblem::AttributeNotUnique { attribute: "AtNatId0001".into(), value: "4010".into() };
        assert_eq!(
            not_unique.legacy_conflict(),
            ("Attribute.value".into(), "Non-unique attribute value '4010' for attribute AtNatId0001".into())
        );
        assert_eq!(not_unique.error_code(), ("E1064", vec!["4010".into(), "AtNatId0001".into()]));
        let bad_number = ValueProblem::AttributeInvalid {
            attribute: "AtWeight001".into(),
            value: "heavy".into(),
            value_type: "NUMBER".into(),
            reason: "value_not_numeric",
        };
        assert_eq!(
            bad_number.legacy_conflict().1,
            "Value 'heavy' is not a valid numeric type for attribute AtWeight001"
        );
        assert_eq!(bad_number.error_code(), ("E1007", vec!["NUMBER".into(), "value_not_numeric".into()]));
        let outside = ValueProblem::DataElementNotInStage { data_element: "DeWeightKg1".into(), stage: "PsAnc".into() };
        assert_eq!(outside.legacy_conflict(), ("dataElement".into(), "DeWeightKg1 is not a valid data element".into()));
        assert_eq!(outside.error_code(), ("E1305", vec!["DeWeightKg1".into(), "PsAnc".into()]));
    }
}
