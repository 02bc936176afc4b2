//! The checks: pure functions from (ground truth, exported events, report)
//! to a verdict. No I/O here, so every rule is unit-tested on the host with
//! synthetic JSON (see `fixtures`).
//!
//! Events are attributed to a process by `pid` and to the buffer by
//! `address` in `[start, end)`; PFNs are compared page by page with what the
//! workload measured through pagemap.

mod counters;
#[cfg(test)]
mod fixtures;
mod fork_writes;
mod huge;
#[cfg(test)]
mod huge_tests;
mod iouring;
mod large;
mod plan;
mod ro_pin;
pub mod robust;
pub mod service;
mod swap;
#[cfg(test)]
mod swap_tests;
#[cfg(test)]
mod tests;
mod view;
mod vmsplice;

pub use plan::{check_plan, fault_mechanism};

use crate::export::Event;
use crate::report::Report;
use crate::truth::{Truth, TruthError};
use crate::workloads::Workload;

/// The outcome of one scenario's check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    /// The measured numbers, then the failures (short, one line).
    pub detail: String,
    /// The kernel verifiably lacks what the scenario is about: reported as
    /// not applicable, never counted as a pass.
    pub na: bool,
}

impl Verdict {
    pub fn failed(detail: impl Into<String>) -> Verdict {
        Verdict {
            ok: false,
            detail: detail.into(),
            na: false,
        }
    }

    pub fn passed(detail: impl Into<String>) -> Verdict {
        Verdict {
            ok: true,
            detail: detail.into(),
            na: false,
        }
    }
}

/// Collects what was seen (notes) and what was wrong (failures).
#[derive(Default)]
pub struct Checker {
    notes: Vec<String>,
    failures: Vec<String>,
    not_applicable: bool,
}

/// Failures beyond this many are only counted, to keep the line short.
const MAX_LISTED_FAILURES: usize = 6;

impl Checker {
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    pub fn fail(&mut self, text: impl Into<String>) {
        self.failures.push(text.into());
    }

    pub fn expect(&mut self, ok: bool, text: impl FnOnce() -> String) {
        if !ok {
            self.fail(text());
        }
    }

    pub fn expect_eq<T: PartialEq + std::fmt::Display>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.fail(format!("{what}: {got}, expected {want}"));
        }
    }

    pub fn finish(self) -> Verdict {
        let mut detail = self.notes.join("; ");
        if !self.failures.is_empty() {
            let listed: Vec<&str> = self
                .failures
                .iter()
                .take(MAX_LISTED_FAILURES)
                .map(String::as_str)
                .collect();
            detail.push_str(" | FAIL: ");
            detail.push_str(&listed.join("; "));
            if self.failures.len() > MAX_LISTED_FAILURES {
                detail.push_str(&format!(
                    " (+{} more)",
                    self.failures.len() - MAX_LISTED_FAILURES
                ));
            }
        }
        Verdict {
            ok: self.failures.is_empty(),
            na: self.not_applicable && self.failures.is_empty(),
            detail,
        }
    }

    /// The kernel lacks the feature the scenario is about (as the note
    /// says, and the caller verified).
    pub fn not_applicable(&mut self, note: impl Into<String>) {
        self.not_applicable = true;
        self.note(note);
    }
}

/// What one scenario's check looks at.
pub struct Inputs<'a> {
    pub truth: &'a Truth,
    pub events: &'a [Event],
    pub report: &'a Report,
}

impl Inputs<'_> {
    pub fn parent(&self) -> u32 {
        self.truth.parent_pid
    }
}

/// Checks one workload's recording against its ground truth.
pub fn check(workload: Workload, inputs: &Inputs<'_>) -> Verdict {
    let mut c = Checker::default();
    let truth = inputs.truth;
    if let Err(e) = truth.validate() {
        return Verdict::failed(e.to_string());
    }
    if truth.workload != workload.name() {
        return Verdict::failed(format!(
            "truth is for {:?}, not {}",
            truth.workload,
            workload.name()
        ));
    }
    // swap-private-write has no companion process; every other workload has one.
    let child = truth.child_pid;
    let scenario: Result<(), TruthError> = match (workload, child) {
        (Workload::SwapPrivateWrite, _) => swap::check_private(&mut c, inputs),
        // A kernel without multi-size THP has nothing to fork.
        (Workload::MthpForkWrite, None) => large::check_absent(&mut c, inputs),
        (_, None) => return Verdict::failed("truth names no child pid"),
        (Workload::SwapSharedWrite, Some(_)) => swap::check_shared(&mut c, inputs),
        (Workload::VmspliceSwapLeak, Some(ch)) => swap::check_leak(&mut c, inputs, ch),
        (Workload::ThpVmspliceLeak, Some(ch)) => huge::check_thp_leak(&mut c, inputs, ch),
        (Workload::HugetlbForkWrite, Some(_)) => huge::check_hugetlb(&mut c, inputs),
        (Workload::HugetlbPinFork, Some(ch)) => huge::check_hugetlb_pin_fork(&mut c, inputs, ch),
        (Workload::PteThpForkWrite | Workload::MthpForkWrite, Some(_)) => {
            large::check(&mut c, inputs)
        }
        (Workload::ForkChildWrites, Some(ch)) => fork_writes::check(&mut c, inputs, ch, false),
        (Workload::Overload, Some(ch)) => fork_writes::check(&mut c, inputs, ch, true),
        (Workload::RoPinAfterFork, Some(ch)) => ro_pin::check(&mut c, inputs, ch),
        (Workload::VmspliceThenWrite, Some(ch)) => vmsplice::check(&mut c, inputs, ch),
        (Workload::IouringPin, Some(ch)) => iouring::check(&mut c, inputs, ch),
    };
    if let Err(e) = scenario {
        c.fail(e.to_string());
    }
    counters::check_loss(&mut c, inputs, workload == Workload::Overload);
    let pids: Vec<u32> = std::iter::once(truth.parent_pid).chain(child).collect();
    counters::check_report_counters(&mut c, inputs, &pids);
    c.finish()
}

#[cfg(test)]
mod checker_tests {
    use super::*;

    #[test]
    fn checker_lists_failures_after_notes_and_caps_them() {
        let mut c = Checker::default();
        c.note("measured 16");
        c.expect_eq("copies", 3, 3);
        assert_eq!(c.finish(), Verdict::passed("measured 16"));

        let mut c = Checker::default();
        c.note("n");
        for i in 0..8 {
            c.expect_eq("x", i, 100);
        }
        let v = c.finish();
        assert!(!v.ok);
        assert!(v.detail.starts_with("n | FAIL: x: 0, expected 100"));
        assert!(v.detail.ends_with("(+2 more)"));
    }
}
