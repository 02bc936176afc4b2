//! A small seeded hasher for the engine's and the decoder's integer keys
//! (pfns, pids, mm ids and pointers, page numbers, stack ids).
//!
//! Why not std's SipHash: `Engine::feed` does a handful of map lookups per
//! event and must sustain millions of events per second. Why not an unseeded
//! multiply hash (Fx): the keys include user addresses a traced process
//! chooses (`mmap(MAP_FIXED)`), so a fixed hash function would let it craft
//! colliding keys and slow the tracer down. The seed comes from std's
//! `RandomState` (per-process random keys); nothing observable depends on it
//! because every report is sorted.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher, RandomState};

/// A `HashMap` with the engine's hasher.
pub(crate) type FastMap<K, V> = HashMap<K, V, FastState>;
/// A `HashSet` with the engine's hasher.
pub(crate) type FastSet<K> = HashSet<K, FastState>;

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;
const MUL2: u64 = 0xbf58_476d_1ce4_e5b9;

/// Multiplies into 128 bits and folds the halves: every input bit reaches
/// every output bit in one step.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Builds [`FastHasher`]s sharing one random seed.
#[derive(Clone, Debug)]
pub(crate) struct FastState {
    seed: u64,
}

impl Default for FastState {
    fn default() -> Self {
        FastState {
            seed: RandomState::new().hash_one(0x636f_7774_7261_6365_u64) | 1,
        }
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;
    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher { h: self.seed }
    }
}

/// Hasher state: one word folded per written word.
#[derive(Clone, Debug)]
pub(crate) struct FastHasher {
    h: u64,
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.h = fold_mul(self.h ^ x, MUL);
    }

    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }

    #[inline]
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }

    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.h, MUL2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_neighbours_differ() {
        let s = FastState::default();
        assert_eq!(s.hash_one(42u64), s.hash_one(42u64));
        assert_ne!(s.hash_one(42u64), s.hash_one(43u64));
        assert_ne!(s.hash_one((1u64, 2u64)), s.hash_one((2u64, 1u64)));
    }

    #[test]
    fn sequential_keys_spread_over_buckets() {
        // pfns and page numbers are dense: the low bits (bucket index) must
        // still spread. 4096 sequential keys into 256 buckets: no bucket
        // should get more than a few times its share of 16.
        let s = FastState::default();
        let mut buckets = [0u32; 256];
        for k in 0u64..4096 {
            buckets[(s.hash_one(k) & 255) as usize] += 1;
        }
        let max = buckets.iter().copied().max().unwrap_or(0);
        assert!(max < 48, "max bucket {max}");
    }
}
