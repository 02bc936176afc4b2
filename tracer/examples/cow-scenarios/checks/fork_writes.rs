//! fork-child-writes and overload: the child's copies, page by page, and
//! the parent's reuses once the child has gone.

use super::view::{cow_faults, lost_total, verify_pages};
use super::{Checker, Inputs};
use crate::export::FaultKind;
use crate::truth::{TruthError, step};

pub fn check(
    c: &mut Checker,
    inputs: &Inputs<'_>,
    child: u32,
    overload: bool,
) -> Result<(), TruthError> {
    let t = inputs.truth;
    let n = t.pages;
    let cw = t.step(step::CHILD_WRITE)?;
    let pw = t.step(step::PARENT_WRITE)?;
    c.note(format!(
        "measured: child copied {}/{n}, parent changed {}/{n}",
        cw.changed, pw.changed
    ));
    // The workload must have done what the scenario is about.
    c.expect(cw.pid == child && pw.pid == inputs.parent(), || {
        "truth steps name the wrong pids".into()
    });
    c.expect_eq("workload: child pages changed", cw.changed, n);
    c.expect_eq("workload: parent pages changed", pw.changed, 0);

    let child_t = verify_pages(
        c,
        "child",
        &cow_faults(inputs.events, child, t),
        FaultKind::Write,
        cw,
    );
    let parent_faults = cow_faults(inputs.events, inputs.parent(), t);
    let parent_t = verify_pages(c, "parent", &parent_faults, FaultKind::Write, pw);
    c.note(format!(
        "events: child copy {} reuse {}, parent copy {} reuse {}",
        child_t.copies, child_t.reuses, parent_t.copies, parent_t.reuses
    ));

    let lost = lost_total(inputs.events);
    if overload {
        c.note(format!("lost {lost}"));
    }
    if overload && lost > 0 {
        // Loss was reported: fewer events are fine, invented ones are not.
        c.expect(child_t.copies <= cw.changed, || {
            format!(
                "child copies: {} events for {} measured",
                child_t.copies, cw.changed
            )
        });
        c.expect(parent_t.copies <= pw.changed, || {
            format!(
                "parent copies: {} events for {} measured",
                parent_t.copies, pw.changed
            )
        });
        return Ok(());
    }
    if overload && child_t.copies < cw.changed {
        c.fail(format!(
            "{} of {} child copies missing without any lost count",
            cw.changed - child_t.copies,
            cw.changed
        ));
        return Ok(());
    }
    c.expect_eq("child copy events", child_t.copies, cw.changed);
    c.expect_eq("child reuse events", child_t.reuses, n - cw.changed);
    c.expect_eq("parent copy events", parent_t.copies, pw.changed);
    c.expect_eq("parent reuse events", parent_t.reuses, n - pw.changed);
    let parent_unshares = parent_faults
        .iter()
        .filter(|(_, f)| f.fault == FaultKind::Unshare)
        .count();
    c.expect_eq("parent unshare events", parent_unshares, 0);
    Ok(())
}
