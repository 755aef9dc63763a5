//! Per-user X25519 key pairs, so that a data key rotated while a user is away can be handed to
//! her without her password: the rotation seals the new key to her public key, and her next
//! login opens it with her private key, which is stored sealed under her password-derived key.
//!
//! A value sealed to a public key is `SEALED_TO_VERSION || ephemeral public key (32) ||` an
//! ordinary [`SecretKey`] envelope under HMAC-SHA256(X25519(ephemeral, recipient), label ||
//! ephemeral public || recipient public) (the construction of libsodium's sealed boxes, with
//! the envelope every other value uses). A fresh ephemeral key per value; a shared secret
//! that is all zeros (a low-order public key) is refused.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::{
    crypto::{hmac_sha256, SecretKey},
    error::{CoreError, Result},
    random::{random_array, RandomSource},
};

/// Format byte of a value sealed to a public key.
pub const SEALED_TO_VERSION: u8 = 1;
const WRAP_LABEL: &[u8] = b"tracker-offline/sealed-to-public-key/v1";

/// A user's private key. Zeroized when dropped (x25519-dalek's `zeroize`).
pub struct PrivateKey(StaticSecret);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

impl PrivateKey {
    /// A fresh random private key.
    pub fn generate(rng: &impl RandomSource) -> Result<Self> {
        let bytes = Zeroizing::new(random_array::<32>(rng)?);
        Ok(Self(StaticSecret::from(*bytes)))
    }

    /// Its public key.
    pub fn public_key(&self) -> [u8; 32] {
        PublicKey::from(&self.0).to_bytes()
    }

    /// Its bytes sealed under `key` (a user's key-encryption key), bound to `aad`.
    pub fn seal_under(&self, key: &SecretKey, rng: &impl RandomSource, aad: &[u8]) -> Result<Vec<u8>> {
        let bytes = Zeroizing::new(self.0.to_bytes());
        key.seal(rng, aad, &bytes[..])
    }

    /// Opens a private key sealed by [`PrivateKey::seal_under`].
    pub fn open_under(key: &SecretKey, aad: &[u8], envelope: &[u8]) -> Result<Self> {
        let plain = Zeroizing::new(key.open(aad, envelope)?);
        let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(
            plain
                .as_slice()
                .try_into()
                .map_err(|_| CoreError::StorageCorrupt("a private key is not 32 bytes".into()))?,
        );
        Ok(Self(StaticSecret::from(*bytes)))
    }

    /// Opens a key sealed to this private key's public key by [`seal_key_to`].
    pub fn open_key(&self, aad: &[u8], sealed: &[u8]) -> Result<SecretKey> {
        if sealed.len() < 33 || sealed[0] != SEALED_TO_VERSION {
            return Err(CoreError::StorageCorrupt("a key sealed to a public key has an unknown format".into()));
        }
        let ephemeral: [u8; 32] = sealed[1..33]
            .try_into()
            .map_err(|_| CoreError::StorageCorrupt("a key sealed to a public key is too short".into()))?;
        let wrapping = wrapping_key(&self.0, &PublicKey::from(ephemeral), &ephemeral, &self.public_key())?;
        wrapping.open_key(aad, &sealed[33..])
    }
}

/// Seals `key` to `recipient` (a user's public key), bound to `aad`. Only her private key opens it.
pub fn seal_key_to(recipient: &[u8], key: &SecretKey, rng: &impl RandomSource, aad: &[u8]) -> Result<Vec<u8>> {
    let recipient: [u8; 32] =
        recipient.try_into().map_err(|_| CoreError::StorageCorrupt("a public key is not 32 bytes".into()))?;
    let ephemeral = PrivateKey::generate(rng)?;
    let ephemeral_public = ephemeral.public_key();
    let wrapping = wrapping_key(&ephemeral.0, &PublicKey::from(recipient), &ephemeral_public, &recipient)?;
    let mut out = Vec::with_capacity(33 + 64);
    out.push(SEALED_TO_VERSION);
    out.extend_from_slice(&ephemeral_public);
    out.extend_from_slice(&wrapping.seal(rng, aad, key.expose())?);
    Ok(out)
}

fn wrapping_key(
    own: &StaticSecret,
    other: &PublicKey,
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
) -> Result<SecretKey> {
    let shared = own.diffie_hellman(other);
    if !shared.was_contributory() {
        return Err(CoreError::StorageCorrupt("a public key of low order".into()));
    }
    let context = [WRAP_LABEL, &ephemeral[..], &recipient[..]].concat();
    Ok(SecretKey::from_bytes(hmac_sha256(shared.as_bytes(), &context)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::DeterministicRandom;

    #[test]
    fn a_key_sealed_to_a_public_key_opens_only_with_its_private_key_and_place() {
        let rng = DeterministicRandom::new(7);
        let alice = PrivateKey::generate(&rng).unwrap();
        let mallory = PrivateKey::generate(&rng).unwrap();
        let data_key = SecretKey::generate(&rng).unwrap();
        let sealed = seal_key_to(&alice.public_key(), &data_key, &rng, b"users|x").unwrap();
        assert_eq!(alice.open_key(b"users|x", &sealed).unwrap().expose(), data_key.expose());
        assert!(mallory.open_key(b"users|x", &sealed).is_err(), "another private key opens it");
        assert!(alice.open_key(b"users|y", &sealed).is_err(), "it opens in another place");
        let again = seal_key_to(&alice.public_key(), &data_key, &rng, b"users|x").unwrap();
        assert_ne!(sealed, again, "two seals share their ephemeral key or nonce");
        let mut flipped = sealed.clone();
        flipped[5] ^= 1;
        assert!(alice.open_key(b"users|x", &flipped).is_err(), "a changed ephemeral key still opens");
    }

    #[test]
    fn a_private_key_round_trips_under_a_key_and_a_low_order_public_key_is_refused() {
        let rng = DeterministicRandom::new(8);
        let kek = SecretKey::generate(&rng).unwrap();
        let alice = PrivateKey::generate(&rng).unwrap();
        let sealed = alice.seal_under(&kek, &rng, b"pk").unwrap();
        assert_eq!(PrivateKey::open_under(&kek, b"pk", &sealed).unwrap().public_key(), alice.public_key());
        let data_key = SecretKey::generate(&rng).unwrap();
        assert!(matches!(seal_key_to(&[0u8; 32], &data_key, &rng, b"x"), Err(CoreError::StorageCorrupt(_))));
        assert!(seal_key_to(&[1u8; 31], &data_key, &rng, b"x").is_err());
    }
}
