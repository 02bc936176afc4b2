//! `cargo xtask test`: everything CI checks, counted into one verdict.
//!
//! Host part: fmt, clippy, `cargo test` (libtest's summaries are parsed so
//! every host test counts). VM part: one boot per kernel line running
//! `cow-scenarios suite`, whose protocol is one
//! `COWTRACE-RESULT {"scenario": .., "ok": .., "detail": ..}` line per
//! scenario and a final `COWTRACE-SUITE-DONE`. A kernel that cannot be
//! fetched, crashes, hangs or stops before `SUITE-DONE` is a failure of that
//! kernel, never a skip.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Deserialize;

use crate::build::{self, GuestBins};
use crate::kernels::KernelLine;
use crate::vm::{self, VmConfig, VmEnd, VmRun};
use crate::{bench, cmd, paths, setup};

/// One kernel's suite under TCG; generous because TCG is slow and CI has
/// 2 cores, but well inside CI's 90 minutes for four lines.
pub const SUITE_TIMEOUT_S: u64 = 900;

const RESULT_TAG: &str = "COWTRACE-RESULT ";
const DONE_TAG: &str = "COWTRACE-SUITE-DONE";

pub struct TestArgs {
    pub lines: Vec<KernelLine>,
    pub host: bool,
    pub vm: bool,
    pub suite_timeout_s: u64,
}

/// Counts and prints results as they come.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    /// Scenarios about a feature this kernel does not have: neither passed
    /// nor failed, and never counted as a pass.
    not_applicable: usize,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, ok: bool, scope: &str, name: &str, detail: &str) {
        let line = format!(
            "{}  {scope:<7} {name:<28} {detail}",
            if ok { "PASS" } else { "FAIL" }
        );
        println!("{}", line.trim_end());
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            self.failures.push(line.trim_end().to_owned());
        }
    }

    fn not_applicable(&mut self, scope: &str, name: &str, detail: &str) {
        let line = format!("N/A   {scope:<7} {name:<28} {detail}");
        println!("{}", line.trim_end());
        self.not_applicable += 1;
    }

    fn add(&mut self, passed: usize, failed: usize) {
        self.passed += passed;
        self.failed += failed;
    }
}

pub fn run(args: &TestArgs) -> Result<i32> {
    let started = Instant::now();
    let mut tally = Tally::default();
    println!("== setup");
    match setup::tools() {
        Ok(()) => tally.record(true, "setup", "tools", ""),
        Err(e) => tally.record(false, "setup", "tools", &format!("{e:#}")),
    }
    if tally.failed == 0 {
        if args.host {
            host(&mut tally);
        }
        if args.vm {
            guests(args, &mut tally);
        }
    }
    if !tally.failures.is_empty() {
        println!("\n== failures");
        for f in &tally.failures {
            println!("{f}");
        }
    }
    println!("\n(total {:.0} s)", started.elapsed().as_secs_f64());
    println!(
        "{} passed, {} failed, {} not applicable",
        tally.passed, tally.failed, tally.not_applicable
    );
    Ok(if tally.failed == 0 { 0 } else { 1 })
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(paths::workspace_root());
    c
}

fn host(tally: &mut Tally) {
    println!("\n== fmt");
    let fmt = cmd::run(cargo().args(["fmt", "--all", "--", "--check"]));
    tally.record(fmt.is_ok(), "host", "cargo fmt --check", "");
    println!("\n== clippy");
    let clippy = cmd::run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]));
    tally.record(clippy.is_ok(), "host", "cargo clippy -D warnings", "");
    println!("\n== host tests");
    match cmd::tee(cargo().arg("test")) {
        Ok((ok, out)) => {
            let (passed, failed, summaries) = parse_libtest(&out);
            tally.add(passed, failed);
            let detail = format!("{passed} passed, {failed} failed in {summaries} test binaries");
            if !ok && failed == 0 {
                tally.record(
                    false,
                    "host",
                    "cargo test",
                    &format!("failed before reporting ({detail})"),
                );
            } else {
                // Each test is already counted; this line is the summary.
                let verdict = if ok { "PASS" } else { "FAIL" };
                let line = format!("{verdict}  host    {:<28} {detail}", "cargo test");
                println!("{line}");
                if !ok {
                    tally.failures.push(line);
                }
            }
        }
        Err(e) => tally.record(false, "host", "cargo test", &format!("{e:#}")),
    }
}

/// Sums libtest's `test result: ok. N passed; M failed; ...` lines:
/// (passed, failed, number of summary lines).
pub fn parse_libtest(out: &str) -> (usize, usize, usize) {
    let mut totals = (0, 0, 0);
    for line in out.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        totals.2 += 1;
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<usize>() else { continue };
            match label {
                "passed" => totals.0 += n,
                "failed" => totals.1 += n,
                _ => {}
            }
        }
    }
    totals
}

/// Modules every test guest gets: `zram` backs the swap device the swap-in
/// scenarios page out to (the guest's `/init` sets it up when present).
const GUEST_MODULES: &[&str] = &["zram"];

