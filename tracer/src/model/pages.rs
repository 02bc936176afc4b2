//! Per-page (pfn) state: who holds GUP pins and references on the page, and
//! where it was last seen mapped.
//!
//! A record exists for pages with GUP history only (created at the grab,
//! kept while holders remain, updated by later decisions on the page): the
//! engine's (mm, virtual page) table already says which page every mapping
//! maps, and a record per faulted page would cost a cache miss per event.
//!
//! Pins are exact: every FOLL_PIN grab and every unpin is an event. FOLL_GET
//! references are not: they are dropped by `put_page`, which is inlined
//! everywhere and cannot be probed. Their end is inferred from the
//! reference count the kernel reports at later events on the same page
//! (`prune_gets`).

use super::event::{Comm, PageState};

/// `GUP_PIN_COUNTING_BIAS` (include/linux/mm.h, 5.7+): what one FOLL_PIN
/// adds to the refcount of a small page. Large folios count pins apart
/// (`hpage_pincount` on 5.10, `_pincount` on 6.1+) and add 1 per pin.
pub(crate) const PIN_BIAS: i64 = 1024;

/// At most this many holder records per page; further distinct grabs merge
/// into the newest record (counted as a holder eviction). Identical grabs
/// (same task, mm, kind, stack) always merge.
pub(crate) const MAX_HOLDERS_PER_PAGE: usize = 32;

/// One outstanding grab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HolderRec {
    pub pid: u32,
    pub comm: Comm,
    /// Address space the page was grabbed through.
    pub mm: u64,
    pub address: u64,
    pub stack: Option<u32>,
    /// Time of the first grab in this record.
    pub time_ns: u64,
    /// References outstanding in this record.
    pub refs: u32,
    pub pin: bool,
    pub write: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PageRec {
    /// Last known mapping: address space and user address (0 = unknown).
    pub mm: u64,
    pub address: u64,
    /// Outstanding grabs, oldest first. Empty (no allocation) for pages
    /// only seen in faults, which is nearly all of them.
    pub holders: Vec<HolderRec>,
}

impl PageRec {
    pub fn new(mm: u64, address: u64) -> Self {
        PageRec {
            mm,
            address,
            holders: Vec::new(),
        }
    }

    pub fn has_holders(&self) -> bool {
        !self.holders.is_empty()
    }

    /// Eviction order when the page table is full: pages without holders
    /// go first, then pages with only FOLL_GET records (their end is only
    /// inferred), pinned pages last.
    pub fn keep_priority(&self) -> u8 {
        if self.holders.iter().any(|h| h.pin) {
            2
        } else {
            u8::from(self.has_holders())
        }
    }

    pub fn pins(&self) -> u64 {
        self.refs_where(true)
    }

    pub fn gets(&self) -> u64 {
        self.refs_where(false)
    }

    fn refs_where(&self, pin: bool) -> u64 {
        self.holders
            .iter()
            .filter(|h| h.pin == pin)
            .map(|h| u64::from(h.refs))
            .sum()
    }

    /// Records a grab. Returns the number of records merged away to stay
    /// within `MAX_HOLDERS_PER_PAGE`.
    pub fn add_holder(&mut self, h: HolderRec) -> u64 {
        if let Some(same) = self.holders.iter_mut().find(|o| {
            o.pid == h.pid
                && o.mm == h.mm
                && o.pin == h.pin
                && o.stack == h.stack
                && o.write == h.write
        }) {
            same.refs = same.refs.saturating_add(h.refs);
            return 0;
        }
        if self.holders.len() >= MAX_HOLDERS_PER_PAGE {
            // Keep the oldest records (they tell when trouble started) and
            // fold the new grab into the newest one of the same kind, or
            // drop the newest record to make room.
            if let Some(last) = self.holders.iter_mut().rev().find(|o| o.pin == h.pin) {
                last.refs = last.refs.saturating_add(h.refs);
                return 1;
            }
            self.holders.pop();
            self.holders.push(h);
            return 1;
        }
        self.holders.push(h);
        0
    }

    /// Releases `refs` references of the given kind, oldest records first.
    /// Returns how many were found.
    pub fn release(&mut self, pin: bool, refs: u32) -> u32 {
        let mut left = refs;
        for h in self.holders.iter_mut().filter(|h| h.pin == pin) {
            if left == 0 {
                break;
            }
            let take = h.refs.min(left);
            h.refs -= take;
            left -= take;
        }
        self.holders.retain(|h| h.refs > 0);
        refs - left
    }

