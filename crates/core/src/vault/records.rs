//! The vault's sealed records: addressed by keyed hashes of their ids, sealed under the data
//! key with their place as associated data, checked against the manifest when read, and
//! committed with the manifest's update in one batch (values sealed together at commit).

use std::sync::Arc;

use super::*;

impl<S: KvStore, K: PasswordKdf, R: RandomSource> Vault<S, K, R> {
    pub(super) fn record_address(&self, store: StoreName, id: &str) -> Result<(Arc<SecretKey>, String)> {
        if id.is_empty() || id.len() > 4096 {
            return Err(CoreError::BadInput("record id must be 1 to 4096 bytes".into()));
        }
        self.with_session(|s| {
            s.as_ref()
                .map(|s| (s.data_key.clone(), s.lookup_key.keyed_hash_hex(&[store.as_str().as_bytes(), id.as_bytes()])))
        })?
        .ok_or(CoreError::VaultLocked)
    }

    pub(super) fn record_aad(store: StoreName, key: &str) -> Vec<u8> {
        format!("{}|{}", store.as_str(), key).into_bytes()
    }

    /// Seals `plaintext` under the data key and adds its put to `batch` (so callers can commit
    /// a record and its outbox entry together). Returns the batch.
    pub fn seal_into(&self, batch: WriteBatch, store: StoreName, id: &str, plaintext: &[u8]) -> Result<WriteBatch> {
        if matches!(store, StoreName::Meta | StoreName::Users) {
            return Err(CoreError::BadInput("meta and users hold no sealed records".into()));
        }
        let (_, key) = self.record_address(store, id)?;
        let aad = Self::record_aad(store, &key);
        // Sealed when the batch is committed, with every other value of it (see `seal_pending`).
        Ok(batch.seal(store, key, aad, plaintext))
    }

    /// Seals every value of `batch` still to be sealed ([`Vault::seal_into`]) under the
    /// session's key, as a commit does first (tools that write a batch to the store
    /// themselves). A batch given to a store without this is refused by it ([`WriteOp::Seal`]).
    pub async fn seal_pending(&self, batch: WriteBatch) -> Result<WriteBatch> {
        let data_key = self.session_data_key().ok_or(CoreError::VaultLocked)?;
        self.seal_pending_with(&data_key, batch).await
    }

    /// Seals every value of `batch` still to be sealed under `data_key`, each with a fresh
    /// nonce: many at once by the platform's AES-GCM where it has one
    /// ([`PasswordKdf::seal_many`]), else here.
    pub(super) async fn seal_pending_with(&self, data_key: &SecretKey, mut batch: WriteBatch) -> Result<WriteBatch> {
        let positions = batch.unsealed();
        if positions.is_empty() {
            return Ok(batch);
        }
        let mut inputs = Vec::with_capacity(positions.len());
        for &i in &positions {
            if let WriteOp::Seal { aad, plaintext, .. } = &batch.ops()[i] {
                inputs.push(SealInput::new(random_array(&self.rng)?, aad, &plaintext.0));
            }
        }
        let by_platform =
            if inputs.len() >= BULK_OPEN_MIN { self.kdf.seal_many(data_key, &inputs).await } else { None };
        let mut envelopes = Vec::with_capacity(inputs.len());
        for (n, input) in inputs.iter().enumerate() {
            let made =
                by_platform.as_ref().and_then(|all| all.get(n)?.as_ref().ok()).and_then(|c| envelope_of(input, c));
            envelopes.push(match made {
                Some(envelope) => envelope,
                None => {
                    let aad = &input.aad[ENVELOPE_AAD_PREFIX_LEN..];
                    data_key.seal_with_nonce(input.nonce, aad, input.plaintext)?
                }
            });
        }
        drop(inputs);
        for (position, envelope) in positions.into_iter().zip(envelopes) {
            batch.set_sealed(position, envelope);
        }
        Ok(batch)
    }

    /// Stores one sealed record.
    pub async fn put_record(&self, store: StoreName, id: &str, plaintext: &[u8]) -> Result<()> {
        let batch = self.seal_into(WriteBatch::new(), store, id, plaintext)?;
        self.commit(batch).await
    }

