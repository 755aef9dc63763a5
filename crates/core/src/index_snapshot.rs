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
    index::{EnrollmentRow, IndexRow},
    manifest::Fingerprint,
    store::{StoreName, WriteBatch},
    vault::Stored,
};

/// Number of chunks.
pub const CHUNKS: usize = 256;
/// A load rewrites its stale chunks once this many rows were opened one by one or dropped.
pub const REFRESH_AT: usize = 32;
const FORMAT: u8 = 2;

/// Record id (cache store) of chunk `n`.
pub fn chunk_id(n: usize) -> String {
    format!("index-snapshot:{n:02x}")
}

/// The record ids of every chunk, in order.
pub fn chunk_ids() -> Vec<String> {
    (0..CHUNKS).map(chunk_id).collect()
}

/// What a load of the index found.
pub struct Loaded {
    /// Every row.
    pub rows: Vec<IndexRow>,
    /// Rows that could not be opened or parsed (damaged storage).
    pub damaged: usize,
    /// The chunks to write again.
    pub chunk_writes: Vec<ChunkWrite>,
}

/// The index from the snapshot and the values of the index store that [`Vault::open_all_except`]
/// read because the snapshot does not hold them.
///
/// [`Vault::open_all_except`]: crate::vault::Vault::open_all_except
#[inline(never)]
pub fn rebuild(snapshot: Snapshot, stored: Vec<(String, Stored)>) -> Loaded {
    let mut rebuild = Rebuild::new(snapshot);
    let mut damaged = 0;
    for (key, value) in stored {
        let (plain, fp) = match value {
            Stored::Known(fp) if rebuild.take(&key, fp) => continue,
            // Two keys with one fingerprint: not envelopes this vault wrote.
            Stored::Known(_) | Stored::Opened(Err(_)) => {
                damaged += 1;
                continue;
            }
            Stored::Opened(Ok(opened)) => opened,
        };
        // A row naming no tracked entity (every row is stored with its UID) is damaged too.
        match serde_json::from_slice::<IndexRow>(&plain) {
            Ok(row) if crate::records::is_uid(&row.uid) => rebuild.opened(&key, fp, row),
            _ => damaged += 1,
        }
    }
    let (rows, chunk_writes) = rebuild.finish();
    Loaded { rows, damaged, chunk_writes }
}

/// The chunk of an index row's storage key.
pub fn chunk_of(storage_key: &str) -> usize {
    storage_key.get(..2).and_then(|p| u8::from_str_radix(p, 16).ok()).map_or(0, usize::from)
}

/// A chunk as stored: the rows packed as JSON arrays, the strings that repeat from row to row
/// (tracked entity type, org units, attribute, program and status names) as positions in
/// `strings`, a last update equal to the creation as "". Less than half the bytes of the rows
/// as JSON objects, so less than half the AES-GCM and parsing at each unlock.
#[derive(Serialize, Deserialize)]
struct Chunk {
    format: u8,
    strings: Vec<String>,
    rows: Vec<PackedRow>,
}

/// (fingerprint in hex, uid, tracked entity type, org unit, created, last updated, flags,
/// attributes, enrollments, events, ordinal).
#[derive(Serialize, Deserialize)]
struct PackedRow(
    String,
    String,
    u32,
    u32,
    String,
    String,
    u8,
    Vec<(u32, String)>,
    Vec<PackedEnrollment>,
    Vec<String>,
    u64,
);

/// (uid, program, status, org unit, enrollment date, flags).
#[derive(Serialize, Deserialize)]
struct PackedEnrollment(String, u32, u32, u32, String, u8);

const INACTIVE: u8 = 1;
const DELETED: u8 = 2;
const POTENTIAL_DUPLICATE: u8 = 4;
const FOLLOW_UP: u8 = 8;

fn bits(pairs: &[(bool, u8)]) -> u8 {
    pairs.iter().filter(|(on, _)| *on).fold(0, |acc, (_, bit)| acc | bit)
}

/// Builds the string table of a chunk while rows are packed.
#[derive(Default)]
struct Strings<'a> {
    list: Vec<&'a str>,
    position: HashMap<&'a str, u32>,
}

