//! Every check, passing on a correct synthetic recording and failing on a
//! recording broken in one specific way.

use serde_json::{Value, json};

use super::fixtures::*;
use crate::truth::step;
use crate::workloads::Workload;

const N: usize = 4;

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["type"] == kind
}

fn cow_of(pid: u32, fault: &'static str, decision: &'static str) -> impl Fn(&Value) -> bool {
    move |e| {
        e["type"] == "cow_fault"
            && e["pid"] == pid
            && e["fault"] == fault
            && e["decision"] == decision
    }
}

#[track_caller]
fn assert_pass(rec: &Rec, w: Workload) {
    let v = rec.check(w);
    assert!(v.ok, "expected pass: {}", v.detail);
    assert!(!v.detail.contains("FAIL"), "{}", v.detail);
}

#[track_caller]
fn assert_fail(rec: &Rec, w: Workload, needle: &str) {
    let v = rec.check(w);
    assert!(
        !v.ok,
        "expected failure mentioning {needle:?}: {}",
        v.detail
    );
    assert!(
        v.detail.contains(needle),
        "failure should mention {needle:?}: {}",
        v.detail
    );
}

// --- fork-child-writes ---------------------------------------------------

#[test]
fn fork_child_writes_passes_and_reports_numbers() {
    let rec = fork_child_writes(N, Workload::ForkChildWrites);
    assert_pass(&rec, Workload::ForkChildWrites);
    let d = rec.check(Workload::ForkChildWrites).detail;
    assert!(
        d.contains("measured: child copied 4/4, parent changed 0/4"),
        "{d}"
    );
    assert!(
        d.contains("child copy 4 reuse 0, parent copy 0 reuse 4"),
        "{d}"
    );
}

#[test]
fn fork_child_writes_fails_on_a_missing_child_copy() {
    let mut rec = fork_child_writes(N, Workload::ForkChildWrites);
    rec.remove_where(|e| {
        cow_of(CHILD, "write", "copy")(e) && e["address"] == format!("{:#x}", addr(2))
    });
    assert_fail(
        &rec,
        Workload::ForkChildWrites,
        "child copy events: 3, expected 4",
    );
}

#[test]
fn fork_child_writes_fails_on_a_wrong_new_pfn() {
    let mut rec = fork_child_writes(N, Workload::ForkChildWrites);
    rec.edit_first(cow_of(CHILD, "write", "copy"), |e| e["new_pfn"] = json!(1));
    assert_fail(
        &rec,
        Workload::ForkChildWrites,
        "child: 1 inconsistent events",
    );
}

#[test]
fn fork_child_writes_fails_on_misattributed_events() {
    // The child's copies reported under the parent's pid.
    let mut rec = fork_child_writes(N, Workload::ForkChildWrites);
    for e in rec
        .events
        .iter_mut()
        .filter(|e| cow_of(CHILD, "write", "copy")(e))
    {
        e["pid"] = json!(PARENT);
        e["tid"] = json!(PARENT);
    }
    assert_fail(
        &rec,
        Workload::ForkChildWrites,
        "child copy events: 0, expected 4",
    );
}

#[test]
fn fork_child_writes_fails_on_events_outside_the_buffer() {
    let mut rec = fork_child_writes(N, Workload::ForkChildWrites);
    for e in rec
        .events
        .iter_mut()
        .filter(|e| cow_of(PARENT, "write", "reuse")(e))
    {
        e["address"] = json!(format!("{:#x}", addr(N))); // one past the end
    }
    assert_fail(
        &rec,
        Workload::ForkChildWrites,
        "parent reuse events: 0, expected 4",
    );
}

#[test]
fn fork_child_writes_fails_when_the_parent_copies() {
    let mut rec = fork_child_writes(N, Workload::ForkChildWrites);
    rec.edit_first(cow_of(PARENT, "write", "reuse"), |e| {
        e["decision"] = json!("copy");
        e["new_pfn"] = json!(42);
    });
    assert_fail(
        &rec,
        Workload::ForkChildWrites,
        "parent copy events: 1, expected 0",
    );
}

#[test]
fn fork_child_writes_fails_on_an_implausible_measurement() {
    let mut rec = fork_child_writes(N, Workload::ForkChildWrites);
    let s = rec
        .truth
        .steps
        .iter_mut()
        .find(|s| s.name == step::CHILD_WRITE)
        .unwrap();
    s.pfns_after[0] = s.pfns_before[0];
    s.changed -= 1;
    assert_fail(
        &rec,
        Workload::ForkChildWrites,
        "workload: child pages changed: 3, expected 4",
    );
}

