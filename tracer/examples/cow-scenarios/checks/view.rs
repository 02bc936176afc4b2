//! Selections over the event stream shared by the scenario checks, and the
//! page-by-page comparison of COW decisions with measured PFNs.

use std::collections::HashSet;

use super::Checker;
use crate::export::{Body, CowFault, Decision, Event, FaultKind, Gup};
use crate::truth::{Step, Truth};

/// `pid`'s COW decisions on the buffer, with the page index.
pub fn cow_faults<'a>(events: &'a [Event], pid: u32, truth: &Truth) -> Vec<(usize, &'a CowFault)> {
    events
        .iter()
        .filter(|e| e.pid == pid)
        .filter_map(|e| match &e.body {
            Body::CowFault(f) => truth.page_of(f.address).map(|i| (i, f)),
            _ => None,
        })
        .collect()
}

/// `pid`'s successful grabs on the buffer. A grab without a user address
/// (the tracer could not tell it) counts when its pfn is one of `pfns`.
pub fn gups<'a>(events: &'a [Event], pid: u32, truth: &Truth, pfns: &[u64]) -> Vec<&'a Gup> {
    events
        .iter()
        .filter(|e| e.pid == pid)
        .filter_map(|e| match &e.body {
            Body::Gup(g) if !g.failed => Some(g),
            _ => None,
        })
        .filter(|g| truth.in_range(g.address) || (g.address == 0 && pfns.contains(&g.pfn)))
        .collect()
}

/// Pages (indices into `pfns`) for which some grab in `grabs` took `pfns[i]`.
pub fn pages_grabbed<'a>(grabs: impl IntoIterator<Item = &'a Gup>, pfns: &[u64]) -> usize {
    let taken: HashSet<u64> = grabs.into_iter().map(|g| g.pfn).collect();
    pfns.iter().filter(|p| taken.contains(p)).count()
}

/// Decisions of one kind on the buffer, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub copies: usize,
    pub reuses: usize,
    pub other: usize,
}

/// Counts `kind` decisions and checks each against the measured step: a
/// copy must go from the measured PFN before to the measured PFN after, on
/// a page that did change, once per page; a reuse must be on a page that
/// kept its PFN. Any disagreement is a failure (counts are the caller's).
pub fn verify_pages(
    c: &mut Checker,
    who: &str,
    faults: &[(usize, &CowFault)],
    kind: FaultKind,
    step: &Step,
) -> Tally {
    let mut tally = Tally::default();
    let mut copied = vec![0usize; step.pfns_before.len()];
    let mut bad = Vec::new();
    for &(i, f) in faults.iter().filter(|(_, f)| f.fault == kind) {
        let (before, after) = (step.pfns_before[i], step.pfns_after[i]);
        match f.decision {
            Decision::Copy => {
                tally.copies += 1;
                copied[i] += 1;
                if before == after {
                    bad.push(format!(
                        "page {i}: copy reported but its PFN stayed {before}"
                    ));
                } else if f.pfn != before || f.new_pfn != Some(after) {
                    bad.push(format!(
                        "page {i}: copy {}->{} but measured {before}->{after}",
                        f.pfn,
                        f.new_pfn.map_or("null".to_string(), |p| p.to_string())
                    ));
                }
            }
            Decision::Reuse => {
                tally.reuses += 1;
                if before != after {
                    bad.push(format!(
                        "page {i}: reuse reported but its PFN changed {before}->{after}"
                    ));
                } else if f.pfn != before {
                    bad.push(format!(
                        "page {i}: reuse of pfn {} but measured {before}",
                        f.pfn
                    ));
                }
            }
            Decision::Other | Decision::Unknown => tally.other += 1,
        }
    }
    let twice = copied.iter().filter(|&&n| n > 1).count();
    if twice > 0 {
        bad.push(format!("{twice} pages copied more than once"));
    }
    if let Some(first) = bad.first() {
        c.fail(format!(
            "{who}: {} inconsistent events, e.g. {first}",
            bad.len()
        ));
    }
    tally
}

/// Lost records over the whole stream.
pub fn lost_total(events: &[Event]) -> u64 {
    events
        .iter()
        .map(|e| match &e.body {
            Body::Lost(l) => l.total(),
            _ => 0,
        })
        .sum()
}
