//! A map with a size cap and oldest-first eviction.
//!
//! The engine keeps state per page, per process, per mapped page and per
//! stack, each fed by a workload we do not control: every table must have a
//! cap. Eviction works in batches (1/16 of the cap) chosen by last use, so an
//! insert costs amortized O(1) and nothing is allocated per event: a plain
//! lookup touches a counter, no list is relinked.

use std::collections::hash_map::Entry;
use std::hash::Hash;

use super::fasthash::FastMap;

struct Slot<V> {
    value: V,
    /// Value of the map's use clock when the entry was last used.
    used: u64,
}

/// What one eviction batch removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Evicted {
    pub entries: u64,
    /// Of those, entries the caller asked to keep if possible (keep
    /// priority above 0).
    pub precious: u64,
}

pub(crate) struct BoundedMap<K, V> {
    map: FastMap<K, Slot<V>>,
    cap: usize,
    clock: u64,
}

impl<K: Hash + Eq + Copy, V> BoundedMap<K, V> {
    /// `cap` is raised to 1: a table that can hold nothing helps nobody.
    pub fn new(cap: usize) -> Self {
        BoundedMap {
            map: FastMap::default(),
            cap: cap.max(1),
            clock: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Changes the cap; a smaller cap takes effect at the next insert.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|s| &s.value)
    }

    /// Looks up and marks the entry used.
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.clock += 1;
        let clock = self.clock;
        self.map.get_mut(k).map(|s| {
            s.used = clock;
            &mut s.value
        })
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.map.remove(k).map(|s| s.value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, s)| (k, &s.value))
    }

    /// Returns the entry for `k`, inserting `make()` if absent. When the map
    /// is full, first evicts a batch: lowest `keep` priority first, least
    /// recently used first within a priority; the counts go to `evicted`.
    pub fn get_or_insert_with(
        &mut self,
        k: K,
        make: impl FnOnce() -> V,
        keep: impl Fn(&V) -> u8,
        evicted: &mut Evicted,
    ) -> &mut V {
        self.clock += 1;
        let clock = self.clock;
        if self.map.len() >= self.cap && !self.map.contains_key(&k) {
            let e = self.evict_batch(&keep);
            evicted.entries += e.entries;
            evicted.precious += e.precious;
        }
        match self.map.entry(k) {
            Entry::Occupied(o) => {
                let s = o.into_mut();
                s.used = clock;
                &mut s.value
            }
            Entry::Vacant(v) => {
                &mut v
                    .insert(Slot {
                        value: make(),
                        used: clock,
                    })
                    .value
            }
        }
    }

    /// Removes enough of the least recently used entries to get 1/16 of the
    /// cap below it (at least one slot free).
    fn evict_batch(&mut self, keep: &impl Fn(&V) -> u8) -> Evicted {
        let target = self.cap - (self.cap / 16).max(1).min(self.cap);
        let n = self
            .map
            .len()
            .saturating_sub(target)
            .max(1)
            .min(self.map.len());
        let mut order: Vec<(u8, u64, K)> = self
            .map
            .iter()
            .map(|(k, s)| (keep(&s.value), s.used, *k))
            .collect();
        // Use clocks are unique, so the chosen set does not depend on the
        // map's iteration order: eviction is deterministic.
        if n < order.len() {
            order.select_nth_unstable_by_key(n, |&(p, used, _)| (p, used));
        }
        let mut out = Evicted::default();
        for &(p, _, k) in &order[..n] {
            self.map.remove(&k);
            out.entries += 1;
            out.precious += u64::from(p > 0);
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
}
