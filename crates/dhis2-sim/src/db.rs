//! SQLite persistence: schema, migrations and the queries on users, roles and org units.
//!
//! One file `dhis2-sim.sqlite` under the data directory holds everything, so a restarted
//! simulator keeps its data. The connection sits behind a mutex; async handlers reach it with
//! [`Db::call`], which runs the closure on the blocking thread pool.

use std::{
    path::Path,
    sync::{Arc, Mutex, MutexGuard},
};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{ApiError, SimError};

/// File name of the database inside `--data`.
pub const DB_FILE: &str = "dhis2-sim.sqlite";

/// Schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS organisation_units (
    uid          TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    short_name   TEXT NOT NULL,
    code         TEXT UNIQUE,
    parent       TEXT REFERENCES organisation_units(uid),
    level        INTEGER NOT NULL,
    path         TEXT NOT NULL,
    created      TEXT NOT NULL,
    last_updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    uid           TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    first_name    TEXT NOT NULL,
    surname       TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    superuser     INTEGER NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created       TEXT NOT NULL,
    last_updated  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS user_org_units (
    user_uid     TEXT NOT NULL REFERENCES users(uid) ON DELETE CASCADE,
    org_unit_uid TEXT NOT NULL REFERENCES organisation_units(uid) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('capture', 'view', 'search')),
    PRIMARY KEY (user_uid, org_unit_uid, kind)
);
CREATE TABLE IF NOT EXISTS user_roles (
    uid  TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS user_role_authorities (
    role_uid  TEXT NOT NULL REFERENCES user_roles(uid) ON DELETE CASCADE,
    authority TEXT NOT NULL,
    PRIMARY KEY (role_uid, authority)
);
CREATE TABLE IF NOT EXISTS user_user_roles (
    user_uid TEXT NOT NULL REFERENCES users(uid) ON DELETE CASCADE,
    role_uid TEXT NOT NULL REFERENCES user_roles(uid) ON DELETE CASCADE,
    PRIMARY KEY (user_uid, role_uid)
);
";

/// Tracker data and metadata tables. Every statement is `IF NOT EXISTS`, so this runs on each
/// open without a schema version bump (other tables may be added by other features meanwhile).
///
/// Tracked entities, enrollments and events carry an integer rowid used for joins and paging;
/// `ou_path` copies the org unit's path so that descendant queries are one indexed `LIKE`.
const SCHEMA_TRACKER: &str = "
CREATE TABLE IF NOT EXISTS metadata (
    key  TEXT PRIMARY KEY,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tracked_entities (
    id                     INTEGER PRIMARY KEY,
    uid                    TEXT NOT NULL UNIQUE,
    tracked_entity_type    TEXT NOT NULL,
    org_unit               TEXT NOT NULL,
    ou_path                TEXT NOT NULL,
    created                TEXT NOT NULL,
    last_updated           TEXT NOT NULL,
    created_at_client      TEXT,
    last_updated_at_client TEXT,
    created_by             TEXT NOT NULL,
    last_updated_by        TEXT NOT NULL,
    stored_by              TEXT,
    inactive               INTEGER NOT NULL DEFAULT 0,
    potential_duplicate    INTEGER NOT NULL DEFAULT 0,
    deleted                INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS te_org_unit ON tracked_entities (org_unit, id);
CREATE INDEX IF NOT EXISTS te_path ON tracked_entities (ou_path);
CREATE INDEX IF NOT EXISTS te_updated ON tracked_entities (last_updated);
CREATE TABLE IF NOT EXISTS attribute_values (
    te_id        INTEGER NOT NULL REFERENCES tracked_entities(id) ON DELETE CASCADE,
    attribute    TEXT NOT NULL,
    value        TEXT NOT NULL,
    created      TEXT NOT NULL,
    last_updated TEXT NOT NULL,
    stored_by    TEXT,
    PRIMARY KEY (te_id, attribute)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS av_value ON attribute_values (attribute, value COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS enrollments (
    id                     INTEGER PRIMARY KEY,
    uid                    TEXT NOT NULL UNIQUE,
    te_id                  INTEGER NOT NULL REFERENCES tracked_entities(id),
    program                TEXT NOT NULL,
    org_unit               TEXT NOT NULL,
    status                 TEXT NOT NULL,
    enrollment_date        TEXT NOT NULL,
    incident_date          TEXT,
    completed_date         TEXT,
    completed_by           TEXT,
    followup               INTEGER NOT NULL DEFAULT 0,
    created                TEXT NOT NULL,
    last_updated           TEXT NOT NULL,
    created_at_client      TEXT,
    last_updated_at_client TEXT,
    created_by             TEXT NOT NULL,
    last_updated_by        TEXT NOT NULL,
    stored_by              TEXT,
    deleted                INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS en_te ON enrollments (te_id, program);
CREATE INDEX IF NOT EXISTS en_program_ou ON enrollments (program, org_unit);
CREATE INDEX IF NOT EXISTS en_updated ON enrollments (last_updated);
CREATE TABLE IF NOT EXISTS program_owners (
    te_id    INTEGER NOT NULL REFERENCES tracked_entities(id) ON DELETE CASCADE,
    program  TEXT NOT NULL,
    org_unit TEXT NOT NULL,
    PRIMARY KEY (te_id, program)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id                     INTEGER PRIMARY KEY,
    uid                    TEXT NOT NULL UNIQUE,
    enrollment_id          INTEGER REFERENCES enrollments(id),
    te_id                  INTEGER REFERENCES tracked_entities(id),
    program                TEXT NOT NULL,
    program_stage          TEXT NOT NULL,
    org_unit               TEXT NOT NULL,
    ou_path                TEXT NOT NULL,
    status                 TEXT NOT NULL,
    event_date             TEXT,
    due_date               TEXT,
    completed_date         TEXT,
    completed_by           TEXT,
    created                TEXT NOT NULL,
    last_updated           TEXT NOT NULL,
    created_at_client      TEXT,
    last_updated_at_client TEXT,
    created_by             TEXT NOT NULL,
    last_updated_by        TEXT NOT NULL,
    stored_by              TEXT,
    deleted                INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ev_enrollment ON events (enrollment_id);
CREATE INDEX IF NOT EXISTS ev_te ON events (te_id);
CREATE INDEX IF NOT EXISTS ev_org_unit ON events (org_unit, id);
CREATE INDEX IF NOT EXISTS ev_updated ON events (last_updated);
CREATE TABLE IF NOT EXISTS data_values (
    event_id           INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    data_element       TEXT NOT NULL,
    value              TEXT NOT NULL,
    provided_elsewhere INTEGER NOT NULL DEFAULT 0,
    created            TEXT NOT NULL,
    last_updated       TEXT NOT NULL,
    stored_by          TEXT,
    PRIMARY KEY (event_id, data_element)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notes (
    id            INTEGER PRIMARY KEY,
    uid           TEXT NOT NULL UNIQUE,
    enrollment_id INTEGER REFERENCES enrollments(id),
    event_id      INTEGER REFERENCES events(id),
    value         TEXT NOT NULL,
    stored_by     TEXT,
    stored_date   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_event ON notes (event_id);
CREATE INDEX IF NOT EXISTS notes_enrollment ON notes (enrollment_id);
CREATE TABLE IF NOT EXISTS reserved_values (
    attribute    TEXT NOT NULL,
    value        TEXT NOT NULL,
    owner_object TEXT NOT NULL,
    key          TEXT NOT NULL,
    created      TEXT NOT NULL,
    expiry_date  TEXT NOT NULL,
    PRIMARY KEY (attribute, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS value_sequences (
    attribute TEXT NOT NULL,
    key       TEXT NOT NULL,
    counter   INTEGER NOT NULL,
    PRIMARY KEY (attribute, key)
) WITHOUT ROWID;
";

/// Shared handle on the SQLite connection.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (creating if needed) the database in `data_dir` and brings its schema up to date.
    pub fn open(data_dir: &Path) -> Result<Self, SimError> {
        std::fs::create_dir_all(data_dir)?;
        let conn = Connection::open(data_dir.join(DB_FILE))?;
        Self::from_connection(conn)
    }

    /// An in-memory database (for unit tests).
    pub fn open_in_memory() -> Result<Self, SimError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut conn: Connection) -> Result<Self, SimError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // WAL is not available for in-memory databases; the answer is then "memory".
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        migrate(&mut conn)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Locks the connection (a poisoned lock is recovered: SQLite keeps its own consistency).
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with the connection on the blocking thread pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await?
    }
}

fn migrate(conn: &mut Connection) -> Result<(), SimError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);")?;
    let found: Option<i64> =
        conn.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0)).optional()?.flatten();
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(SimError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    if found < 1 {
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA_V1)?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [1])?;
        tx.commit()?;
    }
    // Future migrations: `if found < 2 { … }`.
    conn.execute_batch(SCHEMA_TRACKER)?;
    Ok(())
}

/// Kinds of user–org unit assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrgUnitKind {
    /// Data capture (`organisationUnits`).
    Capture,
    /// Data view (`dataViewOrganisationUnits`).
    View,
    /// Tracked entity search (`teiSearchOrganisationUnits`).
    Search,
}

impl OrgUnitKind {
    /// The value stored in `user_org_units.kind`.
    pub fn as_str(&self) -> &'static str {
        match self {
            OrgUnitKind::Capture => "capture",
            OrgUnitKind::View => "view",
            OrgUnitKind::Search => "search",
        }
    }
}

/// A row of `users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// UID.
    pub uid: String,
    /// Unique login name.
    pub username: String,
    /// Encoded password hash (see `auth::hash_password`).
    pub password_hash: String,
    /// First name.
    pub first_name: String,
    /// Surname.
    pub surname: String,
    /// Display name (first name and surname).
    pub display_name: String,
    /// Superuser: holds authority `ALL`.
    pub superuser: bool,
    /// A disabled user cannot log in.
    pub disabled: bool,
    /// Creation time (ISO-8601, no zone, as DHIS2 writes it).
    pub created: String,
    /// Last update time.
    pub last_updated: String,
}

