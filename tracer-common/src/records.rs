//! Wire records: the ring buffer carries exactly these structs.

use core::mem::size_of;

/// Record kinds (`Header::kind`). Retired numbers are never reused.
pub mod kind {
    pub const COW_FAULT: u16 = 1;
    pub const GUP: u16 = 2;
    pub const UNPIN: u16 = 3;
    pub const FORK_VMA: u16 = 4;
    pub const FORK_COPY: u16 = 5;
    pub const TASK_FORK: u16 = 6;
    pub const TASK_EXIT: u16 = 7;
}

/// Decision sites (`CowFaultRecord::site`).
pub mod site {
    /// `do_wp_page`
    pub const WP: u8 = 0;
    /// `do_swap_page`
    pub const SWAP: u8 = 1;
    /// `do_huge_pmd_wp_page`
    pub const THP: u8 = 2;
    /// `hugetlb_cow` / `hugetlb_wp`
    pub const HUGETLB: u8 = 3;
}

/// GUP paths (`GupRecord::path`).
pub mod gup_path {
    pub const SLOW: u8 = 1;
    pub const FAST: u8 = 2;
}

/// The envelope every record starts with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// One of [`kind`].
    pub kind: u16,
    /// One of [`crate::hook`]: the hook that produced it.
    pub hook: u16,
    /// Size of the whole record in bytes, header included.
    pub size: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub time_ns: u64,
    /// Process id (tgid) of the current task.
    pub pid: u32,
    /// Thread id of the current task.
    pub tid: u32,
    pub cpu: u32,
    pub _pad0: u32,
    /// The `struct mm_struct *` the record is about (raw kernel pointer;
    /// userspace replaces it by a per-trace id unless asked not to).
    pub mm: u64,
    pub comm: [u8; 16],
}

/// What the probe read from one `struct page` (and its folio head).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageSnapshot {
    /// `page->flags` of the page itself (per-page bits: PG_anon_exclusive).
    pub flags: u64,
    /// `flags` of the folio head (== `flags` for a small page).
    pub head_flags: u64,
    /// Low bits of the head's `mapping` (PAGE_MAPPING_ANON / _KSM); the
    /// pointer part is masked off in BPF.
    pub mapping_low: u64,
    /// `_refcount` of the head (the folio's reference count).
    pub refcount: i32,
    /// `page->_mapcount + 1`: mappings of this page by PTEs.
    pub mapcount: i32,
    /// Folio-wide mapcount for large folios where the kernel keeps one
    /// (`_large_mapcount + 1`), else [`PageSnapshot::NO_COUNT`].
    pub large_mapcount: i32,
    /// Bit set of `PageSnapshot::VALID`, `TAIL`, `COMPOUND`.
    pub state: u32,
}

impl PageSnapshot {
    pub const NO_COUNT: i32 = i32::MIN;
    /// The page words were read successfully.
    pub const VALID: u32 = 1 << 0;
    /// The page is a tail page of a compound page/large folio.
    pub const TAIL: u32 = 1 << 1;
    /// The page belongs to a compound page/large folio (head or tail).
    pub const COMPOUND: u32 = 1 << 2;
}

/// A write-protect or unshare fault and the kernel's decision witnesses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CowFaultRecord {
    pub hdr: Header,
    /// Faulting user address (`vmf->address`).
    pub address: u64,
    /// The PTE (or PMD, for `site::THP`) value the fault started from.
    pub orig_entry: u64,
    /// The same entry re-read at return through the pointer saved at entry.
    /// Zero when it could not be read.
    pub entry_after: u64,
    /// `vma->vm_flags`.
    pub vm_flags: u64,
    /// The page behind `orig_entry`, as the kernel saw it at entry.
    pub page: PageSnapshot,
    /// `vmf->flags` (FAULT_FLAG_*).
    pub fault_flags: u32,
    /// `vm_fault_t` returned.
    pub ret: u32,
    /// One of [`site`].
    pub site: u8,
    /// 1 when `entry_after` was read.
    pub after_valid: u8,
    /// `site::SWAP` only: 1 when `do_wp_page` ran inside this
    /// `do_swap_page` (the swap-in did not reuse the page in place and
    /// handed the write fault to the write-protect path, which has its own
    /// `site::WP` record).
    pub nested_wp: u8,
    /// `site::SWAP` only: how [`CowFaultRecord::swap_witness`] was read,
    /// one of [`swap_witness`].
    pub swap_format: u8,
    pub _pad: [u8; 4],
    /// `site::SWAP` only: the kernel's reference count of the swap entry
    /// the fault started from, read at entry (before this fault drops its
    /// reference), raw: the `swap_map[offset]` byte, or the swap table word
    /// (see [`CowFaultRecord::swap_format`]). Userspace extracts the count.
    pub swap_witness: u64,
}

