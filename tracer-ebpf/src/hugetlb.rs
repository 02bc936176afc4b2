//! hugetlb write-protect decisions: `hugetlb_cow` (5.10) / `hugetlb_wp`
//! (6.1+), whose prototype changed twice:
//!
//! * 5.10 `hugetlb_cow(mm, vma, address, ptep, pagecache_page, ptl)`:
//!   called for write faults only (no flags argument);
//! * 6.1 `hugetlb_wp(mm, vma, address, ptep, flags, pagecache_page, ptl)`;
//! * 6.10+ `hugetlb_wp(pagecache_folio, vmf)`; later `hugetlb_wp(vmf)`.
//!
//! One entry program per shape, one exit program: the witness is the huge
//! PTE before and after (same pfn and writable: reused; new pfn: copied),
//! read through the PTE pointer saved at entry.
//!
//! A hugetlb folio is mapped as a whole only: the kernel counts its
//! mappings in the folio-wide "entire" mapcount, never in the head page's
//! `_mapcount` (which stays -1). The record's `large_mapcount` carries that
//! count, so the decision's mapcount is the one `hugetlb_wp` looked at.

use aya_ebpf::{
    macros::{kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{CowFaultRecord, hook, kind, site};

use crate::{
    emit, global,
    kmem::read,
    page::{self, PTE_PFN_MASK, PTE_PRESENT},
};

/// `FAULT_FLAG_WRITE` (1 on every line): what 5.10's `hugetlb_cow`,
/// called only for write faults, implies.
const FAULT_FLAG_WRITE: u32 = 1;
/// Huge-PTE bit 12 is PAT, not part of the pfn.
const PAT_LARGE: u64 = 1 << 12;

#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    rec: CowFaultRecord,
    ptep: u64,
}

#[map(name = "HUGETLB")]
static PENDING: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(1024, 0);

/// What each prototype gives: the VMA, the address, the PTE pointer, flags.
struct Args {
    vma: u64,
    address: u64,
    ptep: u64,
    flags: u32,
}

/// 5.10 `hugetlb_cow(mm, vma, address, ptep, ...)`.
#[kprobe]
pub fn hugetlb_entry_cow(ctx: ProbeContext) -> u32 {
    run(|| {
        Ok(Args {
            vma: ctx.arg(1).ok_or(-1i64)?,
            address: ctx.arg(2).ok_or(-1i64)?,
            ptep: ctx.arg(3).ok_or(-1i64)?,
            flags: FAULT_FLAG_WRITE,
        })
    })
}

/// 6.1 `hugetlb_wp(mm, vma, address, ptep, flags, ...)`.
#[kprobe]
pub fn hugetlb_entry_flags(ctx: ProbeContext) -> u32 {
    run(|| {
        Ok(Args {
            vma: ctx.arg(1).ok_or(-1i64)?,
            address: ctx.arg(2).ok_or(-1i64)?,
            ptep: ctx.arg(3).ok_or(-1i64)?,
            flags: ctx.arg::<u64>(4).ok_or(-1i64)? as u32,
        })
    })
}

/// 6.10+ `hugetlb_wp(pagecache_folio, vmf)`.
#[kprobe]
pub fn hugetlb_entry_vmf1(ctx: ProbeContext) -> u32 {
    run(|| of_vmf(ctx.arg(1).ok_or(-1i64)?))
}

/// `hugetlb_wp(vmf)`.
#[kprobe]
pub fn hugetlb_entry_vmf0(ctx: ProbeContext) -> u32 {
    run(|| of_vmf(ctx.arg(0).ok_or(-1i64)?))
}

#[inline(always)]
fn of_vmf(vmf: u64) -> Result<Args, i64> {
    Ok(Args {
        vma: read::<u64>(vmf, global!(LAYOUT.vmf_vma))?,
        address: read::<u64>(vmf, global!(LAYOUT.vmf_address))?,
        ptep: read::<u64>(vmf, global!(LAYOUT.vmf_pte))?,
        flags: read::<u32>(vmf, global!(LAYOUT.vmf_flags))?,
    })
}

#[inline(always)]
fn run(args: impl FnOnce() -> Result<Args, i64>) -> u32 {
    if emit::passes() && entry(args).is_err() {
        emit::error(hook::HUGETLB);
    }
    0
}

#[inline(always)]
fn entry(args: impl FnOnce() -> Result<Args, i64>) -> Result<(), i64> {
    let a = args()?;
    let mut p = Pending {
        rec: CowFaultRecord::default(),
        ptep: a.ptep,
    };
    let rec = &mut p.rec;
    emit::header(
        &mut rec.hdr,
        kind::COW_FAULT,
        hook::HUGETLB,
        core::mem::size_of::<CowFaultRecord>(),
    );
    rec.site = site::HUGETLB;
    rec.fault_flags = a.flags;
    rec.address = a.address;
    rec.vm_flags = read::<u64>(a.vma, global!(LAYOUT.vma_flags))?;
    rec.hdr.mm = read::<u64>(a.vma, global!(LAYOUT.vma_mm))?;
    rec.orig_entry = read::<u64>(a.ptep, 0)?;
    if rec.orig_entry & PTE_PRESENT != 0 {
        let pfn = (rec.orig_entry & PTE_PFN_MASK & !PAT_LARGE) >> 12;
        // A huge PTE maps the folio's head page.
        let head = page::page_of_pfn(pfn);
        page::snapshot(head, &mut rec.page, crate::kmem::set::KPROBE);
        if let Ok(m) = read::<i32>(head, global!(LAYOUT.folio_entire_mapcount)) {
            rec.page.large_mapcount = m + 1;
        }
    }
    PENDING.insert(emit::task_key(), p, 0).map_err(|e| e as i64)
}

#[kretprobe]
pub fn hugetlb_exit(ctx: RetProbeContext) -> u32 {
    let key = emit::task_key();
    let Some(p) = PENDING.get_ptr_mut(key) else {
        return 0;
    };
    // SAFETY: a valid map value pointer for this task.
    let p = unsafe { &mut *p };
    p.rec.ret = ctx.ret::<u64>() as u32;
    if let Ok(after) = read::<u64>(p.ptep, 0) {
        p.rec.entry_after = after;
        p.rec.after_valid = 1;
    }
    emit::output(hook::HUGETLB, &p.rec);
    let _ = PENDING.remove(key);
    0
}
