//! `cargo xtask bench`: deterministic overhead figures.
//!
//! One boot runs `cow-scenarios bench`: every workload untraced, under the
//! counting-only anchor kprobe, under `cowtrace record` and under the
//! alerting mode, each timing its own hot loop. QEMU runs with its
//! instruction-count clock (`-icount shift=0,sleep=off`), so guest time is
//! an instruction count: ratios repeat to about four digits, absolute guest
//! nanoseconds mean nothing on real hardware.
//!
//! The guest prints one `COWTRACE-BENCH {json}` line per run; this module
//! turns them into ratios against the untraced run of the same workload.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::build;
use crate::kernels::{Kernel, KernelLine};
use crate::vm::{self, VmConfig, VmEnd};

const RESULT_TAG: &str = "COWTRACE-BENCH ";
const DONE_TAG: &str = "COWTRACE-BENCH-DONE";
const UNTRACED: &str = "untraced";
/// A full bench under TCG: a few minutes; generous for a loaded CI host.
const BENCH_TIMEOUT_S: u64 = 3600;

/// QEMU's deterministic clock: one guest nanosecond per instruction, and no
/// skipping of idle time, so time depends on the instructions run only.
pub fn icount_args() -> Vec<String> {
    vec!["-icount".into(), "shift=0,sleep=off".into()]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// One run as the guest reports it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct GuestLine {
    pub workload: String,
    pub mode: String,
    pub ops: Option<u64>,
    pub ns: Option<u64>,
    pub events: Option<u64>,
    pub lost: Option<u64>,
    pub trace_bytes: Option<u64>,
    pub error: Option<String>,
}

/// What the guest's output says.
#[derive(Debug, Default)]
pub struct GuestReport {
    pub lines: Vec<GuestLine>,
    pub done: bool,
    pub malformed: Vec<String>,
}

pub fn parse_guest<S: AsRef<str>>(output: &[S]) -> GuestReport {
    let mut r = GuestReport::default();
    for line in output.iter().map(AsRef::as_ref) {
        if let Some((_, json)) = line.split_once(RESULT_TAG) {
            match serde_json::from_str(json.trim()) {
                Ok(l) => r.lines.push(l),
                Err(_) => r.malformed.push(line.to_owned()),
            }
        } else if line.trim_end().ends_with(DONE_TAG) {
            r.done = true;
        }
    }
    r
}

/// One row of the result: a workload in a mode, against its untraced run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub workload: String,
    pub mode: String,
    pub ops: u64,
    pub events: u64,
    pub lost: u64,
    pub untraced_ns_per_op: f64,
    pub ns_per_op: f64,
    /// ns/op traced over ns/op untraced (1.0 for the untraced row).
    pub ratio: f64,
    /// Trace file bytes per event (record mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_event: Option<f64>,
}

/// The whole result, as `--format json` prints it.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    pub kernel: String,
    pub line: String,
    pub results: Vec<Row>,
}

/// Ratios against each workload's untraced run. Errors name the runs that
/// failed or have no untraced counterpart.
pub fn rows(lines: &[GuestLine]) -> Result<Vec<Row>> {
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for l in lines {
        if let Some(e) = &l.error {
            problems.push(format!("{} / {}: {e}", l.workload, l.mode));
            continue;
        }
        let (Some(ops), Some(ns)) = (l.ops, l.ns) else {
            problems.push(format!("{} / {}: no measurement", l.workload, l.mode));
            continue;
        };
        if ops == 0 || ns == 0 {
            problems.push(format!(
                "{} / {}: empty measurement ({ops} ops in {ns} ns)",
                l.workload, l.mode
            ));
            continue;
        }
        let base = lines
            .iter()
            .find(|b| b.workload == l.workload && b.mode == UNTRACED && b.error.is_none());
        let Some((Some(bops), Some(bns))) = base.map(|b| (b.ops, b.ns)) else {
            problems.push(format!("{}: no untraced run to compare with", l.workload));
            continue;
        };
        if bops == 0 || bns == 0 {
            continue; // reported for the untraced line itself
        }
        let untraced = bns as f64 / bops as f64;
        let per_op = ns as f64 / ops as f64;
        let events = l.events.unwrap_or(0);
        rows.push(Row {
            workload: l.workload.clone(),
            mode: l.mode.clone(),
            ops,
            events,
            lost: l.lost.unwrap_or(0),
            untraced_ns_per_op: untraced,
            ns_per_op: per_op,
            ratio: per_op / untraced,
            bytes_per_event: l
                .trace_bytes
                .filter(|_| events > 0)
                .map(|b| b as f64 / events as f64),
        });
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        bail!("{}", problems.join("; "))
    }
}

