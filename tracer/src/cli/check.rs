//! `cowtrace check`: what this kernel offers and how cowtrace would attach.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;

use super::CliResult;
use super::trace_args::MechanismArg;
use crate::kernel::{KernelInfo, check_with};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Preflight: print the attach plan for the running kernel without attaching.
///
/// For every hook: the symbol and mechanism chosen (or why none could be),
/// the struct fields resolved from the kernel's BTF, and what is lost when
/// an optional hook is missing. Exits 1 when a required hook cannot attach
/// or cowtrace cannot run here (privileges, BTF, kprobes).
///
/// Example: sudo cowtrace check
///
/// Example: cowtrace check --format json | jq '.plan.hooks[] | {name, chosen}'
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// Plan with this attach mechanism (as `record`/`watch --mechanism`).
    #[arg(long, value_enum, default_value = "auto")]
    pub mechanism: MechanismArg,
}

pub fn run(args: Args) -> CliResult {
    let info = KernelInfo::probe().context("reading the running kernel")?;
    let report = check_with(&info, args.mechanism.into());
    match args.format {
        Format::Text => print!("{}", report.render_text()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).context("serializing the plan")?
        ),
    }
    Ok(if report.ready() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
