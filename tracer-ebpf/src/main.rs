//! cowtrace's kernel side.
//!
//! One file per probe family: `fault` (do_wp_page, huge PMD), `gup` (slow
//! and fast grabs, unpins), `fork` (copy_page_range and eager copies),
//! `task` (fork/exit tracepoints); `page` reads `struct page` state and
//! `emit` owns the ring buffer, filters and counters.
//!
//! The programs record raw witnesses only (PTE values before/after, page
//! words, flag words); userspace decodes decisions with the running kernel's
//! BTF at hand. Struct offsets come from the `LAYOUT` global that the loader
//! fills from BTF: nothing here knows a kernel version.
#![no_std]
#![no_main]

mod emit;
mod fault;
mod fork;
mod gup;
mod hugetlb;
mod kmem;
mod page;
mod swap;
mod task;

use tracer_common::{Filter, Layout};

/// Struct offsets of the running kernel (set by the loader).
#[unsafe(no_mangle)]
static LAYOUT: Layout = Layout::EMPTY;

/// In-kernel filters (set by the loader).
#[unsafe(no_mangle)]
static FILTER: Filter = Filter {
    self_tgid: 0,
    pid_filter: 0,
    comm_len: 0,
    mode: Filter::FULL,
    cgroup_id: 0,
    comm: [0; 16],
    unshare_flag: 0,
    pg_swapcache: tracer_common::layout::ABSENT,
    fault_fail_mask: 0,
    swap_hook: 0,
};

/// Reads one field of a load-time global. Volatile, so the compiler cannot
/// fold the placeholder value the object file carries.
macro_rules! global {
    ($g:ident . $f:ident) => {
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(crate::$g.$f)) }
    };
}
pub(crate) use global;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The benchmark anchor: the cheapest useful probe, counting `do_wp_page`
/// calls per CPU and nothing else.
mod baseline {
    use aya_ebpf::{
        macros::{kprobe, map},
        maps::PerCpuArray,
        programs::ProbeContext,
    };

    #[map(name = "BASELINE")]
    static BASELINE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

    #[kprobe]
    pub fn baseline_count(_ctx: ProbeContext) -> u32 {
        if let Some(p) = BASELINE.get_ptr_mut(0) {
            // SAFETY: per-CPU slot.
            unsafe { *p += 1 };
        }
        0
    }
}
