//! Why the kernel decided what it did, derived from the page state it saw.
//!
//! Each decision gets exactly one reason (the deepest cause we can name), so
//! reason counts add up to the number of decisions. The derivation follows
//! the kernel's own order of checks, which changed in 5.19:
//!
//! * 5.10 (`mm/memory.c`, `do_wp_page`, after the 5.9 simplification): an
//!   anonymous, non-KSM page is reused only if `page_count(page) == 1`
//!   (re-checked under the page lock with `page_mapcount(page) == 1`);
//!   everything else goes to `wp_page_copy`. Swap-in (`do_swap_page`) and
//!   PMD THP (`do_huge_pmd_wp_page`) ask `reuse_swap_page`, which counts
//!   mappings plus swap references and ignores other page references;
//!   `hugetlb_cow` reuses when `page_mapcount == 1 && PageAnon`.
//! * 5.19+ (6.1, 6.12, newer): `do_wp_page` reuses an anonymous page with
//!   `PageAnonExclusive` at once; otherwise it needs the sole reference
//!   (`folio_ref_count == 1`, plus one for the swap cache it tries to drop)
//!   and then marks the page exclusive (`page_move_anon_rmap` /
//!   `folio_move_anon_rmap`). FAULT_FLAG_UNSHARE faults run the same checks.
//!   `hugetlb_wp` reuses exclusive pages, or pages with a single mapping.
//! * Both: a private file-backed page is always copied (`wp_page_copy`); KSM
//!   pages are always copied.

use serde::Serialize;

use super::event::{CowFault, Decision, PageState, Site};

/// Which generation of the reuse rules applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Semantics {
    /// Before 5.19: reference counts decide.
    Refcount,
    /// 5.19 and later: PageAnonExclusive first, then the sole reference.
    AnonExclusive,
}

