//! Logins into the vault: online (after the server accepted the password: a user is
//! registered or refreshed, a new user receives the data key of the open session, the
//! handover), offline (against the register, with lockout and credential age), and a password
//! the server refused (noted so that it opens nothing offline any more).

use super::*;

impl<S: KvStore, K: PasswordKdf, R: RandomSource> Vault<S, K, R> {
    /// Registers or refreshes `username` after the server has accepted `password`, and opens
    /// the session. A user new to this device gets the data key of the open session
    /// (handover); with no open session and no vault yet, a new vault is created; otherwise
    /// [`CoreError::HandoverRequired`] and nothing is written.
    pub async fn login_verified_online(
        &self,
        username: &str,
        password: &str,
        profile: UserProfile,
        now_ms: i64,
    ) -> Result<LoginOutcome> {
        self.login_verified_online_with(username, password, profile, now_ms, None).await
    }

    /// As [`Vault::login_verified_online`], with a data key obtained elsewhere (server escrow)
    /// to use when no session is open. The key must be this vault's.
    pub async fn login_verified_online_with(
        &self,
        username: &str,
        password: &str,
        profile: UserProfile,
        now_ms: i64,
        escrowed_key: Option<SecretKey>,
    ) -> Result<LoginOutcome> {
        self.login_verified_online_ahead(username, password, profile, now_ms, escrowed_key, None).await
    }

    /// As [`Vault::login_verified_online_with`], with her password's secrets derived ahead
    /// from this same `password` ([`Vault::derive_ahead`]).
    pub(crate) async fn login_verified_online_ahead(
        &self,
        username: &str,
        password: &str,
        profile: UserProfile,
        now_ms: i64,
        escrowed_key: Option<SecretKey>,
        mut ahead: Option<DerivedAhead>,
    ) -> Result<LoginOutcome> {
        validate_credentials(username, password)?;
        let meta = self.load_meta().await?;
        // Her entry and password secrets, when her wrap can be kept as it is.
        let mut current_wrap: Option<(UserEntry, PasswordSecrets)> = None;
        let (meta, mut batch, data_key, handover) = match meta {
            None => {
                if self.registered_users().await? > 0 {
                    return Err(CoreError::StorageCorrupt("users registered but vault metadata missing".into()));
                }
                let data_key = SecretKey::generate(&self.rng)?;
                let mut meta = VaultMeta {
                    format: REGISTER_FORMAT,
                    vault_id: hex::encode(random_array::<16>(&self.rng)?),
                    username_salt: Bytes(random_array::<32>(&self.rng)?.to_vec()),
                    key_check: Bytes::default(),
                    created_at_ms: now_ms,
                    sealed_lookup_key: None,
                };
                meta.key_check =
                    Bytes(data_key.seal(&self.rng, &Self::key_check_aad(&meta), KEY_CHECK_WITH_MANIFEST)?);
                let batch = WriteBatch::new().put(StoreName::Meta, VAULT_META_KEY, meta.encode()?);
                (meta, batch, data_key, false)
            }
            Some(meta) => {
                let user_key = Self::user_key(&meta, username);
                let existing = match self.store.get(StoreName::Users, &user_key).await? {
                    Some(bytes) => Some(UserEntry::decode(&bytes)?),
                    None => None,
                };
                let mut own_key = None;
                if let Some(entry) = existing {
                    let secrets = self.derive_or_take(password, &entry.kdf, &mut ahead).await?;
                    if constant_time_eq(&secrets.verifier, &entry.verifier.0) {
                        own_key = Some(Self::open_own_data_key(&meta, &user_key, &entry, &secrets.key_encryption_key)?);
                        // A rotated key is wrapped under her password again.
                        if entry.kdf.iterations >= self.policy.iterations && entry.rotated_data_key.is_none() {
                            current_wrap = Some((entry, secrets));
                        }
                    }
                }
                let (data_key, handover) = match own_key {
                    Some(key) => (key, false),
                    // New user, or a password changed on the server: only an open session can share the key.
                    None => match self.session_data_key().map(|k| SecretKey::clone(&k)) {
                        Some(key) => (key, true),
                        None => match escrowed_key {
                            // An escrowed key from before a rotation no longer opens this vault.
                            Some(key) => match Self::check_data_key(&meta, &key) {
                                Ok(()) => (key, true),
                                Err(_) => return Err(CoreError::HandoverRequired(username.to_string())),
                            },
                            None => return Err(CoreError::HandoverRequired(username.to_string())),
                        },
                    },
                };
                Self::check_data_key(&meta, &data_key)?;
                (meta, WriteBatch::new(), data_key, handover)
            }
        };
        let user_key = Self::user_key(&meta, username);
        // Wrap anew for a new user, a changed password or a raised iteration count.
        let (kdf, verifier, wrapped_data_key, (public_key, wrapped_private_key)) = match current_wrap {
            Some((entry, secrets)) => {
                let pair = match (entry.public_key, entry.wrapped_private_key) {
                    (Some(public), Some(private)) => (public, private),
                    _ => self.new_key_pair(&meta, &user_key, &secrets.key_encryption_key)?,
                };
                (entry.kdf, entry.verifier, entry.wrapped_data_key, pair)
            }
            None => {
                let kdf = self.new_kdf_params()?;
                let secrets = self.derive(password, &kdf).await?;
                let wrapped =
                    secrets.key_encryption_key.seal(&self.rng, &Self::wrap_aad(&meta, &user_key), data_key.expose())?;
                let pair = self.new_key_pair(&meta, &user_key, &secrets.key_encryption_key)?;
                (kdf, Bytes(secrets.verifier.to_vec()), Bytes(wrapped), pair)
            }
        };
        let entry = UserEntry {
            format: REGISTER_FORMAT,
            kdf,
            verifier,
            wrapped_data_key,
            sealed_profile: Bytes(data_key.seal(
                &self.rng,
                &Self::profile_aad(&meta, &user_key),
                &SealedUserFacts::fresh(&profile, now_ms).encode()?,
            )?),
            last_online_login_ms: now_ms,
            failed_attempts: 0,
            locked_until_ms: 0,
            refused_by_server: false,
            public_key: Some(public_key),
            wrapped_private_key: Some(wrapped_private_key),
            rotated_data_key: None,
        };
        batch = batch.put(StoreName::Users, user_key, entry.encode()?);
        self.commit_with(&data_key, batch).await?;
        self.open_session(&meta, username, data_key, Some(password), Some(profile.clone()), LoginMode::Online)?;
        Ok(LoginOutcome { username: username.to_string(), mode: LoginMode::Online, profile, handover })
    }

