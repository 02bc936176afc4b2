//! COW fault records into decisions: the kernel's reuse/copy/other choice is
//! derived here from the raw witnesses the probe recorded (the PTE/PMD before
//! and after the fault, the return value, the page words).
//!
//! `do_wp_page` (mm/memory.c) ends a private anonymous write-protect fault
//! in one of two ways: `wp_page_reuse` keeps the page and makes the PTE
//! writable, `wp_page_copy` maps a new page. On 6.12+ both are inlined, so
//! the outcome is read from the PTE itself:
//!
//! | witness (in order)                                   | decision |
//! |------------------------------------------------------|----------|
//! | error / retry return, THP fallback, VM_SHARED,       | Other    |
//! | zero page, entry after unreadable or not present     |          |
//! | pfn after != pfn before                              | Copy     |
//! | same pfn, write fault, PTE writable                  | Reuse    |
//! | same pfn, write fault, PTE still read-only           | Other    |
//! | same pfn, unshare fault (PTE stays read-only)        | Reuse    |
//!
//! Nothing here allocates: this is the hot path (one record per
//! write-protect fault).

use tracer_common::{CowFaultRecord, PageSnapshot, site};

use super::KernelConsts;
use crate::model::{CowFault, Decision, FaultKind, PageState, Site};

/// x86_64 base page shift: a PTE's pfn field starts at bit 12.
const PAGE_SHIFT: u32 = 12;

/// Whether bit `bit` is set in `word` (false for an out-of-range bit number).
pub(crate) fn test_bit(word: u64, bit: u32) -> bool {
    1u64.checked_shl(bit).is_some_and(|m| word & m != 0)
}

pub(crate) fn site_of(raw: u8) -> Option<Site> {
    match raw {
        site::WP => Some(Site::Wp),
        site::SWAP => Some(Site::Swap),
        site::THP => Some(Site::Thp),
        site::HUGETLB => Some(Site::Hugetlb),
        _ => None,
    }
}

/// Sites whose entry is a huge PMD (or PUD), not a 4 KiB PTE.
fn is_huge(site: Site) -> bool {
    matches!(site, Site::Thp | Site::Hugetlb)
}

/// The pfn an entry maps. In a huge PMD, bit 12 is `_PAGE_PAT_LARGE`, not
/// part of the pfn (arch/x86/include/asm/pgtable_types.h), so it is cleared
/// first.
fn entry_pfn(entry: u64, site: Site, c: &KernelConsts) -> u64 {
    let entry = if is_huge(site) {
        entry & !c.pmd_pat_large
    } else {
        entry
    };
    (entry & c.pte_pfn_mask) >> PAGE_SHIFT
}

/// The page state the decision rested on, named with the kernel's bits.
/// An unreadable page yields `PageState::default()` (`valid: false`,
/// `anon_exclusive: None`: unknown rather than "absent flag").
pub(crate) fn page_state(p: &PageSnapshot, c: &KernelConsts) -> PageState {
    if p.state & PageSnapshot::VALID == 0 {
        return PageState::default();
    }
    let large = p.state & PageSnapshot::COMPOUND != 0;
    // Kernels with a folio-wide `_large_mapcount` keep the per-page
    // `_mapcount` of a large folio's pages inexact or unused: the folio
    // count is the one their reuse rules read.
    let mapcount = if large && p.large_mapcount != PageSnapshot::NO_COUNT {
        p.large_mapcount
    } else {
        p.mapcount
    };
    // PG_swapcache is PG_owner_priv_1; it means "in the swap cache" only on
    // a swap-backed folio (folio_test_swapcache in page-flags.h tests both).
    let swapcache = match (c.pg_swapbacked, c.pg_swapcache) {
        (Some(backed), Some(cache)) => {
            test_bit(p.head_flags, backed) && test_bit(p.head_flags, cache)
        }
        _ => false,
    };
    PageState {
        valid: true,
        refcount: p.refcount,
        mapcount,
        anon: p.mapping_low & c.mapping_anon != 0,
        // PG_anon_exclusive is a per-page bit, even inside a large folio.
        anon_exclusive: c.pg_anon_exclusive.map(|b| test_bit(p.flags, b)),
        ksm: c.mapping_ksm != 0 && p.mapping_low & c.mapping_flags_mask == c.mapping_ksm,
        swapcache,
        large,
    }
}

