//! `suite`: records every workload under `cowtrace`, exports and reports
//! the trace, checks both against the workload's ground truth, and prints
//! one machine-readable line per scenario for the VM test driver:
//!
//! ```text
//! COWTRACE-RESULT {"scenario":"fork-child-writes","ok":true,"detail":"..."}
//! COWTRACE-SUITE-DONE
//! ```

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::checks::{self, Inputs, Verdict};
use crate::export::parse_jsonl;
use crate::report::Report;
use crate::robust;
use crate::runner::{Finished, run_captured};
use crate::truth::Truth;
use crate::workloads::Workload;

/// Ring size that the overload scenario's thousands of copies overrun.
pub const OVERLOAD_RING_BYTES: u32 = 4096;
const STDERR_EXCERPT: usize = 240;

pub struct Config {
    pub cowtrace: PathBuf,
    /// This binary, to run as the traced command.
    pub self_exe: PathBuf,
    /// Where traces and truths go.
    pub dir: PathBuf,
    pub timeout: Duration,
    /// Scenario names to run; empty = all.
    pub only: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    CheckPlan,
    Workload(Workload),
    /// `record` killed, on a full disk, stopped, under an open umask.
    Robust(robust::Case),
    /// `watch --config` as a systemd service: notify, reload, sinks, metrics.
    Service,
    /// `watch --alerts-only` against a full `watch` on the same workloads.
    AlertsOnly,
    /// More concurrent writers than CPUs under `auto`: nothing lost.
    Contention,
    /// A workload recorded with `--mechanism kprobe`, checked the same way.
    Kprobe(Workload),
    /// A workload recorded with `--mechanism fentry`, checked the same way.
    /// `auto` takes kprobes on kernels that preempt inside trampolines
    /// (newest), so this is where trampolines are tested there. The
    /// workload runs isolated on its own CPU (FIFO), `cowtrace` on another:
    /// the skips such kernels cause need a task preempted inside a program
    /// while another task on that CPU enters it, which isolation rules out,
    /// so the check stays exact (no loss allowed).
    Fentry(Workload),
}

/// Workloads also run under a forced mechanism: base-page COW decisions
/// (copies and reuses) and GUP references.
const MECHANISM_WORKLOADS: [Workload; 2] = [Workload::ForkChildWrites, Workload::VmspliceThenWrite];
/// CPUs of the fentry scenarios: `cowtrace`'s, and the workload's.
const TRACER_CPU: usize = 0;
const WORKLOAD_CPU: usize = 1;

impl Scenario {
    pub fn all() -> Vec<Scenario> {
        std::iter::once(Scenario::CheckPlan)
            .chain(Workload::ALL.into_iter().map(Scenario::Workload))
            .chain(robust::Case::ALL.into_iter().map(Scenario::Robust))
            .chain(MECHANISM_WORKLOADS.into_iter().map(Scenario::Kprobe))
            .chain(MECHANISM_WORKLOADS.into_iter().map(Scenario::Fentry))
            .chain([
                Scenario::Service,
                Scenario::AlertsOnly,
                Scenario::Contention,
            ])
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::CheckPlan => "check-plan",
            Scenario::Workload(w) => w.name(),
            Scenario::Robust(c) => c.name(),
            Scenario::Service => crate::service::NAME,
            Scenario::AlertsOnly => crate::lean::NAME,
            Scenario::Contention => crate::contention::NAME,
            Scenario::Kprobe(Workload::ForkChildWrites) => "kprobe-fork-child-writes",
            Scenario::Kprobe(Workload::VmspliceThenWrite) => "kprobe-vmsplice-then-write",
            Scenario::Kprobe(_) => "kprobe-other",
            Scenario::Fentry(Workload::ForkChildWrites) => "fentry-fork-child-writes",
            Scenario::Fentry(Workload::VmspliceThenWrite) => "fentry-vmsplice-then-write",
            Scenario::Fentry(_) => "fentry-other",
        }
    }
}

/// The line the VM driver greps for.
pub fn result_line(scenario: &str, verdict: &Verdict) -> String {
    let mut body =
        serde_json::json!({"scenario": scenario, "ok": verdict.ok, "detail": verdict.detail});
    if verdict.na {
        body["na"] = serde_json::Value::Bool(true);
    }
    format!("COWTRACE-RESULT {body}")
}

pub const DONE_LINE: &str = "COWTRACE-SUITE-DONE";