    /// Reads and opens one record. Tampered or moved bytes give [`CoreError::StorageCorrupt`].
    pub async fn get_record(&self, store: StoreName, id: &str) -> Result<Option<Vec<u8>>> {
        let (data_key, key) = self.record_address(store, id)?;
        self.get_current(&data_key, store, &key).await
    }

    /// [`Vault::get_record`] of several records at once, in the order of `ids`: one read of
    /// the store (and of the manifest shards they need) instead of one per record.
    pub async fn get_records(&self, store: StoreName, ids: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut data_key = None;
        let mut keys = Vec::with_capacity(ids.len());
        for id in ids {
            let (key_of_session, key) = self.record_address(store, id)?;
            data_key = Some(key_of_session);
            keys.push(key);
        }
        let Some(data_key) = data_key else { return Ok(Vec::new()) };
        let sealed_values = self.store.get_many(store, &keys).await?;
        let present: Vec<&str> =
            keys.iter().zip(&sealed_values).filter(|(_, v)| v.is_some()).map(|(k, _)| k.as_str()).collect();
        let manifest =
            if present.is_empty() { None } else { Some(self.manifest_for(&data_key, Some(&present)).await?) };
        let sealed_present: Vec<(Vec<u8>, &[u8])> = keys
            .iter()
            .zip(&sealed_values)
            .filter_map(|(key, sealed)| Some((Self::record_aad(store, key), sealed.as_deref()?)))
            .collect();
        let mut opened_present = self.open_values(&data_key, &sealed_present).await.into_iter();
        let mut out = Vec::with_capacity(keys.len());
        for (key, sealed) in keys.iter().zip(sealed_values) {
            let (Some(sealed), Some(manifest)) = (sealed, manifest.as_ref()) else {
                out.push(None);
                continue;
            };
            let opened = opened_present
                .next()
                .unwrap_or_else(|| Err(CoreError::Storage("a value was not opened".into())))
                .and_then(|plain| manifest.check(&data_key, store, key, &sealed).map(|()| plain));
            out.push(match opened {
                Ok(plain) => Some(plain),
                // Read again alone, with its retries (another writer, a rotation): its answer counts.
                Err(_) => self.get_current(&data_key, store, key).await?,
            });
        }
        Ok(out)
    }

    /// [`Vault::get_record`] under a data key obtained before any session is open (a first
    /// login through the server escrow checks the clinic copy's org units before it lets her
    /// in). The key must be this vault's.
    pub async fn get_record_under(&self, data_key: &SecretKey, store: StoreName, id: &str) -> Result<Option<Vec<u8>>> {
        if id.is_empty() || id.len() > 4096 {
            return Err(CoreError::BadInput("record id must be 1 to 4096 bytes".into()));
        }
        let meta = self.load_meta().await?.ok_or(CoreError::VaultLocked)?;
        Self::check_data_key(&meta, data_key)?;
        let key = Self::lookup_key_of(&meta, data_key)?.keyed_hash_hex(&[store.as_str().as_bytes(), id.as_bytes()]);
        self.get_current(data_key, store, &key).await
    }

    /// Reads and opens the value under a storage key, and checks it is the one the manifest
    /// names. A mismatch is checked again against the stored manifest and value (another
    /// writer may have changed both since this context read them) before it is reported.
    pub(super) async fn get_current(
        &self,
        data_key: &SecretKey,
        store: StoreName,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        let mut attempt = 0;
        loop {
            let Some(sealed) = self.store.get(store, key).await? else { return Ok(None) };
            let opened = match data_key.open(&Self::record_aad(store, key), &sealed) {
                Ok(opened) => opened,
                Err(e) => return Err(self.rotated_away(data_key).await.unwrap_or(e)),
            };
            match self.manifest_for(data_key, Some(&[key])).await?.check(data_key, store, key, &sealed) {
                Ok(()) => return Ok(Some(opened)),
                Err(e) if attempt >= 2 => return Err(e),
                Err(_) => {
                    attempt += 1;
                    self.refresh_manifest(data_key).await?;
                }
            }
        }
    }

