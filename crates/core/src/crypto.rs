//! Cryptographic building blocks: 256-bit secret keys that zeroize themselves, the versioned
//! AES-256-GCM envelope every sealed value uses, key derivation from a password master secret,
//! and keyed hashes for lookup keys. Nothing here touches storage.

use std::sync::OnceLock;

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{
    error::{CoreError, Result},
    random::{random_array, RandomSource},
};

/// Envelope format version written by this build. Readers reject any other.
pub const ENVELOPE_VERSION: u8 = 1;
/// AES-GCM nonce length in bytes (96 bits).
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Smallest valid envelope: version + nonce + tag.
pub const MIN_ENVELOPE_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

type HmacSha256 = Hmac<Sha256>;

/// A 256-bit secret key. Zeroized when dropped; never printed.
///
/// The bytes live in one heap allocation for the key's whole life, so moving a key (into a
/// session, out of a function, across an `await`) copies a pointer, never the bytes; the
/// AES-256-GCM cipher (its key schedule and GHASH key) is built at the first seal or open and
/// kept beside them, and is zeroized with them (aes-gcm, aes and polyval are built with
/// `zeroize`).
pub struct SecretKey {
    bytes: Box<[u8; 32]>,
    cipher: OnceLock<Box<Aes256Gcm>>,
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl ZeroizeOnDrop for SecretKey {}

impl Clone for SecretKey {
    fn clone(&self) -> Self {
        Self::filled(|out| out.copy_from_slice(&self.bytes[..]))
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A key whose bytes `fill` writes in place (they are never copied elsewhere).
    pub fn filled(fill: impl FnOnce(&mut [u8; 32])) -> Self {
        let mut key = Self { bytes: Box::new([0u8; 32]), cipher: OnceLock::new() };
        fill(&mut key.bytes);
        key
    }

    /// [`SecretKey::filled`] with a fill that may fail (nothing of it is kept then).
    pub fn try_filled(fill: impl FnOnce(&mut [u8; 32]) -> Result<()>) -> Result<Self> {
        let mut key = Self::filled(|_| ());
        fill(&mut key.bytes)?;
        Ok(key)
    }

    /// A fresh random key.
    pub fn generate(rng: &impl RandomSource) -> Result<Self> {
        Self::try_filled(|out| rng.fill(&mut out[..]))
    }

    /// Takes ownership of raw key bytes (the caller's array is a copy this key cannot wipe:
    /// prefer [`SecretKey::filled`]).
    pub fn from_bytes(mut bytes: [u8; 32]) -> Self {
        let key = Self::filled(|out| out.copy_from_slice(&bytes));
        bytes.zeroize();
        key
    }

    /// Builds a key from a slice, which must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 32 {
            return Err(CoreError::BadInput(format!("a key must be 32 bytes, got {}", bytes.len())));
        }
        Ok(Self::filled(|out| out.copy_from_slice(bytes)))
    }

    /// The raw bytes (for wrapping under a user's key).
    pub fn expose(&self) -> &[u8; 32] {
        &self.bytes
    }

    fn cipher(&self) -> Result<&Aes256Gcm> {
        if let Some(cipher) = self.cipher.get() {
            return Ok(cipher);
        }
        let cipher = Aes256Gcm::new_from_slice(&self.bytes[..]).map_err(|e| CoreError::Crypto(e.to_string()))?;
        Ok(self.cipher.get_or_init(|| Box::new(cipher)))
    }

    /// Derives an independent subkey: HMAC-SHA256(self, label).
    pub fn derive(&self, label: &str) -> SecretKey {
        SecretKey::filled(|out| hmac_sha256_into(&self.bytes[..], label.as_bytes(), out))
    }

