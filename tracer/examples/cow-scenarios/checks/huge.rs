//! Huge-page scenarios: `thp`-site decisions on a PMD-mapped THP (leak
//! shape) and `hugetlb`-site decisions on a MAP_HUGETLB page.

use super::iouring::{FORK_RULE, child_fork_copies, fork_copy_pages};
use super::swap::{LEAK_RULE, at_site, count};
use super::view::{cow_faults, gups, pages_grabbed};
use super::{Checker, Inputs};
use crate::export::Decision;
use crate::truth::{TruthError, step};

/// `gup-ref-then-reuse` fires exactly when the pipe shows the parent's
/// write; the decision is the whole THP's (reuse: no PFN changes) or a
/// split and per-page copies.
pub fn check_thp_leak(c: &mut Checker, inputs: &Inputs<'_>, child: u32) -> Result<(), TruthError> {
    let t = inputs.truth;
    let n = t.pages;
    let parent = inputs.parent();
    let write = t.step(step::PARENT_WRITE)?;
    let Some(old) = t.pipe_shows_old_data else {
        c.fail("workload: the pipe was not read back");
        return Ok(());
    };
    let faults = cow_faults(inputs.events, parent, t);
    let thp = at_site(&faults, "thp");
    let wp = at_site(&faults, "wp");
    let alerts: Vec<_> = inputs
        .report
        .alerts(LEAK_RULE)
        .filter(|a| a.pid == Some(parent) && a.address.is_some_and(|x| t.in_range(x)))
        .collect();
    c.note(format!(
        "measured: write changed {}/{n} pfns, pipe shows {} data; events: thp reuse {}, \
         thp other {}, wp copy {}, {LEAK_RULE} alerts {}",
        write.changed,
        if old { "old" } else { "new" },
        count(&thp, Decision::Reuse),
        count(&thp, Decision::Other),
        count(&wp, Decision::Copy),
        alerts.len()
    ));
    let gets = gups(inputs.events, child, t, &write.pfns_before)
        .into_iter()
        .filter(|g| !g.pin)
        .count();
    c.expect(gets > 0, || {
        "no FOLL_GET grab by the child on the THP".into()
    });
    if old {
        // Split and copied page by page, away from the pipe's pages.
        c.expect_eq("workload: pages copied by the write", write.changed, n);
        c.expect_eq("thp-site reuses", count(&thp, Decision::Reuse), 0);
        c.expect_eq("write-protect copies", count(&wp, Decision::Copy), n);
        let bad = wp
            .iter()
            .filter(|(_, f)| f.decision == Decision::Copy)
            .filter(|(i, f)| {
                f.pfn != write.pfns_before[*i] || f.new_pfn != Some(write.pfns_after[*i])
            })
            .count();
        c.expect_eq("copies not matching the measured pfns", bad, 0);
        // The PMD was split, not the folio: the pages copied from are
        // still part of the large folio.
        let small = wp
            .iter()
            .filter(|(_, f)| f.decision == Decision::Copy && f.large != Some(true))
            .count();
        c.expect_eq("copies from the split THP not marked large", small, 0);
        c.expect_eq(
            "leak alerts while the pipe kept the old data",
            alerts.len(),
            0,
        );
        return Ok(());
    }
    // The whole huge page reused in place: no pfn changed, one decision.
    c.expect_eq("workload: pages copied by the write", write.changed, 0);
    c.expect_eq("thp-site reuses", count(&thp, Decision::Reuse), 1);
    let head_ok = thp
        .iter()
        .filter(|(_, f)| f.decision == Decision::Reuse)
        .all(|(_, f)| f.pfn == write.pfns_before[0] && f.refcount.is_some());
    c.expect(head_ok, || {
        "thp reuse does not name the measured head pfn".into()
    });
    c.expect(!alerts.is_empty(), || {
        format!("no {LEAK_RULE} alert for pid {parent} although the pipe shows its write")
    });
    let named = alerts.iter().all(|a| {
        a.holder.as_ref().is_some_and(|h| h.pid == child)
            && a.message.contains("do_huge_pmd_wp_page")
    });
    c.expect(named, || {
        format!("{LEAK_RULE} alerts do not name holder pid {child} and the huge PMD path")
    });
    Ok(())
}

/// Mappings of the hugetlb page at the first write (parent and its child)
/// and at the second (the parent alone), as hugetlb-fork-write arranges.
const SHARED_MAPPINGS: i64 = 2;
const ALONE_MAPPINGS: i64 = 1;

