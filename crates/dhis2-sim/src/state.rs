//! Shared application state handed to every handler: database, sessions, server version.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
};

use crate::{
    auth::{LoginLockout, Sessions},
    db::{self, Db},
    error::SimError,
    version::ServerVersion,
};

/// Cheap to clone handle on the simulator's state.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    sessions: Sessions,
    /// Failed logins per username (`keyLockMultipleFailedLogins`).
    login_lockout: LoginLockout,
    version: ServerVersion,
    system_id: String,
    faults: crate::faults::Faults,
    tracker_jobs: crate::api::tracker::Jobs,
    /// Static apps served at `/NAME/` (`--app NAME=DIR`), listed by `/api/apps`.
    apps: RwLock<Vec<(String, PathBuf)>>,
    /// Apps installed through `POST /api/apps`.
    installed_apps: crate::api::apps::InstalledApps,
    /// The org unit tree selection of each user (`/dhis-web-commons/ouwt/*.action`).
    ou_selection: Mutex<HashMap<String, Vec<String>>>,
}

impl AppState {
    /// State over an opened database. The system id is read from (or created in) the database,
    /// so it survives restarts; sessions start empty.
    pub fn new(db: Db, version: ServerVersion) -> Result<Self, SimError> {
        let system_id = {
            let conn = db.lock();
            match db::get_setting(&conn, "systemId")? {
                Some(id) => id,
                None => {
                    let id = new_system_id();
                    db::set_setting(&conn, "systemId", &id)?;
                    id
                }
            }
        };
        let faults = crate::faults::Faults::default();
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                sessions: Sessions::default(),
                login_lockout: LoginLockout::default(),
                version,
                system_id,
                faults,
                tracker_jobs: Default::default(),
                apps: RwLock::default(),
                installed_apps: Default::default(),
                ou_selection: Mutex::default(),
            }),
        })
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The in-memory sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Failed logins and locks (`keyLockMultipleFailedLogins`, `/__sim/lockout`).
    pub fn login_lockout(&self) -> &LoginLockout {
        &self.inner.login_lockout
    }

    /// The DHIS2 version the simulator answers as.
    pub fn version(&self) -> ServerVersion {
        self.inner.version
    }

    /// Fault injection, request log and counters (`--faults`).
    pub fn faults(&self) -> &crate::faults::Faults {
        &self.inner.faults
    }

    /// The in-memory jobs of async `POST /api/tracker` imports.
    pub fn tracker_jobs(&self) -> &crate::api::tracker::Jobs {
        &self.inner.tracker_jobs
    }

    /// Records the static apps served (for `/api/apps` and the menu).
    pub fn set_apps(&self, apps: Vec<(String, PathBuf)>) {
        *self.inner.apps.write().unwrap_or_else(std::sync::PoisonError::into_inner) = apps;
    }

    /// The static apps served, as `(name, dir)`.
    pub fn apps(&self) -> Vec<(String, PathBuf)> {
        self.inner.apps.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Apps installed through App Management (`/api/apps`).
    pub fn installed_apps(&self) -> &crate::api::apps::InstalledApps {
        &self.inner.installed_apps
    }

    /// The org unit tree selection of a user.
    pub fn ou_selection(&self, user_uid: &str) -> Vec<String> {
        let map = self.inner.ou_selection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(user_uid).cloned().unwrap_or_default()
    }

    /// Replaces the org unit tree selection of a user.
    pub fn set_ou_selection(&self, user_uid: &str, selected: Vec<String>) {
        let mut map = self.inner.ou_selection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert(user_uid.to_owned(), selected);
    }

    /// The stable system id (`/api/system/info` `systemId`).
    pub fn system_id(&self) -> &str {
        &self.inner.system_id
    }
}

/// A UUID-shaped random id, as DHIS2's `systemId`.
fn new_system_id() -> String {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}
