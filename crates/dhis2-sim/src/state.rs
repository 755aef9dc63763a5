//! Shared application state handed to every handler: database, sessions, server version.

use std::sync::Arc;

use crate::{
    auth::Sessions,
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
    version: ServerVersion,
    system_id: String,
    faults: crate::faults::Faults,
    tracker_jobs: crate::api::tracker::Jobs,
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
                version,
                system_id,
                faults,
                tracker_jobs: Default::default(),
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