fn guests(args: &TestArgs, tally: &mut Tally) {
    println!("\n== test kernels");
    let kernels = setup::kernel_step(&args.lines, false);
    println!("\n== guest binaries");
    let bins = build::build();
    if let Ok(b) = &bins {
        b.report();
    }
    for (line, kernel) in kernels {
        if vm::interrupted() {
            tally.record(false, line.name(), "boot", "interrupted");
            continue;
        }
        let kernel = match kernel {
            Ok(k) => k,
            Err(e) => {
                tally.record(
                    false,
                    line.name(),
                    "kernel",
                    &format!("cannot be fetched: {e:#}"),
                );
                continue;
            }
        };
        let bins = match &bins {
            Ok(b) => b,
            Err(e) => {
                tally.record(false, line.name(), "build", &format!("{e:#}"));
                continue;
            }
        };
        println!("\n== {line}: {} ", kernel.release);
        let (cmd, stand_in) = suite_command(bins);
        if stand_in {
            println!("note: cow-scenarios is not built yet; running the stand-in boot smoke suite");
        }
        let files = bins.all();
        let modules: Vec<String> = GUEST_MODULES.iter().map(|m| (*m).to_owned()).collect();
        let cfg = VmConfig {
            timeout: Duration::from_secs(args.suite_timeout_s),
            modules: &modules,
            ..VmConfig::new(&kernel, &files, &cmd)
        };
        let prefix = format!("[{line}] ");
        let outcome = vm::run(&cfg, &mut |l| println!("{prefix}{l}"));
        match &outcome {
            Ok(run) => {
                println!("{prefix}{}", run.describe());
                judge(line, run, tally);
            }
            Err(e) => tally.record(false, line.name(), "boot", &format!("{e:#}")),
        }
        if !stand_in && !vm::interrupted() {
            // The same boot also ran the overhead bench's whole path
            // (every mode) on a small cow-storm.
            if let Ok(run) = &outcome {
                for (name, ok, detail) in bench::smoke_from_output(&run.output) {
                    tally.record(ok, line.name(), &name, &detail);
                }
            }
        }
    }
}

/// `cow-scenarios suite`, or a stand-in until the example exists.
fn suite_command(bins: &GuestBins) -> (Vec<String>, bool) {
    match &bins.scenarios {
        // One boot per kernel: the suite, then the quick bench; the
        // suite's status is the boot's.
        Some(_) => (
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "cow-scenarios suite; rc=$?; {}; exit $rc",
                    bench::SMOKE_GUEST_ARGS
                ),
            ],
            false,
        ),
        None => (
            vec!["/bin/sh".into(), "-c".into(), STAND_IN_SUITE.into()],
            true,
        ),
    }
}

/// Speaks the suite protocol with checks every real scenario depends on:
/// cowtrace runs (its shared libraries made it), and the kernel offers BTF,
/// kprobe events and bpffs.
const STAND_IN_SUITE: &str = r#"
r() { if eval "$2" >/dev/null 2>&1; then ok=true; else ok=false; fi
      echo "COWTRACE-RESULT {\"scenario\": \"$1\", \"ok\": $ok, \"detail\": \"$(uname -r)\"}"; }
r smoke-cowtrace-runs 'cowtrace --version'
r smoke-btf-vmlinux 'test -r /sys/kernel/btf/vmlinux'
r smoke-kprobe-events 'test -e /sys/kernel/tracing/kprobe_events'
r smoke-bpffs 'grep -q " /sys/fs/bpf bpf " /proc/mounts'
echo COWTRACE-SUITE-DONE
"#;

/// One scenario's verdict as the guest prints it.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct ScenarioResult {
    pub scenario: String,
    pub ok: bool,
    #[serde(default)]
    pub detail: String,
    /// The kernel lacks what the scenario is about (checked, not assumed).
    #[serde(default)]
    pub na: bool,
}

/// What the guest's output says about the suite.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SuiteReport {
    pub results: Vec<ScenarioResult>,
    pub done: bool,
    /// Result lines that did not parse (a protocol error, counted as failure).
    pub malformed: Vec<String>,
}

/// Finds the protocol lines anywhere in a console line (kernel messages may
/// share the serial line).
pub fn parse_suite<S: AsRef<str>>(lines: &[S]) -> SuiteReport {
    let mut report = SuiteReport::default();
    for line in lines.iter().map(AsRef::as_ref) {
        if let Some((_, json)) = line.split_once(RESULT_TAG) {
            match serde_json::from_str::<ScenarioResult>(json.trim()) {
                Ok(r) => report.results.push(r),
                Err(_) => report.malformed.push(line.to_owned()),
            }
        } else if line.trim_end().ends_with(DONE_TAG) {
            report.done = true;
        }
    }
    report
}

