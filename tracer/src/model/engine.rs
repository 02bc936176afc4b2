//! The correlation engine: decoded events in, per-page state, aggregates,
//! alerts and reports out. Pure and synchronous: time comes only from the
//! events, so a live stream and a replayed trace give the same report.
//!
//! Events are expected in time order; small disorder between CPUs is
//! tolerated (time differences saturate, windows accept late events) and
//! counted (`out_of_order_events`).
//!
//! Memory is bounded by the caps in `[engine]` (see `default-config.toml`);
//! evictions are counted in the report.
//!
//! State:
//! * per pfn (`pages`): outstanding FOLL_PIN / FOLL_GET grabs with holder
//!   task, mm, address, stack and time, and the last known mapping. Only
//!   pages with GUP history have a record. Pins end at unpin events; GET
//!   references (released by the inlined `put_page`) end when a later
//!   event's refcount has no room for them (`PageRec::prune_gets`).
//! * per (mm, virtual page) (`maps`): counts, the page mapped there, and
//!   the last write decision (for the pre-5.19 write-protection heuristic).
//! * per mm: private ranges write-protected by a fork, with the fork time.
//! * per pid: aggregates; exited processes keep them.
//!
//! Rules (texts in `rules`):
//! * `pin-then-cow` / `gup-ref-then-cow`: a Copy of a page with an
//!   outstanding pin / reference taken through the same address space. A
//!   copy in *another* mm (a fork child writing) leaves the holder's mm on
//!   the page it holds: COW working as intended, no alert.
//! * `gup-ref-then-reuse`: a Reuse while a grab by another pid, or through
//!   another mm, is outstanding: the holder observes the write.
//! * `unprotected-ro-pin`: a read-only pin of an anonymous page that is
//!   not exclusive: 5.19+ by PageAnonExclusive; before, by mapcount > 1 or
//!   a fork that write-protected the address after the last write seen.
//! * `fork-with-pins`: `ForkCopy` events, one alert per (parent, child mm).
//! * `cow-storm`: more copies (write + unshare) per process in a 1 s window
//!   of event time than `cow_storm.copies_per_sec`.
//!
//! Dedup key: (rule, pid, mm, 2 MiB region of the address); for
//! `fork-with-pins` the child mm, for `cow-storm` the whole process.

use std::collections::BTreeMap;

use super::alert::{Alert, DEDUP_REGION_SHIFT, DedupKey, RuleId};
use super::alerts::AlertStore;
use super::bounded::{BoundedMap, Evicted};
use super::config::Config;
use super::event::*;
use super::pages::{HolderRec, PIN_BIAS, PageRec};
use super::reason::{self, Reason, Semantics};
use super::report::*;
use super::rules::{self, FaultFacts, Unprotected};

/// `VM_SHARED` in `vm_flags` (include/linux/mm.h; 0x8 on every line).
const VM_SHARED: u64 = 0x0000_0008;
/// Fork ranges remembered per address space (newest kept).
const MAX_FORK_RANGES_PER_MM: usize = 256;
/// `Engine::feed_batch` prefetches the slots of the event this many
/// places ahead: far enough for a miss to resolve while the events between
/// are processed, near enough that the line is still cached when used.
const PREFETCH_AHEAD: usize = 8;
/// cow-storm measures copies in windows of this much event time.
const STORM_WINDOW_NS: u64 = 1_000_000_000;

#[derive(Clone, Copy, Default)]
struct ProcCounters {
    cow_copies: u64,
    cow_reuses: u64,
    unshare_copies: u64,
    unshare_reuses: u64,
    other: u64,
    gup_pins: u64,
    gup_gets: u64,
    fork_pinned_copies: u64,
    bytes_copied: u64,
}

impl ProcCounters {
    fn active(&self) -> bool {
        self.cow_copies
            + self.cow_reuses
            + self.unshare_copies
            + self.unshare_reuses
            + self.other
            + self.gup_pins
            + self.gup_gets
            + self.fork_pinned_copies
            > 0
    }
}

struct ProcRec {
    comm: Comm,
    exited: bool,
    c: ProcCounters,
    /// Indexed by `site_index`.
    sites: [SiteCounts; 4],
    storm_start: u64,
    storm_copies: u64,
    storm_fired: bool,
}

impl ProcRec {
    fn new(comm: Comm) -> Self {
        ProcRec {
            comm,
            exited: false,
            c: ProcCounters::default(),
            sites: [SiteCounts::default(); 4],
            storm_start: 0,
            storm_copies: 0,
            storm_fired: false,
        }
    }
}

/// One virtual page of one address space.
#[derive(Clone, Copy)]
struct MapPage {
    /// Task that took the last decision here (0: only GUP seen).
    pid: u32,
    /// Page mapped here as far as we know (0: unknown).
    pfn: u64,
    /// Pages this entry covers (PMD-mapped THP / hugetlb: many).
    span: u32,
    copies: u32,
    reuses: u32,
    unshares: u32,
    /// Last time a decision left the PTE writable (write fault);
    /// `NEVER` if none was seen.
    last_write_ns: u64,
}

