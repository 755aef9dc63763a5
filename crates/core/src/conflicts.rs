//! The conflict log: fields changed on the device and, meanwhile, to another value on the
//! server. The flush sends the device's value (the nurse's visit is what she saw) and keeps the
//! server's overwritten value here, sealed, until a person looks at it: `conflicts()` lists
//! them; `resolve_conflict(id, Keep::Device)` accepts what was sent; `Keep::Server` puts the
//! server's value back, as a new queued change of that one field.

use std::collections::BTreeMap;

use crate::{
    clinic::{bundle_id, parse_bundle},
    engine::Engine,
    error::{CoreError, Result},
    http::HttpClient,
    kdf::PasswordKdf,
    merge::{apply_fields, Conflict, FieldChange},
    outbox::{EntryPayload, EntryState, OutboxEntry},
    random::RandomSource,
    records::SyncState,
    store::{KvStore, StoreName, WriteBatch},
    write_effect::Touch,
    writes::Family,
};
use serde::Deserialize;

/// Record id (cache store) of the sealed conflict log.
pub const CONFLICTS_ID: &str = "sync:conflicts";

/// Which side of a conflict to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The device's value (already sent): the conflict is closed.
    Device,
    /// The server's overwritten value: queued to be sent back.
    Server,
}

impl Keep {
    /// Reads the JS argument: `device` or `server`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "device" => Ok(Keep::Device),
            "server" => Ok(Keep::Server),
            other => Err(CoreError::BadInput(format!("keep must be 'device' or 'server', not {other:?}"))),
        }
    }
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    /// The conflicts found by flushes and not resolved yet, oldest first.
    pub async fn conflicts(&self) -> Result<Vec<Conflict>> {
        self.conflict_log().await
    }

    pub(crate) async fn conflict_log(&self) -> Result<Vec<Conflict>> {
        match self.vault.get_record(StoreName::Cache, CONFLICTS_ID).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| CoreError::StorageCorrupt(format!("conflict log does not parse: {e}"))),
            None => Ok(Vec::new()),
        }
    }

    /// Adds conflicts to the log (one entry per conflict, however often it is found).
    pub(crate) async fn log_conflicts(&self, found: Vec<Conflict>) -> Result<()> {
        if found.is_empty() {
            return Ok(());
        }
        let _writer = self.writer.lock().await;
        let mut log = self.conflict_log().await?;
        let before = log.len();
        for c in found {
            if !log.iter().any(|known| known.same_as(&c)) {
                log.push(c);
            }
        }
        if log.len() == before {
            return Ok(());
        }
        let batch = self.seal_conflict_log(WriteBatch::new(), &log)?;
        self.vault.commit(batch).await
    }

    pub(crate) fn seal_conflict_log(&self, batch: WriteBatch, log: &[Conflict]) -> Result<WriteBatch> {
        if log.is_empty() {
            return self.vault.delete_into(batch, StoreName::Cache, CONFLICTS_ID);
        }
        let bytes = serde_json::to_vec(log).map_err(|e| CoreError::BadInput(e.to_string()))?;
        self.vault.seal_into(batch, StoreName::Cache, CONFLICTS_ID, &bytes)
    }

    /// Resolves a conflict. Keeping the server's value changes the local record back to it and
    /// queues that one field for the server (under the logged-in user), in one transaction.
    pub async fn resolve_conflict(&self, id: &str, keep: Keep, now_ms: i64) -> Result<Conflict> {
        let author = self.vault.session_info().map(|s| s.username).ok_or(CoreError::VaultLocked)?;
        self.ensure_clinic_loaded().await?;
        let _writer = self.writer.lock().await;
        let mut log = self.conflict_log().await?;
        let position =
            log.iter().position(|c| c.id == id).ok_or_else(|| CoreError::BadInput(format!("no conflict {id}")))?;
        let conflict = log.remove(position);
        let mut batch = self.seal_conflict_log(WriteBatch::new(), &log)?;
        let mut bundles = Vec::new();
        if conflict.held {
            bundles.push(self.resolve_held(&conflict, keep, &author, now_ms, &mut batch).await?);
        } else if keep == Keep::Server {
            let bytes =
                self.vault.get_record(StoreName::Records, &bundle_id(&conflict.tei)).await?.ok_or_else(|| {
                    CoreError::BadInput(format!("record {} is not in the local copy", conflict.record))
                })?;
            let mut bundle = parse_bundle(&bytes)?;
            let record = bundle
                .record_mut(conflict.kind, &conflict.record)
                .ok_or_else(|| CoreError::BadInput(format!("record {} is not in the local copy", conflict.record)))?;
            let mut field = BTreeMap::new();
            field.insert(conflict.field.clone(), conflict.server.clone());
            apply_fields(record, &field);
            let changes = bundle.changes.entry(conflict.record.clone()).or_default();
            let base = changes.get(&conflict.field).map(|c| c.base.clone()).unwrap_or(conflict.device.clone());
            if base == conflict.server {
                changes.remove(&conflict.field);
            } else {
                changes.insert(conflict.field.clone(), FieldChange::new(base, conflict.server.clone()));
            }
            if bundle.state(&conflict.record) != SyncState::ToPost {
                bundle.sync.insert(conflict.record.clone(), SyncState::ToUpdate);
            }
            let entry = self.resolution_entry(&conflict, &author, now_ms).await?;
            let bytes = serde_json::to_vec(&entry).map_err(|e| CoreError::BadInput(e.to_string()))?;
            batch = self.vault.seal_into(batch, StoreName::Outbox, &entry.id(), &bytes)?;
            bundles.push(bundle);
        }
        self.commit_bundles(batch, &bundles.iter().collect::<Vec<_>>(), &[]).await?;
        self.outbox_changed();
        Ok(conflict)
    }

    /// A held field (policy `hold`, never sent): the device's value is queued with the server's
    /// value as its base, or the server's value replaces it locally.
    async fn resolve_held(
        &self,
        conflict: &Conflict,
        keep: Keep,
        author: &str,
        now_ms: i64,
        batch: &mut WriteBatch,
    ) -> Result<crate::records::TeiBundle> {
        let bytes = self
            .vault
            .get_record(StoreName::Records, &bundle_id(&conflict.tei))
            .await?
            .ok_or_else(|| CoreError::BadInput(format!("record {} is not in the local copy", conflict.record)))?;
        let mut bundle = parse_bundle(&bytes)?;
        match keep {
            Keep::Device => {
                let changes = bundle.changes.entry(conflict.record.clone()).or_default();
                changes
                    .insert(conflict.field.clone(), FieldChange::new(conflict.server.clone(), conflict.device.clone()));
                bundle.sync.insert(conflict.record.clone(), SyncState::ToUpdate);
                let entry = self.resolution_entry(conflict, author, now_ms).await?;
                let bytes = serde_json::to_vec(&entry).map_err(|e| CoreError::BadInput(e.to_string()))?;
                *batch = self.vault.seal_into(std::mem::take(batch), StoreName::Outbox, &entry.id(), &bytes)?;
            }
            Keep::Server => {
                let record = bundle.record_mut(conflict.kind, &conflict.record).ok_or_else(|| {
                    CoreError::BadInput(format!("record {} is not in the local copy", conflict.record))
                })?;
                let mut field = BTreeMap::new();
                field.insert(conflict.field.clone(), conflict.server.clone());
                apply_fields(record, &field);
                let left = bundle.changes.get_mut(&conflict.record).map(|c| {
                    c.remove(&conflict.field);
                    c.len()
                });
                if left.unwrap_or(0) == 0 {
                    bundle.changes.remove(&conflict.record);
                    let queued = self
                        .outbox_entries()
                        .await?
                        .iter()
                        .any(|e| crate::outbox::entry_records(e).contains(&conflict.record));
                    if !queued {
                        bundle.sync.remove(&conflict.record);
                    }
                }
            }
        }
        Ok(bundle)
    }

    async fn resolution_entry(&self, conflict: &Conflict, author: &str, now_ms: i64) -> Result<OutboxEntry> {
        let minor = self.clinic.minor_version().unwrap_or(0);
        Ok(OutboxEntry {
            seq: self.next_seq(now_ms).await?,
            author: author.to_string(),
            created_at_ms: now_ms,
            summary: format!("resolve {} of {}", conflict.field, conflict.record),
            family: if minor >= 42 { Family::Tracker } else { Family::Legacy },
            payload: EntryPayload::Touches {
                touches: vec![Touch {
                    kind: conflict.kind,
                    uid: conflict.record.clone(),
                    tei: conflict.tei.clone(),
                    deleted: false,
                }],
            },
            state: EntryState::Pending,
            attempts: 0,
        })
    }
}
