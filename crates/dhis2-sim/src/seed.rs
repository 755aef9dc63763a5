//! The `--seed demo` data set: a small Palestinian org unit tree, roles and three users.
//!
//! All UIDs are fixed so that tests and the demo can name them. Seeding happens only when the
//! database holds no user, so restarting with `--seed demo` never duplicates anything.

use rusqlite::Connection;

use crate::db::{self, OrgUnit, OrgUnitKind, User, UserRole};

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
        SeedMode::Demo => seed_demo(conn),
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

    let users = [
        (ADMIN_UID, ADMIN_USERNAME, ADMIN_PASSWORD, "System", "Administrator", true, ROLE_SUPERUSER, OU_PALESTINE),
        (NURSE1_UID, NURSE1_USERNAME, NURSE1_PASSWORD, "Amal", "Haddad", false, ROLE_DATA_ENTRY, OU_BANI_NAIM),
        (NURSE2_UID, NURSE2_USERNAME, NURSE2_PASSWORD, "Rania", "Khalil", false, ROLE_DATA_ENTRY, OU_BANI_NAIM),
    ];
    for (uid, username, password, first, last, superuser, role, ou) in users {
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
        for kind in [OrgUnitKind::Capture, OrgUnitKind::View, OrgUnitKind::Search] {
            db::assign_org_unit(&tx, uid, ou, kind)?;
        }
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
        ] {
            assert!(uid::is_valid(u), "{u}");
        }
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