impl Default for MapPage {
    fn default() -> Self {
        MapPage {
            pid: 0,
            pfn: 0,
            span: 0,
            copies: 0,
            reuses: 0,
            unshares: 0,
            last_write_ns: NEVER,
        }
    }
}

/// `MapPage::last_write_ns` when no write was seen.
const NEVER: u64 = u64::MAX;

#[derive(Clone, Copy)]
struct ForkRange {
    start: u64,
    end: u64,
    time_ns: u64,
}

const SITES: [(Site, &str); 4] = [
    (Site::Wp, "wp"),
    (Site::Swap, "swap"),
    (Site::Thp, "thp"),
    (Site::Hugetlb, "hugetlb"),
];

fn site_index(s: Site) -> usize {
    match s {
        Site::Wp => 0,
        Site::Swap => 1,
        Site::Thp => 2,
        Site::Hugetlb => 3,
    }
}

const DECISIONS: [(Decision, &str); 3] = [
    (Decision::Copy, "copy"),
    (Decision::Reuse, "reuse"),
    (Decision::Other, "other"),
];
const FAULTS: [(FaultKind, &str); 2] =
    [(FaultKind::Write, "write"), (FaultKind::Unshare, "unshare")];

fn reason_slot(d: Decision, f: FaultKind, r: Reason) -> usize {
    let d = match d {
        Decision::Copy => 0,
        Decision::Reuse => 1,
        Decision::Other => 2,
    };
    let f = match f {
        FaultKind::Write => 0,
        FaultKind::Unshare => 1,
    };
    (d * 2 + f) * Reason::COUNT + r.index()
}

/// See the module documentation.
pub struct Engine {
    config: Config,
    caps: KernelCaps,
    sem: Semantics,
    page_size: u64,
    /// log2(page_size) when it is a power of two (always, in practice):
    /// page numbers by shift, not by a division per event.
    page_shift: Option<u32>,
    pages: BoundedMap<u64, PageRec>,
    procs: BoundedMap<u32, ProcRec>,
    maps: BoundedMap<(u64, u64), MapPage>,
    forks: BoundedMap<u64, Vec<ForkRange>>,
    stacks: BoundedMap<u32, Vec<String>>,
    alerts: AlertStore,
    events: u64,
    out_of_order: u64,
    max_time: u64,
    complete: bool,
    lost_events: u64,
    lost_by_hook: BTreeMap<String, LostCounts>,
    unmatched_unpins: u64,
    /// Lean mode: decisions counted in the kernel (see [`Engine::counted`]).
    counted_decisions: u64,
    totals: DecisionTotals,
    pins_total: u64,
    reasons: Vec<u64>,
    evictions: Evictions,
}

impl Engine {
    pub fn new(config: Config, caps: KernelCaps) -> Self {
        let e = &config.engine;
        let page_size = if caps.page_size == 0 {
            4096
        } else {
            caps.page_size
        };
        Engine {
            sem: Semantics::from_caps(caps.anon_exclusive),
            page_size,
            page_shift: page_size
                .is_power_of_two()
                .then(|| page_size.trailing_zeros()),
            pages: BoundedMap::new(e.max_pages),
            procs: BoundedMap::new(e.max_processes),
            maps: BoundedMap::new(e.max_mapping_pages),
            forks: BoundedMap::new(e.max_processes),
            stacks: BoundedMap::new(e.max_stacks),
            alerts: AlertStore::new(e.max_alerts),
            events: 0,
            out_of_order: 0,
            max_time: 0,
            complete: true,
            lost_events: 0,
            lost_by_hook: BTreeMap::new(),
            unmatched_unpins: 0,
            counted_decisions: 0,
            totals: DecisionTotals::default(),
            pins_total: 0,
            reasons: vec![0; 6 * Reason::COUNT],
            evictions: Evictions::default(),
            config,
            caps,
        }
    }

