//! The sealed manifest (issue 13): for every sealed value of the vault, a fingerprint of the
//! envelope that is current, so that a single value rolled back to an older envelope, put
//! back after it was deleted, or a register entry restored to an older credential is
//! [`CoreError::StorageCorrupt`] instead of being used.
//!
//! - The fingerprint of a value of `records`, `outbox`, `cache` or `index` is its AES-GCM tag
//!   (the last 16 bytes of the envelope): a MAC under the data key over the nonce (fresh per
//!   write), the associated data and the ciphertext. Two envelopes written by this vault have
//!   different tags (a collision would take 2^64 writes), and nobody without the data key can
//!   make an envelope that opens with a chosen tag. So "opens, and its tag is the manifest's" is
//!   "it is the envelope last written under that key". This binds the exact envelope, where a
//!   version counter in the associated data would bind only a number: nothing in the envelope
//!   format changes, a writer that lost a race re-applies its fingerprints without sealing its
//!   values again, and a vault written before the manifest keeps every value as it is.
//! - The fingerprint of a register entry is SHA-256 (16 bytes) of its credential part (KDF
//!   parameters, verifier, wrapped data key, sealed profile): what only a holder of the data key
//!   writes. The failed-attempt counters are written without the data key and are left out.
//! - The manifest is sharded by the storage key's first three hex characters (4096 shards;
//!   storage keys are keyed hashes, so shards fill evenly): a write rewrites only the shards of
//!   the keys it touches, plus the root. The root seals every shard's version, and each shard
//!   is sealed with its version in its associated data, so a shard cannot be rolled back alone.
//! - An unlock reads the root alone; a shard is read and opened when a value of it is first
//!   checked or written (reading every value reads every shard, in one read of `meta`). A
//!   shard that does not open fails the values it holds, not the whole vault.
//! - Every write of sealed values carries its manifest update in the same batch, guarded by a
//!   precondition on the root's stored bytes ([`crate::store::WriteOp::Expect`]): two writers
//!   over one database (a service worker and a page's engine) never overwrite each other's
//!   updates; the one that lost reloads the shards that changed and tries again.
//!
//! Nothing here is secret beyond what the storage keys already show; it is sealed so that it
//! cannot be edited.
//!
//! About 730 lines, 130 of them the unit tests of its private encodings (which must stay
//! beside them); the vault's use of it is `vault/manifest_cache.rs`.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
};

use sha2::{Digest, Sha256};

use crate::{
    crypto::SecretKey,
    error::{CoreError, Result},
    random::RandomSource,
    register::UserEntry,
    store::{StoreName, WriteBatch, WriteOp},
};

/// Number of shards (the first three hex characters of a storage key).
pub const SHARDS: usize = 4096;
/// Key of the root in the `meta` store.
pub const ROOT_KEY: &str = "manifest";
const SHARD_PREFIX: &str = "manifest:";
const FORMAT: u8 = 1;
const ROOT_AAD: &[u8] = b"meta|manifest|root";

/// A fingerprint: 16 bytes.
pub type Fingerprint = [u8; 16];

/// The stores whose values the manifest tracks, with their tag byte.
fn tag_of(store: StoreName) -> Option<u8> {
    match store {
        StoreName::Meta => None,
        StoreName::Users => Some(1),
        StoreName::Records => Some(2),
        StoreName::Outbox => Some(3),
        StoreName::Cache => Some(4),
        StoreName::Index => Some(5),
    }
}

/// Prefix of the keys of sealed copies in the `cache` store
/// ([`crate::vault::Vault::seal_copy_into`]): values that prove themselves current, which the
/// manifest does not track (storage keys are hex: none starts with it).
pub const COPY_PREFIX: &str = "copy:";

/// True for the key of a sealed copy, which the manifest does not track.
pub fn is_copy_key(key: &str) -> bool {
    key.starts_with(COPY_PREFIX)
}

/// True for the stores the manifest tracks.
pub fn tracks(store: StoreName) -> bool {
    tag_of(store).is_some()
}

