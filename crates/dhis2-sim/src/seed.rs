//! The `--seed demo` data set: a small Palestinian org unit tree, roles, users and a maternal
//! and child health (MCH) tracker program.
//!
//! All UIDs are fixed so that tests and the demo can name them. Users and org units are seeded
//! only when the database holds no user, the metadata only when none is stored, so restarting
//! with `--seed demo` never duplicates anything.
//!
//! About 670 lines, 80 of them tests: the demo's data is listed here whole (org units, users,
//! roles, the program with its stages and data elements), where a reader looks for a UID.

use rusqlite::Connection;

use crate::{
    db::{self, OrgUnit, OrgUnitKind, User, UserRole},
    model::{
        Attribute, DataElement, Metadata, OptionItem, OptionSet, Program, ProgramAttribute, ProgramStage, Sharing,
        StageDataElement, TrackedEntityType, TypeAttribute, UserGroup,
    },
};

/// Org unit "Palestine" (level 1, root).
pub const OU_PALESTINE: &str = "OuPalestin1";
/// Org unit "Hebron District" (level 2).
pub const OU_HEBRON: &str = "OuHebronDs1";
/// Org unit "Bani Naim Clinic" (level 3): the nurses' clinic.
pub const OU_BANI_NAIM: &str = "OuBaniNaim1";
/// Org unit "Dura Clinic" (level 3).
pub const OU_DURA: &str = "OuDuraClin1";
/// Org unit "Yatta Clinic" (level 3).
pub const OU_YATTA: &str = "OuYattaCln1";

/// Role "Superuser" (authority `ALL`).
pub const ROLE_SUPERUSER: &str = "UrSuperUsr1";
/// Role "Tracker data entry" (the nurses' role).
pub const ROLE_DATA_ENTRY: &str = "UrDataEntr1";

/// UID of user `admin`.
pub const ADMIN_UID: &str = "UsAdmin0001";
/// Username of the superuser.
pub const ADMIN_USERNAME: &str = "admin";
/// Password of `admin` (the classic DHIS2 demo password).
pub const ADMIN_PASSWORD: &str = "district";
/// Display name of `admin`.
pub const ADMIN_DISPLAY_NAME: &str = "System Administrator";

/// UID of user `nurse1`.
pub const NURSE1_UID: &str = "UsNurse0001";
/// Username of the first nurse.
pub const NURSE1_USERNAME: &str = "nurse1";
/// Password of `nurse1`.
pub const NURSE1_PASSWORD: &str = "Nurse1!clinic";
/// Display name of `nurse1`.
pub const NURSE1_DISPLAY_NAME: &str = "Amal Haddad";

/// UID of user `nurse2`.
pub const NURSE2_UID: &str = "UsNurse0002";
/// Username of the second nurse.
pub const NURSE2_USERNAME: &str = "nurse2";
/// Password of `nurse2`.
pub const NURSE2_PASSWORD: &str = "Nurse2!clinic";
/// Display name of `nurse2`.
pub const NURSE2_DISPLAY_NAME: &str = "Rania Khalil";

/// UID of user `midwife1`: captures in Bani Naim but searches the whole Hebron district, so
/// she meets DHIS2's ownership check (401 `OWNERSHIP_ACCESS_DENIED`) on other clinics' women.
pub const MIDWIFE1_UID: &str = "UsMidwife01";
/// Username of the midwife.
pub const MIDWIFE1_USERNAME: &str = "midwife1";
/// Password of `midwife1`.
pub const MIDWIFE1_PASSWORD: &str = "Midwife1!district";
/// Display name of `midwife1`.
pub const MIDWIFE1_DISPLAY_NAME: &str = "Huda Saleh";

/// Tracked entity type "Person".
pub const TET_PERSON: &str = "TetPerson01";
/// Attribute "National ID" (TEXT, unique, not generated).
pub const ATTR_NATIONAL_ID: &str = "AtNationId1";
/// Attribute "First name" (TEXT).
pub const ATTR_FIRST_NAME: &str = "AtFirstNam1";
/// Attribute "Last name" (TEXT).
pub const ATTR_LAST_NAME: &str = "AtLastName1";
/// Attribute "Date of birth" (DATE).
pub const ATTR_DOB: &str = "AtBirthDat1";
/// Attribute "Phone number" (PHONE_NUMBER).
pub const ATTR_PHONE: &str = "AtPhoneNum1";
/// Attribute "Registration number" (TEXT, unique, generated from [`REG_NUMBER_PATTERN`]).
pub const ATTR_REG_NUMBER: &str = "AtRegNumbr1";
/// Text pattern of the registration number.
pub const REG_NUMBER_PATTERN: &str = "\"MCH-\" + SEQUENTIAL(######)";

