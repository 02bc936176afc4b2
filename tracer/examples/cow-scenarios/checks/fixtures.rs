//! Synthetic recordings for the check tests: a ground truth and the event
//! stream and report a correct tracer would produce for it, as JSON text
//! that goes through the real parsers. Tests then break one thing at a time.

use serde_json::{Value, json};

use super::{Inputs, Verdict, check};
use crate::export::parse_jsonl;
use crate::report::Report;
use crate::truth::{Step, Truth, step};
use crate::workloads::Workload;

pub const PARENT: u32 = 100;
pub const CHILD: u32 = 101;
pub const START: u64 = 0x7f12_3400_0000;
pub const PAGE: u64 = 4096;

pub fn addr(page: usize) -> u64 {
    START + page as u64 * PAGE
}

/// The parent's original pages.
pub fn orig(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| 1000 + i * 3).collect()
}

/// Fresh pages from a copy (a distinct series per `base`).
pub fn fresh(n: usize, base: u64) -> Vec<u64> {
    (0..n as u64).map(|i| base + i * 7).collect()
}

/// A recording: truth, events (one JSON object each), alerts.
pub struct Rec {
    pub truth: Truth,
    pub events: Vec<Value>,
    pub alerts: Vec<Value>,
    /// When set, replaces the report derived from the events.
    pub report_override: Option<Value>,
}

impl Rec {
    pub fn new(workload: Workload, n: usize, steps: Vec<Step>) -> Rec {
        Rec {
            truth: Truth {
                workload: workload.name().into(),
                kernel: "6.1.0-test".into(),
                page_size: PAGE,
                pages: n,
                start: START,
                end: addr(n),
                parent_pid: PARENT,
                child_pid: Some(CHILD),
                steps,
                pipe_shows_old_data: None,
                swapped_out: None,
                swap_references: None,
                large_folio: None,
            },
            events: Vec::new(),
            alerts: Vec::new(),
            report_override: None,
        }
    }

    pub fn report(&self) -> Value {
        self.report_override
            .clone()
            .unwrap_or_else(|| derive_report(&self.events, &self.alerts))
    }

    /// Runs the real check on the JSON forms.
    pub fn check(&self, workload: Workload) -> Verdict {
        let jsonl: String = self.events.iter().map(|e| format!("{e}\n")).collect();
        let events = parse_jsonl(&jsonl).expect("fixture events parse");
        let report = Report::parse(&self.report().to_string()).expect("fixture report parses");
        let truth: Truth =
            serde_json::from_str(&serde_json::to_string(&self.truth).unwrap()).unwrap();
        check(
            workload,
            &Inputs {
                truth: &truth,
                events: &events,
                report: &report,
            },
        )
    }

    pub fn remove_where(&mut self, pred: impl Fn(&Value) -> bool) -> usize {
        let before = self.events.len();
        self.events.retain(|e| !pred(e));
        before - self.events.len()
    }

    pub fn edit_first(&mut self, pred: impl Fn(&Value) -> bool, edit: impl FnOnce(&mut Value)) {
        let e = self
            .events
            .iter_mut()
            .find(|e| pred(e))
            .expect("an event to edit");
        edit(e);
    }
}

fn common(kind: &str, pid: u32) -> Value {
    json!({"type": kind, "time_ns": 1, "cpu": 0, "pid": pid, "tid": pid, "comm": "cow-scenarios",
           "mm": "0x1", "extra_future_field": {"x": 1}})
}

fn with(mut base: Value, fields: Value) -> Value {
    if let (Value::Object(b), Value::Object(f)) = (&mut base, fields) {
        b.extend(f);
    }
    base
}

