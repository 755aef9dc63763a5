//! The storage contract of the core: a small transactional key-value store with named object
//! stores. The browser implements it on IndexedDB (crates/web), the core ships an in-memory
//! implementation, and [`conformance`] is the one test suite both must pass.
//!
//! Values are opaque bytes (sealed envelopes, or non-sensitive JSON such as register counters);
//! keys are strings (keyed hashes, never plain UIDs or names).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use crate::error::{CoreError, Result};

/// The object stores of a vault database. The set is part of the schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoreName {
    /// Vault metadata (format version, username salt, key check).
    Meta,
    /// The user register: one entry per user who logged in online on this device.
    Users,
    /// Sealed local copies of records (TEIs, enrollments, events).
    Records,
    /// Sealed outbox entries.
    Outbox,
    /// Sealed cached API responses.
    Cache,
    /// Sealed index rows of the clinic copy (one per tracked entity), loaded at unlock.
    Index,
}

impl StoreName {
    /// Every store, in schema order.
    pub const ALL: [StoreName; 6] =
        [StoreName::Meta, StoreName::Users, StoreName::Records, StoreName::Outbox, StoreName::Cache, StoreName::Index];

    /// The object store's name in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreName::Meta => "meta",
            StoreName::Users => "users",
            StoreName::Records => "records",
            StoreName::Outbox => "outbox",
            StoreName::Cache => "cache",
            StoreName::Index => "index",
        }
    }
}

/// Plaintext waiting in a batch for the vault to seal it; wiped when dropped, and its `Debug`
/// shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Unsealed(pub zeroize::Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unsealed({} bytes)", self.0.len())
    }
}

/// One operation of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Insert or replace a value.
    Put {
        /// Target store.
        store: StoreName,
        /// Key.
        key: String,
        /// Value bytes.
        value: Vec<u8>,
    },
    /// Remove a key (no error if absent).
    Delete {
        /// Target store.
        store: StoreName,
        /// Key.
        key: String,
    },
    /// A value the vault seals when it commits the batch ([`crate::vault::Vault::seal_into`]):
    /// replaced by the `Put` of its envelope before the batch reaches the manifest or a store,
    /// so that a batch's values are sealed together (by the platform's AES-GCM where it has
    /// one). A store given one refuses the whole batch: plaintext is never written.
    Seal {
        /// Target store.
        store: StoreName,
        /// Key.
        key: String,
        /// The associated data it is to be sealed with.
        aad: Vec<u8>,
        /// What is to be sealed.
        plaintext: Unsealed,
    },
    /// A precondition checked inside the batch's transaction, before any write: the batch
    /// fails with [`CoreError::StaleWrite`] and writes nothing unless the key holds exactly
    /// `value` (`None`: the key is absent). Two writers over one database use it to never
    /// overwrite each other's manifest updates (see [`crate::manifest`]).
    Expect {
        /// Store of the key.
        store: StoreName,
        /// Key.
        key: String,
        /// The bytes the key must hold, or `None` for absent.
        value: Option<Vec<u8>>,
    },
}

