//! What needs a person: entries the server refused (kept unsent with its reasons), entries
//! that cannot be read, and the server's warnings on accepted work; putting an entry back in
//! line (`retry`) and dropping one (`discard`), which undoes its effect on the local copy.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{
    clinic::{bundle_id, parse_bundle},
    engine::Engine,
    error::{CoreError, Result},
    family::Kind,
    http::HttpClient,
    kdf::PasswordKdf,
    outbox::{entry_change, entry_records, parse_entry, EntryPayload, EntryState, OutboxEntry, DAMAGED_PREFIX},
    random::RandomSource,
    records::{text, SyncState, TeiBundle},
    register::Bytes,
    store::{KvStore, StoreName, WriteBatch},
    writes::Family,
};

/// Record id (in the cache store) of the list of warnings the server gave on accepted work.
pub const WARNINGS_ID: &str = "sync:warnings";

/// Id of the warning kept for an accepted entry.
pub fn warning_id(seq: u64) -> String {
    format!("warning:{seq:020}")
}

/// How serious an item of `failures()` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The server refused the work: it is kept, unsent, for the user.
    #[default]
    Error,
    /// The server accepted the work but said something about it (a value it ignored): shown
    /// until the user dismisses it (`discard`).
    Warning,
}

/// A failed entry (or a warning on accepted work) as the JS API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Entry id (for retry/discard).
    pub id: String,
    /// Author.
    pub author: String,
    /// `METHOD /path`.
    pub summary: String,
    /// Records concerned.
    pub records: Vec<String>,
    /// Server's reasons.
    pub reasons: Vec<String>,
    /// Capture time.
    pub created_at_ms: i64,
    /// Failure time.
    pub failed_at_ms: i64,
    /// `error` (refused, kept unsent) or `warning` (accepted, with the server's remarks).
    #[serde(default)]
    pub severity: Severity,
    /// What the entry changes ([`crate::writes::change_of`]); absent in warnings kept before
    /// changes were described.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<crate::writes::Change>,
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    /// The failed entries with the server's reasons.
    pub async fn failures(&self) -> Result<Vec<Failure>> {
        Ok(self
            .outbox_entries()
            .await?
            .into_iter()
            .filter_map(|e| match &e.state {
                EntryState::Failed { reasons, at_ms } => Some(Failure {
                    id: e.id(),
                    author: e.author.clone(),
                    summary: e.summary.clone(),
                    records: entry_records(&e),
                    reasons: reasons.clone(),
                    created_at_ms: e.created_at_ms,
                    failed_at_ms: *at_ms,
                    severity: Severity::Error,
                    change: Some(entry_change(&e)),
                }),
                EntryState::Pending => None,
            })
            .chain(self.damaged_entries().await?.into_iter().map(|(key, why)| Failure {
                id: format!("{DAMAGED_PREFIX}{key}"),
                author: String::new(),
                summary: "an unsent change that cannot be read".into(),
                records: vec![],
                reasons: vec![format!("STORAGE_CORRUPT: {why}")],
                created_at_ms: 0,
                failed_at_ms: 0,
                severity: Severity::Error,
                change: None,
            }))
            .chain(self.sync_warnings().await?)
            .collect())
    }

    /// The warnings the server gave on accepted work, kept until dismissed.
    pub(crate) async fn sync_warnings(&self) -> Result<Vec<Failure>> {
        match self.vault.get_record(StoreName::Cache, WARNINGS_ID).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| CoreError::StorageCorrupt(format!("sync warnings do not parse: {e}"))),
            None => Ok(Vec::new()),
        }
    }

    pub(crate) async fn store_sync_warnings(&self, warnings: &[Failure]) -> Result<()> {
        if warnings.is_empty() {
            let batch = self.vault.delete_into(WriteBatch::new(), StoreName::Cache, WARNINGS_ID)?;
            return self.vault.commit(batch).await;
        }
        let bytes = serde_json::to_vec(warnings).map_err(|e| CoreError::BadInput(e.to_string()))?;
        self.vault.put_record(StoreName::Cache, WARNINGS_ID, &bytes).await
    }

    /// Drops a stored entry that cannot be read (a person saw it in `failures()`).
    async fn discard_damaged(&self, key: &str) -> Result<OutboxEntry> {
        let _writer = self.writer.lock().await;
        let (_, damaged) = self.outbox_scan().await?;
        let (_, why) = damaged
            .into_iter()
            .find(|(k, _)| k == key)
            .ok_or_else(|| CoreError::BadInput(format!("no damaged outbox entry {key}")))?;
        self.vault.commit(WriteBatch::new().delete(StoreName::Outbox, key.to_string())).await?;
        self.outbox_changed();
        Ok(OutboxEntry {
            seq: 0,
            author: String::new(),
            created_at_ms: 0,
            summary: "an unsent change that cannot be read".into(),
            family: Family::Legacy,
            payload: EntryPayload::Raw {
                method: String::new(),
                url: String::new(),
                content_type: String::new(),
                body: Bytes(vec![]),
            },
            state: EntryState::Failed { reasons: vec![format!("STORAGE_CORRUPT: {why}")], at_ms: 0 },
            attempts: 0,
        })
    }

    async fn entry_by_id(&self, id: &str) -> Result<OutboxEntry> {
        let bytes = self
            .vault
            .get_record(StoreName::Outbox, id)
            .await?
            .ok_or_else(|| CoreError::BadInput(format!("no outbox entry {id}")))?;
        parse_entry(&bytes)
    }

    /// Dismisses a warning on accepted work (nothing is sent or changed). Answers with the
    /// accepted entry as it was captured, without its payload.
    async fn dismiss_warning(&self, id: &str) -> Result<OutboxEntry> {
        let _writer = self.writer.lock().await;
        let mut warnings = self.sync_warnings().await?;
        let position =
            warnings.iter().position(|w| w.id == id).ok_or_else(|| CoreError::BadInput(format!("no warning {id}")))?;
        let warning = warnings.remove(position);
        self.store_sync_warnings(&warnings).await?;
        let seq = id.trim_start_matches("warning:").parse().unwrap_or_default();
        Ok(OutboxEntry {
            seq,
            author: warning.author,
            created_at_ms: warning.created_at_ms,
            summary: warning.summary,
            family: Family::Legacy,
            payload: EntryPayload::Touches { touches: vec![] },
            state: EntryState::Pending,
            attempts: 0,
        })
    }

    /// Puts a failed entry back in line.
    pub async fn retry(&self, id: &str) -> Result<()> {
        let _writer = self.writer.lock().await;
        let mut entry = self.entry_by_id(id).await?;
        entry.state = EntryState::Pending;
        entry.attempts = 0; // a person asked: the count of server errors starts again
        let bytes = serde_json::to_vec(&entry).map_err(|e| CoreError::BadInput(e.to_string()))?;
        let written = self.vault.put_record(StoreName::Outbox, id, &bytes).await;
        self.outbox_changed();
        written
    }

    /// Drops an entry for good. Records it created only here are removed from the local copy;
    /// records it changed show the server's version again (each changed field back to the
    /// value it was changed from) and are marked synced.
    pub async fn discard(&self, id: &str) -> Result<OutboxEntry> {
        if id.starts_with("warning:") {
            return self.dismiss_warning(id).await;
        }
        if let Some(key) = id.strip_prefix(DAMAGED_PREFIX) {
            return self.discard_damaged(key).await;
        }
        let _writer = self.writer.lock().await;
        let entry = self.entry_by_id(id).await?;
        let batch = self.vault.delete_into(WriteBatch::new(), StoreName::Outbox, id)?;
        let others: Vec<OutboxEntry> = self.outbox_entries().await?.into_iter().filter(|e| e.id() != id).collect();
        let still_touched: BTreeSet<String> = others.iter().flat_map(entry_records).collect();
        let mut kept: Vec<TeiBundle> = Vec::new();
        let mut removed = Vec::new();
        if let EntryPayload::Touches { touches } = &entry.payload {
            let teis: BTreeSet<&str> = touches.iter().map(|t| t.tei.as_str()).collect();
            for tei in teis {
                let Some(bytes) = self.vault.get_record(StoreName::Records, &bundle_id(tei)).await? else { continue };
                let mut b = parse_bundle(&bytes)?;
                for t in touches.iter().filter(|t| t.tei == tei && !still_touched.contains(&t.uid)) {
                    if b.state(&t.uid) == SyncState::ToPost {
                        match t.kind {
                            Kind::Event => b.events.retain(|e| text(e, "event") != Some(t.uid.as_str())),
                            Kind::Enrollment => b.enrollments.retain(|e| text(e, "enrollment") != Some(t.uid.as_str())),
                            Kind::TrackedEntity => {}
                        }
                    } else if let Some(changes) = b.changes.remove(&t.uid) {
                        // The record shows the server's version again: each changed field back
                        // to the value it was changed from.
                        let bases = changes.iter().map(|(k, c)| (k.clone(), c.base.clone())).collect();
                        if let Some(record) = b.record_mut(t.kind, &t.uid) {
                            crate::merge::apply_fields(record, &bases);
                        }
                    }
                    b.sync.remove(&t.uid);
                }
                if b.state(tei) == SyncState::ToPost
                    && !still_touched.contains(tei)
                    && touches.iter().any(|t| t.uid == tei)
                {
                    removed.push(tei.to_string());
                } else {
                    kept.push(b);
                }
            }
        }
        self.commit_bundles(batch, &kept.iter().collect::<Vec<_>>(), &removed).await?;
        self.outbox_changed();
        Ok(entry)
    }
}
