//! The outbox: writes captured while the server cannot be reached (or while earlier work is
//! still queued), each with its author, sealed, committed in the same transaction as its
//! effect on the local copy. Entries are kept until the server accepts them or the user
//! discards them; a refused entry stays, with the server's reasons.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{
    clinic::{bundle_id, parse_bundle},
    engine::Engine,
    error::{CoreError, Result},
    family::Kind,
    http::{HttpClient, HttpResponse},
    kdf::PasswordKdf,
    random::RandomSource,
    records::{text, SyncState, TeiBundle},
    register::Bytes,
    store::{KvStore, StoreName, WriteBatch},
    time::iso_from_ms,
    uid::generate_uid,
    write_answer::{synthetic_response, tracker_report},
    write_effect::{apply_mutation, Touch},
    writes::{describe, prepare_write, Family, Mutation, PreparedWrite},
};

pub use crate::outbox_failures::{warning_id, Failure, Severity, WARNINGS_ID};

/// What an entry sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum EntryPayload {
    /// Tracker records, sent in their current local state.
    Touches {
        /// The records.
        touches: Vec<Touch>,
    },
    /// A request replayed as it was made (no Authorization header or cookie is kept).
    Raw {
        /// Method.
        method: String,
        /// URL.
        url: String,
        /// Content type.
        content_type: String,
        /// Body.
        body: Bytes,
    },
}

/// Where an entry stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum EntryState {
    /// Waiting to be sent.
    Pending,
    /// The server refused it; kept for the user.
    Failed {
        /// The server's reasons, readable.
        reasons: Vec<String>,
        /// When (ms since epoch).
        at_ms: i64,
    },
}

/// One queued write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// Order of capture.
    pub seq: u64,
    /// Username of who made the change.
    pub author: String,
    /// Capture time (ms since epoch).
    pub created_at_ms: i64,
    /// `METHOD /path`, for lists.
    pub summary: String,
    /// API family of the write.
    pub family: Family,
    /// What to send.
    pub payload: EntryPayload,
    /// Pending or failed.
    pub state: EntryState,
    /// Attempts so far.
    pub attempts: u32,
}

impl OutboxEntry {
    /// The record id of this entry in the outbox store.
    pub fn id(&self) -> String {
        entry_id(self.seq)
    }

    /// True if it waits to be sent.
    pub fn is_pending(&self) -> bool {
        self.state == EntryState::Pending
    }
}

/// Record id of an entry.
pub fn entry_id(seq: u64) -> String {
    format!("entry:{seq:020}")
}

/// Counts per author.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OutboxCounts {
    /// Pending entries.
    pub pending: u64,
    /// Failed entries.
    pub failed: u64,
    /// Pending per author.
    pub pending_by_author: BTreeMap<String, u64>,
    /// Failed per author.
    pub failed_by_author: BTreeMap<String, u64>,
}

/// What this context keeps of the outbox in memory, owned apart from the rest of the engine
/// (each part behind its own lock): the last capture sequence number, the counts last found
/// (kept while this context's writes keep them exact), and the flush's settings.
#[derive(Debug)]
pub struct OutboxBook {
    last_seq: std::sync::Mutex<u64>,
    counts: std::sync::Mutex<Option<OutboxCounts>>,
    conflict_policy: std::sync::Mutex<crate::merge::ConflictPolicy>,
    server_error_limit: std::sync::Mutex<u32>,
}

impl Default for OutboxBook {
    fn default() -> Self {
        Self {
            last_seq: Default::default(),
            counts: Default::default(),
            conflict_policy: Default::default(),
            server_error_limit: std::sync::Mutex::new(crate::backoff::DEFAULT_SERVER_ERROR_LIMIT),
        }
    }
}

impl OutboxBook {
    /// The counts last found, if still kept.
    pub fn counts(&self) -> Option<OutboxCounts> {
        self.counts.lock().ok().and_then(|c| c.clone())
    }

    /// Keeps (or, with None, forgets) the counts.
    pub fn set_counts(&self, counts: Option<OutboxCounts>) {
        if let Ok(mut kept) = self.counts.lock() {
            *kept = counts;
        }
    }

