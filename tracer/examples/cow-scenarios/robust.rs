//! The robustness scenarios' driver: `cowtrace record` killed, on a full
//! file system, stopped by SIGTERM, and under an open umask. It runs the
//! commands; the verdicts are the pure checks in `checks::robust`.
//!
//! Each recording traces this process's tree (`--pid` with our own pid), so
//! the workload children we start after the trace file appears (it is
//! created once every probe is attached) are traced, and nothing else is.

use std::fs::File;
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::checks::Verdict;
use crate::checks::robust::{self, ProbeCounts};
use crate::runner::{Finished, run_captured};
use crate::suite::Config;
use crate::workloads::Workload;

/// One robustness scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    Sigkill,
    Enospc,
    SigtermDetach,
    PrivateMode,
}

impl Case {
    pub const ALL: [Case; 4] = [
        Case::Sigkill,
        Case::Enospc,
        Case::SigtermDetach,
        Case::PrivateMode,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::Sigkill => "record-sigkill",
            Case::Enospc => "record-enospc",
            Case::SigtermDetach => "record-sigterm-detach",
            Case::PrivateMode => "record-umask-0600",
        }
    }

    pub fn run(self, cfg: &Config) -> Verdict {
        let result = match self {
            Case::Sigkill => sigkill(cfg),
            Case::Enospc => enospc(cfg),
            Case::SigtermDetach => sigterm(cfg),
            Case::PrivateMode => private_mode(cfg),
        };
        result.unwrap_or_else(|e| Verdict::failed(format!("{e:#}")))
    }
}

const POLL: Duration = Duration::from_millis(10);
/// What `record` is given to attach its probes and create the file (TCG is slow).
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
/// Four flush ticks: whatever the workload produced is on disk by then.
const FLUSH_WAIT: Duration = Duration::from_secs(1);
const KPROBE_LIST: &str = "/sys/kernel/debug/kprobes/list";

/// A `cowtrace record` running in its own process group, its output going
/// to files next to the trace (no reader threads to keep alive).
struct Recording {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    started: Instant,
}

impl Recording {
    fn start(cfg: &Config, trace: &Path, extra: &[&str]) -> anyhow::Result<Recording> {
        remove_if_present(trace)?;
        // Not next to the trace: its file system may be the one we fill.
        let stem = trace.file_stem().unwrap_or_default().to_string_lossy();
        let stdout = cfg.dir.join(format!("{stem}.record.stdout"));
        let stderr = cfg.dir.join(format!("{stem}.record.stderr"));
        let pid = std::process::id().to_string();
        let child = Command::new(&cfg.cowtrace)
            .arg("record")
            .arg("-o")
            .arg(trace)
            .args(["--pid", &pid])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).context("creating record's stdout file")?)
            .stderr(File::create(&stderr).context("creating record's stderr file")?)
            .process_group(0)
            .spawn()
            .context("starting cowtrace record")?;
        let mut rec = Recording {
            child,
            stdout,
            stderr,
            started: Instant::now(),
        };
        rec.wait_attached(trace)?;
        Ok(rec)
    }

    /// The file appears once every probe is attached (and has its header).
    fn wait_attached(&mut self, trace: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + ATTACH_TIMEOUT;
        loop {
            if std::fs::metadata(trace).is_ok_and(|m| m.len() > 0) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "cowtrace record ended before creating {}: {}",
                    trace.display(),
                    self.finished(Some(status)).stderr_excerpt(240)
                );
            }
            if Instant::now() >= deadline {
                self.kill_group();
                bail!("cowtrace record did not create {} in time", trace.display());
            }
            thread::sleep(POLL);
        }
    }

    fn signal(&self, sig: libc::c_int) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: signals only the child we started (and still own: not reaped).
        if unsafe { libc::kill(pid, sig) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill");
        }
        Ok(())
    }

    fn kill_group(&mut self) {
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: the process group we created for this recording.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }

    /// Waits until it exits, up to `limit`; killed (and `status: None`) after that.
    fn wait(mut self, limit: Duration) -> anyhow::Result<Finished> {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                self.kill_group();
                break None;
            }
            thread::sleep(POLL);
        };
        Ok(self.finished(status))
    }

    fn finished(&self, status: Option<ExitStatus>) -> Finished {
        Finished {
            status,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
            elapsed: self.started.elapsed(),
        }
    }
}

/// A scenario that fails half-way must not leave `record` running.
impl Drop for Recording {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_group();
        }
    }
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Runs a workload as our (traced) child; its verdict does not matter here.
fn run_workload(cfg: &Config, w: Workload) -> anyhow::Result<Finished> {
    let truth = cfg.dir.join(format!("robust-{}.json", w.name()));
    let f = run_captured(
        Command::new(&cfg.self_exe)
            .args(["run", w.name(), "--truth"])
            .arg(&truth),
        cfg.timeout,
    )?;
    if !f.success() {
        bail!(
            "workload {}: {}: {}",
            w.name(),
            f.describe(),
            f.stderr_excerpt(240)
        );
    }
    Ok(f)
}

