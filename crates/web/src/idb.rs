//! The IndexedDB implementation of the core's [`KvStore`], on `indexed_db_futures`. One
//! database per vault; one object store per [`StoreName`], values as `Uint8Array` under
//! out-of-line string keys. Every [`KvStore::write`] is one readwrite transaction committed with
//! `durability: "strict"`; a failing operation drops the transaction, which rolls it back.

use indexed_db_futures::{
    database::Database,
    prelude::*,
    transaction::{TransactionDurability, TransactionMode, TransactionOptions},
    KeyRange,
};
use js_sys::Uint8Array;
use tracker_offline_core::{
    store::{KvStore, StoreName, WriteBatch, WriteOp},
    CoreError, Result,
};
use wasm_bindgen::{JsCast, JsValue};

use crate::error::idb_error;

/// Schema versions of the vault database. Each step says what it adds; opening runs every
/// step from the stored version up to [`SchemaVersion::CURRENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum SchemaVersion {
    /// No database yet.
    V0 = 0,
    /// The stores meta, users, records, outbox, cache.
    V1 = 1,
    /// Adds the index store of the clinic copy.
    V2 = 2,
}

impl SchemaVersion {
    /// The version this build writes.
    pub const CURRENT: SchemaVersion = SchemaVersion::V2;

    fn from_raw(raw: f64) -> Option<Self> {
        match raw as u32 {
            0 => Some(SchemaVersion::V0),
            1 => Some(SchemaVersion::V1),
            2 => Some(SchemaVersion::V2),
            _ => None,
        }
    }

    /// Applies the step to the next version, returning it.
    fn upgrade(self, db: &Database) -> indexed_db_futures::Result<SchemaVersion> {
        match self {
            SchemaVersion::V0 => {
                for store in
                    [StoreName::Meta, StoreName::Users, StoreName::Records, StoreName::Outbox, StoreName::Cache]
                {
                    db.create_object_store(store.as_str()).build()?;
                }
                Ok(SchemaVersion::V1)
            }
            SchemaVersion::V1 => {
                db.create_object_store(StoreName::Index.as_str()).build()?;
                Ok(SchemaVersion::V2)
            }
            SchemaVersion::V2 => Ok(SchemaVersion::V2),
        }
    }
}

/// A vault database in IndexedDB.
#[derive(Debug)]
pub struct IdbStore {
    db: Database,
}