    /// Checks `password` against the local register only, with lockout and credential age,
    /// and opens the session.
    pub async fn login_offline(&self, username: &str, password: &str, now_ms: i64) -> Result<LoginOutcome> {
        self.login_offline_ahead(username, password, now_ms, None).await
    }

    /// As [`Vault::login_offline`], with her password's secrets derived ahead from this same
    /// `password` ([`Vault::derive_ahead`]).
    pub(crate) async fn login_offline_ahead(
        &self,
        username: &str,
        password: &str,
        now_ms: i64,
        mut ahead: Option<DerivedAhead>,
    ) -> Result<LoginOutcome> {
        validate_credentials(username, password)?;
        let unknown = || CoreError::UnknownUserOffline(username.to_string());
        let meta = self.load_meta().await?.ok_or_else(unknown)?;
        let user_key = Self::user_key(&meta, username);
        let mut entry = match self.store.get(StoreName::Users, &user_key).await? {
            Some(bytes) => UserEntry::decode(&bytes)?,
            None => return Err(unknown()),
        };
        if entry.locked_until_ms > now_ms {
            let wait = (entry.locked_until_ms - now_ms) as u64;
            return Err(CoreError::LockedOut { retry_after_ms: wait.min(self.policy.lockout_max_ms) });
        }
        let secrets = self.derive_or_take(password, &entry.kdf, &mut ahead).await?;
        if !constant_time_eq(&secrets.verifier, &entry.verifier.0) {
            entry.failed_attempts = entry.failed_attempts.saturating_add(1);
            let delay = self.policy.lockout_delay_ms(entry.failed_attempts);
            entry.locked_until_ms = if delay > 0 { now_ms.saturating_add(delay as i64) } else { 0 };
            self.store.write(WriteBatch::new().put(StoreName::Users, user_key, entry.encode()?)).await?;
            return Err(if delay > 0 {
                CoreError::LockedOut { retry_after_ms: delay }
            } else {
                CoreError::BadCredentials
            });
        }
        if entry.refused_by_server {
            return Err(CoreError::CredentialRevoked);
        }
        // The sealed mark (below, once the facts are open) is the one that counts.
        let data_key = Self::open_own_data_key(&meta, &user_key, &entry, &secrets.key_encryption_key)?;
        Self::check_data_key(&meta, &data_key)?;
        if entry.failed_attempts != 0 || entry.locked_until_ms != 0 {
            entry.failed_attempts = 0;
            entry.locked_until_ms = 0;
            self.store.write(WriteBatch::new().put(StoreName::Users, user_key.clone(), entry.encode()?)).await?;
        }
        // Her credential must be the one the manifest holds: an older entry put back (to bring
        // back an old password) is refused, whatever its password.
        self.check_current(&data_key, StoreName::Users, &user_key, &entry.encode()?).await?;
        // The times that bound offline login are the sealed ones (the plain copy in the entry
        // is for reading only): the latest time seen, so a clock moved back gains nothing.
        let mut facts = SealedUserFacts::decode(
            &data_key.open(&Self::profile_aad(&meta, &user_key), &entry.sealed_profile.0)?,
            entry.last_online_login_ms,
        )?;
        if facts.refused_by_server {
            return Err(CoreError::CredentialRevoked);
        }
        let latest_ms = now_ms.max(facts.clock_high_water_ms);
        let age_ms = latest_ms.saturating_sub(facts.last_online_login_ms);
        let clock_moved_back = now_ms < facts.clock_high_water_ms.saturating_sub(CLOCK_SLACK_MS)
            || now_ms < facts.last_online_login_ms.saturating_sub(CLOCK_SLACK_MS);
        if clock_moved_back || age_ms > self.policy.max_offline_age_ms as i64 {
            return Err(CoreError::CredentialExpired { age_days: (age_ms.max(0) / DAY_MS) as u64 });
        }
        let mut credential_changed = false;
        if entry.rotated_data_key.is_some() {
            // The key a colleague's removal rotated to: wrapped under her password again.
            entry.wrapped_data_key = Bytes(secrets.key_encryption_key.seal(
                &self.rng,
                &Self::wrap_aad(&meta, &user_key),
                data_key.expose(),
            )?);
            entry.rotated_data_key = None;
            credential_changed = true;
        }
        if entry.public_key.is_none() || entry.wrapped_private_key.is_none() {
            let (public, private) = self.new_key_pair(&meta, &user_key, &secrets.key_encryption_key)?;
            entry.public_key = Some(public);
            entry.wrapped_private_key = Some(private);
            credential_changed = true;
        }
        if now_ms > facts.clock_high_water_ms {
            facts.clock_high_water_ms = now_ms;
            entry.sealed_profile =
                Bytes(data_key.seal(&self.rng, &Self::profile_aad(&meta, &user_key), &facts.encode()?)?);
            credential_changed = true;
        }
        if credential_changed {
            // Best effort on a full device: the nurse still logs in (it is written next time).
            match self
                .commit_with(&data_key, WriteBatch::new().put(StoreName::Users, user_key.clone(), entry.encode()?))
                .await
            {
                Ok(()) | Err(CoreError::StorageFull) => {}
                Err(other) => return Err(other),
            }
        }
        let profile = facts.profile;
        self.open_session(&meta, username, data_key, Some(password), Some(profile.clone()), LoginMode::Offline)?;
        Ok(LoginOutcome { username: username.to_string(), mode: LoginMode::Offline, profile, handover: false })
    }