    /// Hot reload: rules, thresholds, allow-lists and caps change; state is
    /// kept (a smaller cap applies at the next insert into that table).
    pub fn set_config(&mut self, config: Config) {
        let e = &config.engine;
        self.pages.set_cap(e.max_pages);
        self.procs.set_cap(e.max_processes);
        self.maps.set_cap(e.max_mapping_pages);
        self.forks.set_cap(e.max_processes);
        self.stacks.set_cap(e.max_stacks);
        self.alerts.set_cap(e.max_alerts);
        self.config = config;
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Consumes one event; alerts it raised (after dedup) are appended to
    /// `alerts`.
    pub fn feed(&mut self, ev: &Event, alerts: &mut Vec<Alert>) {
        self.events += 1;
        if ev.time_ns < self.max_time {
            self.out_of_order += 1;
        } else {
            self.max_time = ev.time_ns;
        }
        match &ev.body {
            Body::CowFault(f) => self.on_fault(ev, f, alerts),
            Body::Gup(g) => self.on_gup(ev, g, alerts),
            Body::Unpin(u) => self.on_unpin(u),
            Body::ForkVma(v) => self.on_fork_vma(ev, v),
            Body::ForkCopy(c) => self.on_fork_copy(ev, c, alerts),
            Body::TaskFork(t) => self.on_task_fork(ev, t),
            Body::TaskExit => {
                if ev.task.pid == ev.task.tid
                    && let Some(p) = self.procs.get_mut(&ev.task.pid)
                {
                    p.exited = true;
                }
            }
            Body::Lost(l) => self.on_lost(l),
            Body::StackDef(s) => {
                let mut ev_count = Evicted::default();
                let slot = self
                    .stacks
                    .get_or_insert_with(s.id, Vec::new, |_| 0, &mut ev_count);
                slot.clone_from(&s.frames);
                self.evictions.stacks += ev_count.entries;
            }
        }
    }

    /// Consumes a batch of events in order: the same state and alerts as
    /// `feed` on each, faster on big tables. While one event is processed,
    /// the table slots of the event `PREFETCH_AHEAD` places later are
    /// already being loaded, so the batch overlaps its cache misses (the
    /// per-page tables are far larger than the caches: a miss per event is
    /// what bounds `feed`).
    pub fn feed_batch(&mut self, evs: &[Event], alerts: &mut Vec<Alert>) {
        for (i, ev) in evs.iter().enumerate() {
            if let Some(ahead) = evs.get(i + PREFETCH_AHEAD) {
                self.prefetch(ahead);
            }
            self.feed(ev, alerts);
        }
    }

    /// Starts loading the table slots `ev` will look up. A hint only.
    fn prefetch(&self, ev: &Event) {
        match &ev.body {
            Body::CowFault(f) => {
                self.maps.prefetch(&(ev.mm, self.fault_vpn(f)));
                self.pages.prefetch(&f.pfn);
            }
            Body::Gup(g) => {
                self.pages.prefetch(&g.pfn);
                if g.pin && g.address != 0 {
                    self.maps.prefetch(&(ev.mm, self.vpn(g.address)));
                }
            }
            Body::Unpin(u) => self.pages.prefetch(&u.pfn),
            _ => {}
        }
    }

    /// The virtual page number of `address`.
    #[inline]
    fn vpn(&self, address: u64) -> u64 {
        match self.page_shift {
            Some(shift) => address >> shift,
            None => address / self.page_size,
        }
    }

    /// The page of the (mm, page) table a fault's decision is counted on:
    /// a PMD-mapped THP or hugetlb decision on its huge page's first page.
    #[inline]
    fn fault_vpn(&self, f: &CowFault) -> u64 {
        if matches!(f.site, Site::Thp | Site::Hugetlb) {
            self.vpn(f.address & !(self.huge_size() - 1))
        } else {
            self.vpn(f.address)
        }
    }

    fn proc_mut(&mut self, task: &Task) -> &mut ProcRec {
        proc_in(&mut self.procs, &mut self.evictions, task)
    }

    fn page_mut(&mut self, pfn: u64, mm: u64, address: u64) -> &mut PageRec {
        let mut ev = Evicted::default();
        let p = self.pages.get_or_insert_with(
            pfn,
            || PageRec::new(mm, address),
            PageRec::keep_priority,
            &mut ev,
        );
        self.evictions.pages += ev.entries;
        self.evictions.pages_with_holders += ev.precious;
        p
    }

    fn map_mut(&mut self, mm: u64, vpn: u64) -> &mut MapPage {
        let mut ev = Evicted::default();
        let m = self
            .maps
            .get_or_insert_with((mm, vpn), MapPage::default, |_| 0, &mut ev);
        self.evictions.mapping_pages += ev.entries;
        m
    }

    /// PMD size: what a PMD-mapped THP or a default hugetlb page covers
    /// (a page table page holds page_size / 8 entries).
    fn huge_size(&self) -> u64 {
        self.page_size * (self.page_size / 8)
    }

    fn decision_size(&self, site: Site) -> u64 {
        match site {
            Site::Wp | Site::Swap => self.page_size,
            // hugetlb pages may be larger (1 GiB); events do not say, so the
            // default huge page size is assumed.
            Site::Thp | Site::Hugetlb => self.huge_size(),
        }
    }

    fn on_fault(&mut self, ev: &Event, f: &CowFault, alerts: &mut Vec<Alert>) {
        let reason = reason::classify(self.sem, f);
        self.reasons[reason_slot(f.decision, f.fault, reason)] += 1;
        let now = ev.time_ns;
        let is_copy = f.decision == Decision::Copy;
        self.tally(
            Origin::of(ev),
            f.site,
            f.fault,
            f.decision,
            1,
            (f.address, f.pfn),
            alerts,
        );

        // Mapping aggregates (by virtual page of this mm).
        let huge = matches!(f.site, Site::Thp | Site::Hugetlb);
        let vpn = self.fault_vpn(f);
        let span = if huge {
            (self.huge_size() / self.page_size) as u32
        } else {
            1
        };
        {
            let m = self.map_mut(ev.mm, vpn);
            m.pid = ev.task.pid;
            m.span = span;
            match (f.fault, f.decision) {
                (FaultKind::Write, Decision::Copy) => m.copies = m.copies.saturating_add(1),
                (FaultKind::Write, Decision::Reuse) => m.reuses = m.reuses.saturating_add(1),
                (FaultKind::Unshare, Decision::Copy | Decision::Reuse) => {
                    m.unshares = m.unshares.saturating_add(1)
                }
                (_, Decision::Other) => {}
            }
            match f.decision {
                Decision::Copy => m.pfn = f.new_pfn.unwrap_or(0),
                Decision::Reuse => m.pfn = f.pfn,
                Decision::Other => {}
            }
            // A write fault that copied or reused leaves the PTE writable;
            // an unshare leaves it read-only.
            if f.fault == FaultKind::Write && f.decision != Decision::Other {
                m.last_write_ns = now;
            }
        }

        if f.decision == Decision::Other {
            return;
        }

        // Holders of the page the decision was about, after dropping the
        // references its reported refcount no longer accounts for.
        let facts = FaultFacts {
            task: &ev.task,
            site: SITES[site_index(f.site)].1,
            fault: f.fault,
            address: f.address,
            pfn: f.pfn,
            new_pfn: f.new_pfn,
            now,
        };
        let mut pin_holder = None;
        let mut get_holder = None;
        let mut foreign_holder = None;
        // One lookup serves the rules and the record's update after the
        // decision (`raise` below does not touch page records).
        let mut forget_page = false;
        if let Some(page) = self.pages.get_mut(&f.pfn) {
            prune(page, &f.page);
            let same_mm = |h: &HolderRec| h.mm == ev.mm || h.mm == 0 || ev.mm == 0;
            if is_copy {
                // A copy in another address space (a fork child writing)
                // leaves the holder's own mapping on the page it holds:
                // that is COW working, not a divergence.
                pin_holder = page.holders.iter().find(|h| h.pin && same_mm(h)).cloned();
                get_holder = page.holders.iter().find(|h| !h.pin && same_mm(h)).cloned();
                // The old page left this mapping. Without holders nothing
                // about it matters any more.
                forget_page = !page.has_holders();
            } else {
                foreign_holder = page
                    .holders
                    .iter()
                    .find(|h| h.pid != ev.task.pid || !same_mm(h))
                    .cloned();
                page.mm = ev.mm;
                page.address = f.address;
            }
        }
        // Only pages with GUP history have a record (created by `on_gup`):
        // keeping every faulted page would cost a cache miss per event for
        // no rule; the (mm, page) table above records what every mapping
        // maps.
        if forget_page {
            self.pages.remove(&f.pfn);
        }
        let region = f.address >> DEDUP_REGION_SHIFT;
        let key = |rule| DedupKey {
            rule,
            pid: ev.task.pid,
            mm: ev.mm,
            range: region,
        };
        if let Some(h) = pin_holder {
            let excl = self.caps.anon_exclusive;
            self.raise(
                key(RuleId::PinThenCow),
                Origin::of(ev),
                f.address,
                f.pfn,
                || rules::pin_then_cow(&facts, &h, excl),
                Some(&h),
                alerts,
            );
        }
        if let Some(h) = get_holder {
            self.raise(
                key(RuleId::GupRefThenCow),
                Origin::of(ev),
                f.address,
                f.pfn,
                || rules::gup_ref_then_cow(&facts, &h),
                Some(&h),
                alerts,
            );
        }
        if let Some(h) = foreign_holder {
            self.raise(
                key(RuleId::GupRefThenReuse),
                Origin::of(ev),
                f.address,
                f.pfn,
                || rules::gup_ref_then_reuse(&facts, &h, reason.as_str()),
                Some(&h),
                alerts,
            );
        }
    }

    fn on_gup(&mut self, ev: &Event, g: &Gup, alerts: &mut Vec<Alert>) {
        {
            let p = self.proc_mut(&ev.task);
            if !g.failed {
                if g.pin {
                    p.c.gup_pins += u64::from(g.refs);
                } else {
                    p.c.gup_gets += u64::from(g.refs);
                }
            }
        }
        if g.pin && !g.failed {
            self.pins_total += u64::from(g.refs);
        }
        let now = ev.time_ns;
        let address = if g.address != 0 {
            g.address
        } else {
            self.pages.get(&g.pfn).map_or(0, |p| p.address)
        };
        if !g.failed {
            let holder = HolderRec {
                pid: ev.task.pid,
                comm: ev.task.comm,
                mm: ev.mm,
                address,
                stack: g.stack,
                time_ns: now,
                refs: g.refs.max(1),
                pin: g.pin,
                write: g.write,
            };
            let merged;
            {
                let page = self.page_mut(g.pfn, ev.mm, address);
                if page.address == 0 {
                    page.mm = ev.mm;
                    page.address = address;
                }
                merged = page.add_holder(holder);
                prune(page, &g.page);
            }
            self.evictions.holders += merged;
            if g.pin && address != 0 {
                // Remember where the pinned page is mapped, for fork copies.
                let vpn = self.vpn(address);
                let m = self.map_mut(ev.mm, vpn);
                m.pfn = g.pfn;
                if m.span == 0 {
                    m.span = 1;
                }
            }
        } else if let Some(page) = self.pages.get_mut(&g.pfn) {
            prune(page, &g.page);
        }

        // unprotected-ro-pin
        if !(g.pin && !g.write && !g.failed && g.page.valid && g.page.anon) {
            return;
        }
        let why = if self.caps.anon_exclusive {
            // 5.19+: gup_must_unshare() forces an unshare fault before a
            // read-only pin of a non-exclusive anonymous page, so the page
            // is exclusive after the grab unless something skipped it.
            (g.page.anon_exclusive == Some(false)).then_some(Unprotected::NotExclusive)
        } else if g.page.mapcount > 1 {
            Some(Unprotected::Mapped(g.page.mapcount))
        } else {
            self.fork_protected(ev.mm, address)
                .map(|fork_ns| Unprotected::ForkProtected { fork_ns })
        };
        if let Some(why) = why {
            let task = ev.task;
            let holder = HolderRec {
                pid: ev.task.pid,
                comm: ev.task.comm,
                mm: ev.mm,
                address,
                stack: g.stack,
                time_ns: now,
                refs: g.refs,
                pin: true,
                write: false,
            };
            self.raise(
                DedupKey {
                    rule: RuleId::UnprotectedRoPin,
                    pid: ev.task.pid,
                    mm: ev.mm,
                    range: address >> DEDUP_REGION_SHIFT,
                },
                Origin::of(ev),
                address,
                g.pfn,
                || rules::unprotected_ro_pin(&task, g, address, &why),
                Some(&holder),
                alerts,
            );
        }
    }

    /// Before 5.19 a read-only pin does not make the PTE writable: a page
    /// write-protected by a fork stays so until the next write fault. The
    /// page at (mm, address) is taken to be write-protected when a fork of
    /// a private range covering it happened after the last write decision
    /// we saw there. Returns the fork's time.
    fn fork_protected(&self, mm: u64, address: u64) -> Option<u64> {
        if address == 0 {
            return None;
        }
        let ranges = self.forks.get(&mm)?;
        let fork_ns = ranges
            .iter()
            .filter(|r| r.start <= address && address < r.end)
            .map(|r| r.time_ns)
            .max()?;
        let vpn = self.vpn(address);
        let last_write = self.maps.get(&(mm, vpn)).map_or(NEVER, |m| m.last_write_ns);
        if last_write != NEVER && last_write >= fork_ns {
            None
        } else {
            Some(fork_ns)
        }
    }

    fn on_unpin(&mut self, u: &Unpin) {
        let matched = self
            .pages
            .get_mut(&u.pfn)
            .map_or(0, |p| p.release(u.pin, u.refs));
        self.unmatched_unpins += u64::from(u.refs - matched);
    }

    fn on_fork_vma(&mut self, ev: &Event, v: &ForkVma) {
        if v.vm_flags & VM_SHARED != 0 || v.end <= v.start {
            return;
        }
        // COW write-protects the range in both the parent and the child.
        for mm in [ev.mm, v.child_mm] {
            let mut evc = Evicted::default();
            let ranges = self.forks.get_or_insert_with(mm, Vec::new, |_| 0, &mut evc);
            if let Some(r) = ranges
                .iter_mut()
                .find(|r| r.start == v.start && r.end == v.end)
            {
                r.time_ns = r.time_ns.max(ev.time_ns);
            } else {
                if ranges.len() >= MAX_FORK_RANGES_PER_MM {
                    ranges.remove(0);
                    self.evictions.fork_ranges += 1;
                }
                ranges.push(ForkRange {
                    start: v.start,
                    end: v.end,
                    time_ns: ev.time_ns,
                });
            }
            self.evictions.address_spaces += evc.entries;
        }
    }

    fn on_fork_copy(&mut self, ev: &Event, c: &ForkCopy, alerts: &mut Vec<Alert>) {
        self.proc_mut(&ev.task).c.fork_pinned_copies += 1;
        let vpn = self.vpn(c.address);
        let pfn = self.maps.get(&(ev.mm, vpn)).map_or(0, |m| m.pfn);
        let holder = self
            .pages
            .get(&pfn)
            .and_then(|p| p.holders.iter().find(|h| h.pin).cloned());
        let task = ev.task;
        let child = c.child_pid;
        self.raise(
            DedupKey {
                rule: RuleId::ForkWithPins,
                pid: ev.task.pid,
                mm: ev.mm,
                range: c.child_mm,
            },
            Origin::of(ev),
            c.address,
            pfn,
            || rules::fork_with_pins(&task, child, c.address, holder.as_ref()),
            holder.as_ref(),
            alerts,
        );
        // The child maps its own copy, writable.
        if let Some(n) = c.new_pfn {
            let m = self.map_mut(c.child_mm, vpn);
            m.pfn = n;
            m.pid = c.child_pid.unwrap_or(0);
            m.span = m.span.max(1);
            m.last_write_ns = ev.time_ns;
        }
    }

    fn on_task_fork(&mut self, ev: &Event, t: &TaskFork) {
        let child = Task {
            pid: t.child_pid,
            tid: t.child_tid,
            comm: ev.task.comm,
        };
        let p = self.proc_mut(&child);
        p.exited = false;
    }

    fn on_lost(&mut self, l: &Lost) {
        self.complete = false;
        self.lost_events += l.total();
        match self.lost_by_hook.get_mut(l.hook.as_str()) {
            Some(c) => c.add(l),
            None => {
                let mut c = LostCounts::default();
                c.add(l);
                self.lost_by_hook.insert(l.hook.clone(), c);
            }
        }
    }

    /// Counts `n` decisions of one kind into the per-process, per-site and
    /// total aggregates and the cow-storm rate; `(address, pfn)` of the
    /// decision for the alert (zeros for counted ones).
    #[allow(clippy::too_many_arguments)]
    fn tally(
        &mut self,
        o: Origin,
        site: Site,
        fault: FaultKind,
        decision: Decision,
        n: u64,
        (address, pfn): (u64, u64),
        alerts: &mut Vec<Alert>,
    ) {
        let size = self.decision_size(site);
        let threshold = self.config.cow_storm.copies_per_sec;
        let now = o.time_ns;

        // Aggregates.
        let p = proc_in(&mut self.procs, &mut self.evictions, &o.task);
        let t = &mut self.totals;
        let site = &mut p.sites[site_index(site)];
        let is_copy = decision == Decision::Copy;
        match (fault, decision) {
            (FaultKind::Write, Decision::Copy) => {
                t.cow_copies += n;
                p.c.cow_copies += n;
            }
            (FaultKind::Write, Decision::Reuse) => {
                t.cow_reuses += n;
                p.c.cow_reuses += n;
            }
            (FaultKind::Unshare, Decision::Copy) => {
                t.unshare_copies += n;
                p.c.unshare_copies += n;
            }
            (FaultKind::Unshare, Decision::Reuse) => {
                t.unshare_reuses += n;
                p.c.unshare_reuses += n;
            }
            (_, Decision::Other) => {
                t.other += n;
                p.c.other += n;
            }
        }
        match decision {
            Decision::Copy => site.copies += n,
            Decision::Reuse => site.reuses += n,
            Decision::Other => site.other += n,
        }
        let mut storm = None;
        if is_copy {
            p.c.bytes_copied += size * n;
            // Fixed 1 s windows of event time starting at the first copy;
            // late (out-of-order) copies count into the current window.
            if now >= p.storm_start.saturating_add(STORM_WINDOW_NS) || p.storm_copies == 0 {
                p.storm_start = now;
                p.storm_copies = 0;
                p.storm_fired = false;
            }
            p.storm_copies += n;
            if !p.storm_fired && p.storm_copies as f64 > threshold {
                p.storm_fired = true;
                storm = Some(p.storm_copies);
            }
        }
        if let Some(copies) = storm {
            let msg_task = o.task;
            self.raise(
                DedupKey {
                    rule: RuleId::CowStorm,
                    pid: o.task.pid,
                    mm: o.mm,
                    range: 0,
                },
                o,
                address,
                pfn,
                || rules::cow_storm(&msg_task, copies, threshold),
                None,
                alerts,
            );
        }
    }

    /// Lean mode: `c.count` ordinary write-fault decisions that the kernel
    /// side counted for `task` instead of recording them (see
    /// `tracer_common::counts`). They feed the per-process and per-site
    /// counts and the cow-storm rate; no page, mapping or reason state.
    pub fn counted(&mut self, now: u64, task: &Task, c: &Counted, alerts: &mut Vec<Alert>) {
        self.counted_decisions += c.count;
        let origin = Origin {
            time_ns: now,
            task: *task,
            mm: 0,
        };
        self.tally(
            origin,
            c.site,
            FaultKind::Write,
            c.decision,
            c.count,
            (0, 0),
            alerts,
        );
    }

    /// Applies enabled/allow-list/dedup and records the alert.
    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        key: DedupKey,
        o: Origin,
        address: u64,
        pfn: u64,
        message: impl FnOnce() -> String,
        holder: Option<&HolderRec>,
        alerts: &mut Vec<Alert>,
    ) {
        let allowed = self.config.allow.allows_comm(&o.task.comm);
        let stacks = &self.stacks;
        let now = o.time_ns;
        let make = || Alert {
            rule: key.rule,
            severity: key.rule.default_severity(),
            time_ns: now,
            message: message(),
            pid: o.task.pid,
            comm: o.task.comm,
            mm: o.mm,
            address,
            pfn,
            holder: holder.map(|h| {
                let frames = h.stack.and_then(|id| stacks.get(&id));
                rules::holder_view(h, now, frames)
            }),
            count: 1,
            suppressed: 0,
            last_ns: now,
        };
        self.alerts.raise(
            &self.config,
            key,
            now,
            allowed,
            make,
            alerts,
            &mut self.evictions.alerts,
        );
    }