fn shard_of(key: &str) -> usize {
    match key.get(..3).and_then(|p| u16::from_str_radix(p, 16).ok()) {
        Some(n) => usize::from(n),
        None => {
            let h = Sha256::digest(key.as_bytes());
            (usize::from(h[0]) << 4 | usize::from(h[1] >> 4)) % SHARDS
        }
    }
}

fn shard_key(shard: usize) -> String {
    format!("{SHARD_PREFIX}{shard:03x}")
}

fn shard_aad(shard: usize, version: u32) -> Vec<u8> {
    format!("meta|manifest|{shard:03x}|v{version}").into_bytes()
}

/// The fingerprint of a stored value, or an error when it cannot have been written by us.
pub fn fingerprint(store: StoreName, value: &[u8]) -> Result<Fingerprint> {
    let corrupt = || CoreError::StorageCorrupt("a stored value is too short to be an envelope".into());
    match store {
        StoreName::Users => {
            let entry = UserEntry::decode(value)?;
            let mut h = Sha256::new();
            let kdf = serde_json::to_vec(&entry.kdf).map_err(|e| CoreError::Storage(e.to_string()))?;
            for part in [&kdf, &entry.verifier.0, &entry.wrapped_data_key.0, &entry.sealed_profile.0] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
            // The key pair and a rotated key, when present (entries without them keep the
            // fingerprint they had before key pairs existed).
            let optional = [&entry.public_key, &entry.wrapped_private_key, &entry.rotated_data_key];
            for (tag, part) in (1u8..).zip(optional) {
                if let Some(part) = part {
                    h.update([tag]);
                    h.update((part.0.len() as u64).to_le_bytes());
                    h.update(&part.0);
                }
            }
            let mut out = [0u8; 16];
            out.copy_from_slice(&h.finalize()[..16]);
            Ok(out)
        }
        _ => {
            let tail = value.len().checked_sub(16).ok_or_else(corrupt)?;
            let mut out = [0u8; 16];
            out.copy_from_slice(&value[tail..]);
            Ok(out)
        }
    }
}

type Shard = BTreeMap<(u8, String), Fingerprint>;

/// The manifest as held in memory by one vault: the root's stored bytes (for the write
/// precondition), every shard's version and entries.
#[derive(Clone, Debug)]
pub struct Manifest {
    root_bytes: Option<Vec<u8>>,
    versions: Vec<u32>,
    /// Shared between copies until written (a commit clones the manifest: only the shards it
    /// touches are copied, not every fingerprint of the vault).
    shards: Vec<Slot>,
}

/// One shard as held in memory: not read yet (an unlock reads the root alone; the vault reads a
/// shard when a value of it is checked or written), its stored envelope (opened at its first
/// use), or open.
#[derive(Clone, Debug)]
struct Slot {
    sealed: Option<Arc<Vec<u8>>>,
    /// Shared by the copies made of one stored envelope, so each is opened once.
    open: Arc<OnceLock<Arc<Shard>>>,
}

impl Slot {
    fn opened(shard: Arc<Shard>) -> Self {
        Self { sealed: None, open: Arc::new(OnceLock::from(shard)) }
    }

    fn unread() -> Self {
        Self { sealed: None, open: Arc::new(OnceLock::new()) }
    }

    fn is_unread(&self) -> bool {
        self.sealed.is_none() && self.open.get().is_none()
    }

    fn sealed(bytes: Vec<u8>) -> Self {
        Self { sealed: Some(Arc::new(bytes)), open: Arc::new(OnceLock::new()) }
    }

    /// The slot of shard `n` at `version` read from storage: empty when never written.
    fn stored(n: usize, version: u32, bytes: Option<&Vec<u8>>) -> Result<Self> {
        match bytes {
            Some(bytes) => Ok(Self::sealed(bytes.clone())),
            None if version == 0 => Ok(Self::opened(Arc::new(Shard::new()))),
            None => Err(CoreError::StorageCorrupt(format!("manifest shard {n:03x} is missing"))),
        }
    }
}

