//! Swap-in scenarios: the `swap`-site decisions against pagemap and, for
//! the leak shape, against what the pipe showed.

use super::view::{cow_faults, gups};
use super::{Checker, Inputs};
use crate::export::{CowFault, Decision, FaultKind};
use crate::truth::{TruthError, step};

pub const LEAK_RULE: &str = "gup-ref-then-reuse";

/// `pid`'s write decisions on the buffer at `site`, with the page index.
pub(super) fn at_site<'a>(
    faults: &[(usize, &'a CowFault)],
    site: &str,
) -> Vec<(usize, &'a CowFault)> {
    faults
        .iter()
        .filter(|(_, f)| f.site == site && f.fault == FaultKind::Write)
        .copied()
        .collect()
}

pub(super) fn count(faults: &[(usize, &CowFault)], d: Decision) -> usize {
    faults.iter().filter(|(_, f)| f.decision == d).count()
}

/// Every swap-site reuse names the page pagemap measured after the write,
/// with the page state read (mapcount, refcount).
fn reuses_match(c: &mut Checker, swap: &[(usize, &CowFault)], after: &[u64]) {
    let bad = swap
        .iter()
        .filter(|(_, f)| f.decision == Decision::Reuse)
        .filter(|(i, f)| f.pfn != after[*i] || f.refcount.is_none() || f.mapcount.is_none())
        .count();
    c.expect_eq("swap reuses not matching the measured pfn/state", bad, 0);
}

/// Every swap-site record shows the swap count the workload arranged: the
/// page-table references to the entry when the parent wrote.
fn swap_counts_match(c: &mut Checker, swap: &[(usize, &CowFault)], inputs: &Inputs<'_>) {
    let Some(want) = inputs.truth.swap_references else {
        c.fail("workload: no swap reference count in the truth");
        return;
    };
    let want = i64::from(want);
    let counts: Vec<Option<i64>> = swap.iter().map(|(_, f)| f.swap_count).collect();
    let shown = counts.iter().flatten().count();
    let wrong = counts
        .iter()
        .filter(|n| n.is_some_and(|n| n != want))
        .count();
    let first_wrong = counts.iter().flatten().find(|&&n| n != want);
    c.note(format!(
        "swap count {want} expected: shown on {shown}/{} swap records{}",
        swap.len(),
        first_wrong.map_or(String::new(), |n| format!(", e.g. {n}"))
    ));
    c.expect_eq("swap records without a swap count", swap.len() - shown, 0);
    c.expect_eq("swap records with another swap count", wrong, 0);
}

fn swapped_all(c: &mut Checker, inputs: &Inputs<'_>) -> usize {
    let n = inputs.truth.pages;
    let swapped = inputs.truth.swapped_out.unwrap_or(0);
    c.expect_eq("workload: pages swapped out before the write", swapped, n);
    swapped
}

/// Our own swapped-out pages: reused in place by the swap-in, on every line.
pub fn check_private(c: &mut Checker, inputs: &Inputs<'_>) -> Result<(), TruthError> {
    let t = inputs.truth;
    let n = t.pages;
    swapped_all(c, inputs);
    let write = t.step(step::PARENT_WRITE)?;
    let faults = cow_faults(inputs.events, inputs.parent(), t);
    let swap = at_site(&faults, "swap");
    let wp = at_site(&faults, "wp");
    c.note(format!(
        "events: swap reuse {}, swap other {}, wp decisions {}",
        count(&swap, Decision::Reuse),
        count(&swap, Decision::Other),
        wp.len()
    ));
    c.expect_eq("swap-site reuses", count(&swap, Decision::Reuse), n);
    c.expect_eq("write-protect decisions", wp.len(), 0);
    reuses_match(c, &swap, &write.pfns_after);
    swap_counts_match(c, &swap, inputs);
    Ok(())
}

/// Fork-shared swapped-out pages: handed over to do_wp_page, which copies
/// from the page the child then maps to the page the parent then maps.
pub fn check_shared(c: &mut Checker, inputs: &Inputs<'_>) -> Result<(), TruthError> {
    let t = inputs.truth;
    let n = t.pages;
    swapped_all(c, inputs);
    let write = t.step(step::PARENT_WRITE)?;
    let read = t.step(step::CHILD_READ)?;
    let diverged = write
        .pfns_after
        .iter()
        .zip(&read.pfns_after)
        .filter(|(a, b)| a != b)
        .count();
    c.note(format!(
        "measured: parent and child pfns differ on {diverged}/{n}"
    ));
    c.expect_eq("workload: pages the parent no longer shares", diverged, n);
    let faults = cow_faults(inputs.events, inputs.parent(), t);
    let swap = at_site(&faults, "swap");
    let wp = at_site(&faults, "wp");
    c.note(format!(
        "events: swap reuse {}, swap handed over {}, wp copy {}",
        count(&swap, Decision::Reuse),
        count(&swap, Decision::Other),
        count(&wp, Decision::Copy)
    ));
    c.expect_eq("swap-site reuses", count(&swap, Decision::Reuse), 0);
    c.expect_eq("swap-site hand-overs", count(&swap, Decision::Other), n);
    c.expect_eq("write-protect copies", count(&wp, Decision::Copy), n);
    swap_counts_match(c, &swap, inputs);
    let bad = wp
        .iter()
        .filter(|(_, f)| f.decision == Decision::Copy)
        .filter(|(i, f)| f.pfn != read.pfns_after[*i] || f.new_pfn != Some(write.pfns_after[*i]))
        .count();
    c.expect_eq(
        "copies not from the child's pfn to the parent's measured pfn",
        bad,
        0,
    );
    Ok(())
}

/// The leak shape: `gup-ref-then-reuse` fires exactly when the pipe shows
/// the parent's new data.
pub fn check_leak(c: &mut Checker, inputs: &Inputs<'_>, child: u32) -> Result<(), TruthError> {
    let t = inputs.truth;
    let n = t.pages;
    let parent = inputs.parent();
    let write = t.step(step::PARENT_WRITE)?;
    let Some(old) = t.pipe_shows_old_data else {
        c.fail("workload: the pipe was not read back");
        return Ok(());
    };
    let swapped = t.swapped_out.unwrap_or(0);
    let faults = cow_faults(inputs.events, parent, t);
    let swap = at_site(&faults, "swap");
    let reuses = count(&swap, Decision::Reuse);
    let alerts: Vec<_> = inputs
        .report
        .alerts(LEAK_RULE)
        .filter(|a| a.pid == Some(parent) && a.address.is_some_and(|x| t.in_range(x)))
        .collect();
    c.note(format!(
        "measured: swapped {swapped}/{n}, pipe shows {} data; events: swap reuse {reuses}, \
         {LEAK_RULE} alerts {}",
        if old { "old" } else { "new" },
        alerts.len()
    ));
    // The child's references on the pages before they were paged out.
    let gets = gups(inputs.events, child, t, &[])
        .into_iter()
        .filter(|g| !g.pin)
        .count();
    c.expect(gets > 0, || {
        "no FOLL_GET grab by the child on the buffer".into()
    });
    swap_counts_match(c, &swap, inputs);
    if old {
        c.expect_eq(
            "leak alerts while the pipe kept the old data",
            alerts.len(),
            0,
        );
        c.expect_eq(
            "swap-site reuses while the pipe kept the old data",
            reuses,
            0,
        );
        return Ok(());
    }
    // The holder sees the write: the swap-in reused the pipe's pages.
    c.expect_eq("workload: pages swapped out", swapped, n);
    c.expect_eq("swap-site reuses", reuses, n);
    reuses_match(c, &swap, &write.pfns_after);
    c.expect(!alerts.is_empty(), || {
        format!("no {LEAK_RULE} alert for pid {parent} although the pipe shows its write")
    });
    let named = alerts.iter().all(|a| {
        a.holder.as_ref().is_some_and(|h| h.pid == child) && a.message.contains("do_swap_page")
    });
    c.expect(named, || {
        format!("{LEAK_RULE} alerts do not name holder pid {child} and the swap-in path")
    });
    Ok(())
}
