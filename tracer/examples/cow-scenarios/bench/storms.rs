//! The three benchmark workloads. Each populates its memory first, then
//! times only the loop that makes the kernel decide.
//!
//! Writes touch one byte per page: the fault is what is measured, and a
//! page-sized memset per fault would only dilute the tracing cost.

use anyhow::Context as _;
use io_uring::IoUring;

use super::Measured;
use crate::buffer::AnonBuffer;
use crate::sys;

const MIB: usize = 1 << 20;

/// CLOCK_MONOTONIC in nanoseconds.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A populated buffer of `mib` MiB, on this CPU (so runs repeat: the
/// children inherit the affinity).
fn buffer(mib: usize) -> anyhow::Result<AnonBuffer> {
    sys::pin_to_current_cpu()?;
    let pages = mib * MIB / crate::buffer::page_size()?;
    AnonBuffer::populated(pages)
}

/// One volatile byte store per page: exactly one write fault per page when
/// the page is write-protected.
fn touch_pages(buf: &AnonBuffer, value: u8) {
    for page in 0..buf.pages() {
        // SAFETY: the offset lies inside the live, writable mapping, and no
        // Rust reference points into it.
        unsafe { std::ptr::write_volatile(buf.as_ptr().add(page * buf.page_size()), value) };
    }
}

/// fork(); the child runs `child` and leaves with `_exit(0)`; the parent
/// waits for it. The child never returns into Rust code of the caller.
fn fork_and_wait(child: impl FnOnce()) -> anyhow::Result<()> {
    // SAFETY: the benchmark process is single-threaded, and the child only
    // stores to memory it owns before `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        child();
        // SAFETY: leaves the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child we just forked.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(std::io::Error::last_os_error()).context("waitpid");
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        anyhow::bail!("the benchmark child failed (wait status {status:#x})");
    }
    Ok(())
}

/// cow-storm: per round, fork; the child writes every page (each write
/// copies) and exits; the parent, sole owner again, writes every page
/// (each write reuses). ops = write faults.
pub fn cow_storm(quick: bool) -> anyhow::Result<Measured> {
    let (mib, rounds) = if quick { (4, 1) } else { (32, 4) };
    let buf = buffer(mib)?;
    let start = now_ns();
    for round in 0..rounds {
        let value = round as u8;
        fork_and_wait(|| touch_pages(&buf, value))?;
        touch_pages(&buf, value);
    }
    let ns = now_ns() - start;
    Ok(Measured {
        ops: (rounds * 2 * buf.pages()) as u64,
        ns,
    })
}

/// gup-storm: per round, a read-only pin of every page (process_vm_readv
/// from our own pid), then a long-term write pin of every page (io_uring
/// buffer registration) and its unpin. ops = pages pinned.
pub fn gup_storm(quick: bool) -> anyhow::Result<Measured> {
    let (mib, rounds) = if quick { (1, 2) } else { (4, 16) };
    let buf = buffer(mib)?;
    let mut copy = vec![0u8; buf.len()];
    let ring = IoUring::new(4).context(
        "io_uring_setup failed (io_uring disabled? see /proc/sys/kernel/io_uring_disabled)",
    )?;
    let pid = libc::pid_t::try_from(sys::getpid()).context("pid out of range")?;
    let iov = libc::iovec {
        iov_base: buf.as_ptr().cast(),
        iov_len: buf.len(),
    };
    let start = now_ns();
    for _ in 0..rounds {
        let local = libc::iovec {
            iov_base: copy.as_mut_ptr().cast(),
            iov_len: copy.len(),
        };
        // SAFETY: `local` describes `copy`, writable for its length; the
        // kernel only reads the remote range, our own live buffer.
        let n = unsafe { libc::process_vm_readv(pid, &local, 1, &iov, 1, 0) };
        if usize::try_from(n).ok() != Some(buf.len()) {
            return Err(std::io::Error::last_os_error()).context("process_vm_readv");
        }
        // SAFETY: the buffer outlives the registration, which ends below
        // (or when `ring` is dropped first, on an early return).
        unsafe { ring.submitter().register_buffers(&[iov]) }.context("IORING_REGISTER_BUFFERS")?;
        ring.submitter()
            .unregister_buffers()
            .context("IORING_UNREGISTER_BUFFERS")?;
    }
    let ns = now_ns() - start;
    Ok(Measured {
        ops: (rounds * 2 * buf.pages()) as u64,
        ns,
    })
}

/// fork-big: fork a process holding a populated 128 MiB mapping; the child
/// exits at once. ops = forks.
pub fn fork_big(quick: bool) -> anyhow::Result<Measured> {
    let (mib, rounds) = if quick { (16, 2) } else { (128, 8) };
    let _buf = buffer(mib)?;
    let start = now_ns();
    for _ in 0..rounds {
        fork_and_wait(|| {})?;
    }
    let ns = now_ns() - start;
    Ok(Measured {
        ops: rounds as u64,
        ns,
    })
}