/// A logical write: every operation commits together or none does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(mut self, store: StoreName, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.ops.push(WriteOp::Put { store, key: key.into(), value });
        self
    }

    /// Adds a delete.
    pub fn delete(mut self, store: StoreName, key: impl Into<String>) -> Self {
        self.ops.push(WriteOp::Delete { store, key: key.into() });
        self
    }

    /// Adds a value to seal at commit ([`WriteOp::Seal`]).
    pub fn seal(mut self, store: StoreName, key: impl Into<String>, aad: Vec<u8>, plaintext: &[u8]) -> Self {
        self.ops.push(WriteOp::Seal {
            store,
            key: key.into(),
            aad,
            plaintext: Unsealed(zeroize::Zeroizing::new(plaintext.to_vec())),
        });
        self
    }

    /// Positions of the values still to be sealed.
    pub fn unsealed(&self) -> Vec<usize> {
        (0..self.ops.len()).filter(|&i| matches!(self.ops[i], WriteOp::Seal { .. })).collect()
    }

    /// Replaces the value to seal at `position` by the `Put` of its `envelope`.
    pub fn set_sealed(&mut self, position: usize, envelope: Vec<u8>) {
        if let Some(op) = self.ops.get_mut(position) {
            if let WriteOp::Seal { store, key, .. } = op {
                *op = WriteOp::Put { store: *store, key: std::mem::take(key), value: envelope };
            }
        }
    }

    /// True when a value is still to be sealed: a store must refuse the batch.
    pub fn has_unsealed(&self) -> bool {
        self.ops.iter().any(|op| matches!(op, WriteOp::Seal { .. }))
    }

    /// Refuses a put of an empty key ([`CoreError::BadInput`]): a store checks this after the
    /// preconditions, before it writes anything.
    pub fn check_keys(&self) -> Result<()> {
        let empty = self.ops.iter().any(|op| matches!(op, WriteOp::Put { key, .. } if key.is_empty()));
        if empty {
            return Err(CoreError::BadInput("empty store key".into()));
        }
        Ok(())
    }

    /// Adds a precondition ([`WriteOp::Expect`]).
    pub fn expect(mut self, store: StoreName, key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        self.ops.push(WriteOp::Expect { store, key: key.into(), value });
        self
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// The stores this batch touches (for opening a transaction over exactly those).
    pub fn stores(&self) -> Vec<StoreName> {
        let mut stores: Vec<StoreName> = self
            .ops
            .iter()
            .map(|op| match op {
                WriteOp::Put { store, .. }
                | WriteOp::Delete { store, .. }
                | WriteOp::Seal { store, .. }
                | WriteOp::Expect { store, .. } => *store,
            })
            .collect();
        stores.sort_unstable();
        stores.dedup();
        stores
    }

    /// Total bytes of keys and values, for quota checks.
    pub fn byte_size(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                WriteOp::Put { key, value, .. } => key.len() + value.len(),
                // The envelope: version byte, nonce and tag around the ciphertext.
                WriteOp::Seal { key, plaintext, .. } => key.len() + plaintext.0.len() + 29,
                WriteOp::Delete { key, .. } => key.len(),
                WriteOp::Expect { .. } => 0,
            })
            .sum()
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Keeps the first `len` operations (drops what was added after them).
    pub fn truncate(&mut self, len: usize) {
        self.ops.truncate(len);
    }

    /// True if the batch has no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What a store answers to a batch with a value still to be sealed ([`WriteOp::Seal`]).
pub const UNSEALED_REFUSED: &str = "a value reached the store unsealed: the batch is refused";

/// A transactional key-value store. Implementations must make [`KvStore::write`] atomic and
/// durable when it returns, and map a quota failure to [`CoreError::StorageFull`].
#[allow(async_fn_in_trait, reason = "used generically, never as a trait object")]
pub trait KvStore {
    /// Reads one value.
    async fn get(&self, store: StoreName, key: &str) -> Result<Option<Vec<u8>>>;
    /// Reads several values at once, in the order of `keys` (None where a key is absent).
    /// Implementations read them in one transaction (IndexedDB: one per call instead of one
    /// per key); this default reads them one by one.
    async fn get_many(&self, store: StoreName, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(store, key).await?);
        }
        Ok(out)
    }
    /// Lists every (key, value) of a store, ordered by key.
    async fn list(&self, store: StoreName) -> Result<Vec<(String, Vec<u8>)>>;
    /// Lists every key of a store, ordered by key, without the values (IndexedDB:
    /// `getAllKeys`); this default lists the values too.
    async fn list_keys(&self, store: StoreName) -> Result<Vec<String>> {
        Ok(self.list(store).await?.into_iter().map(|(key, _)| key).collect())
    }
    /// Lists the keys of a store that start with one of `prefixes`, ordered by key (IndexedDB:
    /// one key range per prefix, in one transaction); this default lists every key.
    async fn list_keys_with_prefixes(&self, store: StoreName, prefixes: &[String]) -> Result<Vec<String>> {
        let mut keys = self.list_keys(store).await?;
        keys.retain(|key| prefixes.iter().any(|p| key.starts_with(p.as_str())));
        Ok(keys)
    }
    /// Counts the entries of a store.
    async fn count(&self, store: StoreName) -> Result<u64>;
    /// Applies a batch atomically.
    async fn write(&self, batch: WriteBatch) -> Result<()>;
}

type Tables = BTreeMap<StoreName, BTreeMap<String, Vec<u8>>>;

/// An in-memory [`KvStore`] for native tests and tools. Clones share the same data, like two
/// connections to one database. A byte limit imitates a storage quota.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
    quota_bytes: Option<usize>,
}

impl MemoryStore {
    /// An empty store without quota.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that refuses writes once keys and values exceed `quota_bytes`.
    pub fn with_quota(quota_bytes: usize) -> Self {
        Self { tables: Arc::default(), quota_bytes: Some(quota_bytes) }
    }

