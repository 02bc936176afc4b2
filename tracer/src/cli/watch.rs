//! `cowtrace watch`: live alerts, a periodic status line, and the full
//! report when tracing stops.

use std::{
    io::Write as _,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::ValueEnum;

use super::{
    CliResult,
    report::load_config,
    session::{self, Sink},
    trace_args::TraceArgs,
};
use crate::{
    model::{Alert, Engine, Event},
    output::{alert_text, report_text},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Alerts as readable lines; the report as tables.
    Text,
    /// Alerts as JSON lines; the report as one JSON document at the end.
    Json,
}

/// Watch the kernel's COW decisions live and raise alerts as they happen.
///
/// Alerts go to standard output as they are raised (JSON lines with
/// `--format json`); a one-line status goes to standard error every
/// `--status-interval` seconds; the full report is printed when tracing
/// stops (SIGINT, SIGTERM, `--duration`, or the command's exit).
///
/// Example: cowtrace watch -- ./app
///
/// Example: cowtrace watch --format json --config /etc/cowtrace/rules.toml
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// Rules, thresholds and allow-lists (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Seconds between status lines on standard error (0: none).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub status_interval: u64,

    #[command(flatten)]
    pub trace: TraceArgs,
}

struct WatchSink {
    engine: Engine,
    format: Format,
    alerts: Vec<Alert>,
    status_every: Option<Duration>,
    last_status: Instant,
}

impl WatchSink {
    fn print_alerts(&mut self) -> anyhow::Result<()> {
        if self.alerts.is_empty() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        for a in self.alerts.drain(..) {
            match self.format {
                Format::Text => writeln!(out, "{}", alert_text::render(&a))?,
                Format::Json => writeln!(out, "{}", serde_json::to_string(&a)?)?,
            }
        }
        out.flush()?;
        Ok(())
    }
}

impl Sink for WatchSink {
    fn events(&mut self, events: &[Event]) -> anyhow::Result<()> {
        for ev in events {
            self.engine.feed(ev, &mut self.alerts);
        }
        self.print_alerts()
    }

    fn tick(&mut self) -> anyhow::Result<()> {
        if let Some(every) = self.status_every
            && self.last_status.elapsed() >= every
        {
            self.last_status = Instant::now();
            eprintln!("cowtrace: {}", self.engine.summary());
        }
        Ok(())
    }
}

pub fn run(args: Args) -> CliResult {
    let config = load_config(args.config.as_ref())?;
    let duration = args.trace.duration()?;
    let rt = session::runtime()?;
    rt.block_on(async {
        let (mut live, meta) = session::prepare(&args.trace)?;
        let mut sink = WatchSink {
            engine: Engine::new(config, meta.kernel.clone()),
            format: args.format,
            alerts: Vec::new(),
            status_every: (args.status_interval > 0)
                .then(|| Duration::from_secs(args.status_interval)),
            last_status: Instant::now(),
        };
        let child = session::spawn_command(&args.trace.command)?;
        let stop = live.run(&mut sink, duration, child).await;
        drop(live);
        let stop = stop?;
        let report = sink.engine.report();
        match args.format {
            Format::Text => {
                println!();
                print!("{}", report_text::render(&report));
            }
            Format::Json => println!("{}", serde_json::to_string(&report)?),
        }
        eprintln!("cowtrace: {}", session::describe(&stop));
        Ok(ExitCode::SUCCESS)
    })
}
