//! Write-protect and unshare faults: `do_wp_page(vmf)` for PTEs and
//! `do_huge_pmd_wp_page(vmf[, orig_pmd])` for PMD-mapped THPs.
//!
//! Entry records what the kernel is about to decide on (the entry it
//! faulted on, the page behind it, the fault flags); exit re-reads the same
//! page-table entry through the pointer saved at entry. The decision witness
//! is the pfn before versus after: it exists on every kernel line, including
//! those where `wp_page_copy`/`wp_page_reuse` are inlined (6.12, 7.x).

use aya_ebpf::{
    macros::{kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{CowFaultRecord, hook, kind, layout::ABSENT, site};

use crate::{
    emit, global,
    kmem::read,
    page::{self, PTE_PFN_MASK, PTE_PRESENT},
};

/// A fault between entry and exit.
#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    rec: CowFaultRecord,
    /// `vmf->pte` / `vmf->pmd`: where to re-read the entry at exit.
    entry_ptr: u64,
}

/// In-flight faults by task (`pid_tgid`). LRU: an exit that never comes
/// (a probe attached mid-fault) cannot leak an entry forever.
#[map(name = "FAULTS")]
static FAULTS: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(4096, 0);

/// Huge-PMD bit 12 is PAT, not part of the pfn.
const PMD_PAT_LARGE: u64 = 1 << 12;

#[kprobe]
pub fn wp_entry(ctx: ProbeContext) -> u32 {
    // A write fault handed over by a traced swap-in (`do_swap_page` calls
    // `do_wp_page`): the swap record says so.
    crate::swap::note_wp();
    if emit::passes() && entry(&ctx, site::WP, hook::WP_FAULT).is_err() {
        emit::error(hook::WP_FAULT);
    }
    0
}

#[kretprobe]
pub fn wp_exit(ctx: RetProbeContext) -> u32 {
    exit(&ctx, hook::WP_FAULT);
    0
}

#[kprobe]
pub fn thp_entry(ctx: ProbeContext) -> u32 {
    if emit::passes() && entry(&ctx, site::THP, hook::THP_WP).is_err() {
        emit::error(hook::THP_WP);
    }
    0
}

#[kretprobe]
pub fn thp_exit(ctx: RetProbeContext) -> u32 {
    exit(&ctx, hook::THP_WP);
    0
}

#[inline(always)]
fn entry(ctx: &ProbeContext, site: u8, hook: u16) -> Result<(), i64> {
    let vmf: u64 = ctx.arg(0).ok_or(-1i64)?;
    let mut p = Pending {
        rec: CowFaultRecord::default(),
        entry_ptr: 0,
    };
    let rec = &mut p.rec;
    emit::header(
        &mut rec.hdr,
        kind::COW_FAULT,
        hook,
        core::mem::size_of::<CowFaultRecord>(),
    );
    rec.site = site;
    rec.address = read::<u64>(vmf, global!(LAYOUT.vmf_address))?;
    rec.fault_flags = read::<u32>(vmf, global!(LAYOUT.vmf_flags))?;
    let vma = read::<u64>(vmf, global!(LAYOUT.vmf_vma))?;
    rec.vm_flags = read::<u64>(vma, global!(LAYOUT.vma_flags))?;
    // The address space the fault is in (GUP can fault on another mm).
    rec.hdr.mm = read::<u64>(vma, global!(LAYOUT.vma_mm))?;

    let pfn = if site == site::THP {
        p.entry_ptr = read::<u64>(vmf, global!(LAYOUT.vmf_pmd))?;
        let off = global!(LAYOUT.vmf_orig_pmd);
        rec.orig_entry = if off != ABSENT {
            read::<u64>(vmf, off)?
        } else {
            // 5.10: do_huge_pmd_wp_page(vmf, orig_pmd).
            ctx.arg::<u64>(1).ok_or(-1i64)?
        };
        (rec.orig_entry & PTE_PFN_MASK & !PMD_PAT_LARGE) >> 12
    } else {
        p.entry_ptr = read::<u64>(vmf, global!(LAYOUT.vmf_pte))?;
        rec.orig_entry = read::<u64>(vmf, global!(LAYOUT.vmf_orig_pte))?;
        (rec.orig_entry & PTE_PFN_MASK) >> 12
    };
    if rec.orig_entry & PTE_PRESENT != 0 {
        let pg = page::page_of_pfn(pfn);
        page::snapshot(pg, &mut rec.page);
    }
    FAULTS
        .insert(&emit::task_key(), &p, 0)
        .map_err(|e| e as i64)
}

#[inline(always)]
fn exit(ctx: &RetProbeContext, hook: u16) {
    let key = emit::task_key();
    let Some(p) = FAULTS.get_ptr_mut(&key) else {
        // Filtered out at entry, or the entry was evicted: nothing to do.
        return;
    };
    // SAFETY: a valid map value pointer for this task; only this task uses the key.
    let p = unsafe { &mut *p };
    p.rec.ret = ctx.ret::<u64>() as u32;
    if let Ok(after) = read::<u64>(p.entry_ptr, 0) {
        p.rec.entry_after = after;
        p.rec.after_valid = 1;
    }
    emit::output(hook, &p.rec);
    let _ = FAULTS.remove(&key);
}