impl IdbStore {
    /// Opens (creating or upgrading) the database `name`.
    pub async fn open(name: &str) -> Result<Self> {
        if name.is_empty() {
            return Err(CoreError::BadInput("database name is empty".into()));
        }
        let db = Database::open(name)
            .with_version(SchemaVersion::CURRENT as u32)
            .with_on_upgrade_needed(|event, db| {
                let mut version = SchemaVersion::from_raw(event.old_version()).unwrap_or(SchemaVersion::V0);
                while version < SchemaVersion::CURRENT {
                    version = version.upgrade(&db)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| CoreError::Storage(format!("cannot open IndexedDB '{name}': {e}")))?;
        Ok(Self { db })
    }

    /// The database name.
    pub fn name(&self) -> String {
        self.db.name()
    }

    /// Closes the connection (tests delete databases afterwards).
    pub fn close(self) {
        self.db.close();
    }
}

/// Above this many prefixes, [`KvStore::list_keys_with_prefixes`] lists the whole store.
const MAX_KEY_RANGES: usize = 64;

fn bytes_of(value: JsValue) -> Result<Vec<u8>> {
    value
        .dyn_into::<Uint8Array>()
        .map(|a| a.to_vec())
        .map_err(|_| CoreError::StorageCorrupt("IndexedDB value is not a byte array".into()))
}

impl KvStore for IdbStore {
    async fn get(&self, store: StoreName, key: &str) -> Result<Option<Vec<u8>>> {
        let tx = self.db.transaction(store.as_str()).build().map_err(idb_error)?;
        let os = tx.object_store(store.as_str()).map_err(idb_error)?;
        let value: Option<JsValue> = os.get(key).primitive().map_err(idb_error)?.await.map_err(idb_error)?;
        value.map(bytes_of).transpose()
    }

    async fn get_many(&self, store: StoreName, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.db.transaction(store.as_str()).build().map_err(idb_error)?;
        let os = tx.object_store(store.as_str()).map_err(idb_error)?;
        // Every request goes out before the first is awaited: one transaction, pipelined.
        let mut requests = Vec::with_capacity(keys.len());
        for key in keys {
            requests.push(os.get::<JsValue, _, _>(key.as_str()).primitive().map_err(idb_error)?);
        }
        let mut out = Vec::with_capacity(keys.len());
        for request in requests {
            let value: Option<JsValue> = request.await.map_err(idb_error)?;
            out.push(value.map(bytes_of).transpose()?);
        }
        Ok(out)
    }

    async fn list(&self, store: StoreName) -> Result<Vec<(String, Vec<u8>)>> {
        let tx = self.db.transaction(store.as_str()).build().map_err(idb_error)?;
        let os = tx.object_store(store.as_str()).map_err(idb_error)?;
        // Both requests go out in the same transaction, so keys and values line up.
        let keys_req = os.get_all_keys::<JsValue>().primitive().map_err(idb_error)?;
        let values_req = os.get_all::<JsValue>().primitive().map_err(idb_error)?;
        let keys = keys_req.await.map_err(idb_error)?;
        let values = values_req.await.map_err(idb_error)?;
        let mut out = Vec::new();
        for (key, value) in keys.zip(values) {
            let key = key.map_err(idb_error)?;
            let key =
                key.as_string().ok_or_else(|| CoreError::StorageCorrupt("IndexedDB key is not a string".into()))?;
            out.push((key, bytes_of(value.map_err(idb_error)?)?));
        }
        Ok(out)
    }

    async fn list_keys(&self, store: StoreName) -> Result<Vec<String>> {
        let tx = self.db.transaction(store.as_str()).build().map_err(idb_error)?;
        let os = tx.object_store(store.as_str()).map_err(idb_error)?;
        let keys = os.get_all_keys::<JsValue>().primitive().map_err(idb_error)?.await.map_err(idb_error)?;
        let mut out = Vec::new();
        for key in keys {
            let key = key.map_err(idb_error)?;
            out.push(key.as_string().ok_or_else(|| CoreError::StorageCorrupt("IndexedDB key is not a string".into()))?);
        }
        Ok(out)
    }

    async fn list_keys_with_prefixes(&self, store: StoreName, prefixes: &[String]) -> Result<Vec<String>> {
        // Many prefixes: one `getAllKeys` of the whole store costs less than a range each.
        if prefixes.len() > MAX_KEY_RANGES {
            let mut keys = self.list_keys(store).await?;
            keys.retain(|key| prefixes.iter().any(|p| key.starts_with(p.as_str())));
            return Ok(keys);
        }
        let tx = self.db.transaction(store.as_str()).build().map_err(idb_error)?;
        let os = tx.object_store(store.as_str()).map_err(idb_error)?;
        let mut sorted: Vec<&String> = prefixes.iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        // Every range goes out before the first is awaited: one transaction, pipelined.
        let mut requests = Vec::with_capacity(sorted.len());
        for prefix in sorted.iter().filter(|p| !p.is_empty()) {
            let range = KeyRange::Bound(
                JsValue::from_str(prefix),
                false,
                JsValue::from_str(&format!("{prefix}\u{ffff}")),
                false,
            );
            requests.push(os.get_all_keys::<JsValue>().with_query::<JsValue, _>(range).primitive().map_err(idb_error)?);
        }
        let mut out = Vec::new();
        for request in requests {
            for key in request.await.map_err(idb_error)? {
                let key = key.map_err(idb_error)?;
                out.push(
                    key.as_string().ok_or_else(|| CoreError::StorageCorrupt("IndexedDB key is not a string".into()))?,
                );
            }
        }
        // Prefixes that overlap ("a" and "ab") list a key twice.
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    async fn count(&self, store: StoreName) -> Result<u64> {
        let tx = self.db.transaction(store.as_str()).build().map_err(idb_error)?;
        let os = tx.object_store(store.as_str()).map_err(idb_error)?;
        let n: u32 = os.count().primitive().map_err(idb_error)?.await.map_err(idb_error)?;
        Ok(u64::from(n))
    }

    async fn write(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if batch.has_unsealed() {
            return Err(CoreError::Storage(tracker_offline_core::store::UNSEALED_REFUSED.into()));
        }
        let names: Vec<&'static str> = batch.stores().into_iter().map(StoreName::as_str).collect();
        let mut options = TransactionOptions::new();
        options.set_durability(TransactionDurability::Strict);
        let tx = self
            .db
            .transaction(names)
            .with_mode(TransactionMode::Readwrite)
            .with_options(options)
            .build()
            .map_err(idb_error)?;
        // Preconditions first, read inside this same readwrite transaction (no other writer
        // can commit between the read and the writes below); a mismatch returns early and
        // dropping `tx` aborts it.
        for op in batch.ops() {
            if let WriteOp::Expect { store, key, value } = op {
                let os = tx.object_store(store.as_str()).map_err(idb_error)?;
                let stored: Option<JsValue> =
                    os.get(key.as_str()).primitive().map_err(idb_error)?.await.map_err(idb_error)?;
                if stored.map(bytes_of).transpose()? != *value {
                    return Err(CoreError::StaleWrite(format!("{} {key} changed", store.as_str())));
                }
            }
        }
        batch.check_keys()?;
        // Requests are pipelined; an error returns early and dropping `tx` aborts it, so
        // nothing of the batch is kept.
        for op in batch.ops() {
            match op {
                WriteOp::Expect { .. } | WriteOp::Seal { .. } => {}
                WriteOp::Put { store, key, value } => {
                    let os = tx.object_store(store.as_str()).map_err(idb_error)?;
                    let value: JsValue = Uint8Array::from(value.as_slice()).into();
                    let _pending = os.put(value).with_key(key.as_str()).primitive().map_err(idb_error)?;
                }
                WriteOp::Delete { store, key } => {
                    let os = tx.object_store(store.as_str()).map_err(idb_error)?;
                    let _pending = os.delete(key.as_str()).primitive().map_err(idb_error)?;
                }
            }
        }
        match tx.commit().await {
            Ok(()) => Ok(()),
            // Every request was accepted, yet the browser aborted the commit. indexed_db_futures
            // 0.6 does not expose `transaction.error` after commit; per the IndexedDB spec this
            // is a quota failure (Chromium: QuotaExceededError on the abort event) or a storage
            // failure, so it is reported as storage full: nothing was written either way.
            Err(indexed_db_futures::error::Error::MissingData(
                indexed_db_futures::error::UnexpectedDataError::TransactionAborted,
            )) => Err(CoreError::StorageFull),
            Err(e) => Err(idb_error(e)),
        }
    }
}
