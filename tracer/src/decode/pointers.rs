//! Kernel pointers into per-trace ids.
//!
//! A `struct mm_struct *` is a kernel address: it must not leak into trace
//! files or alerts (it defeats KASLR), so each pointer becomes an id 1, 2,
//! 3 ... in order of first appearance, unless raw pointers were requested.
//! 0 (no mm, e.g. a kernel thread) stays 0.
//!
//! Two problems a naive map has, and what is done about them:
//! - **Memory**: at most `cap` pointers are remembered. Beyond that the
//!   least recently used eighth is dropped at once (amortizing the
//!   O(cap) selection over cap/8 insertions). A forgotten pointer seen again
//!   gets a new id: the correlator then sees a "new" address space, which
//!   only happens after `cap` other mms were seen more recently.
//! - **Address reuse**: a freed `mm_struct` is soon reallocated for another
//!   process. Fork is where a new mm appears, so the child mm of a fork gets
//!   a fresh id (`forked`), even if the address was known from a dead process.

use crate::model::fasthash::FastMap;

#[derive(Clone, Copy, Debug)]
struct Slot {
    id: u64,
    last_used: u64,
    /// Tid of the fork still filling this (child) mm, if any: the fork's
    /// later records must keep the id the fork's first record assigned.
    forking: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct PointerIds {
    raw: bool,
    cap: usize,
    next_id: u64,
    tick: u64,
    map: FastMap<u64, Slot>,
    pub evicted: u64,
}

impl PointerIds {
    pub fn new(raw: bool, cap: usize) -> Self {
        PointerIds {
            raw,
            cap: cap.max(1),
            next_id: 1,
            tick: 0,
            map: FastMap::default(),
            evicted: 0,
        }
    }

    /// The id of `ptr`, assigning the next one on first sight.
    pub fn id(&mut self, ptr: u64) -> u64 {
        if self.raw || ptr == 0 {
            return ptr;
        }
        self.tick += 1;
        if let Some(slot) = self.map.get_mut(&ptr) {
            slot.last_used = self.tick;
            return slot.id;
        }
        self.insert(ptr, None)
    }

    /// The id of a child mm being filled by a fork in `tid`
    /// (`copy_page_range` records): fresh on the fork's first record, the
    /// same for the rest of that fork.
    pub fn forking(&mut self, ptr: u64, tid: u32) -> u64 {
        if self.raw || ptr == 0 {
            return ptr;
        }
        self.tick += 1;
        if let Some(slot) = self.map.get_mut(&ptr)
            && slot.forking == Some(tid)
        {
            slot.last_used = self.tick;
            return slot.id;
        }
        self.insert(ptr, Some(tid))
    }

    /// The id of the child mm of a completed fork in `tid`
    /// (`sched_process_fork`): the id its `forking` records got, else fresh.
    /// Afterwards the mm is an ordinary known pointer.
    pub fn forked(&mut self, ptr: u64, tid: u32) -> u64 {
        let id = self.forking(ptr, tid);
        if let Some(slot) = self.map.get_mut(&ptr) {
            slot.forking = None;
        }
        id
    }

    fn insert(&mut self, ptr: u64, forking: Option<u32>) -> u64 {
        if !self.map.contains_key(&ptr) && self.map.len() >= self.cap {
            self.evict();
        }
        let id = self.next_id;
        self.next_id += 1;
        self.map.insert(
            ptr,
            Slot {
                id,
                last_used: self.tick,
                forking,
            },
        );
        id
    }

    /// Drops the least recently used eighth of the map (at least one).
    fn evict(&mut self) {
        let n = (self.cap / 8).max(1).min(self.map.len());
        if n == 0 {
            return;
        }
        let mut by_age: Vec<(u64, u64)> = self.map.iter().map(|(&p, s)| (s.last_used, p)).collect();
        by_age.select_nth_unstable(n - 1);
        for &(_, p) in &by_age[..n] {
            self.map.remove(&p);
        }
        self.evicted += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u64 = 0xffff_8880_0001_0000;
    const B: u64 = 0xffff_8880_0002_0000;
    const C: u64 = 0xffff_8880_0003_0000;

    #[test]
    fn ids_in_order_of_first_appearance() {
        let mut p = PointerIds::new(false, 64);
        assert_eq!(
            [p.id(B), p.id(A), p.id(B), p.id(C), p.id(A)],
            [1, 2, 1, 3, 2]
        );
        assert_eq!(p.id(0), 0);
    }

    #[test]
    fn raw_pointers_pass_through() {
        let mut p = PointerIds::new(true, 1);
        assert_eq!([p.id(A), p.forking(B, 5), p.forked(C, 5)], [A, B, C]);
    }

    #[test]
    fn evicts_least_recently_used_beyond_cap() {
        let mut p = PointerIds::new(false, 2);
        assert_eq!(p.id(A), 1);
        assert_eq!(p.id(B), 2);
        assert_eq!(p.id(A), 1); // A is now the most recently used
        assert_eq!(p.id(C), 3); // B evicted
        assert_eq!(p.evicted, 1);
        assert_eq!(p.id(A), 1);
        assert_eq!(p.id(B), 4); // forgotten: a new id
        assert!(p.map.len() <= 2);
    }

    #[test]
    fn fork_gives_reused_address_a_fresh_id() {
        let mut p = PointerIds::new(false, 64);
        assert_eq!(p.id(A), 1); // parent
        assert_eq!(p.id(B), 2); // some process, later dead; its mm freed
        // A fork in tid 10 gets B's address for its child.
        assert_eq!(p.forking(B, 10), 3);
        assert_eq!(p.forking(B, 10), 3);
        assert_eq!(p.forked(B, 10), 3);
        assert_eq!(p.id(B), 3);
        // The next fork reusing the address again is a new mm again.
        assert_eq!(p.forked(B, 10), 4);
    }

    #[test]
    fn fork_without_page_copies_still_fresh() {
        let mut p = PointerIds::new(false, 64);
        assert_eq!(p.id(B), 1);
        assert_eq!(p.forked(B, 7), 2);
        assert_eq!(p.id(B), 2);
    }
}