#[expect(
    clippy::too_many_arguments,
    reason = "mirrors the event's fields, one per argument"
)]
pub fn cow(
    pid: u32,
    page: usize,
    fault: &str,
    pfn: u64,
    new_pfn: Option<u64>,
    decision: &str,
    refcount: i64,
    mapcount: i64,
) -> Value {
    with(
        common("cow_fault", pid),
        json!({
        "site": "wp", "fault": fault, "address": format!("{:#x}", addr(page)), "pfn": pfn,
        "new_pfn": new_pfn, "decision": decision, "shared_mapping": false, "ret": 0,
        "refcount": refcount, "mapcount": mapcount, "anon": true, "anon_exclusive": false,
        "ksm": false, "swapcache": false, "large": false, "page_valid": true}),
    )
}

pub fn gup(
    pid: u32,
    page: usize,
    pfn: u64,
    pin: bool,
    write: bool,
    longterm: bool,
    stack: &[&str],
) -> Value {
    with(
        common("gup", pid),
        json!({
        "path": "slow", "address": format!("{:#x}", addr(page)), "pfn": pfn, "refs": 1, "pin": pin,
        "write": write, "longterm": longterm, "force": false, "failed": false, "refcount": 1025,
        "mapcount": 1, "anon": true, "anon_exclusive": true, "stack": stack}),
    )
}

pub fn unpin(pid: u32, pfn: u64) -> Value {
    with(
        common("unpin", pid),
        json!({"pfn": pfn, "refs": 1, "pin": true, "refcount_before": 1025}),
    )
}

pub fn fork_copy(pid: u32, child: Option<u32>, page: usize, new_pfn: u64) -> Value {
    with(
        common("fork_copy", pid),
        json!({"child_pid": child, "child_mm": "0x2",
        "address": format!("{:#x}", addr(page)), "new_pfn": new_pfn}),
    )
}

pub fn fork(pid: u32, child: u32) -> Value {
    with(
        common("fork", pid),
        json!({"child_pid": child, "child_tid": child, "child_mm": "0x2"}),
    )
}

pub fn lost(count: u64) -> Value {
    with(
        common("lost", 0),
        json!({"hook": "wp_fault", "count": count, "dropped": count, "errors": 0}),
    )
}

pub fn alert(rule: &str, pid: u32, page: usize) -> Value {
    json!({"rule": rule, "severity": "warning", "pid": pid, "comm": "cow-scenarios",
           "address": format!("{:#x}", addr(page)), "pfn": 1, "holder": null, "count": 1,
           "suppressed": 0, "message": "m"})
}

/// The report a correct reporter derives: counted straight from the JSON.
fn derive_report(events: &[Value], alerts: &[Value]) -> Value {
    let mut pids: Vec<u64> = events
        .iter()
        .filter_map(|e| e["pid"].as_u64())
        .filter(|&p| p != 0)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    let count = |pid: u64, f: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .filter(|e| e["pid"].as_u64() == Some(pid) && f(e))
            .count()
    };
    let processes: Vec<Value> = pids
        .iter()
        .map(|&pid| {
            let cow = |fault: &'static str, dec: &'static str| {
                count(pid, &|e| {
                    e["type"] == "cow_fault" && e["fault"] == fault && e["decision"] == dec
                })
            };
            json!({"pid": pid, "comm": "cow-scenarios", "exited": false,
                "cow_copies": cow("write", "copy"), "cow_reuses": cow("write", "reuse"),
                "unshare_copies": cow("unshare", "copy"), "unshare_reuses": cow("unshare", "reuse"),
                "other_decisions": 0,
                "gup_pins": count(pid, &|e| e["type"] == "gup" && e["pin"] == true),
                "gup_gets": count(pid, &|e| e["type"] == "gup" && e["pin"] == false),
                "fork_pinned_copies": count(pid, &|e| e["type"] == "fork_copy"),
                "bytes_copied": 0, "decisions_by_site": {}})
        })
        .collect();
    let lost: u64 = events
        .iter()
        .filter(|e| e["type"] == "lost")
        .filter_map(|e| e["count"].as_u64())
        .sum();
    json!({"complete": lost == 0, "lost_events": lost, "events": events.len(),
           "processes": processes, "alerts": alerts})
}

