//! cow-scenarios: workloads that make the kernel take copy-on-write,
//! unshare and GUP decisions, measure the outcome themselves (pagemap), and
//! check what `cowtrace` recorded against that ground truth.
//!
//! Runs inside the test VM as root, with `cowtrace` on PATH:
//!
//! ```text
//! cow-scenarios run vmsplice-then-write --truth /tmp/v.json   # one workload
//! cow-scenarios suite                                         # record + check all
//! cow-scenarios demo                                          # a guided tour
//! ```

mod bench;
mod buffer;
mod checks;
mod contention;
mod demo;
mod export;
mod hex;
mod lean;
mod pagemap;
mod report;
mod robust;
mod runner;
mod service;
mod suite;
mod sys;
mod truth;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use workloads::Workload;

#[derive(Parser)]
#[command(
    version,
    about = "COW/GUP workloads with self-measured ground truth, and cowtrace's checks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one workload and write its measured ground truth as JSON.
    ///
    /// Example: cow-scenarios run fork-child-writes --truth /tmp/f.json
    Run {
        workload: Workload,
        /// Pages in the buffer (default 16; 4096 for overload).
        #[arg(long)]
        pages: Option<usize>,
        /// Where to write the ground truth.
        #[arg(long)]
        truth: PathBuf,
        /// Run alone on this CPU under SCHED_FIFO (see `sys::isolate_on`).
        #[arg(long, value_name = "CPU")]
        isolate: Option<usize>,
    },
    /// Record every workload with cowtrace and check the trace against the
    /// workload's ground truth; prints COWTRACE-RESULT lines, exit 0 iff all pass.
    ///
    /// Example: cow-scenarios suite --only vmsplice-then-write
    Suite {
        #[command(flatten)]
        tools: Tools,
        /// Directory for traces (<name>.cwt) and truths (<name>.json).
        #[arg(long, default_value = "/tmp")]
        dir: PathBuf,
        /// Run only these scenarios (repeatable).
        #[arg(long)]
        only: Vec<String>,
    },
    /// A guided tour: the four main workloads under one `cowtrace watch`.
    ///
    /// Example: cow-scenarios demo
    Demo {
        #[command(flatten)]
        tools: Tools,
    },
    /// The traced side of `demo` (run by `demo` under `cowtrace watch`).
    #[command(hide = true)]
    DemoWorkloads,
    /// Overhead benchmarks: each workload untraced and under each tracing
    /// mode; prints COWTRACE-BENCH lines (run by `cargo xtask bench`).
    ///
    /// Example: cow-scenarios bench --only cow-storm
    Bench {
        #[command(flatten)]
        tools: Tools,
        /// Run only these workloads (repeatable; default: all).
        #[arg(long, value_enum)]
        only: Vec<bench::BenchWorkload>,
        /// Small sizes: checks the whole path quickly, not a measurement.
        #[arg(long)]
        quick: bool,
        /// Directory for the record mode's trace.
        #[arg(long, default_value = "/tmp")]
        dir: PathBuf,
    },
    /// One timed benchmark workload; prints a COWTRACE-BENCH-RUN line.
    #[command(hide = true)]
    BenchRun {
        #[arg(value_enum)]
        workload: bench::BenchWorkload,
        #[arg(long)]
        quick: bool,
    },
}

#[derive(clap::Args)]
struct Tools {
    /// The cowtrace binary.
    #[arg(long, env = "COWTRACE", default_value = "cowtrace")]
    cowtrace: PathBuf,
    /// Seconds each cowtrace invocation may take before it is killed.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// This binary, to run under cowtrace (falls back to the name on PATH).
fn self_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cow-scenarios"))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cow-scenarios: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            workload,
            pages,
            truth,
            isolate,
        } => {
            if let Some(cpu) = isolate {
                sys::isolate_on(cpu)?;
            }
            lean::take_workload_name();
            let measured = workload.run(pages.unwrap_or(workload.default_pages()))?;
            let text = serde_json::to_string_pretty(&measured)?;
            std::fs::write(&truth, text + "\n")
                .with_context(|| format!("writing {}", truth.display()))?;
            eprintln!("cow-scenarios: {}: {}", workload.name(), measured.summary());
            Ok(ExitCode::SUCCESS)
        }
        Command::Suite { tools, dir, only } => {
            let cfg = suite::Config {
                cowtrace: tools.cowtrace,
                self_exe: self_exe(),
                dir,
                timeout: Duration::from_secs(tools.timeout),
                only,
            };
            let all_ok = suite::run(&cfg)?;
            Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Demo { tools } => {
            // The demo's own deadline: the tour takes about a minute in TCG.
            let timeout = Duration::from_secs(tools.timeout.max(300));
            demo::demo(&tools.cowtrace, &self_exe(), timeout)
        }
        Command::DemoWorkloads => Ok(demo::workloads()),
        Command::Bench {
            tools,
            only,
            quick,
            dir,
        } => {
            let cfg = bench::Config {
                cowtrace: tools.cowtrace,
                self_exe: self_exe(),
                dir,
                timeout: Duration::from_secs(tools.timeout.max(600)),
                workloads: if only.is_empty() {
                    bench::BenchWorkload::ALL.to_vec()
                } else {
                    only
                },
                quick,
            };
            Ok(if bench::drive(&cfg)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::BenchRun { workload, quick } => {
            let m = workload.run(quick)?;
            println!("{}", bench::run_line(&m));
            Ok(ExitCode::SUCCESS)
        }
    }
}
