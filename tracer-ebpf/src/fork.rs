//! Fork: `copy_page_range(dst_vma, src_vma)` per VMA, and user-page
//! allocations inside that window, which are eager copies for the child
//! (since 5.9 a page that may be DMA-pinned is copied at fork instead of
//! shared; the copy is allocated by `alloc_pages_vma` / `vma_alloc_folio` /
//! `vma_alloc_folio_noprof`, whose 4th argument is the user address).
//!
//! hugetlb VMAs are copied by `copy_hugetlb_page_range`, called from
//! `copy_page_range`: since 5.13 a possibly pinned anonymous hugetlb page
//! is copied for the child there with the huge page copy helper
//! (`copy_user_huge_page` / `copy_user_large_folio(dst, src, addr_hint,
//! vma)`), which names both the new page and the address.

use aya_ebpf::{
    macros::{kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{ForkCopyRecord, ForkVmaRecord, hook, kind};

use crate::{emit, global, kmem::read, page};

/// Tasks inside `copy_page_range`: task key -> the child's mm.
#[map(name = "FORK_WINDOW")]
static WINDOW: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1024, 0);

#[kprobe]
pub fn fork_vma_entry(ctx: ProbeContext) -> u32 {
    if emit::passes() && vma_entry(&ctx).is_err() {
        emit::error(hook::FORK_VMA);
    }
    0
}

#[inline(always)]
fn vma_entry(ctx: &ProbeContext) -> Result<(), i64> {
    let dst: u64 = ctx.arg(0).ok_or(-1i64)?;
    let src: u64 = ctx.arg(1).ok_or(-1i64)?;
    let mut rec = ForkVmaRecord::default();
    emit::header(
        &mut rec.hdr,
        kind::FORK_VMA,
        hook::FORK_VMA,
        core::mem::size_of::<ForkVmaRecord>(),
    );
    rec.hdr.mm = read::<u64>(src, global!(LAYOUT.vma_mm))?;
    rec.child_mm = read::<u64>(dst, global!(LAYOUT.vma_mm))?;
    rec.start = read::<u64>(src, global!(LAYOUT.vma_start))?;
    rec.end = read::<u64>(src, global!(LAYOUT.vma_end))?;
    rec.vm_flags = read::<u64>(src, global!(LAYOUT.vma_flags))?;
    emit::output(hook::FORK_VMA, &rec);
    WINDOW
        .insert(emit::task_key(), rec.child_mm, 0)
        .map_err(|e| e as i64)
}

#[kretprobe]
pub fn fork_vma_exit(_ctx: RetProbeContext) -> u32 {
    let _ = WINDOW.remove(emit::task_key());
    0
}

#[kprobe]
pub fn fork_alloc(ctx: ProbeContext) -> u32 {
    // Cheap for every allocation outside a fork window: one map lookup.
    let Some(child_mm) = (unsafe { WINDOW.get(emit::task_key()) }).copied() else {
        return 0;
    };
    let mut rec = ForkCopyRecord::default();
    emit::header(
        &mut rec.hdr,
        kind::FORK_COPY,
        hook::FORK_COPY,
        core::mem::size_of::<ForkCopyRecord>(),
    );
    rec.child_mm = child_mm;
    rec.address = ctx.arg::<u64>(3).unwrap_or(0);
    emit::output(hook::FORK_COPY, &rec);
    0
}

/// `copy_user_huge_page(dst, src, addr_hint, vma, ..)` /
/// `copy_user_large_folio(dst, src, addr_hint, vma)`: inside a fork window,
/// an eager copy of a hugetlb page for the child. `dst` is the new page
/// (or folio: the same address as its head page).
#[kprobe]
pub fn fork_huge_copy(ctx: ProbeContext) -> u32 {
    // Cheap outside a fork window (hugetlb COW faults copy with it too).
    let Some(child_mm) = (unsafe { WINDOW.get(emit::task_key()) }).copied() else {
        return 0;
    };
    let mut rec = ForkCopyRecord::default();
    emit::header(
        &mut rec.hdr,
        kind::FORK_COPY,
        hook::FORK_COPY_HUGETLB,
        core::mem::size_of::<ForkCopyRecord>(),
    );
    rec.child_mm = child_mm;
    rec.address = ctx.arg::<u64>(2).unwrap_or(0);
    rec.new_pfn = page::pfn_of_page(ctx.arg::<u64>(0).unwrap_or(0));
    emit::output(hook::FORK_COPY_HUGETLB, &rec);
    0
}
