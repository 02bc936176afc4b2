//! Kernel constants `decode` needs to name the bits in raw records.
//!
//! Filled in by `kernel::consts` from the running kernel's BTF, or from the
//! cited per-version macro table where a value exists only as a C macro.

use serde::{Deserialize, Serialize};

/// Flag values and bit numbers of the running kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelConsts {
    /// FOLL_* values (they were renumbered in 6.2: never assume one table).
    pub foll_write: u32,
    pub foll_get: u32,
    pub foll_pin: u32,
    pub foll_longterm: u32,
    pub foll_force: u32,
    /// FAULT_FLAG_WRITE.
    pub fault_flag_write: u32,
    /// FAULT_FLAG_UNSHARE (5.19+); `None` before.
    pub fault_flag_unshare: Option<u32>,
    /// Bit numbers in `page->flags` (`enum pageflags`).
    pub pg_anon_exclusive: Option<u32>,
    pub pg_swapcache: Option<u32>,
    pub pg_head: u32,
    /// PG_reserved: set on the zero page (and other pages the allocator
    /// never hands out), which `do_wp_page` never reuses or COWs as an
    /// anonymous page. `None` when unknown: the check is then skipped.
    #[serde(default)]
    pub pg_reserved: Option<u32>,
    /// PG_swapbacked: PG_swapcache is an alias of PG_owner_priv_1 and only
    /// means "in the swap cache" on a swap-backed folio (`folio_test_swapcache`).
    #[serde(default)]
    pub pg_swapbacked: Option<u32>,
    /// Low bits of `page->mapping`: PAGE_MAPPING_ANON, PAGE_MAPPING_KSM.
    pub mapping_anon: u64,
    pub mapping_ksm: u64,
    pub mapping_flags_mask: u64,
    /// VM_SHARED, VM_WRITE in `vm_flags`.
    pub vm_shared: u64,
    pub vm_write: u64,
    /// x86_64 PTE bits: present, writable, and the pfn mask.
    pub pte_present: u64,
    pub pte_write: u64,
    pub pte_pfn_mask: u64,
    /// PSE bit of a PMD (a huge mapping) and the PAT bit of a huge PMD,
    /// which sits inside the pfn field of a 4 KiB PTE.
    pub pmd_pse: u64,
    pub pmd_pat_large: u64,
    /// VM_FAULT_* bits that mean "no decision was taken" (error, retry, OOM,
    /// fallback, ...).
    pub vm_fault_error_mask: u32,
    pub vm_fault_retry: u32,
    pub vm_fault_fallback: u32,
}
