//! Swap-in decisions: pages paged out with `MADV_PAGEOUT` (the guest swaps
//! to zram) and then written. The write fault lands in `do_swap_page`,
//! which either maps the page read back from swap writable in place, or
//! hands the fault to `do_wp_page`.
//!
//! * swap-private-write: our own pages, never shared: reused in place.
//! * swap-shared-write: paged out, then fork (the child keeps the swap
//!   entries); the parent writes, then the child reads its pages back: the
//!   parent cannot keep the page the child still sees.
//! * vmsplice-swap-leak: fork; the child vmsplices the shared pages into a
//!   pipe and unmaps them; the parent pages them out (the pipe keeps the
//!   pages in the swap cache), writes, and reads the pipe. On 5.10
//!   `reuse_swap_page` ignores the pipe's references and the pipe shows the
//!   parent's new data; 5.19+ copies (the swap entry is not exclusive).

use std::io::{Read as _, Write as _};

use anyhow::{Context as _, bail};

use super::vmsplice::{make_room, vmsplice_all};
use super::{Ctx, Workload, same_child};
use crate::buffer::{Pattern, holds_pattern};
use crate::sys::{self, ChildReport, Companion, Pipe};
use crate::truth::{Step, Truth, step};

impl Ctx {
    /// Pages the buffer out; returns how many pages pagemap then shows
    /// swapped out. Pages mapped by more than one process are skipped by
    /// the kernel (MADV_PAGEOUT leaves shared pages alone).
    fn page_out(&self) -> anyhow::Result<usize> {
        // Pages still in a per-CPU batch are not on the LRU and cannot be
        // isolated for reclaim.
        sys::drain_lru_batches()?;
        // SAFETY: advice on our own mapping, which stays valid.
        let r =
            unsafe { libc::madvise(self.buf.as_ptr().cast(), self.buf.len(), libc::MADV_PAGEOUT) };
        if r != 0 {
            return Err(std::io::Error::last_os_error()).context("madvise(MADV_PAGEOUT)");
        }
        self.pagemap.swapped(self.buf.start(), self.buf.pages())
    }

    /// Pages out the whole buffer, or fails: without swap (no zram in the
    /// guest) these workloads measure nothing.
    fn page_out_all(&self) -> anyhow::Result<usize> {
        let n = self.page_out()?;
        if n != self.buf.pages() {
            bail!(
                "MADV_PAGEOUT swapped out {n}/{} pages: is a swap device active?",
                self.buf.pages()
            );
        }
        Ok(n)
    }

    /// The parent's write after a page-out: PFNs before are unknown (0).
    fn write_swapped(&self) -> anyhow::Result<Step> {
        self.buf.write_pages(Pattern::New);
        Ok(Step::measured(
            step::PARENT_WRITE,
            self.pid,
            vec![0; self.buf.pages()],
            self.pfns()?,
        ))
    }
}

pub(super) fn private_write(ctx: Ctx) -> anyhow::Result<Truth> {
    let swapped = ctx.page_out_all()?;
    let write = ctx.write_swapped()?;
    let mut truth = ctx.truth(Workload::SwapPrivateWrite, None, vec![write])?;
    truth.swapped_out = Some(swapped);
    // Only our own PTEs name the entries.
    truth.swap_references = Some(1);
    Ok(truth)
}

pub(super) fn shared_write(ctx: Ctx) -> anyhow::Result<Truth> {
    let swapped = ctx.page_out_all()?;
    let go = Pipe::new()?;
    let Pipe {
        read: mut go_read,
        write: mut go_write,
    } = go;
    let mut child = Companion::spawn(|| {
        // Wait for the parent's write, then read every page back (a read
        // fault swaps the child's page in) and measure it.
        let mut byte = [0u8; 1];
        go_read
            .read_exact(&mut byte)
            .context("waiting for the parent's write")?;
        let pagemap = crate::pagemap::Pagemap::open_self(ctx.buf.page_size() as u64)?;
        if !ctx.buf.holds(Pattern::Old) {
            bail!("the child sees the parent's write");
        }
        Ok(ChildReport {
            pid: sys::getpid(),
            pfns_before: vec![0; ctx.buf.pages()],
            pfns_after: pagemap.pfns(ctx.buf.start(), ctx.buf.pages())?,
        })
    })?;
    let child_pid = child.pid();
    let write = ctx.write_swapped()?;
    go_write.write_all(&[1]).context("releasing the child")?;
    let report = child.report()?;
    same_child(child_pid, &report)?;
    child.release()?;
    let read = Step::measured(
        step::CHILD_READ,
        report.pid,
        report.pfns_before,
        report.pfns_after,
    );
    let mut truth = ctx.truth(
        Workload::SwapSharedWrite,
        Some(child_pid),
        vec![write, read],
    )?;
    truth.swapped_out = Some(swapped);
    // Forked after the page-out, the child copied our swap PTEs and reads
    // its pages back only after our write: two references per entry.
    truth.swap_references = Some(2);
    Ok(truth)
}

pub(super) fn vmsplice_leak(ctx: Ctx) -> anyhow::Result<Truth> {
    let mut pipe = Pipe::new()?;
    make_room(&pipe, ctx.buf.len())?;
    let mut child = Companion::spawn(|| {
        vmsplice_all(&pipe, &ctx.buf)?;
        // The pipe keeps its references; the child no longer maps the pages.
        // SAFETY: the child's own copy of the mapping; the buffer is never
        // touched again in this process, which leaves with `_exit`.
        if unsafe { libc::munmap(ctx.buf.as_ptr().cast(), ctx.buf.len()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("munmap in the child");
        }
        Ok(ChildReport {
            pid: sys::getpid(),
            ..Default::default()
        })
    })?;
    let child_pid = child.pid();
    same_child(child_pid, &child.report()?)?;
    // Only the parent maps the pages now: MADV_PAGEOUT takes them.
    let swapped = ctx.page_out()?;
    let write = ctx.write_swapped()?;
    let mut seen = vec![0u8; ctx.buf.len()];
    pipe.read
        .read_exact(&mut seen)
        .context("reading the pipe back")?;
    let old = holds_pattern(&seen, ctx.buf.page_size(), Pattern::Old);
    if !old && !holds_pattern(&seen, ctx.buf.page_size(), Pattern::New) {
        bail!("the pipe returned neither only old nor only new data");
    }
    child.release()?;
    let mut truth = ctx.truth(Workload::VmspliceSwapLeak, Some(child_pid), vec![write])?;
    truth.swapped_out = Some(swapped);
    // The child unmapped the pages before the page-out: the pipe holds page
    // references, not swap entries; only our PTEs name the entries.
    truth.swap_references = Some(1);
    truth.pipe_shows_old_data = Some(old);
    Ok(truth)
}
