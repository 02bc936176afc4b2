//! Test fixtures: constant tables shaped like real kernels' and synthetic
//! records. The tables are test inputs only; the real values come from
//! `kernel::consts` (BTF plus the cited macro table).

use std::mem::size_of;

use tracer_common::{Header, PageSnapshot};

use super::KernelConsts;

pub const PRESENT: u64 = 1 << 0;
pub const RW: u64 = 1 << 1;

/// A 4 KiB PTE (or PMD) mapping `pfn` with the given low bits.
pub fn pte(pfn: u64, bits: u64) -> u64 {
    (pfn << 12) | bits
}

/// A readable small anonymous page.
pub fn page(refcount: i32, mapcount: i32) -> PageSnapshot {
    PageSnapshot {
        mapping_low: 0x1,
        refcount,
        mapcount,
        large_mapcount: PageSnapshot::NO_COUNT,
        state: PageSnapshot::VALID,
        ..Default::default()
    }
}

/// A 5.10-like table: FOLL_* and fault flags are the 5.10 macros
/// (include/linux/mm.h), `enum pageflags` numbering of 5.10
/// (PG_owner_priv_1 10, PG_reserved 12, PG_head 16, PG_swapbacked 19), no
/// PG_anon_exclusive, no FAULT_FLAG_UNSHARE.
pub fn consts_5_10() -> KernelConsts {
    KernelConsts {
        foll_write: 0x01,
        foll_get: 0x04,
        foll_pin: 0x40000,
        foll_longterm: 0x10000,
        foll_force: 0x10,
        fault_flag_write: 0x1,
        fault_flag_unshare: None,
        pg_anon_exclusive: None,
        pg_swapcache: Some(10),
        pg_head: 16,
        pg_reserved: Some(12),
        pg_swapbacked: Some(19),
        mapping_anon: 0x1,
        mapping_ksm: 0x3,
        mapping_flags_mask: 0x3,
        vm_shared: 0x8,
        vm_write: 0x2,
        pte_present: PRESENT,
        pte_write: RW,
        pte_pfn_mask: 0x000f_ffff_ffff_f000,
        pmd_pse: 0x80,
        pmd_pat_large: 0x1000,
        // VM_FAULT_ERROR: OOM | SIGBUS | SIGSEGV | HWPOISON | HWPOISON_LARGE | FALLBACK.
        vm_fault_error_mask: 0x873,
        vm_fault_retry: 0x400,
        vm_fault_fallback: 0x800,
    }
}

/// A 6.1-like table: same FOLL_* macros as 5.10, FAULT_FLAG_UNSHARE 1024,
/// PG_anon_exclusive 17 (alias of PG_mappedtodisk).
pub fn consts_6_1() -> KernelConsts {
    KernelConsts {
        fault_flag_unshare: Some(1024),
        pg_anon_exclusive: Some(17),
        ..consts_5_10()
    }
}

/// The 6.1 table with the FOLL_* enum numbering of 6.12 (WRITE=1, GET=2,
/// FORCE=8, LONGTERM=256, PIN=524288) and PG_anon_exclusive 11.
pub fn consts_6_12() -> KernelConsts {
    KernelConsts {
        foll_write: 1,
        foll_get: 2,
        foll_force: 8,
        foll_longterm: 256,
        foll_pin: 524_288,
        pg_anon_exclusive: Some(11),
        ..consts_6_1()
    }
}

/// A header for a record of type `T`.
pub fn hdr<T>(kind: u16, time_ns: u64, pid: u32, tid: u32, mm: u64) -> Header {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"test");
    Header {
        kind,
        hook: 0,
        size: size_of::<T>() as u32,
        time_ns,
        pid,
        tid,
        cpu: 1,
        _pad0: 0,
        mm,
        comm,
    }
}
