//! The index snapshot (issue 17, P7): a sealed copy of every index row in 256 chunks, so that
//! an unlock opens 256 values instead of one per woman, and lists no key of the index store
//! when nothing changed.
//!
//! The index rows stay the record of truth (each is written with its bundle, in the same
//! transaction); the snapshot is a copy of them that proves itself current. Chunk `n` holds the
//! rows whose storage key starts with the hex byte `n` (storage keys are keyed hashes: the
//! chunks fill evenly), which are exactly the values of the manifest's 16 shards `n0`..`nf`.
//! A chunk written from a complete, checked read of those rows names the versions those
//! shards had ([`Guard`]); any later write under the prefix, in any store, raises one of them.
//! So a load takes a chunk whose versions are the manifest's as it is, and reads only the
//! other prefixes: their keys (one key range each), their fingerprints by the manifest, and
//! the rows whose current envelope the chunk does not hold (each snapshot row carries the
//! fingerprint of the envelope it was made from). A stale, lost, rolled back or damaged chunk
//! costs time, never a wrong answer: versions only grow, and the manifest root is sealed.
//!
//! The chunks are sealed copies outside the manifest ([`Vault::seal_copy_into`]): writing one
//! changes no shard, so it does not make itself or another chunk stale. A rotation of the
//! data key deletes them (the manifest starts again at version 0).
//!
//! [`Vault::seal_copy_into`]: crate::vault::Vault::seal_copy_into

use std::collections::HashMap;

use crate::{
    fast_hash::FastHashMap,
    index::{EnrollmentRow, IndexRow},
    manifest::Fingerprint,
    store::WriteBatch,
    vault::{PrefixState, Stored},
};

/// Number of chunks.
pub const CHUNKS: usize = 256;
/// A load writes chunks once this many rows were opened one by one or dropped ...
pub const REFRESH_AT: usize = 32;
/// ... or once this many chunks can be written again (each costs later loads a key range
/// and 16 manifest shards until it is): a few small changes are not worth a write.
pub const REFRESH_CHUNKS: usize = 16;
const FORMAT: u8 = 3;

/// Copy id ([`crate::vault::Vault::seal_copy_into`]) of chunk `n`; before the chunks were
/// copies, also their record id in the cache store.
pub fn chunk_id(n: usize) -> String {
    format!("index-snapshot:{n:02x}")
}

/// The storage key prefix of chunk `n`'s rows.
pub fn chunk_prefix(n: usize) -> String {
    format!("{n:02x}")
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

/// The index from the snapshot and the values of the index store that
/// [`Vault::open_under_except`] read under the prefixes the snapshot does not hold as they are
/// now, with what the manifest said of each prefix (`states`).
///
/// [`Vault::open_under_except`]: crate::vault::Vault::open_under_except
#[inline(never)]
pub fn rebuild(snapshot: Snapshot, stored: Vec<(String, Stored)>, states: &[PrefixState]) -> Loaded {
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
    let (rows, chunk_writes) = rebuild.finish(states);
    Loaded { rows, damaged, chunk_writes }
}

/// The chunk of an index row's storage key.
pub fn chunk_of(storage_key: &str) -> usize {
    storage_key.get(..2).and_then(|p| u8::from_str_radix(p, 16).ok()).map_or(0, usize::from)
}

/// A chunk as stored (FORMAT 3): a compact binary layout, since parsing the chunks was the
/// largest part of an unlock's work once they replaced the rows (JSON arrays in FORMAT 2: about
/// a quarter of the worker's time of a load at 20,000 women by the profile). Integers are LEB128
/// varints, a text is its length then its UTF-8 bytes. In order: the format byte; the
/// [`Guard`]'s versions (count, each; none when the rows are not every row of the prefix); the
/// strings that repeat from row to row (tracked entity type, org units, attribute, program and
/// status names; count, each), which rows name by position; the rows (count, each: the 16
/// fingerprint bytes, uid, tracked entity type, org unit, created, last updated ("" when it is
/// the creation), flags, attributes (count, each name and value), enrollments (count, each uid,
/// program, status, org unit, enrollment date, flags), events (count, each uid), ordinal).
struct Chunk {
    rows: Vec<(Fingerprint, IndexRow)>,
    versions: Vec<u32>,
}

/// The versions of the manifest's shards under a chunk's prefix when its rows were read: all
/// of them, each checked against the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    versions: Vec<u32>,
}

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
    position: HashMap<&'a str, u64>,
}