    pub fn summary(&self) -> Summary {
        Summary {
            events: self.events,
            copies: self.totals.cow_copies,
            reuses: self.totals.cow_reuses,
            unshares: self.totals.unshare_copies + self.totals.unshare_reuses,
            pins: self.pins_total,
            alerts: self.alerts.emitted(),
            lost: self.lost_events,
        }
    }

    pub fn report(&self) -> Report {
        let (mappings, mappings_omitted) = self.mapping_ranges();
        Report {
            complete: self.complete,
            lost_events: self.lost_events,
            kernel: self.caps.clone(),
            events: self.events,
            out_of_order_events: self.out_of_order,
            evictions: self.evictions,
            unmatched_unpins: self.unmatched_unpins,
            counted_decisions: self.counted_decisions,
            decisions: self.totals,
            processes: self.process_reports(),
            mappings,
            mappings_omitted,
            reasons: self.reason_counts(),
            alerts: self.alerts.alerts(),
            alert_summary: self.alerts.summary(),
            lost_by_hook: self.lost_by_hook.clone(),
        }
    }

    fn process_reports(&self) -> Vec<ProcessReport> {
        let mut v: Vec<ProcessReport> = self
            .procs
            .iter()
            .filter(|(_, p)| p.c.active())
            .map(|(&pid, p)| ProcessReport {
                pid,
                comm: p.comm,
                exited: p.exited,
                cow_copies: p.c.cow_copies,
                cow_reuses: p.c.cow_reuses,
                unshare_copies: p.c.unshare_copies,
                unshare_reuses: p.c.unshare_reuses,
                other_decisions: p.c.other,
                gup_pins: p.c.gup_pins,
                gup_gets: p.c.gup_gets,
                fork_pinned_copies: p.c.fork_pinned_copies,
                bytes_copied: p.c.bytes_copied,
                decisions_by_site: SITES
                    .iter()
                    .zip(p.sites.iter())
                    .filter(|(_, c)| c.copies + c.reuses + c.other > 0)
                    .map(|(&(_, name), &c)| (name, c))
                    .collect(),
            })
            .collect();
        v.sort_by(|a, b| b.cow_copies.cmp(&a.cow_copies).then(a.pid.cmp(&b.pid)));
        v
    }