    /// After a capture committed one new pending entry of `author` (or failed to): the kept
    /// counts gain it, so the status asked after every write does not open every entry again
    /// (issue 17, P4: that made each write cost more than the one before). Kept only when
    /// nothing else changed them since `counted_before` was read; else dropped and counted anew.
    pub fn entry_added(&self, committed: bool, author: &str, counted_before: Option<OutboxCounts>) {
        if let Ok(mut kept) = self.counts.lock() {
            *kept = match (committed, counted_before) {
                (true, Some(mut counts)) if *kept == Some(counts.clone()) => {
                    counts.pending += 1;
                    *counts.pending_by_author.entry(author.to_string()).or_default() += 1;
                    Some(counts)
                }
                _ => None,
            };
        }
    }

    /// Whether no sequence number was given out in this context yet.
    pub fn fresh(&self) -> bool {
        self.last_seq.lock().map(|l| *l == 0).unwrap_or(false)
    }

    /// The next capture sequence number: time-based (`now_ms` in µs), after `stored` (the
    /// highest one stored) and after every one given out in this context.
    pub fn next_seq(&self, now_ms: i64, stored: u64) -> Result<u64> {
        let mut last = self.last_seq.lock().map_err(|_| CoreError::Storage("seq lock poisoned".into()))?;
        *last = (*last).max(stored);
        // Capture times in µs never come near the end of u64: only a damaged entry does, and
        // the next entry must not take its place.
        let after = last
            .checked_add(1)
            .ok_or_else(|| CoreError::StorageCorrupt("an outbox entry holds the last sequence number".into()))?;
        let seq = (now_ms.max(0) as u64).saturating_mul(1000).max(after);
        *last = seq;
        Ok(seq)
    }

    /// What flushes do with a field changed on both sides.
    pub fn conflict_policy(&self) -> crate::merge::ConflictPolicy {
        self.conflict_policy.lock().map(|p| *p).unwrap_or_default()
    }

    /// Sets the conflict policy.
    pub fn set_conflict_policy(&self, policy: crate::merge::ConflictPolicy) {
        if let Ok(mut p) = self.conflict_policy.lock() {
            *p = policy;
        }
    }

    /// Server errors (HTTP 500) one record may get before its entry is moved aside.
    pub fn server_error_limit(&self) -> u32 {
        self.server_error_limit.lock().map(|l| *l).unwrap_or(crate::backoff::DEFAULT_SERVER_ERROR_LIMIT)
    }

    /// Sets the server error limit (checked by the engine: at least 1).
    pub fn set_server_error_limit(&self, limit: u32) {
        if let Ok(mut l) = self.server_error_limit.lock() {
            *l = limit;
        }
    }
}

/// Id prefix of a stored entry that cannot be read, in `failures()` and `discard`.
pub const DAMAGED_PREFIX: &str = "damaged:";

pub(crate) fn parse_entry(bytes: &[u8]) -> Result<OutboxEntry> {
    serde_json::from_slice(bytes).map_err(|e| CoreError::StorageCorrupt(format!("outbox entry: {e}")))
}

/// The record UIDs of an entry.
pub fn entry_records(entry: &OutboxEntry) -> Vec<String> {
    match &entry.payload {
        EntryPayload::Touches { touches } => touches.iter().map(|t| t.uid.clone()).collect(),
        EntryPayload::Raw { .. } => vec![],
    }
}

/// What an entry changes, for screens.
pub fn entry_change(entry: &OutboxEntry) -> crate::writes::Change {
    let touches: &[Touch] = match &entry.payload {
        EntryPayload::Touches { touches } => touches,
        EntryPayload::Raw { .. } => &[],
    };
    crate::writes::change_of(&entry.summary, touches)
}

