//! The new tracker's error codes as DHIS2 words them (`ValidationCode`, core@HEAD): the message
//! of a code with its arguments. The legacy importer's words are its own (`import/*`,
//! `values::ValueProblem::legacy_conflict`).

/// The message of `code` with `args` in its `{0}`, `{1}`, … places.
pub fn message(code: &str, args: &[&str]) -> String {
    let mut out = template(code).to_owned();
    for (i, a) in args.iter().enumerate() {
        out = out.replace(&format!("{{{i}}}"), a);
    }
    out
}

/// The message template of a code (core@HEAD `ValidationCode`).
fn template(code: &str) -> &'static str {
    match code {
        "E1000" => "User: `{0}` has no capture scope access to OrganisationUnit: `{1}`.",
        "E1002" => "TrackedEntity: `{0}`, already exists.",
        "E1005" => "Could not find TrackedEntityType: `{0}`.",
        "E1006" => "Attribute: `{0}` does not exist.",
        "E1007" => "Error validating attribute value type: `{0}`; Error: `{1}`.",
        "E1010" => "Could not find Program: `{0}`, linked to Event.",
        "E1011" => "Could not find OrganisationUnit: `{0}`, linked to Event.",
        "E1013" => "Could not find ProgramStage: `{0}`, linked to Event.",
        "E1014" => {
            "Provided Program: `{0}` is a Program without registration. An Enrollment cannot be created into Program without registration."
        }
        "E1015" => "TrackedEntity: `{0}` already has an active Enrollment in Program `{1}`.",
        "E1016" => "TrackedEntity: `{0}` already has an Enrollment in Program: `{1}`, and this Program only allows enrolling once.",
        "E1018" => "Attribute: `{0}` is mandatory in Program `{1}` but not declared in Enrollment `{2}`.",
        "E1025" => "Property enrolledAt is null.",
        "E1029" => "Event OrganisationUnit: `{0}` and Program: `{1}`, do not match.",
        "E1030" => "Event: `{0}` already exists.",
        "E1031" => "Event occurredAt date is missing.",
        "E1032" => "Event: `{0}` do not exist.",
        "E1033" => "Event: `{0}` Enrollment value is null.",
        "E1039" => "ProgramStage: `{0}` is not repeatable and an Event already exists.",
        "E1041" => "Enrollment OrganisationUnit: `{0}` and Program: `{1}` do not match.",
        "E1048" => "Object: `{0}`, uid: `{1}`, has an invalid uid format.",
        "E1049" => "Could not find OrganisationUnit: `{0}` linked to TrackedEntity.",
        "E1050" => "Event ScheduledAt date is missing.",
        "E1063" => "TrackedEntity: `{0}`, does not exist.",
        "E1064" => "Non-unique attribute value `{0}` for attribute `{1}`.",
        "E1068" => "Could not find TrackedEntity: `{0}` linked to Enrollment.",
        "E1069" => "Could not find Program: `{0}` linked to Enrollment.",
        "E1070" => "Could not find OrganisationUnit: `{0}` linked to Enrollment.",
        "E1075" => "Attribute: `{0}` UID is missing.",
        "E1079" => "Event: `{0}` Program: `{1}` is different from Program defined in Enrollment `{2}`.",
        "E1080" => "Enrollment: `{0}` already exists.",
        "E1081" => "Enrollment: `{0}` do not exist.",
        "E1082" => "Event: `{0}` is already deleted and cannot be modified.",
        "E1083" => "User: `{0}` is not authorized to update completed Events.",
        "E1089" => "Event: `{0}` references ProgramStage `{1}` which do not belong to Program `{2}`.",
        "E1100" => "User: `{0}` lacks 'F_TEI_CASCADE_DELETE' authority to delete TrackedEntity: `{1}`.",
        "E1102" => "User: `{0}` does not have access to the TrackedEntity: `{1}` and Program: `{2}`.",
        "E1103" => "User: `{0}` lacks 'F_ENROLLMENT_CASCADE_DELETE' authority to delete Enrollment : `{1}`.",
        "E1113" => "Enrollment: `{0}` is already deleted and cannot be modified.",
        "E1114" => "TrackedEntity: `{0}` is already deleted and cannot be modified.",
        "E1119" => "A Tracker Note with uid `{0}` already exists.",
        "E1121" => "Missing required trackedEntity property: `{0}`.",
        "E1122" => "Missing required enrollment property: `{0}`.",
        "E1123" => "Missing required event property: `{0}`.",
        "E1125" => "Value `{0}` is not a valid option code in OptionSet `{1}`.",
        "E1302" => "DataElement `{0}` is not valid: `{1}`.",
        "E1304" => "DataElement `{0}` is not a valid DataElement.",
        "E1305" => "DataElement `{0}` is not part of ProgramStage `{1}`.",
        "E5000" => "{0} `{1}` cannot be created because {2} `{3}` referenced by it could not be created.",
        _ => "{0}",
    }
}