    fn reason_counts(&self) -> Vec<ReasonCount> {
        let mut v = Vec::new();
        for &(d, dname) in &DECISIONS {
            for &(f, fname) in &FAULTS {
                for r in Reason::ALL {
                    let count = self.reasons[reason_slot(d, f, r)];
                    if count > 0 {
                        v.push(ReasonCount {
                            decision: dname,
                            fault: fname,
                            reason: r.as_str(),
                            count,
                        });
                    }
                }
            }
        }
        // Stable: ties keep the table order above.
        v.sort_by_key(|x| std::cmp::Reverse(x.count));
        v
    }

    /// Groups mapped pages with decisions into contiguous ranges per
    /// (mm, pid), hottest first.
    fn mapping_ranges(&self) -> (Vec<MappingReport>, u64) {
        let mut pages: Vec<(u64, u32, u64, MapPage)> = self
            .maps
            .iter()
            .filter(|(_, m)| m.copies + m.reuses + m.unshares > 0)
            .map(|(&(mm, vpn), m)| (mm, m.pid, vpn, *m))
            .collect();
        pages.sort_unstable_by_key(|&(mm, pid, vpn, _)| (mm, pid, vpn));
        let ps = self.page_size;
        let mut ranges: Vec<MappingReport> = Vec::new();
        for (mm, pid, vpn, m) in pages {
            let span = u64::from(m.span.max(1));
            let start = vpn * ps;
            let end = (vpn + span) * ps;
            if let Some(r) = ranges.last_mut()
                && r.mm == mm
                && r.pid == pid
                && start <= r.end
            {
                r.end = r.end.max(end);
                r.pages += span;
                r.copies += u64::from(m.copies);
                r.reuses += u64::from(m.reuses);
                r.unshares += u64::from(m.unshares);
                continue;
            }
            let comm = self.procs.get(&pid).map_or_else(Comm::default, |p| p.comm);
            ranges.push(MappingReport {
                pid,
                comm,
                mm,
                start,
                end,
                pages: span,
                copies: u64::from(m.copies),
                reuses: u64::from(m.reuses),
                unshares: u64::from(m.unshares),
            });
        }
        ranges.sort_by(|a, b| {
            b.copies
                .cmp(&a.copies)
                .then((b.reuses + b.unshares).cmp(&(a.reuses + a.unshares)))
                .then(a.mm.cmp(&b.mm))
                .then(a.start.cmp(&b.start))
                .then(a.pid.cmp(&b.pid))
        });
        let keep = self.config.engine.report_mappings;
        let omitted = ranges.len().saturating_sub(keep) as u64;
        ranges.truncate(keep);
        (ranges, omitted)
    }