impl<'a> Strings<'a> {
    fn of(&mut self, s: &'a str) -> u32 {
        let next = self.list.len() as u32;
        *self.position.entry(s).or_insert_with(|| {
            self.list.push(s);
            next
        })
    }
}

fn pack<'a>(fp: &Fingerprint, row: &'a IndexRow, strings: &mut Strings<'a>) -> PackedRow {
    let last_updated = if row.last_updated == row.created { String::new() } else { row.last_updated.clone() };
    PackedRow(
        hex::encode(fp),
        row.uid.clone(),
        strings.of(&row.tracked_entity_type),
        strings.of(&row.org_unit),
        row.created.clone(),
        last_updated,
        bits(&[(row.inactive, INACTIVE), (row.deleted, DELETED), (row.potential_duplicate, POTENTIAL_DUPLICATE)]),
        row.attributes.iter().map(|(a, v)| (strings.of(a), v.clone())).collect(),
        row.enrollments
            .iter()
            .map(|e| {
                PackedEnrollment(
                    e.uid.clone(),
                    strings.of(&e.program),
                    strings.of(&e.status),
                    strings.of(&e.org_unit),
                    e.enrollment_date.clone(),
                    bits(&[(e.follow_up, FOLLOW_UP), (e.deleted, DELETED)]),
                )
            })
            .collect(),
        row.events.clone(),
        row.ordinal,
    )
}

