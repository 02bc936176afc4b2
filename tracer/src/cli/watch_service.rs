//! What `cowtrace watch` does besides correlating: alert sinks, trace
//! recording, Prometheus metrics, systemd notification and SIGHUP reload.
//!
//! Kept apart from `watch.rs` so the subcommand stays a thin pipeline; the
//! capture loop calls in here once per batch and once per tick.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;

use super::{session, trace_args::TraceArgs};
use crate::{
    model::{
        Alert, Config, Engine, Event,
        service_config::{FiltersConfig, SinkConfig, StdoutFormat, StdoutSink},
    },
    service::{
        metrics::{self, Counters, MetricsServer, Snapshot},
        notify::Notifier,
        sinks::{SinkContext, SinkSet, StatsSnapshot},
    },
    trace::{TraceMeta, TraceWriter, WriterOptions},
};

/// What the command line adds to the config file.
#[derive(Debug, Clone, Default)]
pub struct ServiceArgs {
    /// `--config`: re-read on SIGHUP.
    pub config_path: Option<PathBuf>,
    /// `--sink` flags, kept across reloads.
    pub cli_sinks: Vec<SinkConfig>,
    /// `--format`: the stdout sink used when no sink is configured.
    pub default_format: StdoutFormat,
    /// `--metrics-listen`, over `[metrics] listen`.
    pub metrics_listen: Option<SocketAddr>,
}

struct Recorder {
    path: PathBuf,
    writer: TraceWriter,
}

pub struct Service {
    args: ServiceArgs,
    sinks: SinkSet,
    ctx: SinkContext,
    /// The config in force (to tell what a reload would change).
    running: Config,
    recorder: Option<Recorder>,
    counters: Counters,
    metrics: Option<metrics::Shared>,
    notifier: Notifier,
    start_unix: f64,
}

/// The name alerts are sent under (webhook `host`, syslog HOSTNAME).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The sinks a config and the flags name; a stdout sink in `--format`
/// when they name none.
fn sink_list(config: &Config, args: &ServiceArgs) -> Vec<SinkConfig> {
    let mut v = config.sinks.clone();
    v.extend(args.cli_sinks.iter().cloned());
    if v.is_empty() {
        v.push(SinkConfig::Stdout(StdoutSink {
            name: None,
            min_severity: crate::model::Severity::Info,
            queue: crate::model::service_config::DEFAULT_QUEUE,
            format: args.default_format,
        }));
    }
    v
}

/// Applies `[filters]` where the command line gave no filter of its own.
pub fn apply_filters(trace: &mut TraceArgs, f: &FiltersConfig) {
    if !trace.pids.is_empty() || trace.comm.is_some() || trace.cgroup.is_some() || trace.all {
        return;
    }
    trace.pids.clone_from(&f.pid);
    trace.comm.clone_from(&f.comm);
    trace.cgroup.clone_from(&f.cgroup);
}

/// Reads and validates the config file, or the defaults.
pub fn read_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Config::from_toml_str(&text).with_context(|| format!("invalid config {}", path.display()))
}

impl Service {
    /// Starts the sinks and the metrics endpoint: before any probe is
    /// attached, so a bad destination or a taken port fails fast.
    pub fn start(config: &Config, args: ServiceArgs) -> anyhow::Result<Service> {
        let ctx = SinkContext {
            hostname: hostname(),
        };
        let sinks = SinkSet::start(&sink_list(config, &args), &ctx)?;
        let listen = match (args.metrics_listen, &config.metrics.listen) {
            (Some(a), _) => Some(a),
            (None, Some(s)) => Some(s.parse().with_context(|| format!("metrics.listen `{s}`"))?),
            (None, None) => None,
        };
        let start_unix = unix_now();
        let metrics = match listen {
            Some(addr) => {
                let shared: metrics::Shared = Arc::new(Mutex::new(Snapshot {
                    start_unix,
                    last_tick_unix: start_unix,
                    counters: Counters::new(),
                    ..Snapshot::default()
                }));
                let server = MetricsServer::start(addr, Arc::clone(&shared))
                    .with_context(|| format!("serving metrics on {addr}"))?;
                log::info!("metrics on http://{}/metrics", server.addr);
                Some(shared)
            }
            None => None,
        };
        Ok(Service {
            args,
            sinks,
            ctx,
            running: config.clone(),
            recorder: None,
            counters: Counters::new(),
            metrics,
            notifier: Notifier::from_env(),
            start_unix,
        })
    }

    /// Opens `[record] path`, if set, once the trace's header is known.
    pub fn start_recording(&mut self, meta: &TraceMeta) -> anyhow::Result<()> {
        let r = &self.running.record;
        let Some(path) = &r.path else { return Ok(()) };
        let opts = WriterOptions {
            max_size: r.max_size.map(|s| s.0),
            max_files: r.max_files,
            ..WriterOptions::default()
        };
        let writer = TraceWriter::create(path, meta, opts)
            .with_context(|| format!("creating {}", path.display()))?;
        self.recorder = Some(Recorder {
            path: path.clone(),
            writer,
        });
        Ok(())
    }