/// Whether the page is PG_reserved: the shared zero page (and other pages
/// outside the allocator). `do_wp_page` finds no normal page there
/// (`vm_normal_page` returns NULL) and always hands the fault a fresh page:
/// that is not a COW decision about anonymous memory.
fn is_reserved(p: &PageSnapshot, c: &KernelConsts) -> bool {
    p.state & PageSnapshot::VALID != 0 && c.pg_reserved.is_some_and(|b| test_bit(p.flags, b))
}

/// Decodes one fault record. `None` when the site byte is unknown.
pub(crate) fn cow_fault(r: &CowFaultRecord, c: &KernelConsts) -> Option<CowFault> {
    let site = site_of(r.site)?;
    let fault = match c.fault_flag_unshare {
        Some(f) if r.fault_flags & f != 0 => FaultKind::Unshare,
        _ => FaultKind::Write,
    };
    let shared_mapping = r.vm_flags & c.vm_shared != 0;
    if site == Site::Swap {
        let (decision, pfn) = swap_in(r, shared_mapping, c);
        return Some(CowFault {
            site,
            fault,
            address: r.address,
            pfn,
            new_pfn: None,
            decision,
            shared_mapping,
            ret: r.ret,
            page: page_state(&r.page, c),
            swap_count: super::swap::swap_count(r.swap_format, r.swap_witness),
        });
    }
    let start_present = r.orig_entry & c.pte_present != 0;
    let pfn = if start_present {
        entry_pfn(r.orig_entry, site, c)
    } else {
        0
    };
    let (decision, new_pfn) = if start_present {
        decide(r, site, fault, shared_mapping, pfn, c)
    } else {
        (Decision::Other, None)
    };
    Some(CowFault {
        site,
        fault,
        address: r.address,
        pfn,
        new_pfn,
        decision,
        shared_mapping,
        ret: r.ret,
        page: page_state(&r.page, c),
        swap_count: None,
    })
}

/// A write fault on a swapped-out page (`do_swap_page`). The fault starts
/// from a swap entry, so the page only exists at return: the record's page
/// state and pfn are those of the page the PTE maps after the fault.
///
/// | witness (in order)                                   | decision |
/// |------------------------------------------------------|----------|
/// | error / retry return, VM_SHARED, not a write fault   | Other    |
/// | `do_wp_page` ran inside (handed over; it decided)     | Other    |
/// | PTE after unreadable or not present                  | Other    |
/// | PTE after present and writable                       | Reuse    |
/// | PTE after present, read-only                         | Other    |
///
/// Reuse is the swapped-in page mapped writable in place: 5.10's
/// `reuse_swap_page` said yes, or (5.19+) the swap entry was anon-exclusive.
/// On a handover the `site::WP` record of the nested `do_wp_page` carries
/// the copy or reuse; this record then has no pfn (the page it started
/// from is the WP record's).
fn swap_in(r: &CowFaultRecord, shared_mapping: bool, c: &KernelConsts) -> (Decision, u64) {
    let after_present = r.after_valid != 0 && r.entry_after & c.pte_present != 0;
    let after_pfn = if after_present {
        entry_pfn(r.entry_after, Site::Swap, c)
    } else {
        0
    };
    let failed = r.ret & (c.vm_fault_error_mask | c.vm_fault_retry) != 0;
    let write = r.fault_flags & c.fault_flag_write != 0;
    if failed || shared_mapping || !write || !after_present {
        return (Decision::Other, after_pfn);
    }
    if r.nested_wp != 0 {
        return (Decision::Other, 0);
    }
    if r.entry_after & c.pte_write != 0 {
        (Decision::Reuse, after_pfn)
    } else {
        (Decision::Other, after_pfn)
    }
}