    /// A keyed hash of `parts` under this key, hex encoded. Parts are length-prefixed so that
    /// ("ab","c") and ("a","bc") differ.
    #[allow(clippy::expect_used, reason = "HMAC accepts keys of any length")]
    pub fn keyed_hash_hex(&self, parts: &[&[u8]]) -> String {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.bytes[..]).expect("HMAC accepts any key length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Seals `plaintext` into a versioned envelope with a fresh nonce, bound to `aad`.
    pub fn seal(&self, rng: &impl RandomSource, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let nonce: [u8; NONCE_LEN] = random_array(rng)?;
        self.seal_with_nonce(nonce, aad, plaintext)
    }

    /// [`SecretKey::seal`] with a nonce drawn by the caller (the vault draws the nonces of a
    /// whole batch, then seals it by the platform's AES-GCM or by this).
    pub fn seal_with_nonce(&self, nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let full_aad = envelope_aad(ENVELOPE_VERSION, aad);
        let ciphertext = self
            .cipher()?
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &full_aad })
            .map_err(|_| CoreError::Crypto("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens an envelope made by [`SecretKey::seal`] with the same `aad`. Any change to the
    /// bytes, the key or the associated data gives [`CoreError::StorageCorrupt`].
    pub fn open(&self, aad: &[u8], envelope: &[u8]) -> Result<Vec<u8>> {
        let parts = envelope_parts(aad, envelope)?;
        self.cipher()?
            .decrypt(Nonce::from_slice(parts.nonce), Payload { msg: parts.ciphertext, aad: &parts.aad })
            .map_err(|_| CoreError::StorageCorrupt("authentication failed".into()))
    }

    /// Opens an envelope that holds a key (a wrapped data key): the plaintext is zeroized once
    /// the key is made.
    pub fn open_key(&self, aad: &[u8], envelope: &[u8]) -> Result<SecretKey> {
        let plain = Zeroizing::new(self.open(aad, envelope)?);
        SecretKey::from_slice(&plain)
    }
}

/// An envelope split for an AES-256-GCM outside this crate (the browser's WebCrypto, see
/// [`crate::kdf::PasswordKdf::open_many`]): what [`SecretKey::open`] hands its cipher.
#[derive(Debug)]
pub struct EnvelopeParts<'a> {
    /// The 12-byte nonce.
    pub nonce: &'a [u8],
    /// The ciphertext followed by its 16-byte tag.
    pub ciphertext: &'a [u8],
    /// The associated data as authenticated (the envelope's version included).
    pub aad: Vec<u8>,
}

/// Splits an envelope sealed with associated data `aad`; a damaged header is
/// [`CoreError::StorageCorrupt`].
pub fn envelope_parts<'a>(aad: &[u8], envelope: &'a [u8]) -> Result<EnvelopeParts<'a>> {
    if envelope.len() < MIN_ENVELOPE_LEN {
        return Err(CoreError::StorageCorrupt(format!("envelope too short ({} bytes)", envelope.len())));
    }
    let version = envelope[0];
    if version != ENVELOPE_VERSION {
        return Err(CoreError::StorageCorrupt(format!("unknown envelope version {version}")));
    }
    let (nonce, ciphertext) = envelope[1..].split_at(NONCE_LEN);
    Ok(EnvelopeParts { nonce, ciphertext, aad: envelope_aad(version, aad) })
}

/// What an AES-256-GCM outside this crate seals for [`SecretKey::seal_with_nonce`] (see
/// [`crate::kdf::PasswordKdf::seal_many`]): its output (ciphertext and 16-byte tag) goes after
/// the version and the nonce ([`envelope_of`]).
#[derive(Debug)]
pub struct SealInput<'a> {
    /// The 12-byte nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The associated data as authenticated (the envelope's version included).
    pub aad: Vec<u8>,
    /// What is sealed.
    pub plaintext: &'a [u8],
}

impl<'a> SealInput<'a> {
    /// The input that seals `plaintext` with associated data `aad` under `nonce`.
    pub fn new(nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &'a [u8]) -> Self {
        Self { nonce, aad: envelope_aad(ENVELOPE_VERSION, aad), plaintext }
    }
}

/// The envelope of a ciphertext (with its tag) made from `input` outside this crate; None when
/// its length is not the plaintext's plus the tag.
pub fn envelope_of(input: &SealInput<'_>, ciphertext: &[u8]) -> Option<Vec<u8>> {
    if ciphertext.len() != input.plaintext.len() + TAG_LEN {
        return None;
    }
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&input.nonce);
    out.extend_from_slice(ciphertext);
    Some(out)
}

/// Length of what [`SealInput::aad`] and [`EnvelopeParts::aad`] hold before the caller's
/// associated data: the domain and the version.
pub const ENVELOPE_AAD_PREFIX_LEN: usize = AAD_DOMAIN.len() + 1;
const AAD_DOMAIN: &[u8] = b"tracker-offline";

/// The version byte is authenticated too, so a downgrade of the header is detected.
fn envelope_aad(version: u8, aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(aad.len() + 20);
    full.extend_from_slice(AAD_DOMAIN);
    full.push(version);
    full.extend_from_slice(aad);
    full
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hmac_sha256_into(key, data, &mut out);
    out
}

/// HMAC-SHA256 of `data` under `key`, written into `out`.
#[allow(clippy::expect_used, reason = "HMAC accepts keys of any length")]
fn hmac_sha256_into(key: &[u8], data: &[u8], out: &mut [u8; 32]) {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    let mut tag: [u8; 32] = mac.finalize().into_bytes().into();
    out.copy_from_slice(&tag);
    tag.zeroize();
}

/// Constant-time equality of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The two secrets derived from a user's password master secret (the PBKDF2 output).
pub struct PasswordSecrets {
    /// Wraps the vault's data key for this user.
    pub key_encryption_key: SecretKey,
    /// Stored; compared in constant time at offline login.
    pub verifier: [u8; 32],
}

impl PasswordSecrets {
    /// Splits a PBKDF2 master secret into a key-encryption key and a verifier with independent
    /// HMAC labels, so one PBKDF2 block serves both and neither reveals the other.
    pub fn from_master(master: &SecretKey) -> Self {
        Self {
            key_encryption_key: master.derive("tracker-offline/kek/v1"),
            verifier: hmac_sha256(master.expose(), b"tracker-offline/verifier/v1"),
        }
    }
}

