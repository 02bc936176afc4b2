//! `cowtrace report`: the COW/unshare report and alerts of trace files.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::ValueEnum;

use super::{CliResult, Failure, input};
use crate::{
    model::{Config, Engine},
    output::report_text,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Aligned tables for a person: alerts first.
    Text,
    /// The report as one JSON document (field names in the README).
    Json,
}

/// Correlate trace files into a report: per process, per mapping, per
/// decision reason, with the alerts the rules raise.
///
/// It runs the same engine as `cowtrace watch`.
///
/// Example: cowtrace report app.cwt
///
/// Example: cowtrace report host.cwt host.cwt.1 --format json --config rules.toml
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trace files written by `cowtrace record` (a rotated set in any order).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// Rules, thresholds and allow-lists (TOML; see `cowtrace watch --help`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Loads `--config`, or the defaults; an invalid file is exit status 2.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config, Failure> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))
        .map_err(Failure::input)?;
    Config::from_toml_str(&text)
        .with_context(|| format!("invalid config {}", path.display()))
        .map_err(Failure::input)
}

pub fn run(args: Args) -> CliResult {
    let config = load_config(args.config.as_ref())?;
    let mut reader = input::open(&args.files)?;
    let mut engine = Engine::new(config, reader.meta().kernel.clone());
    let mut alerts = Vec::new();
    // In batches: the engine prefetches the table slots of events ahead.
    const BATCH: usize = 1024;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let next = reader.next_event();
        let done = next.is_none();
        if let Some(ev) = next {
            batch.push(ev.map_err(Failure::input)?);
        }
        if batch.len() == BATCH || (done && !batch.is_empty()) {
            engine.feed_batch(&batch, &mut alerts);
            batch.clear();
            alerts.clear();
        }
        if done {
            break;
        }
    }
    input::report_damage(&reader);
    let report = engine.report();
    match args.format {
        Format::Text => print!("{}", report_text::render(&report)),
        Format::Json => {
            let mut v = serde_json::to_value(&report).context("serializing the report")?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("truncated".into(), input::truncation_json(&reader));
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&v).context("serializing the report")?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