    /// The same data as a device whose storage is full: every write is refused with
    /// [`CoreError::StorageFull`], as a browser refuses any IndexedDB write over its quota (even
    /// one that would not grow the data).
    pub fn full(&self) -> Self {
        Self { tables: self.tables.clone(), quota_bytes: Some(0) }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Tables>> {
        self.tables.lock().map_err(|_| CoreError::Storage("memory store poisoned".into()))
    }

    /// Overwrites raw bytes, bypassing every rule (tests use it to tamper).
    pub fn raw_put(&self, store: StoreName, key: &str, value: Vec<u8>) -> Result<()> {
        self.lock()?.entry(store).or_default().insert(key.to_string(), value);
        Ok(())
    }
}

fn used_bytes(tables: &Tables) -> usize {
    tables.values().flat_map(|t| t.iter()).map(|(k, v)| k.len() + v.len()).sum()
}

impl KvStore for MemoryStore {
    async fn get(&self, store: StoreName, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock()?.get(&store).and_then(|t| t.get(key)).cloned())
    }

    async fn list(&self, store: StoreName) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .lock()?
            .get(&store)
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    async fn count(&self, store: StoreName) -> Result<u64> {
        Ok(self.lock()?.get(&store).map(|t| t.len() as u64).unwrap_or(0))
    }

    async fn write(&self, batch: WriteBatch) -> Result<()> {
        if batch.has_unsealed() {
            return Err(CoreError::Storage(UNSEALED_REFUSED.into()));
        }
        let mut tables = self.lock()?;
        // Preconditions first, under the same lock as the writes.
        for op in batch.ops() {
            if let WriteOp::Expect { store, key, value } = op {
                if tables.get(store).and_then(|t| t.get(key)) != value.as_ref() {
                    return Err(CoreError::StaleWrite(format!("{} {key} changed", store.as_str())));
                }
            }
        }
        batch.check_keys()?;
        // Apply to a copy and swap, so a failure leaves nothing half-written.
        let mut next = tables.clone();
        for op in batch.ops() {
            match op {
                WriteOp::Expect { .. } | WriteOp::Seal { .. } => {}
                WriteOp::Put { store, key, value } => {
                    next.entry(*store).or_default().insert(key.clone(), value.clone());
                }
                WriteOp::Delete { store, key } => {
                    if let Some(t) = next.get_mut(store) {
                        t.remove(key);
                    }
                }
            }
        }
        if let Some(quota) = self.quota_bytes {
            if used_bytes(&next) > quota {
                return Err(CoreError::StorageFull);
            }
        }
        *tables = next;
        Ok(())
    }
}

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn memory_store_passes_conformance() {
        block_on(conformance::run_all(|_| async { MemoryStore::new() })).unwrap();
    }

    /// A store that miscounts: the suite fails, and says what it found.
    struct Miscounting(MemoryStore);

    impl KvStore for Miscounting {
        async fn get(&self, store: StoreName, key: &str) -> Result<Option<Vec<u8>>> {
            self.0.get(store, key).await
        }
        async fn list(&self, store: StoreName) -> Result<Vec<(String, Vec<u8>)>> {
            self.0.list(store).await
        }
        async fn count(&self, store: StoreName) -> Result<u64> {
            Ok(self.0.count(store).await? + 1)
        }
        async fn write(&self, batch: WriteBatch) -> Result<()> {
            self.0.write(batch).await
        }
    }

    #[test]
    fn a_failing_store_is_told_what_was_found_and_what_was_expected() {
        let err = block_on(conformance::run_all(|_| async { Miscounting(MemoryStore::new()) })).unwrap_err();
        assert_eq!(err, CoreError::Storage("conformance failed: count: found 3, expected 2".into()));
    }

    #[test]
    fn memory_store_quota_refuses_whole_batch() {
        block_on(async {
            let store = MemoryStore::with_quota(100);
            store.write(WriteBatch::new().put(StoreName::Records, "a", vec![0; 50])).await.unwrap();
            let err = store
                .write(WriteBatch::new().put(StoreName::Outbox, "o", vec![0; 10]).put(
                    StoreName::Records,
                    "b",
                    vec![0; 60],
                ))
                .await
                .unwrap_err();
            assert_eq!(err, CoreError::StorageFull);
            assert!(store.get(StoreName::Outbox, "o").await.unwrap().is_none());
        });
    }
}