impl<'a> Strings<'a> {
    fn of(&mut self, s: &'a str) -> u64 {
        let next = self.list.len() as u64;
        *self.position.entry(s).or_insert_with(|| {
            self.list.push(s);
            next
        })
    }
}

/// Appends varints and texts.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn number(&mut self, mut n: u64) {
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(low);
                return;
            }
            self.0.push(low | 0x80);
        }
    }

    fn text(&mut self, s: &str) {
        self.number(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// Reads what [`Writer`] wrote; None at the first thing that is not there or not valid.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    fn number(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    /// A count or a length: never more than the bytes left (each item takes one at least), so
    /// damaged bytes cannot ask for a huge allocation.
    fn count(&mut self) -> Option<usize> {
        let n = usize::try_from(self.number()?).ok()?;
        (n <= self.bytes.len()).then_some(n)
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = self.count()?;
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        std::str::from_utf8(text).ok()
    }

    fn string(&mut self) -> Option<String> {
        self.text().map(str::to_string)
    }

    fn named(&mut self, strings: &[&str]) -> Option<String> {
        let n = usize::try_from(self.number()?).ok()?;
        strings.get(n).map(|s| s.to_string())
    }
}

fn pack<'a>(fp: &Fingerprint, row: &'a IndexRow, strings: &mut Strings<'a>, out: &mut Writer) {
    out.0.extend_from_slice(fp);
    out.text(&row.uid);
    out.number(strings.of(&row.tracked_entity_type));
    out.number(strings.of(&row.org_unit));
    out.text(&row.created);
    out.text(if row.last_updated == row.created { "" } else { &row.last_updated });
    out.0.push(bits(&[
        (row.inactive, INACTIVE),
        (row.deleted, DELETED),
        (row.potential_duplicate, POTENTIAL_DUPLICATE),
    ]));
    out.number(row.attributes.len() as u64);
    for (attribute, value) in &row.attributes {
        out.number(strings.of(attribute));
        out.text(value);
    }
    out.number(row.enrollments.len() as u64);
    for e in &row.enrollments {
        out.text(&e.uid);
        out.number(strings.of(&e.program));
        out.number(strings.of(&e.status));
        out.number(strings.of(&e.org_unit));
        out.text(&e.enrollment_date);
        out.0.push(bits(&[(e.follow_up, FOLLOW_UP), (e.deleted, DELETED)]));
    }
    out.number(row.events.len() as u64);
    for event in &row.events {
        out.text(event);
    }
    out.number(row.ordinal);
}

