//! One event as one flat row: the pure half of the Parquet export.
//!
//! Every event type shares one wide row; the fields a type does not have
//! are `None` (null in the file). Values, names and null rules are the
//! JSON-lines export's (`output::jsonl`), so the two exports of a trace
//! say the same thing; only addresses are numbers here instead of hex
//! strings, since Parquet has unsigned 64-bit integers.

use std::collections::HashMap;

use crate::{
    model::{
        Body, CowFault, Decision, Event, FaultKind, ForkCopy, ForkVma, Gup, GupPath, Lost,
        PageState, Site, TaskFork, Unpin,
    },
    trace::TraceMeta,
};

/// Where a group of events came from: the trace header's host, kernel
/// and clock base. Constant for every event of one recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub host: String,
    pub kernel_release: String,
    /// CLOCK_MONOTONIC and CLOCK_REALTIME at the same instant, in ns.
    pub monotonic_ns: u64,
    pub realtime_ns: u64,
}

impl Source {
    pub fn from_meta(meta: &TraceMeta) -> Self {
        Source {
            host: meta.hostname.clone(),
            kernel_release: meta.kernel.release.clone(),
            monotonic_ns: meta.clock.monotonic_ns,
            realtime_ns: meta.clock.realtime_ns,
        }
    }

    /// Wall-clock ns since the epoch of a CLOCK_MONOTONIC time, by the
    /// header's clock base; `None` when it does not fit a signed 64-bit
    /// timestamp (a damaged or forged header).
    pub fn wall_time_ns(&self, time_ns: u64) -> Option<i64> {
        let wall =
            i128::from(self.realtime_ns) + i128::from(time_ns) - i128::from(self.monotonic_ns);
        i64::try_from(wall).ok()
    }
}

/// The columns of one event. Field names are the column names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row<'a> {
    pub kind: &'static str,
    pub time_ns: u64,
    pub cpu: u32,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub mm: u64,
    // cow_fault
    pub site: Option<&'static str>,
    pub fault: Option<&'static str>,
    pub decision: Option<&'static str>,
    pub shared_mapping: Option<bool>,
    pub ret: Option<u32>,
    pub ksm: Option<bool>,
    pub swapcache: Option<bool>,
    pub large: Option<bool>,
    pub page_valid: Option<bool>,
    pub swap_count: Option<u32>,
    // cow_fault, gup, unpin, fork_copy
    pub address: Option<u64>,
    pub pfn: Option<u64>,
    pub new_pfn: Option<u64>,
    pub refcount: Option<i32>,
    pub mapcount: Option<i32>,
    pub anon: Option<bool>,
    pub anon_exclusive: Option<bool>,
    // gup, unpin
    pub path: Option<&'static str>,
    pub refs: Option<u32>,
    pub pin: Option<bool>,
    pub write: Option<bool>,
    pub longterm: Option<bool>,
    pub force: Option<bool>,
    pub failed: Option<bool>,
    pub stack: Option<&'a [String]>,
    pub refcount_before: Option<i32>,
    // fork_vma, fork_copy, fork
    pub child_pid: Option<u32>,
    pub child_tid: Option<u32>,
    pub child_mm: Option<u64>,
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub vm_flags: Option<u64>,
    // lost
    pub hook: Option<&'a str>,
    pub count: Option<u64>,
    pub dropped: Option<u64>,
    pub errors: Option<u64>,
    pub skipped: Option<u64>,
}

/// Turns events into rows, remembering stack definitions so `gup` rows
/// carry their frames (as the JSON-lines export inlines them).
#[derive(Debug, Default)]
pub struct RowMapper {
    stacks: HashMap<u32, Vec<String>>,
}