pub fn render_text(r: &BenchResult) -> String {
    let mut out = format!(
        "kernel {} ({}); guest time from QEMU -icount (ratios only)\n\n",
        r.line, r.kernel
    );
    out.push_str(&format!(
        "{:<10} {:<16} {:>9} {:>9} {:>5} {:>13} {:>13} {:>7} {:>9}\n",
        "workload",
        "mode",
        "ops",
        "events",
        "lost",
        "untraced ns/op",
        "traced ns/op",
        "ratio",
        "B/event"
    ));
    for row in &r.results {
        let bpe = row
            .bytes_per_event
            .map_or_else(|| "-".to_owned(), |b| format!("{b:.1}"));
        out.push_str(&format!(
            "{:<10} {:<16} {:>9} {:>9} {:>5} {:>13.1} {:>13.1} {:>7.3} {:>9}\n",
            row.workload,
            row.mode,
            row.ops,
            row.events,
            row.lost,
            row.untraced_ns_per_op,
            row.ns_per_op,
            row.ratio,
            bpe
        ));
    }
    out
}

/// Boots `kernel` (with the instruction-count clock when `icount`) and runs
/// `cow-scenarios bench` with `args`; returns the guest's report.
fn boot_and_bench(
    kernel: &Kernel,
    files: &[std::path::PathBuf],
    args: &[&str],
    icount: bool,
    timeout_s: u64,
    on_line: &mut dyn FnMut(&str),
) -> Result<GuestReport> {
    let cmd: Vec<String> = ["cow-scenarios", "bench"]
        .iter()
        .chain(args)
        .map(|s| (*s).to_owned())
        .collect();
    let qemu_args = if icount { icount_args() } else { Vec::new() };
    let cfg = VmConfig {
        timeout: Duration::from_secs(timeout_s),
        qemu_args: &qemu_args,
        ..VmConfig::new(kernel, files, &cmd)
    };
    let run = vm::run(&cfg, on_line)?;
    let report = parse_guest(&run.output);
    match &run.end {
        VmEnd::Exited(_) if report.done => Ok(report),
        VmEnd::Exited(rc) => bail!("the bench stopped before {DONE_TAG} (exit {rc})"),
        _ => bail!("{}", run.describe()),
    }
}

/// `cargo xtask bench`.
pub fn run(line: KernelLine, format: Format, only: &[String]) -> Result<i32> {
    let kernel = vm::kernel_for(line)?;
    let bins = build::build()?;
    if bins.scenarios.is_none() {
        bail!("cow-scenarios is not built: the bench workloads live there");
    }
    let files = bins.all();
    eprintln!("bench: booting {line} ({}) with -icount", kernel.release);
    let mut args: Vec<&str> = Vec::new();
    for w in only {
        args.extend(["--only", w.as_str()]);
    }
    let report = boot_and_bench(&kernel, &files, &args, true, BENCH_TIMEOUT_S, &mut |l| {
        eprintln!("[{line}] {l}")
    })?;
    if !report.malformed.is_empty() {
        bail!("unparsable bench lines: {:?}", report.malformed);
    }
    let result = BenchResult {
        kernel: kernel.release.clone(),
        line: line.name().to_owned(),
        results: rows(&report.lines).context("the bench did not complete")?,
    };
    match format {
        Format::Text => print!("{}", render_text(&result)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&result).context("serializing the result")?
        ),
    }
    Ok(0)
}