/// The first hugetlb write (child still mapping the page) copies, the
/// second (parent alone) reuses: both as measured by pagemap, each with
/// the hugetlb folio's mapcount at the decision.
pub fn check_hugetlb(c: &mut Checker, inputs: &Inputs<'_>) -> Result<(), TruthError> {
    let t = inputs.truth;
    let shared = t.step(step::PARENT_WRITE)?;
    let alone = t.step(step::PARENT_WRITE_ALONE)?;
    let faults = cow_faults(inputs.events, inputs.parent(), t);
    let huge = at_site(&faults, "hugetlb");
    let decided: Vec<_> = huge
        .iter()
        .filter(|(_, f)| f.decision != Decision::Other)
        .collect();
    c.note(format!(
        "measured: shared write changed {}, alone write changed {}; events: hugetlb copy {}, \
         reuse {}, other {}",
        shared.changed,
        alone.changed,
        count(&huge, Decision::Copy),
        count(&huge, Decision::Reuse),
        count(&huge, Decision::Other)
    ));
    c.expect_eq("workload: shared write copied", shared.changed, 1);
    c.expect_eq("workload: lone write copied", alone.changed, 0);
    // 5.10's hugetlb_no_page runs hugetlb_cow on the first write of a
    // private page (a reuse, before the fork): only what follows the copy
    // belongs to the measured steps.
    let first_copy = decided
        .iter()
        .position(|(_, f)| f.decision == Decision::Copy);
    let Some(k) = first_copy else {
        c.fail("no hugetlb copy decision");
        return Ok(());
    };
    let before_fork = &decided[..k];
    c.expect(
        before_fork
            .iter()
            .all(|(_, f)| f.decision == Decision::Reuse),
        || "a hugetlb decision before the copy is not a reuse".into(),
    );
    c.expect_eq("hugetlb decisions from the copy on", decided.len() - k, 2);
    if let [(_, first), (_, second)] = &decided[k..] {
        c.expect(
            first.pfn == shared.pfns_before[0] && first.new_pfn == Some(shared.pfns_after[0]),
            || format!("hugetlb copy {first:?} is not the measured copy"),
        );
        c.expect(
            second.decision == Decision::Reuse && second.pfn == alone.pfns_after[0],
            || format!("second hugetlb decision {second:?} is not the measured reuse"),
        );
        // The mappings the workload arranged: its first child maps the
        // page through the first write; the second child has exited
        // before the second write.
        c.note(format!(
            "mapcount at the copy {:?}, at the reuse {:?}",
            first.mapcount, second.mapcount
        ));
        c.expect_eq(
            "hugetlb copy mapcount (parent and child map the page)",
            first.mapcount.unwrap_or(-1),
            SHARED_MAPPINGS,
        );
        c.expect_eq(
            "hugetlb reuse mapcount (the parent alone maps the page)",
            second.mapcount.unwrap_or(-1),
            ALONE_MAPPINGS,
        );
    }
    Ok(())
}

/// hugetlb-pin-fork: the child got a different pfn exactly when a hugetlb
/// fork copy names it (to that pfn), and `fork-with-pins` fires exactly
/// then; the long-term pin itself is seen.
pub fn check_hugetlb_pin_fork(
    c: &mut Checker,
    inputs: &Inputs<'_>,
    child: u32,
) -> Result<(), TruthError> {
    let t = inputs.truth;
    let parent = inputs.parent();
    let register = t.step(step::REGISTER)?;
    let fork = t.step(step::FORK)?;
    let copied = fork.changed == 1;
    let pins = gups(inputs.events, parent, t, &register.pfns_after)
        .into_iter()
        .filter(|g| g.pin && g.longterm);
    let pinned = pages_grabbed(pins, &register.pfns_after);
    let copies = child_fork_copies(inputs.events, child, t);
    let (copy_pages, bad) = fork_copy_pages(&copies, t, fork);
    let alerts = inputs
        .report
        .alerts(FORK_RULE)
        .filter(|a| a.pid == Some(parent) || a.pid == Some(child))
        .count();
    c.note(format!(
        "measured: child pfn {} the parent's; events: long-term pin on the page {}, hugetlb \
         fork copies {copy_pages}, {FORK_RULE} alerts {alerts}",
        if copied { "differs from" } else { "equals" },
        if pinned == 1 { "yes" } else { "no" },
    ));
    c.expect_eq(
        "workload: pages changed by registration",
        register.changed,
        0,
    );
    c.expect_eq("long-term pins on the measured pfn", pinned, 1);
    c.expect_eq("pages copied at fork (events)", copy_pages, fork.changed);
    c.expect_eq("fork copies inconsistent with the child's pfn", bad, 0);
    c.expect_eq(
        "fork-with-pins alerts (one exactly when copied)",
        alerts.min(1),
        usize::from(copied),
    );
    Ok(())
}