    /// Every probe is attached and every sink runs: tell systemd.
    pub fn ready(&self) {
        if let Err(e) = self.notifier.notify("READY=1") {
            log::warn!("sd_notify READY=1: {e}");
        }
    }

    /// `STATUS=` for `systemctl status`.
    pub fn status(&self, line: &str) {
        if self.notifier.enabled() {
            let _ = self.notifier.notify(&format!("STATUS={line}"));
        }
    }

    pub fn events(&mut self, events: &[Event]) -> anyhow::Result<()> {
        for ev in events {
            self.counters.event(ev);
        }
        if let Some(r) = &mut self.recorder {
            for ev in events {
                r.writer
                    .push(ev)
                    .with_context(|| format!("writing {}", r.path.display()))?;
            }
        }
        Ok(())
    }

    pub fn alerts(&mut self, alerts: &[Alert]) {
        for a in alerts {
            self.counters.alert(a);
            self.sinks.send(a);
        }
    }

    /// Flushes the recording, publishes the metrics snapshot.
    pub fn tick(&mut self, engine: &Engine) -> anyhow::Result<()> {
        if let Some(r) = &mut self.recorder {
            r.writer
                .flush()
                .with_context(|| format!("writing {}", r.path.display()))?;
        }
        if let Some(shared) = &self.metrics {
            let snap = Snapshot {
                counters: self.counters.clone(),
                sinks: self.sinks.stats(),
                state: engine.state_sizes(),
                evictions: engine.evictions(),
                last_tick_unix: unix_now(),
                start_unix: self.start_unix,
            };
            if let Ok(mut s) = shared.lock() {
                *s = snap;
            }
        }
        Ok(())
    }

    pub fn reloadable(&self) -> bool {
        self.args.config_path.is_some()
    }

    /// SIGHUP: re-reads the config; rules, thresholds, allow-lists, caps
    /// and sinks change in place, probes stay attached. An invalid config
    /// (or a sink that cannot start) is refused and the running one stays.
    pub fn reload(&mut self, engine: &mut Engine) {
        let _ = self.notifier.reloading(session::monotonic_ns() / 1000);
        let result = self.try_reload(engine);
        self.counters.reload(result.is_ok());
        match result {
            Ok(changed) => eprintln!("cowtrace: config reloaded{changed}"),
            Err(e) => eprintln!("cowtrace: error: reload refused, the running config stays: {e:#}"),
        }
        let _ = self.notifier.notify("READY=1");
    }

    fn try_reload(&mut self, engine: &mut Engine) -> anyhow::Result<String> {
        let new = read_config(self.args.config_path.as_ref())?;
        self.sinks
            .reconfigure(&sink_list(&new, &self.args), &self.ctx)
            .context("starting sinks")?;
        let mut later = Vec::new();
        if new.capture != self.running.capture {
            later.push("[capture]");
        }
        if new.filters != self.running.filters {
            later.push("[filters]");
        }
        if new.record != self.running.record {
            later.push("[record]");
        }
        if new.metrics != self.running.metrics {
            later.push("[metrics]");
        }
        engine.set_config(new.clone());
        // What cannot change live keeps its running value, so the next
        // reload compares against what is really in force.
        let mut running = new;
        running.capture = self.running.capture.clone();
        running.filters = self.running.filters.clone();
        running.record = self.running.record.clone();
        running.metrics = self.running.metrics.clone();
        self.running = running;
        Ok(if later.is_empty() {
            String::new()
        } else {
            format!(
                " ({} changed: they take effect at the next start)",
                later.join(", ")
            )
        })
    }

    /// Tracing is ending: tell systemd before the (possibly slow) drain.
    pub fn stopping(&self) {
        let _ = self.notifier.notify("STOPPING=1");
    }

    /// The recording is finished and every sink drains
    /// its queue (each within its drain time). Returns lines for stderr.
    pub fn finish(self) -> anyhow::Result<Vec<String>> {
        let mut notes = Vec::new();
        let recorded = match self.recorder {
            Some(r) => {
                let summary = r
                    .writer
                    .finish()
                    .with_context(|| format!("finishing {}", r.path.display()));
                Some((r.path, summary))
            }
            None => None,
        };
        let stats = self.sinks.close();
        for (name, s) in &stats {
            if let Some(line) = sink_note(name, s) {
                notes.push(line);
            }
        }
        if let Some((path, summary)) = recorded {
            let n = summary?.events;
            notes.push(format!("{n} events written to {}", path.display()));
        }
        Ok(notes)
    }
}

