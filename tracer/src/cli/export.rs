//! `cowtrace export`: trace files to other formats.

use std::{
    io::{BufWriter, Write as _},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context as _;
use clap::ValueEnum;

use super::{CliResult, Failure, input};
use crate::output::jsonl::JsonlExporter;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One JSON object per event (schema in the README).
    Jsonl,
}

/// Export the events of trace files, in time order.
///
/// Several files (a rotated set, in any order) are stitched by time.
///
/// Example: cowtrace export app.cwt --format jsonl > app.jsonl
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trace files written by `cowtrace record`.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,

    /// Write here instead of standard output.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
}

pub fn run(args: Args) -> CliResult {
    let mut reader = input::open(&args.files)?;
    let out: Box<dyn std::io::Write> = match &args.output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    let mut exporter = JsonlExporter::new();
    let mut line = String::new();
    while let Some(ev) = reader.next_event() {
        let ev = ev.map_err(Failure::input)?;
        line.clear();
        if exporter.line(&ev, &mut line) {
            out.write_all(line.as_bytes())
                .context("writing the export")?;
            out.write_all(b"\n").context("writing the export")?;
        }
    }
    // A cut-off file (crash, full disk) is a readable prefix: say so in the
    // stream itself too, so a consumer of the JSON lines sees it.
    for t in reader.truncations() {
        let line = serde_json::json!({
            "type": "truncated",
            "file": t.file.display().to_string(),
            "at_byte": t.at_byte,
            "complete_blocks": t.complete_blocks,
        });
        writeln!(out, "{line}").context("writing the export")?;
    }
    out.flush().context("writing the export")?;
    input::report_damage(&reader);
    Ok(ExitCode::SUCCESS)
}
