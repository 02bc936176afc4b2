//! The `watch-service` scenario's verdict: `cowtrace watch --config` run as
//! a service (sd_notify, SIGHUP reload, webhook and JSON lines sinks,
//! metrics) must deliver every alert of its final report to every sink,
//! apply a reload without losing a beat, and tell systemd each step.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Checker, Verdict};
use crate::runner::Finished;

/// What the driver saw.
pub struct Observed<'a> {
    pub watch: &'a Finished,
    /// sd_notify datagrams in arrival order.
    pub notify: &'a [String],
    /// Webhook request bodies.
    pub webhook: &'a [Value],
    /// The JSON lines sink configured from the start.
    pub jsonl_before: &'a str,
    /// The JSON lines sink added by the reload.
    pub jsonl_after: &'a str,
    /// `GET /metrics` after the second workload.
    pub metrics: &'a str,
}

/// An alert's identity across outputs: rule, process, first occurrence.
type Key = (String, u64, u64);

fn key(a: &Value) -> Option<Key> {
    Some((
        a["rule"].as_str()?.to_string(),
        a["pid"].as_u64()?,
        a["time_ns"].as_u64()?,
    ))
}

fn jsonl_keys(text: &str) -> Result<BTreeSet<Key>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .as_ref()
                .and_then(key)
                .ok_or_else(|| format!("not an alert line: {l}"))
        })
        .collect()
}

/// The value of the sample `line_prefix` (`name{labels}`) in an exposition.
fn sample(metrics: &str, line_prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.strip_prefix(' ')?.parse().ok())
}

