//! The index snapshot (issue 17, P7): a sealed copy of every index row in 256 chunks of the
//! cache store, so that an unlock opens 256 values instead of one per woman.
//!
//! The index rows stay the record of truth (each is written with its bundle, in the same
//! transaction); the snapshot is a cache of them that is never trusted beyond what the
//! manifest says. Each snapshot row carries the fingerprint of the index row's envelope it was
//! made from, and a load takes a snapshot row only for a key whose current envelope, by the
//! manifest, has that fingerprint. Every other row (written since, or never in the snapshot)
//! is read and opened as before, and a row the snapshot holds but the index no longer has is
//! dropped. So a stale, lost or damaged snapshot costs time, never a wrong answer.
//!
//! Chunk `n` holds the rows whose storage key starts with the hex byte `n` (storage keys are
//! keyed hashes: the chunks fill evenly). A load rewrites the chunks it found stale once enough
//! rows were opened one by one ([`REFRESH_AT`]): a day of visits rewrites the chunks of the
//! women seen, not the whole copy.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{
    index::IndexRow,
    manifest::Fingerprint,
    store::{StoreName, WriteBatch},
};

/// Number of chunks.
pub const CHUNKS: usize = 256;
/// A load rewrites its stale chunks once this many rows were opened one by one or dropped.
pub const REFRESH_AT: usize = 32;
const FORMAT: u8 = 1;

/// Record id (cache store) of chunk `n`.
pub fn chunk_id(n: usize) -> String {
    format!("index-snapshot:{n:02x}")
}

/// The chunk of an index row's storage key.
pub fn chunk_of(storage_key: &str) -> usize {
    storage_key.get(..2).and_then(|p| u8::from_str_radix(p, 16).ok()).map_or(0, usize::from)
}

#[derive(Serialize, Deserialize)]
struct Chunk {
    format: u8,
    /// (fingerprint in hex, row).
    rows: Vec<(String, IndexRow)>,
}

#[derive(Serialize)]
struct ChunkRef<'a> {
    format: u8,
    rows: Vec<(String, &'a IndexRow)>,
}

/// A chunk to write again: its number and its new plaintext (None: delete it, no row left).
pub type ChunkWrite = (usize, Option<Vec<u8>>);

/// The rows of a snapshot as read, by fingerprint.
pub struct Snapshot {
    rows: HashMap<Fingerprint, IndexRow>,
    held: Vec<usize>,
    unreadable: Vec<bool>,
}

impl Snapshot {
    /// Parses the stored chunks (None: absent). A chunk that could not be read or does not
    /// parse holds nothing and is written again at the end of the load.
    pub fn parse(chunks: &[crate::error::Result<Option<Vec<u8>>>]) -> Self {
        let mut out = Snapshot { rows: HashMap::new(), held: vec![0; CHUNKS], unreadable: vec![false; CHUNKS] };
        for (n, read) in chunks.iter().enumerate().take(CHUNKS) {
            let bytes = match read {
                Ok(None) => continue,
                Ok(Some(bytes)) => bytes,
                Err(_) => {
                    out.unreadable[n] = true;
                    continue;
                }
            };
            let chunk = match serde_json::from_slice::<Chunk>(bytes) {
                Ok(chunk) if chunk.format == FORMAT => chunk,
                _ => {
                    out.unreadable[n] = true;
                    continue;
                }
            };
            for (fp, row) in chunk.rows {
                let mut bytes = [0u8; 16];
                if hex::decode_to_slice(&fp, &mut bytes).is_ok() && out.rows.insert(bytes, row).is_none() {
                    out.held[n] += 1;
                }
            }
        }
        out
    }

    /// Whether it holds the row of the envelope with fingerprint `fp`.
    pub fn holds(&self, fp: &Fingerprint) -> bool {
        self.rows.contains_key(fp)
    }
}