/// How the swap count witness was read (`CowFaultRecord::swap_format`).
pub mod swap_witness {
    /// Not read (not a swap site, an entry that is no swap slot, or a
    /// kernel whose swap count the layout does not reach).
    pub const NONE: u8 = 0;
    /// `swap_info[type]->swap_map[offset]`: one byte, count plus the
    /// SWAP_HAS_CACHE and COUNT_CONTINUED bits (kernels up to 6.x).
    pub const SWAP_MAP: u8 = 1;
    /// The swap table word of the slot (`cluster_info[offset / N].table
    /// ->entries[offset % N]`): the count sits in its top bits (7.x,
    /// where the swap table replaced `swap_map`).
    pub const SWAP_TABLE: u8 = 2;
}

/// One page grabbed by GUP (FOLL_GET or FOLL_PIN).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GupRecord {
    pub hdr: Header,
    /// User address of the first page grabbed (0 when unknown).
    pub address: u64,
    /// Pfn of the page (or folio head, for a fast-path folio grab).
    pub pfn: u64,
    /// The page after the grab (refcount includes the new reference).
    pub page: PageSnapshot,
    /// FOLL_* flags passed to the grab, raw.
    pub gup_flags: u32,
    /// References taken (pages of the folio covered by this grab).
    pub refs: u32,
    /// `bpf_get_stackid()` of the kernel stack, negative when unavailable.
    pub stack_id: i32,
    /// One of [`gup_path`].
    pub path: u8,
    pub _pad: [u8; 3],
    /// The grab helper's raw return value; what success looks like depends
    /// on the helper (bool, 0, or a non-NULL pointer): the attach plan says.
    pub ret: u64,
}

/// A pin (or GUP reference) released through the GUP put helpers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnpinRecord {
    pub hdr: Header,
    pub pfn: u64,
    pub refs: u32,
    pub gup_flags: u32,
    /// Head refcount before the release.
    pub refcount_before: i32,
    /// 1 when the helper always releases FOLL_PIN pins and takes no flags
    /// (`unpin_user_folio(folio, npages)`): `gup_flags` is then 0.
    pub implicit_pin: u32,
}

/// One VMA copied by fork (`copy_page_range(dst_vma, src_vma)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkVmaRecord {
    /// `hdr.mm` is the parent's mm.
    pub hdr: Header,
    pub child_mm: u64,
    pub start: u64,
    pub end: u64,
    pub vm_flags: u64,
}

/// A page allocated for the child inside a `copy_page_range` window: the
/// kernel copied a (possibly pinned) page eagerly instead of sharing it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkCopyRecord {
    pub hdr: Header,
    pub child_mm: u64,
    /// User address the page was allocated for.
    pub address: u64,
    /// Pfn of the new page (0 when the allocation failed or was not seen).
    pub new_pfn: u64,
}

/// `sched_process_fork`: a new task exists.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskForkRecord {
    /// The parent (current task).
    pub hdr: Header,
    pub child_pid: u32,
    pub child_tid: u32,
    pub child_mm: u64,
}

/// `sched_process_exit`: a task exits (`hdr.pid != hdr.tid` for a thread).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskExitRecord {
    pub hdr: Header,
}

macro_rules! assert_size {
    ($t:ty, $n:expr) => {
        const _: () = assert!(size_of::<$t>() == $n);
    };
}
assert_size!(Header, 56);
assert_size!(PageSnapshot, 40);
assert_size!(CowFaultRecord, 56 + 32 + 40 + 16 + 8);
assert_size!(GupRecord, 56 + 16 + 40 + 16 + 8);
assert_size!(UnpinRecord, 56 + 24);
assert_size!(ForkVmaRecord, 56 + 32);
assert_size!(ForkCopyRecord, 56 + 24);
assert_size!(TaskForkRecord, 56 + 16);
assert_size!(TaskExitRecord, 56);

/// The largest record: userspace rejects a ring buffer entry larger than this.
pub const MAX_RECORD_SIZE: usize = size_of::<CowFaultRecord>();
