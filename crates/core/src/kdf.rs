//! Password key derivation behind a trait, so the browser can use WebCrypto's native PBKDF2
//! (about 3x faster than Rust compiled to wasm) while the pure-Rust one stays the reference.

use crate::{
    crypto::{pbkdf2_sha256, EnvelopeParts, SealInput, SecretKey},
    error::{CoreError, Result},
};

/// The only algorithm the register writes today; stored per user so it can change later.
pub const PBKDF2_SHA256: &str = "pbkdf2-hmac-sha256";
/// Default iteration count (OWASP 2023 recommendation for PBKDF2-HMAC-SHA256).
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// Lowest iteration count the register accepts from storage (guards against a downgrade).
pub const MIN_ITERATIONS: u32 = 1_000;
/// Highest iteration count accepted (guards against a stored value that would hang login).
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// PBKDF2-HMAC-SHA256 producing a 32-byte master secret.
#[allow(async_fn_in_trait, reason = "used generically, never as a trait object")]
pub trait PasswordKdf {
    /// Derives 32 bytes from `password` and `salt` with `iterations` rounds.
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<SecretKey>;

    /// Opens many envelopes under `key` at once with the platform's own AES-256-GCM, where it
    /// has one (a browser's WebCrypto runs AES in hardware; the Rust AES-GCM compiled to wasm
    /// runs it in software, the most of an unlock's and a download's time: issue 17). Each
    /// result must be what [`SecretKey::open`] gives for that envelope (the browser tests prove
    /// it). None, the default: there is none here, and the vault opens them itself.
    async fn open_many(&self, _key: &SecretKey, _envelopes: &[EnvelopeParts<'_>]) -> Option<Vec<Result<Vec<u8>>>> {
        None
    }

    /// Seals many values under `key` at once with the platform's own AES-256-GCM: for each
    /// input, the ciphertext followed by its tag, what [`SecretKey::seal_with_nonce`] puts
    /// after the version and the nonce. None, the default: the vault seals them itself.
    async fn seal_many(&self, _key: &SecretKey, _inputs: &[SealInput<'_>]) -> Option<Vec<Result<Vec<u8>>>> {
        None
    }
}

/// The pure-Rust implementation (the `pbkdf2` crate).
#[derive(Debug, Default, Clone, Copy)]
pub struct RustPbkdf2;

impl PasswordKdf for RustPbkdf2 {
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<SecretKey> {
        if iterations == 0 {
            return Err(CoreError::BadInput("PBKDF2 needs at least one iteration".into()));
        }
        Ok(pbkdf2_sha256(password, salt, iterations))
    }
}