fn cowtrace(cfg: &Config, args: &[&str], trace: &Path) -> anyhow::Result<Finished> {
    run_captured(
        Command::new(&cfg.cowtrace).args(args).arg(trace),
        cfg.timeout,
    )
}

fn sigkill(cfg: &Config) -> anyhow::Result<Verdict> {
    let trace = cfg.dir.join("record-sigkill.cwt");
    let rec = Recording::start(cfg, &trace, &[])?;
    run_workload(cfg, Workload::ForkChildWrites)?;
    thread::sleep(FLUSH_WAIT);
    rec.signal(libc::SIGKILL)?;
    let record = rec.wait(cfg.timeout)?;
    let export = cowtrace(cfg, &["export", "--format", "jsonl"], &trace)?;
    let report = cowtrace(cfg, &["report", "--format", "json"], &trace)?;
    Ok(robust::check_killed(&trace, &record, &export, &report))
}

/// Free space left on the file system once the header is written: a
/// few pages, so the workload's blocks fill it within a few flushes.
const ENOSPC_SLACK: u64 = 16 << 10;
/// Workload runs before we give up waiting for ENOSPC.
const ENOSPC_MAX_RUNS: usize = 8;

/// A 1 MiB tmpfs, filled (after `record` wrote its header) up to
/// [`ENOSPC_SLACK`] so the workload's blocks really hit ENOSPC.
fn enospc(cfg: &Config) -> anyhow::Result<Verdict> {
    let mnt = cfg.dir.join("record-enospc");
    std::fs::create_dir_all(&mnt).with_context(|| format!("creating {}", mnt.display()))?;
    let mounted = run_captured(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&mnt),
        cfg.timeout,
    )?;
    if !mounted.success() {
        bail!("mount tmpfs: {}", mounted.stderr_excerpt(240));
    }
    let result = enospc_on(cfg, &mnt);
    let _ = run_captured(Command::new("umount").arg(&mnt), cfg.timeout);
    result
}

fn enospc_on(cfg: &Config, mnt: &Path) -> anyhow::Result<Verdict> {
    let trace = mnt.join("trace.cwt");
    let mut rec = Recording::start(cfg, &trace, &[])?;
    fill(&mnt.join("filler"), ENOSPC_SLACK)?;
    let mut runs = 0;
    while runs < ENOSPC_MAX_RUNS && rec.child.try_wait()?.is_none() {
        run_workload(cfg, Workload::Overload)?;
        runs += 1;
        thread::sleep(FLUSH_WAIT);
    }
    // Still running: the disk never filled, or record ignores the error.
    let record = rec.wait(Duration::from_secs(10))?;
    let export = cowtrace(cfg, &["export", "--format", "jsonl"], &trace)?;
    let mut v = robust::check_enospc(&trace, &record, &export);
    v.detail = format!("{runs} overload runs; {}", v.detail);
    Ok(v)
}

/// Writes `path` until the file system is full, then gives `slack` back.
fn fill(path: &Path, slack: u64) -> anyhow::Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let chunk = vec![0x5au8; 4096];
    let mut len = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => len += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => return Err(e).with_context(|| format!("filling {}", path.display())),
        }
    }
    f.set_len(len.saturating_sub(slack))
        .with_context(|| format!("shrinking {}", path.display()))
}

/// Lines of the kernel's list of registered kprobes (debugfs).
fn kprobe_lines() -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(KPROBE_LIST)
        .with_context(|| format!("reading {KPROBE_LIST} (is debugfs mounted?)"))?;
    Ok(text.lines().count())
}

fn sigterm(cfg: &Config) -> anyhow::Result<Verdict> {
    let trace = cfg.dir.join("record-sigterm.cwt");
    let before = kprobe_lines()?;
    let rec = Recording::start(cfg, &trace, &[])?;
    let attached = kprobe_lines()?;
    rec.signal(libc::SIGTERM)?;
    let sent = Instant::now();
    let record = rec.wait(cfg.timeout)?;
    let exit_after = sent.elapsed();
    let after = kprobe_lines()?;
    let probes = ProbeCounts {
        before,
        attached,
        after,
    };
    Ok(robust::check_sigterm(probes, &record, exit_after))
}

fn private_mode(cfg: &Config) -> anyhow::Result<Verdict> {
    let trace = cfg.dir.join("record-umask.cwt");
    let control = cfg.dir.join("record-umask.control");
    remove_if_present(&trace)?;
    remove_if_present(&control)?;
    // The shell sets the umask for both: the control file shows what it
    // lets through, the trace what cowtrace made of it.
    let record = run_captured(
        Command::new("sh")
            .args([
                "-c",
                "umask 000 && : > \"$1\" && exec \"$2\" record -o \"$3\" -- true",
                "sh",
            ])
            .arg(&control)
            .arg(&cfg.cowtrace)
            .arg(&trace),
        cfg.timeout,
    )?;
    let mode = |p: &Path| std::fs::metadata(p).ok().map(|m| m.permissions().mode());
    Ok(robust::check_mode(&record, mode(&trace), mode(&control)))
}
