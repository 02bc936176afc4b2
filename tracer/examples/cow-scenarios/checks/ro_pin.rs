//! ro-pin-after-fork: which of the two kernel behaviours the workload
//! measured decides what the events must show: unshare copies at pin time
//! (5.19+) or write copies later (before 5.19, with an alert).

use super::view::{cow_faults, gups, pages_grabbed, verify_pages};
use super::{Checker, Inputs};
use crate::export::FaultKind;
use crate::truth::{TruthError, step};

pub const RULE: &str = "unprotected-ro-pin";

pub fn check(c: &mut Checker, inputs: &Inputs<'_>, child: u32) -> Result<(), TruthError> {
    let t = inputs.truth;
    let n = t.pages;
    let parent = inputs.parent();
    let pin = t.step(step::PIN)?;
    let write = t.step(step::PARENT_WRITE)?;
    let unshared = pin.changed == n && write.changed == 0;
    let copied_late = pin.changed == 0 && write.changed == n;
    c.note(format!(
        "measured: pin copied {}/{n}, later write copied {}/{n} ({})",
        pin.changed,
        write.changed,
        if unshared {
            "unshare at pin"
        } else if copied_late {
            "copy at write"
        } else {
            "mixed"
        }
    ));
    c.expect(unshared || copied_late, || {
        "workload: expected all pages copied at pin or all at the write".into()
    });

    let faults = cow_faults(inputs.events, parent, t);
    let un = verify_pages(c, "parent unshare", &faults, FaultKind::Unshare, pin);
    let wr = verify_pages(c, "parent write", &faults, FaultKind::Write, write);
    let unshare_events = faults
        .iter()
        .filter(|(_, f)| f.fault == FaultKind::Unshare)
        .count();
    c.expect_eq("parent unshare copies", un.copies, pin.changed);
    c.expect_eq("parent write copies", wr.copies, write.changed);
    if copied_late {
        c.expect_eq("unshare events (kernel did not unshare)", unshare_events, 0);
    }

    // The pin lands on the page mapped after the pin step either way.
    let grabs = gups(inputs.events, parent, t, &pin.pfns_after);
    let ro_pins: Vec<_> = grabs
        .iter()
        .copied()
        .filter(|g| g.pin && !g.write)
        .collect();
    let pinned = pages_grabbed(ro_pins.iter().copied(), &pin.pfns_after);
    let write_pins = grabs.iter().filter(|g| g.pin && g.write).count();
    c.note(format!(
        "events: unshare copy {}, write copy {} reuse {}, ro pins {} on {pinned}/{n} pages",
        un.copies,
        wr.copies,
        wr.reuses,
        ro_pins.len()
    ));
    c.expect_eq("pages with a read-only pin on the measured pfn", pinned, n);
    c.expect_eq("write pins on the buffer", write_pins, 0);

    let alerted = inputs.report.alerts(RULE).any(|a| a.pid == Some(parent));
    c.expect(alerted == copied_late, || {
        format!(
            "{RULE} alert {} but the kernel {}",
            if alerted { "raised" } else { "missing" },
            if copied_late {
                "did not unshare"
            } else {
                "unshared"
            }
        )
    });
    c.expect_eq(
        "child decisions on the buffer",
        cow_faults(inputs.events, child, t).len(),
        0,
    );
    Ok(())
}