pub fn check(o: &Observed<'_>) -> Verdict {
    let mut c = Checker::default();
    c.expect(o.watch.success(), || {
        format!(
            "watch: {}: {}",
            o.watch.describe(),
            o.watch.stderr_excerpt(240)
        )
    });

    // READY=1 (probes attached), RELOADING=1 then READY=1 (reload), STOPPING=1.
    let states: Vec<&str> = o
        .notify
        .iter()
        .map(|m| m.lines().next().unwrap_or(""))
        .collect();
    c.note(format!("notify {}", states.join(",")));
    c.expect(
        states == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"],
        || format!("sd_notify sequence {states:?}"),
    );
    c.expect(
        o.notify
            .get(1)
            .is_some_and(|m| m.contains("\nMONOTONIC_USEC=")),
        || "RELOADING=1 without MONOTONIC_USEC".into(),
    );
    c.expect(o.watch.stderr.contains("config reloaded"), || {
        "no `config reloaded` on stderr".into()
    });

    // stdout: alert JSON lines, then the report (the last line).
    let mut lines: Vec<&str> = o.watch.stdout.lines().filter(|l| !l.is_empty()).collect();
    let report: Option<Value> = lines.pop().and_then(|l| serde_json::from_str(l).ok());
    let Some(report) = report else {
        c.fail("no JSON report on stdout");
        return c.finish();
    };
    let reported: BTreeSet<Key> = report["alerts"]
        .as_array()
        .map(|v| v.iter().filter_map(key).collect())
        .unwrap_or_default();
    c.note(format!("{} alerts", reported.len()));
    c.expect(!reported.is_empty(), || {
        "the workloads raised no alert".into()
    });

    let stdout_alerts: BTreeSet<Key> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| key(&v))
        .collect();
    c.expect(stdout_alerts == reported, || {
        format!(
            "stdout sink has {} alerts, the report {}",
            stdout_alerts.len(),
            reported.len()
        )
    });

    let hooked: BTreeSet<Key> = o
        .webhook
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| key(&a))
        .collect();
    c.note(format!("{} webhook batches", o.webhook.len()));
    c.expect(hooked == reported, || {
        format!(
            "webhook got {} alerts, the report has {}",
            hooked.len(),
            reported.len()
        )
    });
    c.expect(o.webhook.iter().all(|b| b["dropped_total"] == 0), || {
        "webhook batches report drops".into()
    });

    match (jsonl_keys(o.jsonl_before), jsonl_keys(o.jsonl_after)) {
        (Ok(before), Ok(after)) => {
            c.note(format!("jsonl {} then {}", before.len(), after.len()));
            c.expect(before == reported, || {
                format!(
                    "jsonl sink has {} alerts, the report {}",
                    before.len(),
                    reported.len()
                )
            });
            // The sink added by the reload saw the second workload only.
            c.expect(!after.is_empty() && after.len() < before.len(), || {
                format!(
                    "reloaded jsonl sink has {} of {} alerts",
                    after.len(),
                    before.len()
                )
            });
            c.expect(after.is_subset(&before), || {
                "reloaded jsonl sink has alerts the report lacks".into()
            });
        }
        (Err(e), _) | (_, Err(e)) => c.fail(e),
    }

    let events: f64 = o
        .metrics
        .lines()
        .filter(|l| l.starts_with("cowtrace_events_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    c.expect(events > 0.0, || "metrics: no events counted".into());
    c.expect_eq(
        "metrics: successful reloads",
        sample(
            o.metrics,
            "cowtrace_config_reloads_total{result=\"success\"}",
        )
        .unwrap_or(-1.0),
        1.0,
    );
    c.expect(
        sample(o.metrics, "cowtrace_sink_delivered_total{sink=\"hook\"}").is_some_and(|n| n > 0.0),
        || "metrics: webhook deliveries not counted".into(),
    );
    c.finish()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn finished(stdout: &str, stderr: &str) -> Finished {
        use std::os::unix::process::ExitStatusExt as _;
        Finished {
            status: Some(std::process::ExitStatus::from_raw(0)),
            stdout: stdout.into(),
            stderr: stderr.into(),
            elapsed: Duration::from_secs(1),
        }
    }

    fn alert(pid: u64, t: u64) -> Value {
        json!({"rule": "gup-ref-then-cow", "pid": pid, "time_ns": t})
    }

    const METRICS: &str = "cowtrace_events_total{hook=\"wp_fault\"} 12\n\
        cowtrace_config_reloads_total{result=\"success\"} 1\n\
        cowtrace_sink_delivered_total{sink=\"hook\"} 2\n";

    fn run(webhook: &[Value], after: &str, notify: &[&str]) -> Verdict {
        let report = json!({"alerts": [alert(1, 10), alert(2, 20)]});
        let stdout = format!("{}\n{}\n{report}\n", alert(1, 10), alert(2, 20));
        let watch = finished(&stdout, "cowtrace: config reloaded\n");
        let notify: Vec<String> = notify.iter().map(|s| s.to_string()).collect();
        let before = format!("{}\n{}\n", alert(1, 10), alert(2, 20));
        check(&Observed {
            watch: &watch,
            notify: &notify,
            webhook,
            jsonl_before: &before,
            jsonl_after: after,
            metrics: METRICS,
        })
    }

    const GOOD_NOTIFY: [&str; 4] = [
        "READY=1",
        "RELOADING=1\nMONOTONIC_USEC=5",
        "READY=1",
        "STOPPING=1",
    ];

    #[test]
    fn everything_delivered_passes() {
        let hook = [
            json!({"dropped_total": 0, "alerts": [alert(1, 10)]}),
            json!({"dropped_total": 0, "alerts": [alert(2, 20)]}),
        ];
        let v = run(&hook, &format!("{}\n", alert(2, 20)), &GOOD_NOTIFY);
        assert!(v.ok, "{}", v.detail);
    }

    #[test]
    fn a_missing_webhook_alert_or_notify_step_fails() {
        let hook = [json!({"dropped_total": 0, "alerts": [alert(1, 10)]})];
        let v = run(&hook, &format!("{}\n", alert(2, 20)), &GOOD_NOTIFY);
        assert!(
            !v.ok && v.detail.contains("webhook got 1 alerts"),
            "{}",
            v.detail
        );

        let hook = [json!({"dropped_total": 0, "alerts": [alert(1, 10), alert(2, 20)]})];
        let v = run(
            &hook,
            &format!("{}\n", alert(2, 20)),
            &["READY=1", "STOPPING=1"],
        );
        assert!(
            !v.ok && v.detail.contains("sd_notify sequence"),
            "{}",
            v.detail
        );

        // The reloaded sink cannot have seen the first workload.
        let both = format!("{}\n{}\n", alert(1, 10), alert(2, 20));
        let v = run(&hook, &both, &GOOD_NOTIFY);
        assert!(
            !v.ok && v.detail.contains("reloaded jsonl sink"),
            "{}",
            v.detail
        );
    }
}