    /// Opens every record of a store: (storage key, plaintext or the error of that record).
    pub async fn open_all(&self, store: StoreName) -> Result<Vec<(String, Result<Vec<u8>>)>> {
        let opened = self.open_all_except(store, &|_| false).await?;
        Ok(opened
            .into_iter()
            .filter_map(|(key, value)| match value {
                Stored::Known(_) => None,
                Stored::Opened(opened) => Some((key, opened.map(|(plain, _)| plain))),
            })
            .collect())
    }

    /// Opens every record of a store except those whose current envelope the caller already
    /// holds the plaintext of: `known(fingerprint)` says so for the fingerprint the manifest
    /// names for a key. Reads the keys, the manifest and then only the other values (one
    /// transaction), so a caller with a copy of most values (the index snapshot) reads and
    /// opens only the values written since it was made.
    pub async fn open_all_except(
        &self,
        store: StoreName,
        known: &dyn Fn(&manifest::Fingerprint) -> bool,
    ) -> Result<Vec<(String, Stored)>> {
        let data_key = self.session_data_key().ok_or(CoreError::VaultLocked)?;
        if let Some(rotated) = self.rotated_away(&data_key).await {
            return Err(rotated);
        }
        let keys = self.store.list_keys(store).await?;
        let manifest = self.manifest_for(&data_key, None).await?;
        self.open_listed_except(&data_key, &manifest, store, keys, known).await
    }

    /// [`Vault::open_all_except`] for the records whose storage keys start with one of
    /// `prefixes` (hex, at most three characters: whole manifest shards), with what the
    /// manifest said of each prefix when they were read ([`PrefixState`]): a caller that
    /// keeps a copy of them can tell later that nothing under a prefix changed since.
    pub async fn open_under_except(
        &self,
        store: StoreName,
        prefixes: &[String],
        known: &dyn Fn(&manifest::Fingerprint) -> bool,
    ) -> Result<(Vec<(String, Stored)>, Vec<PrefixState>)> {
        let data_key = self.session_data_key().ok_or(CoreError::VaultLocked)?;
        if let Some(rotated) = self.rotated_away(&data_key).await {
            return Err(rotated);
        }
        let keys = self.store.list_keys_with_prefixes(store, prefixes).await?;
        // Every shard under the prefixes, also those holding none of the keys listed (the
        // manifest's count of values under a prefix must cover them).
        let probes: Vec<String> = prefixes.iter().flat_map(|p| Manifest::shard_probes(p)).collect();
        let wanted: Vec<&str> = probes.iter().map(String::as_str).collect();
        let manifest = self.manifest_for(&data_key, Some(&wanted)).await?;
        let mut states = Vec::with_capacity(prefixes.len());
        for prefix in prefixes {
            let tracked = manifest.count_under(&data_key, store, prefix)?;
            states.push(PrefixState { prefix: prefix.clone(), versions: manifest.versions_under(prefix), tracked });
        }
        let values = self.open_listed_except(&data_key, &manifest, store, keys, known).await?;
        Ok((values, states))
    }

    /// The versions of the manifest's shards as stored now (its root, read again when another
    /// writer changed it since this context read it), by shard number.
    pub async fn manifest_versions(&self) -> Result<Vec<u32>> {
        let data_key = self.session_data_key().ok_or(CoreError::VaultLocked)?;
        let stored_root = self.store.get(StoreName::Meta, manifest::ROOT_KEY).await?;
        if self.cached_manifest().is_some_and(|m| m.root_bytes() != stored_root.as_deref()) {
            self.set_manifest(None);
        }
        Ok(self.manifest(&data_key).await?.versions().to_vec())
    }