/// Program "Maternal and Child Health" (WITH_REGISTRATION, PROTECTED).
pub const PROGRAM_MCH: &str = "PrMchProg01";
/// Program stage "ANC visit" (repeatable).
pub const STAGE_ANC: &str = "PsAncVisit1";
/// Program stage "Delivery".
pub const STAGE_DELIVERY: &str = "PsDelivery1";
/// Program stage "Postnatal care".
pub const STAGE_POSTNATAL: &str = "PsPostnatl1";
/// Program stage "Newborn".
pub const STAGE_NEWBORN: &str = "PsNewborn01";

/// Program "Child nutrition" (WITH_REGISTRATION, Dura and Yatta): shared with the
/// [`GROUP_NUTRITION`] group only, so the nurses cannot see it at all; the superuser can.
pub const PROGRAM_NUTRITION: &str = "PrNutrit001";
/// Program stage "Nutrition visit" of [`PROGRAM_NUTRITION`].
pub const STAGE_NUTRITION: &str = "PsNutVisit1";

/// User group "MCH nurses": nurse1, nurse2 and midwife1. The MCH program, its stages and the
/// Person type give it data read and write ([`NURSES_ACCESS`]).
pub const GROUP_MCH_NURSES: &str = "UgMchNurse1";
/// User group "Nutrition officers" (no members in the demo).
pub const GROUP_NUTRITION: &str = "UgNutrOff01";
/// Public access of the demo's shared metadata: metadata read and write, no data.
pub const PUBLIC_ACCESS: &str = "rw------";
/// Access of [`GROUP_MCH_NURSES`]: metadata read, data read and write.
pub const NURSES_ACCESS: &str = "r-rw----";

/// Data element "Weight (kg)" (NUMBER).
pub const DE_WEIGHT: &str = "DeWeightKg1";
/// Data element "Gestational age (weeks)" (INTEGER_POSITIVE).
pub const DE_GEST_WEEKS: &str = "DeGestWeek1";
/// Data element "Systolic blood pressure" (INTEGER_POSITIVE).
pub const DE_BP_SYSTOLIC: &str = "DeBpSystol1";
/// Data element "Haemoglobin (g/dL)" (NUMBER).
pub const DE_HAEMOGLOBIN: &str = "DeHaemoglb1";
/// Data element "Danger signs present" (BOOLEAN).
pub const DE_DANGER_SIGNS: &str = "DeDangerSg1";
/// Data element "Next visit date" (DATE).
pub const DE_NEXT_VISIT: &str = "DeNextVisi1";
/// Data element "Remarks" (TEXT).
pub const DE_REMARKS: &str = "DeRemarks01";
/// Data element "Delivery mode" (TEXT, option set [`OS_DELIVERY_MODE`]).
pub const DE_DELIVERY_MODE: &str = "DeDelivMod1";
/// Data element "Delivery date" (DATE).
pub const DE_DELIVERY_DATE: &str = "DeDelivDat1";
/// Data element "Birth outcome" (TEXT, option set [`OS_BIRTH_OUTCOME`]).
pub const DE_BIRTH_OUTCOME: &str = "DeBirthOut1";
/// Data element "Exclusive breastfeeding" (TRUE_ONLY).
pub const DE_BREASTFEEDING: &str = "DeBreastFd1";
/// Data element "Birth weight (g)" (INTEGER_POSITIVE).
pub const DE_BIRTH_WEIGHT: &str = "DeBirthWgt1";
/// Data element "Newborn sex" (TEXT, option set [`OS_SEX`]).
pub const DE_NEWBORN_SEX: &str = "DeNewbSex01";
/// Data element "APGAR score at 5 min" (INTEGER_ZERO_OR_POSITIVE).
pub const DE_APGAR: &str = "DeApgarScr1";

