//! `cowtrace watch`: live alerts, a periodic status line, and the full
//! report when tracing stops. With `--config`, `--sink` and
//! `--metrics-listen` it is the long-running service (`watch_service`).

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::ValueEnum;

use super::{
    CliResult, Failure, input,
    report::load_config,
    session::{self, Sink},
    trace_args::TraceArgs,
    watch_service::{self, Service, ServiceArgs},
};
use crate::{
    model::{
        Alert, Counted, Engine, Event, Task,
        service_config::{SinkConfig, StdoutFormat},
    },
    output::report_text,
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
/// `--format json`), or to the sinks named by `--sink` and the config's
/// [[sinks]] tables; a one-line status goes to standard error every
/// `--status-interval` seconds; the full report is printed when tracing
/// stops (SIGINT, SIGTERM, `--duration`, or the command's exit).
///
/// As a service (`--config FILE`): SIGHUP re-reads FILE and applies rules,
/// thresholds, allow-lists and sinks without detaching probes (an invalid
/// file is refused and the running config stays); with $NOTIFY_SOCKET set
/// it tells systemd READY=1 once every probe is attached, STOPPING=1 on exit.
///
/// Example: cowtrace watch -- ./app
///
/// Example: cowtrace watch --config /etc/cowtrace/cowtrace.toml --metrics-listen 127.0.0.1:9464
///
/// Example: cowtrace watch --sink stdout=json --sink webhook=https://hooks.example.net/cow
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// Rules, thresholds, allow-lists, filters, sinks, recording and
    /// metrics (TOML; the documented defaults are in
    /// /usr/share/doc/cowtrace/default-config.toml). Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Alert sink, repeatable, added to the config's [[sinks]]: stdout,
    /// stdout=json, jsonl=PATH, syslog, webhook=URL.
    #[arg(long = "sink", value_name = "SPEC", value_parser = watch_service::parse_sink)]
    pub sinks: Vec<SinkConfig>,

    /// Serve Prometheus metrics at http://ADDR/metrics (off by default;
    /// overrides [metrics] listen).
    ///
    /// Example: --metrics-listen 127.0.0.1:9464
    #[arg(long, value_name = "ADDR", value_parser = watch_service::parse_listen)]
    pub metrics_listen: Option<SocketAddr>,

    /// Seconds between status lines on standard error (0: none).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub status_interval: u64,

    /// Replay trace files written by `cowtrace record` instead of tracing
    /// live: the same engine, alerts and final report, no privileges
    /// needed. A cut-off file is said on stderr and in the JSON report.
    ///
    /// Example: cowtrace watch --replay app.cwt --format json
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with_all = LIVE_ONLY)]
    pub replay: Vec<PathBuf>,

    /// Lean production mode: ordinary copy/reuse decisions are counted per
    /// process in the kernel instead of being streamed; only what an alert
    /// can be about (pages with GUP references or pins, unshares, large
    /// folios, other sites, fork copies, GUP itself) is recorded in full.
    /// Alerts are those of full capture; the report keeps per-process and
    /// per-site counts but has no per-mapping or per-reason detail for the
    /// counted decisions. Kernels before 5.19 record in full. Also
    /// `[capture] alerts_only = true` in the config.
    #[arg(long, conflicts_with = "replay")]
    pub alerts_only: bool,

    #[command(flatten)]
    pub trace: TraceArgs,
}

struct WatchSink {
    engine: Engine,
    /// Sinks, recording, metrics, reload.
    service: Service,
    alerts: Vec<Alert>,
    status_every: Option<Duration>,
    last_status: Instant,
}

impl WatchSink {
    fn new(engine: Engine, service: Service, status_every: Option<Duration>) -> Self {
        WatchSink {
            engine,
            service,
            alerts: Vec::new(),
            status_every,
            last_status: Instant::now(),
        }
    }
}

impl Sink for WatchSink {
    fn events(&mut self, events: &[Event]) -> anyhow::Result<()> {
        self.service.events(events)?;
        self.engine.feed_batch(events, &mut self.alerts);
        // Queued to each sink's thread: never waits on a destination.
        self.service.alerts(&self.alerts);
        self.alerts.clear();
        Ok(())
    }

    fn counted(&mut self, now: u64, counts: &[(Task, Counted)]) -> anyhow::Result<()> {
        for (task, c) in counts {
            self.engine.counted(now, task, c, &mut self.alerts);
        }
        self.service.alerts(&self.alerts);
        self.alerts.clear();
        Ok(())
    }

    fn tick(&mut self) -> anyhow::Result<()> {
        self.service.tick(&self.engine)?;
        if let Some(every) = self.status_every
            && self.last_status.elapsed() >= every
        {
            self.last_status = Instant::now();
            let summary = self.engine.summary();
            eprintln!("cowtrace: {summary}");
            self.service.status(&summary.to_string());
        }
        Ok(())
    }