/// A load of the index from the snapshot and the rows opened one by one: what to put in
/// memory, and the chunks to write again.
pub struct Rebuild {
    snapshot: Snapshot,
    /// Per chunk: (fingerprint, row) of every row loaded, None for a row whose fingerprint is
    /// not known (read again after a concurrent write: left out of the snapshot).
    loaded: Vec<Vec<(Option<Fingerprint>, IndexRow)>>,
    /// Per chunk: rows taken from the snapshot.
    taken: Vec<usize>,
    stale: Vec<bool>,
    opened_one_by_one: usize,
}

impl Rebuild {
    /// Starts a load over `snapshot`.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot,
            loaded: (0..CHUNKS).map(|_| Vec::new()).collect(),
            taken: vec![0; CHUNKS],
            stale: vec![false; CHUNKS],
            opened_one_by_one: 0,
        }
    }

    /// The row of `storage_key` whose current envelope the snapshot holds; false if it does
    /// not (then the row must be opened).
    pub fn take(&mut self, storage_key: &str, fp: Fingerprint) -> bool {
        let Some(row) = self.snapshot.rows.remove(&fp) else { return false };
        let n = chunk_of(storage_key);
        self.taken[n] += 1;
        self.loaded[n].push((Some(fp), row));
        true
    }

    /// A row opened one by one (written since the snapshot, or not in it).
    pub fn opened(&mut self, storage_key: &str, fp: Option<Fingerprint>, row: IndexRow) {
        let n = chunk_of(storage_key);
        self.stale[n] = true;
        self.opened_one_by_one += 1;
        self.loaded[n].push((fp, row));
    }

    /// Rows opened one by one so far.
    pub fn opened_one_by_one(&self) -> usize {
        self.opened_one_by_one
    }

    /// Ends the load: every row, and the chunks to write again, empty while fewer than [`REFRESH_AT`] rows were opened one by one
    /// or dropped.
    pub fn finish(mut self) -> (Vec<IndexRow>, Vec<ChunkWrite>) {
        let mut dropped = 0;
        for n in 0..CHUNKS {
            let left = self.snapshot.held.get(n).copied().unwrap_or(0).saturating_sub(self.taken[n]);
            if left > 0 {
                self.stale[n] = true;
                dropped += left;
            }
            // An unreadable chunk is replaced at once: it would fail every later load's read.
            if self.snapshot.unreadable.get(n).copied().unwrap_or(false) {
                self.stale[n] = true;
                dropped += REFRESH_AT;
            }
        }
        let mut chunks = Vec::new();
        if self.opened_one_by_one + dropped >= REFRESH_AT {
            for n in (0..CHUNKS).filter(|&n| self.stale[n]) {
                let rows: Vec<(String, &IndexRow)> =
                    self.loaded[n].iter().filter_map(|(fp, row)| fp.map(|fp| (hex::encode(fp), row))).collect();
                let bytes =
                    (!rows.is_empty()).then(|| serde_json::to_vec(&ChunkRef { format: FORMAT, rows }).ok()).flatten();
                chunks.push((n, bytes));
            }
        }
        (self.loaded.into_iter().flatten().map(|(_, row)| row).collect(), chunks)
    }
}

/// Adds the writes of `chunks` (from [`Rebuild::finish`]) to `batch`.
pub fn write_chunks<S, K, R>(
    vault: &crate::vault::Vault<S, K, R>,
    mut batch: WriteBatch,
    chunks: &[ChunkWrite],
) -> crate::error::Result<WriteBatch>
where
    S: crate::store::KvStore,
    K: crate::kdf::PasswordKdf,
    R: crate::random::RandomSource,
{
    for (n, bytes) in chunks {
        batch = match bytes {
            Some(bytes) => vault.seal_into(batch, StoreName::Cache, &chunk_id(*n), bytes)?,
            None => vault.delete_into(batch, StoreName::Cache, &chunk_id(*n))?,
        };
    }
    Ok(batch)
}
