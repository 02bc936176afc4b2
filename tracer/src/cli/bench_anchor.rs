//! `cowtrace bench-anchor -- CMD` (hidden): runs CMD with only the
//! counting-only `baseline_count` kprobe on `do_wp_page` attached. It is the
//! benchmark's anchor, the cost of the cheapest probe on the hottest hook,
//! not a tracing mode, hence hidden from the help.

use std::process::{Command, ExitCode};

use anyhow::{Context as _, anyhow};
use tracer_common::DEFAULT_RING_BYTES;

use super::CliResult;
use crate::capture::{ANCHOR_TARGET, Anchor};

/// Count do_wp_page calls (and nothing else) while COMMAND runs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The command to run with the anchor attached.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub fn run(args: Args) -> CliResult {
    let Some((program, rest)) = args.command.split_first() else {
        return Err(anyhow!("bench-anchor needs a command after `--`").into());
    };
    let anchor = Anchor::attach(DEFAULT_RING_BYTES).context("attaching the anchor kprobe")?;
    let status = Command::new(program)
        .args(rest)
        .status()
        .with_context(|| format!("starting `{program}`"))?;
    let calls = anchor.count()?;
    drop(anchor);
    // The same shape as `record`'s summary, so one parser reads both.
    eprintln!(
        "cowtrace: command exited with status {}; {calls} events counted on {ANCHOR_TARGET}; no events lost",
        status.code().unwrap_or(-1)
    );
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
