//! Records shared by cowtrace's eBPF programs and its userspace.
//!
//! Everything here crosses the kernel/user boundary as raw bytes, so every
//! type is `#[repr(C)]`, uses explicit integer fields and explicit padding
//! (no `bool`, no implicit holes) and carries a size assertion.
//!
//! The records are *raw witnesses*: what the kernel showed the probe (PTE
//! values, `struct page` words, flag words). Turning them into decisions and
//! named flags is userspace's job (`tracer::decode`), where it is pure,
//! unit-tested code and where the running kernel's BTF is at hand.
#![no_std]

pub mod counts;
pub mod layout;
pub mod records;

pub use layout::{Filter, Layout};
pub use records::*;

/// Ring buffer carrying every record to userspace.
pub const EVENTS_MAP: &str = "EVENTS";
/// Default ring buffer size in bytes (a power of two, a multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;
/// Per-CPU array of `u64`, indexed by [`hook`]: records dropped because the
/// ring buffer was full.
pub const LOST_MAP: &str = "LOST";
/// Per-CPU array of `u64`, indexed by [`hook`]: probe invocations that could
/// not read what they needed (a failed `bpf_probe_read_kernel`, an exit
/// without its entry). They are counted, never silently ignored.
pub const ERRORS_MAP: &str = "ERRORS";
/// Per-CPU array of `u64`, indexed by [`hook`]: records emitted.
pub const EMITTED_MAP: &str = "EMITTED";
/// Kernel stack traces referenced by `stack_id` fields.
pub const STACKS_MAP: &str = "STACKS";
pub const STACKS_MAX_ENTRIES: u32 = 16 * 1024;
/// Hash map of allowed process ids (tgid -> 1) used when `Filter::pid_filter` is set.
pub const PIDS_MAP: &str = "PIDS";
pub const PIDS_MAX_ENTRIES: u32 = 1024;
/// Name of the global holding the [`Layout`].
pub const LAYOUT_GLOBAL: &str = "LAYOUT";
/// Name of the global holding the [`Filter`].
pub const FILTER_GLOBAL: &str = "FILTER";

/// Hook identifiers: index of the loss/error/emitted counters and
/// `Header::hook`. Numbers are never reused once retired.
pub mod hook {
    /// `do_wp_page`: base-page write-protect and unshare faults.
    pub const WP_FAULT: u16 = 0;
    /// `do_huge_pmd_wp_page`: PMD-mapped THP write-protect faults.
    pub const THP_WP: u16 = 1;
    /// GUP slow path grabs (`try_grab_page` / `try_grab_folio`).
    pub const GUP_SLOW: u16 = 2;
    /// GUP fast path grabs (`try_grab_compound_head` / `try_grab_folio(_fast)`).
    pub const GUP_FAST: u16 = 3;
    /// Pin releases (`put_compound_head` / `gup_put_folio`).
    pub const UNPIN: u16 = 4;
    /// `copy_page_range`: one record per VMA copied at fork.
    pub const FORK_VMA: u16 = 5;
    /// Page allocations inside a `copy_page_range` window (eager copies).
    pub const FORK_COPY: u16 = 6;
    /// `sched_process_fork` / `sched_process_exit`.
    pub const TASK: u16 = 7;
    /// Swap-in decisions (`do_swap_page`).
    pub const SWAP: u16 = 8;
    /// hugetlb write-protect decisions (`hugetlb_cow` / `hugetlb_wp`).
    pub const HUGETLB: u16 = 9;
    /// Pin releases through `unpin_user_folio` where it inlines
    /// `gup_put_folio` (7.x: io_uring's buffer teardown).
    pub const UNPIN_FOLIO: u16 = 10;
    /// hugetlb pages copied eagerly for the child inside a
    /// `copy_page_range` window (`copy_hugetlb_page_range`, since 5.13:
    /// a possibly pinned hugetlb page is copied at fork, not shared).
    pub const FORK_COPY_HUGETLB: u16 = 11;
    /// Size of the counter arrays (room for future hooks).
    pub const COUNT: u32 = 16;

