//! The open-addressing hash table under [`super::BoundedMap`].
//!
//! Why not std's `HashMap`: the engine's big tables (per page, per mapped
//! page) are larger than the caches, so a lookup costs what its cache misses
//! cost. Here an entry (key, last use, value) is one 64-byte-aligned bucket:
//! a hit reads one cache line (std's buckets are not line aligned and a
//! 64-byte one straddles two), and the home line of a key can be
//! prefetched before the lookup ([`Table::prefetch`]) so a batch of events
//! overlaps its misses instead of paying them one after another.
//!
//! Linear probing at a load of at most 1/2, no tombstones: a removal
//! shifts the following entries of its run back (`remove_at`), so a probe
//! stops at the first empty slot.

use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU64;

use crate::model::fasthash::FastState;

/// One entry. `used` is never 0 (use clocks start at 1), which lets
/// `Option<Bucket>` use it as the empty marker at no extra size.
#[repr(align(64))]
pub(super) struct Bucket<K, V> {
    pub key: K,
    /// The owner's use clock at the entry's last use.
    pub used: NonZeroU64,
    pub value: V,
}

/// Where a key is, or where it would go.
pub(super) enum Slot {
    Found(usize),
    /// Absent; the first empty slot of its probe run.
    Vacant(usize),
}

pub(super) struct Table<K, V> {
    /// A power of two in length (or empty), at most half full.
    slots: Vec<Option<Bucket<K, V>>>,
    len: usize,
    hasher: FastState,
}

/// Smallest non-empty table.
const MIN_SLOTS: usize = 16;

