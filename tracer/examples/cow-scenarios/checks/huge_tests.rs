//! The hugetlb and large-folio checks on synthetic recordings: pass when
//! the tracer agrees with the measured outcome, fail when one thing is
//! broken (a mapcount, a missing or invented fork copy, a decision that
//! disagrees with pagemap).

use serde_json::Value;

use super::fixtures::*;
use crate::truth::{Step, step};
use crate::workloads::Workload;

fn verdict(rec: &Rec, w: Workload) -> (bool, String) {
    let v = rec.check(w);
    (v.ok, v.detail)
}

fn hugetlb(event: Value) -> Value {
    cow_at("hugetlb", event)
}

/// hugetlb-fork-write: copy while the child maps the page (mapcount 2),
/// reuse alone (mapcount 1).
fn hugetlb_fork() -> Rec {
    let (p, c) = (orig(1), fresh(1, 9000));
    let mut rec = Rec::new(
        Workload::HugetlbForkWrite,
        1,
        vec![
            Step::measured(step::PARENT_WRITE, PARENT, p.clone(), c.clone()),
            Step::measured(step::PARENT_WRITE_ALONE, PARENT, c.clone(), c.clone()),
        ],
    );
    rec.events.push(hugetlb(cow(
        PARENT,
        0,
        "write",
        p[0],
        Some(c[0]),
        "copy",
        3,
        2,
    )));
    rec.events
        .push(hugetlb(cow(PARENT, 0, "write", c[0], None, "reuse", 1, 1)));
    rec
}

#[test]
fn hugetlb_mapcounts_must_be_the_mappings_the_workload_arranged() {
    let (ok, d) = verdict(&hugetlb_fork(), Workload::HugetlbForkWrite);
    assert!(ok, "{d}");
    // The head page's own _mapcount (hugetlb never sets it) would read 0.
    let mut rec = hugetlb_fork();
    rec.edit_first(|e| e["decision"] == "copy", |e| e["mapcount"] = 0.into());
    let (ok, d) = verdict(&rec, Workload::HugetlbForkWrite);
    assert!(!ok && d.contains("hugetlb copy mapcount"), "{d}");
    let mut rec = hugetlb_fork();
    rec.edit_first(|e| e["decision"] == "reuse", |e| e["mapcount"] = 2.into());
    let (ok, d) = verdict(&rec, Workload::HugetlbForkWrite);
    assert!(!ok && d.contains("hugetlb reuse mapcount"), "{d}");
}

/// hugetlb-pin-fork: the pin, then (when `copied`) the eager copy for the
/// child and the fork-with-pins alert.
fn hugetlb_pin_fork(copied: bool) -> Rec {
    let p = orig(1);
    let child = if copied { fresh(1, 13000) } else { p.clone() };
    let mut rec = Rec::new(
        Workload::HugetlbPinFork,
        1,
        vec![
            Step::measured(step::REGISTER, PARENT, p.clone(), p.clone()),
            Step::measured(step::FORK, CHILD, p.clone(), child.clone()),
        ],
    );
    rec.events.push(gup(
        PARENT,
        0,
        p[0],
        true,
        true,
        true,
        &["io_pin_pages+0x1"],
    ));
    rec.events.push(fork(PARENT, CHILD));
    if copied {
        rec.events.push(fork_copy(PARENT, Some(CHILD), 0, child[0]));
        rec.alerts.push(alert("fork-with-pins", PARENT, 0));
    }
    rec
}

#[test]
fn hugetlb_fork_copy_is_reported_exactly_when_the_child_got_a_new_pfn() {
    for copied in [true, false] {
        let (ok, d) = verdict(&hugetlb_pin_fork(copied), Workload::HugetlbPinFork);
        assert!(ok, "copied {copied}: {d}");
    }
    // Copied (new pfn in the child) but no event.
    let mut rec = hugetlb_pin_fork(true);
    rec.remove_where(|e| e["type"] == "fork_copy");
    let (ok, d) = verdict(&rec, Workload::HugetlbPinFork);
    assert!(
        !ok && d.contains("pages copied at fork (events): 0, expected 1"),
        "{d}"
    );
    // Shared (same pfn) but an event claims a copy.
    let mut rec = hugetlb_pin_fork(false);
    rec.events.push(fork_copy(PARENT, Some(CHILD), 0, 777));
    let (ok, d) = verdict(&rec, Workload::HugetlbPinFork);
    assert!(
        !ok && d.contains("pages copied at fork (events): 1, expected 0"),
        "{d}"
    );
    // Copied, but the event names another page than the child's.
    let mut rec = hugetlb_pin_fork(true);
    rec.edit_first(|e| e["type"] == "fork_copy", |e| e["new_pfn"] = 5.into());
    let (ok, d) = verdict(&rec, Workload::HugetlbPinFork);
    assert!(
        !ok && d.contains("inconsistent with the child's pfn"),
        "{d}"
    );
    // Copied without the alert.
    let mut rec = hugetlb_pin_fork(true);
    rec.alerts.clear();
    let (ok, d) = verdict(&rec, Workload::HugetlbPinFork);
    assert!(!ok && d.contains("fork-with-pins alerts"), "{d}");
    // No pin seen.
    let mut rec = hugetlb_pin_fork(false);
    rec.remove_where(|e| e["type"] == "gup");
    let (ok, d) = verdict(&rec, Workload::HugetlbPinFork);
    assert!(!ok && d.contains("long-term pins"), "{d}");
}