/// Runs the selected scenarios; true when all passed.
pub fn run(cfg: &Config) -> anyhow::Result<bool> {
    let selected: Vec<Scenario> = Scenario::all()
        .into_iter()
        .filter(|s| cfg.only.is_empty() || cfg.only.iter().any(|o| o == s.name()))
        .collect();
    if selected.is_empty() {
        bail!("no scenario matches {:?}", cfg.only);
    }
    let mut all_ok = true;
    for scenario in selected {
        let verdict = match scenario {
            Scenario::CheckPlan => check_plan(cfg),
            Scenario::Workload(w) => record_and_check(cfg, w, &[], false)
                .unwrap_or_else(|e| Verdict::failed(format!("{e:#}"))),
            Scenario::Kprobe(w) => record_and_check(cfg, w, &["--mechanism", "kprobe"], false)
                .unwrap_or_else(|e| Verdict::failed(format!("{e:#}"))),
            Scenario::Fentry(w) => record_and_check(cfg, w, &["--mechanism", "fentry"], true)
                .unwrap_or_else(|e| Verdict::failed(format!("{e:#}"))),
            Scenario::Robust(c) => c.run(cfg),
            Scenario::Service => crate::service::run(cfg),
            Scenario::AlertsOnly => crate::lean::run(cfg),
            Scenario::Contention => crate::contention::run(cfg),
        };
        all_ok &= verdict.ok;
        emit(&result_line(scenario.name(), &verdict));
    }
    emit(DONE_LINE);
    Ok(all_ok)
}

/// One line, written whole and flushed (the serial console interleaves).
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn check_plan(cfg: &Config) -> Verdict {
    match cowtrace(cfg, &["check", "--format", "json"]) {
        Ok(f) if f.status.is_none() => Verdict::failed(f.describe()),
        Ok(f) => {
            let mut v = checks::check_plan(f.code(), &f.stdout);
            if !v.ok && !f.stderr.trim().is_empty() {
                v.detail
                    .push_str(&format!(" | stderr: {}", f.stderr_excerpt(STDERR_EXCERPT)));
            }
            v
        }
        Err(e) => Verdict::failed(format!("{e:#}")),
    }
}

/// `extra`: more `record` options (e.g. the attach mechanism); the trace
/// header's attach plan must then show that the fault hook used it.
/// `isolate`: `cowtrace` on one CPU, the workload alone on another (FIFO).
fn record_and_check(
    cfg: &Config,
    w: Workload,
    extra: &[&str],
    isolate: bool,
) -> anyhow::Result<Verdict> {
    let tag = if extra.is_empty() { "" } else { "-variant" };
    let trace = cfg.dir.join(format!("{}{tag}.cwt", w.name()));
    let truth_path = cfg.dir.join(format!("{}{tag}.json", w.name()));
    for stale in [&trace, &truth_path] {
        remove_stale(stale)?;
    }

    let trace_s = trace.to_string_lossy().into_owned();
    let truth_s = truth_path.to_string_lossy().into_owned();
    let self_s = cfg.self_exe.to_string_lossy().into_owned();
    let ring = OVERLOAD_RING_BYTES.to_string();
    let mut args = vec!["record", "-o", &trace_s];
    if w == Workload::Overload {
        args.extend(["--ring-bytes", &ring]);
    }
    args.extend(extra);
    args.extend(["--", &self_s, "run", w.name(), "--truth", &truth_s]);
    let workload_cpu = WORKLOAD_CPU.to_string();
    let rec = if isolate {
        args.extend(["--isolate", &workload_cpu]);
        let mut cmd = Command::new(&cfg.cowtrace);
        cmd.args(&args);
        // SAFETY: the closure only makes one system call (no allocation, no
        // lock), which is async-signal-safe between fork and exec.
        unsafe {
            cmd.pre_exec(|| crate::sys::set_affinity(TRACER_CPU));
        }
        run_captured(&mut cmd, cfg.timeout)?
    } else {
        cowtrace(cfg, &args)?
    };
    if !rec.success() {
        return Ok(failed_step("record", &rec));
    }

    // `record` may succeed although the workload failed: the truth file
    // (written last, stale copy removed above) is the workload's verdict.
    let Ok(truth_text) = std::fs::read_to_string(&truth_path) else {
        return Ok(Verdict::failed(format!(
            "the workload wrote no truth ({}): {}",
            truth_path.display(),
            rec.stderr_excerpt(STDERR_EXCERPT)
        )));
    };
    let truth: Truth = serde_json::from_str(&truth_text).context("parsing the truth")?;

    let export = cowtrace(cfg, &["export", &trace_s, "--format", "jsonl"])?;
    if !export.success() {
        return Ok(failed_step("export", &export));
    }
    let events = parse_jsonl(&export.stdout)?;

    let rep = cowtrace(cfg, &["report", &trace_s, "--format", "json"])?;
    let report = match Report::parse(&rep.stdout) {
        Ok(r) => r,
        Err(e) => {
            let mut v = failed_step("report", &rep);
            v.detail.push_str(&format!(" | unreadable JSON: {e}"));
            return Ok(v);
        }
    };
    let mut verdict = checks::check(
        w,
        &Inputs {
            truth: &truth,
            events: &events,
            report: &report,
        },
    );
    if let Some(pos) = extra.iter().position(|a| *a == "--mechanism") {
        let want = extra.get(pos + 1).copied().unwrap_or("");
        // The plan `record` used is the one `check` prints for the same
        // options (both call the same planner on the same kernel).
        let plan = cowtrace(cfg, &["check", "--format", "json", "--mechanism", want])?;
        let used = checks::fault_mechanism(&plan.stdout);
        verdict
            .detail
            .push_str(&format!("; wp_fault attached by {used:?}"));
        if used.as_deref() != Some(want) {
            verdict.ok = false;
            verdict
                .detail
                .push_str(&format!(" (FAIL: --mechanism {want} asked)"));
        }
    }
    Ok(verdict)
}

