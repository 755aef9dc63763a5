//! The vault's copy of its sealed manifest ([`crate::manifest`]): read at unlock (the root),
//! its shards read and opened at first use, built for a vault written before it, refreshed
//! when another writer changed it, and checked against every value read.

use super::*;

impl<S: KvStore, K: PasswordKdf, R: RandomSource> Vault<S, K, R> {
    /// The first manifest stored turns the key check into one that says the vault has a
    /// manifest (in the same batch), so that deleting the manifest later is not taken for a
    /// vault written before it.
    pub(super) async fn mark_manifest_in_key_check(
        &self,
        data_key: &SecretKey,
        batch: WriteBatch,
    ) -> Result<WriteBatch> {
        let Some(stored) = self.store.get(StoreName::Meta, VAULT_META_KEY).await? else { return Ok(batch) };
        let mut meta = VaultMeta::decode(&stored)?;
        if data_key.open(&Self::key_check_aad(&meta), &meta.key_check.0)? == KEY_CHECK_WITH_MANIFEST {
            return Ok(batch);
        }
        meta.key_check = Bytes(data_key.seal(&self.rng, &Self::key_check_aad(&meta), KEY_CHECK_WITH_MANIFEST)?);
        Ok(batch.expect(StoreName::Meta, VAULT_META_KEY, Some(stored)).put(
            StoreName::Meta,
            VAULT_META_KEY,
            meta.encode()?,
        ))
    }

    pub(super) fn cached_manifest(&self) -> Option<Manifest> {
        self.manifest.lock().ok().and_then(|m| m.clone())
    }

    pub(super) fn set_manifest(&self, manifest: Option<Manifest>) {
        if let Ok(mut m) = self.manifest.lock() {
            *m = manifest;
        }
    }

    /// The manifest: this context's copy, or the stored root (its shards are read when needed:
    /// [`Vault::manifest_for`]).
    pub(super) async fn manifest(&self, data_key: &SecretKey) -> Result<Manifest> {
        if let Some(m) = self.cached_manifest() {
            return Ok(m);
        }
        let Some(root) = self.store.get(StoreName::Meta, ROOT_KEY).await? else {
            return self.reload_manifest(data_key).await; // none stored: built, or STORAGE_CORRUPT
        };
        let manifest = match Manifest::open_root(data_key, root) {
            Ok(m) => m,
            Err(e) => return Err(self.rotated_away(data_key).await.unwrap_or(e)),
        };
        self.set_manifest(Some(manifest.clone()));
        Ok(manifest)
    }

    /// The manifest with the shards of the storage keys `keys` read and opened (every shard
    /// when None). A shard another writer changed after this copy's root was read does not
    /// open: the manifest is read again, up to twice, before that is reported.
    pub(super) async fn manifest_for(&self, data_key: &SecretKey, keys: Option<&[&str]>) -> Result<Manifest> {
        let mut attempt = 0;
        loop {
            let manifest = self.manifest(data_key).await?;
            let wanted = match keys {
                Some(keys) => manifest.unread_shards(Some(&mut keys.iter().copied())),
                None => manifest.unread_shards(None),
            };
            if wanted.is_empty() {
                return Ok(manifest);
            }
            // Many shards: one read of the whole `meta` store costs less than one read each,
            // and when it holds this copy's root, every shard in it is kept (later writes,
            // which touch other shards, then read none: a flush of 5,000 creates read the
            // whole store once per request before).
            let read = if wanted.len() > 64 {
                let stored = StoredManifest::from_meta(self.store.list(StoreName::Meta).await?);
                match manifest.with_all_read(&stored) {
                    Ok(Some(next)) => Ok(next),
                    Ok(None) => manifest.with_read(&wanted, &stored.shards),
                    Err(e) => Err(e),
                }
            } else {
                let keys: Vec<String> = wanted.iter().map(|&n| Manifest::shard_storage_key(n)).collect();
                let values = self.store.get_many(StoreName::Meta, &keys).await?;
                let fetched = wanted.iter().zip(values).filter_map(|(&n, bytes)| Some((n, bytes?))).collect();
                manifest.with_read(&wanted, &fetched)
            };
            if let Ok(next) = &read {
                // Every shard the whole-store read brought, not only those wanted now: the
                // others would be opened one by one in Rust at their first use.
                let all: Vec<usize> = (0..manifest::SHARDS).collect();
                self.open_shards_at_once(data_key, next, if wanted.len() > 64 { &all } else { &wanted }).await;
            }
            let opened = read.and_then(|next| {
                next.open_shards(data_key, &wanted)?;
                Ok(next)
            });
            match opened {
                Ok(next) => {
                    if let Ok(mut cached) = self.manifest.lock() {
                        // Kept unless another task of this context moved to another root meanwhile.
                        if cached.as_ref().map(Manifest::root_bytes) == Some(manifest.root_bytes()) {
                            *cached = Some(next.clone());
                        }
                    }
                    return Ok(next);
                }
                Err(e) if attempt >= 2 => return Err(e),
                Err(_) => {
                    attempt += 1;
                    self.refresh_manifest(data_key).await?;
                }
            }
        }
    }

