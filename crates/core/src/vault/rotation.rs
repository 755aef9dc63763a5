//! Removing a user from this device (issue 13 item 7): her register entry goes, and the data
//! key is rotated, so that a copy of her entry (or of the whole storage) taken before she left
//! opens nothing written afterwards.
//!
//! - A new random data key; every sealed value (records, outbox, cache, index, the users'
//!   sealed facts) is opened under the old key and sealed again under the new one at the same
//!   storage key, and the manifest is written anew under it, all in one write (one IndexedDB
//!   transaction): a rotation is whole or not at all.
//! - Storage keys do not change: the key that names records is kept, sealed under the new data
//!   key in the vault metadata. (She knew it: she can still tell whether a record with a UID
//!   she knows is stored here, not what it holds.)
//! - The colleague who removes her is logged in, but the other users' passwords are not known:
//!   the new key is sealed to each one's public key ([`crate::keypair`]), and her next login,
//!   online or offline, opens it with her private key and wraps it under her password again.
//!   A user registered before key pairs existed (none made yet) cannot be given the new key:
//!   her entry is removed too, and her next online login joins again (handover or escrow).
//! - Values that do not open or are not the manifest's are unreadable already; they are
//!   dropped, not sealed again under the new key (which would make them look genuine).
//!
//! Not covered: the server escrow still holds the old key (it no longer opens this vault, and a
//! first login through it is refused as [`CoreError::HandoverRequired`]) until escrow is
//! enabled again; and someone who can write this device's storage and kept a copy from before
//! the removal can put the whole storage back (nothing on the device can tell that from the
//! past it was).

use std::sync::Arc;

use serde::Serialize;

use super::{SealedUserFacts, Vault, KEY_CHECK_WITH_MANIFEST, MAX_COMMIT_ATTEMPTS};
use crate::{
    crypto::SecretKey,
    error::{CoreError, Result},
    kdf::PasswordKdf,
    keypair::seal_key_to,
    manifest::{self, Manifest},
    random::RandomSource,
    register::{Bytes, UserEntry, VaultMeta, VAULT_META_KEY},
    store::{KvStore, StoreName, WriteBatch},
};

/// What a removal did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemovalOutcome {
    /// The user removed.
    pub username: String,
    /// Users who keep access: the new key is sealed to their public key.
    pub users_kept: u32,
    /// Users registered before key pairs existed, removed too: they log in online again.
    pub users_to_log_in_online_again: u32,
    /// Sealed values sealed again under the new key.
    pub values_resealed: u64,
    /// Values that were unreadable already (damaged, not the manifest's), dropped.
    pub unreadable_values_dropped: u64,
}

/// The stores of sealed values, sealed again at a rotation.
const SEALED_STORES: [StoreName; 4] = [StoreName::Records, StoreName::Outbox, StoreName::Cache, StoreName::Index];

