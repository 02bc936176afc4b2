//! Process lifetime: `sched_process_fork(parent, child)` gives the child's
//! pid and mm (which `copy_page_range` only knows as an mm), and
//! `sched_process_exit(task)` ends a process.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use tracer_common::{TaskExitRecord, TaskForkRecord, hook, kind};

use crate::{emit, global, kmem::read};

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn task_fork(ctx: RawTracePointContext) -> i32 {
    let child: u64 = ctx.arg(1);
    let (Ok(pid), Ok(tgid)) = (
        read::<u32>(child, global!(LAYOUT.task_pid)),
        read::<u32>(child, global!(LAYOUT.task_tgid)),
    ) else {
        emit::error(hook::TASK);
        return 0;
    };
    if pid == tgid {
        emit::follow_child(tgid);
    }
    if !emit::passes() {
        return 0;
    }
    let mut rec = TaskForkRecord::default();
    emit::header(
        &mut rec.hdr,
        kind::TASK_FORK,
        hook::TASK,
        core::mem::size_of::<TaskForkRecord>(),
    );
    rec.child_tid = pid;
    rec.child_pid = tgid;
    rec.child_mm = read::<u64>(child, global!(LAYOUT.task_mm)).unwrap_or(0);
    emit::output(hook::TASK, &rec);
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn task_exit(_ctx: RawTracePointContext) -> i32 {
    let id = emit::task_key();
    // Only the thread-group leader: one record per process, not per thread.
    if (id >> 32) as u32 != id as u32 || !emit::passes() {
        return 0;
    }
    let mut rec = TaskExitRecord::default();
    emit::header(
        &mut rec.hdr,
        kind::TASK_EXIT,
        hook::TASK,
        core::mem::size_of::<TaskExitRecord>(),
    );
    emit::output(hook::TASK, &rec);
    0
}
