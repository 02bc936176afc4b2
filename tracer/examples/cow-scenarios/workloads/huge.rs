//! Huge pages: a PMD-mapped THP and a hugetlb page, each 2 MiB.
//!
//! * thp-vmsplice-leak: fork; the child vmsplices the first pages of a
//!   fork-shared THP into a pipe and unmaps it; the parent writes those
//!   pages and reads the pipe. On 5.10 `do_huge_pmd_wp_page` asks
//!   `reuse_swap_page`, which counts mappings only: the whole huge page is
//!   reused and the pipe shows the parent's data. 5.19+ split the PMD
//!   (the folio has other references) and copy per 4 KiB page.
//! * hugetlb-fork-write: a MAP_HUGETLB page, fork; the parent writes while
//!   the child maps it (copy), then forks a child that exits at once and
//!   writes again (the only mapping: reuse).
//! * hugetlb-pin-fork: a MAP_HUGETLB page pinned by io_uring fixed-buffer
//!   registration, then fork: copied for the child at fork (5.13+) or
//!   shared, as the child's pfn shows.

use std::io::Read as _;
use std::ptr::NonNull;

use anyhow::{Context as _, bail};

use super::vmsplice::make_room;
use super::{Ctx, Workload, same_child};
use crate::buffer::{Pattern, holds_pattern};
use crate::sys::{self, ChildReport, Companion, Pipe};
use crate::truth::{Step, Truth, step};

/// x86_64 PMD size: one THP or one default hugetlb page.
pub(super) const HUGE: usize = 2 << 20;
/// Pages of the THP the leak scenario splices and writes.
const SPLICED_PAGES: usize = 16;

/// A private anonymous 2 MiB-aligned mapping of one huge page; unmapped on drop.
struct HugeMapping {
    ptr: NonNull<u8>,
    page_size: usize,
}

impl HugeMapping {
    /// A THP candidate: 2 MiB aligned, MADV_HUGEPAGE, every page written.
    fn thp() -> anyhow::Result<Self> {
        // Twice the size, then trim to the aligned 2 MiB inside.
        let raw = map(2 * HUGE, 0)?;
        let start = (raw as usize).next_multiple_of(HUGE);
        let head = start - raw as usize;
        // SAFETY: unmapping the unaligned head and tail of our own fresh mapping.
        unsafe {
            if head > 0 {
                libc::munmap(raw.cast(), head);
            }
            libc::munmap((start + HUGE) as *mut libc::c_void, HUGE - head);
        }
        let m = HugeMapping::at(start)?;
        // SAFETY: advice on our own mapping.
        if unsafe { libc::madvise(start as *mut libc::c_void, HUGE, libc::MADV_HUGEPAGE) } != 0 {
            return Err(std::io::Error::last_os_error()).context("madvise(MADV_HUGEPAGE)");
        }
        m.write(0..HUGE / m.page_size, Pattern::Old);
        Ok(m)
    }

    /// One hugetlb page (needs pages in /proc/sys/vm/nr_hugepages).
    fn hugetlb() -> anyhow::Result<Self> {
        let p = map(HUGE, libc::MAP_HUGETLB)
            .context("MAP_HUGETLB (are 2 MiB pages reserved in nr_hugepages?)")?;
        let m = HugeMapping::at(p as usize)?;
        m.write(0..1, Pattern::Old);
        Ok(m)
    }

    fn at(start: usize) -> anyhow::Result<Self> {
        Ok(HugeMapping {
            ptr: NonNull::new(start as *mut u8).context("mmap returned NULL")?,
            page_size: crate::buffer::page_size()?,
        })
    }

    fn start(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Writes the 4 KiB pages `pages` with `pattern` (first byte volatile).
    fn write(&self, pages: std::ops::Range<usize>, pattern: Pattern) {
        for page in pages {
            let byte = pattern.byte(page);
            // SAFETY: inside the 2 MiB mapping, which is writable and lives
            // as long as `self`; nobody holds a Rust reference into it.
            unsafe {
                let p = self.ptr.as_ptr().add(page * self.page_size);
                std::ptr::write_volatile(p, byte);
                std::ptr::write_bytes(p.add(1), byte, self.page_size - 1);
            }
        }
    }
}

impl Drop for HugeMapping {
    fn drop(&mut self) {
        // SAFETY: exactly our mapping; no pointer into it is used afterwards.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), HUGE) };
    }
}

pub(super) fn map(len: usize, extra: libc::c_int) -> anyhow::Result<*mut libc::c_void> {
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error()).context("mmap");
    }
    Ok(p)
}