/// The row of a packed row, or None when it names a string the chunk does not hold.
fn unpack(packed: PackedRow, strings: &[String]) -> Option<(Fingerprint, IndexRow)> {
    let PackedRow(fp_hex, uid, tet, ou, created, last_updated, flags, attributes, enrollments, events, ordinal) =
        packed;
    let s = |n: u32| strings.get(n as usize).cloned();
    let mut fp = [0u8; 16];
    hex::decode_to_slice(&fp_hex, &mut fp).ok()?;
    let enrollments = enrollments
        .into_iter()
        .map(|PackedEnrollment(uid, program, status, org_unit, enrollment_date, flags)| {
            Some(EnrollmentRow {
                uid,
                program: s(program)?,
                status: s(status)?,
                org_unit: s(org_unit)?,
                enrollment_date,
                follow_up: flags & FOLLOW_UP != 0,
                deleted: flags & DELETED != 0,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let row = IndexRow {
        uid,
        tracked_entity_type: s(tet)?,
        org_unit: s(ou)?,
        last_updated: if last_updated.is_empty() { created.clone() } else { last_updated },
        created,
        inactive: flags & INACTIVE != 0,
        deleted: flags & DELETED != 0,
        potential_duplicate: flags & POTENTIAL_DUPLICATE != 0,
        attributes: attributes.into_iter().map(|(a, v)| Some((s(a)?, v))).collect::<Option<Vec<_>>>()?,
        enrollments,
        events,
        ordinal,
    };
    Some((fp, row))
}

/// The stored plaintext of a chunk holding `rows` (None: no row).
fn encode_chunk<'a>(rows: impl Iterator<Item = (&'a Fingerprint, &'a IndexRow)>) -> Option<Vec<u8>> {
    let mut strings = Strings::default();
    let rows: Vec<PackedRow> = rows.map(|(fp, row)| pack(fp, row, &mut strings)).collect();
    if rows.is_empty() {
        return None;
    }
    let strings = strings.list.iter().map(|s| s.to_string()).collect();
    serde_json::to_vec(&Chunk { format: FORMAT, strings, rows }).ok()
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
    /// Parses the stored chunks, in the order of [`chunk_ids`] (None: absent). A chunk that
    /// does not parse holds nothing and is written again at the end of the load; so is every
    /// chunk when they could not be read (a damaged one fails the read of all).
    #[inline(never)]
    pub fn parse(read: crate::error::Result<Vec<Option<Vec<u8>>>>) -> Self {
        let chunks: Vec<crate::error::Result<Option<Vec<u8>>>> = match read {
            Ok(chunks) => chunks.into_iter().map(Ok).collect(),
            Err(e) => (0..CHUNKS).map(|_| Err(e.clone())).collect(),
        };
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
            for packed in chunk.rows {
                match unpack(packed, &chunk.strings) {
                    Some((fp, row)) => {
                        if out.rows.insert(fp, row).is_none() {
                            out.held[n] += 1;
                        }
                    }
                    None => out.unreadable[n] = true,
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
                let bytes = encode_chunk(self.loaded[n].iter().filter_map(|(fp, row)| fp.as_ref().map(|fp| (fp, row))));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u8, flags: bool) -> IndexRow {
        IndexRow {
            uid: format!("Te00000000{n}"),
            tracked_entity_type: "TetPerson01".into(),
            org_unit: if flags { "OuSaeerCli1".into() } else { "OuBaniNaim1".into() },
            created: "2026-01-02T10:00:00.000".into(),
            last_updated: if flags { "2026-03-04T11:00:00.000".into() } else { "2026-01-02T10:00:00.000".into() },
            inactive: flags,
            deleted: false,
            potential_duplicate: flags,
            attributes: vec![("AtFirstNam1".into(), "فاطمة".into()), ("AtNationId1".into(), format!("40000000{n}"))],
            enrollments: vec![EnrollmentRow {
                uid: format!("En00000000{n}"),
                program: "PrMchProg01".into(),
                status: if flags { "COMPLETED".into() } else { "ACTIVE".into() },
                org_unit: "OuBaniNaim1".into(),
                enrollment_date: "2026-01-05T00:00:00.000".into(),
                follow_up: flags,
                deleted: flags,
            }],
            events: vec![format!("Ev00000000{n}"), format!("Ev10000000{n}")],
            ordinal: u64::from(n) * 1000,
        }
    }

    #[test]
    fn a_packed_chunk_gives_back_every_row_and_flag() {
        let rows: Vec<(Fingerprint, IndexRow)> = (0..4).map(|n| ([n; 16], row(n, n % 2 == 1))).collect();
        let bytes = encode_chunk(rows.iter().map(|(fp, row)| (fp, row))).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.matches("PrMchProg01").count(), 1, "repeated names are stored once: {text}");
        let mut chunks = vec![None; CHUNKS];
        chunks[7] = Some(bytes);
        let mut snapshot = Snapshot::parse(Ok(chunks));
        assert_eq!(snapshot.held[7], 4);
        for (fp, expected) in rows {
            assert!(snapshot.holds(&fp));
            assert_eq!(snapshot.rows.remove(&fp).unwrap(), expected);
        }
        assert!(encode_chunk(std::iter::empty()).is_none());
    }

    #[test]
    fn a_chunk_naming_a_string_it_does_not_hold_is_unreadable_not_a_panic() {
        let bad = br#"{"format":2,"strings":[],"rows":[["00000000000000000000000000000000","Te000000001",3,0,"","",0,[],[],[],0]]}"#;
        let mut chunks = vec![None; CHUNKS];
        chunks[1] = Some(bad.to_vec());
        chunks[2] = Some(b"not json".to_vec());
        let snapshot = Snapshot::parse(Ok(chunks));
        assert!(snapshot.rows.is_empty());
        assert_eq!(&snapshot.unreadable[..4], &[false, true, true, false]);
        let (rows, writes) = Rebuild::new(snapshot).finish();
        assert!(rows.is_empty());
        assert_eq!(writes, vec![(1, None), (2, None)], "unreadable chunks are deleted at once");
        let unread = Snapshot::parse(Err(crate::error::CoreError::StorageCorrupt("a damaged chunk".into())));
        assert_eq!(Rebuild::new(unread).finish().1.len(), CHUNKS, "a failed read replaces every chunk");
    }

    /// The stored format of a snapshot chunk (FORMAT 2) and the ids of the chunks. A change
    /// here costs every device one slow unlock (the chunks are rebuilt from the index rows),
    /// never a wrong answer; still, bump FORMAT when it changes.
    #[test]
    fn the_chunk_format_is_stable() {
        let rows: Vec<(Fingerprint, IndexRow)> = vec![([0xa1; 16], row(1, false)), ([0xb2; 16], row(2, true))];
        let bytes = encode_chunk(rows.iter().map(|(fp, row)| (fp, row))).unwrap();
        let pretty =
            serde_json::to_string_pretty(&serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()).unwrap();
        insta::assert_snapshot!("index_snapshot_chunk", format!("ids: {} {}\n{pretty}", chunk_id(0), chunk_id(0xab)));
    }
}