pub fn fork_child_writes(n: usize, workload: Workload) -> Rec {
    let (p, c) = (orig(n), fresh(n, 5000));
    let mut rec = Rec::new(
        workload,
        n,
        vec![
            Step::measured(step::CHILD_WRITE, CHILD, p.clone(), c.clone()),
            Step::measured(step::PARENT_WRITE, PARENT, p.clone(), p.clone()),
        ],
    );
    rec.events.push(fork(PARENT, CHILD));
    for (i, (&old, &new)) in p.iter().zip(&c).enumerate() {
        rec.events
            .push(cow(CHILD, i, "write", old, Some(new), "copy", 2, 2));
    }
    for (i, &old) in p.iter().enumerate() {
        rec.events
            .push(cow(PARENT, i, "write", old, None, "reuse", 1, 1));
    }
    rec
}

/// `unshare`: the 5.19+ behaviour; else the 5.10 one.
pub fn ro_pin(n: usize, unshare: bool) -> Rec {
    let (p, u) = (orig(n), fresh(n, 7000));
    let (pin_after, write_after) = if unshare {
        (u.clone(), u.clone())
    } else {
        (p.clone(), u.clone())
    };
    let mut rec = Rec::new(
        Workload::RoPinAfterFork,
        n,
        vec![
            Step::measured(step::PIN, PARENT, p.clone(), pin_after.clone()),
            Step::measured(
                step::PARENT_WRITE,
                PARENT,
                pin_after.clone(),
                write_after.clone(),
            ),
        ],
    );
    rec.events.push(fork(PARENT, CHILD));
    for i in 0..n {
        if unshare {
            rec.events
                .push(cow(PARENT, i, "unshare", p[i], Some(u[i]), "copy", 2, 2));
        }
        rec.events.push(gup(
            PARENT,
            i,
            pin_after[i],
            true,
            false,
            false,
            &["pin_user_pages_remote+0x40"],
        ));
    }
    for i in 0..n {
        if unshare {
            rec.events
                .push(cow(PARENT, i, "write", u[i], None, "reuse", 1, 1));
        } else {
            rec.events
                .push(cow(PARENT, i, "write", p[i], Some(u[i]), "copy", 2, 2));
        }
        rec.events.push(unpin(PARENT, pin_after[i]));
    }
    if !unshare {
        rec.alerts.push(alert("unprotected-ro-pin", PARENT, 0));
    }
    rec
}

pub fn vmsplice(n: usize) -> Rec {
    let (p, w) = (orig(n), fresh(n, 9000));
    let mut rec = Rec::new(
        Workload::VmspliceThenWrite,
        n,
        vec![
            Step::measured(step::VMSPLICE, PARENT, p.clone(), p.clone()),
            Step::measured(step::PARENT_WRITE, PARENT, p.clone(), w.clone()),
        ],
    );
    rec.truth.pipe_shows_old_data = Some(true);
    rec.events.push(fork(PARENT, CHILD));
    for (i, &pfn) in p.iter().enumerate() {
        rec.events.push(gup(
            PARENT,
            i,
            pfn,
            false,
            false,
            false,
            &["iov_iter_get_pages2+0x10"],
        ));
    }
    for i in 0..n {
        rec.events
            .push(cow(PARENT, i, "write", p[i], Some(w[i]), "copy", 3, 2));
    }
    rec.alerts.push(alert("gup-ref-then-cow", PARENT, 1));
    rec
}

