//! A map with a size cap and oldest-first eviction.
//!
//! The engine keeps state per page, per process, per mapped page and per
//! stack, each fed by a workload we do not control: every table must have a
//! cap. Eviction works in batches (1/16 of the cap) chosen by last use, so an
//! insert costs amortized O(1) and nothing is allocated per event: a plain
//! lookup touches a counter, no list is relinked.
//!
//! The per-page tables outgrow the caches, so their cost is cache misses:
//! the entries live in one-cache-line buckets of an open-addressing table
//! (`table`) whose slots can be prefetched ahead of use, and one full scan
//! of the table picks the victims of several batches (`evict_batch`).

use std::hash::Hash;
use std::num::NonZeroU64;

mod table;

use table::{Bucket, Slot, Table};

/// What one eviction batch removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Evicted {
    pub entries: u64,
    /// Of those, entries the caller asked to keep if possible (keep
    /// priority above 0).
    pub precious: u64,
}

pub(crate) struct BoundedMap<K, V> {
    table: Table<K, V>,
    cap: usize,
    clock: u64,
    /// The next eviction candidates, oldest last (popped from the end):
    /// `(used, key)` of entries found by the last full scan, all of keep
    /// priority 0 (`used` masked to `CLOCK_BITS`). See `evict_batch` for
    /// why they stay exact. Callers pass the same `keep` for a table.
    pool: Vec<(u64, K)>,
    /// Eviction keys and map keys of a full scan (reused: a scan allocates
    /// nothing once the table has been full).
    scratch: Vec<(u64, K)>,
}

/// A full scan selects candidates for this many batches: the scan reads
/// the whole table, the pool costs one lookup per entry it evicts.
const POOL_BATCHES: usize = 8;
/// Pool candidates are prefetched this many pops ahead.
const POOL_PREFETCH: usize = 8;

/// Bits of an eviction key holding the use clock; the keep priority sits
/// above them. A clock reaching 2^56 (years of events at any rate) would
/// only blur the order among the oldest entries, never break the cap.
const CLOCK_BITS: u32 = 56;
const CLOCK_MASK: u64 = (1 << CLOCK_BITS) - 1;

/// The order eviction goes by: keep priority first, then last use. Use
/// clocks are unique, so every entry's key is distinct.
#[inline]
fn evict_key(priority: u8, used: u64) -> u64 {
    (u64::from(priority) << CLOCK_BITS) | (used & CLOCK_MASK)
}