/// A row of `organisation_units`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgUnit {
    /// UID.
    pub uid: String,
    /// Name.
    pub name: String,
    /// Short name.
    pub short_name: String,
    /// Optional unique code.
    pub code: Option<String>,
    /// Parent UID (None for a root).
    pub parent: Option<String>,
    /// Level, 1 for a root.
    pub level: i64,
    /// `/root/…/uid`.
    pub path: String,
    /// Creation time.
    pub created: String,
    /// Last update time.
    pub last_updated: String,
}

/// A user role with its authorities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRole {
    /// UID.
    pub uid: String,
    /// Name.
    pub name: String,
    /// Authorities, sorted.
    pub authorities: Vec<String>,
}

const USER_COLUMNS: &str = "uid, username, password_hash, first_name, surname, display_name, \
                            superuser, disabled, created, last_updated";

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        uid: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        first_name: r.get(3)?,
        surname: r.get(4)?,
        display_name: r.get(5)?,
        superuser: r.get(6)?,
        disabled: r.get(7)?,
        created: r.get(8)?,
        last_updated: r.get(9)?,
    })
}

const OU_COLUMNS: &str = "o.uid, o.name, o.short_name, o.code, o.parent, o.level, o.path, \
                          o.created, o.last_updated";

fn org_unit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OrgUnit> {
    Ok(OrgUnit {
        uid: r.get(0)?,
        name: r.get(1)?,
        short_name: r.get(2)?,
        code: r.get(3)?,
        parent: r.get(4)?,
        level: r.get(5)?,
        path: r.get(6)?,
        created: r.get(7)?,
        last_updated: r.get(8)?,
    })
}