/// The smoke check `cargo xtask test` runs on each kernel: the quick
/// cow-storm in every mode. Asserts the path works and the numbers are
/// sane, not a timing target. Returns (check name, ok, detail) rows.
///
/// Without `-icount`: timings are not judged here, and the 5.10 guest did
/// not boot under `-icount shift=0,sleep=off` within 600 s (seen in CI on
/// this machine kind), which would turn the smoke into a hang.
/// The guest command that runs the quick cow-storm bench after the
/// scenario suite, in the same boot (`cargo xtask test`).
pub const SMOKE_GUEST_ARGS: &str = "cow-scenarios bench --quick --only cow-storm";

/// The bench mode that forces trampolines (`record --mechanism fentry`).
const FORCED_FENTRY: &str = "record-fentry";

/// Judges the quick bench's lines in a guest's output (see [`SMOKE_GUEST_ARGS`]).
pub fn smoke_from_output<S: AsRef<str>>(output: &[S]) -> Vec<(String, bool, String)> {
    let report = parse_guest(output);
    if !report.done {
        return vec![(
            "bench-smoke".into(),
            false,
            format!("the bench did not finish ({DONE_TAG} missing)"),
        )];
    }
    match rows(&report.lines) {
        Ok(rows) => judge_smoke(&rows),
        Err(e) => vec![("bench-smoke".into(), false, format!("{e:#}"))],
    }
}