/// Option set "Delivery mode": `NORMAL`, `CAESAREAN`, `ASSISTED`.
pub const OS_DELIVERY_MODE: &str = "OsDelivMod1";
/// Option set "Birth outcome": `LIVE_BIRTH`, `STILLBIRTH`.
pub const OS_BIRTH_OUTCOME: &str = "OsBirthOut1";
/// Option set "Sex": `FEMALE`, `MALE`.
pub const OS_SEX: &str = "OsSex000001";

/// Authorities of the nurses' role (no `F_UNCOMPLETE_EVENT`, no cascade deletes).
pub const DATA_ENTRY_AUTHORITIES: &[&str] = &[
    "F_PROGRAM_ENROLLMENT",
    "F_PROGRAM_UNENROLLMENT",
    "F_TRACKED_ENTITY_INSTANCE_ADD",
    "F_TRACKED_ENTITY_INSTANCE_DELETE",
    "M_dhis-web-capture",
    "M_dhis-web-tracker-capture",
];

/// Seed sets selectable with `--seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeedMode {
    /// Seed nothing.
    #[default]
    None,
    /// The demo data set of this module.
    Demo,
}

impl std::str::FromStr for SeedMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "demo" => Ok(SeedMode::Demo),
            "none" => Ok(SeedMode::None),
            other => Err(format!("unknown seed '{other}' (expected: demo, none)")),
        }
    }
}

/// Applies a seed mode; returns whether anything was written.
pub fn apply(conn: &mut Connection, mode: SeedMode) -> rusqlite::Result<bool> {
    match mode {
        SeedMode::None => Ok(false),
        SeedMode::Demo => {
            let users = seed_demo(conn)?;
            let metadata = seed_metadata(conn)?;
            Ok(users || metadata)
        }
    }
}

/// Writes the MCH metadata if none is stored yet; returns whether it did.
pub fn seed_metadata(conn: &mut Connection) -> rusqlite::Result<bool> {
    if Metadata::exists(conn)? {
        return Ok(false);
    }
    demo_metadata().save(conn)?;
    Ok(true)
}

fn attr(uid: &str, name: &str, code: &str, value_type: &str, unique: bool) -> Attribute {
    Attribute {
        uid: uid.into(),
        name: name.into(),
        short_name: name.into(),
        code: code.into(),
        value_type: value_type.into(),
        unique,
        generated: false,
        pattern: None,
        option_set: None,
        display_in_list_no_program: true,
    }
}

fn de(uid: &str, name: &str, code: &str, value_type: &str, option_set: Option<&str>) -> DataElement {
    DataElement {
        uid: uid.into(),
        name: name.into(),
        short_name: name.into(),
        code: code.into(),
        value_type: value_type.into(),
        option_set: option_set.map(Into::into),
    }
}

fn option_set(uid: &str, name: &str, options: &[(&str, &str, &str)]) -> OptionSet {
    OptionSet {
        uid: uid.into(),
        name: name.into(),
        value_type: "TEXT".into(),
        version: 1,
        options: options
            .iter()
            .map(|(u, code, name)| OptionItem { uid: (*u).into(), code: (*code).into(), name: (*name).into() })
            .collect(),
    }
}

/// Sharing of the MCH program, its stages and the Person type.
fn mch_sharing() -> Sharing {
    Sharing::public(PUBLIC_ACCESS).with_group(GROUP_MCH_NURSES, NURSES_ACCESS)
}

/// Sharing of the nutrition program and its stage: no public access at all.
fn nutrition_sharing() -> Sharing {
    Sharing::public("--------").with_group(GROUP_NUTRITION, "rwrw----")
}

fn stage(uid: &str, name: &str, sort_order: i64, repeatable: bool, days: i64, des: &[&str]) -> ProgramStage {
    ProgramStage {
        uid: uid.into(),
        name: name.into(),
        program: PROGRAM_MCH.into(),
        sharing: mch_sharing(),
        repeatable,
        sort_order,
        auto_generate_event: false,
        min_days_from_start: days,
        execution_date_label: format!("{name} date"),
        data_elements: des
            .iter()
            .enumerate()
            .map(|(i, d)| StageDataElement {
                // "Sd" + 7 characters of the stage + 2 digits: 11 characters.
                uid: format!("Sd{}{:02}", &uid[2..9], i + 1),
                data_element: (*d).into(),
                compulsory: false,
                sort_order: i64::try_from(i).unwrap_or(0) + 1,
            })
            .collect(),
    }
}