/// The user with this username (exact match, as DHIS2 usernames are case sensitive).
pub fn user_by_username(conn: &Connection, username: &str) -> rusqlite::Result<Option<User>> {
    conn.query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"), [username], user_from_row)
        .optional()
}

/// The user with this UID.
pub fn user_by_uid(conn: &Connection, uid: &str) -> rusqlite::Result<Option<User>> {
    conn.query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE uid = ?1"), [uid], user_from_row).optional()
}

/// Number of users.
pub fn count_users(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
}

/// Number of org units.
pub fn count_org_units(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM organisation_units", [], |r| r.get(0))
}

/// Inserts a user (fails if the UID or username exists).
pub fn insert_user(conn: &Connection, u: &User) -> rusqlite::Result<()> {
    conn.execute(
        &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            u.uid,
            u.username,
            u.password_hash,
            u.first_name,
            u.surname,
            u.display_name,
            u.superuser,
            u.disabled,
            u.created,
            u.last_updated
        ],
    )?;
    Ok(())
}

/// Sets the disabled flag of a user; returns whether a user was changed.
pub fn set_user_disabled(conn: &Connection, uid: &str, disabled: bool) -> rusqlite::Result<bool> {
    Ok(conn.execute("UPDATE users SET disabled = ?2 WHERE uid = ?1", params![uid, disabled])? > 0)
}

