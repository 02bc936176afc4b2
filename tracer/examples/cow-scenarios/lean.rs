//! `alerts-only`: lean `watch` (ordinary decisions counted in the kernel),
//! turned on the way a service does it (`[capture] alerts_only = true` in
//! its config; `--alerts-only` is the same switch), next to a full `watch`, both attached at once and following the
//! same processes through the same workloads. Their alerts must be the same
//! alerts, and their decision counts the same counts, per process; the lean
//! one must have counted decisions in the kernel (5.19+) and streamed fewer
//! events, or said that it records in full (before 5.19).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use crate::checks::Verdict;
use crate::runner::run_captured;
use crate::suite::Config;
use crate::workloads::Workload;

pub const NAME: &str = "alerts-only";

/// The process name the workloads take (and their children inherit), so
/// that both watchers select them by name and nothing else: not this suite,
/// not each other (the guest may run every binary through the same loader,
/// which then names them all alike).
const WORKLOAD_COMM: &str = "cow-lean-wl";
/// Set for a workload started by this scenario.
const COMM_ENV: &str = "COW_SCENARIOS_COMM";

/// Called first by `cow-scenarios run`: takes the name this scenario asked
/// for, if it did.
pub fn take_workload_name() {
    let Ok(name) = std::env::var(COMM_ENV) else {
        return;
    };
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr()) };
}

/// Workloads that raise every kind of alert the kernel can show here, plus
/// thousands of ordinary decisions.
const WORKLOADS: [Workload; 6] = [
    Workload::ForkChildWrites,
    Workload::RoPinAfterFork,
    Workload::VmspliceThenWrite,
    Workload::IouringPin,
    Workload::ThpVmspliceLeak,
    Workload::SwapSharedWrite,
];
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Both watchers drain every 50 ms and read counts every 250 ms.
const SETTLE: Duration = Duration::from_millis(600);

pub fn run(cfg: &Config) -> Verdict {
    scenario(cfg).unwrap_or_else(|e| Verdict::failed(format!("{e:#}")))
}

struct Watcher {
    child: Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
    notify: UnixDatagram,
}

fn start(cfg: &Config, dir: &Path, name: &str, extra: &[&str]) -> anyhow::Result<Watcher> {
    let sock = dir.join(format!("{name}.sock"));
    let notify = UnixDatagram::bind(&sock).context("binding a notify socket")?;
    let (stdout, stderr) = (
        dir.join(format!("{name}.stdout")),
        dir.join(format!("{name}.stderr")),
    );
    // By name, not `--pid`: a pid filter follows forks of the suite, and
    // the second watcher is one, so the first would trace it.
    let child = Command::new(&cfg.cowtrace)
        .args(["watch", "--format", "json", "--status-interval", "0"])
        .args(["--comm", WORKLOAD_COMM])
        .args(extra)
        .env("NOTIFY_SOCKET", &sock)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout)?)
        .stderr(File::create(&stderr)?)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting cowtrace watch ({name})"))?;
    Ok(Watcher {
        child,
        stdout,
        stderr,
        notify,
    })
}

fn wait_ready(w: &Watcher) -> anyhow::Result<()> {
    w.notify.set_read_timeout(Some(READY_TIMEOUT))?;
    let mut buf = [0u8; 512];
    loop {
        let n = w.notify.recv(&mut buf).context("waiting for READY=1")?;
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            return Ok(());
        }
    }
}