/// The next row, or None when the bytes end early or name a string the chunk does not hold.
fn unpack(input: &mut Reader<'_>, strings: &[&str]) -> Option<(Fingerprint, IndexRow)> {
    let mut fp = [0u8; 16];
    for byte in &mut fp {
        *byte = input.byte()?;
    }
    let uid = input.string()?;
    let tracked_entity_type = input.named(strings)?;
    let org_unit = input.named(strings)?;
    let created = input.string()?;
    let last_updated = input.text()?;
    let flags = input.byte()?;
    let attributes =
        (0..input.count()?).map(|_| Some((input.named(strings)?, input.string()?))).collect::<Option<Vec<_>>>()?;
    let enrollments = (0..input.count()?)
        .map(|_| {
            let uid = input.string()?;
            let program = input.named(strings)?;
            let status = input.named(strings)?;
            let org_unit = input.named(strings)?;
            let enrollment_date = input.string()?;
            let flags = input.byte()?;
            Some(EnrollmentRow {
                uid,
                program,
                status,
                org_unit,
                enrollment_date,
                follow_up: flags & FOLLOW_UP != 0,
                deleted: flags & DELETED != 0,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let events = (0..input.count()?).map(|_| input.string()).collect::<Option<Vec<_>>>()?;
    let ordinal = input.number()?;
    let row = IndexRow {
        uid,
        tracked_entity_type,
        org_unit,
        last_updated: if last_updated.is_empty() { created.clone() } else { last_updated.to_string() },
        created,
        inactive: flags & INACTIVE != 0,
        deleted: flags & DELETED != 0,
        potential_duplicate: flags & POTENTIAL_DUPLICATE != 0,
        attributes,
        enrollments,
        events,
        ordinal,
    };
    Some((fp, row))
}

/// The stored plaintext of a chunk holding `rows` (None: no row, nothing to keep; a prefix
/// without rows is read at each load, which costs little since it holds no row).
fn encode_chunk<'a>(
    rows: impl Iterator<Item = (&'a Fingerprint, &'a IndexRow)>,
    guard: Option<Guard>,
) -> Option<Vec<u8>> {
    let mut strings = Strings::default();
    let mut body = Writer::default();
    let mut count = 0u64;
    for (fp, row) in rows {
        pack(fp, row, &mut strings, &mut body);
        count += 1;
    }
    if count == 0 {
        return None;
    }
    let versions = guard.map(|g| g.versions).unwrap_or_default();
    let mut out = Writer(Vec::with_capacity(body.0.len() + 64 * strings.list.len() + 64));
    out.0.push(FORMAT);
    out.number(versions.len() as u64);
    for version in versions {
        out.number(u64::from(version));
    }
    out.number(strings.list.len() as u64);
    for s in &strings.list {
        out.text(s);
    }
    out.number(count);
    out.0.extend_from_slice(&body.0);
    Some(out.0)
}

/// The fewest bytes a packed row takes: its fingerprint and one byte for each other field.
const MIN_ROW_BYTES: usize = 16 + 10;

/// The chunk stored as `bytes`, or None when they are not a whole chunk of this format.
fn decode_chunk(bytes: &[u8]) -> Option<Chunk> {
    let mut input = Reader { bytes };
    if input.byte()? != FORMAT {
        return None;
    }
    let versions = (0..input.count()?).map(|_| u32::try_from(input.number()?).ok()).collect::<Option<Vec<_>>>()?;
    let strings = (0..input.count()?).map(|_| input.text()).collect::<Option<Vec<_>>>()?;
    let count = input.count()?;
    // Reserved for as many rows as the bytes left can hold (a row takes 26 bytes at least), not
    // for what a damaged count says.
    let mut rows = Vec::with_capacity(count.min(input.bytes.len() / MIN_ROW_BYTES));
    for _ in 0..count {
        rows.push(unpack(&mut input, &strings)?);
    }
    input.bytes.is_empty().then_some(Chunk { rows, versions })
}

/// A chunk to write again: its number and its new plaintext (None: delete it, no row left).
pub type ChunkWrite = (usize, Option<Vec<u8>>);

/// The chunks of a snapshot as read: the rows of those current by the manifest, and by
/// fingerprint the rows of the others.
pub struct Snapshot {
    /// Per chunk, its rows as read.
    chunks: Vec<Vec<(Fingerprint, IndexRow)>>,
    guards: Vec<Option<Guard>>,
    unreadable: Vec<bool>,
    /// Chunks found in storage (readable or not).
    found: Vec<bool>,
    /// Chunks whose guard names the manifest's versions now ([`Snapshot::settle`]).
    current: Vec<bool>,
    /// The rows of the chunks not current, by fingerprint.
    rows: FastHashMap<Fingerprint, IndexRow>,
    held: Vec<usize>,
}

impl Snapshot {
    /// Parses the chunks as read, in the order of [`chunk_ids`] (None: absent). A chunk that
    /// does not open or parse holds nothing and is written again at the end of the load; so is
    /// every chunk when they could not be read.
    #[inline(never)]
    pub fn parse(read: crate::error::Result<Vec<crate::error::Result<Option<Vec<u8>>>>>) -> Self {
        let chunks: Vec<crate::error::Result<Option<Vec<u8>>>> = match read {
            Ok(chunks) => chunks,
            Err(e) => (0..CHUNKS).map(|_| Err(e.clone())).collect(),
        };
        let mut out = Snapshot {
            chunks: (0..CHUNKS).map(|_| Vec::new()).collect(),
            guards: vec![None; CHUNKS],
            unreadable: vec![false; CHUNKS],
            found: vec![false; CHUNKS],
            current: vec![false; CHUNKS],
            rows: FastHashMap::default(),
            held: vec![0; CHUNKS],
        };
        for (n, read) in chunks.into_iter().enumerate().take(CHUNKS) {
            out.found[n] = !matches!(read, Ok(None));
            let bytes = match read {
                Ok(None) => continue,
                Ok(Some(bytes)) => bytes,
                Err(_) => {
                    out.unreadable[n] = true;
                    continue;
                }
            };
            match decode_chunk(&bytes) {
                Some(chunk) => {
                    out.held[n] = chunk.rows.len();
                    out.chunks[n] = chunk.rows;
                    out.guards[n] = (!chunk.versions.is_empty()).then_some(Guard { versions: chunk.versions });
                }
                None => out.unreadable[n] = true,
            }
        }
        out
    }

    /// Takes as they are the chunks whose guard names `versions` (the manifest's shard
    /// versions now, by shard); returns the prefixes of the others, to be read.
    pub fn settle(&mut self, versions: &[u32]) -> Vec<String> {
        let per_chunk = versions.len() / CHUNKS;
        let mut stale = Vec::new();
        for n in 0..CHUNKS {
            let now = versions.get(n * per_chunk..(n + 1) * per_chunk);
            let current = per_chunk > 0 && self.guards[n].as_ref().is_some_and(|g| Some(&g.versions[..]) == now);
            if current {
                self.current[n] = true;
            } else {
                for (fp, row) in std::mem::take(&mut self.chunks[n]) {
                    if self.rows.insert(fp, row).is_some() {
                        self.held[n] -= 1;
                    }
                }
                stale.push(chunk_prefix(n));
            }
        }
        stale
    }

    /// Whether it holds the row of the envelope with fingerprint `fp` (among the chunks not
    /// current).
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
    /// Starts a load over `snapshot` ([`Snapshot::settle`]d): the rows of its current chunks
    /// are loaded as they are.
    pub fn new(mut snapshot: Snapshot) -> Self {
        let mut loaded: Vec<Vec<(Option<Fingerprint>, IndexRow)>> = (0..CHUNKS).map(|_| Vec::new()).collect();
        let mut taken = vec![0; CHUNKS];
        for n in (0..CHUNKS).filter(|&n| snapshot.current[n]) {
            let rows = std::mem::take(&mut snapshot.chunks[n]);
            taken[n] = rows.len();
            loaded[n] = rows.into_iter().map(|(fp, row)| (Some(fp), row)).collect();
        }
        Self { snapshot, loaded, taken, stale: vec![false; CHUNKS], opened_one_by_one: 0 }
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

    /// Ends the load: every row, and the chunks to write again: each chunk read under a
    /// prefix (`states`) whose rows are now complete and checked (written with its guard), or
    /// whose rows changed (written without one when not complete), and each unreadable one;
    /// none while there are fewer than [`REFRESH_AT`] rows opened or dropped and fewer than
    /// [`REFRESH_CHUNKS`] chunks to write.
    pub fn finish(self, states: &[PrefixState]) -> (Vec<IndexRow>, Vec<ChunkWrite>) {
        let mut chunks = Vec::new();
        let mut dropped = 0;
        for n in (0..CHUNKS).filter(|&n| !self.snapshot.current[n]) {
            let left = self.snapshot.held[n].saturating_sub(self.taken[n]);
            dropped += left;
            // An unreadable chunk is replaced at once: it would fail at every later load.
            if self.snapshot.unreadable[n] {
                dropped += REFRESH_AT;
            }
            let changed = self.stale[n] || left > 0 || self.snapshot.unreadable[n];
            let rows = &self.loaded[n];
            let prefix = chunk_prefix(n);
            let guard = states
                .iter()
                .find(|s| s.prefix == prefix)
                .filter(|s| s.tracked == rows.len() && rows.iter().all(|(fp, _)| fp.is_some()))
                .map(|s| Guard { versions: s.versions.clone() });
            let existed = self.snapshot.found[n];
            let bytes =
                encode_chunk(rows.iter().filter_map(|(fp, row)| fp.as_ref().map(|fp| (fp, row))), guard.clone());
            // Written when its rows changed or it can now be guarded; nothing to write for a
            // prefix without rows that had no chunk.
            if (changed || guard.is_some()) && (bytes.is_some() || existed) {
                chunks.push((n, bytes));
            }
        }
        if self.opened_one_by_one + dropped < REFRESH_AT && chunks.len() < REFRESH_CHUNKS {
            chunks.clear();
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
            Some(bytes) => vault.seal_copy_into(batch, &chunk_id(*n), bytes)?,
            None => vault.delete_copy_into(batch, &chunk_id(*n))?,
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
        let bytes = encode_chunk(rows.iter().map(|(fp, row)| (fp, row)), None).unwrap();
        let program = b"PrMchProg01";
        assert_eq!(bytes.windows(program.len()).filter(|w| w == program).count(), 1, "repeated names are stored once");
        let mut chunks: Vec<_> = (0..CHUNKS).map(|_| Ok(None)).collect();
        chunks[7] = Ok(Some(bytes));
        let mut snapshot = Snapshot::parse(Ok(chunks));
        assert_eq!(snapshot.settle(&[]).len(), CHUNKS, "no versions: no chunk is current");
        assert_eq!(snapshot.held[7], 4);
        for (fp, expected) in rows {
            assert!(snapshot.holds(&fp));
            assert_eq!(snapshot.rows.remove(&fp).unwrap(), expected);
        }
        assert!(encode_chunk(std::iter::empty(), None).is_none());
        assert!(encode_chunk(std::iter::empty(), Some(Guard { versions: vec![1; 16] })).is_none());
    }

    /// The reservation for a chunk's rows is bounded by its bytes: the smallest row takes
    /// exactly `MIN_ROW_BYTES`, and a count larger than the rows the bytes hold is refused.
    #[test]
    fn the_smallest_row_takes_min_row_bytes_and_a_count_beyond_the_bytes_is_refused() {
        let mut empty = IndexRow::of(&crate::records::TeiBundle::default());
        empty.uid = String::new();
        let mut out = Writer::default();
        let mut strings = Strings::default();
        pack(&[0; 16], &empty, &mut strings, &mut out);
        assert_eq!(out.0.len(), MIN_ROW_BYTES, "one byte for each field after the fingerprint");
        // No versions, one string (""), then 1,000 rows claimed in 2,000 zero bytes: 76 of the
        // smallest rows, then the bytes end. In 26,000 zero bytes they are all there.
        let chunk = |rows: u64, bytes: usize| {
            let mut chunk = Writer::default();
            chunk.0.push(FORMAT);
            chunk.number(0);
            chunk.number(1);
            chunk.text("");
            chunk.number(rows);
            chunk.0.extend(std::iter::repeat_n(0u8, bytes));
            chunk.0
        };
        assert!(decode_chunk(&chunk(1_000, 2_000)).is_none(), "1,000 rows claimed in 2,000 bytes");
        assert_eq!(decode_chunk(&chunk(1_000, 26_000)).map(|c| c.rows.len()), Some(1_000));
    }

    #[test]
    fn a_chunk_naming_a_string_it_does_not_hold_is_unreadable_not_a_panic() {
        let rows: Vec<(Fingerprint, IndexRow)> = vec![([1; 16], row(1, false))];
        let good = encode_chunk(rows.iter().map(|(fp, row)| (fp, row)), None).unwrap();
        // The same chunk with a string table of none: its row names string 0.
        let mut bad = Writer::default();
        bad.0.push(FORMAT);
        bad.number(0);
        bad.number(0);
        bad.number(1);
        pack(&[1; 16], &rows[0].1, &mut Strings::default(), &mut bad);
        let bad = bad.0;
        assert!(decode_chunk(&good).is_some() && decode_chunk(&bad).is_none());
        for end in 0..good.len() {
            assert!(decode_chunk(&good[..end]).is_none(), "a chunk cut at {end} bytes is unreadable");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode_chunk(&longer).is_none(), "a chunk followed by more bytes is unreadable");
        let mut chunks: Vec<_> = (0..CHUNKS).map(|_| Ok(None)).collect();
        chunks[1] = Ok(Some(bad.to_vec()));
        chunks[2] = Ok(Some(br#"{"format":2,"strings":[],"rows":[]}"#.to_vec()));
        chunks[3] = Err(crate::error::CoreError::StorageCorrupt("does not open".into()));
        let mut snapshot = Snapshot::parse(Ok(chunks));
        snapshot.settle(&[]);
        assert!(snapshot.rows.is_empty());
        assert_eq!(&snapshot.unreadable[..5], &[false, true, true, true, false]);
        let (rows, writes) = Rebuild::new(snapshot).finish(&[]);
        assert!(rows.is_empty());
        assert_eq!(writes, vec![(1, None), (2, None), (3, None)], "unreadable chunks are deleted at once");
        let unread = Snapshot::parse(Err(crate::error::CoreError::StorageCorrupt("a damaged chunk".into())));
        assert_eq!(Rebuild::new(unread).finish(&[]).1.len(), CHUNKS, "a failed read replaces every chunk");
    }

    /// The stored format of a snapshot chunk (FORMAT 3, in hex) and the ids of the chunks. A change
    /// here costs every device one slow unlock (the chunks are rebuilt from the index rows),
    /// never a wrong answer; still, bump FORMAT when it changes.
    #[test]
    fn the_chunk_format_is_stable() {
        let rows: Vec<(Fingerprint, IndexRow)> = vec![([0xa1; 16], row(1, false)), ([0xb2; 16], row(2, true))];
        let bytes =
            encode_chunk(rows.iter().map(|(fp, row)| (fp, row)), Some(Guard { versions: vec![300; 16] })).unwrap();
        let hex: Vec<String> = bytes.chunks(32).map(hex::encode).collect();
        insta::assert_snapshot!(
            "index_snapshot_chunk",
            format!("ids: {} {}\n{}", chunk_id(0), chunk_id(0xab), hex.join("\n"))
        );
    }

    /// A chunk is taken as it is only while the manifest's versions under its prefix are the
    /// ones it names; a chunk read again is written with the versions it was read at only when
    /// its rows are every row the manifest holds there, each with a known fingerprint.
    #[test]
    fn a_chunk_is_current_only_at_the_versions_it_names_and_guarded_only_when_complete() {
        let versions: Vec<u32> = (0..4096u32).collect();
        let at = |n: usize| versions[n * 16..n * 16 + 16].to_vec();
        let rows: Vec<(Fingerprint, IndexRow)> = vec![([1; 16], row(1, false)), ([2; 16], row(2, true))];
        let chunk = |guard| Ok(Some(encode_chunk(rows.iter().map(|(fp, row)| (fp, row)), guard).unwrap()));
        let mut read: Vec<_> = (0..CHUNKS).map(|_| Ok(None)).collect();
        read[5] = chunk(Some(Guard { versions: at(5) }));
        let mut moved = at(6);
        moved[15] += 1;
        read[6] = chunk(Some(Guard { versions: moved }));
        read[7] = chunk(None);
        let mut snapshot = Snapshot::parse(Ok(read));
        let stale = snapshot.settle(&versions);
        assert_eq!(stale.len(), CHUNKS - 1, "only chunk 5 is current");
        assert!(
            !stale.contains(&"05".to_string())
                && stale.contains(&"06".to_string())
                && stale.contains(&"07".to_string())
        );
        assert!(!snapshot.holds(&[9; 16]));
        let mut rebuild = Rebuild::new(snapshot);
        // Prefix 06: both rows unchanged. Prefix 07: one unchanged, one changed and read again
        // while being written (no fingerprint). Prefix 08: a row opened, one more in the manifest.
        assert!(rebuild.take("06ab", [1; 16]) && rebuild.take("06cd", [2; 16]));
        assert!(!rebuild.take("07ab", [1; 16]), "a fingerprint is taken once");
        rebuild.opened("07ef", None, row(3, false));
        rebuild.opened("08ab", Some([4; 16]), row(4, false));
        // Prefix 0a: enough rows opened for the load to write its chunks.
        for i in 0..REFRESH_AT {
            rebuild.opened(&format!("0a{i:02x}"), Some([10 + i as u8; 16]), row(5, false));
        }
        let state = |prefix: &str, tracked| PrefixState { prefix: prefix.into(), versions: vec![7; 16], tracked };
        let states = [state("06", 2), state("07", 2), state("08", 2), state("09", 0), state("0a", REFRESH_AT)];
        let (loaded, writes) = rebuild.finish(&states);
        assert_eq!(
            loaded.len(),
            2 + 2 + 1 + 1 + REFRESH_AT,
            "chunk 5 as it was, 06's two, 07's new row, 08's row, 0a's"
        );
        let written: Vec<usize> = writes.iter().map(|(n, _)| *n).collect();
        assert_eq!(written, vec![6, 7, 8, 10], "not 09: a prefix without rows and without a chunk");
        let guard_of = |n: usize| {
            let bytes = writes.iter().find(|(m, _)| *m == n).unwrap().1.as_ref().unwrap();
            let versions = decode_chunk(bytes).unwrap().versions;
            (!versions.is_empty()).then_some(Guard { versions })
        };
        assert_eq!(guard_of(6), Some(Guard { versions: vec![7; 16] }), "complete: guarded at the versions read");
        assert_eq!(writes[1], (7, None), "only a row without a known fingerprint: nothing to keep, not guarded");
        assert_eq!(guard_of(8), None, "fewer rows than the manifest holds: not guarded");
    }
}