/// PFNs of a PMD-mapped THP are consecutive from a 512-aligned head.
pub(super) fn is_huge_mapped(pfns: &[u64]) -> bool {
    let Some(&head) = pfns.first() else {
        return false;
    };
    head.is_multiple_of((HUGE / 4096) as u64)
        && pfns.iter().enumerate().all(|(i, &p)| p == head + i as u64)
}

/// A truth over `pages` pages from `start` (not the context's buffer).
pub(super) fn truth_at(
    ctx: &Ctx,
    workload: Workload,
    start: u64,
    pages: usize,
    child: Option<u32>,
    steps: Vec<Step>,
) -> anyhow::Result<Truth> {
    let page_size = ctx.buf.page_size() as u64;
    Ok(Truth {
        workload: workload.name().to_string(),
        kernel: sys::kernel_release()?,
        page_size,
        pages,
        start,
        end: start + pages as u64 * page_size,
        parent_pid: ctx.pid,
        child_pid: child,
        steps,
        pipe_shows_old_data: None,
        swapped_out: None,
        swap_references: None,
        large_folio: None,
    })
}

pub(super) fn thp_vmsplice_leak(ctx: Ctx) -> anyhow::Result<Truth> {
    let thp = HugeMapping::thp()?;
    let all = ctx.pagemap.pfns(thp.start(), HUGE / thp.page_size)?;
    if !is_huge_mapped(&all) {
        bail!("the 2 MiB buffer is not one PMD-mapped THP (is THP enabled?)");
    }
    let len = SPLICED_PAGES * thp.page_size;
    let mut pipe = Pipe::new()?;
    make_room(&pipe, len)?;
    let mut child = Companion::spawn(|| {
        splice(&pipe, thp.start(), len)?;
        // SAFETY: the child's own copy of the mapping, never touched again
        // in this process, which leaves with `_exit`.
        if unsafe { libc::munmap(thp.ptr.as_ptr().cast(), HUGE) } != 0 {
            return Err(std::io::Error::last_os_error()).context("munmap in the child");
        }
        Ok(ChildReport {
            pid: sys::getpid(),
            ..Default::default()
        })
    })?;
    let child_pid = child.pid();
    same_child(child_pid, &child.report()?)?;
    let before = ctx.pagemap.pfns(thp.start(), SPLICED_PAGES)?;
    thp.write(0..SPLICED_PAGES, Pattern::New);
    let after = ctx.pagemap.pfns(thp.start(), SPLICED_PAGES)?;
    let write = Step::measured(step::PARENT_WRITE, ctx.pid, before, after);
    let mut seen = vec![0u8; len];
    pipe.read
        .read_exact(&mut seen)
        .context("reading the pipe back")?;
    let old = holds_pattern(&seen, thp.page_size, Pattern::Old);
    if !old && !holds_pattern(&seen, thp.page_size, Pattern::New) {
        bail!("the pipe returned neither only old nor only new data");
    }
    child.release()?;
    let mut truth = truth_at(
        &ctx,
        Workload::ThpVmspliceLeak,
        thp.start(),
        SPLICED_PAGES,
        Some(child_pid),
        vec![write],
    )?;
    truth.pipe_shows_old_data = Some(old);
    Ok(truth)
}

fn splice(pipe: &Pipe, start: u64, len: usize) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd as _;
    let mut done = 0usize;
    while done < len {
        let iov = libc::iovec {
            iov_base: (start as usize + done) as *mut libc::c_void,
            iov_len: len - done,
        };
        // SAFETY: `iov` describes mapped memory; no SPLICE_F_GIFT: the pipe
        // only takes references. NONBLOCK: a full pipe is an error.
        let n = unsafe { libc::vmsplice(pipe.write.as_raw_fd(), &iov, 1, libc::SPLICE_F_NONBLOCK) };
        if n <= 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("vmsplice after {done} bytes"));
        }
        done += n as usize;
    }
    Ok(())
}

