//! ro-pin-after-fork: a read-only FOLL_PIN (process_vm_readv on ourselves)
//! of fork-shared pages. From 5.19 the kernel unshares (copies) at pin time
//! so the pin lands on an exclusive page; before, the pin stays on the
//! shared page and the next write copies away from it. Measured, not assumed.

use anyhow::{Context as _, bail};

use super::{Ctx, Workload, same_child};
use crate::buffer::{AnonBuffer, Pattern, holds_pattern};
use crate::sys::{self, ChildReport, Companion};
use crate::truth::{Truth, step};

pub(super) fn run(ctx: Ctx) -> anyhow::Result<Truth> {
    // The child keeps the pages shared until released.
    let mut child = Companion::spawn(|| {
        Ok(ChildReport {
            pid: sys::getpid(),
            ..Default::default()
        })
    })?;
    let child_pid = child.pid();
    same_child(child_pid, &child.report()?)?;

    let mut copy = vec![0u8; ctx.buf.len()];
    let pin = ctx.step(step::PIN, || read_own_memory(&ctx.buf, &mut copy))?;
    if !holds_pattern(&copy, ctx.buf.page_size(), Pattern::Old) {
        bail!("process_vm_readv returned data other than the buffer's contents");
    }
    let write = ctx.step(step::PARENT_WRITE, || {
        ctx.buf.write_pages(Pattern::New);
        Ok(())
    })?;
    child.release()?;
    ctx.truth(Workload::RoPinAfterFork, Some(child_pid), vec![pin, write])
}

/// `process_vm_readv` from our own pid: the kernel pins the source pages with
/// `pin_user_pages_remote` (FOLL_PIN, no FOLL_WRITE) and copies from them.
fn read_own_memory(buf: &AnonBuffer, into: &mut [u8]) -> anyhow::Result<()> {
    let local = libc::iovec {
        iov_base: into.as_mut_ptr().cast(),
        iov_len: into.len(),
    };
    let remote = libc::iovec {
        iov_base: buf.as_ptr().cast(),
        iov_len: buf.len(),
    };
    let pid = libc::pid_t::try_from(sys::getpid()).context("pid out of range")?;
    // SAFETY: `local` describes `into`, writable for its length; `remote`
    // is only read by the kernel.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error()).context("process_vm_readv on ourselves");
    }
    if n as usize != buf.len() {
        bail!("process_vm_readv read {n} of {} bytes", buf.len());
    }
    Ok(())
}
