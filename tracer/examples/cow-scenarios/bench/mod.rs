//! Overhead benchmarks: workloads that time themselves, and the driver that
//! runs each of them untraced and under each tracing mode in one boot.
//!
//! Each workload measures only its own hot loop with `CLOCK_MONOTONIC`, so
//! cowtrace's start-up and tear-down are not part of the figure. Under
//! QEMU's instruction-count clock (`cargo xtask bench`) that time is an
//! instruction count, so a traced/untraced ratio repeats to four digits.

mod driver;
mod storms;

pub use driver::{Config, run as drive};

use serde::{Deserialize, Serialize};

/// A benchmark workload, named as on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchWorkload {
    /// fork; the child writes every page of a 32 MiB private buffer (copies),
    /// exits; the parent writes every page (reuses). Several rounds.
    CowStorm,
    /// Read-only pins (process_vm_readv) and long-term write pins (io_uring
    /// buffer register/unregister) of a 4 MiB buffer, repeated.
    GupStorm,
    /// fork of a process with a 128 MiB populated anonymous mapping; the
    /// child exits at once.
    ForkBig,
}

impl BenchWorkload {
    pub const ALL: [BenchWorkload; 3] = [
        BenchWorkload::CowStorm,
        BenchWorkload::GupStorm,
        BenchWorkload::ForkBig,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BenchWorkload::CowStorm => "cow-storm",
            BenchWorkload::GupStorm => "gup-storm",
            BenchWorkload::ForkBig => "fork-big",
        }
    }

    /// Runs the workload (`quick`: a small size for a smoke test).
    pub fn run(self, quick: bool) -> anyhow::Result<Measured> {
        match self {
            BenchWorkload::CowStorm => storms::cow_storm(quick),
            BenchWorkload::GupStorm => storms::gup_storm(quick),
            BenchWorkload::ForkBig => storms::fork_big(quick),
        }
    }
}

/// What one run of a workload measured.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Measured {
    /// Operations done in the timed loop (page faults, pinned pages, forks).
    pub ops: u64,
    /// Guest `CLOCK_MONOTONIC` nanoseconds the timed loop took.
    pub ns: u64,
}

/// The tag of the line a workload prints (to stdout) with its measurement.
pub const RUN_TAG: &str = "COWTRACE-BENCH-RUN ";

/// `COWTRACE-BENCH-RUN {"ops":..,"ns":..}`.
pub fn run_line(m: &Measured) -> String {
    format!("{RUN_TAG}{}", serde_json::json!({"ops": m.ops, "ns": m.ns}))
}

/// The measurement a workload printed somewhere in `stdout` (which may also
/// hold cowtrace's own output).
pub fn find_run_line(stdout: &str) -> Option<Measured> {
    stdout
        .lines()
        .find_map(|l| l.split_once(RUN_TAG))
        .and_then(|(_, json)| serde_json::from_str(json.trim()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lines_round_trip_through_noisy_output() {
        let m = Measured {
            ops: 65536,
            ns: 464_000_000,
        };
        let out = format!(
            "alert: x\n[  3.1] noise {}\n{{\"events\":3}}\n",
            run_line(&m)
        );
        assert_eq!(find_run_line(&out), Some(m));
        assert_eq!(find_run_line("no result here\n"), None);
        assert_eq!(find_run_line("COWTRACE-BENCH-RUN {\"ops\":1}\n"), None);
    }
}
