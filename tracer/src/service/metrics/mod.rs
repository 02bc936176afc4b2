//! Self-observability as Prometheus metrics: counters kept by the capture
//! loop, published as a `Snapshot` every tick, rendered in the text
//! exposition format (version 0.0.4) on request.
//!
//! The format is written by hand: it is a few lines per family, and the
//! `promtool check metrics` test keeps it honest.

use std::{collections::BTreeMap, fmt::Write as _};

use crate::model::{
    Alert, Body, Event, RuleId, Severity, Site, StateSizes, event::GupPath, report::Evictions,
};

use crate::service::sinks::StatsSnapshot;

mod http;
pub use http::{MetricsServer, Shared};

/// Hook labels, as `tracer_common::hook::name` spells them.
const HOOKS: [&str; 10] = [
    "wp_fault",
    "thp_wp",
    "swap",
    "hugetlb",
    "gup_slow",
    "gup_fast",
    "unpin",
    "fork_vma",
    "fork_copy",
    "task",
];

/// The hook an event came from (None for markers: losses, stacks).
fn hook_index(ev: &Event) -> Option<usize> {
    Some(match &ev.body {
        Body::CowFault(f) => match f.site {
            Site::Wp => 0,
            Site::Thp => 1,
            Site::Swap => 2,
            Site::Hugetlb => 3,
        },
        Body::Gup(g) => match g.path {
            GupPath::Slow => 4,
            GupPath::Fast => 5,
        },
        Body::Unpin(_) => 6,
        Body::ForkVma(_) => 7,
        Body::ForkCopy(_) => 8,
        Body::TaskFork(_) | Body::TaskExit => 9,
        Body::Lost(_) | Body::StackDef(_) => return None,
    })
}

/// Counters the capture loop updates as it goes (plain integers: one
/// thread owns them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    events: [u64; HOOKS.len()],
    /// (hook, cpu) -> (dropped, errors, skipped).
    lost: BTreeMap<(String, u32), (u64, u64, u64)>,
    alerts: BTreeMap<(RuleId, Severity), u64>,
    reloads_ok: u64,
    reloads_failed: u64,
    last_reload_ok: bool,
}

impl Counters {
    pub fn new() -> Self {
        Counters {
            last_reload_ok: true,
            ..Counters::default()
        }
    }

    pub fn event(&mut self, ev: &Event) {
        if let Some(i) = hook_index(ev) {
            self.events[i] += 1;
        }
        if let Body::Lost(l) = &ev.body {
            let e = self.lost.entry((l.hook.clone(), l.cpu)).or_default();
            e.0 += l.dropped;
            e.1 += l.errors;
            e.2 += l.skipped;
        }
    }

    /// An alert the engine emitted (suppressed repeats are not alerts).
    pub fn alert(&mut self, a: &Alert) {
        *self.alerts.entry((a.rule, a.severity)).or_default() += 1;
    }

    pub fn reload(&mut self, ok: bool) {
        if ok {
            self.reloads_ok += 1;
        } else {
            self.reloads_failed += 1;
        }
        self.last_reload_ok = ok;
    }
}

/// Everything one scrape shows, copied out of the capture loop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub counters: Counters,
    pub sinks: Vec<(String, StatsSnapshot)>,
    pub state: StateSizes,
    pub evictions: Evictions,
    /// Wall clock of the loop's last tick (seconds since the epoch): a
    /// stalled tracer stops moving it.
    pub last_tick_unix: f64,
    pub start_unix: f64,
}

