//! The vault: one random data key per DHIS2 server, wrapped under each registered user's
//! password-derived key; the user register with offline login, lockout and credential age;
//! and sealed records addressed by keyed hashes. Keys live only in the in-memory session and
//! are zeroized on logout.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

mod rotation;

pub use rotation::RemovalOutcome;

use crate::{
    crypto::{
        constant_time_eq, envelope_of, envelope_parts, hmac_sha256, PasswordSecrets, SealInput, SecretKey,
        ENVELOPE_AAD_PREFIX_LEN,
    },
    error::{CoreError, Result},
    kdf::{PasswordKdf, DEFAULT_ITERATIONS, PBKDF2_SHA256},
    keypair::PrivateKey,
    manifest::{self, Manifest, StoredManifest, ROOT_KEY},
    profile::UserProfile,
    random::{random_array, RandomSource},
    register::{Bytes, KdfParams, UserEntry, VaultMeta, REGISTER_FORMAT, VAULT_META_KEY},
    store::{KvStore, StoreName, WriteBatch, WriteOp},
};

/// Longest username accepted (DHIS2 allows 255).
pub const MAX_USERNAME_LEN: usize = 255;
/// Longest password accepted, in bytes (DHIS2 allows 256 characters; UTF-8 may need more bytes).
pub const MAX_PASSWORD_BYTES: usize = 1024;
const KEY_CHECK_TEXT: &[u8] = b"tracker-offline key check v1";
/// What the key that names records in storage is derived from the data key with.
const LOOKUP_KEY_LABEL: &str = "tracker-offline/lookup/v1";

/// The key check of a vault that has a sealed manifest ([`crate::manifest`]): its manifest
/// missing is STORAGE_CORRUPT, never a reason to trust what is stored again.
const KEY_CHECK_WITH_MANIFEST: &[u8] = b"tracker-offline key check v2 manifest";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Tunable rules of the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultPolicy {
    /// PBKDF2 iterations for newly (re)wrapped users.
    pub iterations: u32,
    /// Failed offline attempts allowed before the lockout starts.
    pub free_attempts: u32,
    /// First lockout delay; it doubles with each further failure.
    pub lockout_base_ms: u64,
    /// Longest lockout delay.
    pub lockout_max_ms: u64,
    /// Longest time since the last online login during which offline login works.
    pub max_offline_age_ms: u64,
}

impl Default for VaultPolicy {
    fn default() -> Self {
        Self {
            iterations: DEFAULT_ITERATIONS,
            free_attempts: 5,
            lockout_base_ms: 30_000,
            lockout_max_ms: 60 * 60 * 1000,
            max_offline_age_ms: 30 * DAY_MS as u64,
        }
    }
}

impl VaultPolicy {
    /// Lockout delay after `failures` consecutive failures (0 while below the free attempts).
    pub fn lockout_delay_ms(&self, failures: u32) -> u64 {
        if failures < self.free_attempts {
            return 0;
        }
        let doublings = (failures - self.free_attempts).min(32);
        self.lockout_base_ms.saturating_mul(1u64 << doublings).min(self.lockout_max_ms)
    }
}

/// How a login was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginMode {
    /// The server accepted the credentials.
    Online,
    /// The local register accepted them.
    Offline,
}

/// What a successful login returns to the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginOutcome {
    /// The user's login name.
    pub username: String,
    /// Online or offline.
    pub mode: LoginMode,
    /// The profile from the server, or from the register offline.
    pub profile: UserProfile,
    /// True when this login registered the user on this device by handover of the data key
    /// from the session that was open (shift change).
    pub handover: bool,
}

/// The in-memory state while someone is logged in. Dropping it zeroizes every secret.
struct Session {
    username: String,
    /// Shared with operations under way (each seals and opens with the one cipher built for
    /// it); zeroized when the last of them ends.
    data_key: Arc<SecretKey>,
    lookup_key: SecretKey,
    /// Kept (never stored) so work can be sent to the server later without asking again.
    password: Option<Zeroizing<String>>,
    profile: Option<UserProfile>,
    mode: LoginMode,
}

/// A user's password secrets derived during a login, before they were asked for
/// ([`Vault::derive_ahead`]); zeroized when dropped unused.
pub(crate) struct DerivedAhead {
    kdf: KdfParams,
    secrets: PasswordSecrets,
}