/// Sets a user's stored password hash; returns whether a user was changed.
pub fn set_user_password_hash(conn: &Connection, uid: &str, password_hash: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("UPDATE users SET password_hash = ?2 WHERE uid = ?1", params![uid, password_hash])? > 0)
}

/// Inserts an org unit (fails if the UID or code exists).
pub fn insert_org_unit(conn: &Connection, o: &OrgUnit) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO organisation_units (uid, name, short_name, code, parent, level, path, \
         created, last_updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![o.uid, o.name, o.short_name, o.code, o.parent, o.level, o.path, o.created, o.last_updated],
    )?;
    Ok(())
}

/// The org unit with this UID.
pub fn org_unit_by_uid(conn: &Connection, uid: &str) -> rusqlite::Result<Option<OrgUnit>> {
    conn.query_row(&format!("SELECT {OU_COLUMNS} FROM organisation_units o WHERE o.uid = ?1"), [uid], org_unit_from_row)
        .optional()
}

/// Assigns an org unit to a user for one kind (no-op if already assigned).
pub fn assign_org_unit(
    conn: &Connection,
    user_uid: &str,
    org_unit_uid: &str,
    kind: OrgUnitKind,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO user_org_units (user_uid, org_unit_uid, kind) VALUES (?1, ?2, ?3)",
        params![user_uid, org_unit_uid, kind.as_str()],
    )?;
    Ok(())
}

/// The org units assigned to a user for one kind, ordered by path.
pub fn user_org_units(conn: &Connection, user_uid: &str, kind: OrgUnitKind) -> rusqlite::Result<Vec<OrgUnit>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {OU_COLUMNS} FROM user_org_units u JOIN organisation_units o \
         ON o.uid = u.org_unit_uid WHERE u.user_uid = ?1 AND u.kind = ?2 ORDER BY o.path"
    ))?;
    let rows = stmt.query_map(params![user_uid, kind.as_str()], org_unit_from_row)?;
    rows.collect()
}

/// Inserts a role with its authorities (no-op for parts that exist).
pub fn insert_role(conn: &Connection, role: &UserRole) -> rusqlite::Result<()> {
    conn.execute("INSERT OR IGNORE INTO user_roles (uid, name) VALUES (?1, ?2)", params![role.uid, role.name])?;
    for authority in &role.authorities {
        conn.execute(
            "INSERT OR IGNORE INTO user_role_authorities (role_uid, authority) VALUES (?1, ?2)",
            params![role.uid, authority],
        )?;
    }
    Ok(())
}

/// Gives a role to a user (no-op if already given).
pub fn assign_role(conn: &Connection, user_uid: &str, role_uid: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO user_user_roles (user_uid, role_uid) VALUES (?1, ?2)",
        params![user_uid, role_uid],
    )?;
    Ok(())
}

/// The roles of a user, with authorities, ordered by name.
pub fn user_roles(conn: &Connection, user_uid: &str) -> rusqlite::Result<Vec<UserRole>> {
    let mut stmt = conn.prepare(
        "SELECT r.uid, r.name FROM user_user_roles ur JOIN user_roles r ON r.uid = ur.role_uid \
         WHERE ur.user_uid = ?1 ORDER BY r.name",
    )?;
    let roles: Vec<(String, String)> =
        stmt.query_map([user_uid], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    let mut auth_stmt =
        conn.prepare("SELECT authority FROM user_role_authorities WHERE role_uid = ?1 ORDER BY authority")?;
    roles
        .into_iter()
        .map(|(uid, name)| {
            let authorities = auth_stmt.query_map([&uid], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(UserRole { uid, name, authorities })
        })
        .collect()
}

/// A value from the `settings` table.
pub fn get_setting(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional()
}

/// Stores a value in the `settings` table.
pub fn set_setting(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Removes a value from the `settings` table.
pub fn delete_setting(conn: &Connection, key: &str) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM settings WHERE key = ?1", [key])?;
    Ok(())
}

/// The current time as DHIS2 writes timestamps: `2024-05-01T12:34:56.789` (UTC, no zone).
pub fn now_timestamp() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_created_once() {
        let db = Db::open_in_memory().expect("open");
        let conn = db.lock();
        let v: i64 = conn.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0)).expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0)).expect("count");
        assert_eq!(n, 1);
    }

    #[test]
    fn reopening_a_file_keeps_schema_version_single() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Db::open(dir.path()).expect("first open"));
        let db = Db::open(dir.path()).expect("second open");
        let n: i64 = db.lock().query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0)).expect("count");
        assert_eq!(n, 1);
    }
}
