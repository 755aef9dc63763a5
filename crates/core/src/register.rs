//! Persisted formats of the vault: its metadata and the user register. These are stored as
//! JSON; secret parts are sealed envelopes (base64). Every struct here has a snapshot test, as
//! a format change breaks every device in the field.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde::{Deserialize, Serialize};

use crate::{
    error::{CoreError, Result},
    kdf::{MAX_ITERATIONS, MIN_ITERATIONS, PBKDF2_SHA256},
};

/// Format version of [`VaultMeta`] and [`UserEntry`] written by this build.
pub const REGISTER_FORMAT: u32 = 1;
/// Key of the vault metadata in the `meta` store.
pub const VAULT_META_KEY: &str = "vault";

/// Bytes as base64 in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes()).map(Bytes).map_err(serde::de::Error::custom)
    }
}

/// One vault per DHIS2 server on this origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultMeta {
    /// [`REGISTER_FORMAT`].
    pub format: u32,
    /// Random identifier, bound into every wrapped key.
    pub vault_id: String,
    /// Salt of the keyed hash that turns a username into its register key.
    pub username_salt: Bytes,
    /// A known text sealed under the data key: proves a handed-over key is this vault's.
    pub key_check: Bytes,
    /// When the vault was created (ms since epoch).
    pub created_at_ms: i64,
    /// After a rotation of the data key (a user removed), the key that names records in
    /// storage, sealed under the current data key: storage keys stay as they were. Before any
    /// rotation it is derived from the data key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_lookup_key: Option<Bytes>,
}

/// Parameters of the password KDF, stored per user so they can be raised later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KdfParams {
    /// Always [`PBKDF2_SHA256`] today.
    pub algorithm: String,
    /// Iteration count.
    pub iterations: u32,
    /// Random salt, 16 bytes or more.
    pub salt: Bytes,
}

impl KdfParams {
    /// Refuses parameters this build cannot or must not use.
    pub fn validate(&self) -> Result<()> {
        if self.algorithm != PBKDF2_SHA256 {
            return Err(CoreError::StorageCorrupt(format!("unknown KDF '{}'", self.algorithm)));
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&self.iterations) {
            return Err(CoreError::StorageCorrupt(format!("KDF iteration count {} out of range", self.iterations)));
        }
        if self.salt.0.len() < 16 {
            return Err(CoreError::StorageCorrupt("KDF salt shorter than 128 bits".into()));
        }
        Ok(())
    }
}

/// A user who has logged in online on this device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEntry {
    /// [`REGISTER_FORMAT`].
    pub format: u32,
    /// How the password becomes a master secret.
    pub kdf: KdfParams,
    /// HMAC of the master secret; compared in constant time.
    pub verifier: Bytes,
    /// The vault's data key sealed under this user's key-encryption key.
    pub wrapped_data_key: Bytes,
    /// The [`crate::profile::UserProfile`] as JSON, sealed under the data key.
    pub sealed_profile: Bytes,
    /// Last successful online login (ms since epoch): bounds how long offline login works.
    pub last_online_login_ms: i64,
    /// Consecutive failed offline attempts.
    pub failed_attempts: u32,
    /// No offline attempt is checked before this time (ms since epoch).
    pub locked_until_ms: i64,
    /// The server refused the password this entry holds (and has not accepted it since). While
    /// set, offline login refuses it: a password revoked on the server does not keep opening
    /// the clinic's data on this device. The wrapped key stays, so an online login the server
    /// accepts with the same password opens it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused_by_server: bool,
    /// Her X25519 public key ([`crate::keypair`]): a data key rotated while she is away is
    /// sealed to it. Entries written before key pairs have none until her next login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Bytes>,
    /// Her private key, sealed under her key-encryption key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_private_key: Option<Bytes>,
    /// The data key after a rotation, sealed to her public key by the user who removed a
    /// colleague. It replaces `wrapped_data_key` until her next login wraps it under her
    /// password again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_data_key: Option<Bytes>,
}

impl UserEntry {
    /// Parses and validates a stored entry.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let entry: UserEntry = serde_json::from_slice(bytes)
            .map_err(|e| CoreError::StorageCorrupt(format!("user entry does not parse: {e}")))?;
        if entry.format != REGISTER_FORMAT {
            return Err(CoreError::StorageCorrupt(format!("unknown user entry format {}", entry.format)));
        }
        entry.kdf.validate()?;
        if entry.verifier.0.len() != 32 {
            return Err(CoreError::StorageCorrupt("verifier has the wrong length".into()));
        }
        Ok(entry)
    }

    /// Serialises for storage.
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| CoreError::Storage(e.to_string()))
    }
}

impl VaultMeta {
    /// Parses and validates stored metadata.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let meta: VaultMeta = serde_json::from_slice(bytes)
            .map_err(|e| CoreError::StorageCorrupt(format!("vault metadata does not parse: {e}")))?;
        if meta.format != REGISTER_FORMAT {
            return Err(CoreError::StorageCorrupt(format!("unknown vault format {}", meta.format)));
        }
        if meta.username_salt.0.len() < 16 {
            return Err(CoreError::StorageCorrupt("username salt too short".into()));
        }
        Ok(meta)
    }

    /// Serialises for storage.
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| CoreError::Storage(e.to_string()))
    }
}