impl<S: KvStore, K: PasswordKdf, R: RandomSource> Vault<S, K, R> {
    /// Removes `username` from this device's register and rotates the data key (see the
    /// module doc). The session stays open under the new key. Refused for the logged-in user
    /// herself ([`CoreError::BadInput`]) and for a user not registered here
    /// ([`CoreError::UnknownUserOffline`]); nothing is written then.
    pub async fn remove_user(&self, username: &str) -> Result<RemovalOutcome> {
        super::validate_username(username)?;
        let (session_user, old_key) = self
            .with_session(|s| s.as_ref().map(|s| (s.username.clone(), s.data_key.clone())))?
            .ok_or(CoreError::VaultLocked)?;
        if username == session_user {
            return Err(CoreError::BadInput(
                "the logged-in user cannot remove herself; a colleague logs in to remove her".into(),
            ));
        }
        let mut attempt = 0;
        loop {
            let meta_bytes = self.store.get(StoreName::Meta, VAULT_META_KEY).await?.ok_or(CoreError::VaultLocked)?;
            let meta = VaultMeta::decode(&meta_bytes)?;
            let removed_key = Self::user_key(&meta, username);
            if self.store.get(StoreName::Users, &removed_key).await?.is_none() {
                return Err(CoreError::UnknownUserOffline(username.to_string()));
            }
            let lookup_key = Self::lookup_key_of(&meta, &old_key)?;
            let new_key = SecretKey::generate(&self.rng)?;
            let (batch, outcome, manifest) =
                self.rotation_batch(&meta, meta_bytes, &removed_key, &old_key, &new_key, &lookup_key).await?;
            match self.store.write(batch).await {
                Ok(()) => {
                    let mut guard =
                        self.session.lock().map_err(|_| CoreError::Storage("session lock poisoned".into()))?;
                    if let Some(session) = guard.as_mut() {
                        session.data_key = Arc::new(new_key);
                    }
                    drop(guard);
                    self.set_manifest(Some(manifest));
                    return Ok(RemovalOutcome { username: username.to_string(), ..outcome });
                }
                // Another context wrote meanwhile: everything is read and sealed again.
                Err(CoreError::StaleWrite(_)) if attempt < MAX_COMMIT_ATTEMPTS => {
                    attempt += 1;
                    self.reload_manifest(&old_key).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The one write of a rotation, what it does, and the manifest it stores.
    async fn rotation_batch(
        &self,
        meta: &VaultMeta,
        meta_bytes: Vec<u8>,
        removed_key: &str,
        old_key: &SecretKey,
        new_key: &SecretKey,
        lookup_key: &SecretKey,
    ) -> Result<(WriteBatch, RemovalOutcome, Manifest)> {
        let old_manifest = self.reload_manifest(old_key).await?;
        let mut outcome = RemovalOutcome {
            username: String::new(),
            users_kept: 0,
            users_to_log_in_online_again: 0,
            values_resealed: 0,
            unreadable_values_dropped: 0,
        };
        let mut batch = WriteBatch::new();
        for (key, _) in self.store.list(StoreName::Meta).await? {
            if Manifest::is_storage_key(&key) {
                batch = batch.delete(StoreName::Meta, key);
            }
        }
        for store in SEALED_STORES {
            for (key, sealed) in self.store.list(store).await? {
                // Copies (the index snapshot) are made again under the new key: they name
                // manifest versions, which start again at 0 with the new manifest.
                if manifest::is_copy_key(&key) {
                    batch = batch.delete(store, key);
                    continue;
                }
                let aad = Self::record_aad(store, &key);
                let opened = old_key.open(&aad, &sealed).and_then(|plain| {
                    old_manifest.check(old_key, store, &key, &sealed)?;
                    Ok(plain)
                });
                match opened {
                    Ok(plain) => {
                        batch = batch.put(store, key, new_key.seal(&self.rng, &aad, &plain)?);
                        outcome.values_resealed += 1;
                    }
                    Err(_) => {
                        batch = batch.delete(store, key);
                        outcome.unreadable_values_dropped += 1;
                    }
                }
            }
        }
        for (user_key, bytes) in self.store.list(StoreName::Users).await? {
            let kept = if user_key == removed_key {
                None
            } else {
                self.entry_under_new_key(meta, &user_key, &bytes, &old_manifest, old_key, new_key)?
            };
            match kept {
                Some(entry) => {
                    batch = batch.put(StoreName::Users, user_key, entry.encode()?);
                    outcome.users_kept += 1;
                }
                None => {
                    if user_key != removed_key {
                        outcome.users_to_log_in_online_again += 1;
                    }
                    batch = batch.delete(StoreName::Users, user_key);
                }
            }
        }
        let mut next_meta = meta.clone();
        next_meta.key_check = Bytes(new_key.seal(&self.rng, &Self::key_check_aad(meta), KEY_CHECK_WITH_MANIFEST)?);
        next_meta.sealed_lookup_key =
            Some(Bytes(new_key.seal(&self.rng, &Self::lookup_key_aad(meta), lookup_key.expose())?));
        batch = batch.expect(StoreName::Meta, VAULT_META_KEY, Some(meta_bytes)).put(
            StoreName::Meta,
            VAULT_META_KEY,
            next_meta.encode()?,
        );
        let (manifest, batch) = Manifest::replacing(&old_manifest).apply(new_key, &self.rng, batch)?;
        Ok((batch, outcome, manifest))
    }

    /// A kept user's entry under the new key: her sealed facts sealed again, the new key
    /// sealed to her public key. None when she has no key pair yet, or her entry is not the
    /// manifest's or does not open (she joins again online).
    fn entry_under_new_key(
        &self,
        meta: &VaultMeta,
        user_key: &str,
        bytes: &[u8],
        manifest: &Manifest,
        old_key: &SecretKey,
        new_key: &SecretKey,
    ) -> Result<Option<UserEntry>> {
        let Ok(mut entry) = UserEntry::decode(bytes) else { return Ok(None) };
        let Some(public_key) = entry.public_key.clone() else { return Ok(None) };
        if entry.wrapped_private_key.is_none() || manifest.check(old_key, StoreName::Users, user_key, bytes).is_err() {
            return Ok(None);
        }
        let profile_aad = Self::profile_aad(meta, user_key);
        let Ok(facts) = old_key.open(&profile_aad, &entry.sealed_profile.0) else { return Ok(None) };
        // Parsed, so that what is sealed again is a register entry's facts.
        let Ok(facts) = SealedUserFacts::decode(&facts, entry.last_online_login_ms) else { return Ok(None) };
        entry.sealed_profile = Bytes(new_key.seal(&self.rng, &profile_aad, &facts.encode()?)?);
        entry.rotated_data_key =
            Some(Bytes(seal_key_to(&public_key.0, new_key, &self.rng, &Self::rotated_key_aad(meta, user_key))?));
        // The old key wrapped under her password opens nothing any more.
        entry.wrapped_data_key = Bytes::default();
        Ok(Some(entry))
    }
}