    /// Drops FOLL_GET records the refcount no longer accounts for, oldest
    /// first. `page` is what the kernel reported at a later event on this
    /// page; its references are the mappings, the swap cache, the pins and
    /// whatever else holds it:
    ///
    /// `extra = refcount - mapcount - swapcache - pins * bias`
    ///
    /// Recorded GET references beyond `extra` were released. Pins taken
    /// before the trace started are not in our records; on a small page they
    /// show as multiples of the bias, which are removed before comparing.
    /// Large folios are only pruned when nothing can remain (extra <= 0):
    /// their swap cache holds one reference per subpage, which the state
    /// does not give. Returns the number of references dropped.
    pub fn prune_gets(&mut self, page: &PageState) -> u64 {
        if !page.valid || !self.holders.iter().any(|h| !h.pin) {
            return 0;
        }
        let pins = self.pins() as i64;
        let bias = if page.large { 1 } else { PIN_BIAS };
        let mut extra = i64::from(page.refcount)
            - i64::from(page.mapcount)
            - i64::from(page.swapcache)
            - pins * bias;
        if !page.large && extra >= PIN_BIAS {
            extra %= PIN_BIAS;
        }
        let gets = self.gets() as i64;
        let excess = if page.large {
            if extra <= 0 { gets } else { 0 }
        } else {
            gets - extra.max(0)
        };
        if excess <= 0 {
            return 0;
        }
        let dropped = self.release(false, u32::try_from(excess).unwrap_or(u32::MAX));
        u64::from(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pid: u32, pin: bool, refs: u32, time_ns: u64) -> HolderRec {
        HolderRec {
            pid,
            comm: Comm::new("t"),
            mm: 1,
            address: 0x1000,
            stack: None,
            time_ns,
            refs,
            pin,
            write: false,
        }
    }

    fn state(refcount: i32, mapcount: i32) -> PageState {
        PageState {
            valid: true,
            refcount,
            mapcount,
            anon: true,
            ..PageState::default()
        }
    }

    #[test]
    fn release_takes_oldest_first_and_reports_unmatched() {
        let mut p = PageRec::new(1, 0x1000);
        p.add_holder(holder(1, true, 1, 10));
        p.add_holder(holder(2, true, 2, 20));
        assert_eq!(p.release(true, 2), 2);
        assert_eq!(p.holders.len(), 1);
        assert_eq!(p.holders[0].pid, 2);
        assert_eq!(p.holders[0].refs, 1);
        assert_eq!(p.release(true, 5), 1, "only one left");
        assert_eq!(p.pins(), 0);
        assert_eq!(p.release(false, 1), 0);
    }

    #[test]
    fn gets_are_pruned_when_the_refcount_has_no_room_for_them() {
        let mut p = PageRec::new(1, 0x1000);
        p.add_holder(holder(1, false, 1, 10));
        p.add_holder(holder(2, false, 1, 20));
        // mapped once, one pipe reference left: the older record goes.
        assert_eq!(p.prune_gets(&state(2, 1)), 1);
        assert_eq!(p.holders.len(), 1);
        assert_eq!(p.holders[0].pid, 2);
        // Both references still there: nothing changes.
        p.add_holder(holder(3, false, 1, 30));
        assert_eq!(p.prune_gets(&state(3, 1)), 0);
        // None left.
        assert_eq!(p.prune_gets(&state(1, 1)), 2);
        assert!(!p.has_holders());
    }

    #[test]
    fn pins_are_not_mistaken_for_gets() {
        let mut p = PageRec::new(1, 0x1000);
        p.add_holder(holder(1, true, 1, 10));
        p.add_holder(holder(2, false, 1, 20));
        // 1 mapping + 1 pin + 1 get.
        assert_eq!(p.prune_gets(&state(1 + 1024 + 1, 1)), 0);
        // The get went away; the pin stays.
        assert_eq!(p.prune_gets(&state(1 + 1024, 1)), 1);
        assert_eq!(p.pins(), 1);
        // An untracked pin from before the trace does not keep gets alive.
        p.add_holder(holder(3, false, 1, 30));
        assert_eq!(p.prune_gets(&state(1 + 2048, 1)), 1);
    }

    #[test]
    fn pinned_pages_are_kept_longest() {
        let mut p = PageRec::new(1, 0x1000);
        assert_eq!(p.keep_priority(), 0);
        p.add_holder(holder(1, false, 1, 10));
        assert_eq!(p.keep_priority(), 1);
        p.add_holder(holder(1, true, 1, 10));
        assert_eq!(p.keep_priority(), 2);
    }

    #[test]
    fn identical_grabs_merge_and_records_stay_bounded() {
        let mut p = PageRec::new(1, 0x1000);
        p.add_holder(holder(1, false, 1, 10));
        p.add_holder(holder(1, false, 1, 11));
        assert_eq!(p.holders.len(), 1);
        assert_eq!(p.gets(), 2);
        let mut merged = 0;
        for pid in 2..100 {
            merged += p.add_holder(holder(pid, false, 1, 100 + u64::from(pid)));
        }
        assert!(p.holders.len() <= MAX_HOLDERS_PER_PAGE);
        assert_eq!(merged, 98 - (MAX_HOLDERS_PER_PAGE as u64 - 1));
        assert_eq!(p.gets(), 100, "no reference lost by merging");
    }
}