/// The MCH tracker metadata of the demo.
pub fn demo_metadata() -> Metadata {
    let mut reg = attr(ATTR_REG_NUMBER, "Registration number", "MCH_REG_NUMBER", "TEXT", true);
    reg.generated = true;
    reg.pattern = Some(REG_NUMBER_PATTERN.into());
    let attributes = vec![
        attr(ATTR_NATIONAL_ID, "National ID", "NATIONAL_ID", "TEXT", true),
        attr(ATTR_FIRST_NAME, "First name", "FIRST_NAME", "TEXT", false),
        attr(ATTR_LAST_NAME, "Last name", "LAST_NAME", "TEXT", false),
        attr(ATTR_DOB, "Date of birth", "DATE_OF_BIRTH", "DATE", false),
        attr(ATTR_PHONE, "Phone number", "PHONE_NUMBER", "PHONE_NUMBER", false),
        reg,
    ];
    // (attribute, link suffix, mandatory, displayInList)
    let links: [(&str, &str, bool, bool); 6] = [
        (ATTR_NATIONAL_ID, "NationId", true, true),
        (ATTR_FIRST_NAME, "FirstNam", true, true),
        (ATTR_LAST_NAME, "LastName", true, true),
        (ATTR_DOB, "BirthDat", true, true),
        (ATTR_PHONE, "PhoneNum", false, true),
        (ATTR_REG_NUMBER, "RegNumbr", false, true),
    ];
    let tet = TrackedEntityType {
        uid: TET_PERSON.into(),
        name: "Person".into(),
        attributes: links
            .iter()
            .map(|(a, suffix, _, list)| TypeAttribute {
                uid: format!("Ta{suffix}1"),
                attribute: (*a).into(),
                mandatory: false,
                searchable: true,
                display_in_list: *list,
            })
            .collect(),
        sharing: mch_sharing(),
    };
    let program = Program {
        uid: PROGRAM_MCH.into(),
        name: "Maternal and Child Health".into(),
        short_name: "MCH".into(),
        code: "MCH".into(),
        version: 1,
        program_type: "WITH_REGISTRATION".into(),
        tracked_entity_type: TET_PERSON.into(),
        access_level: "PROTECTED".into(),
        attributes: links
            .iter()
            .enumerate()
            .map(|(i, (a, suffix, mandatory, list))| ProgramAttribute {
                uid: format!("Pa{suffix}1"),
                attribute: (*a).into(),
                mandatory: *mandatory,
                searchable: true,
                display_in_list: *list,
                sort_order: i64::try_from(i).unwrap_or(0) + 1,
            })
            .collect(),
        stages: vec![STAGE_ANC.into(), STAGE_DELIVERY.into(), STAGE_POSTNATAL.into(), STAGE_NEWBORN.into()],
        org_units: vec![OU_BANI_NAIM.into(), OU_DURA.into(), OU_YATTA.into()],
        enrollment_date_label: "Date of registration".into(),
        incident_date_label: "Last menstrual period".into(),
        display_incident_date: true,
        only_enroll_once: false,
        sharing: mch_sharing(),
    };
    let nutrition = Program {
        uid: PROGRAM_NUTRITION.into(),
        name: "Child nutrition".into(),
        short_name: "Nutrition".into(),
        code: "NUTRITION".into(),
        version: 1,
        program_type: "WITH_REGISTRATION".into(),
        tracked_entity_type: TET_PERSON.into(),
        access_level: "OPEN".into(),
        attributes: [(ATTR_FIRST_NAME, "PnFirstNam1"), (ATTR_LAST_NAME, "PnLastName1")]
            .iter()
            .enumerate()
            .map(|(i, (a, link))| ProgramAttribute {
                uid: (*link).into(),
                attribute: (*a).into(),
                mandatory: true,
                searchable: true,
                display_in_list: true,
                sort_order: i64::try_from(i).unwrap_or(0) + 1,
            })
            .collect(),
        stages: vec![STAGE_NUTRITION.into()],
        org_units: vec![OU_DURA.into(), OU_YATTA.into()],
        enrollment_date_label: "Date of enrollment".into(),
        incident_date_label: "Date of birth".into(),
        display_incident_date: false,
        only_enroll_once: true,
        sharing: nutrition_sharing(),
    };
    let mut nutrition_visit = stage(STAGE_NUTRITION, "Nutrition visit", 1, true, 0, &[DE_WEIGHT, DE_REMARKS]);
    nutrition_visit.program = PROGRAM_NUTRITION.into();
    nutrition_visit.sharing = nutrition_sharing();
    Metadata {
        tracked_entity_types: vec![tet],
        attributes,
        option_sets: vec![
            option_set(
                OS_DELIVERY_MODE,
                "Delivery mode",
                &[
                    ("OpDelivNor1", "NORMAL", "Normal"),
                    ("OpDelivCae1", "CAESAREAN", "Caesarean"),
                    ("OpDelivAss1", "ASSISTED", "Assisted"),
                ],
            ),
            option_set(
                OS_BIRTH_OUTCOME,
                "Birth outcome",
                &[("OpLiveBirt1", "LIVE_BIRTH", "Live birth"), ("OpStillBir1", "STILLBIRTH", "Stillbirth")],
            ),
            option_set(OS_SEX, "Sex", &[("OpSexFemal1", "FEMALE", "Female"), ("OpSexMale01", "MALE", "Male")]),
        ],
        data_elements: vec![
            de(DE_WEIGHT, "Weight (kg)", "MCH_WEIGHT", "NUMBER", None),
            de(DE_GEST_WEEKS, "Gestational age (weeks)", "MCH_GEST_WEEKS", "INTEGER_POSITIVE", None),
            de(DE_BP_SYSTOLIC, "Systolic blood pressure", "MCH_BP_SYSTOLIC", "INTEGER_POSITIVE", None),
            de(DE_HAEMOGLOBIN, "Haemoglobin (g/dL)", "MCH_HB", "NUMBER", None),
            de(DE_DANGER_SIGNS, "Danger signs present", "MCH_DANGER_SIGNS", "BOOLEAN", None),
            de(DE_NEXT_VISIT, "Next visit date", "MCH_NEXT_VISIT", "DATE", None),
            de(DE_REMARKS, "Remarks", "MCH_REMARKS", "TEXT", None),
            de(DE_DELIVERY_MODE, "Delivery mode", "MCH_DELIVERY_MODE", "TEXT", Some(OS_DELIVERY_MODE)),
            de(DE_DELIVERY_DATE, "Delivery date", "MCH_DELIVERY_DATE", "DATE", None),
            de(DE_BIRTH_OUTCOME, "Birth outcome", "MCH_BIRTH_OUTCOME", "TEXT", Some(OS_BIRTH_OUTCOME)),
            de(DE_BREASTFEEDING, "Exclusive breastfeeding", "MCH_BREASTFEEDING", "TRUE_ONLY", None),
            de(DE_BIRTH_WEIGHT, "Birth weight (g)", "MCH_BIRTH_WEIGHT", "INTEGER_POSITIVE", None),
            de(DE_NEWBORN_SEX, "Newborn sex", "MCH_NEWBORN_SEX", "TEXT", Some(OS_SEX)),
            de(DE_APGAR, "APGAR score at 5 min", "MCH_APGAR", "INTEGER_ZERO_OR_POSITIVE", None),
        ],
        programs: vec![program, nutrition],
        program_stages: vec![
            stage(
                STAGE_ANC,
                "ANC visit",
                1,
                true,
                0,
                &[DE_WEIGHT, DE_GEST_WEEKS, DE_BP_SYSTOLIC, DE_HAEMOGLOBIN, DE_DANGER_SIGNS, DE_NEXT_VISIT, DE_REMARKS],
            ),
            stage(
                STAGE_DELIVERY,
                "Delivery",
                2,
                false,
                270,
                &[DE_DELIVERY_DATE, DE_DELIVERY_MODE, DE_BIRTH_OUTCOME, DE_REMARKS],
            ),
            stage(
                STAGE_POSTNATAL,
                "Postnatal care",
                3,
                true,
                280,
                &[DE_WEIGHT, DE_BP_SYSTOLIC, DE_BREASTFEEDING, DE_DANGER_SIGNS, DE_REMARKS],
            ),
            stage(
                STAGE_NEWBORN,
                "Newborn",
                4,
                false,
                270,
                &[DE_BIRTH_WEIGHT, DE_NEWBORN_SEX, DE_APGAR, DE_BREASTFEEDING],
            ),
            nutrition_visit,
        ],
        user_groups: vec![
            UserGroup {
                uid: GROUP_MCH_NURSES.into(),
                name: "MCH nurses".into(),
                members: vec![NURSE1_UID.into(), NURSE2_UID.into(), MIDWIFE1_UID.into()],
            },
            UserGroup { uid: GROUP_NUTRITION.into(), name: "Nutrition officers".into(), members: Vec::new() },
        ],
    }
}

