//! PTE-mapped large folios after fork (pte-thp-fork-write,
//! mthp-fork-write): every write-protect decision agrees with the pfn
//! change pagemap measured, names a page of a large folio, and is taken at
//! the base-page site (`wp`): the PMD was split, so no `thp` decision.

use super::swap::{at_site, count};
use super::view::{cow_faults, verify_pages};
use super::{Checker, Inputs};
use crate::export::{Decision, FaultKind};
use crate::truth::{TruthError, step};

/// What the workload reports when the kernel has no multi-size THP knob.
const ABSENT: &str = "absent";
/// Multi-size THP (`hugepages-<size>kB`) was added in 6.8.
const MTHP_SINCE: (u32, u32) = (6, 8);

/// `major.minor` of a `uname -r` string.
fn version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// mthp-fork-write on a kernel without the knob: right only before 6.8.
pub fn check_absent(c: &mut Checker, inputs: &Inputs<'_>) -> Result<(), TruthError> {
    let t = inputs.truth;
    if t.large_folio.as_deref() != Some(ABSENT) {
        c.fail("truth names no child pid");
        return Ok(());
    }
    match version(&t.kernel) {
        Some(v) if v < MTHP_SINCE => c.not_applicable(format!(
            "kernel {} has no multi-size THP (hugepages-64kB absent, as before 6.8)",
            t.kernel
        )),
        _ => c.fail(format!(
            "kernel {} should offer multi-size THP but has no hugepages-64kB knob",
            t.kernel
        )),
    }
    Ok(())
}

pub fn check(c: &mut Checker, inputs: &Inputs<'_>) -> Result<(), TruthError> {
    let t = inputs.truth;
    let n = t.pages;
    let half = n / 2;
    let shared = t.step(step::PARENT_WRITE)?;
    let alone = t.step(step::PARENT_WRITE_ALONE)?;
    if let Ok(split) = t.step(step::SPLIT_PMD) {
        c.expect_eq("workload: pfns moved by the PMD split", split.changed, 0);
    }
    let faults = cow_faults(inputs.events, inputs.parent(), t);
    let wp = at_site(&faults, "wp");
    let thp = at_site(&faults, "thp");
    let (first, second): (Vec<_>, Vec<_>) = wp.iter().copied().partition(|(i, _)| *i < half);
    let shared_t = verify_pages(c, "shared write", &first, FaultKind::Write, shared);
    let alone_t = verify_pages(c, "lone write", &second, FaultKind::Write, alone);
    let small = wp
        .iter()
        .filter(|(_, f)| f.decision != Decision::Other && f.large != Some(true))
        .count();
    c.note(format!(
        "{}: measured shared write changed {}/{half}, lone write changed {}/{half}; events: \
         shared copies {}, lone copies {}, lone reuses {}, thp decisions {}",
        t.large_folio.as_deref().unwrap_or("?"),
        shared.changed,
        alone.changed,
        shared_t.copies,
        alone_t.copies,
        alone_t.reuses,
        thp.len()
    ));
    c.expect_eq(
        "workload: shared pages copied by the write",
        shared.changed,
        half,
    );
    c.expect_eq("shared write copies", shared_t.copies, shared.changed);
    c.expect_eq("lone write copies", alone_t.copies, alone.changed);
    c.expect_eq(
        "lone write reuses",
        alone_t.reuses,
        half - alone.changed.min(half),
    );
    c.expect_eq("decisions on pages not marked large", small, 0);
    c.expect_eq(
        "thp-site decisions on a PTE-mapped folio",
        count(&thp, Decision::Reuse) + count(&thp, Decision::Copy),
        0,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_releases() {
        assert_eq!(version("6.1.0-56-amd64"), Some((6, 1)));
        assert_eq!(version("6.12.117+deb12-amd64"), Some((6, 12)));
        assert_eq!(version("7.2.13+deb14-amd64"), Some((7, 2)));
        assert_eq!(version("5.10.0-46-amd64"), Some((5, 10)));
        assert_eq!(version("x"), None);
    }
}
