//! Robustness scenarios: what `cowtrace record` leaves behind when it is
//! killed, when its disk fills, when it is asked to stop, and with which
//! permissions. Pure: the driver (`crate::robust`) runs the commands and
//! hands their outcomes here, so every rule is unit-tested on the host.

use std::path::Path;
use std::time::Duration;

use super::{Checker, Verdict};
use crate::runner::{Finished, excerpt_one_line};

/// How long `record` may take to exit after SIGTERM (final drain, footer,
/// every probe detached). The target is 1 s; in the test VMs the kernel's
/// side of detaching 19 kprobes alone (grace periods, text patching, all
/// emulated by QEMU TCG on a loaded 2-core host) measured 0.8-1.7 s, so the
/// VM check allows 3 s: a cowtrace that waits for a tick, a blocked read or
/// its command still fails it.
pub const SIGTERM_EXIT_LIMIT: Duration = Duration::from_secs(3);
/// The OS error text of ENOSPC (glibc's strerror, which Rust's io::Error uses).
const ENOSPC_TEXT: &str = "No space left on device";
const EXCERPT: usize = 200;

/// What `cowtrace export --format jsonl` printed, split into events and the
/// `{"type":"truncated",...}` lines it appends for cut-off files.
#[derive(Debug, Default, PartialEq)]
pub struct ExportLines {
    pub events: usize,
    /// The `file` member of each truncation line.
    pub truncated_files: Vec<String>,
    /// Lines that are not JSON objects.
    pub malformed: usize,
}

impl ExportLines {
    pub fn parse(jsonl: &str) -> ExportLines {
        let mut out = ExportLines::default();
        for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(serde_json::Value::Object(obj)) = serde_json::from_str(line) else {
                out.malformed += 1;
                continue;
            };
            if obj.get("type").and_then(|t| t.as_str()) == Some("truncated") {
                let file = obj.get("file").and_then(|f| f.as_str()).unwrap_or("");
                out.truncated_files.push(file.to_owned());
            } else {
                out.events += 1;
            }
        }
        out
    }
}

/// A step had to run to completion and exit 0.
fn expect_success(c: &mut Checker, what: &str, f: &Finished) -> bool {
    let ok = f.success();
    c.expect(ok, || {
        format!(
            "cowtrace {what}: {}: {}",
            f.describe(),
            f.stderr_excerpt(EXCERPT)
        )
    });
    ok
}

/// Export's lines and stderr must both name `trace` as cut off.
fn expect_truncation_reported(c: &mut Checker, trace: &Path, export: &Finished) -> ExportLines {
    let lines = ExportLines::parse(&export.stdout);
    let name = trace.display().to_string();
    c.expect_eq("malformed export lines", lines.malformed, 0);
    c.expect(lines.truncated_files.contains(&name), || {
        format!(
            "export has no truncated line for {name} (truncated: {:?})",
            lines.truncated_files
        )
    });
    c.expect(
        export
            .stderr
            .lines()
            .any(|l| l.contains(&name) && l.contains("truncated")),
        || {
            format!(
                "export's stderr does not say {name} is truncated: {}",
                export.stderr_excerpt(EXCERPT)
            )
        },
    );
    lines
}

/// (a) `record` SIGKILLed after its events were flushed: the file is a
/// readable prefix, and both `export` and `report` say it was cut off.
pub fn check_killed(
    trace: &Path,
    record: &Finished,
    export: &Finished,
    report: &Finished,
) -> Verdict {
    let mut c = Checker::default();
    c.note(format!("record: {}", record.describe()));
    c.expect(record.describe() == "signal 9", || {
        format!(
            "record should have died of SIGKILL: {}: {}",
            record.describe(),
            record.stderr_excerpt(EXCERPT)
        )
    });
    if expect_success(&mut c, "export", export) {
        let lines = expect_truncation_reported(&mut c, trace, export);
        c.note(format!("export: {} events", lines.events));
        c.expect(lines.events > 0, || {
            "export: no events survived the kill (nothing was flushed)".into()
        });
    }
    if expect_success(&mut c, "report", report) {
        match serde_json::from_str::<serde_json::Value>(&report.stdout) {
            Ok(v) => {
                let t = &v["truncated"];
                c.note(format!("report truncated: {t}"));
                c.expect(t.is_object(), || {
                    format!("report's \"truncated\" is {t}, expected an object")
                });
                c.expect(t["complete_blocks"].as_u64().is_some_and(|n| n > 0), || {
                    format!(
                        "report's truncated.complete_blocks is {}",
                        t["complete_blocks"]
                    )
                });
            }
            Err(e) => c.fail(format!("report: unreadable JSON: {e}")),
        }
    }
    c.finish()
}