    /// Stable short name, used in outputs and `lost` events.
    pub const fn name(hook: u16) -> &'static str {
        match hook {
            WP_FAULT => "wp_fault",
            THP_WP => "thp_wp",
            GUP_SLOW => "gup_slow",
            GUP_FAST => "gup_fast",
            UNPIN => "unpin",
            FORK_VMA => "fork_vma",
            FORK_COPY => "fork_copy",
            TASK => "task",
            SWAP => "swap",
            HUGETLB => "hugetlb",
            UNPIN_FOLIO => "unpin_folio",
            FORK_COPY_HUGETLB => "fork_copy_hugetlb",
            _ => "unknown",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type below is #[repr(C)], made only of integers and
    // arrays of integers, with explicit padding, so any bit pattern is valid.
    unsafe impl aya::Pod for crate::Layout {}
    unsafe impl aya::Pod for crate::Filter {}
    unsafe impl aya::Pod for crate::counts::CountKey {}
    unsafe impl aya::Pod for crate::counts::CountValue {}
}

/// eBPF program names: the contract between `tracer-ebpf` and the attach
/// plan in `tracer::kernel::plan`, which says which symbol each attaches to
/// on the running kernel.
pub mod prog {
    /// kprobe/kretprobe `do_wp_page(vmf)`.
    pub const WP_ENTRY: &str = "wp_entry";
    pub const WP_EXIT: &str = "wp_exit";
    /// kprobe/kretprobe `do_huge_pmd_wp_page(vmf[, orig_pmd])`.
    pub const THP_ENTRY: &str = "thp_entry";
    pub const THP_EXIT: &str = "thp_exit";
    /// fentry/fexit `do_wp_page(vmf)`.
    pub const WP_FENTRY: &str = "wp_fentry";
    pub const WP_FEXIT: &str = "wp_fexit";
    /// fentry versions of the GUP context programs, fexit versions of the
    /// grabs (arguments and return value at once), fentry on the put helper.
    pub const GUP_SLOW_START_FE: &str = "gup_slow_start_fe";
    pub const GUP_FOLLOW_PTE_FE: &str = "gup_follow_pte_fe";
    pub const GUP_SLOW_PF_FX: &str = "gup_slow_pf_fx";
    pub const GUP_SLOW_PRF_FX: &str = "gup_slow_prf_fx";
    pub const GUP_FAST_START_FE: &str = "gup_fast_start_fe";
    pub const GUP_FAST_PRF_FX: &str = "gup_fast_prf_fx";
    pub const UNPIN_FE: &str = "unpin_fe";
    /// fentry/fexit `do_huge_pmd_wp_page(vmf)` (5.18+: one parameter).
    pub const THP_FENTRY: &str = "thp_fentry";
    pub const THP_FEXIT: &str = "thp_fexit";
    /// kprobe `__get_user_pages(mm, start, ...)`: slow-path context.
    pub const GUP_SLOW_START: &str = "gup_slow_start";
    /// kprobe `follow_page_pte(vma, address, ...)`: the exact address.
    pub const GUP_FOLLOW_PTE: &str = "gup_follow_pte";
    /// kprobe on a slow-path grab taking `(page, flags)`: `try_grab_page`.
    pub const GUP_SLOW_PF: &str = "gup_slow_pf";
    /// kprobe on a slow-path grab taking `(folio, refs, flags)`: 6.12+ `try_grab_folio`.
    pub const GUP_SLOW_PRF: &str = "gup_slow_prf";
    /// kretprobe on the slow-path grab.
    pub const GUP_SLOW_EXIT: &str = "gup_slow_exit";
    /// kprobe `internal_get_user_pages_fast` / `gup_fast_fallback(start, ...)`.
    pub const GUP_FAST_START: &str = "gup_fast_start";
    /// kprobe on a fast-path grab taking `(page, refs, flags)`.
    pub const GUP_FAST_PRF: &str = "gup_fast_prf";
    /// kretprobe on the fast-path grab.
    pub const GUP_FAST_EXIT: &str = "gup_fast_exit";
    /// kprobe `put_compound_head` / `gup_put_folio(page|folio, refs, flags)`.
    pub const UNPIN: &str = "unpin";
    /// kprobe/kretprobe `unpin_user_folio(folio, npages)`: releases FOLL_PIN
    /// pins; while inside it, `UNPIN` stays quiet so an out-of-line
    /// `gup_put_folio` call is not counted twice.
    pub const UNPIN_FOLIO_ENTRY: &str = "unpin_folio_entry";
    pub const UNPIN_FOLIO_EXIT: &str = "unpin_folio_exit";
    /// kprobe/kretprobe `copy_page_range(dst_vma, src_vma)`.
    pub const FORK_VMA_ENTRY: &str = "fork_vma_entry";
    pub const FORK_VMA_EXIT: &str = "fork_vma_exit";
    /// kprobe on the user-page allocator (4th argument is the address):
    /// `alloc_pages_vma` / `vma_alloc_folio` / `vma_alloc_folio_noprof`.
    pub const FORK_ALLOC: &str = "fork_alloc";
    /// kprobe on the huge page copy helper `(dst, src, addr_hint, vma, ..)`:
    /// `copy_user_huge_page` / `copy_user_large_folio`; records only inside
    /// a `copy_page_range` window (an eager hugetlb copy at fork).
    pub const FORK_HUGE_COPY: &str = "fork_huge_copy";
    /// raw tracepoints `sched_process_fork` / `sched_process_exit`.
    pub const TASK_FORK: &str = "task_fork";
    pub const TASK_EXIT: &str = "task_exit";
    /// kprobe/kretprobe `do_swap_page(vmf)`: swap-in decisions.
    pub const SWAP_ENTRY: &str = "swap_entry";
    pub const SWAP_EXIT: &str = "swap_exit";
    /// kprobes on the hugetlb write-protect handler, one per prototype:
    /// 5.10 `hugetlb_cow(mm, vma, address, ptep, ..)`, 6.1
    /// `hugetlb_wp(mm, vma, address, ptep, flags, ..)`, 6.10+
    /// `hugetlb_wp(folio, vmf)`, and `hugetlb_wp(vmf)`; one kretprobe.
    pub const HUGETLB_ENTRY_COW: &str = "hugetlb_entry_cow";
    pub const HUGETLB_ENTRY_FLAGS: &str = "hugetlb_entry_flags";
    pub const HUGETLB_ENTRY_VMF1: &str = "hugetlb_entry_vmf1";
    pub const HUGETLB_ENTRY_VMF0: &str = "hugetlb_entry_vmf0";
    pub const HUGETLB_EXIT: &str = "hugetlb_exit";
    /// Counting-only kprobe on `do_wp_page` (the benchmark anchor).
    pub const BASELINE_COUNT: &str = "baseline_count";
}
