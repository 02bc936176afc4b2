//! vmsplice-then-write: copies while FOLL_GET references are outstanding,
//! with the extra reference visible in the page state, and the
//! `gup-ref-then-cow` alert.

use super::view::{cow_faults, gups, pages_grabbed, verify_pages};
use super::{Checker, Inputs};
use crate::export::{Decision, FaultKind};
use crate::truth::{TruthError, step};

pub const RULE: &str = "gup-ref-then-cow";

pub fn check(c: &mut Checker, inputs: &Inputs<'_>, child: u32) -> Result<(), TruthError> {
    let t = inputs.truth;
    let n = t.pages;
    let parent = inputs.parent();
    let splice = t.step(step::VMSPLICE)?;
    let write = t.step(step::PARENT_WRITE)?;
    let old = t.pipe_shows_old_data;
    c.note(format!(
        "measured: vmsplice changed {}/{n}, write copied {}/{n}, pipe old data {}",
        splice.changed,
        write.changed,
        old.map_or("unknown", |o| if o { "yes" } else { "no" })
    ));
    c.expect_eq("workload: pages changed by vmsplice", splice.changed, 0);
    c.expect_eq("workload: pages copied by the write", write.changed, n);
    c.expect(old == Some(true), || {
        "workload: the pipe did not show the old data".into()
    });

    let faults = cow_faults(inputs.events, parent, t);
    let wr = verify_pages(c, "parent write", &faults, FaultKind::Write, write);
    c.expect_eq("parent copy events", wr.copies, write.changed);
    let copies = faults
        .iter()
        .filter(|(_, f)| f.fault == FaultKind::Write && f.decision == Decision::Copy);
    let mut no_extra_ref = 0;
    for (_, f) in copies {
        match (f.refcount, f.mapcount) {
            // refcount >= mapcount + 1: one reference beyond the mappings'.
            (Some(r), Some(m)) if r > m => {}
            _ => no_extra_ref += 1,
        }
    }
    c.expect_eq("copies without refcount >= mapcount + 1", no_extra_ref, 0);

    // The references are taken on the pages as they were before the write.
    let grabs = gups(inputs.events, parent, t, &splice.pfns_after);
    let gets: Vec<_> = grabs.iter().copied().filter(|g| !g.pin).collect();
    let got = pages_grabbed(gets.iter().copied(), &splice.pfns_after);
    let pins = grabs.len() - gets.len();
    c.note(format!(
        "events: copy {}, gets {} on {got}/{n} pages, pins {pins}",
        wr.copies,
        gets.len()
    ));
    c.expect_eq(
        "pages with a FOLL_GET reference on the measured pfn",
        got,
        n,
    );
    c.expect_eq("FOLL_PIN grabs on the buffer", pins, 0);

    let alerted = inputs
        .report
        .alerts(RULE)
        .any(|a| a.pid == Some(parent) && a.address.is_some_and(|x| t.in_range(x)));
    c.expect(alerted, || {
        format!("no {RULE} alert for pid {parent} in the buffer")
    });
    c.expect_eq(
        "child decisions on the buffer",
        cow_faults(inputs.events, child, t).len(),
        0,
    );
    Ok(())
}
