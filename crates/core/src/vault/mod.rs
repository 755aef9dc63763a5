//! The vault: one random data key per DHIS2 server, wrapped under each registered user's
//! password-derived key; the user register with offline login, lockout and credential age;
//! and sealed records addressed by keyed hashes. Keys live only in the in-memory session and
//! are zeroized on logout.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

mod login;
mod manifest_cache;
mod records;
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

/// What the manifest said of the values under a prefix of storage keys when
/// [`Vault::open_under_except`] read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixState {
    /// The prefix (hex).
    pub prefix: String,
    /// The versions of the manifest's shards under it, in order. Any write of a value under
    /// the prefix (in any store) raises one, so while they stay equal, so do its values.
    pub versions: Vec<u32>,
    /// How many values of the store the manifest holds under it.
    pub tracked: usize,
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
            profile: serde_json::from_str(r#"{"id":"xE7jOejl9FI","username":"nurse1","displayName":"Amal Haddad"}"#)
                .unwrap(),
            last_online_login_ms: 1_780_000_000_000,
            clock_high_water_ms: 1_780_000_500_000,
            refused_by_server: true,
        };
        insta::assert_snapshot!("sealed_user_facts", serde_json::to_string_pretty(&facts).unwrap());
        let before_refusals = r#"{"profile":{"id":"x","username":"nurse1","displayName":"A"},"lastOnlineLoginMs":1,"clockHighWaterMs":2}"#;
        assert!(!serde_json::from_str::<SealedUserFacts>(before_refusals).unwrap().refused_by_server);
    }
}