pub fn iouring(n: usize) -> Rec {
    let (p, c) = (orig(n), fresh(n, 11000));
    let mut rec = Rec::new(
        Workload::IouringPin,
        n,
        vec![
            Step::measured(step::REGISTER, PARENT, p.clone(), p.clone()),
            Step::measured(step::FORK, CHILD, p.clone(), c.clone()),
            Step::measured(step::PARENT_WRITE, PARENT, p.clone(), p.clone()),
            Step::measured(step::UNREGISTER, PARENT, p.clone(), p.clone()),
        ],
    );
    let stack = [
        "pin_user_pages_fast+0x2a",
        "io_sqe_buffer_register+0x1b0",
        "__io_uring_register+0x6e0",
    ];
    for (i, &pfn) in p.iter().enumerate() {
        rec.events
            .push(gup(PARENT, i, pfn, true, true, true, &stack));
    }
    rec.events.push(fork(PARENT, CHILD));
    for (i, &pfn) in c.iter().enumerate() {
        rec.events.push(fork_copy(PARENT, Some(CHILD), i, pfn));
    }
    for &pfn in &p {
        rec.events.push(unpin(PARENT, pfn));
    }
    rec.alerts.push(alert("fork-with-pins", PARENT, 0));
    rec
}

/// A swap-site event with its swap count.
pub fn swap_count(count: u32, event: Value) -> Value {
    with(event, json!({ "swap_count": count }))
}

/// A `cow` event at another site.
pub fn cow_at(site: &str, event: Value) -> Value {
    with(event, json!({ "site": site }))
}

/// An alert naming its holder.
pub fn alert_with_holder(rule: &str, pid: u32, page: usize, holder: u32, message: &str) -> Value {
    with(
        alert(rule, pid, page),
        json!({"severity": "critical", "holder": {"pid": holder, "comm": "cow-scenarios",
               "pin": false}, "message": message}),
    )
}

/// swap-private-write: every page swapped out, then reused in place at
/// the swap site on the page pagemap shows after the write.
pub fn swap_private(n: usize) -> Rec {
    let after = fresh(n, 5000);
    let mut rec = Rec::new(
        Workload::SwapPrivateWrite,
        n,
        vec![Step::measured(
            step::PARENT_WRITE,
            PARENT,
            vec![0; n],
            after.clone(),
        )],
    );
    rec.truth.child_pid = None;
    rec.truth.swapped_out = Some(n);
    rec.truth.swap_references = Some(1);
    for (i, &pfn) in after.iter().enumerate() {
        rec.events.push(swap_count(
            1,
            cow_at("swap", cow(PARENT, i, "write", pfn, None, "reuse", 1, 1)),
        ));
    }
    rec
}

/// vmsplice-swap-leak: the child's references, then the parent's swap-in
/// writes; `leaked` is the 5.10 outcome (reuse, the pipe shows new data),
/// otherwise the 5.19+ one (hand-over and copy, the pipe shows old data).
pub fn swap_leak(n: usize, leaked: bool) -> Rec {
    let (p, w) = (orig(n), fresh(n, 7000));
    let after = if leaked { p.clone() } else { w.clone() };
    let mut rec = Rec::new(
        Workload::VmspliceSwapLeak,
        n,
        vec![Step::measured(
            step::PARENT_WRITE,
            PARENT,
            vec![0; n],
            after,
        )],
    );
    rec.truth.swapped_out = Some(n);
    rec.truth.swap_references = Some(1);
    rec.truth.pipe_shows_old_data = Some(!leaked);
    rec.events.push(fork(PARENT, CHILD));
    for (i, &pfn) in p.iter().enumerate() {
        rec.events
            .push(gup(CHILD, i, pfn, false, false, false, &[]));
    }
    for i in 0..n {
        if leaked {
            rec.events.push(swap_count(
                1,
                cow_at("swap", cow(PARENT, i, "write", p[i], None, "reuse", 2, 1)),
            ));
        } else {
            rec.events.push(swap_count(
                1,
                cow_at("swap", cow(PARENT, i, "write", 0, None, "other", 3, 1)),
            ));
            rec.events
                .push(cow(PARENT, i, "write", p[i], Some(w[i]), "copy", 3, 1));
        }
    }
    if leaked {
        rec.alerts.push(alert_with_holder(
            "gup-ref-then-reuse",
            PARENT,
            0,
            CHILD,
            "reused by the swap-in (do_swap_page) path",
        ));
    }
    rec
}
