//! A fast hasher for the in-memory clinic index (the Fx hash of rustc: a rotate, an xor and a
//! multiply per 8 bytes). The standard `HashMap`'s SipHash was the largest item of an unlock's
//! profile after the index snapshot (about 45 ms of 500 at 20,000 women: seven hashes of an
//! 11-character UID per woman). SipHash resists hash flooding by keys an attacker chooses; the
//! keys here are the UIDs of the clinic's own copy, and a flood would only slow lookups.

use std::hash::{BuildHasherDefault, Hasher};

/// The Fx hash (see the module doc).
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastHashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_near_keys_apart() {
        let hash = |s: &str| {
            let mut h = FastHasher::default();
            std::hash::Hash::hash(s, &mut h);
            h.finish()
        };
        assert_eq!(hash("PQfMcpmXeFE"), hash("PQfMcpmXeFE"));
        let near = ["PQfMcpmXeFE", "PQfMcpmXeFF", "QQfMcpmXeFE", "PQfMcpmXeF", ""];
        let hashes: std::collections::BTreeSet<u64> = near.iter().map(|s| hash(s)).collect();
        assert_eq!(hashes.len(), near.len(), "{hashes:?}");
        let mut map: FastHashMap<String, usize> = FastHashMap::default();
        for (i, s) in near.iter().enumerate() {
            map.insert((*s).to_string(), i);
        }
        assert_eq!(map.get("QQfMcpmXeFE"), Some(&2));
    }
}
