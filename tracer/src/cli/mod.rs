//! The `cowtrace` command line: one module per subcommand.
//!
//! Exit status: 0 success, 1 runtime failure (attach, write, kernel), 2 bad
//! input (unreadable or corrupt trace file, invalid config or arguments).

mod bench_anchor;
mod check;
mod error_text;
mod export;
mod input;
mod manpage;
mod record;
mod report;
mod session;
mod trace_args;
mod watch;
mod watch_service;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Trace the kernel's copy-on-write, unshare and GUP pin decisions.
///
/// cowtrace attaches eBPF probes to do_wp_page, the GUP slow and fast paths
/// and copy_page_range, records what the kernel decided (reuse, copy,
/// unshare) and the page state it decided on (refcount, mapcount,
/// PageAnonExclusive, pin or get), and raises alerts on pin-then-COW.
#[derive(Debug, Parser)]
#[command(
    name = "cowtrace",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Check(check::Args),
    Record(record::Args),
    Report(report::Args),
    Export(export::Args),
    Watch(watch::Args),
    /// Benchmark anchor: only a counting kprobe on do_wp_page.
    #[command(hide = true)]
    BenchAnchor(bench_anchor::Args),
    /// Write the man pages into a directory (packaging).
    #[command(hide = true)]
    Manpage(manpage::Args),
}

/// An error with the exit status it maps to.
#[derive(Debug)]
pub struct Failure {
    pub status: u8,
    pub error: anyhow::Error,
}

impl Failure {
    /// Bad input: a corrupt trace, an invalid config (exit 2).
    pub fn input(error: impl Into<anyhow::Error>) -> Self {
        Self {
            status: 2,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self {
            status: 1,
            error: e.into(),
        }
    }
}

pub type CliResult = Result<ExitCode, Failure>;

pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => check::run(a),
        Command::Record(a) => record::run(a),
        Command::Report(a) => report::run(a),
        Command::Export(a) => export::run(a),
        Command::Watch(a) => watch::run(a),
        Command::BenchAnchor(a) => bench_anchor::run(a),
        Command::Manpage(a) => manpage::run(a),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("cowtrace: error: {}", error_text::one_line(&f.error));
            ExitCode::from(f.status)
        }
    }
}