    async fn open_listed_except(
        &self,
        data_key: &SecretKey,
        manifest: &Manifest,
        store: StoreName,
        keys: Vec<String>,
        known: &dyn Fn(&manifest::Fingerprint) -> bool,
    ) -> Result<Vec<(String, Stored)>> {
        let mut out = Vec::with_capacity(keys.len());
        let mut unknown = Vec::new();
        for key in keys {
            match manifest.fingerprint_of(data_key, store, &key)? {
                Some(fp) if known(&fp) => out.push((key, Stored::Known(fp))),
                _ => unknown.push(key),
            }
        }
        let values = self.store.get_many(store, &unknown).await?;
        // Deleted since the keys were read: left out.
        let present: Vec<(String, Vec<u8>)> =
            unknown.into_iter().zip(values).filter_map(|(key, sealed)| Some((key, sealed?))).collect();
        let sealed: Vec<(Vec<u8>, &[u8])> =
            present.iter().map(|(key, sealed)| (Self::record_aad(store, key), sealed.as_slice())).collect();
        let opened_values = self.open_values(data_key, &sealed).await;
        for ((key, sealed), opened) in present.iter().zip(opened_values) {
            let key = key.clone();
            let opened = match opened {
                Err(e) => Err(e),
                Ok(plain) => match manifest.check(data_key, store, &key, sealed) {
                    Ok(()) => Ok((plain, manifest::fingerprint(store, sealed).ok())),
                    // Checked again against what is stored now (its fingerprint not kept);
                    // gone meanwhile: left out.
                    Err(_) => match self.get_current(data_key, store, &key).await {
                        Ok(None) => continue,
                        Ok(Some(plain)) => Ok((plain, None)),
                        Err(e) => Err(e),
                    },
                },
            };
            out.push((key, Stored::Opened(opened)));
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Opens the shards `wanted` of `manifest` by the platform's AES-GCM when there are many
    /// (an unlock's first read of every value opens all 4096); any it did not open are opened
    /// by [`Manifest::open_shards`] afterwards.
    pub(super) async fn open_shards_at_once(&self, data_key: &SecretKey, manifest: &Manifest, wanted: &[usize]) {
        let sealed = manifest.sealed_shards(wanted);
        if sealed.len() < BULK_OPEN_MIN {
            return;
        }
        let Ok(parts) =
            sealed.iter().map(|(_, aad, envelope)| envelope_parts(aad, envelope)).collect::<Result<Vec<_>>>()
        else {
            return;
        };
        if let Some(opened) = self.kdf.open_many(data_key, &parts).await {
            for ((n, _, _), plain) in sealed.iter().zip(opened) {
                if let Ok(plain) = plain {
                    manifest.set_opened(*n, &plain);
                }
            }
        }
    }

    /// Opens `values` ((associated data, envelope)) under `data_key`, in order: many at once
    /// by the platform's AES-GCM when it has one ([`PasswordKdf::open_many`]), else one by one.
    pub(super) async fn open_values(&self, data_key: &SecretKey, values: &[(Vec<u8>, &[u8])]) -> Vec<Result<Vec<u8>>> {
        if values.len() >= BULK_OPEN_MIN {
            let parts: Result<Vec<_>> = values.iter().map(|(aad, sealed)| envelope_parts(aad, sealed)).collect();
            // A damaged header anywhere: each is opened alone below, for its own error.
            if let Ok(parts) = parts {
                if let Some(opened) = self.kdf.open_many(data_key, &parts).await {
                    if opened.len() == values.len() {
                        return opened;
                    }
                }
            }
        }
        values.iter().map(|(aad, sealed)| data_key.open(aad, sealed)).collect()
    }

    /// Adds `plaintext`, sealed at commit under the data key, to `batch` as the copy `id` in the
    /// `cache` store, outside the manifest ([`manifest::is_copy_key`]): for copies that carry their own proof of being
    /// current (the index snapshot's chunks name the manifest versions they were made at), so
    /// that writing them changes no manifest shard. Its associated data binds it to `id`; a
    /// rotation of the data key leaves it unreadable (a copy, made again).
    pub fn seal_copy_into(&self, batch: WriteBatch, id: &str, plaintext: &[u8]) -> Result<WriteBatch> {
        let key = Self::copy_key(id)?;
        let aad = Self::record_aad(StoreName::Cache, &key);
        Ok(batch.seal(StoreName::Cache, key, aad, plaintext))
    }

    /// Adds the delete of the copy `id` ([`Vault::seal_copy_into`]) to `batch`.
    pub fn delete_copy_into(&self, batch: WriteBatch, id: &str) -> Result<WriteBatch> {
        Ok(batch.delete(StoreName::Cache, Self::copy_key(id)?))
    }

    /// Reads and opens the copies `ids` ([`Vault::seal_copy_into`]), in order: None where
    /// absent, an error where one does not open (damaged, moved, or of another data key).
    pub async fn open_copies(&self, ids: &[&str]) -> Result<Vec<Result<Option<Vec<u8>>>>> {
        let data_key = self.session_data_key().ok_or(CoreError::VaultLocked)?;
        let keys = ids.iter().map(|id| Self::copy_key(id)).collect::<Result<Vec<_>>>()?;
        let stored = self.store.get_many(StoreName::Cache, &keys).await?;
        let present: Vec<(Vec<u8>, &[u8])> = keys
            .iter()
            .zip(&stored)
            .filter_map(|(key, sealed)| Some((Self::record_aad(StoreName::Cache, key), sealed.as_deref()?)))
            .collect();
        let mut opened = self.open_values(&data_key, &present).await.into_iter();
        Ok(stored
            .iter()
            .map(|sealed| match sealed {
                None => Ok(None),
                Some(_) => {
                    opened.next().unwrap_or_else(|| Err(CoreError::Storage("a copy was not opened".into()))).map(Some)
                }
            })
            .collect())
    }

    fn copy_key(id: &str) -> Result<String> {
        if id.is_empty() || id.len() > 256 {
            return Err(CoreError::BadInput("copy id must be 1 to 256 bytes".into()));
        }
        Ok(format!("{}{id}", manifest::COPY_PREFIX))
    }

    /// Adds the delete of one record to `batch`.
    pub fn delete_into(&self, batch: WriteBatch, store: StoreName, id: &str) -> Result<WriteBatch> {
        let (_, key) = self.record_address(store, id)?;
        Ok(batch.delete(store, key))
    }

    /// Removes one record.
    pub async fn delete_record(&self, store: StoreName, id: &str) -> Result<()> {
        let (_, key) = self.record_address(store, id)?;
        self.commit(WriteBatch::new().delete(store, key)).await
    }

    /// Commits a batch of sealed values (built with [`Vault::seal_into`] and
    /// [`Vault::delete_into`]) with its manifest update, in one transaction. Every write of
    /// `records`, `outbox`, `cache` or `index` goes through here: a value written past it is
    /// STORAGE_CORRUPT when read.
    pub async fn commit(&self, batch: WriteBatch) -> Result<()> {
        let data_key = self.session_data_key().ok_or(CoreError::VaultLocked)?;
        self.commit_with(&data_key, batch).await
    }

    /// As [`Vault::commit`], under `data_key` (a login, before its session opens). When another
    /// writer changed the manifest since this context read it, the changed shards are read
    /// again and the update re-applied (the values themselves are not sealed again).
    pub(super) async fn commit_with(&self, data_key: &SecretKey, batch: WriteBatch) -> Result<()> {
        let mut attempt = 0;
        let mut batch = self.seal_pending_with(data_key, batch).await?;
        let keys: Vec<String> = batch
            .ops()
            .iter()
            .filter_map(|op| match op {
                WriteOp::Put { store, key, .. } | WriteOp::Delete { store, key } if manifest::tracks(*store) => {
                    Some(key.clone())
                }
                _ => None,
            })
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        loop {
            let manifest = self.manifest_for(data_key, Some(&keys)).await?;
            // A removal in this context rotated the key while this write waited: its manifest
            // copy is the new key's, and sealing it under the old one would break the vault.
            if self.session_data_key().is_some_and(|k| !constant_time_eq(k.expose(), data_key.expose())) {
                return Err(CoreError::VaultLocked);
            }
            let len = batch.len();
            if manifest.root_bytes().is_none() {
                batch = self.mark_manifest_in_key_check(data_key, batch).await?;
            }
            let (next, full) = manifest.apply(data_key, &self.rng, batch)?;
            batch = full;
            match self.store.write(batch.clone()).await {
                Ok(()) => {
                    self.set_manifest(Some(next));
                    return Ok(());
                }
                Err(CoreError::StaleWrite(_)) if attempt < MAX_COMMIT_ATTEMPTS => {
                    attempt += 1;
                    batch.truncate(len);
                    self.refresh_manifest(data_key).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