    /// Pin references recorded as outstanding.
    #[cfg(test)]
    pub(crate) fn outstanding_pins(&self) -> u64 {
        self.pages.iter().map(|(_, p)| p.pins()).sum()
    }

    /// No holder record with zero references survives.
    #[cfg(test)]
    pub(crate) fn holder_refs_positive(&self) -> bool {
        self.pages
            .iter()
            .all(|(_, p)| p.holders.iter().all(|h| h.refs > 0))
    }

    /// Evictions so far, without building a report (metrics read it
    /// every tick).
    pub fn evictions(&self) -> Evictions {
        self.evictions
    }

    /// Current table sizes, for tests and self-observability.
    pub fn state_sizes(&self) -> StateSizes {
        StateSizes {
            pages: self.pages.len(),
            processes: self.procs.len(),
            mapping_pages: self.maps.len(),
            address_spaces: self.forks.len(),
            stacks: self.stacks.len(),
        }
    }
}

/// Who and when an alert or a tally is about: an event's envelope, or
/// (lean mode) a count read from the kernel, which has no event.
#[derive(Clone, Copy)]
struct Origin {
    time_ns: u64,
    task: Task,
    mm: u64,
}

impl Origin {
    fn of(ev: &Event) -> Self {
        Origin {
            time_ns: ev.time_ns,
            task: ev.task,
            mm: ev.mm,
        }
    }
}

