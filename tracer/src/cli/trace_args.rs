//! Arguments shared by the subcommands that trace live (`record`, `watch`).

use std::{os::unix::fs::MetadataExt as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::Args;
use tracer_common::{DEFAULT_RING_BYTES, Filter};

use crate::kernel::MechanismChoice;

#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Only trace these processes (and the children they fork). Repeatable.
    ///
    /// Example: --pid 1234 --pid 5678
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Only trace tasks whose name starts with COMM (at most 15 bytes).
    #[arg(long, value_name = "COMM")]
    pub comm: Option<String>,

    /// Only trace tasks in this cgroup (v2), by path.
    ///
    /// Example: --cgroup /sys/fs/cgroup/system.slice/db.service
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,

    /// With a COMMAND: trace the whole system, not just the command's process tree.
    #[arg(long, short = 'a')]
    pub all: bool,

    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,

    /// Ring buffer size in bytes (a power of two, at least the page size).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RING_BYTES)]
    pub ring_bytes: u32,

    /// Keep raw kernel pointers (mm) and unsymbolized addresses instead of
    /// per-trace ids: they reveal kernel memory layout.
    #[arg(long)]
    pub raw_pointers: bool,

    /// Command to run while tracing; tracing stops when it exits.
    ///
    /// Example: cowtrace record -o app.cwt -- ./app --flag
    /// How probes attach where a hook offers a choice: `fentry` (BPF
    /// trampolines: cheaper, needs BTF), `kprobe`, or `auto` (fentry where
    /// the kernel allows it, else kprobes). `cowtrace check` shows the
    /// mechanism per hook.
    #[arg(long, value_enum, default_value = "auto")]
    pub mechanism: MechanismArg,

    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl TraceArgs {
    pub fn duration(&self) -> anyhow::Result<Option<Duration>> {
        match self.duration {
            None => Ok(None),
            Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
            Some(s) => bail!("--duration must be a positive number of seconds, got {s}"),
        }
    }

    pub fn check_ring_bytes(&self) -> anyhow::Result<()> {
        let n = self.ring_bytes;
        if n < 4096 || !n.is_power_of_two() {
            bail!("--ring-bytes must be a power of two and at least 4096, got {n}");
        }
        Ok(())
    }

    /// The in-kernel filter and the initial `PIDS` map content.
    pub fn filter(&self) -> anyhow::Result<(Filter, Vec<u32>)> {
        let self_tgid = std::process::id();
        let mut filter = Filter {
            self_tgid,
            ..Filter::default()
        };
        let mut pids = self.pids.clone();
        // `-- CMD` without explicit filters traces the command's process
        // tree, like `perf record -- CMD`: our own pid is the seed, the
        // fork probe adds each child; our own events stay filtered out.
        if !self.command.is_empty()
            && !self.all
            && self.pids.is_empty()
            && self.comm.is_none()
            && self.cgroup.is_none()
        {
            pids.push(self_tgid);
        }
        if !pids.is_empty() {
            filter.pid_filter = 1;
        }
        if let Some(comm) = &self.comm {
            let b = comm.as_bytes();
            if b.is_empty() || b.len() > 15 {
                bail!("--comm must be 1 to 15 bytes, got {} bytes", b.len());
            }
            filter.comm[..b.len()].copy_from_slice(b);
            filter.comm_len = b.len() as u32;
        }
        if let Some(path) = &self.cgroup {
            // A cgroup v2 id is the inode number of its directory.
            let md = std::fs::metadata(path)
                .with_context(|| format!("--cgroup {}: cannot stat", path.display()))?;
            if !md.is_dir() {
                bail!("--cgroup {}: not a cgroup directory", path.display());
            }
            filter.cgroup_id = md.ino();
        }
        Ok((filter, pids))
    }
}

/// `--mechanism`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MechanismArg {
    #[default]
    Auto,
    Kprobe,
    Fentry,
}

impl From<MechanismArg> for MechanismChoice {
    fn from(m: MechanismArg) -> Self {
        match m {
            MechanismArg::Auto => MechanismChoice::Auto,
            MechanismArg::Kprobe => MechanismChoice::Kprobe,
            MechanismArg::Fentry => MechanismChoice::Fentry,
        }
    }
}
