//! The ring buffer, in-kernel filters and per-hook counters.
//!
//! Nothing is dropped silently: a full ring buffer bumps `LOST[hook]`, a
//! probe that cannot read what it needs bumps `ERRORS[hook]`; userspace
//! turns both into `lost` events.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid,
        generated::{bpf_get_current_cgroup_id, bpf_get_smp_processor_id, bpf_ktime_get_ns},
    },
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf, StackTrace},
};
use tracer_common::{DEFAULT_RING_BYTES, Header, PIDS_MAX_ENTRIES, STACKS_MAX_ENTRIES, hook};

use crate::{global, kmem};

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map(name = "LOST")]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(hook::COUNT, 0);

#[map(name = "ERRORS")]
static ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(hook::COUNT, 0);

#[map(name = "EMITTED")]
static EMITTED: PerCpuArray<u64> = PerCpuArray::with_max_entries(hook::COUNT, 0);

#[map(name = "STACKS")]
pub static STACKS: StackTrace = StackTrace::with_max_entries(STACKS_MAX_ENTRIES, 0);

#[map(name = "PIDS")]
static PIDS: HashMap<u32, u8> = HashMap::with_max_entries(PIDS_MAX_ENTRIES, 0);

#[inline(always)]
fn bump(counters: &PerCpuArray<u64>, hook: u16) {
    if let Some(p) = counters.get_ptr_mut(hook as u32) {
        // Per-CPU slot, and BPF programs do not migrate: no race.
        unsafe { *p += 1 };
    }
}

/// Counts a decision the probe saw but could not deliver.
#[inline(always)]
pub fn lost(hook: u16) {
    bump(&LOST, hook);
}

/// Counts a probe invocation that could not produce its record.
#[inline(always)]
pub fn error(hook: u16) {
    bump(&ERRORS, hook);
}

/// The current task's `pid_tgid` (tid in the low half), the key of every
/// entry/exit map.
#[inline(always)]
pub fn task_key() -> u64 {
    bpf_get_current_pid_tgid()
}

/// Whether the current task passes the in-kernel filters. The tracer's own
/// process never does.
#[inline(always)]
pub fn passes() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == global!(FILTER.self_tgid) {
        return false;
    }
    if global!(FILTER.pid_filter) != 0 && unsafe { PIDS.get(tgid) }.is_none() {
        return false;
    }
    let cgroup = global!(FILTER.cgroup_id);
    if cgroup != 0 && unsafe { bpf_get_current_cgroup_id() } != cgroup {
        return false;
    }
    let n = global!(FILTER.comm_len) as usize;
    if n != 0 {
        let Ok(comm) = bpf_get_current_comm() else {
            return false;
        };
        let want = global!(FILTER.comm);
        let mut i = 0;
        while i < 16 {
            if i < n && comm[i] != want[i] {
                return false;
            }
            i += 1;
        }
    }
    true
}

/// With a pid filter, a new child of a selected process is selected too
/// (the tracer's own pid may be selected only so that `-- CMD` is followed;
/// its own events are still dropped by `passes`).
#[inline(always)]
pub fn follow_child(child_tgid: u32) {
    if global!(FILTER.pid_filter) == 0 {
        return;
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    if unsafe { PIDS.get(parent) }.is_some() {
        let _ = PIDS.insert(child_tgid, 1, 0);
    }
}

/// Fills the envelope for the current task, about address space `mm`.
#[inline(always)]
pub fn header_for(hdr: &mut Header, kind: u16, hook: u16, size: usize, mm: u64) {
    let id = bpf_get_current_pid_tgid();
    hdr.kind = kind;
    hdr.hook = hook;
    hdr.size = size as u32;
    hdr.time_ns = unsafe { bpf_ktime_get_ns() };
    hdr.pid = (id >> 32) as u32;
    hdr.tid = id as u32;
    hdr.cpu = unsafe { bpf_get_smp_processor_id() };
    hdr.mm = mm;
    hdr.comm = bpf_get_current_comm().unwrap_or_default();
}

/// Fills the envelope for the current task, about its own address space.
#[inline(always)]
pub fn header(hdr: &mut Header, kind: u16, hook: u16, size: usize) {
    header_for(hdr, kind, hook, size, kmem::current_mm());
}

/// Unread bytes in the ring buffer above which a record wakes the reader.
/// Below it records are written without a wake-up and the reader drains
/// on its own short timer: one wake-up per batch instead of one per record
/// (a wake-up is an irq_work, a scheduler round-trip and an epoll return,
/// many times the cost of the record itself). An eighth of the ring leaves
/// seven eighths of headroom while the woken reader gets to run.
const WAKEUP_BYTES: u64 = DEFAULT_RING_BYTES as u64 / 8;

/// Copies a finished record into the ring buffer, counting success or loss.
#[inline(always)]
pub fn output<T: 'static>(hook: u16, rec: &T) {
    let flags = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    };
    match EVENTS.output::<T>(rec, flags) {
        Ok(()) => bump(&EMITTED, hook),
        Err(_) => bump(&LOST, hook),
    }
}