/// Label values escape `\`, `"` and newlines.
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// The text exposition of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut o = Out(String::with_capacity(4096));
    let c = &s.counters;

    o.family(
        "cowtrace_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    o.sample(
        "cowtrace_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    o.family(
        "cowtrace_start_time_seconds",
        "gauge",
        "When tracing started, seconds since the epoch.",
    );
    o.sample("cowtrace_start_time_seconds", &[], s.start_unix);
    o.family(
        "cowtrace_last_tick_timestamp_seconds",
        "gauge",
        "Last time the capture loop ran (every 250 ms); stale when the tracer is stalled.",
    );
    o.sample(
        "cowtrace_last_tick_timestamp_seconds",
        &[],
        s.last_tick_unix,
    );

    o.family(
        "cowtrace_events_total",
        "counter",
        "Events decoded, by kernel hook.",
    );
    for (h, n) in HOOKS.iter().zip(c.events) {
        o.sample("cowtrace_events_total", &[("hook", h)], n);
    }
    o.family(
        "cowtrace_lost_events_total",
        "counter",
        "Events the kernel side could not deliver (ring buffer full), read, or run \
         (trampoline skipped: cpu 0), by hook, CPU and reason.",
    );
    for ((hook, cpu), (dropped, errors, skipped)) in &c.lost {
        let cpu = cpu.to_string();
        o.sample(
            "cowtrace_lost_events_total",
            &[("hook", hook), ("cpu", &cpu), ("reason", "dropped")],
            dropped,
        );
        o.sample(
            "cowtrace_lost_events_total",
            &[("hook", hook), ("cpu", &cpu), ("reason", "error")],
            errors,
        );
        o.sample(
            "cowtrace_lost_events_total",
            &[("hook", hook), ("cpu", &cpu), ("reason", "skipped")],
            skipped,
        );
    }
    o.family(
        "cowtrace_alerts_total",
        "counter",
        "Alerts raised (after dedup), by rule and severity.",
    );
    for r in RuleId::ALL {
        for sev in [Severity::Critical, Severity::Warning, Severity::Info] {
            let n = c.alerts.get(&(r, sev)).copied().unwrap_or(0);
            // Only the rule's configured severities ever move; keep the
            // default one always present so rates start at 0.
            if n > 0 || sev == r.default_severity() {
                o.sample(
                    "cowtrace_alerts_total",
                    &[("rule", r.as_str()), ("severity", sev.as_str())],
                    n,
                );
            }
        }
    }

    o.family(
        "cowtrace_sink_delivered_total",
        "counter",
        "Alerts handed to a sink's destination.",
    );
    for (name, st) in &s.sinks {
        o.sample(
            "cowtrace_sink_delivered_total",
            &[("sink", name)],
            st.delivered,
        );
    }
    o.family(
        "cowtrace_sink_dropped_total",
        "counter",
        "Alerts a sink dropped: queue full, delivery failed after retries, or out of time at exit.",
    );
    for (name, st) in &s.sinks {
        for (reason, n) in [
            ("queue_full", st.dropped_queue_full),
            ("failed", st.dropped_failed),
            ("shutdown", st.dropped_shutdown),
        ] {
            o.sample(
                "cowtrace_sink_dropped_total",
                &[("sink", name), ("reason", reason)],
                n,
            );
        }
    }
    o.family(
        "cowtrace_sink_errors_total",
        "counter",
        "Failed delivery attempts (each retry counts).",
    );
    for (name, st) in &s.sinks {
        o.sample("cowtrace_sink_errors_total", &[("sink", name)], st.errors);
    }

    o.family(
        "cowtrace_engine_entries",
        "gauge",
        "Entries in the correlation engine's bounded tables.",
    );
    let st = &s.state;
    for (t, n) in [
        ("pages", st.pages),
        ("processes", st.processes),
        ("mapping_pages", st.mapping_pages),
        ("address_spaces", st.address_spaces),
        ("stacks", st.stacks),
    ] {
        o.sample("cowtrace_engine_entries", &[("table", t)], n);
    }
    o.family(
        "cowtrace_engine_evictions_total",
        "counter",
        "Entries evicted from the engine's full tables (pages_with_holders is a subset of pages).",
    );
    let e = &s.evictions;
    for (t, n) in [
        ("pages", e.pages),
        ("pages_with_holders", e.pages_with_holders),
        ("processes", e.processes),
        ("mapping_pages", e.mapping_pages),
        ("address_spaces", e.address_spaces),
        ("fork_ranges", e.fork_ranges),
        ("alerts", e.alerts),
        ("stacks", e.stacks),
        ("holders", e.holders),
    ] {
        o.sample("cowtrace_engine_evictions_total", &[("table", t)], n);
    }

    o.family(
        "cowtrace_config_reloads_total",
        "counter",
        "SIGHUP reloads, by result (a failed one keeps the running config).",
    );
    o.sample(
        "cowtrace_config_reloads_total",
        &[("result", "success")],
        c.reloads_ok,
    );
    o.sample(
        "cowtrace_config_reloads_total",
        &[("result", "failure")],
        c.reloads_failed,
    );
    o.family(
        "cowtrace_config_last_reload_successful",
        "gauge",
        "1 unless the last reload was refused.",
    );
    o.sample(
        "cowtrace_config_last_reload_successful",
        &[],
        u8::from(c.last_reload_ok),
    );
    o.0
}

#[cfg(test)]
mod tests;