/// SIGINT, then the report (the last stdout line) and stderr.
fn stop(mut w: Watcher) -> anyhow::Result<(Value, String)> {
    let pid = w.child.id() as libc::pid_t;
    // SAFETY: signals only the child we started and have not reaped.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while w.child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            // SAFETY: the process group we created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = w.child.wait();
            anyhow::bail!("watch did not stop within {STOP_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = std::fs::read_to_string(&w.stdout).unwrap_or_default();
    let err = std::fs::read_to_string(&w.stderr).unwrap_or_default();
    let last = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let report: Value = serde_json::from_str(last)
        .with_context(|| format!("no JSON report on stdout; stderr: {}", excerpt(&err)))?;
    Ok((report, err))
}

fn excerpt(s: &str) -> String {
    s.chars().take(300).collect()
}

fn scenario(cfg: &Config) -> anyhow::Result<Verdict> {
    let dir = cfg.dir.join(NAME);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).context("removing the last run's files")?;
    }
    std::fs::create_dir_all(&dir)?;
    let full = start(cfg, &dir, "full", &[])?;
    let lean_config = dir.join("lean.toml");
    std::fs::write(&lean_config, "[capture]\nalerts_only = true\n")?;
    let lean_config = lean_config.to_string_lossy().into_owned();
    let lean = start(cfg, &dir, "lean", &["--config", &lean_config])?;
    let ran = (|| -> anyhow::Result<()> {
        wait_ready(&full)?;
        wait_ready(&lean)?;
        for w in WORKLOADS {
            let truth = dir.join(format!("{}.json", w.name()));
            let f = run_captured(
                Command::new(&cfg.self_exe)
                    .args(["run", w.name(), "--truth"])
                    .arg(&truth)
                    .env(COMM_ENV, WORKLOAD_COMM),
                cfg.timeout,
            )?;
            if !f.success() {
                anyhow::bail!(
                    "workload {}: {}: {}",
                    w.name(),
                    f.describe(),
                    f.stderr_excerpt(300)
                );
            }
        }
        thread::sleep(SETTLE);
        Ok(())
    })();
    let full = stop(full);
    let lean = stop(lean);
    ran?;
    let (full, _) = full.context("full watch")?;
    let (lean, lean_err) = lean.context("lean watch")?;
    Ok(compare(&full, &lean, &lean_err))
}

