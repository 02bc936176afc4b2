//! `cow-scenarios bench`: every selected workload untraced, then under each
//! tracing mode, one process per run, in this one boot. One line per run:
//!
//! ```text
//! COWTRACE-BENCH {"workload":"cow-storm","mode":"record","ops":65536,"ns":...,"events":...,"lost":0,"trace_bytes":...}
//! COWTRACE-BENCH-DONE
//! ```
//!
//! A run that fails prints the same line with an `error` field instead of
//! the figures; the host (`cargo xtask bench`) computes the ratios.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use super::{BenchWorkload, Measured, find_run_line};
use crate::runner::{Finished, run_captured};

pub const RESULT_TAG: &str = "COWTRACE-BENCH ";
pub const DONE_LINE: &str = "COWTRACE-BENCH-DONE";
const STDERR_EXCERPT: usize = 240;

pub struct Config {
    pub cowtrace: PathBuf,
    pub self_exe: PathBuf,
    /// Where the record mode's trace goes (deleted after its size is read).
    pub dir: PathBuf,
    pub timeout: Duration,
    pub workloads: Vec<BenchWorkload>,
    /// Small sizes, for a smoke test of the whole path.
    pub quick: bool,
}

/// How a workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Untraced,
    /// Only the counting kprobe on do_wp_page: the cheapest possible probe.
    BaselineKprobe,
    /// `cowtrace record` to a file: every event decoded and written, with
    /// the mechanism `auto` chooses for this kernel.
    Record,
    /// `record --mechanism kprobe`: the same with kprobes/kretprobes only.
    RecordKprobe,
    /// `record --mechanism fentry`: the same with trampolines wherever a
    /// hook has them (also where `auto` declines them).
    RecordFentry,
    /// `cowtrace watch`: every event correlated, alerts raised live.
    Watch,
    /// `cowtrace watch --alerts-only`: ordinary decisions counted in the
    /// kernel, the rest streamed and correlated.
    Alerts,
}

impl Mode {
    pub const ALL: [Mode; 7] = [
        Mode::Untraced,
        Mode::BaselineKprobe,
        Mode::Record,
        Mode::RecordKprobe,
        Mode::RecordFentry,
        Mode::Watch,
        Mode::Alerts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::BaselineKprobe => "baseline-kprobe",
            Mode::Record => "record",
            Mode::RecordKprobe => "record-kprobe",
            Mode::RecordFentry => "record-fentry",
            Mode::Watch => "watch",
            Mode::Alerts => "alerts",
        }
    }
}

/// One run's line.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct BenchLine {
    pub workload: String,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns: Option<u64>,
    /// Events the tracer saw (records written, or anchor hits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// Size of the trace file (record mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs every workload in every mode; true when every run worked.