#[test]
fn any_scenario_fails_on_lost_records_or_an_inconsistent_truth() {
    let mut rec = fork_child_writes(N, Workload::ForkChildWrites);
    rec.events.push(lost(3));
    assert_fail(
        &rec,
        Workload::ForkChildWrites,
        "lost records: 3, expected 0",
    );

    // A marker counting nothing is not loss and says nothing about completeness.
    let mut rec = fork_child_writes(N, Workload::ForkChildWrites);
    rec.events.push(lost(0));
    assert_pass(&rec, Workload::ForkChildWrites);

    let mut rec = fork_child_writes(N, Workload::ForkChildWrites);
    rec.truth.steps[0].changed = 1;
    assert_fail(&rec, Workload::ForkChildWrites, "inconsistent");
    let rec = fork_child_writes(N, Workload::ForkChildWrites);
    assert_fail(&rec, Workload::VmspliceThenWrite, "truth is for");
}

#[test]
fn report_counters_must_agree_with_events() {
    let mut rec = fork_child_writes(N, Workload::ForkChildWrites);
    let mut report = rec.report();
    let procs = report["processes"].as_array_mut().unwrap();
    let child = procs.iter_mut().find(|p| p["pid"] == CHILD).unwrap();
    child["cow_copies"] = json!(3);
    rec.report_override = Some(report);
    assert_fail(
        &rec,
        Workload::ForkChildWrites,
        "report pid 101 cow_copies vs events: 3, expected 4",
    );

    let mut rec = fork_child_writes(N, Workload::ForkChildWrites);
    let mut report = rec.report();
    report["processes"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["pid"] != CHILD);
    rec.report_override = Some(report);
    assert_fail(
        &rec,
        Workload::ForkChildWrites,
        "report has no entry for pid 101",
    );

    let mut rec = fork_child_writes(N, Workload::ForkChildWrites);
    let mut report = rec.report();
    report["complete"] = json!(false);
    rec.report_override = Some(report);
    assert_fail(&rec, Workload::ForkChildWrites, "report complete=false");
}

// --- overload --------------------------------------------------------------

#[test]
fn overload_passes_with_everything_or_with_reported_loss() {
    let rec = fork_child_writes(64, Workload::Overload);
    assert_pass(&rec, Workload::Overload);

    let mut rec = fork_child_writes(64, Workload::Overload);
    let removed = rec.remove_where(|e| {
        e["type"] == "cow_fault" && e["pid"] == CHILD && e["pfn"].as_u64() > Some(1100)
    });
    assert!(removed > 0);
    rec.events.push(lost(removed as u64));
    assert_pass(&rec, Workload::Overload);
}

#[test]
fn overload_fails_when_events_are_missing_without_a_lost_count() {
    let mut rec = fork_child_writes(64, Workload::Overload);
    rec.remove_where(|e| {
        e["type"] == "cow_fault" && e["pid"] == CHILD && e["pfn"].as_u64() > Some(1100)
    });
    assert_fail(
        &rec,
        Workload::Overload,
        "child copies missing without any lost count",
    );
}

#[test]
fn overload_with_loss_still_rejects_wrong_pfns_and_a_complete_report() {
    let mut rec = fork_child_writes(64, Workload::Overload);
    rec.remove_where(|e| {
        e["type"] == "cow_fault" && e["pid"] == CHILD && e["pfn"].as_u64() > Some(1100)
    });
    rec.events.push(lost(10));
    rec.edit_first(cow_of(CHILD, "write", "copy"), |e| e["pfn"] = json!(3));
    assert_fail(&rec, Workload::Overload, "child: 1 inconsistent events");

    let mut rec = fork_child_writes(64, Workload::Overload);
    rec.events.push(lost(10));
    let mut report = rec.report();
    report["complete"] = json!(true);
    rec.report_override = Some(report);
    assert_fail(
        &rec,
        Workload::Overload,
        "report complete=true while 10 records were lost",
    );
}

// --- ro-pin-after-fork -------------------------------------------------------