impl Drop for PasswordSecrets {
    fn drop(&mut self) {
        self.verifier.zeroize();
    }
}

/// PBKDF2-HMAC-SHA256 in pure Rust (the reference; the browser may use WebCrypto instead).
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> SecretKey {
    SecretKey::filled(|out| pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out[..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::DeterministicRandom;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 7914 section 11 (PBKDF2-HMAC-SHA256 test vectors).
    #[test]
    fn pbkdf2_sha256_known_answers() {
        let out = pbkdf2_sha256(b"passwd", b"salt", 1);
        // RFC 7914 gives 64 bytes; the first 32 are what a 32-byte output yields.
        assert_eq!(hex::encode(out.expose()), "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
        let mut long = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"Password", b"NaCl", 80000, &mut long);
        assert_eq!(
            hex::encode(long),
            "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56\
             a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"
        );
    }

    /// Published PBKDF2-HMAC-SHA256 vector (c=4096, 32 bytes), as used by many test suites.
    #[test]
    fn pbkdf2_sha256_4096_iterations() {
        let out = pbkdf2_sha256(b"password", b"salt", 4096);
        assert_eq!(hex::encode(out.expose()), "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a");
    }

    /// NIST GCM test vectors (McGrew & Viega, test cases 14 and 16), AES-256.
    #[test]
    fn aes256_gcm_known_answers() {
        let key = [0u8; 32];
        let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
        let ct = cipher.encrypt(Nonce::from_slice(&[0u8; 12]), Payload { msg: &[0u8; 16], aad: &[] }).unwrap();
        assert_eq!(hex::encode(ct), "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");

        let key = unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let nonce = unhex("cafebabefacedbaddecaf888");
        let pt = unhex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
        let ct = cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: &pt, aad: &aad }).unwrap();
        assert_eq!(
            hex::encode(ct),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
             76fc6ece0f4e1768cddf8853bb2d551b"
        );
    }

    #[test]
    fn envelope_round_trip_and_fresh_nonce() {
        let rng = DeterministicRandom::new(1);
        let key = SecretKey::generate(&rng).unwrap();
        let a = key.seal(&rng, b"records|k1", b"hello").unwrap();
        let b = key.seal(&rng, b"records|k1", b"hello").unwrap();
        assert_ne!(a, b, "same plaintext must not give the same envelope");
        assert_eq!(a[0], ENVELOPE_VERSION);
        assert_eq!(a.len(), MIN_ENVELOPE_LEN + 5);
        assert_eq!(key.open(b"records|k1", &a).unwrap(), b"hello");
    }

    #[test]
    fn envelope_detects_every_single_byte_change() {
        let rng = DeterministicRandom::new(2);
        let key = SecretKey::generate(&rng).unwrap();
        let sealed = key.seal(&rng, b"aad", b"some record").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let err = key.open(b"aad", &bad).unwrap_err();
            assert_eq!(err.code(), "STORAGE_CORRUPT", "byte {i}");
        }
        assert_eq!(key.open(b"other aad", &sealed).unwrap_err().code(), "STORAGE_CORRUPT");
        let other = SecretKey::generate(&rng).unwrap();
        assert_eq!(other.open(b"aad", &sealed).unwrap_err().code(), "STORAGE_CORRUPT");
        assert_eq!(key.open(b"aad", &sealed[..10]).unwrap_err().code(), "STORAGE_CORRUPT");
        assert_eq!(key.open(b"aad", &[]).unwrap_err().code(), "STORAGE_CORRUPT");
    }

    #[test]
    fn envelope_format_snapshot() {
        let key = SecretKey::from_bytes([7u8; 32]);
        let sealed = key.seal_with_nonce([9u8; 12], b"records|abc", b"{\"a\":1}").unwrap();
        assert_eq!(hex::encode(&sealed), "01090909090909090909090909".to_string() + &hex::encode(&sealed[13..]));
        // The full bytes are pinned: a change here breaks every stored value.
        assert_eq!(hex::encode(&sealed), ENVELOPE_SNAPSHOT);
    }
    const ENVELOPE_SNAPSHOT: &str = "010909090909090909090909095ca7e5b684c1bc1674748bd0dd878e12a46c7a9c7af18c";

    #[test]
    fn keyed_hash_is_length_prefixed() {
        let key = SecretKey::from_bytes([1u8; 32]);
        assert_ne!(key.keyed_hash_hex(&[b"ab", b"c"]), key.keyed_hash_hex(&[b"a", b"bc"]));
        assert_eq!(key.keyed_hash_hex(&[b"x"]).len(), 64);
    }

    #[test]
    fn password_secrets_are_independent() {
        let master = pbkdf2_sha256(b"Nurse1!clinic", b"0123456789abcdef", 10);
        let s = PasswordSecrets::from_master(&master);
        assert_ne!(s.key_encryption_key.expose(), &s.verifier);
        assert_ne!(s.key_encryption_key.expose(), master.expose());
    }
}
