//! vmsplice-then-write: vmsplice (without SPLICE_F_GIFT) takes plain FOLL_GET
//! references to our fork-shared pages and parks them in a pipe. The write
//! then has to copy (the page is shared and has an extra reference), so the
//! pipe keeps showing the old data: the reference holder is left behind.

use std::io::Read as _;
use std::os::fd::AsRawFd as _;

use anyhow::{Context as _, bail};

use super::{Ctx, Workload, same_child};
use crate::buffer::{AnonBuffer, Pattern, holds_pattern};
use crate::sys::{self, ChildReport, Companion, Pipe};
use crate::truth::{Truth, step};

pub(super) fn run(ctx: Ctx) -> anyhow::Result<Truth> {
    let mut child = Companion::spawn(|| {
        Ok(ChildReport {
            pid: sys::getpid(),
            ..Default::default()
        })
    })?;
    let child_pid = child.pid();
    same_child(child_pid, &child.report()?)?;

    let mut pipe = Pipe::new()?;
    make_room(&pipe, ctx.buf.len())?;
    let splice = ctx.step(step::VMSPLICE, || vmsplice_all(&pipe, &ctx.buf))?;
    let write = ctx.step(step::PARENT_WRITE, || {
        ctx.buf.write_pages(Pattern::New);
        Ok(())
    })?;
    let mut seen = vec![0u8; ctx.buf.len()];
    pipe.read
        .read_exact(&mut seen)
        .context("reading the pipe back")?;
    let old = holds_pattern(&seen, ctx.buf.page_size(), Pattern::Old);
    if !old && !holds_pattern(&seen, ctx.buf.page_size(), Pattern::New) {
        bail!("the pipe returned neither the old nor the new data");
    }
    child.release()?;
    let mut truth = ctx.truth(
        Workload::VmspliceThenWrite,
        Some(child_pid),
        vec![splice, write],
    )?;
    truth.pipe_shows_old_data = Some(old);
    Ok(truth)
}

/// The whole buffer must fit in the pipe, or vmsplice would block.
pub(super) fn make_room(pipe: &Pipe, len: usize) -> anyhow::Result<()> {
    let want = libc::c_int::try_from(len.next_power_of_two().max(1 << 16))
        .context("buffer too large for one pipe")?;
    // SAFETY: fcntl on a descriptor we own.
    let got = unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
    if got < 0 {
        return Err(std::io::Error::last_os_error()).context("F_SETPIPE_SZ");
    }
    if (got as usize) < len {
        bail!("pipe holds {got} bytes, the buffer has {len}");
    }
    Ok(())
}

pub(super) fn vmsplice_all(pipe: &Pipe, buf: &AnonBuffer) -> anyhow::Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let iov = libc::iovec {
            // SAFETY: `done < len`: still inside the mapping.
            iov_base: unsafe { buf.as_ptr().add(done) }.cast(),
            iov_len: buf.len() - done,
        };
        // SAFETY: `iov` describes mapped memory that outlives the pipe's
        // use of it (we read the pipe back before the buffer is dropped).
        // No SPLICE_F_GIFT: the pages stay ours and the pipe only holds
        // references. NONBLOCK: a full pipe is an error, not a hang.
        let n = unsafe { libc::vmsplice(pipe.write.as_raw_fd(), &iov, 1, libc::SPLICE_F_NONBLOCK) };
        if n <= 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("vmsplice after {done} bytes"));
        }
        done += n as usize;
    }
    Ok(())
}