/// Every mode ran and measured something; traced modes saw at least one
/// event per two write faults and lost none, except forced trampolines.
pub fn judge_smoke(rows: &[Row]) -> Vec<(String, bool, String)> {
    const MODES: [&str; 7] = [
        UNTRACED,
        "baseline-kprobe",
        "record",
        "record-kprobe",
        FORCED_FENTRY,
        "watch",
        "alerts",
    ];
    MODES
        .iter()
        .map(|mode| {
            let name = format!("bench-smoke-{mode}");
            let Some(r) = rows.iter().find(|r| r.mode == *mode) else {
                return (name, false, "no result".to_owned());
            };
            let detail = format!(
                "{} ops, {} events, {} lost, ratio {:.3}",
                r.ops, r.events, r.lost, r.ratio
            );
            // The ratio is shown, not judged: this is wall-clock guest time
            // (no -icount here) of a ~15 ms loop on a shared host, and
            // ratios from 0.2 to 4.6 were seen for the same code. `rows`
            // already refused empty measurements. Every mode must lose
            // nothing, but `record-fentry`: it forces trampolines also
            // where `auto` declines them because the kernel preempts
            // inside them, and there the kernel's recursion guard skips
            // programs (reported as lost; README "Limitations"). Up to 1%
            // of the operations is shown for it, not failed; a broken path
            // loses far more.
            let allowed = if *mode == FORCED_FENTRY {
                r.ops / 100
            } else {
                0
            };
            let ok = *mode == UNTRACED || (r.events >= r.ops / 2 && r.lost <= allowed);
            (name, ok, detail)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(workload: &str, mode: &str, ops: u64, ns: u64, events: u64) -> GuestLine {
        GuestLine {
            workload: workload.into(),
            mode: mode.into(),
            ops: Some(ops),
            ns: Some(ns),
            events: Some(events),
            lost: Some(0),
            trace_bytes: (mode == "record").then_some(events * 12),
            error: None,
        }
    }

    #[test]
    fn guest_lines_are_parsed_from_console_noise() {
        let out = [
            "[ 3.0] random: crng init done",
            r#"x COWTRACE-BENCH {"workload":"cow-storm","mode":"untraced","ops":4,"ns":40}"#,
            r#"COWTRACE-BENCH {"workload":"cow-storm","mode":"record","error":"exit 1"}"#,
            "COWTRACE-BENCH {broken",
            "COWTRACE-BENCH-DONE",
        ];
        let r = parse_guest(&out);
        assert!(r.done);
        assert_eq!(r.lines.len(), 2);
        assert_eq!(r.lines[0].ns, Some(40));
        assert_eq!(r.lines[1].error.as_deref(), Some("exit 1"));
        assert_eq!(r.malformed.len(), 1);
        assert!(!parse_guest(&out[..2]).done);
    }

    #[test]
    fn ratios_are_per_op_against_the_same_workloads_untraced_run() {
        let lines = [
            guest("cow-storm", "untraced", 1000, 7_000_000, 0),
            guest("cow-storm", "record", 1000, 7_700_000, 1010),
            guest("fork-big", "untraced", 8, 800, 0),
            guest("fork-big", "alerts", 8, 880, 40),
        ];
        let rows = rows(&lines).unwrap();
        assert_eq!(rows.len(), 4);
        assert!((rows[0].ratio - 1.0).abs() < 1e-9);
        assert!((rows[1].ratio - 1.1).abs() < 1e-9);
        assert!((rows[1].untraced_ns_per_op - 7000.0).abs() < 1e-9);
        assert_eq!(rows[1].bytes_per_event, Some(12.0));
        assert!((rows[3].ratio - 1.1).abs() < 1e-9);
        assert_eq!(rows[3].bytes_per_event, None);
        let text = render_text(&BenchResult {
            kernel: "6.1.0-1-amd64".into(),
            line: "6.1".into(),
            results: rows,
        });
        assert!(text.contains("1.100"), "{text}");
    }

    #[test]
    fn failures_and_missing_baselines_are_errors() {
        let mut failed = guest("cow-storm", "record", 1, 1, 1);
        failed.error = Some("attach failed".into());
        let err = rows(&[guest("cow-storm", "untraced", 1, 1, 0), failed]).unwrap_err();
        assert!(err.to_string().contains("attach failed"));
        let err = rows(&[guest("gup-storm", "record", 1, 1, 1)]).unwrap_err();
        assert!(err.to_string().contains("no untraced run"));
        let err = rows(&[guest("gup-storm", "untraced", 0, 1, 0)]).unwrap_err();
        assert!(err.to_string().contains("empty measurement"));
    }

    #[test]
    fn smoke_checks_every_mode_for_events_and_losses() {
        let mut lines = vec![
            guest("cow-storm", "untraced", 2048, 2_048_000, 0),
            guest("cow-storm", "baseline-kprobe", 2048, 2_100_000, 2050),
            guest("cow-storm", "record", 2048, 2_400_000, 2100),
            guest("cow-storm", "record-kprobe", 2048, 2_600_000, 2100),
            guest("cow-storm", "record-fentry", 2048, 2_400_000, 2100),
            guest("cow-storm", "watch", 2048, 2_500_000, 2100),
            guest("cow-storm", "alerts", 2048, 2_500_000, 2100),
        ];
        let verdicts = judge_smoke(&rows(&lines).unwrap());
        assert_eq!(verdicts.len(), 7);
        assert!(verdicts.iter().all(|v| v.1), "{verdicts:?}");
        // Forced trampolines may lose up to 1% (recursion misses), no
        // other mode anything.
        lines[4].lost = Some(20);
        assert!(judge_smoke(&rows(&lines).unwrap()).iter().all(|v| v.1));
        lines[4].lost = Some(21);
        lines[2].lost = Some(300);
        lines[3].lost = Some(1);
        lines[6].events = Some(10);
        lines.remove(1);
        let verdicts = judge_smoke(&rows(&lines).unwrap());
        let failed: Vec<&str> = verdicts
            .iter()
            .filter(|v| !v.1)
            .map(|v| v.0.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "bench-smoke-baseline-kprobe",
                "bench-smoke-record",
                "bench-smoke-record-kprobe",
                "bench-smoke-record-fentry",
                "bench-smoke-alerts"
            ]
        );
    }
}