/// The process record of `task` (created on first sight; the name follows
/// exec). A free function so callers can borrow other fields alongside.
fn proc_in<'a>(
    procs: &'a mut BoundedMap<u32, ProcRec>,
    evictions: &mut Evictions,
    task: &Task,
) -> &'a mut ProcRec {
    let mut ev = Evicted::default();
    let comm = task.comm;
    let p = procs.get_or_insert_with(task.pid, || ProcRec::new(comm), |_| 0, &mut ev);
    p.comm = comm;
    evictions.processes += ev.entries;
    p
}

/// Entries in the engine's bounded tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StateSizes {
    pub pages: usize,
    pub processes: usize,
    pub mapping_pages: usize,
    pub address_spaces: usize,
    pub stacks: usize,
}

/// Drops records the page state says are gone: FOLL_GET references the
/// refcount has no room for (`PageRec::prune_gets`) and, on small pages,
/// pins beyond what the refcount's pin bias shows (their unpin was lost).
fn prune(page: &mut PageRec, state: &PageState) {
    page.prune_gets(state);
    if state.valid && !state.large && state.refcount >= 0 {
        let visible = i64::from(state.refcount) / PIN_BIAS;
        let excess = page.pins() as i64 - visible;
        if excess > 0 {
            page.release(true, u32::try_from(excess).unwrap_or(u32::MAX));
        }
    }
}