pub(super) fn hugetlb_fork_write(ctx: Ctx) -> anyhow::Result<Truth> {
    let huge = HugeMapping::hugetlb()?;
    // The child keeps the page mapped while the parent writes: copy.
    let mut child = Companion::spawn(|| {
        Ok(ChildReport {
            pid: sys::getpid(),
            ..Default::default()
        })
    })?;
    let child_pid = child.pid();
    same_child(child_pid, &child.report()?)?;
    let shared = measure(&ctx, &huge, step::PARENT_WRITE)?;
    child.release()?;
    // A second fork write-protects the page again; that child is gone
    // before the write: the parent is the only mapper, reuse.
    let mut second = Companion::spawn(|| {
        Ok(ChildReport {
            pid: sys::getpid(),
            ..Default::default()
        })
    })?;
    let second_pid = second.pid();
    same_child(second_pid, &second.report()?)?;
    second.release()?;
    let alone = measure(&ctx, &huge, step::PARENT_WRITE_ALONE)?;
    truth_at(
        &ctx,
        Workload::HugetlbForkWrite,
        huge.start(),
        1,
        Some(child_pid),
        vec![shared, alone],
    )
}

/// A MAP_HUGETLB page pinned long-term by io_uring fixed-buffer
/// registration, then fork: since 5.13 `copy_hugetlb_page_range` gives the
/// child its own copy of a possibly pinned page at once; before, the child
/// shares it. The child measures its own pfn.
pub(super) fn hugetlb_pin_fork(ctx: Ctx) -> anyhow::Result<Truth> {
    let huge = HugeMapping::hugetlb()?;
    let ring = io_uring::IoUring::new(4).context(
        "io_uring_setup failed (io_uring disabled? see /proc/sys/kernel/io_uring_disabled)",
    )?;
    let iov = libc::iovec {
        iov_base: huge.ptr.as_ptr().cast(),
        iov_len: HUGE,
    };
    let before = ctx.pagemap.pfns(huge.start(), 1)?;
    // SAFETY: the mapping outlives the registration: `ring` is unregistered
    // below and, on an early return, dropped (so unregistered) before
    // `huge`, which was declared first.
    unsafe { ring.submitter().register_buffers(&[iov]) }.context("IORING_REGISTER_BUFFERS")?;
    let register = Step::measured(
        step::REGISTER,
        ctx.pid,
        before,
        ctx.pagemap.pfns(huge.start(), 1)?,
    );
    let start = huge.start();
    let mut child = Companion::spawn(|| {
        let pagemap = crate::pagemap::Pagemap::open_self(huge.page_size as u64)?;
        Ok(ChildReport {
            pid: sys::getpid(),
            pfns_before: vec![],
            pfns_after: pagemap.pfns(start, 1)?,
        })
    })?;
    let child_pid = child.pid();
    let report = child.report()?;
    same_child(child_pid, &report)?;
    let fork = Step::measured(
        step::FORK,
        child_pid,
        ctx.pagemap.pfns(start, 1)?,
        report.pfns_after,
    );
    child.release()?;
    ring.submitter()
        .unregister_buffers()
        .context("IORING_UNREGISTER_BUFFERS")?;
    drop(ring);
    truth_at(
        &ctx,
        Workload::HugetlbPinFork,
        start,
        1,
        Some(child_pid),
        vec![register, fork],
    )
}

fn measure(ctx: &Ctx, huge: &HugeMapping, name: &str) -> anyhow::Result<Step> {
    let before = ctx.pagemap.pfns(huge.start(), 1)?;
    huge.write(0..1, Pattern::New);
    let after = ctx.pagemap.pfns(huge.start(), 1)?;
    Ok(Step::measured(name, ctx.pid, before, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_mapping_is_consecutive_from_an_aligned_head() {
        assert!(is_huge_mapped(&[512, 513, 514]));
        assert!(!is_huge_mapped(&[513, 514]));
        assert!(!is_huge_mapped(&[512, 514]));
        assert!(!is_huge_mapped(&[]));
    }
}
