//! Write-protect and unshare faults: `do_wp_page(vmf)` for PTEs and
//! `do_huge_pmd_wp_page(vmf[, orig_pmd])` for PMD-mapped THPs.
//!
//! Entry records what the kernel is about to decide on (the entry it
//! faulted on, the page behind it, the fault flags); exit re-reads the same
//! page-table entry through the pointer saved at entry. The decision witness
//! is the pfn before versus after: it exists on every kernel line, including
//! those where `wp_page_copy`/`wp_page_reuse` are inlined (6.12, 7.x).
//!
//! Two mechanisms run the same bodies: kprobe/kretprobe, and fentry/fexit
//! (a BPF trampoline: no breakpoint, no return-address hijack, and the
//! exit sees the arguments again). In lean mode ([`Filter::LEAN`]) an
//! ordinary decision is only counted per process in `COUNTS`; with fexit
//! it then costs no map entry between entry and exit at all.

use aya_ebpf::{
    helpers::bpf_get_current_comm,
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::{LruHashMap, PerCpuHashMap},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use tracer_common::{
    CowFaultRecord, Filter,
    counts::{COUNTS_MAX_ENTRIES, CountKey, CountValue, outcome},
    hook, kind,
    layout::ABSENT,
    site,
};

use crate::{
    emit, global,
    kmem::{Block, read, set, slot},
    page::{self, PTE_PFN_MASK, PTE_PRESENT},
};

/// The leading bytes of `struct vm_fault` read at once: every field the
/// probes use lies within them on the four kernel lines.
type VmfBlock = Block<96>;

/// A fault between entry and exit.
#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    rec: CowFaultRecord,
    /// `vmf->pte` / `vmf->pmd`: where to re-read the entry at exit.
    entry_ptr: u64,
}

/// Lean mode, kretprobe: an ordinary fault to count at exit. A sixth of a
/// [`Pending`], so the common case copies 16 bytes into a map, not 170.
#[repr(C)]
#[derive(Clone, Copy)]
struct ToCount {
    entry_ptr: u64,
    orig_entry: u64,
}

/// In-flight faults by task (`pid_tgid`). LRU: an exit that never comes
/// (a probe attached mid-fault) cannot leak an entry forever.
#[map(name = "FAULTS")]
static FAULTS: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(4096, 0);

/// In-flight ordinary faults of lean mode under kprobes, by task. (With
/// fexit the exit reads `vmf` again and nothing is kept.)
#[map(name = "TO_COUNT")]
static TO_COUNT: LruHashMap<u64, ToCount> = LruHashMap::with_max_entries(4096, 0);

/// Lean mode's counted decisions (see `tracer_common::counts`).
#[map(name = "COUNTS")]
static COUNTS: PerCpuHashMap<CountKey, CountValue> =
    PerCpuHashMap::with_max_entries(COUNTS_MAX_ENTRIES, 0);

/// Huge-PMD bit 12 is PAT, not part of the pfn.
const PMD_PAT_LARGE: u64 = 1 << 12;
/// x86 `_PAGE_RW`.
const PTE_WRITE: u64 = 1 << 1;
/// `VM_SHARED`: a write fault there is not copy-on-write.
const VM_SHARED: u64 = 0x8;

// ---- kprobe / kretprobe -------------------------------------------------

#[kprobe]
pub fn wp_entry(ctx: ProbeContext) -> u32 {
    let vmf = ctx.arg::<u64>(0).unwrap_or(0);
    wp_enter(vmf, false);
    0
}

#[kretprobe]
pub fn wp_exit(ctx: RetProbeContext) -> u32 {
    exit(ctx.ret::<u64>(), hook::WP_FAULT, 0);
    0
}

#[kprobe]
pub fn thp_entry(ctx: ProbeContext) -> u32 {
    if emit::passes() {
        let vmf = ctx.arg::<u64>(0).unwrap_or(0);
        // 5.10: do_huge_pmd_wp_page(vmf, orig_pmd); later kernels keep it
        // in vmf (the arg is then read only to be ignored).
        let arg1 = ctx.arg::<u64>(1).unwrap_or(0);
        if entry(vmf, arg1, site::THP, hook::THP_WP, false).is_err() {
            emit::error(hook::THP_WP);
        }
    }
    0
}

#[kretprobe]
pub fn thp_exit(ctx: RetProbeContext) -> u32 {
    exit(ctx.ret::<u64>(), hook::THP_WP, 0);
    0
}

// ---- fentry / fexit ------------------------------------------------------
// The target is given at load time (the attach plan); an fexit program
// sees the arguments followed by the return value. THP only from 5.18
// (`do_huge_pmd_wp_page(vmf)`): 5.10 passes a `pmd_t` by value, which
// trampolines before 6.1 cannot take.