/// The decision table. Each early return is a case where the kernel took no
/// reuse/copy decision about a private anonymous page, or where the
/// witnesses cannot show which one it took.
fn decide(
    r: &CowFaultRecord,
    site: Site,
    fault: FaultKind,
    shared_mapping: bool,
    pfn: u64,
    c: &KernelConsts,
) -> (Decision, Option<u64>) {
    const OTHER: (Decision, Option<u64>) = (Decision::Other, None);
    // VM_FAULT_ERROR bits (OOM, SIGBUS, SIGSEGV, HWPOISON): the fault
    // failed, e.g. wp_page_copy could not allocate; nothing was mapped.
    if r.ret & c.vm_fault_error_mask != 0 {
        return OTHER;
    }
    // VM_FAULT_RETRY: the handler dropped the locks (e.g. could not take
    // the page lock) and the fault is replayed; the replay has its own record.
    if r.ret & c.vm_fault_retry != 0 {
        return OTHER;
    }
    // do_huge_pmd_wp_page returns VM_FAULT_FALLBACK after splitting the
    // PMD (a shared or pinned THP is not copied whole): the decision is
    // then taken per PTE by do_wp_page, which has its own record.
    if is_huge(site) && r.ret & c.vm_fault_fallback != 0 {
        return OTHER;
    }
    // VM_SHARED: do_wp_page goes to wp_pfn_shared / wp_page_shared
    // (page_mkwrite, then made writable in place): no COW applies. (The
    // kernel tests VM_SHARED | VM_MAYSHARE; a VM_MAYSHARE-only mapping is
    // read-only and reaches do_wp_page neither by a write nor by an
    // unshare, which only concerns anonymous pages.)
    if shared_mapping {
        return OTHER;
    }
    if is_reserved(&r.page, c) {
        return OTHER;
    }
    // Without the entry after the fault (unreadable, or zapped by a racing
    // munmap/MADV_DONTNEED) the outcome is unknown.
    if r.after_valid == 0 || r.entry_after & c.pte_present == 0 {
        return OTHER;
    }
    // A PMD without PSE after a huge fault points to a page table: the
    // THP was split even if the return value did not say so.
    if is_huge(site) && r.entry_after & c.pmd_pse == 0 {
        return OTHER;
    }
    let after = entry_pfn(r.entry_after, site, c);
    if after != pfn {
        // wp_page_copy (mm/memory.c): a new page was allocated, the old
        // contents copied, and the PTE switched to it. (If another thread's
        // fault on the same PTE won the race, wp_page_copy backs off and
        // this record shows that thread's copy too: both report Copy with
        // the same new pfn.)
        return (Decision::Copy, Some(after));
    }
    match fault {
        // wp_page_reuse (mm/memory.c) keeps the page and, for a write
        // fault, makes the PTE writable (maybe_mkwrite). A same-pfn,
        // still read-only PTE means no reuse happened (e.g. the PTE changed
        // under us and the fault returned early to be retaken).
        FaultKind::Write if r.entry_after & c.pte_write != 0 => (Decision::Reuse, None),
        FaultKind::Write => OTHER,
        // FAULT_FLAG_UNSHARE (5.19+): on the reuse path do_wp_page sets
        // PageAnonExclusive, unlocks the PTE and returns 0 *before*
        // wp_page_reuse: the PTE stays read-only by design, so an unchanged
        // read-only entry is the reuse outcome.
        FaultKind::Unshare => (Decision::Reuse, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::synthetic::{PRESENT, RW, consts_5_10, consts_6_1, page, pte};

    const PFN: u64 = 0x1_2344;
    const NEW_PFN: u64 = 0x5_4321;
    const FAULT_FLAG_UNSHARE: u32 = 1024;
    const VM_SHARED: u64 = 0x8;
    const VM_FAULT_OOM: u32 = 0x1;
    const VM_FAULT_RETRY: u32 = 0x400;
    const VM_FAULT_FALLBACK: u32 = 0x800;
    const PMD_PSE: u64 = 0x80;
    const PAT_LARGE: u64 = 0x1000;

    /// A write fault on a read-only private PTE of PFN, with `after` read back.
    fn rec(after: u64) -> CowFaultRecord {
        CowFaultRecord {
            address: 0x7f00_0000_1000,
            orig_entry: pte(PFN, PRESENT),
            entry_after: after,
            after_valid: 1,
            vm_flags: 0x73, // VM_READ|VM_WRITE|VM_MAYREAD|VM_MAYWRITE|VM_MAYEXEC
            fault_flags: 0x1,
            page: page(1, 1),
            site: site::WP,
            ..Default::default()
        }
    }

    fn decode(r: &CowFaultRecord) -> CowFault {
        cow_fault(r, &consts_6_1()).unwrap()
    }

    #[test]
    fn copy_when_pfn_changes() {
        let f = decode(&rec(pte(NEW_PFN, PRESENT | RW)));
        assert_eq!(f.site, Site::Wp);
        assert_eq!(f.fault, FaultKind::Write);
        assert_eq!(f.pfn, PFN);
        assert_eq!((f.decision, f.new_pfn), (Decision::Copy, Some(NEW_PFN)));
        assert!(!f.shared_mapping);
    }

    #[test]
    fn reuse_when_same_pfn_made_writable() {
        let f = decode(&rec(pte(PFN, PRESENT | RW)));
        assert_eq!((f.decision, f.new_pfn), (Decision::Reuse, None));
    }

    #[test]
    fn write_fault_same_pfn_still_read_only_is_other() {
        let f = decode(&rec(pte(PFN, PRESENT)));
        assert_eq!(f.decision, Decision::Other);
    }

    #[test]
    fn unshare_reuse_keeps_pte_read_only() {
        let mut r = rec(pte(PFN, PRESENT));
        r.fault_flags = FAULT_FLAG_UNSHARE;
        let f = decode(&r);
        assert_eq!(f.fault, FaultKind::Unshare);
        assert_eq!((f.decision, f.new_pfn), (Decision::Reuse, None));
    }

    #[test]
    fn unshare_copy() {
        let mut r = rec(pte(NEW_PFN, PRESENT));
        r.fault_flags = FAULT_FLAG_UNSHARE;
        let f = decode(&r);
        assert_eq!(f.fault, FaultKind::Unshare);
        assert_eq!((f.decision, f.new_pfn), (Decision::Copy, Some(NEW_PFN)));
    }

    #[test]
    fn unshare_bit_is_a_write_fault_on_5_10() {
        // 5.10 has no FAULT_FLAG_UNSHARE: bit 10 means something else there.
        let mut r = rec(pte(PFN, PRESENT));
        r.fault_flags = FAULT_FLAG_UNSHARE;
        let f = cow_fault(&r, &consts_5_10()).unwrap();
        assert_eq!((f.fault, f.decision), (FaultKind::Write, Decision::Other));
    }

    #[test]
    fn error_and_retry_returns_are_other() {
        for ret in [VM_FAULT_OOM, VM_FAULT_RETRY] {
            let mut r = rec(pte(NEW_PFN, PRESENT | RW));
            r.ret = ret;
            let f = decode(&r);
            assert_eq!(
                (f.decision, f.new_pfn),
                (Decision::Other, None),
                "ret {ret:#x}"
            );
            assert_eq!(f.ret, ret);
        }
    }

    #[test]
    fn shared_mapping_is_other() {
        let mut r = rec(pte(PFN, PRESENT | RW));
        r.vm_flags |= VM_SHARED;
        let f = decode(&r);
        assert!(f.shared_mapping);
        assert_eq!(f.decision, Decision::Other);
    }

    #[test]
    fn zero_page_is_other() {
        let mut r = rec(pte(NEW_PFN, PRESENT | RW));
        r.page.flags |= PG_RESERVED;
        assert_eq!(decode(&r).decision, Decision::Other);
        // The same bit on an unreadable snapshot is not trusted.
        r.page.state = 0;
        assert_eq!(decode(&r).decision, Decision::Copy);
    }

    #[test]
    fn after_unreadable_or_not_present_is_other() {
        let mut r = rec(pte(NEW_PFN, PRESENT | RW));
        r.after_valid = 0;
        assert_eq!(decode(&r).decision, Decision::Other);
        let r = rec(pte(NEW_PFN, RW));
        assert_eq!(decode(&r).decision, Decision::Other);
    }

    /// A write fault on a swap entry, with `after` read back at return.
    fn swap(after: u64) -> CowFaultRecord {
        CowFaultRecord {
            site: site::SWAP,
            orig_entry: 0x3_4500, // a swap entry: present bit clear
            ..rec(after)
        }
    }

    #[test]
    fn swap_in_mapped_writable_is_reuse_of_the_page_after() {
        let f = decode(&swap(pte(PFN, PRESENT | RW)));
        assert_eq!(f.site, Site::Swap);
        assert_eq!((f.pfn, f.decision, f.new_pfn), (PFN, Decision::Reuse, None));
    }

    #[test]
    fn swap_in_handed_over_to_do_wp_page_is_other_without_pfn() {
        // The nested do_wp_page copied: the PTE is writable on a new page,
        // but the decision is the WP record's, not the swap-in's.
        let mut r = swap(pte(NEW_PFN, PRESENT | RW));
        r.nested_wp = 1;
        let f = decode(&r);
        assert_eq!((f.pfn, f.decision), (0, Decision::Other));
    }

    #[test]
    fn swap_in_not_reused_cases_are_other() {
        // Mapped read-only (no write fault, or a page left shared).
        assert_eq!(decode(&swap(pte(PFN, PRESENT))).decision, Decision::Other);
        // Not mapped after (error, or a racing zap).
        assert_eq!(decode(&swap(pte(PFN, RW))).decision, Decision::Other);
        let mut r = swap(pte(PFN, PRESENT | RW));
        r.after_valid = 0;
        assert_eq!(decode(&r).decision, Decision::Other);
        for ret in [VM_FAULT_OOM, VM_FAULT_RETRY] {
            let mut r = swap(pte(PFN, PRESENT | RW));
            r.ret = ret;
            assert_eq!(decode(&r).decision, Decision::Other, "ret {ret:#x}");
        }
        let mut r = swap(pte(PFN, PRESENT | RW));
        r.fault_flags = 0;
        assert_eq!(decode(&r).decision, Decision::Other);
        let mut r = swap(pte(PFN, PRESENT | RW));
        r.vm_flags |= VM_SHARED;
        assert_eq!(decode(&r).decision, Decision::Other);
    }

    #[test]
    fn swap_count_comes_from_the_swap_witness_of_swap_records_only() {
        let mut r = swap(pte(PFN, PRESENT | RW));
        r.swap_format = tracer_common::swap_witness::SWAP_MAP;
        r.swap_witness = 0x42; // SWAP_HAS_CACHE | 2
        assert_eq!(decode(&r).swap_count, Some(2));
        r.swap_format = tracer_common::swap_witness::NONE;
        assert_eq!(decode(&r).swap_count, None);
        // The same bytes on a write-protect record mean nothing.
        let mut w = rec(pte(PFN, PRESENT | RW));
        w.swap_format = tracer_common::swap_witness::SWAP_MAP;
        w.swap_witness = 0x2;
        assert_eq!(decode(&w).swap_count, None);
    }

    fn thp(after: u64, ret: u32) -> CowFaultRecord {
        CowFaultRecord {
            site: site::THP,
            orig_entry: pte(PFN & !0x1ff, PRESENT | PMD_PSE) | PAT_LARGE,
            entry_after: after,
            ret,
            ..rec(0)
        }
    }

    #[test]
    fn thp_pat_bit_is_not_part_of_pfn() {
        let head = PFN & !0x1ff;
        let f = decode(&thp(pte(head, PRESENT | RW | PMD_PSE) | PAT_LARGE, 0));
        assert_eq!(f.site, Site::Thp);
        assert_eq!(f.pfn, head);
        assert_eq!((f.decision, f.new_pfn), (Decision::Reuse, None));
        // A WP site keeps bit 12 as a pfn bit.
        let wp = decode(&rec(pte(PFN, PRESENT | RW) | PAT_LARGE));
        assert_eq!((wp.decision, wp.new_pfn), (Decision::Copy, Some(PFN | 1)));
    }

    #[test]
    fn thp_copy() {
        let new = NEW_PFN & !0x1ff;
        let f = decode(&thp(pte(new, PRESENT | RW | PMD_PSE), 0));
        assert_eq!((f.decision, f.new_pfn), (Decision::Copy, Some(new)));
    }

    #[test]
    fn thp_fallback_is_other() {
        // A table where VM_FAULT_FALLBACK is not in the error mask: the THP
        // rule alone must make it Other.
        let mut c = consts_6_1();
        c.vm_fault_error_mask &= !VM_FAULT_FALLBACK;
        let head = PFN & !0x1ff;
        let f = cow_fault(
            &thp(pte(head, PRESENT | RW | PMD_PSE), VM_FAULT_FALLBACK),
            &c,
        )
        .unwrap();
        assert_eq!(f.decision, Decision::Other);
        // The same return at a PTE site is not a fallback.
        let mut r = rec(pte(PFN, PRESENT | RW));
        r.ret = VM_FAULT_FALLBACK;
        assert_eq!(cow_fault(&r, &c).unwrap().decision, Decision::Reuse);
        // A PMD that lost PSE was split, whatever the return said.
        let f = cow_fault(&thp(pte(NEW_PFN, PRESENT | RW), 0), &c).unwrap();
        assert_eq!(f.decision, Decision::Other);
    }

    #[test]
    fn unknown_site_is_rejected() {
        let mut r = rec(0);
        r.site = 200;
        assert!(cow_fault(&r, &consts_6_1()).is_none());
    }

    // --- page state ---

    const PG_RESERVED: u64 = 1 << 12;
    const PG_OWNER_PRIV_1: u64 = 1 << 10; // PG_swapcache
    const PG_MAPPEDTODISK: u64 = 1 << 17; // PG_anon_exclusive on 6.1
    const PG_SWAPBACKED: u64 = 1 << 19;

    #[test]
    fn page_state_5_10_has_no_anon_exclusive() {
        let mut p = page(3, 2);
        p.flags = PG_MAPPEDTODISK;
        p.head_flags = PG_SWAPBACKED | PG_OWNER_PRIV_1;
        let s = page_state(&p, &consts_5_10());
        assert_eq!(
            s,
            PageState {
                valid: true,
                refcount: 3,
                mapcount: 2,
                anon: true,
                anon_exclusive: None,
                ksm: false,
                swapcache: true,
                large: false,
            }
        );
    }

    #[test]
    fn page_state_6_1_anon_exclusive_is_per_page() {
        let c = consts_6_1();
        let mut p = page(1, 1);
        p.flags = PG_MAPPEDTODISK;
        assert_eq!(page_state(&p, &c).anon_exclusive, Some(true));
        // The head's copy of the bit does not count for this page.
        p.flags = 0;
        p.head_flags = PG_MAPPEDTODISK;
        assert_eq!(page_state(&p, &c).anon_exclusive, Some(false));
    }

    #[test]
    fn swapcache_needs_swapbacked() {
        let c = consts_6_1();
        let mut p = page(2, 1);
        // PG_owner_priv_1 on a folio that is not swap-backed: a filesystem's
        // private bit (PG_checked etc.), not the swap cache.
        p.head_flags = PG_OWNER_PRIV_1;
        assert!(!page_state(&p, &c).swapcache);
        p.head_flags = PG_OWNER_PRIV_1 | PG_SWAPBACKED;
        assert!(page_state(&p, &c).swapcache);
        // Read from the head, not the page.
        p.flags = PG_OWNER_PRIV_1 | PG_SWAPBACKED;
        p.head_flags = 0;
        assert!(!page_state(&p, &c).swapcache);
        // Unknown bit numbers: never claim swapcache.
        let mut c2 = c.clone();
        c2.pg_swapbacked = None;
        p.head_flags = PG_OWNER_PRIV_1 | PG_SWAPBACKED;
        assert!(!page_state(&p, &c2).swapcache);
    }

    #[test]
    fn ksm_and_anon_from_mapping_bits() {
        let c = consts_6_1();
        let mut p = page(1, 1);
        p.mapping_low = 0x3; // PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE = KSM
        let s = page_state(&p, &c);
        assert!(s.anon && s.ksm);
        p.mapping_low = 0x2; // movable non-anon (e.g. zsmalloc)
        let s = page_state(&p, &c);
        assert!(!s.anon && !s.ksm);
        p.mapping_low = 0;
        let s = page_state(&p, &c);
        assert!(!s.anon && !s.ksm);
    }

    #[test]
    fn large_folio_mapcount() {
        let c = consts_6_1();
        let mut p = page(5, 1);
        p.state |= PageSnapshot::COMPOUND | PageSnapshot::TAIL;
        p.large_mapcount = 4;
        let s = page_state(&p, &c);
        assert!(s.large);
        assert_eq!(s.mapcount, 4);
        // No folio-wide count on this kernel: the page's own count.
        p.large_mapcount = PageSnapshot::NO_COUNT;
        assert_eq!(page_state(&p, &c).mapcount, 1);
        // A folio count on a small page is ignored.
        let mut small = page(1, 1);
        small.large_mapcount = 9;
        assert_eq!(page_state(&small, &c).mapcount, 1);
    }

    #[test]
    fn invalid_page_is_all_zero() {
        let mut p = page(3, 2);
        p.flags = u64::MAX;
        p.head_flags = u64::MAX;
        p.state = PageSnapshot::COMPOUND;
        assert_eq!(page_state(&p, &consts_6_1()), PageState::default());
    }

    #[test]
    fn out_of_range_bit_numbers_do_not_panic() {
        assert!(!test_bit(u64::MAX, 64));
        assert!(test_bit(1 << 63, 63));
        let mut c = consts_6_1();
        c.pg_anon_exclusive = Some(200);
        assert_eq!(page_state(&page(1, 1), &c).anon_exclusive, Some(false));
        assert!(!is_reserved(
            &page(1, 1),
            &KernelConsts {
                pg_reserved: Some(99),
                ..c
            }
        ));
    }
}
