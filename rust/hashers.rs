//! Hashers for the loop's maps whose keys are already distinct integers, where SipHash (the std default) would cost
//! more than the rest of an insert or a lookup: only the bits need spreading, one multiply by the golden ratio.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// A map keyed by addresses.
pub type AddressMap<K, V> = HashMap<K, V, BuildHasherDefault<AddressHasher>>;
/// A map keyed by small distinct integers.
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;
/// A set of small distinct integers.
pub type IntSet<T> = HashSet<T, BuildHasherDefault<IntHasher>>;

/// For addresses (a greenlet's, a slab's): their low four bits are alignment, always zero, so they are dropped.
#[derive(Default)]
pub struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(GOLDEN);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 >> 4).wrapping_mul(GOLDEN);
    }
}

/// For small distinct integers: timer and watch ids, file descriptors.
#[derive(Default)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(GOLDEN);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only integers are hashed here; anything else still gets a deterministic value.
        self.write_u64(bytes.iter().fold(self.0, |acc, &b| acc.rotate_left(8) ^ u64::from(b)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn hash<H: Hasher + Default>(value: impl Hash) -> u64 {
        let mut hasher = H::default();
        value.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn consecutive_fds_and_ids_hash_apart() {
        let fds: std::collections::HashSet<u64> = (0usize..4096).map(hash::<IntHasher>).collect();
        assert_eq!(fds.len(), 4096);
        assert_ne!(hash::<IntHasher>(7u64), hash::<IntHasher>(8u64));
    }

    #[test]
    fn addresses_a_word_apart_hash_apart() {
        assert_ne!(hash::<AddressHasher>(0x1000usize), hash::<AddressHasher>(0x1010usize));
    }
}