#[fentry]
pub fn wp_fentry(ctx: FEntryContext) -> u32 {
    wp_enter(ctx.arg::<u64>(0), true);
    0
}

#[fexit]
pub fn wp_fexit(ctx: FExitContext) -> u32 {
    exit(ctx.arg::<u64>(1), hook::WP_FAULT, ctx.arg::<u64>(0));
    0
}

#[fentry]
pub fn thp_fentry(ctx: FEntryContext) -> u32 {
    if emit::passes() && entry(ctx.arg::<u64>(0), 0, site::THP, hook::THP_WP, true).is_err() {
        emit::error(hook::THP_WP);
    }
    0
}

#[fexit]
pub fn thp_fexit(ctx: FExitContext) -> u32 {
    exit(ctx.arg::<u64>(1), hook::THP_WP, 0);
    0
}

// ---- shared bodies -------------------------------------------------------

#[inline(always)]
fn wp_enter(vmf: u64, has_fexit: bool) {
    // A write fault handed over by a traced swap-in (`do_swap_page` calls
    // `do_wp_page`): the swap record says so.
    if global!(FILTER.swap_hook) != 0 {
        crate::swap::note_wp();
    }
    if emit::passes() && entry(vmf, 0, site::WP, hook::WP_FAULT, has_fexit).is_err() {
        emit::error(hook::WP_FAULT);
    }
}

/// `arg1`: `do_huge_pmd_wp_page`'s second argument where it has one.
/// `has_fexit`: the exit program sees `vmf` again, so a lean-mode ordinary
/// fault needs nothing kept for it.
#[inline(always)]
fn entry(vmf: u64, arg1: u64, site: u8, hook: u16, has_fexit: bool) -> Result<(), i64> {
    let mut p = Pending {
        rec: CowFaultRecord::default(),
        entry_ptr: 0,
    };
    let rec = &mut p.rec;
    rec.site = site;
    // The `vm_fault` words in one read (falling back to one read per word
    // for a field beyond the block).
    let scratch = match (has_fexit, site) {
        (false, _) => set::KPROBE,
        (true, site::THP) => set::THP_FENTRY,
        (true, _) => set::WP_FENTRY,
    };
    let block = VmfBlock::read(vmf, scratch, slot::VMF);
    let word = |off: u32| -> Result<u64, i64> {
        match block.as_ref().and_then(|b| b.get::<u64>(off)) {
            Some(v) => Ok(v),
            None => read::<u64>(vmf, off),
        }
    };
    rec.address = word(global!(LAYOUT.vmf_address))?;
    rec.fault_flags = match block
        .as_ref()
        .and_then(|b| b.get::<u32>(global!(LAYOUT.vmf_flags)))
    {
        Some(v) => v,
        None => read::<u32>(vmf, global!(LAYOUT.vmf_flags))?,
    };
    let vma = word(global!(LAYOUT.vmf_vma))?;
    rec.vm_flags = read::<u64>(vma, global!(LAYOUT.vma_flags))?;

    let pfn = if site == site::THP {
        p.entry_ptr = word(global!(LAYOUT.vmf_pmd))?;
        let off = global!(LAYOUT.vmf_orig_pmd);
        rec.orig_entry = if off != ABSENT { word(off)? } else { arg1 };
        (rec.orig_entry & PTE_PFN_MASK & !PMD_PAT_LARGE) >> 12
    } else {
        p.entry_ptr = word(global!(LAYOUT.vmf_pte))?;
        rec.orig_entry = word(global!(LAYOUT.vmf_orig_pte))?;
        (rec.orig_entry & PTE_PFN_MASK) >> 12
    };
    if rec.orig_entry & PTE_PRESENT != 0 {
        let pg = page::page_of_pfn(pfn);
        page::snapshot(pg, &mut rec.page, scratch);
        // A PMD mapping counts in the folio's "entire" mapcount, not in the
        // head page's `_mapcount`: before `_large_mapcount` (6.9) that word
        // is the THP's mapcount the decision used.
        if site == site::THP
            && rec.page.large_mapcount == tracer_common::PageSnapshot::NO_COUNT
            && let Ok(m) = read::<i32>(pg, global!(LAYOUT.folio_entire_mapcount))
        {
            rec.page.large_mapcount = m + 1;
        }
    }
    if global!(FILTER.mode) == Filter::LEAN && ordinary(rec) {
        // Counted at exit: no envelope, no address space needed.
        if has_fexit {
            return Ok(());
        }
        let c = ToCount {
            entry_ptr: p.entry_ptr,
            orig_entry: rec.orig_entry,
        };
        return TO_COUNT
            .insert(emit::task_key(), c, 0)
            .map_err(|e| e as i64);
    } else {
        // The address space the fault is in (GUP can fault on another mm).
        let mm = read::<u64>(vma, global!(LAYOUT.vma_mm))?;
        emit::header_for(
            &mut rec.hdr,
            kind::COW_FAULT,
            hook,
            core::mem::size_of::<CowFaultRecord>(),
            mm,
        );
    }
    FAULTS.insert(emit::task_key(), p, 0).map_err(|e| e as i64)
}

