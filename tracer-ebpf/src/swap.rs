//! Swap-in decisions: `do_swap_page(vmf)`.
//!
//! A write fault on a swapped-out anonymous page is decided inside
//! `do_swap_page`: the page read back from swap is either mapped writable in
//! place (5.10: `reuse_swap_page`; 5.19+: the swap entry's anon-exclusive
//! bit) or mapped read-only and handed to `do_wp_page`, called from inside
//! `do_swap_page`, which copies or reuses it under its own rules. The
//! decision is inline on 6.1+, so the witness is the same on every line:
//! the PTE re-read at return through `vmf->pte` saved at entry (the kernel
//! clears `vmf->pte` on its way), and whether `do_wp_page` ran in between
//! (`note_wp`, called by the `do_wp_page` entry probe).
//!
//! Entries live in their own map: the nested `do_wp_page` uses the fault
//! map for the same task at the same time.
//!
//! The swap count of the entry is read at entry, from the swap PTE the
//! fault starts from (`vmf->orig_pte`): before `do_swap_page` drops this
//! mapping's reference, and whether or not the page is still in the swap
//! cache. 5.10's `reuse_swap_page` counts exactly these references (plus
//! mappings); 5.19+ decide by the anon-exclusive bit, and the count shows
//! why a page could not be exclusive.