    /// The server refused `password` for `username` (a check it could not pass on a session).
    /// When that is the password this register holds for her, offline login with it stops
    /// ([`CoreError::CredentialRevoked`]) until an online login the server accepts; the data and
    /// everyone else's access stay. True when the entry was marked. A wrong guess changes nothing
    /// (the comparison is the offline login's, in constant time).
    pub async fn note_password_refused_by_server(&self, username: &str, password: &str) -> Result<bool> {
        self.note_password_refused_ahead(username, password, None).await
    }

    /// As [`Vault::note_password_refused_by_server`], with the secrets derived ahead from this
    /// same `password` ([`Vault::derive_ahead`]).
    pub(crate) async fn note_password_refused_ahead(
        &self,
        username: &str,
        password: &str,
        mut ahead: Option<DerivedAhead>,
    ) -> Result<bool> {
        validate_credentials(username, password)?;
        let Some(meta) = self.load_meta().await? else { return Ok(false) };
        let user_key = Self::user_key(&meta, username);
        let Some(bytes) = self.store.get(StoreName::Users, &user_key).await? else { return Ok(false) };
        let mut entry = UserEntry::decode(&bytes)?;
        let secrets = self.derive_or_take(password, &entry.kdf, &mut ahead).await?;
        if !constant_time_eq(&secrets.verifier, &entry.verifier.0) || entry.refused_by_server {
            return Ok(false);
        }
        // Her password opens her wrapped key: the mark is sealed under the data key beside her
        // login times, and committed with the manifest, so that neither editing the entry nor
        // putting back the one from before the mark takes it off.
        let data_key = Self::open_own_data_key(&meta, &user_key, &entry, &secrets.key_encryption_key)?;
        Self::check_data_key(&meta, &data_key)?;
        self.check_current(&data_key, StoreName::Users, &user_key, &bytes).await?;
        let profile_aad = Self::profile_aad(&meta, &user_key);
        let mut facts = SealedUserFacts::decode(
            &data_key.open(&profile_aad, &entry.sealed_profile.0)?,
            entry.last_online_login_ms,
        )?;
        facts.refused_by_server = true;
        entry.sealed_profile = Bytes(data_key.seal(&self.rng, &profile_aad, &facts.encode()?)?);
        entry.refused_by_server = true;
        self.commit_with(&data_key, WriteBatch::new().put(StoreName::Users, user_key, entry.encode()?)).await?;
        Ok(true)
    }
}