/// (b) `record` into a full file system: a non-zero exit with an error that
/// names the file and the OS error, and a file that still reads.
pub fn check_enospc(trace: &Path, record: &Finished, export: &Finished) -> Verdict {
    let mut c = Checker::default();
    let name = trace.display().to_string();
    let error_line = record
        .stderr
        .lines()
        .find(|l| l.contains(ENOSPC_TEXT))
        .unwrap_or("");
    c.note(format!(
        "record: {}: {}",
        record.describe(),
        excerpt_one_line(error_line, EXCERPT)
    ));
    c.expect(record.code().is_some_and(|code| code != 0), || {
        format!(
            "record should exit non-zero on ENOSPC, got {}",
            record.describe()
        )
    });
    c.expect(!error_line.is_empty(), || {
        format!(
            "record's stderr does not say {ENOSPC_TEXT:?}: {}",
            record.stderr_excerpt(EXCERPT)
        )
    });
    c.expect(error_line.contains(&name), || {
        format!("the ENOSPC error does not name {name}")
    });
    if expect_success(&mut c, "export", export) {
        let lines = ExportLines::parse(&export.stdout);
        c.expect_eq("malformed export lines", lines.malformed, 0);
        c.note(format!(
            "export: {} events, truncated {}",
            lines.events,
            !lines.truncated_files.is_empty()
        ));
    }
    c.finish()
}

/// Lines of `/sys/kernel/debug/kprobes/list` at three moments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeCounts {
    pub before: usize,
    pub attached: usize,
    pub after: usize,
}

/// (c) SIGTERM: `record` exits 0 within [`SIGTERM_EXIT_LIMIT`] and every
/// kprobe it registered is gone once it has exited.
pub fn check_sigterm(probes: ProbeCounts, record: &Finished, exit_after: Duration) -> Verdict {
    let mut c = Checker::default();
    c.note(format!(
        "kprobes before {}, attached {}, after {}; exited {} in {} ms",
        probes.before,
        probes.attached,
        probes.after,
        record.describe(),
        exit_after.as_millis()
    ));
    // Otherwise the list cannot show a leak: the check would prove nothing.
    c.expect(probes.attached > probes.before, || {
        "no kprobe appeared in kprobes/list while recording".into()
    });
    c.expect_eq("kprobes after exit", probes.after, probes.before);
    expect_success(&mut c, "record", record);
    c.expect(exit_after <= SIGTERM_EXIT_LIMIT, || {
        format!(
            "record took {} ms to exit after SIGTERM (limit {} ms)",
            exit_after.as_millis(),
            SIGTERM_EXIT_LIMIT.as_millis()
        )
    });
    c.finish()
}

