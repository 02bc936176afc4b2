//! iouring-pin: long-term write pins at registration (with an io_uring
//! stack), eager copies for the child at fork, no copy away from the pins
//! in the parent, unpins at unregister, and the fork-with-pins alert.

use std::collections::{HashMap, HashSet};

use super::view::{cow_faults, gups, pages_grabbed, verify_pages};
use super::{Checker, Inputs};
use crate::export::{Body, Event, FaultKind, ForkCopy, Gup};
use crate::truth::{Truth, TruthError, step};

pub const FORK_RULE: &str = "fork-with-pins";
pub const DIVERGENCE_RULE: &str = "pin-then-cow";

/// The stack shows io_uring's registration path.
pub fn io_uring_stack(g: &Gup) -> bool {
    g.stack.as_deref().unwrap_or_default().iter().any(|frame| {
        frame.starts_with("io_sqe_buffers_register")
            || frame.starts_with("io_pin_pages")
            || frame.contains("io_uring")
    })
}

pub fn check(c: &mut Checker, inputs: &Inputs<'_>, child: u32) -> Result<(), TruthError> {
    let t = inputs.truth;
    let n = t.pages;
    let parent = inputs.parent();
    let register = t.step(step::REGISTER)?;
    let fork = t.step(step::FORK)?;
    let write = t.step(step::PARENT_WRITE)?;
    let pinned = &register.pfns_after;
    c.note(format!(
        "measured: register changed {}/{n}, child got copies of {}/{n}, parent write changed {}/{n}",
        register.changed, fork.changed, write.changed
    ));
    c.expect_eq("workload: pages the child got copies of", fork.changed, n);
    c.expect_eq(
        "workload: pages changed by the parent's write",
        write.changed,
        0,
    );

    let grabs = gups(inputs.events, parent, t, pinned);
    let lt_pins: Vec<_> = grabs
        .iter()
        .copied()
        .filter(|g| g.pin && g.longterm && g.write)
        .collect();
    let with_stack: Vec<_> = lt_pins
        .iter()
        .copied()
        .filter(|g| io_uring_stack(g))
        .collect();
    let pages_pinned = pages_grabbed(lt_pins.iter().copied(), pinned);
    let pages_with_stack = pages_grabbed(with_stack.iter().copied(), pinned);

    let unpinned: HashSet<u64> = inputs
        .events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Unpin(u) if u.pin => Some(u.pfn),
            _ => None,
        })
        .collect();
    let pages_unpinned = pinned.iter().filter(|p| unpinned.contains(p)).count();

    let copies = child_fork_copies(inputs.events, child, t);
    let (copy_pages, bad_copies) = fork_copy_pages(&copies, t, fork);
    let parent_faults = cow_faults(inputs.events, parent, t);
    let wr = verify_pages(c, "parent write", &parent_faults, FaultKind::Write, write);
    c.note(format!(
        "events: long-term write pins on {pages_pinned}/{n} pages ({pages_with_stack} with an \
         io_uring stack), unpins {pages_unpinned}/{n}, fork copies {copy_pages}, parent copies {}",
        wr.copies
    ));
    c.expect_eq(
        "pages with a long-term write pin on the measured pfn",
        pages_pinned,
        n,
    );
    c.expect_eq(
        "pinned pages whose grab shows an io_uring stack",
        pages_with_stack,
        n,
    );
    c.expect_eq("pinned pages unpinned", pages_unpinned, n);
    c.expect_eq(
        "child pages copied at fork (events)",
        copy_pages,
        fork.changed,
    );
    c.expect_eq(
        "fork copies inconsistent with the child's pfns",
        bad_copies,
        0,
    );
    c.expect_eq("parent copies", wr.copies, write.changed);

    let report = inputs.report;
    let diverged = report.alerts(DIVERGENCE_RULE).count();
    c.expect_eq("pin-then-cow alerts", diverged, 0);
    let forked = report
        .alerts(FORK_RULE)
        .any(|a| a.pid == Some(parent) || a.pid == Some(child));
    c.expect(forked, || {
        format!("no {FORK_RULE} alert for pid {parent} or {child}")
    });
    Ok(())
}

/// Fork copies made for `child`: named by pid, or (when the tracer could
/// not join them) by the child's mm from the matching fork event.
pub(super) fn child_fork_copies<'a>(
    events: &'a [Event],
    child: u32,
    t: &Truth,
) -> Vec<&'a ForkCopy> {
    let child_mms: HashSet<u64> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Fork(f) if f.child_pid == child && f.child_mm != 0 => Some(f.child_mm),
            _ => None,
        })
        .collect();
    events
        .iter()
        .filter_map(|e| match &e.body {
            Body::ForkCopy(fc) => Some(fc),
            _ => None,
        })
        .filter(|fc| match fc.child_pid {
            Some(pid) => pid == child,
            None => child_mms.contains(&fc.child_mm),
        })
        .filter(|fc| t.in_range(fc.address))
        .collect()
}

/// Distinct buffer pages copied, and copies that disagree with the
/// measurement (a page the child shares with the parent, or a new pfn that
/// is not the child's).
pub(super) fn fork_copy_pages(
    copies: &[&ForkCopy],
    t: &Truth,
    fork: &crate::truth::Step,
) -> (usize, usize) {
    let mut per_page: HashMap<usize, usize> = HashMap::new();
    let mut bad = 0;
    for fc in copies {
        let Some(i) = t.page_of(fc.address) else {
            continue;
        };
        *per_page.entry(i).or_default() += 1;
        let (parent_pfn, child_pfn) = (fork.pfns_before[i], fork.pfns_after[i]);
        if parent_pfn == child_pfn || fc.new_pfn.is_some_and(|p| p != child_pfn) {
            bad += 1;
        }
    }
    bad += per_page.values().filter(|&&k| k > 1).count();
    (per_page.len(), bad)
}
