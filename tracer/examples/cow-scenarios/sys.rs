//! Thin process plumbing for the workloads: pipes, a forked companion
//! process that can measure itself and report back, and `uname`.
//!
//! Workloads fork for real (`fork(2)`, not `std::process`): the point is the
//! kernel's fork-time sharing of the buffer. `run` is single-threaded, so the
//! child may allocate; it never returns into the caller's code and leaves
//! with `_exit`.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// Both ends of a pipe (close-on-exec).
pub struct Pipe {
    pub read: File,
    pub write: File,
}

impl Pipe {
    pub fn new() -> anyhow::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error()).context("pipe2");
        }
        // SAFETY: pipe2 succeeded: both descriptors are open and ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe {
            read: File::from(read),
            write: File::from(write),
        })
    }
}

pub fn getpid() -> u32 {
    std::process::id()
}

/// `uname -r` of the running kernel.
pub fn kernel_release() -> anyhow::Result<String> {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("uname");
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Keeps this process (and the children it forks) on the CPU it runs on.
///
/// The kernel batches newly added and recently touched pages per CPU, each
/// batch holding a page reference until it is drained. Such a transient
/// reference makes a refcount-based reuse check (5.10, and the fallback on
/// newer lines) copy a page nobody else uses. With every step on one CPU,
/// [`drain_lru_batches`] can remove them all.
pub fn pin_to_current_cpu() -> anyhow::Result<usize> {
    // SAFETY: no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    let cpu = usize::try_from(cpu)
        .map_err(|_| std::io::Error::last_os_error())
        .context("sched_getcpu")?;
    set_affinity(cpu).context("sched_setaffinity")?;
    Ok(cpu)
}

/// Restricts the calling thread (and what it later forks or spawns) to `cpu`.
pub fn set_affinity(cpu: usize) -> std::io::Result<()> {
    // CPU_SET does not check its index: keep it below CPU_SETSIZE.
    if cpu >= 1024 {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: cpu_set_t is plain old data (all zeroes: the empty set), and
    // `cpu` is in bounds (checked above).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs this process alone on `cpu` under SCHED_FIFO, so that nothing on
/// that CPU that enters the traced kernel functions can preempt it (kernel
/// threads do not fault user pages) and its forked children, FIFO too, run
/// one at a time until they block. A trampoline program is then never
/// preempted by a task that enters the same program, whatever the kernel's
/// preemption model.
pub fn isolate_on(cpu: usize) -> anyhow::Result<()> {
    set_affinity(cpu).with_context(|| format!("sched_setaffinity to CPU {cpu}"))?;
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid sched_param for the calling process.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        return Err(std::io::Error::last_os_error()).context("sched_setscheduler SCHED_FIFO");
    }
    Ok(())
}

/// Drains this CPU's page batches (`lru_add_drain()`), through the one
/// unprivileged call that does exactly that: `MADV_COLD` (5.4+) runs it
/// before walking the range. The range is a fresh page of its own, never
/// populated, so no workload page is touched.
pub fn drain_lru_batches() -> anyhow::Result<()> {
    // SAFETY: a fresh anonymous mapping of one page, unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error()).context("mmap for MADV_COLD");
    }
    // SAFETY: advice on, then removal of, the mapping made above.
    let advised = unsafe { libc::madvise(addr, 4096, libc::MADV_COLD) };
    let err = std::io::Error::last_os_error();
    // SAFETY: as above; nothing refers to the mapping.
    unsafe { libc::munmap(addr, 4096) };
    if advised != 0 {
        return Err(err).context("madvise(MADV_COLD) to drain the per-CPU page batches");
    }
    Ok(())
}

/// What a companion measured about itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChildReport {
    pub pid: u32,
    pub pfns_before: Vec<u64>,
    pub pfns_after: Vec<u64>,
}

/// A forked child that runs one job, reports the result through a pipe,
/// then stays alive (keeping the fork-shared pages shared) until
/// [`Companion::release`]. Dropping an unreleased companion kills and reaps it.
pub struct Companion {
    pid: libc::pid_t,
    report: Option<File>,
    release: Option<File>,
    reaped: bool,
}

impl Companion {
    /// Forks; the child runs `job` and sends its result.
    pub fn spawn(job: impl FnOnce() -> anyhow::Result<ChildReport>) -> anyhow::Result<Companion> {
        let report = Pipe::new()?;
        let release = Pipe::new()?;
        // Unflushed output would be written twice (once by each process).
        std::io::stdout().flush().ok();
        std::io::stderr().flush().ok();
        // SAFETY: the caller is single-threaded (see the module doc), so the
        // child starts with a consistent heap; it leaves via `_exit`.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork");
        }
        if pid == 0 {
            drop(report.read);
            drop(release.write);
            child_main(job, report.write, release.read);
        }
        drop(report.write);
        drop(release.read);
        Ok(Companion {
            pid,
            report: Some(report.read),
            release: Some(release.write),
            reaped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Waits for the job's result.
    pub fn report(&mut self) -> anyhow::Result<ChildReport> {
        let mut file = self
            .report
            .take()
            .context("the child's report was already read")?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .context("reading the child's report")?;
        let result: Result<ChildReport, String> = serde_json::from_str(&text)
            .with_context(|| format!("child {} sent no usable report: {text:?}", self.pid))?;
        result.map_err(|e| anyhow::anyhow!("child {}: {e}", self.pid))
    }

    /// Lets the child exit and reaps it.
    pub fn release(mut self) -> anyhow::Result<()> {
        drop(self.release.take());
        let status = self.wait()?;
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bail!(
                "child {} ended abnormally (wait status {status:#x})",
                self.pid
            );
        }
        Ok(())
    }

    fn wait(&mut self) -> anyhow::Result<libc::c_int> {
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child; `status` is writable.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                self.reaped = true;
                return Ok(status);
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(err).with_context(|| format!("waitpid({})", self.pid));
            }
        }
    }
}

impl Drop for Companion {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: our own, not yet reaped child: the pid cannot have
            // been reused by another process.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.wait();
        }
    }
}

fn child_main(
    job: impl FnOnce() -> anyhow::Result<ChildReport>,
    mut report: File,
    mut release: File,
) -> ! {
    let result = catch_unwind(AssertUnwindSafe(job))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")))
        .map_err(|e| format!("{e:#}"));
    let sent = serde_json::to_vec(&result)
        .ok()
        .is_some_and(|bytes| report.write_all(&bytes).is_ok());
    drop(report);
    // Block until the parent releases us (or dies: EOF either way).
    let mut byte = [0u8; 1];
    let _ = release.read(&mut byte);
    let code = if sent && result.is_ok() { 0 } else { 1 };
    // SAFETY: leaves the child without running the parent's destructors
    // or atexit handlers.
    unsafe { libc::_exit(code) }
}