/// Writes the demo data set in one transaction if the database holds no user yet; returns
/// whether it did.
pub fn seed_demo(conn: &mut Connection) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    if db::count_users(&tx)? > 0 {
        return Ok(false);
    }
    let now = db::now_timestamp();

    let org_units: [(&str, &str, &str, Option<&str>); 5] = [
        (OU_PALESTINE, "Palestine", "PS", None),
        (OU_HEBRON, "Hebron District", "PS_HEBRON", Some(OU_PALESTINE)),
        (OU_BANI_NAIM, "Bani Naim Clinic", "PS_HEBRON_BANI_NAIM", Some(OU_HEBRON)),
        (OU_DURA, "Dura Clinic", "PS_HEBRON_DURA", Some(OU_HEBRON)),
        (OU_YATTA, "Yatta Clinic", "PS_HEBRON_YATTA", Some(OU_HEBRON)),
    ];
    for (uid, name, code, parent) in org_units {
        let (level, path) = match parent {
            None => (1, format!("/{uid}")),
            Some(p) => {
                let parent = db::org_unit_by_uid(&tx, p)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                (parent.level + 1, format!("{}/{uid}", parent.path))
            }
        };
        if db::org_unit_by_uid(&tx, uid)?.is_none() {
            db::insert_org_unit(
                &tx,
                &OrgUnit {
                    uid: uid.into(),
                    name: name.into(),
                    short_name: name.into(),
                    code: Some(code.into()),
                    parent: parent.map(Into::into),
                    level,
                    path,
                    created: now.clone(),
                    last_updated: now.clone(),
                },
            )?;
        }
    }

    db::insert_role(
        &tx,
        &UserRole { uid: ROLE_SUPERUSER.into(), name: "Superuser".into(), authorities: vec!["ALL".into()] },
    )?;
    db::insert_role(
        &tx,
        &UserRole {
            uid: ROLE_DATA_ENTRY.into(),
            name: "Tracker data entry".into(),
            authorities: DATA_ENTRY_AUTHORITIES.iter().map(|a| (*a).into()).collect(),
        },
    )?;

    // (uid, username, password, first name, surname, superuser, role, capture org unit,
    // view and search org unit)
    let users = [
        (
            ADMIN_UID,
            ADMIN_USERNAME,
            ADMIN_PASSWORD,
            "System",
            "Administrator",
            true,
            ROLE_SUPERUSER,
            OU_PALESTINE,
            OU_PALESTINE,
        ),
        (
            NURSE1_UID,
            NURSE1_USERNAME,
            NURSE1_PASSWORD,
            "Amal",
            "Haddad",
            false,
            ROLE_DATA_ENTRY,
            OU_BANI_NAIM,
            OU_BANI_NAIM,
        ),
        (
            NURSE2_UID,
            NURSE2_USERNAME,
            NURSE2_PASSWORD,
            "Rania",
            "Khalil",
            false,
            ROLE_DATA_ENTRY,
            OU_BANI_NAIM,
            OU_BANI_NAIM,
        ),
        (
            MIDWIFE1_UID,
            MIDWIFE1_USERNAME,
            MIDWIFE1_PASSWORD,
            "Huda",
            "Saleh",
            false,
            ROLE_DATA_ENTRY,
            OU_BANI_NAIM,
            OU_HEBRON,
        ),
    ];
    for (uid, username, password, first, last, superuser, role, ou, search_ou) in users {
        db::insert_user(
            &tx,
            &User {
                uid: uid.into(),
                username: username.into(),
                password_hash: crate::auth::hash_password(password),
                first_name: first.into(),
                surname: last.into(),
                display_name: format!("{first} {last}"),
                superuser,
                disabled: false,
                created: now.clone(),
                last_updated: now.clone(),
            },
        )?;
        db::assign_role(&tx, uid, role)?;
        db::assign_org_unit(&tx, uid, ou, OrgUnitKind::Capture)?;
        db::assign_org_unit(&tx, uid, search_ou, OrgUnitKind::View)?;
        db::assign_org_unit(&tx, uid, search_ou, OrgUnitKind::Search)?;
    }
    tx.commit()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{db::Db, uid};

    #[test]
    fn constants_are_valid_uids() {
        for u in [
            OU_PALESTINE,
            OU_HEBRON,
            OU_BANI_NAIM,
            OU_DURA,
            OU_YATTA,
            ROLE_SUPERUSER,
            ROLE_DATA_ENTRY,
            ADMIN_UID,
            NURSE1_UID,
            NURSE2_UID,
            MIDWIFE1_UID,
            TET_PERSON,
            ATTR_NATIONAL_ID,
            ATTR_FIRST_NAME,
            ATTR_LAST_NAME,
            ATTR_DOB,
            ATTR_PHONE,
            ATTR_REG_NUMBER,
            PROGRAM_MCH,
            STAGE_ANC,
            STAGE_DELIVERY,
            STAGE_POSTNATAL,
            STAGE_NEWBORN,
            OS_DELIVERY_MODE,
            OS_BIRTH_OUTCOME,
            OS_SEX,
            PROGRAM_NUTRITION,
            STAGE_NUTRITION,
            GROUP_MCH_NURSES,
            GROUP_NUTRITION,
        ] {
            assert!(uid::is_valid(u), "{u}");
        }
    }

    #[test]
    fn metadata_uids_are_valid_and_distinct() {
        let md = demo_metadata();
        let mut all: Vec<String> = Vec::new();
        all.extend(md.attributes.iter().map(|a| a.uid.clone()));
        all.extend(md.data_elements.iter().map(|d| d.uid.clone()));
        all.extend(md.option_sets.iter().flat_map(|o| o.options.iter().map(|x| x.uid.clone())));
        all.extend(md.option_sets.iter().map(|o| o.uid.clone()));
        all.extend(md.program_stages.iter().flat_map(|s| s.data_elements.iter().map(|d| d.uid.clone())));
        all.extend(md.program_stages.iter().map(|s| s.uid.clone()));
        all.extend(md.programs.iter().flat_map(|p| p.attributes.iter().map(|a| a.uid.clone())));
        all.extend(md.tracked_entity_types.iter().flat_map(|t| t.attributes.iter().map(|a| a.uid.clone())));
        for u in &all {
            assert!(uid::is_valid(u), "{u}");
        }
        let distinct: std::collections::HashSet<&String> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
    }

    #[test]
    fn demo_tree_and_users() {
        let db = Db::open_in_memory().expect("db");
        let mut conn = db.lock();
        assert!(seed_demo(&mut conn).expect("seed"));
        let clinic = db::org_unit_by_uid(&conn, OU_BANI_NAIM).expect("query").expect("clinic");
        assert_eq!(clinic.level, 3);
        assert_eq!(clinic.path, format!("/{OU_PALESTINE}/{OU_HEBRON}/{OU_BANI_NAIM}"));
        let admin = db::user_by_username(&conn, ADMIN_USERNAME).expect("query").expect("admin");
        assert_eq!(admin.display_name, ADMIN_DISPLAY_NAME);
        assert!(admin.superuser);
        let nurse = db::user_by_uid(&conn, NURSE2_UID).expect("query").expect("nurse2");
        assert_eq!(nurse.display_name, NURSE2_DISPLAY_NAME);
        let ous = db::user_org_units(&conn, NURSE1_UID, OrgUnitKind::Search).expect("ous");
        assert_eq!(ous.len(), 1);
        assert_eq!(ous[0].uid, OU_BANI_NAIM);
    }
}