fn judge(line: KernelLine, run: &VmRun, tally: &mut Tally) {
    let scope = line.name();
    let report = parse_suite(&run.output);
    for r in &report.results {
        if r.na && r.ok {
            tally.not_applicable(scope, &r.scenario, &r.detail);
            continue;
        }
        tally.record(r.ok, scope, &r.scenario, &r.detail);
    }
    for m in &report.malformed {
        tally.record(
            false,
            scope,
            "protocol",
            &format!("unparsable result line: {m}"),
        );
    }
    let any_failed = report.results.iter().any(|r| !r.ok);
    let boot_problem = match &run.end {
        VmEnd::Exited(_) if !report.done => {
            Some("the suite stopped before COWTRACE-SUITE-DONE".to_owned())
        }
        VmEnd::Exited(_) if report.results.is_empty() => {
            Some("the suite reported no scenario".to_owned())
        }
        VmEnd::Exited(0) => None,
        VmEnd::Exited(rc) if !any_failed => Some(format!(
            "the suite exited {rc} although every scenario passed"
        )),
        VmEnd::Exited(_) => None,
        _ => Some(run.describe()),
    };
    match boot_problem {
        Some(p) => tally.record(false, scope, "boot", &p),
        None => println!(
            "[{scope}] boot {:.1} s, suite {:.0} s",
            run.boot.unwrap_or_default().as_secs_f64(),
            run.elapsed.as_secs_f64()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summaries_are_summed() {
        let out = "running 3 tests\n\
                   test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
                   test a ... FAILED\n\
                   test result: FAILED. 10 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.5s\n";
        assert_eq!(parse_libtest(out), (13, 2, 2));
        assert_eq!(
            parse_libtest("error[E0432]: unresolved import\n"),
            (0, 0, 0)
        );
    }

    #[test]
    fn suite_protocol_lines_are_found_and_checked() {
        let lines = [
            "[    3.2] random: crng init done",
            r#"COWTRACE-RESULT {"scenario": "fork-child-writes", "ok": true, "detail": "2 copies"}"#,
            r#"noise COWTRACE-RESULT {"scenario": "pin-then-cow", "ok": false}"#,
            r#"COWTRACE-RESULT {"scenario": 3}"#,
            "COWTRACE-SUITE-DONE",
        ];
        let r = parse_suite(&lines);
        assert!(r.done);
        assert_eq!(
            r.results,
            [
                ScenarioResult {
                    scenario: "fork-child-writes".into(),
                    ok: true,
                    detail: "2 copies".into(),
                    na: false,
                },
                ScenarioResult {
                    scenario: "pin-then-cow".into(),
                    ok: false,
                    detail: String::new(),
                    na: false,
                },
            ]
        );
        assert_eq!(r.malformed.len(), 1);
        assert!(!parse_suite(&lines[..2]).done);
    }

    fn run_with(end: VmEnd, lines: &[&str]) -> Tally {
        let run = VmRun {
            end,
            output: lines.iter().map(|s| s.to_string()).collect(),
            boot: None,
            elapsed: Duration::from_secs(1),
        };
        let mut t = Tally::default();
        judge(KernelLine::V6_1, &run, &mut t);
        t
    }

    #[test]
    fn not_applicable_scenarios_are_neither_passed_nor_failed() {
        let na =
            r#"COWTRACE-RESULT {"scenario": "m", "ok": true, "na": true, "detail": "no mTHP"}"#;
        let ok = r#"COWTRACE-RESULT {"scenario": "a", "ok": true, "detail": ""}"#;
        let t = run_with(VmEnd::Exited(0), &[na, ok, DONE_TAG]);
        assert_eq!((t.passed, t.failed, t.not_applicable), (1, 0, 1));
        // A failed check stays a failure whatever it claims.
        let bad = r#"COWTRACE-RESULT {"scenario": "m", "ok": false, "na": true}"#;
        let t = run_with(VmEnd::Exited(1), &[bad, DONE_TAG]);
        assert_eq!((t.failed, t.not_applicable), (1, 0));
    }

    #[test]
    fn a_boot_that_never_finishes_the_suite_is_a_failure() {
        let ok = r#"COWTRACE-RESULT {"scenario": "a", "ok": true, "detail": ""}"#;
        let t = run_with(VmEnd::Exited(0), &[ok, DONE_TAG]);
        assert_eq!((t.passed, t.failed), (1, 0));
        let t = run_with(VmEnd::Exited(0), &[ok]);
        assert_eq!((t.passed, t.failed), (1, 1));
        let t = run_with(VmEnd::KernelCrash("Oops: 0002".into()), &[ok, DONE_TAG]);
        assert_eq!((t.passed, t.failed), (1, 1));
        let t = run_with(VmEnd::Timeout, &[]);
        assert_eq!((t.passed, t.failed), (0, 1));
        let t = run_with(VmEnd::Exited(0), &[DONE_TAG]);
        assert_eq!((t.passed, t.failed), (0, 1));
        let t = run_with(VmEnd::Exited(3), &[ok, DONE_TAG]);
        assert_eq!((t.passed, t.failed), (1, 1));
    }
}
