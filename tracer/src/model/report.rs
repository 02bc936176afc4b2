//! What the engine reports: a serializable snapshot (`Report`) and a small
//! status line (`Summary`). Field names are the JSON schema: keep them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::alert::{Alert, RuleId, ser_comm, ser_hex};
use super::event::{Comm, KernelCaps};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// False once any `Lost` marker was seen: counts are lower bounds.
    pub complete: bool,
    /// Records dropped or unreadable in the kernel (sum over `lost_by_hook`).
    pub lost_events: u64,
    pub kernel: KernelCaps,
    /// Events fed.
    pub events: u64,
    /// Events older than one already fed (disorder between CPUs). They are
    /// processed normally; the count says how much reordering was seen.
    pub out_of_order_events: u64,
    pub evictions: Evictions,
    /// Unpinned references the engine had no record of (pins from before
    /// the trace, or lost events).
    pub unmatched_unpins: u64,
    /// Ordinary decisions counted in the kernel instead of recorded
    /// (`watch --alerts-only`): in `decisions` and the per-process and
    /// per-site counts, not in mappings or reasons.
    pub counted_decisions: u64,
    /// Decision totals over all processes (kept when processes are evicted).
    pub decisions: DecisionTotals,
    /// Sorted by `cow_copies`, most first.
    pub processes: Vec<ProcessReport>,
    /// Hot address ranges, most copies first (at most `engine.report_mappings`).
    pub mappings: Vec<MappingReport>,
    /// Ranges not listed in `mappings`.
    pub mappings_omitted: u64,
    /// Decision reasons, most frequent first.
    pub reasons: Vec<ReasonCount>,
    /// Alerts in the order they were raised (after dedup).
    pub alerts: Vec<Alert>,
    /// Per rule: alerts emitted, repeats suppressed, occurrences allowed.
    pub alert_summary: Vec<RuleSummary>,
    pub lost_by_hook: BTreeMap<String, LostCounts>,
}

/// Entries dropped from the engine's bounded tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Evictions {
    pub pages: u64,
    /// Of `pages`, pages that still had pins or references recorded:
    /// alerts about them can no longer fire.
    pub pages_with_holders: u64,
    pub processes: u64,
    pub mapping_pages: u64,
    pub address_spaces: u64,
    /// Fork ranges dropped from address spaces with very many VMAs.
    pub fork_ranges: u64,
    pub alerts: u64,
    pub stacks: u64,
    /// Holder records merged away on pages with very many grabs.
    pub holders: u64,
}

impl Evictions {
    pub fn total(&self) -> u64 {
        self.pages
            + self.processes
            + self.mapping_pages
            + self.address_spaces
            + self.fork_ranges
            + self.alerts
            + self.stacks
            + self.holders
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DecisionTotals {
    pub cow_copies: u64,
    pub cow_reuses: u64,
    pub unshare_copies: u64,
    pub unshare_reuses: u64,
    /// Neither copy nor reuse (shared mappings, zero page, errors, retries).
    pub other: u64,
}

impl DecisionTotals {
    pub fn total(&self) -> u64 {
        self.cow_copies + self.cow_reuses + self.unshare_copies + self.unshare_reuses + self.other
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SiteCounts {
    pub copies: u64,
    pub reuses: u64,
    pub other: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    #[serde(serialize_with = "ser_comm")]
    pub comm: Comm,
    /// The process exited during the trace (its aggregates are kept).
    pub exited: bool,
    pub cow_copies: u64,
    pub cow_reuses: u64,
    pub unshare_copies: u64,
    pub unshare_reuses: u64,
    pub other_decisions: u64,
    /// Pages pinned (FOLL_PIN) / referenced (FOLL_GET) by successful grabs.
    pub gup_pins: u64,
    pub gup_gets: u64,
    /// Pinned pages a fork by this process copied eagerly for the child.
    pub fork_pinned_copies: u64,
    /// Copies (COW and unshare) times their page size.
    pub bytes_copied: u64,
    /// Site name (`wp`, `swap`, `thp`, `hugetlb`) -> counts; only sites seen.
    pub decisions_by_site: BTreeMap<&'static str, SiteCounts>,
}

/// A contiguous run of pages of one address space with decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MappingReport {
    /// The process that took the decisions (0 when only GUP was seen).
    pub pid: u32,
    #[serde(serialize_with = "ser_comm")]
    pub comm: Comm,
    pub mm: u64,
    #[serde(serialize_with = "ser_hex")]
    pub start: u64,
    /// Exclusive end.
    #[serde(serialize_with = "ser_hex")]
    pub end: u64,
    /// Pages with at least one decision.
    pub pages: u64,
    pub copies: u64,
    pub reuses: u64,
    pub unshares: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    /// `copy`, `reuse` or `other`.
    pub decision: &'static str,
    /// `write` or `unshare`.
    pub fault: &'static str,
    pub reason: &'static str,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleSummary {
    pub rule: RuleId,
    pub emitted: u64,
    pub suppressed: u64,
    /// Occurrences dropped by the comm allow-list.
    pub allowed: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LostCounts {
    pub dropped: u64,
    pub errors: u64,
    /// Trampoline programs the kernel skipped (see `Lost::skipped`).
    pub skipped: u64,
}

impl LostCounts {
    /// Adds what one `Lost` event carries.
    pub fn add(&mut self, l: &super::event::Lost) {
        self.dropped += l.dropped;
        self.errors += l.errors;
        self.skipped += l.skipped;
    }

    pub fn total(&self) -> u64 {
        self.dropped + self.errors + self.skipped
    }
}

/// Counters for a periodic one-line status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub events: u64,
    /// COW copies on write faults.
    pub copies: u64,
    /// Reuses on write faults.
    pub reuses: u64,
    /// Unshare faults (copy or reuse).
    pub unshares: u64,
    /// Pages pinned (FOLL_PIN).
    pub pins: u64,
    /// Alerts emitted (suppressed repeats not included).
    pub alerts: u64,
    pub lost: u64,
}

impl std::fmt::Display for Summary {
    /// One line for a periodic status: `events 1200 copies 30 ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "events {} copies {} reuses {} unshares {} pins {} alerts {} lost {}",
            self.events, self.copies, self.reuses, self.unshares, self.pins, self.alerts, self.lost
        )
    }
}