#[cfg(test)]
mod feed_batch_tests {
    use super::*;
    use crate::model::testkit::{
        BASE, PAGE, anon, caps, ev, fork_vma, gup, task, unpin, write_copy, write_reuse,
    };

    /// A random stream that raises alerts and fills small tables: pins and
    /// references, copies and reuses on the pinned pages from the holder's
    /// and other address spaces, forks, unpins.
    fn stream(n: u64) -> Vec<Event> {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut out = Vec::new();
        for i in 0..n {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let pid = 100 + (rng % 5) as u32;
            let mm = u64::from(pid % 3) + 1;
            let page = (rng >> 8) % 300;
            let (address, pfn) = (BASE + page * PAGE, 0x1000 + page);
            let body = match (rng >> 20) % 10 {
                0..4 => {
                    let state = anon(2 + 1024, 2, Some(false));
                    if (rng >> 30).is_multiple_of(2) {
                        write_copy(address, pfn, pfn + 0x10_0000, state)
                    } else {
                        write_reuse(address, pfn, state)
                    }
                }
                4..7 => {
                    let state = anon(3 + 1024, 1, Some((rng >> 34).is_multiple_of(2)));
                    gup(
                        address,
                        pfn,
                        (rng >> 33).is_multiple_of(2),
                        false,
                        state,
                        None,
                    )
                }
                7 | 8 => unpin(pfn, 1),
                _ => fork_vma(mm + 10, pid + 50, BASE, BASE + 300 * PAGE),
            };
            out.push(ev(1_000 + i * 100_000, task(pid, "batch"), mm, body));
        }
        out
    }

    /// `feed_batch` is `feed` on each event: same alerts, same report, also
    /// when the tables evict.
    #[test]
    fn feed_batch_equals_feed_one_by_one() {
        let mut config = Config::default();
        config.engine.max_pages = 64;
        config.engine.max_mapping_pages = 96;
        config.dedup.window_secs = 0.001;
        let evs = stream(20_000);
        let mut one = Engine::new(config.clone(), caps(false));
        let mut batched = Engine::new(config, caps(false));
        let (mut a1, mut a2) = (Vec::new(), Vec::new());
        for e in &evs {
            one.feed(e, &mut a1);
        }
        for chunk in evs.chunks(777) {
            batched.feed_batch(chunk, &mut a2);
        }
        assert!(a1.len() > 100, "the stream raises alerts: {}", a1.len());
        assert_eq!(a1, a2);
        let r = one.report();
        assert!(r.evictions.pages > 0 && r.evictions.mapping_pages > 0);
        assert_eq!(r, batched.report());
    }
}