pub fn run(cfg: &Config) -> anyhow::Result<bool> {
    let mut all_ok = true;
    for &w in &cfg.workloads {
        // A first, discarded run: right after boot the first run of a
        // workload is slower (seen: 1.3x on cow-storm), which would skew
        // every ratio against the untraced run that follows.
        if let Err(e) = run_one(cfg, w, Mode::Untraced) {
            eprintln!(
                "cow-scenarios: bench: warm-up of {} failed: {e:#}",
                w.name()
            );
        }
        for mode in Mode::ALL {
            let line = match run_one(cfg, w, mode) {
                Ok(l) => l,
                Err(e) => BenchLine {
                    workload: w.name().into(),
                    mode: mode.name().into(),
                    error: Some(format!("{e:#}")),
                    ..BenchLine::default()
                },
            };
            all_ok &= line.error.is_none();
            emit(&format!("{RESULT_TAG}{}", serde_json::to_string(&line)?));
        }
    }
    emit(DONE_LINE);
    Ok(all_ok)
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn run_one(cfg: &Config, w: BenchWorkload, mode: Mode) -> anyhow::Result<BenchLine> {
    let self_exe = cfg.self_exe.to_string_lossy().into_owned();
    let mut workload = vec![self_exe, "bench-run".into(), w.name().into()];
    if cfg.quick {
        workload.push("--quick".into());
    }
    let trace = cfg.dir.join(format!("bench-{}.cwt", w.name()));
    let trace_s = trace.to_string_lossy().into_owned();
    let mut cmd = match mode {
        Mode::Untraced => {
            let mut c = Command::new(&workload[0]);
            c.args(&workload[1..]);
            c
        }
        Mode::BaselineKprobe => cowtrace(cfg, &["bench-anchor", "--"], &workload),
        Mode::Record => cowtrace(cfg, &["record", "-o", &trace_s, "--"], &workload),
        Mode::RecordKprobe => cowtrace(
            cfg,
            &["record", "--mechanism", "kprobe", "-o", &trace_s, "--"],
            &workload,
        ),
        Mode::RecordFentry => cowtrace(
            cfg,
            &["record", "--mechanism", "fentry", "-o", &trace_s, "--"],
            &workload,
        ),
        Mode::Watch => cowtrace(
            cfg,
            &["watch", "--format", "json", "--status-interval", "0", "--"],
            &workload,
        ),
        Mode::Alerts => cowtrace(
            cfg,
            &[
                "watch",
                "--alerts-only",
                "--format",
                "json",
                "--status-interval",
                "0",
                "--",
            ],
            &workload,
        ),
    };
    let done = run_captured(&mut cmd, cfg.timeout)?;
    let measured = outcome(&done)?;
    let mut line = BenchLine {
        workload: w.name().into(),
        mode: mode.name().into(),
        ops: Some(measured.ops),
        ns: Some(measured.ns),
        ..BenchLine::default()
    };
    match mode {
        Mode::Untraced => {}
        Mode::BaselineKprobe | Mode::Record | Mode::RecordKprobe | Mode::RecordFentry => {
            let (events, lost) = summary_counts(&done.stderr).with_context(|| {
                format!(
                    "no event summary in cowtrace's output: {}",
                    done.stderr_excerpt(STDERR_EXCERPT)
                )
            })?;
            line.events = Some(events);
            line.lost = Some(lost);
        }
        Mode::Watch | Mode::Alerts => {
            let (events, lost) = report_counts(&done.stdout)
                .context("no JSON report at the end of `cowtrace watch`'s output")?;
            line.events = Some(events);
            line.lost = Some(lost);
        }
    }
    if matches!(mode, Mode::Record | Mode::RecordKprobe | Mode::RecordFentry) {
        let meta = std::fs::metadata(&trace)
            .with_context(|| format!("the trace {} is missing", trace.display()))?;
        line.trace_bytes = Some(meta.len());
        std::fs::remove_file(&trace).with_context(|| format!("removing {}", trace.display()))?;
    }
    Ok(line)
}

fn cowtrace(cfg: &Config, args: &[&str], workload: &[String]) -> Command {
    let mut c = Command::new(&cfg.cowtrace);
    c.args(args).args(workload);
    c
}

/// The workload's measurement, or why there is none.
fn outcome(done: &Finished) -> anyhow::Result<Measured> {
    match find_run_line(&done.stdout) {
        Some(m) if done.success() => Ok(m),
        _ => anyhow::bail!(
            "{}: {}",
            done.describe(),
            done.stderr_excerpt(STDERR_EXCERPT)
        ),
    }
}

/// `(events, lost)` from the summary `record` and `bench-anchor` print on
/// standard error: `...; N events written to F; no events lost` or
/// `...; WARNING: M events lost (...)`.
pub fn summary_counts(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("cowtrace: ") && l.contains(" events "))?;
    let number_before = |marker: &str| -> Option<u64> {
        let (head, _) = line.split_once(marker)?;
        head.rsplit([' ', ';']).next()?.parse().ok()
    };
    let events = [" events written to ", " events counted on "]
        .into_iter()
        .find_map(number_before)?;
    let lost = if line.contains("no events lost") {
        0
    } else {
        number_before(" events lost")?
    };
    Some((events, lost))
}

/// `(decisions and events seen, lost_events)` from the JSON report `watch
/// --format json` prints last on standard output: events streamed plus, with
/// `--alerts-only`, the decisions counted in the kernel instead.
pub fn report_counts(stdout: &str) -> Option<(u64, u64)> {
    stdout.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l.trim()).ok()?;
        let counted = v
            .get("counted_decisions")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Some((
            v.get("events")?.as_u64()? + counted,
            v.get("lost_events")?.as_u64()?,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_and_anchor_summaries_are_read() {
        let ok = "cowtrace: command exited with status 0; 65612 events written to /tmp/b.cwt; no events lost\n";
        assert_eq!(summary_counts(ok), Some((65612, 0)));
        let lossy = "noise\ncowtrace: command exited with status 0; 100 events written to /tmp/b.cwt; \
                     WARNING: 42 events lost (ring buffer full or unreadable state); the trace is incomplete\n";
        assert_eq!(summary_counts(lossy), Some((100, 42)));
        let anchor = "cowtrace: command exited with status 0; 16384 events counted on do_wp_page; no events lost\n";
        assert_eq!(summary_counts(anchor), Some((16384, 0)));
        assert_eq!(summary_counts("cowtrace: error: attach failed\n"), None);
    }

    #[test]
    fn the_watch_report_is_the_last_json_line() {
        let out = "COWTRACE-BENCH-RUN {\"ops\":2,\"ns\":5}\n{\"rule\":\"x\"}\n{\"events\":7,\"lost_events\":1}\n";
        assert_eq!(report_counts(out), Some((7, 1)));
        assert_eq!(report_counts("{\"rule\":\"x\"}\n"), None);
    }

    #[test]
    fn failed_runs_serialize_without_figures() {
        let l = BenchLine {
            workload: "cow-storm".into(),
            mode: "record".into(),
            error: Some("exit 1".into()),
            ..BenchLine::default()
        };
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"workload":"cow-storm","mode":"record","error":"exit 1"}"#
        );
    }
}