impl RowMapper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets stack definitions: stack ids are only unique within one
    /// recording, so a new recording starts without them.
    pub fn reset(&mut self) {
        self.stacks.clear();
    }

    /// The row of `ev`; `None` for a stack definition (recorded, then
    /// inlined into the `gup` rows that name it).
    pub fn row<'s>(&'s mut self, ev: &'s Event) -> Option<Row<'s>> {
        let base = Row {
            kind: ev.body.kind(),
            time_ns: ev.time_ns,
            cpu: ev.cpu,
            pid: ev.task.pid,
            tid: ev.task.tid,
            comm: ev.task.comm.escaped(),
            mm: ev.mm,
            ..Row::default()
        };
        let row = match &ev.body {
            Body::StackDef(s) => {
                self.stacks.insert(s.id, s.frames.clone());
                return None;
            }
            Body::CowFault(c) => cow_fault(base, c),
            Body::Gup(g) => gup(base, g, &self.stacks),
            Body::Unpin(u) => unpin(base, u),
            Body::ForkVma(f) => fork_vma(base, f),
            Body::ForkCopy(f) => fork_copy(base, f),
            Body::TaskFork(f) => fork(base, f),
            Body::TaskExit => base,
            Body::Lost(l) => lost(base, l),
        };
        Some(row)
    }
}

fn site(s: Site) -> &'static str {
    match s {
        Site::Wp => "wp",
        Site::Swap => "swap",
        Site::Thp => "thp",
        Site::Hugetlb => "hugetlb",
    }
}

fn fault(f: FaultKind) -> &'static str {
    match f {
        FaultKind::Write => "write",
        FaultKind::Unshare => "unshare",
    }
}

fn decision(d: Decision) -> &'static str {
    match d {
        Decision::Reuse => "reuse",
        Decision::Copy => "copy",
        Decision::Other => "other",
    }
}

fn gup_path(p: GupPath) -> &'static str {
    match p {
        GupPath::Slow => "slow",
        GupPath::Fast => "fast",
    }
}

/// The page-state columns `cow_fault` and `gup` share.
fn with_page<'a>(row: Row<'a>, p: &PageState) -> Row<'a> {
    Row {
        refcount: Some(p.refcount),
        mapcount: Some(p.mapcount),
        anon: Some(p.anon),
        anon_exclusive: p.anon_exclusive,
        ..row
    }
}

fn cow_fault<'a>(base: Row<'a>, c: &CowFault) -> Row<'a> {
    let row = Row {
        site: Some(site(c.site)),
        fault: Some(fault(c.fault)),
        address: Some(c.address),
        pfn: Some(c.pfn),
        new_pfn: c.new_pfn,
        decision: Some(decision(c.decision)),
        shared_mapping: Some(c.shared_mapping),
        ret: Some(c.ret),
        ksm: Some(c.page.ksm),
        swapcache: Some(c.page.swapcache),
        large: Some(c.page.large),
        page_valid: Some(c.page.valid),
        swap_count: c.swap_count,
        ..base
    };
    with_page(row, &c.page)
}

fn gup<'a>(base: Row<'a>, g: &Gup, stacks: &'a HashMap<u32, Vec<String>>) -> Row<'a> {
    let row = Row {
        path: Some(gup_path(g.path)),
        address: Some(g.address),
        pfn: Some(g.pfn),
        refs: Some(g.refs),
        pin: Some(g.pin),
        write: Some(g.write),
        longterm: Some(g.longterm),
        force: Some(g.force),
        failed: Some(g.failed),
        // No stack, or one whose definition was lost: an empty list.
        stack: Some(
            g.stack
                .and_then(|id| stacks.get(&id))
                .map_or(&[], Vec::as_slice),
        ),
        ..base
    };
    with_page(row, &g.page)
}

fn unpin<'a>(base: Row<'a>, u: &Unpin) -> Row<'a> {
    Row {
        pfn: Some(u.pfn),
        refs: Some(u.refs),
        pin: Some(u.pin),
        refcount_before: Some(u.refcount_before),
        ..base
    }
}

fn fork_vma<'a>(base: Row<'a>, f: &ForkVma) -> Row<'a> {
    Row {
        child_pid: f.child_pid,
        child_mm: Some(f.child_mm),
        start: Some(f.start),
        end: Some(f.end),
        vm_flags: Some(f.vm_flags),
        ..base
    }
}

