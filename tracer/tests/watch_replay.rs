//! `cowtrace watch --replay`: the live engine over a trace file must raise
//! exactly the alerts `cowtrace report` lists for the same file, say when
//! the file was cut off, and refuse the live-only options.

mod trace_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use cowtrace::model::{Body, CowFault, Decision, Event, FaultKind, Gup, GupPath, PageState, Site};
use cowtrace::trace::{TraceWriter, WriterOptions};
use serde_json::Value;
use trace_support::*;

/// Pages pinned and then copied away from their pin (pin-then-COW).
const PINNED: u64 = 6;
const BASE: u64 = 0x7f10_0000_0000;

fn pin(t: u64, address: u64, pfn: u64) -> Event {
    ev(
        t,
        Body::Gup(Gup {
            path: GupPath::Slow,
            address,
            pfn,
            refs: 1,
            pin: true,
            write: true,
            longterm: true,
            force: false,
            failed: false,
            page: pinned_page(),
            stack: None,
        }),
    )
}

fn copy(t: u64, address: u64, pfn: u64) -> Event {
    ev(
        t,
        Body::CowFault(CowFault {
            site: Site::Wp,
            fault: FaultKind::Write,
            address,
            pfn,
            new_pfn: Some(pfn + 0x10_0000),
            decision: Decision::Copy,
            shared_mapping: false,
            ret: 0,
            page: pinned_page(),
            swap_count: None,
        }),
    )
}

/// An exclusive anonymous page holding one FOLL_PIN (refcount bias 1024).
fn pinned_page() -> PageState {
    PageState {
        refcount: 1025,
        mapcount: 1,
        anon_exclusive: Some(true),
        ..page()
    }
}

/// Background COW traffic (more than one replay batch) with pin-then-COW
/// sequences on `PINNED` pages in the middle of it.
fn events() -> Vec<Event> {
    let mut evs = cow_walk(10_000);
    let t0 = evs[5_000].time_ns;
    for i in 0..PINNED {
        let (address, pfn) = (BASE + i * 4096, 0x50_0000 + i);
        evs.push(pin(t0 + 2 * i, address, pfn));
        evs.push(copy(t0 + 2 * i + 1, address, pfn));
    }
    evs.sort_by_key(|e| e.time_ns);
    evs
}

fn write_trace(path: &Path) {
    let opts = WriterOptions {
        max_block_bytes: 16 << 10,
        ..WriterOptions::default()
    };
    let mut w = TraceWriter::create(path, &meta(), opts).unwrap();
    for e in events() {
        w.push(&e).unwrap();
    }
    w.finish().unwrap();
}

fn cowtrace(args: &[&str], file: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cowtrace"))
        .args(args)
        .arg(file)
        .output()
        .expect("the cowtrace binary runs");
    assert!(
        out.status.success(),
        "cowtrace {args:?}: {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What identifies an alert occurrence, in both outputs.
fn key(a: &Value) -> String {
    format!(
        "{} pid={} address={} pfn={} time={}",
        a["rule"], a["pid"], a["address"], a["pfn"], a["time_ns"]
    )
}

/// `watch --format json`: alert lines, then the report as the last line.
fn watch_json(file: &Path) -> (BTreeSet<String>, Value, String) {
    let out = cowtrace(&["watch", "--format", "json", "--replay"], file);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let report = lines.pop().expect("a final report line");
    let alerts = lines.iter().map(key).collect();
    (alerts, report, String::from_utf8(out.stderr).unwrap())
}

fn report_json(file: &Path) -> Value {
    let out = cowtrace(&["report", "--format", "json"], file);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn report_alerts(report: &Value) -> BTreeSet<String> {
    report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(key)
        .collect()
}

#[test]
fn replay_raises_the_alerts_report_lists() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pins.cwt");
    write_trace(&file);

    let (alerts, watch_report, stderr) = watch_json(&file);
    let report = report_json(&file);
    // Repeats of a rule in one process are deduplicated into one alert.
    assert!(
        alerts.iter().any(|a| a.contains("pin-then-cow")),
        "{alerts:?}"
    );
    assert_eq!(alerts, report_alerts(&report));
    assert_eq!(watch_report["alerts"], report["alerts"]);
    assert_eq!(watch_report["processes"], report["processes"]);
    assert_eq!(watch_report["truncated"], Value::Null);
    assert_eq!(report["truncated"], Value::Null);
    assert!(!stderr.contains("truncated"), "{stderr}");

    // Text mode prints the same alerts, one line each, then the tables.
    let text = cowtrace(&["watch", "--replay"], &file);
    let text = String::from_utf8(text.stdout).unwrap();
    for rule in report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["rule"])
    {
        let rule = rule.as_str().unwrap();
        assert!(text.contains(rule), "{rule} missing from: {text}");
    }
}

#[test]
fn replay_of_a_cut_off_file_says_so_like_report() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cut.cwt");
    write_trace(&file);
    // A crash: the footer and part of the last block never reached the disk.
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len - 2_000).unwrap();

    let (alerts, watch_report, stderr) = watch_json(&file);
    let report = report_json(&file);
    assert_eq!(alerts, report_alerts(&report));
    assert!(watch_report["truncated"].is_object(), "{watch_report}");
    assert_eq!(watch_report["truncated"], report["truncated"]);
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains("truncated"),
        "{stderr}"
    );
}

#[test]
fn replay_refuses_live_only_options_and_needs_no_privileges() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.cwt");
    write_trace(&file);
    for extra in [
        &["--pid", "1"][..],
        &["--duration", "1"],
        &["--ring-bytes", "8192"],
        &["--raw-pointers"],
        &["--all"],
        &["--status-interval", "1"],
        &["--", "true"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cowtrace"))
            .args(["watch", "--replay"])
            .arg(&file)
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("cannot be used with"),
            "{extra:?}: {stderr}"
        );
    }
    // A bad trace file is bad input, as for `report`.
    let bad = dir.path().join("bad.cwt");
    std::fs::write(&bad, b"").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cowtrace"))
        .args(["watch", "--replay"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&bad.display().to_string()));
}
