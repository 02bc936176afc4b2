//! iouring-pin: registering io_uring fixed buffers pins the pages with
//! FOLL_PIN | FOLL_LONGTERM | FOLL_WRITE. A fork while they are pinned must
//! give the child its own copies at once (since 5.9), so the parent's later
//! writes reuse its exclusive, pinned pages: no copy away from the pin.

use anyhow::Context as _;
use io_uring::IoUring;

use super::{Ctx, Workload, same_child};
use crate::buffer::Pattern;
use crate::sys::Companion;
use crate::truth::{Step, Truth, step};

pub(super) fn run(ctx: Ctx) -> anyhow::Result<Truth> {
    let ring = IoUring::new(4).context(
        "io_uring_setup failed (io_uring disabled? see /proc/sys/kernel/io_uring_disabled)",
    )?;
    let iov = libc::iovec {
        iov_base: ctx.buf.as_ptr().cast(),
        iov_len: ctx.buf.len(),
    };
    let register = ctx.step(step::REGISTER, || {
        // SAFETY: the buffer outlives the registration: we unregister below,
        // and on an early return `ring` (declared after `ctx`) is dropped,
        // and so unregistered, first.
        unsafe { ring.submitter().register_buffers(&[iov]) }.context("IORING_REGISTER_BUFFERS")
    })?;

    // The child measures its own PFNs and stays alive while the parent
    // writes, so a missing eager copy would show as a copy in the parent.
    let mut child = Companion::spawn(|| ctx.measure_in_child(|| Ok(())))?;
    let child_pid = child.pid();
    let report = child.report()?;
    same_child(child_pid, &report)?;
    let parent_pfns = ctx.pfns()?;
    let fork = Step::measured(step::FORK, child_pid, parent_pfns, report.pfns_after);

    let write = ctx.step(step::PARENT_WRITE, || {
        ctx.buf.write_pages(Pattern::New);
        Ok(())
    })?;
    child.release()?;
    let unregister = ctx.step(step::UNREGISTER, || {
        ring.submitter()
            .unregister_buffers()
            .context("IORING_UNREGISTER_BUFFERS")
    })?;
    drop(ring);
    ctx.truth(
        Workload::IouringPin,
        Some(child_pid),
        vec![register, fork, write, unregister],
    )
}