fn fork_copy<'a>(base: Row<'a>, f: &ForkCopy) -> Row<'a> {
    Row {
        child_pid: f.child_pid,
        child_mm: Some(f.child_mm),
        address: Some(f.address),
        new_pfn: f.new_pfn,
        ..base
    }
}

fn fork<'a>(base: Row<'a>, f: &TaskFork) -> Row<'a> {
    Row {
        child_pid: Some(f.child_pid),
        child_tid: Some(f.child_tid),
        child_mm: Some(f.child_mm),
        ..base
    }
}

fn lost<'a>(base: Row<'a>, l: &'a Lost) -> Row<'a> {
    Row {
        hook: Some(&l.hook),
        count: Some(l.total()),
        dropped: Some(l.dropped),
        errors: Some(l.errors),
        skipped: Some(l.skipped),
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Comm, StackDef, Task};

    fn ev(body: Body) -> Event {
        Event {
            time_ns: 5_000,
            cpu: 3,
            task: Task {
                pid: 10,
                tid: 11,
                comm: Comm::new("a\nb"),
            },
            mm: 4,
            body,
        }
    }

    #[test]
    fn common_columns_and_escaped_comm() {
        let e = ev(Body::TaskExit);
        let mut m = RowMapper::new();
        let r = m.row(&e).unwrap();
        assert_eq!(
            r,
            Row {
                kind: "exit",
                time_ns: 5_000,
                cpu: 3,
                pid: 10,
                tid: 11,
                comm: "a\\x0ab".into(),
                mm: 4,
                ..Row::default()
            }
        );
    }

    #[test]
    fn gup_rows_inline_known_stacks_only() {
        let mut m = RowMapper::new();
        let def = ev(Body::StackDef(StackDef {
            id: 1,
            frames: vec!["f+0x1".into()],
        }));
        assert!(m.row(&def).is_none());
        let mut g = Gup {
            path: GupPath::Slow,
            address: 0x1000,
            pfn: 9,
            refs: 1,
            pin: true,
            write: false,
            longterm: true,
            force: false,
            failed: false,
            page: PageState {
                refcount: 5,
                anon_exclusive: None,
                ..PageState::default()
            },
            stack: Some(1),
        };
        let e = ev(Body::Gup(g.clone()));
        let r = m.row(&e).unwrap();
        assert_eq!(r.stack, Some(&["f+0x1".to_string()][..]));
        assert_eq!(
            (r.kind, r.path, r.refcount, r.anon_exclusive, r.site),
            ("gup", Some("slow"), Some(5), None, None)
        );
        g.stack = Some(2);
        let e = ev(Body::Gup(g.clone()));
        assert_eq!(m.row(&e).unwrap().stack, Some(&[][..]));
        // A new recording: id 1 means nothing any more.
        m.reset();
        g.stack = Some(1);
        let e = ev(Body::Gup(g));
        assert_eq!(m.row(&e).unwrap().stack, Some(&[][..]));
    }

    #[test]
    fn lost_count_saturates() {
        let e = ev(Body::Lost(Lost {
            hook: "gup_fast".into(),
            cpu: 3,
            dropped: u64::MAX,
            errors: 2,
            skipped: 1,
        }));
        let mut m = RowMapper::new();
        let r = m.row(&e).unwrap();
        assert_eq!(
            (r.hook, r.count, r.dropped, r.errors, r.skipped),
            (
                Some("gup_fast"),
                Some(u64::MAX),
                Some(u64::MAX),
                Some(2),
                Some(1)
            )
        );
    }

    #[test]
    fn wall_time_from_the_clock_base() {
        let s = Source {
            monotonic_ns: 1_000,
            realtime_ns: 1_700_000_000_000_000_000,
            ..Source::default()
        };
        assert_eq!(s.wall_time_ns(1_500), Some(1_700_000_000_000_000_500));
        assert_eq!(s.wall_time_ns(0), Some(1_699_999_999_999_999_000));
        let forged = Source {
            realtime_ns: u64::MAX,
            ..Source::default()
        };
        assert_eq!(forged.wall_time_ns(0), None);
    }
}