    fn reloads(&self) -> bool {
        self.service.reloadable()
    }

    fn reload(&mut self) {
        self.service.reload(&mut self.engine);
    }
}

fn stdout_format(f: Format) -> StdoutFormat {
    match f {
        Format::Text => StdoutFormat::Text,
        Format::Json => StdoutFormat::Json,
    }
}

fn service_args(args: &Args) -> ServiceArgs {
    ServiceArgs {
        config_path: args.config.clone(),
        cli_sinks: args.sinks.clone(),
        default_format: stdout_format(args.format),
        metrics_listen: args.metrics_listen,
    }
}

pub fn run(args: Args) -> CliResult {
    let config = load_config(args.config.as_ref())?;
    if !args.replay.is_empty() {
        return replay(&args, config);
    }
    let duration = args.trace.duration()?;
    let mut trace = args.trace.clone();
    watch_service::apply_filters(&mut trace, &config.filters);
    // Sinks and the metrics port first: a bad destination fails before
    // any probe is attached.
    let mut service = Service::start(&config, service_args(&args))?;
    let rt = session::runtime()?;
    rt.block_on(async {
        let mode = if args.alerts_only || config.capture.alerts_only {
            session::CaptureMode::Lean
        } else {
            session::CaptureMode::Full
        };
        let (mut live, meta) = session::prepare(&trace, mode)?;
        service.start_recording(&meta)?;
        let status_every =
            (args.status_interval > 0).then(|| Duration::from_secs(args.status_interval));
        let mut sink = WatchSink::new(
            Engine::new(config, meta.kernel.clone()),
            service,
            status_every,
        );
        let child = session::spawn_command(&trace.command)?;
        sink.service.ready();
        let stop = live.run(&mut sink, duration, child).await;
        sink.service.stopping();
        drop(live);
        let stop = stop?;
        let WatchSink {
            engine, service, ..
        } = sink;
        // Every sink delivers what is queued before the report is printed.
        let notes = service.finish()?;
        let report = engine.report();
        match args.format {
            Format::Text => {
                println!();
                print!("{}", report_text::render(&report));
            }
            Format::Json => println!("{}", serde_json::to_string(&report)?),
        }
        for n in notes {
            eprintln!("cowtrace: {n}");
        }
        eprintln!("cowtrace: {}", session::describe(&stop));
        Ok(ExitCode::SUCCESS)
    })
}

/// Options that only mean something while tracing live (ids of `Args` and
/// the flattened `TraceArgs`): `--replay` refuses them instead of ignoring them.
const LIVE_ONLY: [&str; 9] = [
    "status_interval",
    "pids",
    "comm",
    "cgroup",
    "all",
    "duration",
    "ring_bytes",
    "raw_pointers",
    "command",
];

/// Events handed to the sink at once in `--replay`: about what one
/// ring-buffer wake-up delivers live.
const REPLAY_BATCH: usize = 4096;

/// `--replay`: the files' events, in time order, through the sink live
/// watch uses, then the same final report (with `"truncated"` in JSON, as
/// `cowtrace report` has it).
fn replay(args: &Args, config: crate::model::Config) -> CliResult {
    let mut reader = input::open(&args.replay)?;
    // The configured sinks get the replayed alerts too; no metrics.
    let mut service_args = service_args(args);
    service_args.metrics_listen = None;
    let mut config = config;
    config.metrics.listen = None;
    let service = Service::start(&config, service_args)?;
    // Status lines are about wall-clock progress: none in a replay.
    let mut sink = WatchSink::new(
        Engine::new(config, reader.meta().kernel.clone()),
        service,
        None,
    );
    let mut batch = Vec::with_capacity(REPLAY_BATCH);
    while let Some(ev) = reader.next_event() {
        batch.push(ev.map_err(Failure::input)?);
        if batch.len() == REPLAY_BATCH {
            sink.events(&batch)?;
            batch.clear();
        }
    }
    sink.events(&batch)?;
    input::report_damage(&reader);
    let WatchSink {
        engine, service, ..
    } = sink;
    let notes = service.finish()?;
    let report = engine.report();
    match args.format {
        Format::Text => {
            println!();
            print!("{}", report_text::render(&report));
        }
        Format::Json => {
            let mut v = serde_json::to_value(&report)?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("truncated".into(), input::truncation_json(&reader));
            }
            println!("{}", serde_json::to_string(&v)?);
        }
    }
    for n in notes {
        eprintln!("cowtrace: {n}");
    }
    Ok(ExitCode::SUCCESS)
}
