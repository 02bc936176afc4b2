//! The swap checks on synthetic recordings: pass when the tracer agrees
//! with the measured outcome, fail when one thing is broken.

use serde_json::Value;

use super::fixtures::*;
use crate::workloads::Workload;

const N: usize = 4;

fn verdict(rec: &Rec, w: Workload) -> (bool, String) {
    let v = rec.check(w);
    (v.ok, v.detail)
}

fn is_swap_reuse(e: &Value) -> bool {
    e["type"] == "cow_fault" && e["site"] == "swap" && e["decision"] == "reuse"
}

#[test]
fn private_swap_in_passes_and_fails_on_a_wrong_pfn() {
    let mut rec = swap_private(N);
    let (ok, d) = verdict(&rec, Workload::SwapPrivateWrite);
    assert!(ok, "{d}");
    rec.edit_first(is_swap_reuse, |e| e["pfn"] = 1.into());
    let (ok, d) = verdict(&rec, Workload::SwapPrivateWrite);
    assert!(!ok && d.contains("not matching the measured pfn"), "{d}");
}

#[test]
fn private_swap_in_fails_when_not_swapped() {
    let mut rec = swap_private(N);
    rec.truth.swapped_out = Some(1);
    let (ok, d) = verdict(&rec, Workload::SwapPrivateWrite);
    assert!(!ok && d.contains("swapped out before the write"), "{d}");
}

#[test]
fn leak_alert_is_required_exactly_when_the_pipe_shows_new_data() {
    for leaked in [true, false] {
        let rec = swap_leak(N, leaked);
        let (ok, d) = verdict(&rec, Workload::VmspliceSwapLeak);
        assert!(ok, "leaked {leaked}: {d}");
    }
    // Leaked, but no alert.
    let mut rec = swap_leak(N, true);
    rec.alerts.clear();
    let (ok, d) = verdict(&rec, Workload::VmspliceSwapLeak);
    assert!(!ok && d.contains("no gup-ref-then-reuse alert"), "{d}");
    // Not leaked, but an alert.
    let mut rec = swap_leak(N, false);
    rec.alerts.push(alert_with_holder(
        "gup-ref-then-reuse",
        PARENT,
        0,
        CHILD,
        "do_swap_page",
    ));
    let (ok, d) = verdict(&rec, Workload::VmspliceSwapLeak);
    assert!(
        !ok && d.contains("leak alerts while the pipe kept the old data"),
        "{d}"
    );
}

#[test]
fn leak_alert_must_name_the_holder_and_the_path() {
    let mut rec = swap_leak(N, true);
    rec.alerts[0]["holder"]["pid"] = PARENT.into();
    let (ok, d) = verdict(&rec, Workload::VmspliceSwapLeak);
    assert!(!ok && d.contains("do not name holder"), "{d}");
    let mut rec = swap_leak(N, true);
    rec.alerts[0]["message"] = "reused".into();
    let (ok, d) = verdict(&rec, Workload::VmspliceSwapLeak);
    assert!(!ok && d.contains("do not name holder"), "{d}");
}

#[test]
fn swap_count_must_match_the_references_the_workload_arranged() {
    let mut rec = swap_private(N);
    rec.edit_first(is_swap_reuse, |e| e["swap_count"] = 2.into());
    let (ok, d) = verdict(&rec, Workload::SwapPrivateWrite);
    assert!(!ok && d.contains("with another swap count"), "{d}");
    let mut rec = swap_private(N);
    rec.edit_first(is_swap_reuse, |e| {
        e.as_object_mut().map(|o| o.remove("swap_count"));
    });
    let (ok, d) = verdict(&rec, Workload::SwapPrivateWrite);
    assert!(!ok && d.contains("without a swap count"), "{d}");
    // A fork-shared entry: the leak shape's truth says 2, the records 1.
    let mut rec = swap_leak(N, false);
    rec.truth.swap_references = Some(2);
    let (ok, d) = verdict(&rec, Workload::VmspliceSwapLeak);
    assert!(!ok && d.contains("with another swap count"), "{d}");
}
