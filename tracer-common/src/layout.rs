//! Load-time knobs: struct offsets resolved from the running kernel's BTF
//! and the in-kernel filters. Userspace fills these in and sets them as
//! globals before loading; the eBPF programs only read them.
//!
//! An offset of [`ABSENT`] means "this kernel has no such field"; a program
//! that needs it is not attached (the attach plan says so).

/// Marker for a field the running kernel does not have.
pub const ABSENT: u32 = u32::MAX;

/// Byte offsets (and the few sizes/addresses) the probes need.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Address of the `vmemmap_base` variable (from /proc/kallsyms); BPF
    /// reads its value. 0: use [`Layout::vmemmap_default`].
    pub vmemmap_base_sym: u64,
    /// `struct page *` of pfn 0 when `vmemmap_base_sym` is 0.
    pub vmemmap_default: u64,
    /// `sizeof(struct page)`.
    pub page_size: u32,
    pub page_flags: u32,
    pub page_refcount: u32,
    pub page_mapcount: u32,
    pub page_mapping: u32,
    pub page_compound_head: u32,
    /// `struct folio::_large_mapcount` ([`ABSENT`] before 6.x folios).
    pub folio_large_mapcount: u32,

    pub vmf_vma: u32,
    pub vmf_address: u32,
    pub vmf_flags: u32,
    pub vmf_orig_pte: u32,
    pub vmf_pte: u32,
    pub vmf_pmd: u32,
    /// `vm_fault::orig_pmd` ([`ABSENT`] on 5.10, where it is an argument).
    pub vmf_orig_pmd: u32,

    pub vma_mm: u32,
    pub vma_start: u32,
    pub vma_end: u32,
    pub vma_flags: u32,

    pub task_mm: u32,
    pub task_pid: u32,
    pub task_tgid: u32,
    /// Bit number of PG_head in `page->flags` (`enum pageflags`).
    pub pg_head: u32,
    /// 1: a tail page's `compound_info` word is a mask and the head is
    /// `page & word` (7.x with HVO); 0: the word is `head + 1`.
    pub compound_info_mask: u32,
    pub _pad: u32,

    // Appended for the swap count and the hugetlb mapcount (fields are
    // only ever appended, so the struct grows at its end).
    /// Address of the `swap_info` array (`struct swap_info_struct
    /// *swap_info[MAX_SWAPFILES]`, kallsyms); 0: unknown.
    pub swap_info_sym: u64,
    /// Address of `nr_swapfiles` (kallsyms): bounds the swap type read
    /// from a PTE; 0: unknown.
    pub nr_swapfiles_sym: u64,
    /// `swap_info_struct::max`: slots of the device.
    pub swap_info_max: u32,
    /// `swap_info_struct::swap_map` ([`ABSENT`] on 7.x swap tables).
    pub swap_info_swap_map: u32,
    /// `swap_info_struct::cluster_info`.
    pub swap_info_cluster_info: u32,
    /// `sizeof(struct swap_cluster_info)`.
    pub swap_cluster_info_size: u32,
    /// `swap_cluster_info::table` ([`ABSENT`] before swap tables).
    pub swap_cluster_table: u32,
    /// Slots per cluster table (`SWAPFILE_CLUSTER`: `sizeof(struct
    /// swap_table) / 8`); 0 before swap tables.
    pub swap_table_slots: u32,
    /// Offset from a folio's head page of its "entire" mapcount (mappings
    /// of the folio as a whole, stored minus one): where a hugetlb folio's
    /// mapcount lives (`folio::_entire_mapcount`, 6.1's
    /// `folio::_total_mapcount`, 5.10's `page[1].compound_mapcount`).
    pub folio_entire_mapcount: u32,
    pub _pad2: u32,
}

impl Layout {
    /// A layout with every field absent: nothing can attach with it.
    pub const EMPTY: Layout = Layout {
        vmemmap_base_sym: 0,
        vmemmap_default: 0xffff_ea00_0000_0000,
        page_size: 64,
        page_flags: ABSENT,
        page_refcount: ABSENT,
        page_mapcount: ABSENT,
        page_mapping: ABSENT,
        page_compound_head: ABSENT,
        folio_large_mapcount: ABSENT,
        vmf_vma: ABSENT,
        vmf_address: ABSENT,
        vmf_flags: ABSENT,
        vmf_orig_pte: ABSENT,
        vmf_pte: ABSENT,
        vmf_pmd: ABSENT,
        vmf_orig_pmd: ABSENT,
        vma_mm: ABSENT,
        vma_start: ABSENT,
        vma_end: ABSENT,
        vma_flags: ABSENT,
        task_mm: ABSENT,
        task_pid: ABSENT,
        task_tgid: ABSENT,
        pg_head: ABSENT,
        compound_info_mask: 0,
        _pad: 0,
        swap_info_sym: 0,
        nr_swapfiles_sym: 0,
        swap_info_max: ABSENT,
        swap_info_swap_map: ABSENT,
        swap_info_cluster_info: ABSENT,
        swap_cluster_info_size: ABSENT,
        swap_cluster_table: ABSENT,
        swap_table_slots: 0,
        folio_entire_mapcount: ABSENT,
        _pad2: 0,
    };
}

impl Default for Layout {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// In-kernel filters. Events of the tracer's own process are always dropped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// The tracer's own tgid.
    pub self_tgid: u32,
    /// 1: only tgids present in the `PIDS` map pass.
    pub pid_filter: u32,
    /// Number of leading bytes of `comm` that must match (0: no comm filter).
    pub comm_len: u32,
    /// [`Filter::FULL`] or [`Filter::LEAN`].
    pub mode: u32,
    /// Only tasks in this cgroup (v2 id) pass; 0: no cgroup filter.
    pub cgroup_id: u64,
    pub comm: [u8; 16],
    /// Lean mode: the FAULT_FLAG_UNSHARE bit (0 before 5.19). Unshare faults
    /// are always recorded in full.
    pub unshare_flag: u32,
    /// Lean mode: bit number of PG_swapcache in `page->flags` (its swap
    /// cache reference is an expected one), [`crate::layout::ABSENT`] if
    /// unknown.
    pub pg_swapcache: u32,
    /// Lean mode: VM_FAULT_ERROR | VM_FAULT_RETRY, the return bits of a
    /// fault that decided nothing.
    pub fault_fail_mask: u32,
    /// 1 when the swap-in hook is attached: only then does the fault probe
    /// tell it about a write fault it handed over.
    pub swap_hook: u32,
}

impl Filter {
    /// Every decision is recorded in full.
    pub const FULL: u32 = 0;
    /// Ordinary `do_wp_page` decisions (a small page whose every reference
    /// is a mapping or the swap cache) are only counted, per process, in
    /// the `COUNTS` map; everything else is recorded in full.
    pub const LEAN: u32 = 1;
}