/// "sink webhook: 12 delivered, 3 dropped (2 queue full, 1 failed)" when
/// anything was dropped or failed; None for a clean sink.
fn sink_note(name: &str, s: &StatsSnapshot) -> Option<String> {
    let dropped = s.dropped_queue_full + s.dropped_failed + s.dropped_shutdown;
    if dropped == 0 && s.errors == 0 {
        return None;
    }
    Some(format!(
        "sink {name}: {} delivered, {dropped} dropped ({} queue full, {} failed, {} at exit), {} failed attempts",
        s.delivered, s.dropped_queue_full, s.dropped_failed, s.dropped_shutdown, s.errors
    ))
}

/// `--metrics-listen ADDR` value parser.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not an ADDR:PORT socket address"))
}

/// `--sink SPEC` value parser.
pub fn parse_sink(s: &str) -> Result<SinkConfig, String> {
    SinkConfig::from_flag(s)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        trace: TraceArgs,
    }

    fn trace_args() -> TraceArgs {
        Flags::try_parse_from(["cowtrace"])
            .map(|f| f.trace)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn config_filters_apply_only_without_cli_filters() {
        let f = FiltersConfig {
            pid: vec![4],
            comm: Some("db".into()),
            cgroup: None,
        };
        let mut t = trace_args();
        apply_filters(&mut t, &f);
        assert_eq!(
            (t.pids.clone(), t.comm.clone()),
            (vec![4], Some("db".into()))
        );
        let mut t = trace_args();
        t.comm = Some("web".into());
        apply_filters(&mut t, &f);
        assert_eq!((t.pids, t.comm), (vec![], Some("web".into())));
    }

    #[test]
    fn a_stdout_sink_is_implied_only_without_sinks() -> anyhow::Result<()> {
        let args = ServiceArgs {
            default_format: StdoutFormat::Json,
            ..ServiceArgs::default()
        };
        let v = sink_list(&Config::default(), &args);
        assert!(matches!(&v[..], [SinkConfig::Stdout(s)] if s.format == StdoutFormat::Json));
        let c = Config::from_toml_str("[[sinks]]\ntype = \"syslog\"\n")?;
        let v = sink_list(&c, &args);
        assert!(matches!(&v[..], [SinkConfig::Syslog(_)]));
        Ok(())
    }

    #[test]
    fn sighup_applies_a_valid_config_and_refuses_an_invalid_one() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("cowtrace.toml");
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("b.jsonl");
        let sink = |p: &std::path::Path, name: &str| {
            format!(
                "[[sinks]]\ntype = \"jsonl\"\nname = \"{name}\"\npath = \"{}\"\n",
                p.display()
            )
        };
        std::fs::write(&cfg, sink(&a, "a"))?;
        let config = read_config(Some(&cfg))?;
        let args = ServiceArgs {
            config_path: Some(cfg.clone()),
            ..ServiceArgs::default()
        };
        let mut service = Service::start(&config, args)?;
        assert!(service.reloadable());
        let caps = crate::model::KernelCaps {
            release: "6.1.0-test".into(),
            anon_exclusive: true,
            page_size: 4096,
        };
        let mut engine = Engine::new(config, caps);

        // Valid: a rule off, a threshold changed, a second sink; the
        // metrics and capture sections changed too (need a restart: kept
        // as running).
        std::fs::write(
            &cfg,
            format!(
                "{}{}[rules.pin-then-cow]\nenabled = false\n[cow_storm]\ncopies_per_sec = 5\n\
                 [metrics]\nlisten = \"127.0.0.1:1\"\n[capture]\nalerts_only = true\n",
                sink(&a, "a"),
                sink(&b, "b")
            ),
        )?;
        let note = service.try_reload(&mut engine)?;
        assert!(
            note.contains("[metrics]") && note.contains("[capture]"),
            "{note}"
        );
        assert!(!service.running.capture.alerts_only);
        assert!(!engine.config().rules.pin_then_cow.enabled);
        assert_eq!(engine.config().cow_storm.copies_per_sec, 5.0);
        assert_eq!(service.sinks.len(), 2);
        assert!(b.exists());
        assert_eq!(service.running.metrics.listen, None);

        // Invalid: refused, everything stays as it was.
        for bad in [
            "[rules.pin-then-cow]\nenabled = maybe\n".to_string(),
            format!(
                "{}[[sinks]]\ntype = \"jsonl\"\npath = \"{}/no/such/dir/x\"\n",
                sink(&a, "a"),
                dir.path().display()
            ),
        ] {
            std::fs::write(&cfg, bad)?;
            service.reload(&mut engine);
            assert!(!engine.config().rules.pin_then_cow.enabled);
            assert_eq!(engine.config().cow_storm.copies_per_sec, 5.0);
            assert_eq!(service.sinks.len(), 2);
        }
        let snap = crate::service::metrics::render(&Snapshot {
            counters: service.counters.clone(),
            ..Snapshot::default()
        });
        assert!(
            snap.contains("cowtrace_config_reloads_total{result=\"failure\"} 2"),
            "{snap}"
        );
        assert!(
            snap.contains("cowtrace_config_last_reload_successful 0"),
            "{snap}"
        );
        service.finish()?;
        Ok(())
    }
}