use aya_ebpf::{
    macros::{kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{CowFaultRecord, hook, kind, layout::ABSENT, site, swap_witness};

use crate::{
    emit, global,
    kmem::read,
    page::{self, PTE_PFN_MASK, PTE_PRESENT},
};

/// `FAULT_FLAG_WRITE`: 1 on every line (a macro on 5.10, `enum fault_flag`
/// from 5.13; see kernel-facts.md). Read faults that swap a page in decide
/// nothing about COW and are not recorded.
const FAULT_FLAG_WRITE: u32 = 1;

/// x86_64 swap PTE (arch/x86/include/asm/pgtable_64.h, unchanged since the
/// L1TF rework in 4.19): the type in the top `SWP_TYPE_BITS` bits, the
/// offset stored inverted in the bits from `SWP_OFFSET_FIRST_BIT`
/// (`_PAGE_BIT_PROTNONE + 1`) up to the type. The flag bits below
/// (soft-dirty, uffd-wp, 5.19+'s exclusive bit) are not part of either.
const SWP_TYPE_BITS: u32 = 5;
const SWP_OFFSET_FIRST_BIT: u32 = 9;

#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    rec: CowFaultRecord,
    /// `vmf->pte` at entry: where to re-read the PTE at exit.
    pte_ptr: u64,
}

/// In-flight swap-ins by task (`pid_tgid`).
#[map(name = "SWAPS")]
static SWAPS: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(1024, 0);

#[kprobe]
pub fn swap_entry(ctx: ProbeContext) -> u32 {
    if emit::passes() && entry(&ctx).is_err() {
        emit::error(hook::SWAP);
    }
    0
}

#[inline(always)]
fn entry(ctx: &ProbeContext) -> Result<(), i64> {
    let vmf: u64 = ctx.arg(0).ok_or(-1i64)?;
    let flags = read::<u32>(vmf, global!(LAYOUT.vmf_flags))?;
    if flags & FAULT_FLAG_WRITE == 0 {
        return Ok(());
    }
    let mut p = Pending {
        rec: CowFaultRecord::default(),
        pte_ptr: read::<u64>(vmf, global!(LAYOUT.vmf_pte))?,
    };
    let rec = &mut p.rec;
    emit::header(
        &mut rec.hdr,
        kind::COW_FAULT,
        hook::SWAP,
        core::mem::size_of::<CowFaultRecord>(),
    );
    rec.site = site::SWAP;
    rec.fault_flags = flags;
    rec.address = read::<u64>(vmf, global!(LAYOUT.vmf_address))?;
    let vma = read::<u64>(vmf, global!(LAYOUT.vmf_vma))?;
    rec.vm_flags = read::<u64>(vma, global!(LAYOUT.vma_flags))?;
    rec.hdr.mm = read::<u64>(vma, global!(LAYOUT.vma_mm))?;
    // The swap entry (not present): no page behind it yet.
    rec.orig_entry = read::<u64>(vmf, global!(LAYOUT.vmf_orig_pte))?;
    if let Some((format, witness)) = swap_count_witness(rec.orig_entry) {
        rec.swap_format = format;
        rec.swap_witness = witness;
    }
    SWAPS.insert(emit::task_key(), p, 0).map_err(|e| e as i64)
}

/// The kernel's count of references to the swap slot `pte` names, raw
/// (see [`swap_witness`]). `None` when the layout lacks what it needs, the
/// entry is no swap slot (migration, device and marker entries have types
/// beyond `nr_swapfiles`), or a read fails: the record then says so
/// (`swap_format` NONE) and the decision is still recorded.
#[inline(always)]
fn swap_count_witness(pte: u64) -> Option<(u8, u64)> {
    if pte == 0 || pte & PTE_PRESENT != 0 {
        return None;
    }
    let ty = pte >> (64 - SWP_TYPE_BITS);
    let offset = (!pte << SWP_TYPE_BITS) >> (SWP_OFFSET_FIRST_BIT + SWP_TYPE_BITS);
    let nr = read::<u32>(global!(LAYOUT.nr_swapfiles_sym), 0).ok()?;
    if ty >= u64::from(nr) {
        return None;
    }
    let si = read::<u64>(global!(LAYOUT.swap_info_sym) + ty * 8, 0).ok()?;
    let max = read::<u32>(si, global!(LAYOUT.swap_info_max)).ok()?;
    if offset >= u64::from(max) {
        return None;
    }
    // Up to 6.x: one byte per slot in `swap_map`.
    if let Ok(map) = read::<u64>(si, global!(LAYOUT.swap_info_swap_map)) {
        let byte = read::<u8>(map + offset, 0).ok()?;
        return Some((swap_witness::SWAP_MAP, u64::from(byte)));
    }
    // 7.x: one word per slot in the cluster's swap table.
    let slots = u64::from(global!(LAYOUT.swap_table_slots));
    let ci_size = global!(LAYOUT.swap_cluster_info_size);
    if slots == 0 || ci_size == ABSENT {
        return None;
    }
    let clusters = read::<u64>(si, global!(LAYOUT.swap_info_cluster_info)).ok()?;
    let ci = clusters + (offset / slots) * u64::from(ci_size);
    let table = read::<u64>(ci, global!(LAYOUT.swap_cluster_table)).ok()?;
    let word = read::<u64>(table + (offset % slots) * 8, 0).ok()?;
    Some((swap_witness::SWAP_TABLE, word))
}

/// Called by the `do_wp_page` entry probe: a write fault handed over by
/// the swap-in being traced on this task.
#[inline(always)]
pub fn note_wp() {
    if let Some(p) = SWAPS.get_ptr_mut(emit::task_key()) {
        // SAFETY: a valid map value pointer; only this task uses the key.
        unsafe { (*p).rec.nested_wp = 1 };
    }
}

#[kretprobe]
pub fn swap_exit(ctx: RetProbeContext) -> u32 {
    let key = emit::task_key();
    let Some(p) = SWAPS.get_ptr_mut(key) else {
        return 0;
    };
    // SAFETY: a valid map value pointer for this task.
    let p = unsafe { &mut *p };
    p.rec.ret = ctx.ret::<u64>() as u32;
    if let Ok(after) = read::<u64>(p.pte_ptr, 0) {
        p.rec.entry_after = after;
        p.rec.after_valid = 1;
        // The page the fault left mapped, as it stands after the decision
        // (mapped, swap cache possibly dropped, GUP references included).
        if after & PTE_PRESENT != 0 {
            let pg = page::page_of_pfn((after & PTE_PFN_MASK) >> 12);
            page::snapshot(pg, &mut p.rec.page, crate::kmem::set::KPROBE);
        }
    }
    emit::output(hook::SWAP, &p.rec);
    let _ = SWAPS.remove(key);
    0
}