/// A decision no alert can be about: a write (not unshare) fault on a
/// private mapping, on a small page whose every reference is one of its
/// mappings or the swap cache's. A GUP reference or pin, a large folio, an
/// unreadable page: recorded in full.
#[inline(always)]
fn ordinary(rec: &CowFaultRecord) -> bool {
    use tracer_common::PageSnapshot as P;
    let s = &rec.page;
    if rec.site != site::WP
        || rec.fault_flags & global!(FILTER.unshare_flag) != 0
        || rec.vm_flags & VM_SHARED != 0
        || s.state & P::VALID == 0
        || s.state & (P::COMPOUND | P::TAIL) != 0
        || s.mapcount < 1
    {
        return false;
    }
    let bit = global!(FILTER.pg_swapcache);
    let swapcache = bit < 64 && (s.flags >> bit) & 1 != 0;
    s.refcount <= s.mapcount + swapcache as i32
}

/// `vmf`: the fexit's view of the argument (0 for kretprobes).
#[inline(always)]
fn exit(ret: u64, hook: u16, vmf: u64) {
    let key = emit::task_key();
    if vmf == 0 && global!(FILTER.mode) == Filter::LEAN {
        // kretprobe, lean mode: most faults are counted ones.
        if let Some(c) = TO_COUNT.get_ptr(key) {
            // SAFETY: a valid map value pointer for this task's key.
            let c = unsafe { *c };
            count(c.orig_entry, read::<u64>(c.entry_ptr, 0).ok(), ret, hook);
            let _ = TO_COUNT.remove(key);
            return;
        }
    }
    let Some(p) = FAULTS.get_ptr_mut(key) else {
        // No entry: filtered out, failed, or (fexit, lean mode) an
        // ordinary fault that entry chose to count.
        if vmf != 0 && global!(FILTER.mode) == Filter::LEAN && emit::passes() {
            count_from_vmf(vmf, ret, hook);
        }
        return;
    };
    // SAFETY: a valid map value pointer for this task; only this task uses the key.
    let p = unsafe { &mut *p };
    p.rec.ret = ret as u32;
    if let Ok(after) = read::<u64>(p.entry_ptr, 0) {
        p.rec.entry_after = after;
        p.rec.after_valid = 1;
    }
    emit::output(hook, &p.rec);
    let _ = FAULTS.remove(key);
}

/// fexit, lean mode: the PTE before (`vmf->orig_pte`) and after.
#[inline(always)]
fn count_from_vmf(vmf: u64, ret: u64, hook: u16) {
    let Ok(orig) = read::<u64>(vmf, global!(LAYOUT.vmf_orig_pte)) else {
        emit::error(hook);
        return;
    };
    let after = read::<u64>(vmf, global!(LAYOUT.vmf_pte))
        .and_then(|ptr| read::<u64>(ptr, 0))
        .ok();
    count(orig, after, ret, hook);
}

/// Classifies an ordinary decision as the decoder would and counts it.
#[inline(always)]
fn count(orig: u64, after: Option<u64>, ret: u64, hook: u16) {
    let failed = ret as u32 & global!(FILTER.fault_fail_mask) != 0;
    let outcome = match after {
        Some(a) if !failed && a & PTE_PRESENT != 0 => {
            if (a & PTE_PFN_MASK) != (orig & PTE_PFN_MASK) {
                outcome::COPY
            } else if a & PTE_WRITE != 0 {
                outcome::REUSE
            } else {
                outcome::OTHER
            }
        }
        _ => outcome::OTHER,
    };
    let key = CountKey {
        tgid: (emit::task_key() >> 32) as u32,
        site: site::WP,
        outcome,
        _pad: [0; 2],
    };
    if let Some(v) = COUNTS.get_ptr_mut(key) {
        // SAFETY: this CPU's slot; BPF programs do not migrate.
        unsafe { (*v).count += 1 };
        return;
    }
    let v = CountValue {
        count: 1,
        comm: bpf_get_current_comm().unwrap_or_default(),
    };
    if COUNTS.insert(key, v, 0).is_err() {
        emit::lost(hook);
    }
}