impl<K: Hash + Eq + Copy, V> BoundedMap<K, V> {
    /// `cap` is raised to 1: a table that can hold nothing helps nobody.
    pub fn new(cap: usize) -> Self {
        BoundedMap {
            table: Table::new(),
            cap: cap.max(1),
            clock: 0,
            pool: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Changes the cap; a smaller cap takes effect at the next insert.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
    }

    /// The next use clock (never 0).
    #[inline]
    fn tick(&mut self) -> NonZeroU64 {
        self.clock += 1;
        NonZeroU64::new(self.clock).unwrap_or(NonZeroU64::MIN)
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        match self.table.find(k, self.table.hash(k)) {
            Slot::Found(i) => self.table.get(i).map(|b| &b.value),
            Slot::Vacant(_) => None,
        }
    }

    /// Looks up and marks the entry used.
    #[inline]
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let used = self.tick();
        match self.table.find(k, self.table.hash(k)) {
            Slot::Found(i) => self.table.get_mut(i).map(|b| {
                b.used = used;
                &mut b.value
            }),
            Slot::Vacant(_) => None,
        }
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        match self.table.find(k, self.table.hash(k)) {
            Slot::Found(i) => self.table.remove_at(i).map(|b| b.value),
            Slot::Vacant(_) => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.table.iter().map(|b| (&b.key, &b.value))
    }

    /// Starts loading the slot `k` would be found in, for a lookup a
    /// little later (see `Engine::feed_batch`).
    #[inline]
    pub fn prefetch(&self, k: &K) {
        self.table.prefetch(self.table.hash(k));
    }

    /// Returns the entry for `k`, inserting `make()` if absent. When the map
    /// is full, first evicts a batch: lowest `keep` priority first, least
    /// recently used first within a priority; the counts go to `evicted`.
    /// One probe of the table unless an eviction or growth intervenes.
    #[inline]
    pub fn get_or_insert_with(
        &mut self,
        k: K,
        make: impl FnOnce() -> V,
        keep: impl Fn(&V) -> u8,
        evicted: &mut Evicted,
    ) -> &mut V {
        let used = self.tick();
        let hash = self.table.hash(&k);
        let slot = match self.table.find(&k, hash) {
            Slot::Vacant(_) if self.table.len() >= self.cap => {
                let e = self.evict_batch(&keep);
                evicted.entries += e.entries;
                evicted.precious += e.precious;
                // Removals shifted entries: look again.
                self.table.find(&k, hash)
            }
            slot => slot,
        };
        let b = self.table.occupy(slot, hash, || Bucket {
            key: k,
            used,
            value: make(),
        });
        b.used = used;
        &mut b.value
    }

    /// Removes enough of the least recently used entries to get 1/16 of the
    /// cap below it (at least one slot free): the `n` smallest by (keep
    /// priority, last use). Use clocks are unique, so the choice does not
    /// depend on the map's iteration order: eviction is deterministic.
    ///
    /// A full scan of the table costs as much as reading all of it, so one
    /// scan selects the candidates of the next `POOL_BATCHES` batches too,
    /// and those batches only look their candidates up. A candidate is
    /// still exact when it was not used since the scan (its `used` is
    /// unchanged, so its value and priority are too: values only change
    /// through lookups that mark them used): every entry the scan did not
    /// select had a larger key then and still has, and every entry used
    /// since has a later clock than any candidate. Candidates are kept only
    /// at priority 0, below which nothing can fall. When the pool runs dry,
    /// the rest of the batch comes from a new scan.
    #[cold]
    fn evict_batch(&mut self, keep: &impl Fn(&V) -> u8) -> Evicted {
        let target = self.cap - (self.cap / 16).max(1).min(self.cap);
        let n = self
            .table
            .len()
            .saturating_sub(target)
            .max(1)
            .min(self.table.len());
        let mut out = Evicted::default();
        while out.entries < n as u64 {
            let Some((used, k)) = self.pool.pop() else {
                break;
            };
            // The pool is scattered over the table: start loading the slot
            // of a candidate a few pops ahead.
            let ahead = self.pool.len().checked_sub(POOL_PREFETCH);
            if let Some(&(_, a)) = ahead.and_then(|j| self.pool.get(j)) {
                self.table.prefetch(self.table.hash(&a));
            }
            if let Slot::Found(i) = self.table.find(&k, self.table.hash(&k))
                && self
                    .table
                    .get(i)
                    .is_some_and(|b| b.used.get() & CLOCK_MASK == used)
            {
                self.table.remove_at(i);
                out.entries += 1;
            }
        }
        let left = n - out.entries as usize;
        if left > 0 {
            let e = self.scan_and_evict(left, keep);
            out.entries += e.entries;
            out.precious += e.precious;
        }
        out
    }

    /// Evicts the `n` smallest entries by a full scan and refills the pool
    /// with the next ones at priority 0.
    fn scan_and_evict(&mut self, n: usize, keep: &impl Fn(&V) -> u8) -> Evicted {
        let mut out = Evicted::default();
        self.pool.clear();
        let scratch = &mut self.scratch;
        scratch.clear();
        scratch.extend(
            self.table
                .iter()
                .map(|b| (evict_key(keep(&b.value), b.used.get()), b.key)),
        );
        let n = n.min(scratch.len());
        if n == 0 {
            return out;
        }
        let m = n.saturating_mul(POOL_BATCHES + 1).min(scratch.len());
        if m < scratch.len() {
            scratch.select_nth_unstable_by_key(m - 1, |&(key, _)| key);
        }
        let chosen = &mut scratch[..m];
        chosen.sort_unstable_by_key(|&(key, _)| key);
        for &(key, k) in &chosen[..n] {
            if let Slot::Found(i) = self.table.find(&k, self.table.hash(&k)) {
                self.table.remove_at(i);
            }
            out.entries += 1;
            out.precious += u64::from(key > CLOCK_MASK);
        }
        // The rest, oldest last; only priority 0 (keys up to CLOCK_MASK).
        self.pool.extend(
            chosen[n..]
                .iter()
                .rev()
                .filter(|&&(key, _)| key <= CLOCK_MASK)
                .copied(),
        );
        // Keep the buffers only while they are small next to the table.
        if scratch.capacity() > 2 * self.cap {
            *scratch = Vec::new();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_cap_and_evicts_least_recently_used() {
        let mut m: BoundedMap<u64, u64> = BoundedMap::new(32);
        let mut ev = Evicted::default();
        for k in 0..32 {
            m.get_or_insert_with(k, || k, |_| 0, &mut ev);
        }
        assert_eq!(ev, Evicted::default());
        // Touch key 0 so it becomes the most recent.
        assert!(m.get_mut(&0).is_some());
        m.get_or_insert_with(100, || 100, |_| 0, &mut ev);
        assert!(m.len() <= 32);
        assert_eq!(ev.entries, 2, "1/16 of 32");
        assert!(m.get(&0).is_some(), "recently used entry survived");
        assert!(
            m.get(&1).is_none() && m.get(&2).is_none(),
            "oldest went first"
        );
        assert!(m.get(&100).is_some());
    }

    #[test]
    fn precious_entries_go_last() {
        let mut m: BoundedMap<u64, bool> = BoundedMap::new(4);
        let mut ev = Evicted::default();
        let keep = |v: &bool| u8::from(*v);
        m.get_or_insert_with(0, || true, keep, &mut ev);
        for k in 1..4 {
            m.get_or_insert_with(k, || false, keep, &mut ev);
        }
        m.get_or_insert_with(9, || false, keep, &mut ev);
        assert_eq!(ev.entries, 1);
        assert_eq!(ev.precious, 0);
        assert!(m.get(&0).is_some(), "oldest but precious");
        assert!(m.get(&1).is_none());
    }

    #[test]
    fn shrinking_the_cap_applies_at_next_insert() {
        let mut m: BoundedMap<u64, ()> = BoundedMap::new(100);
        let mut ev = Evicted::default();
        for k in 0..100 {
            m.get_or_insert_with(k, || (), |_| 0, &mut ev);
        }
        m.set_cap(10);
        m.get_or_insert_with(1000, || (), |_| 0, &mut ev);
        assert!(m.len() <= 10, "len {}", m.len());
        assert_eq!(ev.entries as usize + m.len(), 101);
    }

    /// The pool and the full scan together evict exactly what sorting the
    /// whole table by (priority, last use) at every batch would: a
    /// reference model replays the same random operations (inserts, hits,
    /// misses, removals, priority changes, a cap change) and must agree on
    /// the table's contents and the eviction counts after every step.
    #[test]
    fn batched_eviction_matches_a_full_sort_every_time() {
        use std::collections::HashMap;

        struct Model {
            map: HashMap<u64, (u8, u64)>,
            cap: usize,
            clock: u64,
        }
        impl Model {
            fn touch(&mut self, k: u64, prio: Option<u8>, ev: &mut Evicted) {
                self.clock += 1;
                if self.map.len() >= self.cap && !self.map.contains_key(&k) {
                    let target = self.cap - (self.cap / 16).max(1).min(self.cap);
                    let n = self.map.len().saturating_sub(target).max(1);
                    let mut all: Vec<(u8, u64, u64)> =
                        self.map.iter().map(|(&k, &(p, u))| (p, u, k)).collect();
                    all.sort_unstable();
                    for &(p, _, k) in &all[..n] {
                        self.map.remove(&k);
                        ev.entries += 1;
                        ev.precious += u64::from(p > 0);
                    }
                }
                let e = self.map.entry(k).or_insert((0, 0));
                e.1 = self.clock;
                if let Some(p) = prio {
                    e.0 = p;
                }
            }
        }

        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut m: BoundedMap<u64, u8> = BoundedMap::new(64);
        let mut model = Model {
            map: HashMap::new(),
            cap: 64,
            clock: 0,
        };
        let (mut ev, mut want) = (Evicted::default(), Evicted::default());
        for step in 0..200_000u32 {
            let r = next();
            // Mostly new keys from a growing range, some hits on old ones.
            let k = if r % 3 == 0 {
                r % 200
            } else {
                u64::from(step / 4) + (r >> 40) % 64
            };
            match (r >> 8) % 16 {
                0 => {
                    assert_eq!(m.remove(&k).is_some(), model.map.remove(&k).is_some());
                }
                1 => {
                    model.clock += 1;
                    let hit = m.get_mut(&k).is_some();
                    if let Some(e) = model.map.get_mut(&k) {
                        e.1 = model.clock;
                    }
                    assert_eq!(hit, model.map.contains_key(&k));
                }
                2 | 3 => {
                    // A priority change goes with a use, as in the engine.
                    let p = ((r >> 16) % 3) as u8;
                    *m.get_or_insert_with(k, || 0, |v| *v, &mut ev) = p;
                    model.touch(k, Some(p), &mut want);
                }
                _ => {
                    m.get_or_insert_with(k, || 0, |v| *v, &mut ev);
                    model.touch(k, None, &mut want);
                }
            }
            if step == 100_000 {
                m.set_cap(40);
                model.cap = 40;
            }
            assert_eq!(ev, want, "step {step}");
            assert_eq!(m.len(), model.map.len(), "step {step}");
            if step % 97 == 0 {
                for (k, v) in m.iter() {
                    assert_eq!(model.map.get(k).map(|e| e.0), Some(*v), "step {step}");
                }
            }
        }
        assert!(want.entries > 10_000 && want.precious > 0, "{want:?}");
    }
}