#[test]
fn ro_pin_passes_under_both_kernel_behaviours() {
    assert_pass(&ro_pin(N, true), Workload::RoPinAfterFork);
    assert_pass(&ro_pin(N, false), Workload::RoPinAfterFork);
    let d = ro_pin(N, false).check(Workload::RoPinAfterFork).detail;
    assert!(
        d.contains("pin copied 0/4, later write copied 4/4 (copy at write)"),
        "{d}"
    );
}

#[test]
fn ro_pin_fails_without_unshare_events_when_the_kernel_unshared() {
    let mut rec = ro_pin(N, true);
    rec.remove_where(cow_of(PARENT, "unshare", "copy"));
    assert_fail(
        &rec,
        Workload::RoPinAfterFork,
        "parent unshare copies: 0, expected 4",
    );
}

#[test]
fn ro_pin_fails_on_unshare_events_when_the_kernel_did_not_unshare() {
    let mut rec = ro_pin(N, false);
    rec.events
        .push(cow(PARENT, 0, "unshare", 1000, None, "reuse", 2, 2));
    assert_fail(
        &rec,
        Workload::RoPinAfterFork,
        "unshare events (kernel did not unshare): 1, expected 0",
    );
}

#[test]
fn ro_pin_fails_on_a_missing_or_wrong_alert() {
    let mut rec = ro_pin(N, false);
    rec.alerts.clear();
    assert_fail(
        &rec,
        Workload::RoPinAfterFork,
        "unprotected-ro-pin alert missing",
    );
    let mut rec = ro_pin(N, true);
    rec.alerts.push(alert("unprotected-ro-pin", PARENT, 0));
    assert_fail(
        &rec,
        Workload::RoPinAfterFork,
        "unprotected-ro-pin alert raised",
    );
}

#[test]
fn ro_pin_fails_when_pins_are_gets_or_writes() {
    let mut rec = ro_pin(N, true);
    for e in rec.events.iter_mut().filter(|e| is("gup")(e)) {
        e["pin"] = json!(false);
    }
    assert_fail(
        &rec,
        Workload::RoPinAfterFork,
        "pages with a read-only pin on the measured pfn: 0, expected 4",
    );
    let mut rec = ro_pin(N, true);
    rec.edit_first(is("gup"), |e| e["write"] = json!(true));
    assert_fail(
        &rec,
        Workload::RoPinAfterFork,
        "write pins on the buffer: 1, expected 0",
    );
}

#[test]
fn ro_pin_fails_when_pins_name_the_old_page_after_unshare() {
    let mut rec = ro_pin(N, true);
    rec.edit_first(is("gup"), |e| e["pfn"] = json!(1000));
    assert_fail(
        &rec,
        Workload::RoPinAfterFork,
        "read-only pin on the measured pfn: 3, expected 4",
    );
}

#[test]
fn ro_pin_accepts_grabs_without_an_address_by_pfn() {
    let mut rec = ro_pin(N, true);
    for e in rec.events.iter_mut().filter(|e| is("gup")(e)) {
        e["address"] = json!("0x0");
    }
    assert_pass(&rec, Workload::RoPinAfterFork);
}

// --- vmsplice-then-write -----------------------------------------------------

#[test]
fn vmsplice_passes() {
    assert_pass(&vmsplice(N), Workload::VmspliceThenWrite);
}

#[test]
fn vmsplice_fails_without_the_extra_reference_in_the_page_state() {
    let mut rec = vmsplice(N);
    rec.edit_first(cow_of(PARENT, "write", "copy"), |e| {
        e["refcount"] = json!(2)
    });
    assert_fail(
        &rec,
        Workload::VmspliceThenWrite,
        "copies without refcount >= mapcount + 1: 1, expected 0",
    );
}

#[test]
fn vmsplice_fails_when_gets_are_reported_as_pins() {
    let mut rec = vmsplice(N);
    for e in rec.events.iter_mut().filter(|e| is("gup")(e)) {
        e["pin"] = json!(true);
    }
    assert_fail(
        &rec,
        Workload::VmspliceThenWrite,
        "FOLL_PIN grabs on the buffer: 4, expected 0",
    );
}