/// What the JS `status()` reports about the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// Logged-in username.
    pub username: String,
    /// How the session was opened.
    pub mode: Option<LoginMode>,
    /// Profile, when known (a service worker unlocked by handover has none).
    pub profile: Option<UserProfile>,
}

/// The vault over a [`KvStore`], a [`PasswordKdf`] and a [`RandomSource`].
pub struct Vault<S, K, R> {
    store: S,
    kdf: K,
    rng: R,
    policy: VaultPolicy,
    session: Mutex<Option<Session>>,
    /// This context's copy of the sealed manifest (reloaded when another writer changed it).
    manifest: Mutex<Option<Manifest>>,
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource> Vault<S, K, R> {
    /// A locked vault over `store`.
    pub fn new(store: S, kdf: K, rng: R, policy: VaultPolicy) -> Self {
        Self { store, kdf, rng, policy, session: Mutex::new(None), manifest: Mutex::new(None) }
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The random source (UIDs for creates come from it too).
    pub fn rng(&self) -> &R {
        &self.rng
    }

    /// The policy in force.
    pub fn policy(&self) -> &VaultPolicy {
        &self.policy
    }

    fn with_session<T>(&self, f: impl FnOnce(&Option<Session>) -> T) -> Result<T> {
        let guard = self.session.lock().map_err(|_| CoreError::Storage("session lock poisoned".into()))?;
        Ok(f(&guard))
    }

    fn set_session(&self, session: Option<Session>) -> Result<()> {
        let mut guard = self.session.lock().map_err(|_| CoreError::Storage("session lock poisoned".into()))?;
        *guard = session; // the previous session drops here, zeroizing its keys
        Ok(())
    }

    /// True while a user is logged in (the data key is in memory).
    pub fn is_unlocked(&self) -> bool {
        self.with_session(|s| s.is_some()).unwrap_or(false)
    }

    /// Who is logged in.
    pub fn session_info(&self) -> Option<SessionInfo> {
        self.with_session(|s| {
            s.as_ref().map(|s| SessionInfo {
                username: s.username.clone(),
                mode: Some(s.mode),
                profile: s.profile.clone(),
            })
        })
        .ok()
        .flatten()
    }

    /// The password typed at the current login (memory only), for re-authenticating with the
    /// server later.
    pub fn session_password(&self) -> Option<Zeroizing<String>> {
        self.with_session(|s| s.as_ref().and_then(|s| s.password.clone())).ok().flatten()
    }

    /// Forgets every key and the password (logout, idle lock).
    pub fn lock(&self) {
        let _ = self.set_session(None);
        self.set_manifest(None);
    }

    /// Number of users registered on this device.
    pub async fn registered_users(&self) -> Result<u64> {
        self.store.count(StoreName::Users).await
    }

    /// True when `username` is in this device's register.
    pub async fn is_registered(&self, username: &str) -> Result<bool> {
        let Some(meta) = self.load_meta().await? else { return Ok(false) };
        Ok(self.store.get(StoreName::Users, &Self::user_key(&meta, username)).await?.is_some())
    }

    async fn load_meta(&self) -> Result<Option<VaultMeta>> {
        match self.store.get(StoreName::Meta, VAULT_META_KEY).await? {
            None => Ok(None),
            Some(bytes) => VaultMeta::decode(&bytes).map(Some),
        }
    }

    fn user_key(meta: &VaultMeta, username: &str) -> String {
        hex::encode(hmac_sha256(&meta.username_salt.0, &[b"user\0", username.as_bytes()].concat()))
    }

    fn wrap_aad(meta: &VaultMeta, user_key: &str) -> Vec<u8> {
        format!("users|dek|{}|{}", meta.vault_id, user_key).into_bytes()
    }

    fn profile_aad(meta: &VaultMeta, user_key: &str) -> Vec<u8> {
        format!("users|profile|{}|{}", meta.vault_id, user_key).into_bytes()
    }

    fn private_key_aad(meta: &VaultMeta, user_key: &str) -> Vec<u8> {
        format!("users|private-key|{}|{}", meta.vault_id, user_key).into_bytes()
    }

    fn rotated_key_aad(meta: &VaultMeta, user_key: &str) -> Vec<u8> {
        format!("users|rotated-dek|{}|{}", meta.vault_id, user_key).into_bytes()
    }

    fn lookup_key_aad(meta: &VaultMeta) -> Vec<u8> {
        format!("meta|lookup-key|{}", meta.vault_id).into_bytes()
    }

    /// The key that names records in storage: derived from the data key, or after a rotation
    /// the one sealed in the metadata (storage keys do not change with the data key).
    fn lookup_key_of(meta: &VaultMeta, data_key: &SecretKey) -> Result<SecretKey> {
        match &meta.sealed_lookup_key {
            Some(sealed) => data_key.open_key(&Self::lookup_key_aad(meta), &sealed.0),
            None => Ok(data_key.derive(LOOKUP_KEY_LABEL)),
        }
    }

    /// Her data key, opened with her key-encryption key: the one wrapped under it, or after a
    /// rotation the one sealed to her public key (opened with her private key).
    fn open_own_data_key(meta: &VaultMeta, user_key: &str, entry: &UserEntry, kek: &SecretKey) -> Result<SecretKey> {
        let Some(rotated) = &entry.rotated_data_key else {
            return kek.open_key(&Self::wrap_aad(meta, user_key), &entry.wrapped_data_key.0);
        };
        let wrapped = entry
            .wrapped_private_key
            .as_ref()
            .ok_or_else(|| CoreError::StorageCorrupt("a rotated key without a private key".into()))?;
        let private = PrivateKey::open_under(kek, &Self::private_key_aad(meta, user_key), &wrapped.0)?;
        private.open_key(&Self::rotated_key_aad(meta, user_key), &rotated.0)
    }

    /// A new key pair for her: (public key, private key sealed under her key-encryption key).
    fn new_key_pair(&self, meta: &VaultMeta, user_key: &str, kek: &SecretKey) -> Result<(Bytes, Bytes)> {
        let private = PrivateKey::generate(&self.rng)?;
        let wrapped = private.seal_under(kek, &self.rng, &Self::private_key_aad(meta, user_key))?;
        Ok((Bytes(private.public_key().to_vec()), Bytes(wrapped)))
    }

    fn key_check_aad(meta: &VaultMeta) -> Vec<u8> {
        format!("meta|key-check|{}", meta.vault_id).into_bytes()
    }

    fn check_data_key(meta: &VaultMeta, data_key: &SecretKey) -> Result<()> {
        let text = data_key.open(&Self::key_check_aad(meta), &meta.key_check.0)?;
        if text != KEY_CHECK_TEXT && text != KEY_CHECK_WITH_MANIFEST {
            return Err(CoreError::StorageCorrupt("key check text differs".into()));
        }
        Ok(())
    }

    async fn derive(&self, password: &str, kdf: &KdfParams) -> Result<PasswordSecrets> {
        kdf.validate()?;
        let master = self.kdf.pbkdf2_sha256(password.as_bytes(), &kdf.salt.0, kdf.iterations).await?;
        Ok(PasswordSecrets::from_master(&master))
    }

    /// Her password's secrets derived ahead, with the KDF parameters of her register entry,
    /// while the server checks the password (the engine runs both at once: an offline login
    /// does not wait for the failed request, an online one does not wait for the KDF after the
    /// server's answer). None when there is nothing to derive ahead: no vault, a user new to
    /// this device, a locked-out entry, or any failure (the login then derives as usual).
    pub(crate) async fn derive_ahead(&self, username: &str, password: &str, now_ms: i64) -> Option<DerivedAhead> {
        validate_credentials(username, password).ok()?;
        let meta = self.load_meta().await.ok()??;
        let bytes = self.store.get(StoreName::Users, &Self::user_key(&meta, username)).await.ok()??;
        let entry = UserEntry::decode(&bytes).ok()?;
        if entry.locked_until_ms > now_ms {
            return None;
        }
        let secrets = self.derive(password, &entry.kdf).await.ok()?;
        Some(DerivedAhead { kdf: entry.kdf, secrets })
    }

    /// The secrets of `password` under `kdf`: the ones derived ahead when they were derived
    /// with these parameters (taken: used once), else derived now.
    async fn derive_or_take(
        &self,
        password: &str,
        kdf: &KdfParams,
        ahead: &mut Option<DerivedAhead>,
    ) -> Result<PasswordSecrets> {
        match ahead.take() {
            Some(derived) if derived.kdf == *kdf => Ok(derived.secrets),
            _ => self.derive(password, kdf).await,
        }
    }

    fn new_kdf_params(&self) -> Result<KdfParams> {
        Ok(KdfParams {
            algorithm: PBKDF2_SHA256.to_string(),
            iterations: self.policy.iterations,
            salt: Bytes(random_array::<16>(&self.rng)?.to_vec()),
        })
    }

    fn open_session(
        &self,
        meta: &VaultMeta,
        username: &str,
        data_key: SecretKey,
        password: Option<&str>,
        profile: Option<UserProfile>,
        mode: LoginMode,
    ) -> Result<()> {
        let lookup_key = Self::lookup_key_of(meta, &data_key)?;
        self.set_session(Some(Session {
            username: username.to_string(),
            data_key: Arc::new(data_key),
            lookup_key,
            password: password.map(|p| Zeroizing::new(p.to_string())),
            profile,
            mode,
        }))
    }

    fn session_data_key(&self) -> Option<Arc<SecretKey>> {
        self.with_session(|s| s.as_ref().map(|s| s.data_key.clone())).ok().flatten()
    }

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

    /// This vault's identifier (None before the first login on this device).
    pub async fn vault_id(&self) -> Result<Option<String>> {
        Ok(self.load_meta().await?.map(|m| m.vault_id))
    }

    /// True when `key` is this vault's current data key (a key from the server escrow may be
    /// one a removal has rotated away since).
    pub async fn is_this_vaults_key(&self, key: &SecretKey) -> Result<bool> {
        let meta = self.load_meta().await?.ok_or(CoreError::VaultLocked)?;
        Ok(Self::check_data_key(&meta, key).is_ok())
    }

    /// The data key of the open session, for handing over to the service worker.
    pub fn export_data_key(&self) -> Result<Zeroizing<[u8; 32]>> {
        self.session_data_key().map(|k| Zeroizing::new(*k.expose())).ok_or(CoreError::VaultLocked)
    }

    /// Opens a session from a data key handed over by an unlocked page (service worker side).
    /// The key must be this vault's.
    pub async fn unlock_with_data_key(&self, username: &str, key: &[u8], password: Option<&str>) -> Result<()> {
        let data_key = SecretKey::from_slice(key)?;
        let meta = self.load_meta().await?.ok_or(CoreError::VaultLocked)?;
        Self::check_data_key(&meta, &data_key)
            .map_err(|_| CoreError::BadInput("the handed-over key is not this vault's".into()))?;
        // The profile comes from the register when the user is registered here; the password,
        // when handed over, stays in memory only (to send the outbox).
        let user_key = Self::user_key(&meta, username);
        let profile = match self.store.get(StoreName::Users, &user_key).await? {
            Some(bytes) => {
                let entry = UserEntry::decode(&bytes)?;
                data_key
                    .open(&Self::profile_aad(&meta, &user_key), &entry.sealed_profile.0)
                    .ok()
                    .and_then(|b| SealedUserFacts::decode(&b, entry.last_online_login_ms).ok())
                    .map(|facts| facts.profile)
            }
            None => None,
        };
        self.open_session(&meta, username, data_key, password, profile, LoginMode::Offline)
    }

    fn record_address(&self, store: StoreName, id: &str) -> Result<(Arc<SecretKey>, String)> {
        if id.is_empty() || id.len() > 4096 {
            return Err(CoreError::BadInput("record id must be 1 to 4096 bytes".into()));
        }
        self.with_session(|s| {
            s.as_ref()
                .map(|s| (s.data_key.clone(), s.lookup_key.keyed_hash_hex(&[store.as_str().as_bytes(), id.as_bytes()])))
        })?
        .ok_or(CoreError::VaultLocked)
    }

    fn record_aad(store: StoreName, key: &str) -> Vec<u8> {
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
    async fn seal_pending_with(&self, data_key: &SecretKey, mut batch: WriteBatch) -> Result<WriteBatch> {
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
    async fn get_current(&self, data_key: &SecretKey, store: StoreName, key: &str) -> Result<Option<Vec<u8>>> {
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
        let mut out = Vec::with_capacity(keys.len());
        let mut unknown = Vec::new();
        for key in keys {
            match manifest.fingerprint_of(&data_key, store, &key)? {
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
        let opened_values = self.open_values(&data_key, &sealed).await;
        for ((key, sealed), opened) in present.iter().zip(opened_values) {
            let key = key.clone();
            let opened = match opened {
                Err(e) => Err(e),
                Ok(plain) => match manifest.check(&data_key, store, &key, sealed) {
                    Ok(()) => Ok((plain, manifest::fingerprint(store, sealed).ok())),
                    // Checked again against what is stored now (its fingerprint not kept);
                    // gone meanwhile: left out.
                    Err(_) => match self.get_current(&data_key, store, &key).await {
                        Ok(None) => continue,
                        Ok(Some(plain)) => Ok((plain, None)),
                        Err(e) => Err(e),
                    },
                },
            };
            out.push((key, Stored::Opened(opened)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Opens the shards `wanted` of `manifest` by the platform's AES-GCM when there are many
    /// (an unlock's first read of every value opens all 4096); any it did not open are opened
    /// by [`Manifest::open_shards`] afterwards.
    async fn open_shards_at_once(&self, data_key: &SecretKey, manifest: &Manifest, wanted: &[usize]) {
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
    async fn open_values(&self, data_key: &SecretKey, values: &[(Vec<u8>, &[u8])]) -> Vec<Result<Vec<u8>>> {
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
    async fn commit_with(&self, data_key: &SecretKey, batch: WriteBatch) -> Result<()> {
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

    /// The first manifest stored turns the key check into one that says the vault has a
    /// manifest (in the same batch), so that deleting the manifest later is not taken for a
    /// vault written before it.
    async fn mark_manifest_in_key_check(&self, data_key: &SecretKey, batch: WriteBatch) -> Result<WriteBatch> {
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

    fn cached_manifest(&self) -> Option<Manifest> {
        self.manifest.lock().ok().and_then(|m| m.clone())
    }

    fn set_manifest(&self, manifest: Option<Manifest>) {
        if let Ok(mut m) = self.manifest.lock() {
            *m = manifest;
        }
    }

    /// The manifest: this context's copy, or the stored root (its shards are read when needed:
    /// [`Vault::manifest_for`]).
    async fn manifest(&self, data_key: &SecretKey) -> Result<Manifest> {
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
    async fn manifest_for(&self, data_key: &SecretKey, keys: Option<&[&str]>) -> Result<Manifest> {
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
    async fn reload_manifest(&self, data_key: &SecretKey) -> Result<Manifest> {
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
    async fn rotated_away(&self, data_key: &SecretKey) -> Option<CoreError> {
        let meta = self.load_meta().await.ok()??;
        if Self::check_data_key(&meta, data_key).is_ok() {
            return None;
        }
        if self.session_data_key().is_some_and(|k| constant_time_eq(k.expose(), data_key.expose())) {
            self.lock();
        }
        Some(CoreError::VaultLocked)
    }

    async fn build_manifest(&self, data_key: &SecretKey) -> Result<Manifest> {
        let mut manifest = Manifest::empty();
        let Some(meta) = self.load_meta().await? else { return Ok(manifest) };
        if data_key.open(&Self::key_check_aad(&meta), &meta.key_check.0)? == KEY_CHECK_WITH_MANIFEST {
            return Err(CoreError::StorageCorrupt("the vault's sealed manifest is missing".into()));
        }
        for store in [StoreName::Users, StoreName::Records, StoreName::Outbox, StoreName::Cache, StoreName::Index] {
            for (key, value) in self.store.list(store).await? {
                // A value that cannot be ours (too short, a register entry that does not
                // parse) stays out, and so stays STORAGE_CORRUPT.
                let _ = manifest.insert(data_key, store, &key, &value);
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
    async fn refresh_manifest(&self, data_key: &SecretKey) -> Result<Manifest> {
        match self.refresh_manifest_under(data_key).await {
            Ok(manifest) => Ok(manifest),
            Err(e) => Err(self.rotated_away(data_key).await.unwrap_or(e)),
        }
    }

    async fn refresh_manifest_under(&self, data_key: &SecretKey) -> Result<Manifest> {
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
    async fn check_current(&self, data_key: &SecretKey, store: StoreName, key: &str, value: &[u8]) -> Result<()> {
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

/// One value of [`Vault::open_all_except`].
#[derive(Debug)]
pub enum Stored {
    /// The caller holds its plaintext: the manifest's fingerprint of its current envelope.
    Known(manifest::Fingerprint),
    /// Read and opened: the plaintext and its envelope's fingerprint (None when it changed
    /// while being read and was read again), or why it could not be opened.
    Opened(Result<(Vec<u8>, Option<manifest::Fingerprint>)>),
}

/// From this many values at once, the vault asks the platform's AES-GCM to open them (a
/// WebCrypto call costs more than opening a small value in Rust).
const BULK_OPEN_MIN: usize = 4;

/// How often a commit that lost the race against another writer is tried again.
const MAX_COMMIT_ATTEMPTS: u32 = 16;

/// How far back a clock may be corrected (a network time sync) without counting as moved back.
const CLOCK_SLACK_MS: i64 = 60 * 60 * 1000;

/// What a register entry seals under the data key beside the user's profile: the times that
/// bound offline login. Nobody without a registered password can change them (the plain
/// `lastOnlineLoginMs` of the entry can be edited by anyone with the storage).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SealedUserFacts {
    profile: UserProfile,
    /// Her last online login (the server accepted her password), ms since epoch.
    last_online_login_ms: i64,
    /// The latest time this device's clock showed at one of her logins.
    clock_high_water_ms: i64,
    /// The server refused the password of this entry: the sealed copy of
    /// [`UserEntry::refused_by_server`], which anyone with the storage could edit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    refused_by_server: bool,
}

impl SealedUserFacts {
    fn fresh(profile: &UserProfile, now_ms: i64) -> Self {
        Self {
            profile: profile.clone(),
            last_online_login_ms: now_ms,
            clock_high_water_ms: now_ms,
            refused_by_server: false,
        }
    }

    fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| CoreError::BadInput(e.to_string()))
    }

    /// Reads the sealed bytes; entries written before the times were sealed hold the profile
    /// alone, and their plain last online login stands in (the next online login seals it).
    fn decode(bytes: &[u8], plain_last_online_login_ms: i64) -> Result<Self> {
        if let Ok(facts) = serde_json::from_slice::<SealedUserFacts>(bytes) {
            return Ok(facts);
        }
        let profile: UserProfile = serde_json::from_slice(bytes)
            .map_err(|e| CoreError::StorageCorrupt(format!("profile does not parse: {e}")))?;
        Ok(Self {
            profile,
            last_online_login_ms: plain_last_online_login_ms,
            clock_high_water_ms: plain_last_online_login_ms,
            refused_by_server: false,
        })
    }
}

/// Refuses usernames and passwords that cannot be right before any work is done.
pub fn validate_credentials(username: &str, password: &str) -> Result<()> {
    validate_username(username)?;
    if password.is_empty() {
        return Err(CoreError::BadInput("the password is empty".into()));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(CoreError::BadInput(format!("the password is longer than {MAX_PASSWORD_BYTES} bytes")));
    }
    Ok(())
}

/// Refuses a username that cannot be right.
pub fn validate_username(username: &str) -> Result<()> {
    if username.trim().is_empty() {
        return Err(CoreError::BadInput("the username is empty".into()));
    }
    if username.chars().count() > MAX_USERNAME_LEN {
        return Err(CoreError::BadInput(format!("the username is longer than {MAX_USERNAME_LEN} characters")));
    }
    if username.chars().any(|c| c.is_control() || c == ':') {
        return Err(CoreError::BadInput("the username contains a control character or ':'".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is sealed beside a register entry (her profile, last online login, clock high
    /// water mark, a refusal by the server): a change here locks every nurse out of her
    /// offline login.
    #[test]
    fn the_sealed_user_facts_format_is_stable() {
        let facts = SealedUserFacts {
            profile: UserProfile {
                id: "xE7jOejl9FI".into(),
                username: "nurse1".into(),
                display_name: "Amal Haddad".into(),
                organisation_units: vec![],
                tei_search_organisation_units: vec![],
                authorities: vec![],
            },
            last_online_login_ms: 1_780_000_000_000,
            clock_high_water_ms: 1_780_000_500_000,
            refused_by_server: true,
        };
        insta::assert_snapshot!("sealed_user_facts", serde_json::to_string_pretty(&facts).unwrap());
        let before_refusals = r#"{"profile":{"id":"x","username":"nurse1","displayName":"A"},"lastOnlineLoginMs":1,"clockHighWaterMs":2}"#;
        assert!(!serde_json::from_str::<SealedUserFacts>(before_refusals).unwrap().refused_by_server);
    }
}