impl<K: Hash + Eq + Copy, V> Table<K, V> {
    pub fn new() -> Self {
        Table {
            slots: Vec::new(),
            len: 0,
            hasher: FastState::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn hash(&self, k: &K) -> u64 {
        self.hasher.hash_one(k)
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        // Only called with slots non-empty; the mask keeps it in range.
        (hash as usize) & (self.slots.len().wrapping_sub(1))
    }

    /// Looks `k` (whose hash is `hash`) up.
    #[inline]
    pub fn find(&self, k: &K, hash: u64) -> Slot {
        if self.slots.is_empty() {
            return Slot::Vacant(0);
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        // At most half full: the run ends at an empty slot.
        loop {
            match &self.slots[i] {
                None => return Slot::Vacant(i),
                Some(b) if b.key == *k => return Slot::Found(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// Tells the CPU to start loading `hash`'s home slot. A hint: nothing
    /// changes if it is wrong or late.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if self.slots.is_empty() {
            return;
        }
        let p = self.slots.as_ptr().wrapping_add(self.home(hash));
        #[cfg(target_arch = "x86_64")]
        // SAFETY: PREFETCHT0 never faults and has no effect a program can
        // observe other than timing; `p` points into the slot array anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }

    pub fn get(&self, i: usize) -> Option<&Bucket<K, V>> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut Bucket<K, V>> {
        self.slots.get_mut(i).and_then(Option::as_mut)
    }

    /// Whether an insert now must first grow the table (and so move the
    /// `Vacant` slot `find` gave).
    #[inline]
    fn needs_growth(&self) -> bool {
        (self.len + 1) * 2 > self.slots.len()
    }

    /// The entry `slot` (from `find`, with no change to the table since)
    /// names: the one found, or `make()` inserted at the vacant slot (or,
    /// when the table has to grow first, wherever the key goes then).
    pub fn occupy(
        &mut self,
        slot: Slot,
        hash: u64,
        make: impl FnOnce() -> Bucket<K, V>,
    ) -> &mut Bucket<K, V> {
        let i = match slot {
            Slot::Found(i) => i,
            Slot::Vacant(v) => {
                let i = if self.needs_growth() {
                    self.grow();
                    self.vacant_for(hash)
                } else {
                    v
                };
                self.len += 1;
                i
            }
        };
        // Found: occupied, so `make` is not called.
        self.slots[i].get_or_insert_with(make)
    }

    /// The first empty slot of `hash`'s probe run.
    fn vacant_for(&self, hash: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        while self.slots[i].is_some() {
            i = (i + 1) & mask;
        }
        i
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, Vec::with_capacity(n));
        advise_huge_pages(&self.slots);
        self.slots.resize_with(n, || None);
        for b in old.into_iter().flatten() {
            let i = self.vacant_for(self.hash(&b.key));
            self.slots[i] = Some(b);
        }
    }

    /// Removes the entry at `i`, shifting the rest of its probe run back
    /// so that no lookup passes an empty slot before reaching its key.
    pub fn remove_at(&mut self, mut i: usize) -> Option<Bucket<K, V>> {
        let out = self.slots.get_mut(i)?.take()?;
        self.len -= 1;
        let mask = self.slots.len() - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let Some(b) = &self.slots[j] else {
                break;
            };
            let home = self.home(self.hash(&b.key));
            // The entry at j may stay only if its home lies cyclically in
            // (i, j]: then the hole at i is not on its probe path.
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.slots[i] = self.slots[j].take();
                i = j;
            }
        }
        Some(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Bucket<K, V>> {
        self.slots.iter().flatten()
    }
}

/// Asks for transparent huge pages under a large table before it is first
/// written. Lookups land anywhere in the table: with 4 KiB pages nearly
/// each one misses the TLB too (a 16 MiB table spans 4096 pages, more than
/// the second-level TLB holds). Advisory: where THP is off, or the call
/// fails, nothing changes but speed.
fn advise_huge_pages<T>(v: &Vec<T>) {
    const HUGE: usize = 2 << 20;
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < 2 * HUGE {
        return;
    }
    let start = v.as_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE);
    let len = (start + bytes - aligned) / HUGE * HUGE;
    if len == 0 {
        return;
    }
    // SAFETY: madvise(MADV_HUGEPAGE) only changes how the kernel backs the
    // range, never its contents or validity; the range lies inside `v`'s
    // allocation (aligned up, whole huge pages only).
    unsafe {
        libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn bucket(key: u64, used: u64) -> Bucket<u64, u64> {
        Bucket {
            key,
            used: NonZeroU64::new(used).unwrap_or(NonZeroU64::MIN),
            value: key * 10,
        }
    }

    #[test]
    fn buckets_are_one_cache_line() {
        assert_eq!(
            std::mem::size_of::<Option<Bucket<(u64, u64), [u64; 5]>>>(),
            64
        );
        assert_eq!(std::mem::align_of::<Bucket<u64, u8>>(), 64);
    }

    /// Random inserts and removals over a small key range (long probe runs,
    /// many wrap-arounds) agree with std's map after every step.
    #[test]
    fn agrees_with_std_under_random_inserts_and_removals() {
        let mut t: Table<u64, u64> = Table::new();
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for step in 1..100_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let k = rng % 700;
            let h = t.hash(&k);
            match (t.find(&k, h), rng >> 60 < 6) {
                (Slot::Found(i), true) => {
                    assert_eq!(t.remove_at(i).map(|b| b.key), Some(k));
                    assert!(model.remove(&k).is_some(), "step {step}");
                }
                (Slot::Found(i), false) => {
                    assert_eq!(t.get(i).map(|b| b.value), model.get(&k).copied());
                }
                (vacant @ Slot::Vacant(_), _) => {
                    assert!(!model.contains_key(&k), "step {step}: {k} lost");
                    t.occupy(vacant, h, || bucket(k, step));
                    model.insert(k, k * 10);
                }
            }
            assert_eq!(t.len(), model.len());
            assert!(t.len() * 2 <= t.slots.len());
        }
        let mut seen: Vec<u64> = t.iter().map(|b| b.key).collect();
        seen.sort_unstable();
        let mut want: Vec<u64> = model.keys().copied().collect();
        want.sort_unstable();
        assert_eq!(seen, want);
        for k in want {
            assert!(matches!(t.find(&k, t.hash(&k)), Slot::Found(_)));
        }
    }
}