/// Records, for each record a write changed that exists on the server, which fields it changed
/// and from what (the merge's bases). A record with unsent changes from before fields were
/// tracked is marked to be sent whole, as it was. Returns the unsent values of another open
/// window that this write replaced, as conflicts to show.
fn track_field_changes(
    before: &BTreeMap<String, TeiBundle>,
    bundles: &mut [TeiBundle],
    touches: &[Touch],
    window: Option<&crate::merge::WriteWindow>,
    author: &str,
    now_ms: i64,
) -> Vec<crate::merge::Conflict> {
    let mut replaced = Vec::new();
    for bundle in bundles.iter_mut() {
        let tei = bundle.uid().to_string();
        for t in touches.iter().filter(|t| t.tei == tei && !t.deleted) {
            let Some(old_bundle) = before.get(&tei) else { continue };
            let Some(old) = old_bundle.record(t.kind, &t.uid) else { continue };
            if old_bundle.state(&t.uid) == SyncState::ToPost {
                continue; // created here: sent whole
            }
            let Some(new) = bundle.record(t.kind, &t.uid).cloned() else { continue };
            let untracked = old_bundle.state(&t.uid).has_local_changes() && !old_bundle.changes.contains_key(&t.uid);
            let changes = bundle.changes.entry(t.uid.clone()).or_default();
            if untracked {
                changes.insert(
                    crate::merge::WHOLE_RECORD.into(),
                    crate::merge::FieldChange::new(serde_json::Value::Null, serde_json::Value::Null),
                );
            }
            // An empty set stays: the record's changes were undone, nothing is left to send.
            for (field, base, earlier, value) in crate::merge::record_changes(old, &new, changes, window) {
                replaced.push(crate::merge::Conflict {
                    id: format!("conflict:{}:{field}:{now_ms}:window", t.uid),
                    kind: t.kind,
                    record: t.uid.clone(),
                    tei: tei.clone(),
                    field,
                    base,
                    server: earlier,
                    device: value,
                    author: author.to_string(),
                    changed_at_ms: now_ms,
                    found_at_ms: now_ms,
                    server_updated: None,
                    held: false,
                    source: crate::merge::ConflictSource::Window,
                });
            }
        }
    }
    replaced
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    /// Every outbox entry that opens, in capture order. Entries that do not open are left out
    /// here (so they hold nothing back) and reported by [`Self::damaged_entries`].
    pub async fn outbox_entries(&self) -> Result<Vec<OutboxEntry>> {
        Ok(self.outbox_scan().await?.0)
    }

    /// Stored entries that cannot be opened or read (damaged or tampered storage): their stored
    /// key and why. They are failures for a person to see (`failures()`, id `damaged:<key>`)
    /// and to discard; never counted as nothing.
    pub async fn damaged_entries(&self) -> Result<Vec<(String, String)>> {
        Ok(self.outbox_scan().await?.1)
    }

    pub(crate) async fn outbox_scan(&self) -> Result<(Vec<OutboxEntry>, Vec<(String, String)>)> {
        let mut entries = Vec::new();
        let mut damaged = Vec::new();
        for (key, opened) in self.vault.open_all(StoreName::Outbox).await? {
            match opened.and_then(|bytes| parse_entry(&bytes)) {
                Ok(entry) => entries.push(entry),
                Err(e) => damaged.push((key, e.to_string())),
            }
        }
        entries.sort_unstable_by_key(|e| e.seq);
        Ok((entries, damaged))
    }

    /// Pending and failed counts, per author.
    pub async fn outbox_counts(&self) -> Result<OutboxCounts> {
        // Counting means opening every entry: keep the answer while the outbox does not change.
        // This engine's writes drop it; another context's writes are seen only when they change
        // the number of entries (not a pending entry turning failed), so the JS face takes the
        // counts from the context that writes the outbox (the service worker).
        let stored = self.vault.store().count(StoreName::Outbox).await?;
        if let Some(cached) = self.outbox.counts() {
            if cached.pending + cached.failed == stored {
                return Ok(cached);
            }
        }
        let mut counts = OutboxCounts::default();
        let (entries, damaged) = self.outbox_scan().await?;
        counts.failed += damaged.len() as u64;
        for e in entries {
            match e.state {
                EntryState::Pending => {
                    counts.pending += 1;
                    *counts.pending_by_author.entry(e.author).or_default() += 1;
                }
                EntryState::Failed { .. } => {
                    counts.failed += 1;
                    *counts.failed_by_author.entry(e.author).or_default() += 1;
                }
            }
        }
        self.outbox.set_counts(Some(counts.clone()));
        Ok(counts)
    }

    /// Forgets the cached counts after this engine changed the outbox.
    pub(crate) fn outbox_changed(&self) {
        self.outbox.set_counts(None);
    }

    /// True when the outbox holds work: later tracker writes must queue behind it.
    pub async fn outbox_has_work(&self) -> Result<bool> {
        Ok(self.vault.store().count(StoreName::Outbox).await? > 0)
    }

    /// Understands a write and adds UIDs to creates (before it is sent or queued).
    pub fn prepare_write(&self, method: &str, url: &str, content_type: &str, body: &[u8]) -> Result<PreparedWrite> {
        let minor = self.clinic.minor_version().unwrap_or(40);
        prepare_write(method, url, &self.api_path(), minor, content_type, body, self.vault.rng())
    }

    async fn load_bundles_for(&self, prepared: &PreparedWrite) -> Result<BTreeMap<String, TeiBundle>> {
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        let owner = |uid: &str| self.clinic.owner_of(uid);
        let mut consider = |record: &crate::records::Object| {
            for key in ["trackedEntityInstance"] {
                if let Some(t) = text(record, key) {
                    wanted.insert(t.to_string());
                }
            }
            for key in ["enrollment", "event"] {
                if let Some(t) = text(record, key).and_then(owner) {
                    wanted.insert(t);
                }
            }
        };
        match &prepared.mutation {
            Mutation::Teis { teis, .. } => teis.iter().for_each(&mut consider),
            Mutation::Enrollments(l) | Mutation::Events(l) => l.iter().for_each(&mut consider),
            Mutation::TrackerImport { teis, enrollments, events, .. } => {
                teis.iter().chain(enrollments).chain(events).for_each(&mut consider)
            }
            Mutation::EventValue { event, .. }
            | Mutation::EventDate { event, .. }
            | Mutation::EventNote { event, .. } => wanted.extend(owner(event)),
            Mutation::EnrollmentStatus { enrollment, .. } => wanted.extend(owner(enrollment)),
            Mutation::Delete { kind: Kind::TrackedEntity, uid } => {
                wanted.insert(uid.clone());
            }
            Mutation::Delete { uid, .. } => wanted.extend(owner(uid)),
            Mutation::Raw => {}
        }
        let mut out = BTreeMap::new();
        for uid in wanted {
            if let Some(bytes) = self.vault.get_record(StoreName::Records, &bundle_id(&uid)).await? {
                out.insert(uid, parse_bundle(&bytes)?);
            }
        }
        Ok(out)
    }

    fn local_effect(
        &self,
        prepared: &PreparedWrite,
        author: &str,
        now_ms: i64,
        mut loaded: BTreeMap<String, TeiBundle>,
    ) -> Result<(Vec<TeiBundle>, Vec<Touch>)> {
        let owner = |uid: &str| self.clinic.owner_of(uid);
        let mut bundle_of = |uid: &str| loaded.remove(uid);
        apply_mutation(prepared, author, &iso_from_ms(now_ms), &mut bundle_of, &owner)
    }

    fn existed(&self, uid: &str) -> bool {
        self.clinic.knows(uid)
    }

    /// Queues a write: its effect on the local copy and its outbox entry in one transaction.
    /// Returns the answer the app expects from the server.
    pub async fn capture_write(&self, prepared: &PreparedWrite, now_ms: i64) -> Result<HttpResponse> {
        let author = self.vault.session_info().map(|s| s.username).ok_or(CoreError::VaultLocked)?;
        self.ensure_clinic_loaded().await?;
        let job_id = generate_uid(self.vault.rng())?;
        let response = synthetic_response(prepared, &job_id, &self.config.api_base, &|u| self.existed(u));
        let _writer = self.writer.lock().await;
        let loaded = self.load_bundles_for(prepared).await?;
        let before = loaded.clone();
        let effect = match prepared.mutation {
            Mutation::Raw => None,
            _ => self.local_effect(prepared, &author, now_ms, loaded).ok(),
        };
        let mut replaced = Vec::new();
        let effect = effect.map(|(mut bundles, touches)| {
            replaced = track_field_changes(&before, &mut bundles, &touches, prepared.window.as_ref(), &author, now_ms);
            (bundles, touches)
        });
        let next_ordinal = self.clinic.next_ordinal().unwrap_or(1);
        let effect = effect.map(|(mut bundles, touches)| {
            for (i, b) in bundles.iter_mut().filter(|b| b.ordinal == 0).enumerate() {
                b.ordinal = next_ordinal.saturating_add(i as u64);
            }
            (bundles, touches)
        });
        let (bundles, payload) = match effect {
            Some((bundles, touches)) => (bundles, EntryPayload::Touches { touches }),
            None => (
                vec![],
                EntryPayload::Raw {
                    method: prepared.method.clone(),
                    url: prepared.url.clone(),
                    content_type: prepared.content_type.clone(),
                    body: Bytes(prepared.body.clone()),
                },
            ),
        };
        let seq = self.next_seq(now_ms).await?;
        let entry = OutboxEntry {
            seq,
            author,
            created_at_ms: now_ms,
            summary: describe(prepared),
            family: prepared.family,
            payload,
            state: EntryState::Pending,
            attempts: 0,
        };
        let entry_bytes = serde_json::to_vec(&entry).map_err(|e| CoreError::BadInput(e.to_string()))?;
        let mut batch = self.vault.seal_into(WriteBatch::new(), StoreName::Outbox, &entry.id(), &entry_bytes)?;
        if let Mutation::TrackerImport { asynchronous: true, .. } = prepared.mutation {
            let report = tracker_report(prepared).to_string();
            batch = self.vault.seal_into(batch, StoreName::Cache, &format!("job:{job_id}"), report.as_bytes())?;
        }
        if !replaced.is_empty() {
            let mut log = self.conflict_log().await?;
            log.extend(replaced);
            batch = self.seal_conflict_log(batch, &log)?;
        }
        let counted_before = self.outbox.counts();
        // The records, the outbox entry (and any conflict it made) commit together.
        let committed = self.commit_bundles(batch, &bundles.iter().collect::<Vec<_>>(), &[]).await;
        self.outbox.entry_added(committed.is_ok(), &entry.author, counted_before);
        committed?;
        Ok(response)
    }

    /// Capture order without reading the outbox: time-based, strictly increasing in this
    /// context (captures happen in the service worker, one context per origin).
    pub(crate) async fn next_seq(&self, now_ms: i64) -> Result<u64> {
        // A new context (a restarted worker, a clock set back) continues after what is stored,
        // so an entry never takes the place of another.
        let stored =
            if self.outbox.fresh() { self.outbox_entries().await?.iter().map(|e| e.seq).max().unwrap_or(0) } else { 0 };
        self.outbox.next_seq(now_ms, stored)
    }

    /// After a write sent straight through (online, empty outbox) was answered: when the answer
    /// is the server's acceptance of every record the write touches, the same effect on the
    /// local copy, marked as synced. Returns whether it was recorded. An answer that refuses
    /// (the legacy enrollment POST answers 201 even for ERROR), a portal's HTML or anything
    /// else that is not evidence leaves the local copy as it was.
    pub async fn record_online_write(
        &self,
        prepared: &PreparedWrite,
        response: &HttpResponse,
        now_ms: i64,
    ) -> Result<bool> {
        let author = self.vault.session_info().map(|s| s.username).ok_or(CoreError::VaultLocked)?;
        self.ensure_clinic_loaded().await?;
        if prepared.mutation == Mutation::Raw {
            return Ok(false);
        }
        let _writer = self.writer.lock().await;
        let loaded = self.load_bundles_for(prepared).await?;
        let Ok((mut bundles, touches)) = self.local_effect(prepared, &author, now_ms, loaded) else { return Ok(false) };
        let uids: Vec<String> = touches.iter().map(|t| t.uid.clone()).collect();
        if !crate::answer::accepts_all(response, &uids, prepared.family) {
            return Ok(false);
        }
        for b in &mut bundles {
            for t in &touches {
                if t.tei == b.uid() {
                    b.sync.remove(&t.uid);
                }
            }
        }
        self.commit_bundles(WriteBatch::new(), &bundles.iter().collect::<Vec<_>>(), &[]).await?;
        Ok(true)
    }
}