    /// Reads the whole stored manifest (one read of the `meta` store). A vault written before
    /// the manifest gets one built from what is stored (trust on first use), stored at once.
    pub(super) async fn reload_manifest(&self, data_key: &SecretKey) -> Result<Manifest> {
        let stored = StoredManifest::from_meta(self.store.list(StoreName::Meta).await?);
        let manifest = match Manifest::open(data_key, stored) {
            Ok(Some(m)) => m,
            Ok(None) => self.build_manifest(data_key).await?,
            Err(e) => return Err(self.rotated_away(data_key).await.unwrap_or(e)),
        };
        self.set_manifest(Some(manifest.clone()));
        Ok(manifest)
    }

    /// When another context rotated the data key (a user removed), this one's key no longer
    /// opens the vault: its session is closed and the error is [`CoreError::VaultLocked`] (log
    /// in again), not a vault taken for damaged.
    pub(super) async fn rotated_away(&self, data_key: &SecretKey) -> Option<CoreError> {
        let meta = self.load_meta().await.ok()??;
        if Self::check_data_key(&meta, data_key).is_ok() {
            return None;
        }
        if self.session_data_key().is_some_and(|k| constant_time_eq(k.expose(), data_key.expose())) {
            self.lock();
        }
        Some(CoreError::VaultLocked)
    }

    pub(super) async fn build_manifest(&self, data_key: &SecretKey) -> Result<Manifest> {
        let mut manifest = Manifest::empty();
        let Some(meta) = self.load_meta().await? else { return Ok(manifest) };
        if data_key.open(&Self::key_check_aad(&meta), &meta.key_check.0)? == KEY_CHECK_WITH_MANIFEST {
            return Err(CoreError::StorageCorrupt("the vault's sealed manifest is missing".into()));
        }
        for store in [StoreName::Users, StoreName::Records, StoreName::Outbox, StoreName::Cache, StoreName::Index] {
            for (key, value) in self.store.list(store).await? {
                // A value that cannot be ours (too short, a register entry that does not
                // parse) stays out, and so stays STORAGE_CORRUPT. Copies are not tracked.
                if !manifest::is_copy_key(&key) {
                    let _ = manifest.insert(data_key, store, &key, &value);
                }
            }
        }
        // Stored at once (every shard); on a full device it is built again next time.
        let batch = self.mark_manifest_in_key_check(data_key, WriteBatch::new()).await?;
        let (stored, batch) = manifest.apply(data_key, &self.rng, batch)?;
        match self.store.write(batch).await {
            Ok(()) => Ok(stored),
            Err(CoreError::StorageFull) => Ok(manifest),
            // Another writer stored one first: that one is read.
            Err(CoreError::StaleWrite(_)) => {
                let stored = StoredManifest::from_meta(self.store.list(StoreName::Meta).await?);
                Manifest::open(data_key, stored)?
                    .ok_or_else(|| CoreError::StorageCorrupt("the vault's sealed manifest vanished".into()))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads again the root and the shards another writer changed. A manifest that changed
    /// between those reads is read whole instead (one consistent read).
    pub(super) async fn refresh_manifest(&self, data_key: &SecretKey) -> Result<Manifest> {
        match self.refresh_manifest_under(data_key).await {
            Ok(manifest) => Ok(manifest),
            Err(e) => Err(self.rotated_away(data_key).await.unwrap_or(e)),
        }
    }

    pub(super) async fn refresh_manifest_under(&self, data_key: &SecretKey) -> Result<Manifest> {
        let Some(cached) = self.cached_manifest() else { return self.reload_manifest(data_key).await };
        let Some(root) = self.store.get(StoreName::Meta, ROOT_KEY).await? else {
            return self.reload_manifest(data_key).await;
        };
        let mut fetched = std::collections::BTreeMap::new();
        for n in cached.changed_shards(data_key, &root)? {
            if let Some(bytes) = self.store.get(StoreName::Meta, &Manifest::shard_storage_key(n)).await? {
                fetched.insert(n, bytes);
            }
        }
        match cached.refreshed(data_key, Some(root), &fetched) {
            Ok(Some(next)) => {
                self.set_manifest(Some(next.clone()));
                Ok(next)
            }
            _ => self.reload_manifest(data_key).await,
        }
    }

    /// Checks a stored value against the manifest (read again once on a mismatch).
    pub(super) async fn check_current(
        &self,
        data_key: &SecretKey,
        store: StoreName,
        key: &str,
        value: &[u8],
    ) -> Result<()> {
        if self.manifest_for(data_key, Some(&[key])).await?.check(data_key, store, key, value).is_ok() {
            return Ok(());
        }
        self.refresh_manifest(data_key).await?;
        self.manifest_for(data_key, Some(&[key])).await?.check(data_key, store, key, value)
    }

    /// The storage key of a record (tests use it to tamper with raw bytes).
    pub fn record_storage_key(&self, store: StoreName, id: &str) -> Result<String> {
        self.record_address(store, id).map(|(_, k)| k)
    }
}
