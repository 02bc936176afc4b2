//! fork-child-writes (and overload, the same on many pages): after fork
//! every page is shared; the child's writes must copy. Once the child has
//! exited the parent is the only mapper again and its writes must reuse.

use anyhow::bail;

use super::{Ctx, Workload, same_child};
use crate::buffer::Pattern;
use crate::sys::{self, Companion};
use crate::truth::{Step, Truth, step};

pub(super) fn run(ctx: Ctx, workload: Workload) -> anyhow::Result<Truth> {
    let mut child = Companion::spawn(|| {
        ctx.measure_in_child(|| {
            ctx.buf.write_pages(Pattern::New);
            Ok(())
        })
    })?;
    let child_pid = child.pid();
    let report = child.report()?;
    same_child(child_pid, &report)?;
    // Reaped: the child's mm is gone before the parent writes.
    child.release()?;
    if !ctx.buf.holds(Pattern::Old) {
        bail!("the child's writes are visible in the parent: the pages were not copied");
    }
    // The parent is the only user of its pages now; a per-CPU batch may
    // still hold a transient reference, which would make a refcount-based
    // reuse check copy (seen on 5.10 in about half of the runs without it).
    sys::drain_lru_batches()?;
    let parent = ctx.step(step::PARENT_WRITE, || {
        ctx.buf.write_pages(Pattern::New);
        Ok(())
    })?;
    let child_write = Step::measured(
        step::CHILD_WRITE,
        report.pid,
        report.pfns_before,
        report.pfns_after,
    );
    ctx.truth(workload, Some(child_pid), vec![child_write, parent])
}
