use std::{io::Write as _, process::Command};

use super::*;
use crate::model::testkit::{
    anon, caps, ev, fork_vma, gup, lost, stack_def, task, unpin, write_copy,
};
use crate::model::{Config, Engine};

/// A pin, a fork, a copy of the pinned page: one pin-then-cow alert;
/// plus a loss marker and a stack definition (markers, not hook events).
fn snapshot() -> Snapshot {
    let mut engine = Engine::new(Config::default(), caps(true));
    let mut counters = Counters::new();
    let t = task(10, "app");
    let events = [
        ev(1, t, 1, stack_def(1, &["gup"])),
        ev(
            2,
            t,
            1,
            gup(0x1000, 77, true, true, anon(1026, 1, Some(true)), Some(1)),
        ),
        ev(3, t, 1, fork_vma(2, 11, 0, 0x10_0000)),
        ev(
            4,
            t,
            1,
            write_copy(0x1000, 77, 78, anon(1027, 2, Some(false))),
        ),
        ev(5, t, 1, unpin(77, 1)),
        ev(6, t, 1, lost(3)),
    ];
    let mut alerts = Vec::new();
    for e in &events {
        counters.event(e);
        engine.feed(e, &mut alerts);
    }
    for a in &alerts {
        counters.alert(a);
    }
    counters.reload(true);
    counters.reload(false);
    Snapshot {
        counters,
        sinks: vec![(
            "web\"hook".into(),
            StatsSnapshot {
                delivered: 4,
                dropped_queue_full: 2,
                dropped_failed: 1,
                dropped_shutdown: 0,
                errors: 3,
            },
        )],
        state: engine.state_sizes(),
        evictions: engine.report().evictions,
        last_tick_unix: 1_795_760_341.25,
        start_unix: 1_795_760_000.0,
    }
}

#[test]
fn exposition_has_the_counts() {
    let text = render(&snapshot());
    for line in [
        "cowtrace_events_total{hook=\"wp_fault\"} 1",
        "cowtrace_events_total{hook=\"gup_slow\"} 1",
        "cowtrace_events_total{hook=\"unpin\"} 1",
        "cowtrace_events_total{hook=\"fork_vma\"} 1",
        "cowtrace_events_total{hook=\"gup_fast\"} 0",
        "cowtrace_lost_events_total{hook=\"do_wp_page\",cpu=\"0\",reason=\"dropped\"} 3",
        "cowtrace_alerts_total{rule=\"pin-then-cow\",severity=\"critical\"} 1",
        "cowtrace_alerts_total{rule=\"cow-storm\",severity=\"info\"} 0",
        "cowtrace_sink_dropped_total{sink=\"web\\\"hook\",reason=\"queue_full\"} 2",
        "cowtrace_sink_errors_total{sink=\"web\\\"hook\"} 3",
        "cowtrace_config_reloads_total{result=\"failure\"} 1",
        "cowtrace_config_last_reload_successful 0",
        "cowtrace_last_tick_timestamp_seconds 1795760341.25",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let pages = text
        .lines()
        .find(|l| l.starts_with("cowtrace_engine_entries{table=\"pages\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(pages.is_some_and(|n| n >= 1), "{text}");
}

#[test]
fn every_sample_belongs_to_a_declared_family() {
    let text = render(&snapshot());
    let mut declared = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            assert!(
                (kind == "counter") == name.ends_with("_total"),
                "{name} is a {kind}"
            );
            declared.push(name.to_string());
        } else if !l.starts_with('#') {
            let name = l.split(['{', ' ']).next().unwrap_or("");
            assert_eq!(declared.last().map(String::as_str), Some(name), "{l}");
        }
    }
}

/// `promtool check metrics` (Debian package `prometheus`, installed by
/// `cargo xtask setup`) lints names, units, HELP and TYPE.
#[test]
fn promtool_accepts_the_exposition() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed (cargo xtask setup installs it): lint skipped");
        return Ok(());
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(render(&snapshot()).as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
    Ok(())
}