/// (d) The trace file is 0600 although the umask allowed 0666; `control`
/// is the mode of a file the same shell created, proving the umask was 000.
pub fn check_mode(
    record: &Finished,
    trace_mode: Option<u32>,
    control_mode: Option<u32>,
) -> Verdict {
    let mut c = Checker::default();
    let show = |m: Option<u32>| m.map_or("missing".to_owned(), |m| format!("{:04o}", m & 0o7777));
    c.note(format!(
        "trace {}, control file {}",
        show(trace_mode),
        show(control_mode)
    ));
    expect_success(&mut c, "record", record);
    c.expect(control_mode.is_some_and(|m| m & 0o777 == 0o666), || {
        "the control file shows the umask was not 000".into()
    });
    c.expect(trace_mode.is_some_and(|m| m & 0o7777 == 0o600), || {
        format!("trace file mode {}, expected 0600", show(trace_mode))
    });
    c.finish()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::ExitStatus;

    use super::*;

    fn exited(code: i32, stdout: &str, stderr: &str) -> Finished {
        Finished {
            status: Some(ExitStatus::from_raw(code << 8)),
            stdout: stdout.into(),
            stderr: stderr.into(),
            elapsed: Duration::from_millis(10),
        }
    }

    fn killed(signal: i32) -> Finished {
        Finished {
            status: Some(ExitStatus::from_raw(signal)),
            stdout: String::new(),
            stderr: String::new(),
            elapsed: Duration::from_millis(10),
        }
    }

    const TRACE: &str = "/tmp/sigkill-record.cwt";
    const EVENT: &str = r#"{"type":"cow_fault","pid":7,"fault":"write"}"#;
    const CUT: &str = r#"{"type":"truncated","file":"/tmp/sigkill-record.cwt","at_byte":900,"complete_blocks":2}"#;
    const CUT_NOTE: &str = "cowtrace: warning: /tmp/sigkill-record.cwt: truncated at byte 900 of 950 (not closed cleanly); 2 complete blocks read\n";

    fn report_json(truncated: &str) -> String {
        format!(r#"{{"complete":true,"truncated":{truncated}}}"#)
    }

    #[test]
    fn export_lines_split_events_from_truncation_lines() {
        let text = format!("{EVENT}\n{EVENT}\nnot json\n\n{CUT}\n");
        assert_eq!(
            ExportLines::parse(&text),
            ExportLines {
                events: 2,
                truncated_files: vec![TRACE.into()],
                malformed: 1
            }
        );
    }

    #[test]
    fn a_killed_recording_passes_only_with_events_and_truncation_said_everywhere() {
        let trace = Path::new(TRACE);
        let export = exited(0, &format!("{EVENT}\n{CUT}\n"), CUT_NOTE);
        let report = exited(
            0,
            &report_json(r#"{"at_byte":900,"complete_blocks":2}"#),
            "",
        );
        let v = check_killed(trace, &killed(9), &export, &report);
        assert!(v.ok, "{}", v.detail);
        assert!(v.detail.contains("export: 1 events"), "{}", v.detail);

        // Nothing flushed before the kill.
        let empty = exited(0, &format!("{CUT}\n"), CUT_NOTE);
        let v = check_killed(trace, &killed(9), &empty, &report);
        assert!(
            !v.ok && v.detail.contains("no events survived"),
            "{}",
            v.detail
        );

        // The export does not say the file was cut.
        let silent = exited(0, &format!("{EVENT}\n"), "");
        let v = check_killed(trace, &killed(9), &silent, &report);
        assert!(
            !v.ok && v.detail.contains("no truncated line"),
            "{}",
            v.detail
        );
        assert!(v.detail.contains("does not say"), "{}", v.detail);

        // The report says nothing about it.
        let v = check_killed(
            trace,
            &killed(9),
            &export,
            &exited(0, &report_json("null"), ""),
        );
        assert!(
            !v.ok && v.detail.contains("\"truncated\" is null"),
            "{}",
            v.detail
        );

        // Export refusing the file, or record not killed at all.
        let refused = exited(2, "", "cowtrace: error: bad magic");
        let v = check_killed(trace, &killed(9), &refused, &report);
        assert!(!v.ok && v.detail.contains("export: exit 2"), "{}", v.detail);
        let v = check_killed(trace, &exited(0, "", ""), &export, &report);
        assert!(!v.ok && v.detail.contains("SIGKILL"), "{}", v.detail);
    }

    #[test]
    fn a_full_disk_must_end_record_with_the_file_and_the_os_error() {
        let trace = Path::new("/tmp/enospc/t.cwt");
        let err = "cowtrace: error: /tmp/enospc/t.cwt: byte 8192: write failed: No space left on device (os error 28)\n";
        let export = exited(0, &format!("{EVENT}\n"), "");
        let v = check_enospc(trace, &exited(1, "", err), &export);
        assert!(v.ok, "{}", v.detail);

        let v = check_enospc(trace, &exited(0, "", err), &export);
        assert!(!v.ok && v.detail.contains("exit non-zero"), "{}", v.detail);
        let v = check_enospc(trace, &killed(9), &export);
        assert!(!v.ok && v.detail.contains("exit non-zero"), "{}", v.detail);
        let anonymous = "cowtrace: error: write failed: No space left on device (os error 28)\n";
        let v = check_enospc(trace, &exited(1, "", anonymous), &export);
        assert!(!v.ok && v.detail.contains("does not name"), "{}", v.detail);
        let v = check_enospc(trace, &exited(1, "", "cowtrace: error: boom\n"), &export);
        assert!(!v.ok && v.detail.contains("does not say"), "{}", v.detail);
        let v = check_enospc(trace, &exited(1, "", err), &exited(2, "", "bad magic"));
        assert!(!v.ok && v.detail.contains("export: exit 2"), "{}", v.detail);
    }

    #[test]
    fn sigterm_must_detach_every_probe_and_exit_quickly() {
        let fast = Duration::from_millis(300);
        let ok = ProbeCounts {
            before: 2,
            attached: 9,
            after: 2,
        };
        let v = check_sigterm(ok, &exited(0, "", ""), fast);
        assert!(v.ok, "{}", v.detail);

        let leak = ProbeCounts { after: 4, ..ok };
        let v = check_sigterm(leak, &exited(0, "", ""), fast);
        assert!(!v.ok && v.detail.contains("kprobes after exit: 4, expected 2"));
        let unseen = ProbeCounts { attached: 2, ..ok };
        assert!(!check_sigterm(unseen, &exited(0, "", ""), fast).ok);
        let v = check_sigterm(ok, &exited(0, "", ""), Duration::from_millis(3500));
        assert!(!v.ok && v.detail.contains("3500 ms"), "{}", v.detail);
        assert!(!check_sigterm(ok, &exited(1, "", "boom"), fast).ok);
    }

    #[test]
    fn the_trace_must_be_private_under_an_open_umask() {
        let rec = exited(0, "", "");
        assert!(check_mode(&rec, Some(0o100600), Some(0o100666)).ok);
        let v = check_mode(&rec, Some(0o100644), Some(0o100666));
        assert!(!v.ok && v.detail.contains("0644"), "{}", v.detail);
        assert!(!check_mode(&rec, None, Some(0o666)).ok);
        // A umask that was not 000 proves nothing.
        assert!(!check_mode(&rec, Some(0o600), Some(0o644)).ok);
        assert!(!check_mode(&exited(1, "", ""), Some(0o600), Some(0o666)).ok);
    }
}