#[test]
fn vmsplice_fails_on_a_missing_or_misplaced_alert() {
    let mut rec = vmsplice(N);
    rec.alerts.clear();
    assert_fail(
        &rec,
        Workload::VmspliceThenWrite,
        "no gup-ref-then-cow alert for pid 100",
    );
    let mut rec = vmsplice(N);
    rec.alerts = vec![alert("gup-ref-then-cow", PARENT, N + 3)];
    assert_fail(
        &rec,
        Workload::VmspliceThenWrite,
        "no gup-ref-then-cow alert",
    );
    let mut rec = vmsplice(N);
    rec.alerts = vec![alert("gup-ref-then-cow", CHILD, 0)];
    assert_fail(
        &rec,
        Workload::VmspliceThenWrite,
        "no gup-ref-then-cow alert",
    );
}

#[test]
fn vmsplice_fails_when_the_pipe_did_not_keep_old_data() {
    let mut rec = vmsplice(N);
    rec.truth.pipe_shows_old_data = Some(false);
    assert_fail(
        &rec,
        Workload::VmspliceThenWrite,
        "the pipe did not show the old data",
    );
}

// --- iouring-pin -----------------------------------------------------------

#[test]
fn iouring_passes() {
    assert_pass(&iouring(N), Workload::IouringPin);
}

#[test]
fn iouring_fails_without_io_uring_stacks() {
    let mut rec = iouring(N);
    rec.edit_first(is("gup"), |e| {
        e["stack"] = json!(["pin_user_pages_fast+0x2a", "do_syscall_64+0x40"])
    });
    assert_fail(
        &rec,
        Workload::IouringPin,
        "pinned pages whose grab shows an io_uring stack: 3, expected 4",
    );
    let mut rec = iouring(N);
    rec.edit_first(is("gup"), |e| e["stack"] = json!(null));
    assert_fail(&rec, Workload::IouringPin, "io_uring stack: 3, expected 4");
}

#[test]
fn iouring_fails_without_longterm_or_unpins() {
    let mut rec = iouring(N);
    rec.edit_first(is("gup"), |e| e["longterm"] = json!(false));
    assert_fail(
        &rec,
        Workload::IouringPin,
        "long-term write pin on the measured pfn: 3, expected 4",
    );
    let mut rec = iouring(N);
    rec.remove_where(is("unpin"));
    assert_fail(
        &rec,
        Workload::IouringPin,
        "pinned pages unpinned: 0, expected 4",
    );
}

#[test]
fn iouring_fork_copies_are_matched_by_pid_or_by_child_mm() {
    let mut rec = iouring(N);
    for e in rec.events.iter_mut().filter(|e| is("fork_copy")(e)) {
        e["child_pid"] = json!(null);
    }
    assert_pass(&rec, Workload::IouringPin);

    let mut rec = iouring(N);
    rec.remove_where(is("fork"));
    for e in rec.events.iter_mut().filter(|e| is("fork_copy")(e)) {
        e["child_pid"] = json!(null);
    }
    assert_fail(
        &rec,
        Workload::IouringPin,
        "child pages copied at fork (events): 0, expected 4",
    );
}

#[test]
fn iouring_fails_on_wrong_fork_copies() {
    let mut rec = iouring(N);
    rec.edit_first(is("fork_copy"), |e| e["new_pfn"] = json!(1000));
    assert_fail(
        &rec,
        Workload::IouringPin,
        "fork copies inconsistent with the child's pfns: 1, expected 0",
    );
    let mut rec = iouring(N);
    rec.remove_where(|e| is("fork_copy")(e) && e["address"] == format!("{:#x}", addr(0)));
    assert_fail(
        &rec,
        Workload::IouringPin,
        "child pages copied at fork (events): 3, expected 4",
    );
}

#[test]
fn iouring_fails_on_pin_then_cow_or_without_fork_alert() {
    let mut rec = iouring(N);
    rec.alerts.push(alert("pin-then-cow", PARENT, 0));
    assert_fail(
        &rec,
        Workload::IouringPin,
        "pin-then-cow alerts: 1, expected 0",
    );
    let mut rec = iouring(N);
    rec.alerts.clear();
    assert_fail(&rec, Workload::IouringPin, "no fork-with-pins alert");
}

#[test]
fn iouring_fails_when_the_parent_copies_away_from_its_pins() {
    let mut rec = iouring(N);
    rec.events
        .push(cow(PARENT, 1, "write", 1003, Some(77), "copy", 1026, 2));
    let v = rec.check(Workload::IouringPin);
    assert!(!v.ok);
    assert!(
        v.detail.contains("parent write: 1 inconsistent events"),
        "{}",
        v.detail
    );
}
