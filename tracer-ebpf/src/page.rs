//! `struct page` state as the kernel sees it: pfn -> page, then the words
//! the COW and GUP decisions rest on (flags, refcount, mapcount, mapping,
//! compound head; the folio-wide mapcount of large folios where it exists).

use aya_ebpf::{macros::map, maps::PerCpuArray};
use tracer_common::{PageSnapshot, layout::ABSENT};

use crate::{
    global,
    kmem::{Block, read, slot},
};

/// Bytes of a `struct page` (x86_64: 64), read at once.
const PAGE_BYTES: usize = 64;
type PageWords = Block<PAGE_BYTES>;

/// `vmemmap_base`, once read (it is fixed after boot).
#[map(name = "VMEMMAP")]
static VMEMMAP: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// x86_64 PTE pfn field (bits 12..51).
pub const PTE_PFN_MASK: u64 = 0x000f_ffff_ffff_f000;
pub const PTE_PRESENT: u64 = 1;

/// `struct page *` of pfn 0: the value of `vmemmap_base` (KASLR) or the
/// fixed default.
#[inline(always)]
pub fn vmemmap() -> u64 {
    let sym = global!(LAYOUT.vmemmap_base_sym);
    if sym == 0 {
        return global!(LAYOUT.vmemmap_default);
    }
    let Some(cached) = VMEMMAP.get_ptr_mut(0) else {
        return read::<u64>(sym, 0).unwrap_or(0);
    };
    // SAFETY: this CPU's slot; BPF programs do not migrate.
    unsafe {
        if *cached == 0 {
            *cached = read::<u64>(sym, 0).unwrap_or(0);
        }
        *cached
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
/// `set`: the calling program's scratch set (`kmem::set`).
pub fn snapshot(page: u64, snap: &mut PageSnapshot, set: u32) {
    if global!(LAYOUT.page_size) as usize != PAGE_BYTES {
        return snapshot_by_field(page, snap);
    }
    let Some(w) = PageWords::read(page, set, slot::PAGE) else {
        return;
    };
    let Some(flags) = w.get::<u64>(global!(LAYOUT.page_flags)) else {
        return;
    };
    let ch = w
        .get::<u64>(global!(LAYOUT.page_compound_head))
        .unwrap_or(0);
    let mapcount = w.get::<i32>(global!(LAYOUT.page_mapcount)).unwrap_or(-1) + 1;
    let mut state = PageSnapshot::VALID;
    let (head, hw) = if ch & 1 != 0 {
        state |= PageSnapshot::TAIL | PageSnapshot::COMPOUND;
        let head = head_of(page, ch);
        (head, PageWords::read(head, set, slot::HEAD))
    } else {
        (page, Some(w))
    };
    let (head_flags, mapping, refcount) = match &hw {
        Some(h) => (
            h.get::<u64>(global!(LAYOUT.page_flags)).unwrap_or(0),
            h.get::<u64>(global!(LAYOUT.page_mapping)).unwrap_or(0),
            h.get::<i32>(global!(LAYOUT.page_refcount)).unwrap_or(0),
        ),
        None => (0, 0, 0),
    };
    finish(
        snap, state, head, flags, head_flags, mapping, refcount, mapcount,
    );
}

/// A tail page's head: `compound_head` holds head + 1, or (7.x with HVO)
/// `compound_info` holds a mask that leaves the head's address.
#[inline(always)]
fn head_of(page: u64, ch: u64) -> u64 {
    if global!(LAYOUT.compound_info_mask) != 0 {
        page & ch
    } else {
        ch - 1
    }
}

/// The common tail of both snapshot paths.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn finish(
    snap: &mut PageSnapshot,
    mut state: u32,
    head: u64,
    flags: u64,
    head_flags: u64,
    mapping: u64,
    refcount: i32,
    mapcount: i32,
) {
    let pg_head = global!(LAYOUT.pg_head);
    if pg_head != ABSENT && pg_head < 64 && (head_flags >> pg_head) & 1 != 0 {
        state |= PageSnapshot::COMPOUND;
    }
    snap.flags = flags;
    snap.head_flags = head_flags;
    // Only the low (flag) bits of `mapping`: never ship the pointer.
    snap.mapping_low = mapping & 0x7;
    snap.refcount = refcount;
    snap.mapcount = mapcount;
    snap.large_mapcount = PageSnapshot::NO_COUNT;
    if state & PageSnapshot::COMPOUND != 0
        && let Ok(m) = read::<i32>(head, global!(LAYOUT.folio_large_mapcount))
    {
        snap.large_mapcount = m + 1;
    }
    snap.state = state;
}

/// Field by field, for a `struct page` of unexpected size.
#[inline(always)]
fn snapshot_by_field(page: u64, snap: &mut PageSnapshot) {
    let Ok(flags) = read::<u64>(page, global!(LAYOUT.page_flags)) else {
        return;
    };
    let ch = read::<u64>(page, global!(LAYOUT.page_compound_head)).unwrap_or(0);
    let mut state = PageSnapshot::VALID;
    let mut head = page;
    let mut head_flags = flags;
    if ch & 1 != 0 {
        head = head_of(page, ch);
        state |= PageSnapshot::TAIL | PageSnapshot::COMPOUND;
        head_flags = read::<u64>(head, global!(LAYOUT.page_flags)).unwrap_or(0);
    }
    let mapping = read::<u64>(head, global!(LAYOUT.page_mapping)).unwrap_or(0);
    let refcount = read::<i32>(head, global!(LAYOUT.page_refcount)).unwrap_or(0);
    let mapcount = read::<i32>(page, global!(LAYOUT.page_mapcount)).unwrap_or(-1) + 1;
    finish(
        snap, state, head, flags, head_flags, mapping, refcount, mapcount,
    );
}
