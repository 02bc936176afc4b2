//! Checks common to every scenario: loss is reported (and only where it
//! may happen), and the report's per-process counters agree with the events
//! they were computed from.

use super::view::lost_total;
use super::{Checker, Inputs};
use crate::export::{Body, Decision, FaultKind};

/// No loss, except where `lossy` allows it; and the report says whether it
/// is complete consistently with the loss markers in the stream.
pub fn check_loss(c: &mut Checker, inputs: &Inputs<'_>, lossy: bool) {
    let lost = lost_total(inputs.events);
    let markers = inputs
        .events
        .iter()
        .filter(|e| matches!(e.body, Body::Lost(_)))
        .count();
    let report = inputs.report;
    if !lossy {
        c.expect_eq("lost records", lost, 0);
    }
    c.expect_eq(
        "report lost_events vs lost markers",
        report.lost_events,
        lost,
    );
    // A marker that counts nothing says nothing about completeness.
    if lost > 0 || markers == 0 {
        c.expect(report.complete == (lost == 0), || {
            format!(
                "report complete={} while {lost} records were lost",
                report.complete
            )
        });
    }
}

/// Event-derived counters of one process, to compare with its report entry.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    cow_copies: u64,
    cow_reuses: u64,
    unshare_copies: u64,
    unshare_reuses: u64,
    pin_events: u64,
    pin_pages: u64,
    get_events: u64,
    get_pages: u64,
    fork_copies: u64,
}

fn counts_of(inputs: &Inputs<'_>, pid: u32) -> Counts {
    let mut n = Counts::default();
    for e in inputs.events.iter().filter(|e| e.pid == pid) {
        match &e.body {
            Body::CowFault(f) => match (f.fault, f.decision) {
                (FaultKind::Write, Decision::Copy) => n.cow_copies += 1,
                (FaultKind::Write, Decision::Reuse) => n.cow_reuses += 1,
                (FaultKind::Unshare, Decision::Copy) => n.unshare_copies += 1,
                (FaultKind::Unshare, Decision::Reuse) => n.unshare_reuses += 1,
                _ => {}
            },
            Body::Gup(g) if !g.failed => {
                let refs = u64::from(g.refs.max(1));
                if g.pin {
                    n.pin_events += 1;
                    n.pin_pages += refs;
                } else {
                    n.get_events += 1;
                    n.get_pages += refs;
                }
            }
            Body::ForkCopy(_) => n.fork_copies += 1,
            _ => {}
        }
    }
    n
}

/// The report's counters of each of `pids` equal what the events show. GUP
/// counters may count pages (sum of `refs`) or grabs; both are accepted.
pub fn check_report_counters(c: &mut Checker, inputs: &Inputs<'_>, pids: &[u32]) {
    for &pid in pids {
        let n = counts_of(inputs, pid);
        let Some(p) = inputs.report.process(pid) else {
            c.expect(n == Counts::default(), || {
                format!("report has no entry for pid {pid}, which has events")
            });
            continue;
        };
        let label = |what: &str| format!("report pid {pid} {what} vs events");
        c.expect_eq(&label("cow_copies"), p.cow_copies, n.cow_copies);
        c.expect_eq(&label("cow_reuses"), p.cow_reuses, n.cow_reuses);
        c.expect_eq(&label("unshare_copies"), p.unshare_copies, n.unshare_copies);
        c.expect_eq(&label("unshare_reuses"), p.unshare_reuses, n.unshare_reuses);
        c.expect_eq(
            &label("fork_pinned_copies"),
            p.fork_pinned_copies,
            n.fork_copies,
        );
        c.expect(
            p.gup_pins == n.pin_pages || p.gup_pins == n.pin_events,
            || {
                format!(
                    "{}: {}, expected {} (pages) or {} (grabs)",
                    label("gup_pins"),
                    p.gup_pins,
                    n.pin_pages,
                    n.pin_events
                )
            },
        );
        c.expect(
            p.gup_gets == n.get_pages || p.gup_gets == n.get_events,
            || {
                format!(
                    "{}: {}, expected {} (pages) or {} (grabs)",
                    label("gup_gets"),
                    p.gup_gets,
                    n.get_pages,
                    n.get_events
                )
            },
        );
    }
}
