//! Joins fork page-table copies with the child they were made for.
//!
//! `copy_page_range` runs inside `copy_process` → `dup_mm` → `dup_mmap`,
//! before the child's pid is visible to the probes; `sched_process_fork`
//! fires later in the same (parent) thread, in `kernel_clone` once
//! `copy_process` succeeded. So the `ForkVma`/`ForkCopy` events of one
//! fork are held per parent tid until that `TaskFork`, then emitted with
//! `child_pid` filled in, followed by the `TaskFork`.
//!
//! A fork that fails after copying page tables never fires the tracepoint;
//! its held events are emitted with `child_pid: None` once a bound says the
//! window is over: the same tid starts copying for another child mm, the
//! tid exits, no record arrived for the window within the timeout (event
//! time), a per-tid or total cap is exceeded, or at `finish`. Only these
//! records are delayed; everything else passes straight through.

use std::collections::HashMap;

use crate::model::{Body, Event};

/// Bounds of the join (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkLimits {
    /// A window with no record for this long (event time) is closed.
    pub timeout_ns: u64,
    /// Held events per tid; beyond it they are emitted unjoined (the window
    /// stays open: a consumer can still join them by `child_mm`).
    pub per_tid: usize,
    /// Held events in all; beyond it the least recently active window is
    /// emitted unjoined.
    pub total: usize,
}

impl Default for ForkLimits {
    fn default() -> Self {
        // A fork copies at most vm.max_map_count (65530 by default) VMAs
        // plus its eager copies; a window normally closes within
        // microseconds of its last copy.
        ForkLimits {
            timeout_ns: 1_000_000_000,
            per_tid: 16 * 1024,
            total: 64 * 1024,
        }
    }
}

#[derive(Debug)]
struct Window {
    /// Raw pointer of the child mm this window copies into.
    child_mm: u64,
    last_ns: u64,
    held: Vec<Event>,
}

/// Counters of the join.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ForkCounters {
    /// Events emitted with their child pid.
    pub joined: u64,
    /// Events emitted with `child_pid: None`.
    pub unjoined: u64,
    /// Windows closed without their `TaskFork`.
    pub windows_expired: u64,
}

#[derive(Debug)]
pub(crate) struct ForkJoin {
    limits: ForkLimits,
    windows: HashMap<u32, Window>,
    total: usize,
    /// Earliest time at which some window may time out (u64::MAX: none).
    next_deadline: u64,
    pub counters: ForkCounters,
}

impl ForkJoin {
    pub fn new(limits: ForkLimits) -> Self {
        ForkJoin {
            limits,
            windows: HashMap::new(),
            total: 0,
            next_deadline: u64::MAX,
            counters: ForkCounters::default(),
        }
    }

    /// Holds a `ForkVma`/`ForkCopy` event of the fork in `tid` copying into
    /// `child_mm` (raw pointer).
    pub fn hold(&mut self, tid: u32, child_mm: u64, ev: Event, out: &mut Vec<Event>) {
        let now = ev.time_ns;
        if self
            .windows
            .get(&tid)
            .is_some_and(|w| w.child_mm != child_mm)
        {
            // Copies for another child: the previous fork of this tid failed.
            self.close(tid, out);
        }
        let w = self.windows.entry(tid).or_insert_with(|| Window {
            child_mm,
            last_ns: now,
            held: Vec::new(),
        });
        w.last_ns = w.last_ns.max(now);
        w.held.push(ev);
        self.total += 1;
        if w.held.len() > self.limits.per_tid {
            let n = w.held.len();
            self.total -= n;
            self.counters.unjoined += n as u64;
            out.append(&mut w.held);
        }
        self.next_deadline = self
            .next_deadline
            .min(now.saturating_add(self.limits.timeout_ns));
        while self.total > self.limits.total {
            let Some(oldest) = self.windows.iter().min_by_key(|(t, w)| (w.last_ns, **t)) else {
                break;
            };
            let oldest = *oldest.0;
            self.close(oldest, out);
        }
    }

    /// `sched_process_fork` in `tid` created `child_pid` with `child_mm`:
    /// emits the window's events joined (or unjoined if they were for
    /// another mm). The caller emits the `TaskFork` after them.
    pub fn join(&mut self, tid: u32, child_mm: u64, child_pid: u32, out: &mut Vec<Event>) {
        let Some(mut w) = self.windows.remove(&tid) else {
            return;
        };
        self.total -= w.held.len();
        if w.child_mm != child_mm {
            self.counters.windows_expired += 1;
            self.counters.unjoined += w.held.len() as u64;
            out.append(&mut w.held);
            return;
        }
        self.counters.joined += w.held.len() as u64;
        for mut ev in w.held {
            match &mut ev.body {
                Body::ForkVma(v) => v.child_pid = Some(child_pid),
                Body::ForkCopy(c) => c.child_pid = Some(child_pid),
                _ => {}
            }
            out.push(ev);
        }
    }

    /// The thread `tid` exited: its fork, if any, is over.
    pub fn task_exit(&mut self, tid: u32, out: &mut Vec<Event>) {
        if self.windows.contains_key(&tid) {
            self.close(tid, out);
        }
    }

    /// Closes the windows idle for the timeout as of event time `now`.
    /// Cheap when nothing is due (one comparison): called on every record.
    pub fn expire(&mut self, now: u64, out: &mut Vec<Event>) {
        if now < self.next_deadline {
            return;
        }
        let timeout = self.limits.timeout_ns;
        let mut due: Vec<(u64, u32)> = self
            .windows
            .iter()
            .filter(|(_, w)| w.last_ns.saturating_add(timeout) <= now)
            .map(|(&t, w)| (w.last_ns, t))
            .collect();
        due.sort_unstable();
        for (_, tid) in due {
            self.close(tid, out);
        }
        self.next_deadline = self
            .windows
            .values()
            .map(|w| w.last_ns.saturating_add(timeout))
            .min()
            .unwrap_or(u64::MAX);
    }

    /// Emits every held event unjoined, oldest window first.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        let mut tids: Vec<(u64, u32)> = self.windows.iter().map(|(&t, w)| (w.last_ns, t)).collect();
        tids.sort_unstable();
        for (_, tid) in tids {
            self.close(tid, out);
        }
        self.next_deadline = u64::MAX;
    }

    fn close(&mut self, tid: u32, out: &mut Vec<Event>) {
        if let Some(mut w) = self.windows.remove(&tid) {
            self.total -= w.held.len();
            self.counters.windows_expired += 1;
            self.counters.unjoined += w.held.len() as u64;
            out.append(&mut w.held);
        }
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.total
    }
}
