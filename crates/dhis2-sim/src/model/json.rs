//! The DHIS2 JSON shapes of the tracker metadata (option sets, attributes, tracked entity
//! types, data elements, program stages, programs), with the sharing a viewer may see.

use super::*;

/// `v` with the sharing properties (`publicAccess`, `userGroupAccesses`, …) added.
fn with_sharing(mut v: Value, sharing: &Sharing) -> Value {
    if let (Some(m), Value::Object(extra)) = (v.as_object_mut(), sharing.to_json()) {
        m.extend(extra);
    }
    v
}

/// An option set as JSON (options embedded).
pub fn option_set_json(os: &OptionSet, viewer: &Viewer) -> Value {
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
        "access": viewer.access(None, authority::OPTION_SET, false),
    })
}

fn option_set_ref(md: &Metadata, uid: Option<&str>, viewer: &Viewer) -> Option<Value> {
    uid.map(|u| md.option_set(u).map_or_else(|| json!({ "id": u }), |os| option_set_json(os, viewer)))
}

/// A tracked entity attribute as JSON.
pub fn attribute_json(md: &Metadata, a: &Attribute, viewer: &Viewer) -> Value {
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
        "access": viewer.access(None, authority::ATTRIBUTE, false),
    });
    if let Some(os) = option_set_ref(md, a.option_set.as_deref(), viewer) {
        v["optionSet"] = os;
        v["optionSetValue"] = json!(true);
    } else {
        v["optionSetValue"] = json!(false);
    }
    v
}

fn attribute_or_ref(md: &Metadata, uid: &str, viewer: &Viewer) -> Value {
    md.attribute(uid).map_or_else(|| json!({ "id": uid }), |a| attribute_json(md, a, viewer))
}

/// A tracked entity type as JSON.
pub fn tracked_entity_type_json(md: &Metadata, t: &TrackedEntityType, viewer: &Viewer) -> Value {
    let v = json!({
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
                "trackedEntityAttribute": attribute_or_ref(md, &ta.attribute, viewer),
                "trackedEntityType": {"id": t.uid},
            })
        }).collect::<Vec<_>>(),
        "access": viewer.access(Some(&t.sharing), authority::TRACKED_ENTITY_TYPE, true),
    });
    with_sharing(v, &t.sharing)
}

/// A data element as JSON.
pub fn data_element_json(md: &Metadata, d: &DataElement, viewer: &Viewer) -> Value {
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
        "access": viewer.access(None, authority::DATA_ELEMENT, false),
    });
    if let Some(os) = option_set_ref(md, d.option_set.as_deref(), viewer) {
        v["optionSet"] = os;
        v["optionSetValue"] = json!(true);
    } else {
        v["optionSetValue"] = json!(false);
    }
    v
}

/// A program stage as JSON (data elements embedded).
pub fn program_stage_json(md: &Metadata, s: &ProgramStage, viewer: &Viewer) -> Value {
    let v = json!({
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
                .map_or_else(|| json!({"id": psde.data_element}), |d| data_element_json(md, d, viewer)),
            "access": viewer.access(None, authority::PROGRAM_STAGE, false),
        })).collect::<Vec<_>>(),
        "programStageSections": [],
        "access": viewer.access(Some(&s.sharing), authority::PROGRAM_STAGE, true),
    });
    with_sharing(v, &s.sharing)
}

/// A program as JSON (attributes and stages embedded, org units as references).
pub fn program_json(md: &Metadata, p: &Program, org_units: &[OrgUnit], viewer: &Viewer) -> Value {
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
                "trackedEntityAttribute": attribute_or_ref(md, &pa.attribute, viewer),
                "access": viewer.access(None, authority::PROGRAM, false),
            })
        })
        .collect();
    let stages: Vec<Value> = p
        .stages
        .iter()
        .map(|s| md.stage(s).map_or_else(|| json!({"id": s}), |st| program_stage_json(md, st, viewer)))
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
        // DHIS2's default category combination (every program of the seed uses it).
        "categoryCombo": {"id": "bjDvmb4bfuf", "name": "default", "displayName": "default", "isDefault": true,
            "categories": [{"id": "GLevLNI9wkl", "name": "default", "displayName": "default"}]},
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
            tet.map_or_else(|| json!({"id": p.tracked_entity_type}), |t| tracked_entity_type_json(md, t, viewer)),
        );
        m.insert("programTrackedEntityAttributes".into(), Value::Array(attributes));
        m.insert("programStages".into(), Value::Array(stages));
        m.insert("organisationUnits".into(), Value::Array(ous));
        m.insert("access".into(), viewer.access(Some(&p.sharing), authority::PROGRAM, true));
    }
    with_sharing(v, &p.sharing)
}
