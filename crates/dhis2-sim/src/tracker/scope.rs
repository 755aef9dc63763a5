//! What a user may see and write: capture org units (write, and ownership for protected
//! programs) and search org units (read; capture ones when none are set), by path prefix.
//! Superusers (authority `ALL`) reach everything.

use rusqlite::Connection;

use crate::db::{self, OrgUnitKind, User};

/// The org unit scope of the authenticated user.
#[derive(Debug, Clone)]
pub struct UserScope {
    /// User UID.
    pub uid: String,
    /// Username (recorded as `storedBy` / `createdBy`).
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// First name.
    pub first_name: String,
    /// Surname.
    pub surname: String,
    /// Superuser (authority `ALL`).
    pub superuser: bool,
    /// Paths of the capture org units.
    pub capture: Vec<String>,
    /// Paths of the search org units (the capture ones when none are assigned).
    pub search: Vec<String>,
    /// UIDs of the capture org units.
    pub capture_uids: Vec<String>,
    /// UIDs of the search org units.
    pub search_uids: Vec<String>,
}

/// Whether `path` is `root` or below it.
pub fn path_within(path: &str, root: &str) -> bool {
    path.strip_prefix(root).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl UserScope {
    /// Loads the scope of `user`.
    pub fn load(conn: &Connection, user: &User) -> rusqlite::Result<Self> {
        let capture = db::user_org_units(conn, &user.uid, OrgUnitKind::Capture)?;
        let mut search = db::user_org_units(conn, &user.uid, OrgUnitKind::Search)?;
        if search.is_empty() {
            search.clone_from(&capture);
        }
        let superuser =
            user.superuser || db::user_roles(conn, &user.uid)?.iter().any(|r| r.authorities.iter().any(|a| a == "ALL"));
        Ok(Self {
            uid: user.uid.clone(),
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            first_name: user.first_name.clone(),
            surname: user.surname.clone(),
            superuser,
            capture_uids: capture.iter().map(|o| o.uid.clone()).collect(),
            search_uids: search.iter().map(|o| o.uid.clone()).collect(),
            capture: capture.into_iter().map(|o| o.path).collect(),
            search: search.into_iter().map(|o| o.path).collect(),
        })
    }

    /// May write (and own, for protected programs) data at the org unit with this path.
    pub fn can_capture(&self, ou_path: &str) -> bool {
        self.superuser || self.capture.iter().any(|root| path_within(ou_path, root))
    }

    /// May read (search) data at the org unit with this path.
    pub fn can_search(&self, ou_path: &str) -> bool {
        self.superuser || self.search.iter().any(|root| path_within(ou_path, root)) || self.can_capture(ou_path)
    }

    /// The `createdByUserInfo` object of DHIS2 2.38+.
    pub fn user_info(&self) -> serde_json::Value {
        serde_json::json!({
            "uid": self.uid,
            "username": self.username,
            "firstName": self.first_name,
            "surname": self.surname,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefix_is_segment_wise() {
        assert!(path_within("/A/B/C", "/A/B"));
        assert!(path_within("/A/B", "/A/B"));
        assert!(!path_within("/A/BC", "/A/B"));
        assert!(!path_within("/A", "/A/B"));
    }
}
