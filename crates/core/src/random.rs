//! Where randomness comes from. The core never reaches for a platform RNG itself: the caller
//! passes a [`RandomSource`] (the OS natively, `crypto.getRandomValues` in the browser, a fixed
//! sequence in snapshot tests).

#[cfg(not(target_arch = "wasm32"))]
use crate::error::CoreError;
use crate::error::Result;

/// A cryptographically secure source of random bytes.
pub trait RandomSource {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<()>;
}

/// The operating system's RNG (native targets).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

#[cfg(not(target_arch = "wasm32"))]
impl RandomSource for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        getrandom::getrandom(buf).map_err(|e| CoreError::Crypto(format!("random source: {e}")))
    }
}

/// A deterministic source for snapshot tests: a counter run through SHA-256. Never use it for
/// real data.
#[derive(Debug, Default)]
pub struct DeterministicRandom {
    counter: std::sync::atomic::AtomicU64,
}

impl DeterministicRandom {
    /// A source starting at `seed`.
    pub fn new(seed: u64) -> Self {
        Self { counter: std::sync::atomic::AtomicU64::new(seed) }
    }
}

impl RandomSource for DeterministicRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        use sha2::{Digest, Sha256};
        for chunk in buf.chunks_mut(32) {
            let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let block = Sha256::digest(n.to_le_bytes());
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

impl<T: RandomSource + ?Sized> RandomSource for &T {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        (**self).fill(buf)
    }
}

/// Random bytes as a fixed-size array.
pub fn random_array<const N: usize>(rng: &impl RandomSource) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    rng.fill(&mut out)?;
    Ok(out)
}

/// A number uniformly in 0..1 from `source` (for jitter, not for keys); 0.5 if the source
/// fails, so a broken RNG never turns a backoff into none.
pub fn unit_f64(source: &impl RandomSource) -> f64 {
    let mut bytes = [0u8; 8];
    match source.fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_source_repeats_and_differs_per_call() {
        let a = DeterministicRandom::new(7);
        let b = DeterministicRandom::new(7);
        let x: [u8; 40] = random_array(&a).unwrap();
        let y: [u8; 40] = random_array(&b).unwrap();
        assert_eq!(x, y);
        let z: [u8; 40] = random_array(&a).unwrap();
        assert_ne!(x, z);
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn os_source_gives_distinct_values() {
        let x: [u8; 32] = random_array(&OsRandom).unwrap();
        let y: [u8; 32] = random_array(&OsRandom).unwrap();
        assert_ne!(x, y);
    }
}