impl Semantics {
    pub fn from_caps(anon_exclusive: bool) -> Self {
        if anon_exclusive {
            Semantics::AnonExclusive
        } else {
            Semantics::Refcount
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    // Why a copy.
    /// Private file-backed (or otherwise non-anonymous) page.
    NotAnon,
    Ksm,
    /// Mapped by more than one page table (fork-shared): `mapcount > 1`.
    SharedByMappings,
    /// More references than mappings (GUP pins/references, pipes, the swap
    /// cache aside): `refcount > mapcount + swapcache`.
    ExtraReferences,
    /// The swap cache's reference (or another swap entry) kept the page.
    Swapcache,
    /// 5.19+: not exclusive, and the kernel found it not solely referenced
    /// (a race or a transient reference the probe did not see).
    NotAnonExclusive,
    // Why a reuse.
    /// 5.19+: PageAnonExclusive was set.
    AnonExclusive,
    /// The only reference: the page was made exclusive / writable.
    SoleReference,
    /// Reused because there was a single mapping; other references (GUP)
    /// are not counted on this path (5.10 swap/THP, hugetlb).
    SoleMapping,
    // Why neither.
    /// VM_SHARED mapping: no COW applies.
    SharedMapping,
    /// Zero page, pfn map or an unreadable page: `vm_normal_page` gave none.
    NoPage,
    Oom,
    /// SIGBUS / SIGSEGV / hardware poison.
    FaultError,
    /// The fault will be retried (lock contention).
    Retry,
    /// THP fallback / split to PTEs.
    Fallback,
    // Any decision.
    /// The page state could not be read.
    PageUnreadable,
    /// The state the probe saw says the kernel would have decided otherwise
    /// (state changed between read and decision, or lock contention).
    Unexplained,
}

impl Reason {
    pub const ALL: [Reason; 17] = [
        Reason::NotAnon,
        Reason::Ksm,
        Reason::SharedByMappings,
        Reason::ExtraReferences,
        Reason::Swapcache,
        Reason::NotAnonExclusive,
        Reason::AnonExclusive,
        Reason::SoleReference,
        Reason::SoleMapping,
        Reason::SharedMapping,
        Reason::NoPage,
        Reason::Oom,
        Reason::FaultError,
        Reason::Retry,
        Reason::Fallback,
        Reason::PageUnreadable,
        Reason::Unexplained,
    ];
    pub const COUNT: usize = Reason::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotAnon => "not_anon",
            Reason::Ksm => "ksm",
            Reason::SharedByMappings => "shared_by_mappings",
            Reason::ExtraReferences => "extra_references",
            Reason::Swapcache => "swapcache",
            Reason::NotAnonExclusive => "not_anon_exclusive",
            Reason::AnonExclusive => "anon_exclusive",
            Reason::SoleReference => "sole_reference",
            Reason::SoleMapping => "sole_mapping",
            Reason::SharedMapping => "shared_mapping",
            Reason::NoPage => "no_page",
            Reason::Oom => "oom",
            Reason::FaultError => "fault_error",
            Reason::Retry => "retry",
            Reason::Fallback => "fallback",
            Reason::PageUnreadable => "page_unreadable",
            Reason::Unexplained => "unexplained",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// `vm_fault_t` bits (`enum vm_fault_reason`, include/linux/mm_types.h; an
/// enum with these values since 5.1 and unchanged through 6.12/7.x).
mod vm_fault {
    pub const OOM: u32 = 0x0001;
    pub const SIGBUS: u32 = 0x0002;
    pub const HWPOISON: u32 = 0x0010;
    pub const HWPOISON_LARGE: u32 = 0x0020;
    pub const SIGSEGV: u32 = 0x0040;
    pub const RETRY: u32 = 0x0400;
    pub const FALLBACK: u32 = 0x0800;
}

/// References beyond the mappings and the swap cache (pins included):
/// what made a refcount-based check fail.
fn extra_refs(p: &PageState) -> i64 {
    i64::from(p.refcount) - i64::from(p.mapcount) - i64::from(p.swapcache)
}

/// The reason for one decision.
pub fn classify(sem: Semantics, f: &CowFault) -> Reason {
    match f.decision {
        Decision::Other => other_reason(f),
        _ if !f.page.valid => Reason::PageUnreadable,
        Decision::Copy => copy_reason(sem, f.site, &f.page),
        Decision::Reuse => reuse_reason(sem, f.site, &f.page),
    }
}

fn other_reason(f: &CowFault) -> Reason {
    use vm_fault::*;
    if f.shared_mapping {
        Reason::SharedMapping
    } else if f.ret & OOM != 0 {
        Reason::Oom
    } else if f.ret & (SIGBUS | SIGSEGV | HWPOISON | HWPOISON_LARGE) != 0 {
        Reason::FaultError
    } else if f.ret & RETRY != 0 {
        Reason::Retry
    } else if f.ret & FALLBACK != 0 {
        Reason::Fallback
    } else if !f.page.valid {
        Reason::NoPage
    } else {
        Reason::Unexplained
    }
}

fn copy_reason(sem: Semantics, site: Site, p: &PageState) -> Reason {
    // Both generations: wp_page_copy for anything not anonymous, and for KSM.
    if !p.anon {
        return Reason::NotAnon;
    }
    if p.ksm {
        return Reason::Ksm;
    }
    if p.mapcount > 1 {
        return Reason::SharedByMappings;
    }
    match (sem, site) {
        // hugetlb_cow (5.10) / hugetlb_wp (5.19+): a single mapping of an
        // anonymous page is reused whatever else references it.
        (_, Site::Hugetlb) => Reason::Unexplained,
        // 5.10 reuse_swap_page: mappings plus swap count; the swap cache
        // (other swap entries of the page) is what is left.
        (Semantics::Refcount, Site::Swap | Site::Thp) => {
            if p.swapcache {
                Reason::Swapcache
            } else {
                Reason::Unexplained
            }
        }
        // 5.10 do_wp_page: page_count must be 1.
        (Semantics::Refcount, Site::Wp) => {
            if extra_refs(p) > 0 {
                Reason::ExtraReferences
            } else if p.swapcache {
                Reason::Swapcache
            } else {
                Reason::Unexplained
            }
        }
        // 5.19+: an exclusive page is never copied by these paths.
        (Semantics::AnonExclusive, _) if p.anon_exclusive == Some(true) => Reason::Unexplained,
        (Semantics::AnonExclusive, _) => {
            if extra_refs(p) > 0 {
                Reason::ExtraReferences
            } else if p.swapcache {
                // The kernel tries folio_free_swap(); a copy means it could not.
                Reason::Swapcache
            } else {
                Reason::NotAnonExclusive
            }
        }
    }
}

fn reuse_reason(sem: Semantics, site: Site, p: &PageState) -> Reason {
    match sem {
        Semantics::AnonExclusive if p.anon_exclusive == Some(true) => Reason::AnonExclusive,
        Semantics::AnonExclusive if site == Site::Hugetlb => Reason::SoleMapping,
        Semantics::AnonExclusive => Reason::SoleReference,
        Semantics::Refcount if site == Site::Wp => Reason::SoleReference,
        Semantics::Refcount => Reason::SoleMapping,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::FaultKind;

    fn fault(site: Site, decision: Decision, page: PageState) -> CowFault {
        CowFault {
            site,
            fault: FaultKind::Write,
            address: 0x1000,
            pfn: 1,
            new_pfn: None,
            decision,
            shared_mapping: false,
            ret: 0,
            page,
            swap_count: None,
        }
    }

    fn anon(refcount: i32, mapcount: i32, excl: Option<bool>) -> PageState {
        PageState {
            valid: true,
            refcount,
            mapcount,
            anon: true,
            anon_exclusive: excl,
            ..PageState::default()
        }
    }

    #[test]
    fn copy_reasons_on_5_10() {
        let s = Semantics::Refcount;
        let c = |p| classify(s, &fault(Site::Wp, Decision::Copy, p));
        assert_eq!(c(anon(2, 2, None)), Reason::SharedByMappings);
        assert_eq!(c(anon(1025, 1, None)), Reason::ExtraReferences, "a pin");
        assert_eq!(c(anon(2, 1, None)), Reason::ExtraReferences, "a pipe");
        let mut sc = anon(2, 1, None);
        sc.swapcache = true;
        assert_eq!(c(sc), Reason::Swapcache);
        let mut file = anon(1, 1, None);
        file.anon = false;
        assert_eq!(c(file), Reason::NotAnon);
        let mut ksm = anon(1, 1, None);
        ksm.ksm = true;
        assert_eq!(c(ksm), Reason::Ksm);
        assert_eq!(c(anon(1, 1, None)), Reason::Unexplained);
    }

    #[test]
    fn copy_reasons_on_6_1() {
        let s = Semantics::AnonExclusive;
        let c = |p| classify(s, &fault(Site::Wp, Decision::Copy, p));
        assert_eq!(c(anon(2, 2, Some(false))), Reason::SharedByMappings);
        assert_eq!(c(anon(2, 1, Some(false))), Reason::ExtraReferences);
        assert_eq!(c(anon(1, 1, Some(false))), Reason::NotAnonExclusive);
        assert_eq!(c(anon(1025, 1, Some(true))), Reason::Unexplained);
    }

    #[test]
    fn reuse_reasons_follow_the_generation_and_site() {
        let r = |s, site, p| classify(s, &fault(site, Decision::Reuse, p));
        let a = Semantics::AnonExclusive;
        let b = Semantics::Refcount;
        assert_eq!(
            r(a, Site::Wp, anon(1025, 1, Some(true))),
            Reason::AnonExclusive
        );
        assert_eq!(
            r(a, Site::Wp, anon(1, 1, Some(false))),
            Reason::SoleReference
        );
        assert_eq!(r(b, Site::Wp, anon(1, 1, None)), Reason::SoleReference);
        assert_eq!(r(b, Site::Swap, anon(2, 1, None)), Reason::SoleMapping);
        assert_eq!(r(b, Site::Hugetlb, anon(9, 1, None)), Reason::SoleMapping);
    }

    #[test]
    fn other_reasons_by_cause() {
        let mut f = fault(Site::Wp, Decision::Other, anon(1, 1, None));
        f.shared_mapping = true;
        assert_eq!(classify(Semantics::Refcount, &f), Reason::SharedMapping);
        f.shared_mapping = false;
        f.ret = vm_fault::OOM;
        assert_eq!(classify(Semantics::Refcount, &f), Reason::Oom);
        f.ret = vm_fault::RETRY;
        assert_eq!(classify(Semantics::Refcount, &f), Reason::Retry);
        f.ret = vm_fault::FALLBACK;
        assert_eq!(classify(Semantics::Refcount, &f), Reason::Fallback);
        f.ret = 0;
        f.page = PageState::default();
        assert_eq!(classify(Semantics::Refcount, &f), Reason::NoPage);
    }

    #[test]
    fn reason_table_is_consistent() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            let j = serde_json::to_string(r).unwrap_or_default();
            assert_eq!(j, format!("\"{}\"", r.as_str()));
        }
    }
}