fn encode_root(versions: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 * versions.len());
    out.push(FORMAT);
    for v in versions {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode_root(bytes: &[u8]) -> Result<Vec<u32>> {
    if bytes.len() != 1 + 4 * SHARDS || bytes[0] != FORMAT {
        return Err(CoreError::StorageCorrupt("the manifest root has an unknown format".into()));
    }
    Ok(bytes[1..].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn encode_shard(shard: &Shard) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + shard.len() * 84);
    out.push(FORMAT);
    for ((tag, key), fp) in shard {
        out.push(*tag);
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(fp);
    }
    out
}

fn decode_shard(bytes: &[u8]) -> Result<Shard> {
    let bad = || CoreError::StorageCorrupt("a manifest shard does not parse".into());
    let (&format, mut rest) = bytes.split_first().ok_or_else(bad)?;
    if format != FORMAT {
        return Err(bad());
    }
    let mut shard = Shard::new();
    while !rest.is_empty() {
        if rest.len() < 3 {
            return Err(bad());
        }
        let tag = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        rest = &rest[3..];
        if rest.len() < len + 16 {
            return Err(bad());
        }
        let key = std::str::from_utf8(&rest[..len]).map_err(|_| bad())?.to_string();
        let mut fp = [0u8; 16];
        fp.copy_from_slice(&rest[len..len + 16]);
        rest = &rest[len + 16..];
        shard.insert((tag, key), fp);
    }
    Ok(shard)
}

fn open_shard(data_key: &SecretKey, shard: usize, version: u32, sealed: &[u8]) -> Result<Shard> {
    data_key
        .open(&shard_aad(shard, version), sealed)
        .map_err(|_| CoreError::StorageCorrupt(format!("manifest shard {shard:03x} is not the root's version")))
        .and_then(|plain| decode_shard(&plain))
}

/// The parts of a stored manifest, as read from the `meta` store.
pub struct StoredManifest {
    /// The root's bytes, if stored.
    pub root: Option<Vec<u8>>,
    /// Shards by number.
    pub shards: BTreeMap<usize, Vec<u8>>,
}

impl StoredManifest {
    /// Picks the manifest out of every (key, value) of the `meta` store.
    pub fn from_meta(entries: Vec<(String, Vec<u8>)>) -> Self {
        let mut root = None;
        let mut shards = BTreeMap::new();
        for (key, value) in entries {
            if key == ROOT_KEY {
                root = Some(value);
            } else if let Some(n) = key.strip_prefix(SHARD_PREFIX).and_then(|h| usize::from_str_radix(h, 16).ok()) {
                shards.insert(n, value);
            }
        }
        Self { root, shards }
    }
}

impl Manifest {
    /// An empty manifest not yet stored (a new vault, or one being built from what is stored).
    pub fn empty() -> Self {
        // One empty shard shared by all until written (copy on write).
        let empty = Slot::opened(Arc::new(Shard::new()));
        Self { root_bytes: None, versions: vec![0; SHARDS], shards: vec![empty; SHARDS] }
    }

    /// An empty manifest that replaces `old` whole (a rotation of the data key seals every
    /// value again): writing it expects `old`'s root, so a write another context made
    /// meanwhile makes it fail instead of being lost. Every shard starts again at version 0.
    pub fn replacing(old: &Manifest) -> Self {
        Self { root_bytes: old.root_bytes.clone(), ..Self::empty() }
    }

    /// True for the `meta` keys that hold the manifest (root and shards).
    pub fn is_storage_key(key: &str) -> bool {
        key == ROOT_KEY || key.starts_with(SHARD_PREFIX)
    }

    /// Opens a stored manifest. `None` when no root is stored.
    pub fn open(data_key: &SecretKey, stored: StoredManifest) -> Result<Option<Self>> {
        let Some(root_bytes) = stored.root else { return Ok(None) };
        let versions = decode_root(
            &data_key
                .open(ROOT_AAD, &root_bytes)
                .map_err(|_| CoreError::StorageCorrupt("the manifest root does not open".into()))?,
        )?;
        let mut shards = Vec::with_capacity(SHARDS);
        for (n, version) in versions.iter().enumerate() {
            shards.push(Slot::stored(n, *version, stored.shards.get(&n))?);
        }
        Ok(Some(Self { root_bytes: Some(root_bytes), versions, shards }))
    }

    /// A stored manifest from its root alone: every shard is read later, when it is needed
    /// ([`Manifest::unread_shards`], [`Manifest::with_read`]).
    pub fn open_root(data_key: &SecretKey, root_bytes: Vec<u8>) -> Result<Self> {
        let versions = decode_root(
            &data_key
                .open(ROOT_AAD, &root_bytes)
                .map_err(|_| CoreError::StorageCorrupt("the manifest root does not open".into()))?,
        )?;
        let shards = versions
            .iter()
            .map(|version| if *version == 0 { Slot::opened(Arc::new(Shard::new())) } else { Slot::unread() })
            .collect();
        Ok(Self { root_bytes: Some(root_bytes), versions, shards })
    }

    /// The shards not read yet among those of `keys` (storage keys of tracked values), or
    /// among all shards when `keys` is None.
    pub fn unread_shards(&self, keys: Option<&mut dyn Iterator<Item = &str>>) -> Vec<usize> {
        let mut wanted: Vec<usize> = match keys {
            Some(keys) => keys.map(shard_of).collect(),
            None => (0..SHARDS).collect(),
        };
        wanted.sort_unstable();
        wanted.dedup();
        wanted.retain(|n| self.shards[*n].is_unread());
        wanted
    }

    /// This copy with the shards `wanted` taken from their stored bytes (`fetched`, read after
    /// this copy's root: a shard another writer changed since does not open, and the vault
    /// reads the manifest again).
    pub fn with_read(&self, wanted: &[usize], fetched: &BTreeMap<usize, Vec<u8>>) -> Result<Self> {
        let mut next = self.clone();
        for &n in wanted {
            next.shards[n] = Slot::stored(n, self.versions[n], fetched.get(&n))?;
        }
        Ok(next)
    }

    /// This copy with every shard not read yet taken from `stored`, a read of the whole `meta`
    /// store, when that read holds this copy's root: one transaction read the root and the
    /// shards, so every shard in it is at the version the root says, and none is read again by
    /// a later write. `None` when the stored root is another one (another writer committed
    /// after this copy was read: only the shards a caller needs are taken, and checked).
    pub fn with_all_read(&self, stored: &StoredManifest) -> Result<Option<Self>> {
        if stored.root.is_none() || stored.root.as_deref() != self.root_bytes.as_deref() {
            return Ok(None);
        }
        let unread = self.unread_shards(None);
        self.with_read(&unread, &stored.shards).map(Some)
    }

    /// Opens the shards `wanted` (read with [`Manifest::with_read`]) now, so that one another
    /// writer changed meanwhile is found before it is needed.
    pub fn open_shards(&self, data_key: &SecretKey, wanted: &[usize]) -> Result<()> {
        for &n in wanted {
            self.shard(data_key, n)?;
        }
        Ok(())
    }

    /// The shards among `wanted` read but not opened yet, as (shard, associated data,
    /// envelope): for opening many at once by the platform ([`Manifest::set_opened`]).
    pub fn sealed_shards(&self, wanted: &[usize]) -> Vec<(usize, Vec<u8>, Arc<Vec<u8>>)> {
        wanted
            .iter()
            .filter_map(|&n| {
                let slot = self.shards.get(n)?;
                if slot.open.get().is_some() {
                    return None;
                }
                Some((n, shard_aad(n, self.versions[n]), slot.sealed.clone()?))
            })
            .collect()
    }

    /// Keeps shard `n` as opened elsewhere from its envelope ([`Manifest::sealed_shards`]).
    /// Nothing is kept when it did not open or does not parse: [`Manifest::open_shards`] then
    /// opens it again and reports why.
    pub fn set_opened(&self, n: usize, plain: &[u8]) {
        if let (Some(slot), Ok(shard)) = (self.shards.get(n), decode_shard(plain)) {
            let _ = slot.open.get_or_init(|| Arc::new(shard));
        }
    }

    /// The root's stored bytes this copy was read from or written as.
    pub fn root_bytes(&self) -> Option<&[u8]> {
        self.root_bytes.as_deref()
    }

    /// Brings this copy up to a newer root: only the shards whose version changed are read
    /// (`fetched`: their stored bytes, see [`Manifest::changed_shards`]).
    pub fn refreshed(
        &self,
        data_key: &SecretKey,
        root: Option<Vec<u8>>,
        fetched: &BTreeMap<usize, Vec<u8>>,
    ) -> Result<Option<Self>> {
        let Some(root_bytes) = root else { return Ok(None) };
        if self.root_bytes.as_deref() == Some(root_bytes.as_slice()) {
            return Ok(Some(self.clone()));
        }
        let versions = decode_root(
            &data_key
                .open(ROOT_AAD, &root_bytes)
                .map_err(|_| CoreError::StorageCorrupt("the manifest root does not open".into()))?,
        )?;
        let mut next = Self { root_bytes: Some(root_bytes), versions: versions.clone(), shards: self.shards.clone() };
        for (n, version) in versions.iter().enumerate() {
            if *version != self.versions[n] {
                next.shards[n] = Slot::stored(n, *version, fetched.get(&n))?;
            }
        }
        Ok(Some(next))
    }

    /// The shards whose version differs from `root` (the ones [`Manifest::refreshed`] reads).
    pub fn changed_shards(&self, data_key: &SecretKey, root: &[u8]) -> Result<Vec<usize>> {
        if self.root_bytes.as_deref() == Some(root) {
            return Ok(Vec::new());
        }
        let versions = decode_root(
            &data_key
                .open(ROOT_AAD, root)
                .map_err(|_| CoreError::StorageCorrupt("the manifest root does not open".into()))?,
        )?;
        Ok((0..SHARDS).filter(|n| versions[*n] != self.versions[*n]).collect())
    }

    /// Shard `n`, opened under `data_key` at its first use.
    fn shard(&self, data_key: &SecretKey, n: usize) -> Result<Arc<Shard>> {
        let slot = &self.shards[n];
        if let Some(open) = slot.open.get() {
            return Ok(open.clone());
        }
        let sealed =
            slot.sealed.as_deref().ok_or_else(|| CoreError::Storage(format!("manifest shard {n:03x} was not read")))?;
        let shard = Arc::new(open_shard(data_key, n, self.versions[n], sealed)?);
        Ok(slot.open.get_or_init(|| shard).clone())
    }

    /// The fingerprint the manifest holds for `key` of `store` (None: not in it, or a store it
    /// does not track).
    pub fn fingerprint_of(&self, data_key: &SecretKey, store: StoreName, key: &str) -> Result<Option<Fingerprint>> {
        let Some(tag) = tag_of(store) else { return Ok(None) };
        Ok(self.shard(data_key, shard_of(key))?.get(&(tag, key.to_string())).copied())
    }

    /// Checks a stored value against the manifest (opening its shard under `data_key`).
    pub fn check(&self, data_key: &SecretKey, store: StoreName, key: &str, value: &[u8]) -> Result<()> {
        let Some(tag) = tag_of(store) else { return Ok(()) };
        let shard = self.shard(data_key, shard_of(key))?;
        let expected = shard.get(&(tag, key.to_string()));
        match expected {
            None => Err(CoreError::StorageCorrupt(format!(
                "{} value {key} is not in the manifest (put back after it was deleted?)",
                store.as_str()
            ))),
            Some(fp) if *fp == fingerprint(store, value)? => Ok(()),
            Some(_) => Err(CoreError::StorageCorrupt(format!(
                "{} value {key} is not the one last written (an older copy?)",
                store.as_str()
            ))),
        }
    }

    /// Records `value` as the current one of `key` (used when building from what is stored).
    pub fn insert(&mut self, data_key: &SecretKey, store: StoreName, key: &str, value: &[u8]) -> Result<()> {
        if let Some(tag) = tag_of(store) {
            let fp = fingerprint(store, value)?;
            let n = shard_of(key);
            let mut shard = self.shard(data_key, n)?;
            Arc::make_mut(&mut shard).insert((tag, key.to_string()), fp);
            self.shards[n] = Slot::opened(shard);
        }
        Ok(())
    }

    /// The manifest after `batch`, and `batch` with the manifest's own writes added: the
    /// precondition that the root is still the one this copy was read from, the touched
    /// shards (version + 1) and the new root. A manifest not stored yet (a new vault, one built
    /// from what is stored) is written whole: the root and every shard that is not empty.
    pub fn apply(
        &self,
        data_key: &SecretKey,
        rng: &impl RandomSource,
        batch: WriteBatch,
    ) -> Result<(Self, WriteBatch)> {
        let first = self.root_bytes.is_none();
        let mut next = self.clone();
        // The shards this batch changes, opened and copied (the others stay as they are).
        let mut changed: BTreeMap<usize, Shard> = BTreeMap::new();
        if first {
            // Not stored yet: every shard is in memory, and every one that is not empty is written.
            for (n, slot) in self.shards.iter().enumerate() {
                if slot.open.get().is_some_and(|s| !s.is_empty()) {
                    changed.insert(n, (*self.shard(data_key, n)?).clone());
                }
            }
        }
        if batch.has_unsealed() {
            return Err(CoreError::Storage("the manifest needs every value sealed first".into()));
        }
        for op in batch.ops() {
            let (store, key) = match op {
                WriteOp::Put { store, key, .. } | WriteOp::Delete { store, key } => (*store, key),
                WriteOp::Expect { .. } | WriteOp::Seal { .. } => continue,
            };
            let Some(tag) = tag_of(store) else { continue };
            if is_copy_key(key) {
                continue;
            }
            let n = shard_of(key);
            let shard = match changed.entry(n) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => entry.insert((*self.shard(data_key, n)?).clone()),
            };
            match op {
                WriteOp::Put { value, .. } => {
                    shard.insert((tag, key.clone()), fingerprint(store, value)?);
                }
                _ => {
                    shard.remove(&(tag, key.clone()));
                }
            }
        }
        if !first && changed.is_empty() {
            return Ok((next, batch));
        }
        let mut batch = batch.expect(StoreName::Meta, ROOT_KEY, self.root_bytes.clone());
        for (n, shard) in changed {
            next.versions[n] = next.versions[n]
                .checked_add(1)
                .ok_or_else(|| CoreError::StorageCorrupt("a manifest shard version overflows".into()))?;
            let sealed = data_key.seal(rng, &shard_aad(n, next.versions[n]), &encode_shard(&shard))?;
            batch = batch.put(StoreName::Meta, shard_key(n), sealed);
            next.shards[n] = Slot::opened(Arc::new(shard));
        }
        let root = data_key.seal(rng, ROOT_AAD, &encode_root(&next.versions))?;
        next.root_bytes = Some(root.clone());
        Ok((next, batch.put(StoreName::Meta, ROOT_KEY, root)))
    }

    /// The shards whose storage keys start with `prefix` (hex, at most three characters).
    fn shards_under(prefix: &str) -> std::ops::Range<usize> {
        let digits = prefix.len().min(3);
        match usize::from_str_radix(&prefix[..digits], 16) {
            Ok(n) if digits > 0 && prefix.is_char_boundary(digits) => {
                let width = 4 * (3 - digits);
                (n << width)..((n + 1) << width)
            }
            _ => 0..SHARDS,
        }
    }

    /// One storage key in each shard under `prefix` (to have [`Vault::manifest_for`] read
    /// them all, also those that hold none of the keys a caller lists).
    ///
    /// [`Vault::manifest_for`]: crate::vault::Vault
    pub fn shard_probes(prefix: &str) -> Vec<String> {
        Self::shards_under(prefix).map(|n| format!("{n:03x}")).collect()
    }

    /// The versions of the shards under `prefix`, in order.
    pub fn versions_under(&self, prefix: &str) -> Vec<u32> {
        self.versions[Self::shards_under(prefix)].to_vec()
    }

    /// Every shard's version, by shard number.
    pub fn versions(&self) -> &[u32] {
        &self.versions
    }

    /// How many values of `store` the manifest holds whose storage keys start with `prefix`.
    pub fn count_under(&self, data_key: &SecretKey, store: StoreName, prefix: &str) -> Result<usize> {
        let Some(tag) = tag_of(store) else { return Ok(0) };
        let mut n = 0;
        for shard in Self::shards_under(prefix) {
            n += self.shard(data_key, shard)?.keys().filter(|(t, key)| *t == tag && key.starts_with(prefix)).count();
        }
        Ok(n)
    }

    /// The number of a shard's storage key (for reading one shard).
    pub fn shard_storage_key(shard: usize) -> String {
        shard_key(shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unlock opens the root only; each shard is opened at its first use, once. A damaged
    /// shard makes the values it holds STORAGE_CORRUPT, not the whole vault.
    #[test]
    fn shards_open_at_their_first_use_and_a_damaged_one_fails_only_its_values() {
        let rng = crate::random::DeterministicRandom::new(3);
        let key = SecretKey::generate(&rng).unwrap();
        let value = |n: u8| vec![n; 40];
        let batch =
            WriteBatch::new().put(StoreName::Records, "abc0", value(1)).put(StoreName::Records, "def0", value(2));
        let (written, batch) = Manifest::empty().apply(&key, &rng, batch).unwrap();
        let meta: Vec<(String, Vec<u8>)> = batch
            .ops()
            .iter()
            .filter_map(|op| match op {
                WriteOp::Put { store: StoreName::Meta, key, value } => Some((key.clone(), value.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(meta.len(), 3, "two shards and the root");
        let mut stored = StoredManifest::from_meta(meta);
        let damaged = stored.shards.get_mut(&shard_of("def0")).unwrap();
        damaged[20] ^= 1;
        let opened = Manifest::open(&key, stored).unwrap().unwrap();
        assert!(opened.shards[shard_of("abc0")].open.get().is_none(), "a shard was opened at unlock");
        opened.check(&key, StoreName::Records, "abc0", &value(1)).unwrap();
        assert!(opened.shards[shard_of("abc0")].open.get().is_some());
        assert!(matches!(opened.check(&key, StoreName::Records, "def0", &value(2)), Err(CoreError::StorageCorrupt(_))));
        written.check(&key, StoreName::Records, "def0", &value(2)).unwrap();
        // A write touching the damaged shard is refused whole.
        let touch = WriteBatch::new().put(StoreName::Records, "def1", value(3));
        assert!(opened.apply(&key, &rng, touch).is_err());
    }

    /// From the root alone, a shard is "unread" until its bytes are given; a shard read after
    /// another writer changed it (a newer version than the root says) does not open.
    #[test]
    fn a_manifest_opened_from_its_root_reads_only_the_shards_asked_for() {
        let rng = crate::random::DeterministicRandom::new(4);
        let key = SecretKey::generate(&rng).unwrap();
        let batch =
            WriteBatch::new().put(StoreName::Records, "abc0", vec![1; 40]).put(StoreName::Outbox, "def0", vec![2; 40]);
        let (written, batch) = Manifest::empty().apply(&key, &rng, batch).unwrap();
        let stored = |batch: &WriteBatch| {
            StoredManifest::from_meta(
                batch
                    .ops()
                    .iter()
                    .filter_map(|op| match op {
                        WriteOp::Put { store: StoreName::Meta, key, value } => Some((key.clone(), value.clone())),
                        _ => None,
                    })
                    .collect(),
            )
        };
        let first = stored(&batch);
        let cold = Manifest::open_root(&key, first.root.clone().unwrap()).unwrap();
        assert_eq!(cold.unread_shards(None), vec![shard_of("abc0"), shard_of("def0")]);
        assert_eq!(cold.unread_shards(Some(&mut ["abc1", "abc2", "fff0"].into_iter())), vec![shard_of("abc0")]);
        assert!(cold.check(&key, StoreName::Records, "abc0", &[1; 40]).is_err(), "an unread shard was trusted");
        let warm = cold.with_read(&[shard_of("abc0")], &first.shards).unwrap();
        warm.open_shards(&key, &[shard_of("abc0")]).unwrap();
        warm.check(&key, StoreName::Records, "abc0", &[1; 40]).unwrap();
        assert_eq!(warm.unread_shards(None), vec![shard_of("def0")]);
        // Another writer changes "def0" after the root was read: its shard is a version ahead.
        let (_, newer) =
            written.apply(&key, &rng, WriteBatch::new().put(StoreName::Outbox, "def0", vec![3; 40])).unwrap();
        let ahead = cold.with_read(&[shard_of("def0")], &stored(&newer).shards).unwrap();
        assert!(ahead.open_shards(&key, &[shard_of("def0")]).is_err());
        // A shard the root says was written, missing from storage: STORAGE_CORRUPT.
        assert!(cold.with_read(&[shard_of("def0")], &BTreeMap::new()).is_err());
        // A read of the whole store holding this copy's root gives every shard; one holding
        // another root gives none (its shards may be ahead of this copy's versions).
        let whole = cold.with_all_read(&first).unwrap().unwrap();
        assert!(whole.unread_shards(None).is_empty());
        whole.check(&key, StoreName::Outbox, "def0", &[2; 40]).unwrap();
        assert!(cold.with_all_read(&stored(&newer)).unwrap().is_none());
    }

    #[test]
    fn shards_round_trip_and_keys_spread() {
        let mut s = Shard::new();
        s.insert((2, "abc123".into()), [7; 16]);
        s.insert((5, "ffff".into()), [9; 16]);
        assert_eq!(decode_shard(&encode_shard(&s)).unwrap(), s);
        assert!(decode_shard(&[FORMAT, 2, 200, 0]).is_err());
        assert_eq!(shard_of("fff0"), 4095);
        assert_eq!(shard_of("000f"), 0);
        assert!(shard_of("tei:x") < SHARDS);
    }

    /// The manifest's stored format: the root (format byte, one little-endian version per
    /// shard), a shard's plaintext (format byte, then per value: store tag, key length, key,
    /// fingerprint), the names and associated data that bind them. A change here makes every
    /// vault in the field unreadable: bump FORMAT and migrate instead.
    #[test]
    fn the_manifest_format_is_stable() {
        let mut shard = Shard::new();
        shard.insert((tag_of(StoreName::Records).unwrap(), "abc0".into()), [0x11; 16]);
        shard.insert((tag_of(StoreName::Outbox).unwrap(), "abc1".into()), [0x22; 16]);
        let mut versions = vec![0u32; SHARDS];
        versions[0] = 1;
        versions[0xabc] = 0x0102_0304;
        let root = encode_root(&versions);
        assert_eq!(root.len(), 1 + 4 * SHARDS);
        assert_eq!(decode_root(&root).unwrap(), versions);
        let stores = [
            StoreName::Meta,
            StoreName::Users,
            StoreName::Records,
            StoreName::Outbox,
            StoreName::Cache,
            StoreName::Index,
        ];
        let text = format!(
            "root head: {}\nroot at shard abc: {}\nshard plaintext: {}\nshard key: {}\nshard aad: {}\nroot key: {ROOT_KEY}\nroot aad: {}\ntags: {:?}",
            hex::encode(&root[..9]),
            hex::encode(&root[1 + 4 * 0xabc..1 + 4 * 0xabc + 4]),
            hex::encode(encode_shard(&shard)),
            shard_key(0xabc),
            String::from_utf8_lossy(&shard_aad(0xabc, 7)),
            String::from_utf8_lossy(ROOT_AAD),
            stores.map(tag_of),
        );
        insta::assert_snapshot!("manifest_format", text);
        assert_eq!(decode_shard(&encode_shard(&shard)).unwrap(), shard);
    }
}