/// A large-folio workload: the first half copied while shared, the second
/// half reused (`reused`) or copied alone.
fn large_fork(workload: Workload, reused: bool) -> Rec {
    let n = 8;
    let half = n / 2;
    let p = orig(n);
    let shared_after: Vec<u64> = (0..n)
        .map(|i| if i < half { 20_000 + i as u64 } else { p[i] })
        .collect();
    let alone_after: Vec<u64> = (0..n)
        .map(|i| {
            if i < half || reused {
                shared_after[i]
            } else {
                30_000 + i as u64
            }
        })
        .collect();
    let mut rec = Rec::new(
        workload,
        n,
        vec![
            Step::measured(step::PARENT_WRITE, PARENT, p.clone(), shared_after.clone()),
            Step::measured(
                step::PARENT_WRITE_ALONE,
                PARENT,
                shared_after.clone(),
                alone_after.clone(),
            ),
        ],
    );
    rec.truth.large_folio = Some("mthp-64k".into());
    let large = |e: Value| {
        let mut e = e;
        e["large"] = true.into();
        e
    };
    for i in 0..half {
        rec.events.push(large(cow(
            PARENT,
            i,
            "write",
            p[i],
            Some(shared_after[i]),
            "copy",
            17,
            2,
        )));
    }
    for i in half..n {
        let e = if reused {
            cow(PARENT, i, "write", p[i], None, "reuse", 4, 4)
        } else {
            cow(PARENT, i, "write", p[i], Some(alone_after[i]), "copy", 5, 4)
        };
        rec.events.push(large(e));
    }
    rec
}

#[test]
fn large_folio_decisions_follow_the_measured_pfns_whichever_the_kernel_took() {
    for w in [Workload::MthpForkWrite, Workload::PteThpForkWrite] {
        for reused in [true, false] {
            let (ok, d) = verdict(&large_fork(w, reused), w);
            assert!(ok, "{w:?} reused {reused}: {d}");
        }
    }
    let w = Workload::MthpForkWrite;
    // A reuse reported where pagemap saw a new pfn.
    let mut rec = large_fork(w, false);
    rec.edit_first(
        |e| e["address"] == format!("{:#x}", addr(6)).as_str(),
        |e| {
            e["decision"] = "reuse".into();
            e["new_pfn"] = Value::Null;
        },
    );
    let (ok, d) = verdict(&rec, w);
    assert!(!ok && d.contains("lone write"), "{d}");
    // A decision on a page not marked large.
    let mut rec = large_fork(w, true);
    rec.edit_first(|e| e["decision"] == "reuse", |e| e["large"] = false.into());
    let (ok, d) = verdict(&rec, w);
    assert!(!ok && d.contains("not marked large"), "{d}");
    // A PMD-level decision: the folio was not PTE-mapped.
    let mut rec = large_fork(w, true);
    rec.edit_first(|e| e["decision"] == "reuse", |e| e["site"] = "thp".into());
    let (ok, d) = verdict(&rec, w);
    assert!(!ok && d.contains("thp-site decisions"), "{d}");
}

#[test]
fn missing_multi_size_thp_is_right_only_before_6_8() {
    let mut rec = Rec::new(Workload::MthpForkWrite, 1, vec![]);
    rec.truth.child_pid = None;
    rec.truth.large_folio = Some("absent".into());
    rec.truth.kernel = "6.1.0-56-amd64".into();
    let (ok, d) = verdict(&rec, Workload::MthpForkWrite);
    assert!(ok && d.contains("no multi-size THP"), "{d}");
    rec.truth.kernel = "6.12.117+deb12-amd64".into();
    let (ok, d) = verdict(&rec, Workload::MthpForkWrite);
    assert!(!ok && d.contains("should offer multi-size THP"), "{d}");
    // Without the workload saying so, a missing child is still an error.
    rec.truth.large_folio = None;
    let (ok, _) = verdict(&rec, Workload::MthpForkWrite);
    assert!(!ok);
}
