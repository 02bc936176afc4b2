//! Reading kernel memory at offsets resolved from BTF.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf},
    macros::map,
    maps::PerCpuArray,
};
use tracer_common::layout::ABSENT;

/// Largest block read at once.
pub const BLOCK_BYTES: usize = 128;

/// Scratch slots for [`Block`] within a set (a struct page, its head, a
/// `vm_fault`).
pub mod slot {
    pub const PAGE: u32 = 0;
    pub const HEAD: u32 = 1;
    pub const VMF: u32 = 2;
    pub const PER_SET: u32 = 3;
}

/// Scratch sets: one per program that can be preempted while using its
/// buffers (a trampoline program runs with only migration disabled; the
/// kernel's recursion guard keeps the *same* program from re-entering on
/// the CPU, not another one), and one shared by every kprobe program
/// (preemption disabled: they never interleave on a CPU).
pub mod set {
    pub const KPROBE: u32 = 0;
    pub const WP_FENTRY: u32 = 1;
    pub const THP_FENTRY: u32 = 2;
    pub const GUP_SLOW_FEXIT: u32 = 3;
    pub const GUP_FAST_FEXIT: u32 = 4;
    pub const COUNT: u32 = 5;
}

/// Per-CPU scratch for blocks: a map value may be indexed by a bounded
/// runtime offset (the BTF offsets), the stack may not on every kernel line.
#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<[u8; BLOCK_BYTES]> =
    PerCpuArray::with_max_entries(set::COUNT * slot::PER_SET, 0);

/// `N` bytes of a kernel struct read with one helper call, its fields then
/// picked at the offsets BTF gave. Each `bpf_probe_read_kernel` is a helper
/// call with fault handling around a copy: a probe that needs five to eight
/// words of the same struct pays for one. Each program reads into its own
/// [`set`] of slots, so no other program can overwrite them while it runs.
pub struct Block<const N: usize> {
    buf: *const [u8; BLOCK_BYTES],
}

impl<const N: usize> Block<N> {
    #[inline(always)]
    pub fn read(addr: u64, set: u32, slot: u32) -> Option<Self> {
        if addr == 0 || N > BLOCK_BYTES {
            return None;
        }
        let p = SCRATCH.get_ptr_mut(set * slot::PER_SET + slot)?;
        // SAFETY: a valid per-CPU map value; the helper writes N bytes of it.
        let dst = unsafe { &mut *p };
        unsafe { bpf_probe_read_kernel_buf(addr as *const u8, &mut dst[..N]) }.ok()?;
        Some(Block { buf: p })
    }

    /// The `T` at `off`, when it lies inside the block.
    #[inline(always)]
    pub fn get<T: Copy>(&self, off: u32) -> Option<T> {
        let off = off as usize;
        if off >= N || off + core::mem::size_of::<T>() > N {
            return None;
        }
        // SAFETY: bounds checked above; the map value outlives the block.
        Some(unsafe { core::ptr::read_unaligned((self.buf as *const u8).add(off) as *const T) })
    }
}

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

/// Argument `n` of a trampoline (fentry/fexit) program as a plain number.
/// The verifier types a pointer argument by its BTF (`struct page *`) and
/// refuses arithmetic on it with a runtime value (`page - vmemmap_base`);
/// read through the helper, it is an ordinary scalar like a kprobe's.
#[inline(always)]
pub fn scalar_arg<C: aya_ebpf::EbpfContext>(ctx: &C, n: usize) -> u64 {
    let slot = (ctx.as_ptr() as *const u64).wrapping_add(n);
    // SAFETY: the helper checks the address; a failed read yields 0.
    unsafe { bpf_probe_read_kernel(slot) }.unwrap_or(0)
}