fn remove_stale(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

pub fn cowtrace(cfg: &Config, args: &[&str]) -> anyhow::Result<Finished> {
    run_captured(Command::new(&cfg.cowtrace).args(args), cfg.timeout)
}

pub fn failed_step(what: &str, f: &Finished) -> Verdict {
    Verdict::failed(format!(
        "cowtrace {what}: {}: {}",
        f.describe(),
        f.stderr_excerpt(STDERR_EXCERPT)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_single_line_json() {
        let v = Verdict::failed("a \"quoted\"\nline");
        let line = result_line("vmsplice-then-write", &v);
        assert!(!line.contains('\n'));
        let json: serde_json::Value =
            serde_json::from_str(line.strip_prefix("COWTRACE-RESULT ").unwrap()).unwrap();
        assert_eq!(json["scenario"], "vmsplice-then-write");
        assert_eq!(json["ok"], false);
        assert_eq!(json["detail"], "a \"quoted\"\nline");
    }

    #[test]
    fn scenario_names_are_unique_and_start_with_the_plan() {
        let names: Vec<_> = Scenario::all().into_iter().map(Scenario::name).collect();
        assert_eq!(names[0], "check-plan");
        let mut dedup = names.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len());
    }

    /// A stand-in `cowtrace` that fails or hangs must yield failed verdicts,
    /// not a hung or aborted suite.
    #[test]
    fn a_failing_or_hanging_cowtrace_fails_the_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("cowtrace");
        // check hangs; record fails for fork-child-writes, and "succeeds"
        // without the workload writing its truth for the others.
        let script = "#!/bin/sh\ncase \"$1 $3\" in\n\
            check*) sleep 30;;\n\
            *fork-child-writes*) echo boom >&2; exit 7;;\n\
            *) echo workload exploded >&2; exit 0;;\nesac\n";
        // Written by a child process: a file we had open for writing could
        // leak into another test thread's fork and make exec fail (ETXTBSY).
        let made = Command::new("sh")
            .args([
                "-c",
                "printf '%s' \"$2\" > \"$1\" && chmod 755 \"$1\"",
                "sh",
            ])
            .arg(&fake)
            .arg(script)
            .status()
            .unwrap();
        assert!(made.success());
        let cfg = Config {
            cowtrace: fake,
            self_exe: PathBuf::from("/bin/true"),
            dir: dir.path().to_path_buf(),
            timeout: Duration::from_millis(500),
            only: vec![],
        };
        let v = check_plan(&cfg);
        assert!(!v.ok && v.detail.starts_with("timed out"), "{}", v.detail);
        let v = record_and_check(&cfg, Workload::ForkChildWrites, &[], false).unwrap();
        assert!(!v.ok);
        assert_eq!(v.detail, "cowtrace record: exit 7: boom");
        let v = record_and_check(&cfg, Workload::VmspliceThenWrite, &[], false).unwrap();
        assert!(!v.ok);
        assert!(
            v.detail.starts_with("the workload wrote no truth"),
            "{}",
            v.detail
        );
        assert!(v.detail.ends_with(": workload exploded"), "{}", v.detail);
    }
}