/// What makes two alerts the same alert. cow-storm's address is that of
/// the copy that crossed the threshold, which lean mode did not record.
fn alert_keys(report: &Value) -> Vec<String> {
    let mut keys: Vec<String> = report["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    let rule = x["rule"].as_str().unwrap_or("?");
                    if rule == "cow-storm" {
                        format!("{rule} pid {}", x["pid"])
                    } else {
                        format!(
                            "{rule} pid {} addr {} pfn {}",
                            x["pid"], x["address"], x["pfn"]
                        )
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

/// Per process: (copies, reuses, unshare copies, unshare reuses, other).
fn per_process(report: &Value) -> BTreeMap<u64, [u64; 5]> {
    let mut out = BTreeMap::new();
    for p in report["processes"].as_array().into_iter().flatten() {
        let n = |k: &str| p[k].as_u64().unwrap_or(0);
        let counts = [
            n("cow_copies"),
            n("cow_reuses"),
            n("unshare_copies"),
            n("unshare_reuses"),
            n("other_decisions"),
        ];
        if counts.iter().any(|&c| c > 0) {
            out.insert(n("pid"), counts);
        }
    }
    out
}

/// Decisions in one map and not the other, summed over processes and kinds.
fn count_difference(a: &BTreeMap<u64, [u64; 5]>, b: &BTreeMap<u64, [u64; 5]>) -> u64 {
    let zero = [0u64; 5];
    a.keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|pid| {
            let (x, y) = (a.get(pid).unwrap_or(&zero), b.get(pid).unwrap_or(&zero));
            x.iter().zip(y).map(|(p, q)| p.abs_diff(*q)).sum::<u64>()
        })
        .sum()
}

/// The pure verdict over both reports.
pub fn compare(full: &Value, lean: &Value, lean_stderr: &str) -> Verdict {
    let mut problems = Vec::new();
    let (fa, la) = (alert_keys(full), alert_keys(lean));
    if fa.is_empty() {
        problems.push("the full watch raised no alert: the workloads prove nothing".to_string());
    }
    if fa != la {
        problems.push(format!("alerts differ: full {fa:?}, alerts-only {la:?}"));
    }
    let (fp, lp) = (per_process(full), per_process(lean));
    // Decisions the kernel reported as lost (a full ring, or a trampoline
    // program skipped under preemption) are the only allowed difference.
    let lost = |r: &Value| r["lost_events"].as_u64().unwrap_or(0);
    let allowed = lost(full) + lost(lean);
    let differ = count_difference(&fp, &lp);
    if differ > allowed {
        problems.push(format!(
            "per-process decisions differ by {differ} (lost: {allowed}): full {fp:?}, \
             alerts-only {lp:?}"
        ));
    }
    let counted = lean["counted_decisions"].as_u64().unwrap_or(0);
    let (fe, le) = (
        full["events"].as_u64().unwrap_or(0),
        lean["events"].as_u64().unwrap_or(0),
    );
    let in_full = lean_stderr.contains("recording every decision in full");
    if in_full {
        if counted != 0 {
            problems.push(format!(
                "said it records in full but counted {counted} in the kernel"
            ));
        }
    } else if counted == 0 || le >= fe {
        problems.push(format!(
            "alerts-only counted {counted} decisions in the kernel and streamed {le} events \
             against {fe} for full capture"
        ));
    }
    let detail = format!(
        "{} alerts equal; {} processes, counts differing by {differ} (lost {allowed}); \
         alerts-only: {} events + {counted} counted in kernel{}, full: {fe} events",
        fa.len(),
        fp.len(),
        le,
        if in_full {
            " (records in full on this kernel)"
        } else {
            ""
        }
    );
    if problems.is_empty() {
        Verdict::passed(detail)
    } else {
        Verdict::failed(format!("{}; {detail}", problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn report(alerts: Value, copies: u64, events: u64, counted: u64) -> Value {
        json!({
            "alerts": alerts,
            "processes": [{"pid": 7, "cow_copies": copies, "cow_reuses": 3}],
            "events": events,
            "counted_decisions": counted,
        })
    }

    fn pin_alert(addr: &str) -> Value {
        json!({"rule": "pin-then-cow", "pid": 7, "address": addr, "pfn": "0x10"})
    }

    #[test]
    fn equal_alerts_and_counts_with_fewer_events_pass() {
        let full = report(json!([pin_alert("0x1000")]), 100, 500, 0);
        let lean = report(json!([pin_alert("0x1000")]), 100, 20, 480);
        let v = compare(&full, &lean, "");
        assert!(v.ok, "{}", v.detail);
    }

    #[test]
    fn a_missing_alert_or_count_fails() {
        let full = report(json!([pin_alert("0x1000")]), 100, 500, 0);
        assert!(!compare(&full, &report(json!([]), 100, 20, 480), "").ok);
        let lean = report(json!([pin_alert("0x2000")]), 100, 20, 480);
        assert!(!compare(&full, &lean, "").ok);
        let lean = report(json!([pin_alert("0x1000")]), 99, 20, 480);
        assert!(!compare(&full, &lean, "").ok);
    }

    #[test]
    fn lean_mode_must_have_counted_unless_it_said_it_records_in_full() {
        let full = report(json!([pin_alert("0x1000")]), 100, 500, 0);
        let same = report(json!([pin_alert("0x1000")]), 100, 500, 0);
        assert!(!compare(&full, &same, "").ok);
        let said = "cowtrace: --alerts-only: ... recording every decision in full";
        assert!(compare(&full, &same, said).ok);
    }

    #[test]
    fn count_differences_are_allowed_only_up_to_the_reported_losses() {
        let full = report(json!([pin_alert("0x1000")]), 100, 500, 0);
        let mut lossy = report(json!([pin_alert("0x1000")]), 98, 20, 480);
        assert!(!compare(&full, &lossy, "").ok);
        lossy["lost_events"] = json!(1);
        assert!(!compare(&full, &lossy, "").ok);
        lossy["lost_events"] = json!(2);
        let v = compare(&full, &lossy, "");
        assert!(v.ok, "{}", v.detail);
        // Losses never excuse a different alert.
        let mut other = report(json!([pin_alert("0x2000")]), 100, 20, 480);
        other["lost_events"] = json!(50);
        assert!(!compare(&full, &other, "").ok);
    }

    #[test]
    fn no_alert_at_all_proves_nothing() {
        let full = report(json!([]), 100, 500, 0);
        let lean = report(json!([]), 100, 20, 480);
        assert!(!compare(&full, &lean, "").ok);
    }

    #[test]
    fn cow_storm_alerts_match_by_process() {
        let storm =
            |addr: &str| json!({"rule": "cow-storm", "pid": 7, "address": addr, "pfn": "0x1"});
        let full = report(json!([pin_alert("0x1000"), storm("0x5000")]), 100, 500, 0);
        let lean = report(json!([pin_alert("0x1000"), storm("0x0")]), 100, 20, 480);
        assert!(compare(&full, &lean, "").ok);
    }
}
