//! The clinic copy in memory (the index of every woman and the clinic's metadata), owned by the
//! engine and reached only through these methods: one lock, taken for a moment and never held
//! across an await. Built at unlock from storage (`clinic.rs`), dropped at logout.

use std::sync::Mutex;

use crate::{
    clinic::ClinicState,
    error::{CoreError, Result},
};

/// The error of a lock poisoned by a panic while it was held (one function, not one per caller).
#[cold]
fn poisoned() -> CoreError {
    CoreError::Storage("clinic lock poisoned".into())
}

/// The engine's clinic copy in memory.
#[derive(Debug, Default)]
pub struct ClinicCopy(Mutex<ClinicState>);

impl ClinicCopy {
    /// Reads the copy; a poisoned lock (a panic while it was held) is a storage error.
    pub fn read<T>(&self, read: impl FnOnce(&ClinicState) -> T) -> Result<T> {
        let state = self.0.lock().map_err(|_| poisoned())?;
        Ok(read(&state))
    }

    /// Changes the copy. Skipped when the lock is poisoned: the copy is then rebuilt from
    /// storage, which every change was written to first.
    pub fn update(&self, change: impl FnOnce(&mut ClinicState)) {
        if let Ok(mut state) = self.0.lock() {
            change(&mut state);
        }
    }

    /// Replaces the copy with one loaded from storage.
    pub fn replace(&self, loaded: ClinicState) -> Result<()> {
        *self.0.lock().map_err(|_| poisoned())? = loaded;
        Ok(())
    }

    /// Forgets the copy (logout).
    pub fn clear(&self) {
        self.update(|state| *state = ClinicState::default());
    }

    /// Marks the copy to be loaded again from storage (another context changed it).
    pub fn invalidate(&self) {
        self.update(|state| state.loaded = false);
    }

    /// Whether the copy was loaded since the last unlock.
    pub fn is_loaded(&self) -> bool {
        self.read(|state| state.loaded).unwrap_or(false)
    }

    /// How many women the index holds (0 when the copy cannot be read).
    pub fn women(&self) -> u64 {
        self.read(|state| state.index.len() as u64).unwrap_or(0)
    }

    /// The server's minor version the metadata names (`None` when the copy cannot be read).
    pub fn minor_version(&self) -> Option<u32> {
        self.read(|state| state.metadata.minor_version()).ok()
    }

    /// The tracked entity a record (enrollment or event) belongs to.
    pub fn owner_of(&self, record_uid: &str) -> Option<String> {
        self.read(|state| state.index.owner(record_uid).map(str::to_string)).ok().flatten()
    }

    /// Whether a UID is a woman of the copy or one of her records.
    pub fn knows(&self, uid: &str) -> bool {
        self.read(|state| state.index.get(uid).is_some() || state.index.owner(uid).is_some()).unwrap_or(false)
    }

    /// The ordinal the next woman added takes (`None` when the copy cannot be read).
    pub fn next_ordinal(&self) -> Option<u64> {
        self.read(|state| state.index.next_ordinal()).ok()
    }
}
