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
    /// Perfetto trace (TracePacket protobuf): a track per process, faults
    /// and alerts as instants, FOLL_PIN pins as slices. Needs -o.
    Perfetto,
    /// Parquet: one row per event, typed columns, host and kernel release
    /// on every row; files from several hosts make one table. Needs -o.
    Parquet,
}

/// Export the events of trace files, in time order.
///
/// Several files (a rotated set, in any order) are stitched by time.
///
/// Example: cowtrace export app.cwt --format jsonl > app.jsonl
///
/// Example: cowtrace export app.cwt --format perfetto -o app.pftrace
///
/// Example: cowtrace export hosts/*/*.cwt --format parquet -o fleet.parquet
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
    match args.format {
        Format::Perfetto => return perfetto(&args),
        Format::Parquet => return parquet_export::run(&args),
        Format::Jsonl => {}
    }
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

/// `--format perfetto`: binary, so only to a file (`-o`).
fn perfetto(args: &Args) -> CliResult {
    let Some(path) = &args.output else {
        return Err(Failure::input(anyhow::anyhow!(
            "--format perfetto writes a binary trace: give a file with -o"
        )));
    };
    let mut reader = input::open(&args.files)?;
    let mut exporter = crate::output::perfetto::PerfettoExporter::new(
        reader.meta().kernel.clone(),
        crate::model::Config::default(),
    );
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let mut buf = Vec::with_capacity(1 << 16);
    while let Some(ev) = reader.next_event() {
        let ev = ev.map_err(Failure::input)?;
        exporter.event(&ev, &mut buf);
        if buf.len() >= 1 << 16 {
            out.write_all(&buf).context("writing the export")?;
            buf.clear();
        }
    }
    exporter.finish(&mut buf);
    out.write_all(&buf).context("writing the export")?;
    out.flush().context("writing the export")?;
    input::report_damage(&reader);
    Ok(ExitCode::SUCCESS)
}

/// `--format parquet` (cargo feature `parquet`, on by default): binary, so
/// only to a file (`-o`). Files are grouped by recording (host, kernel
/// release, clock base): the parts of one recording are stitched by time,
/// and recordings, from any number of hosts, follow each other in the one
/// output.
#[cfg(feature = "parquet")]
mod parquet_export {
    use std::{
        collections::BTreeMap,
        io::{BufWriter, Write as _},
        path::PathBuf,
        process::ExitCode,
    };

    use anyhow::Context as _;

    use super::{Args, CliResult, Failure, input};
    use crate::output::parquet::ParquetExporter;

    pub(super) fn run(args: &Args) -> CliResult {
        let Some(path) = &args.output else {
            return Err(Failure::input(anyhow::anyhow!(
                "--format parquet writes a binary file: give a file with -o"
            )));
        };
        let groups = group_by_recording(&args.files)?;
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut exporter =
            ParquetExporter::new(BufWriter::new(file)).context("writing the export")?;
        for files in groups {
            let mut reader = input::open(&files)?;
            exporter.begin_source(reader.meta());
            while let Some(ev) = reader.next_event() {
                let ev = ev.map_err(Failure::input)?;
                exporter.event(&ev).context("writing the export")?;
            }
            input::report_damage(&reader);
        }
        let (mut out, _summary) = exporter.finish().context("writing the export")?;
        out.flush().context("writing the export")?;
        Ok(ExitCode::SUCCESS)
    }

    /// Splits `files` by the recording their header names, oldest first.
    /// Only the headers are read here.
    fn group_by_recording(files: &[PathBuf]) -> Result<Vec<Vec<PathBuf>>, Failure> {
        let mut groups: BTreeMap<(u64, String, String, u64), Vec<PathBuf>> = BTreeMap::new();
        for f in files {
            let reader = input::open(std::slice::from_ref(f))?;
            let m = reader.meta();
            let key = (
                m.clock.realtime_ns,
                m.hostname.clone(),
                m.kernel.release.clone(),
                m.clock.monotonic_ns,
            );
            groups.entry(key).or_default().push(f.clone());
        }
        Ok(groups.into_values().collect())
    }
}

#[cfg(not(feature = "parquet"))]
mod parquet_export {
    use super::{Args, CliResult, Failure};

    pub(super) fn run(_: &Args) -> CliResult {
        Err(Failure::input(anyhow::anyhow!(
            "--format parquet: this cowtrace was built without the `parquet` cargo feature"
        )))
    }
}
