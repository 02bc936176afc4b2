//! Reading kernel memory at offsets resolved from BTF.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_common::layout::ABSENT;

/// Reads a `T` at `base + off`. Fails for an absent offset or a NULL base.
#[inline(always)]
pub fn read<T>(base: u64, off: u32) -> Result<T, i64> {
    if base == 0 || off == ABSENT {
        return Err(-1);
    }
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.map_err(|e| e as i64)
}

/// The current task's `mm` (0 for kernel threads or when unreadable).
#[inline(always)]
pub fn current_mm() -> u64 {
    let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() };
    read::<u64>(task, crate::global!(LAYOUT.task_mm)).unwrap_or(0)
}
