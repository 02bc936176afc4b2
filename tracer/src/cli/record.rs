//! `cowtrace record`: capture decisions into a trace file.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use super::{
    CliResult,
    session::{self, Sink},
    trace_args::TraceArgs,
};
use crate::{
    model::{Event, LostCounts, service_config::parse_size},
    trace::{TraceWriter, WriterOptions},
};

/// Record COW, unshare, GUP and fork decisions into a trace file.
///
/// The file is self-describing (kernel, tool version, attach plan, clock
/// base), flushed every 250 ms, and readable after a crash up to the last
/// flush. Analyse it anywhere with `cowtrace report` or `cowtrace export`.
///
/// Example: cowtrace record -o app.cwt -- ./app --serve
///
/// Example: cowtrace record -o host.cwt --duration 60 --max-size 256M --max-files 8
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trace file to write (created with mode 0600).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    /// Rotate to a new numbered file when this size is reached (K, M, G suffixes).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,

    /// Keep at most this many rotated files (the oldest are deleted).
    #[arg(long, value_name = "N", requires = "max_size")]
    pub max_files: Option<u32>,

    #[command(flatten)]
    pub trace: TraceArgs,
}

struct FileSink {
    writer: TraceWriter,
    lost: LostCounts,
}

impl Sink for FileSink {
    fn events(&mut self, events: &[Event]) -> anyhow::Result<()> {
        for ev in events {
            session::tally_lost(&mut self.lost, ev);
            self.writer.push(ev)?;
        }
        Ok(())
    }

    fn tick(&mut self) -> anyhow::Result<()> {
        Ok(self.writer.flush()?)
    }
}

pub fn run(args: Args) -> CliResult {
    let duration = args.trace.duration()?;
    let rt = session::runtime()?;
    rt.block_on(async {
        let (mut live, meta) = session::prepare(&args.trace, session::CaptureMode::Full)?;
        let opts = WriterOptions {
            max_size: args.max_size,
            max_files: args.max_files,
            ..WriterOptions::default()
        };
        let writer = TraceWriter::create(&args.output, &meta, opts)
            .with_context(|| format!("creating {}", args.output.display()))?;
        let mut sink = FileSink {
            writer,
            lost: LostCounts::default(),
        };
        let child = session::spawn_command(&args.trace.command)?;
        let stop = live.run(&mut sink, duration, child).await;
        // Detach before the final write: nothing more arrives anyway.
        drop(live);
        let summary = sink
            .writer
            .finish()
            .with_context(|| format!("finishing {}", args.output.display()));
        let stop = stop?;
        let events = summary?.events;
        eprintln!(
            "cowtrace: {}; {events} events written to {}; {}",
            session::describe(&stop),
            args.output.display(),
            session::loss_note(&sink.lost),
        );
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use crate::model::service_config::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
