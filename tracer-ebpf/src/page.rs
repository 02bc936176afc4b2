//! `struct page` state as the kernel sees it: pfn -> page, then the words
//! the COW and GUP decisions rest on (flags, refcount, mapcount, mapping,
//! compound head; the folio-wide mapcount of large folios where it exists).

use tracer_common::{PageSnapshot, layout::ABSENT};

use crate::{global, kmem::read};

/// x86_64 PTE pfn field (bits 12..51).
pub const PTE_PFN_MASK: u64 = 0x000f_ffff_ffff_f000;
pub const PTE_PRESENT: u64 = 1;

/// `struct page *` of pfn 0: the value of `vmemmap_base` (KASLR) or the
/// fixed default.
#[inline(always)]
pub fn vmemmap() -> u64 {
    let sym = global!(LAYOUT.vmemmap_base_sym);
    if sym != 0 {
        read::<u64>(sym, 0).unwrap_or(0)
    } else {
        global!(LAYOUT.vmemmap_default)
    }
}

#[inline(always)]
pub fn page_of_pfn(pfn: u64) -> u64 {
    let base = vmemmap();
    if base == 0 {
        return 0;
    }
    base + pfn * global!(LAYOUT.page_size) as u64
}

#[inline(always)]
pub fn pfn_of_page(page: u64) -> u64 {
    let base = vmemmap();
    let size = global!(LAYOUT.page_size) as u64;
    if base == 0 || page < base || size == 0 {
        return 0;
    }
    (page - base) / size
}

/// Reads the state of `page` into `snap`. Leaves `snap.state` without
/// `VALID` when the page words cannot be read.
#[inline(always)]
pub fn snapshot(page: u64, snap: &mut PageSnapshot) {
    let Ok(flags) = read::<u64>(page, global!(LAYOUT.page_flags)) else {
        return;
    };
    let ch = read::<u64>(page, global!(LAYOUT.page_compound_head)).unwrap_or(0);
    let mut state = PageSnapshot::VALID;
    let mut head = page;
    let mut head_flags = flags;
    if ch & 1 != 0 {
        // A tail page: `compound_head` holds head + 1, or (7.x with HVO)
        // `compound_info` holds a mask that leaves the head's address.
        head = if global!(LAYOUT.compound_info_mask) != 0 {
            page & ch
        } else {
            ch - 1
        };
        state |= PageSnapshot::TAIL | PageSnapshot::COMPOUND;
        head_flags = read::<u64>(head, global!(LAYOUT.page_flags)).unwrap_or(0);
    }
    let pg_head = global!(LAYOUT.pg_head);
    if pg_head != ABSENT && pg_head < 64 && (head_flags >> pg_head) & 1 != 0 {
        state |= PageSnapshot::COMPOUND;
    }
    snap.flags = flags;
    snap.head_flags = head_flags;
    // Only the low (flag) bits of `mapping`: never ship the pointer.
    snap.mapping_low = read::<u64>(head, global!(LAYOUT.page_mapping)).unwrap_or(0) & 0x7;
    snap.refcount = read::<i32>(head, global!(LAYOUT.page_refcount)).unwrap_or(0);
    snap.mapcount = read::<i32>(page, global!(LAYOUT.page_mapcount)).unwrap_or(-1) + 1;
    snap.large_mapcount = PageSnapshot::NO_COUNT;
    if state & PageSnapshot::COMPOUND != 0 {
        if let Ok(m) = read::<i32>(head, global!(LAYOUT.folio_large_mapcount)) {
            snap.large_mapcount = m + 1;
        }
    }
    snap.state = state;
}
