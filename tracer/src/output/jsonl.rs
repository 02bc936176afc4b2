//! JSON-lines export: one JSON object per event, one event per line.
//!
//! The output types below are separate from the model types on purpose:
//! this schema is a published interface and must not change when the model
//! does. Stack definitions are not printed; their frames are inlined into
//! the `gup` lines that reference them.
//!
//! # Schema (version 1)
//!
//! Every line has, in this order:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `type` | string | `cow_fault`, `gup`, `unpin`, `fork_vma`, `fork_copy`, `fork`, `exit`, `lost` |
//! | `time_ns` | number | CLOCK_MONOTONIC ns (the trace header gives the wall-clock base) |
//! | `cpu` | number | CPU the event was recorded on |
//! | `pid`, `tid` | number | process and thread |
//! | `comm` | string | task name, escaped (`\xNN` for anything not printable ASCII, `\` and `"`) |
//! | `mm` | number | address space id (the raw pointer with `--raw-pointers`), 0 if unknown |
//!
//! Then per type (addresses, `start`, `end`, `vm_flags` are hex strings
//! such as `"0x7f12a000"`; `|null` marks fields that may be null):
//!
//! * `cow_fault`: `site` (`wp`/`swap`/`thp`/`hugetlb`), `fault` (`write`/`unshare`),
//!   `address`, `pfn`, `new_pfn` (number|null), `decision` (`reuse`/`copy`/`other`),
//!   `shared_mapping` (bool), `ret` (number, `vm_fault_t`), `refcount`, `mapcount`
//!   (numbers), `anon` (bool), `anon_exclusive` (bool|null), `ksm`, `swapcache`,
//!   `large`, `page_valid` (bools), and for `site: swap` when it was read
//!   `swap_count` (number: references to the swap entry before the fault).
//! * `gup`: `path` (`slow`/`fast`), `address`, `pfn`, `refs` (number), `pin`, `write`,
//!   `longterm`, `force`, `failed` (bools), `refcount`, `mapcount` (numbers), `anon`
//!   (bool), `anon_exclusive` (bool|null), `stack` (array of frame strings, innermost
//!   first, `[]` when none).
//! * `unpin`: `pfn`, `refs` (numbers), `pin` (bool), `refcount_before` (number).
//! * `fork_vma`: `child_pid` (number|null), `child_mm` (number), `start`, `end`, `vm_flags`.
//! * `fork_copy`: `child_pid` (number|null), `child_mm` (number), `address`, `new_pfn`
//!   (number|null).
//! * `fork`: `child_pid`, `child_tid`, `child_mm` (numbers).
//! * `exit`: no further fields.
//! * `lost`: `hook` (string), `count` (= `dropped` + `errors`), `dropped`, `errors` (numbers).
//!
//! Example:
//!
//! ```text
//! {"type":"unpin","time_ns":1000,"cpu":2,"pid":41,"tid":42,"comm":"app","mm":7,"pfn":4660,"refs":1,"pin":true,"refcount_before":1026}
//! ```

use std::collections::HashMap;

use serde::{Serialize, Serializer};

use crate::model::{
    Body, CowFault, Decision, Event, FaultKind, ForkCopy, ForkVma, Gup, GupPath, Lost, Site,
    TaskFork, Unpin,
};

/// Turns events into JSON lines, remembering stack definitions.
#[derive(Debug, Default)]
pub struct JsonlExporter {
    stacks: HashMap<u32, Vec<String>>,
}

impl JsonlExporter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the JSON object for `ev` to `out` (no newline) and returns
    /// true; for a `StackDef` records the stack and returns false.
    pub fn line(&mut self, ev: &Event, out: &mut String) -> bool {
        // Serializing these plain structs of numbers, strings, bools and
        // options into memory cannot fail; `try_line` exists for callers
        // who prefer to see the impossible error anyway.
        self.try_line(ev, out).unwrap_or(false)
    }

    pub fn try_line(&mut self, ev: &Event, out: &mut String) -> Result<bool, serde_json::Error> {
        let json = match &ev.body {
            Body::StackDef(s) => {
                self.stacks.insert(s.id, s.frames.clone());
                return Ok(false);
            }
            Body::CowFault(c) => to_json(ev, cow_fault(c)),
            Body::Gup(g) => to_json(ev, gup(g, &self.stacks)),
            Body::Unpin(u) => to_json(ev, unpin(u)),
            Body::ForkVma(f) => to_json(ev, fork_vma(f)),
            Body::ForkCopy(f) => to_json(ev, fork_copy(f)),
            Body::TaskFork(f) => to_json(ev, fork(f)),
            Body::TaskExit => to_json(ev, Nothing {}),
            Body::Lost(l) => to_json(ev, lost(l)),
        }?;
        out.push_str(&json);
        Ok(true)
    }
}

fn to_json<B: Serialize>(ev: &Event, body: B) -> serde_json::Result<String> {
    serde_json::to_string(&Line {
        kind: ev.body.kind(),
        time_ns: ev.time_ns,
        cpu: ev.cpu,
        pid: ev.task.pid,
        tid: ev.task.tid,
        comm: ev.task.comm.escaped(),
        mm: ev.mm,
        body,
    })
}

/// A number printed as a `0x` hex string (JSON numbers lose precision
/// above 2^53 in many consumers; addresses are read in hex anyway).
struct Hex(u64);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#x}", self.0))
    }
}

#[derive(Serialize)]
struct Line<B> {
    #[serde(rename = "type")]
    kind: &'static str,
    time_ns: u64,
    cpu: u32,
    pid: u32,
    tid: u32,
    comm: String,
    mm: u64,
    #[serde(flatten)]
    body: B,
}

#[derive(Serialize)]
struct Nothing {}

#[derive(Serialize)]
struct CowFaultOut {
    site: &'static str,
    fault: &'static str,
    address: Hex,
    pfn: u64,
    new_pfn: Option<u64>,
    decision: &'static str,
    shared_mapping: bool,
    ret: u32,
    refcount: i32,
    mapcount: i32,
    anon: bool,
    anon_exclusive: Option<bool>,
    ksm: bool,
    swapcache: bool,
    large: bool,
    page_valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    swap_count: Option<u32>,
}

fn cow_fault(c: &CowFault) -> CowFaultOut {
    CowFaultOut {
        site: match c.site {
            Site::Wp => "wp",
            Site::Swap => "swap",
            Site::Thp => "thp",
            Site::Hugetlb => "hugetlb",
        },
        fault: match c.fault {
            FaultKind::Write => "write",
            FaultKind::Unshare => "unshare",
        },
        address: Hex(c.address),
        pfn: c.pfn,
        new_pfn: c.new_pfn,
        decision: match c.decision {
            Decision::Reuse => "reuse",
            Decision::Copy => "copy",
            Decision::Other => "other",
        },
        shared_mapping: c.shared_mapping,
        ret: c.ret,
        refcount: c.page.refcount,
        mapcount: c.page.mapcount,
        anon: c.page.anon,
        anon_exclusive: c.page.anon_exclusive,
        ksm: c.page.ksm,
        swapcache: c.page.swapcache,
        large: c.page.large,
        page_valid: c.page.valid,
        swap_count: c.swap_count,
    }
}

#[derive(Serialize)]
struct GupOut<'a> {
    path: &'static str,
    address: Hex,
    pfn: u64,
    refs: u32,
    pin: bool,
    write: bool,
    longterm: bool,
    force: bool,
    failed: bool,
    refcount: i32,
    mapcount: i32,
    anon: bool,
    anon_exclusive: Option<bool>,
    stack: &'a [String],
}

fn gup<'a>(g: &Gup, stacks: &'a HashMap<u32, Vec<String>>) -> GupOut<'a> {
    GupOut {
        path: match g.path {
            GupPath::Slow => "slow",
            GupPath::Fast => "fast",
        },
        address: Hex(g.address),
        pfn: g.pfn,
        refs: g.refs,
        pin: g.pin,
        write: g.write,
        longterm: g.longterm,
        force: g.force,
        failed: g.failed,
        refcount: g.page.refcount,
        mapcount: g.page.mapcount,
        anon: g.page.anon,
        anon_exclusive: g.page.anon_exclusive,
        // An id whose definition was lost (damaged block) prints as no stack.
        stack: g
            .stack
            .and_then(|id| stacks.get(&id))
            .map_or(&[], Vec::as_slice),
    }
}

#[derive(Serialize)]
struct UnpinOut {
    pfn: u64,
    refs: u32,
    pin: bool,
    refcount_before: i32,
}

fn unpin(u: &Unpin) -> UnpinOut {
    UnpinOut {
        pfn: u.pfn,
        refs: u.refs,
        pin: u.pin,
        refcount_before: u.refcount_before,
    }
}

#[derive(Serialize)]
struct ForkVmaOut {
    child_pid: Option<u32>,
    child_mm: u64,
    start: Hex,
    end: Hex,
    vm_flags: Hex,
}

fn fork_vma(f: &ForkVma) -> ForkVmaOut {
    ForkVmaOut {
        child_pid: f.child_pid,
        child_mm: f.child_mm,
        start: Hex(f.start),
        end: Hex(f.end),
        vm_flags: Hex(f.vm_flags),
    }
}

#[derive(Serialize)]
struct ForkCopyOut {
    child_pid: Option<u32>,
    child_mm: u64,
    address: Hex,
    new_pfn: Option<u64>,
}

fn fork_copy(f: &ForkCopy) -> ForkCopyOut {
    ForkCopyOut {
        child_pid: f.child_pid,
        child_mm: f.child_mm,
        address: Hex(f.address),
        new_pfn: f.new_pfn,
    }
}

#[derive(Serialize)]
struct ForkOut {
    child_pid: u32,
    child_tid: u32,
    child_mm: u64,
}

fn fork(f: &TaskFork) -> ForkOut {
    ForkOut {
        child_pid: f.child_pid,
        child_tid: f.child_tid,
        child_mm: f.child_mm,
    }
}

#[derive(Serialize)]
struct LostOut<'a> {
    hook: &'a str,
    count: u64,
    dropped: u64,
    errors: u64,
    skipped: u64,
}

fn lost(l: &Lost) -> LostOut<'_> {
    LostOut {
        hook: &l.hook,
        count: l.total(),
        dropped: l.dropped,
        errors: l.errors,
        skipped: l.skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Comm, PageState, StackDef, Task};

    fn ev(body: Body) -> Event {
        Event {
            time_ns: 1000,
            cpu: 2,
            task: Task {
                pid: 41,
                tid: 42,
                comm: Comm::new("app"),
            },
            mm: 7,
            body,
        }
    }

    const COMMON: &str = r#""time_ns":1000,"cpu":2,"pid":41,"tid":42,"comm":"app","mm":7"#;

    fn page() -> PageState {
        PageState {
            valid: true,
            refcount: 3,
            mapcount: 1,
            anon: true,
            anon_exclusive: Some(false),
            ksm: false,
            swapcache: true,
            large: false,
        }
    }

    fn line(x: &mut JsonlExporter, e: &Event) -> Option<String> {
        let mut s = String::new();
        x.line(e, &mut s).then_some(s)
    }

    fn golden(kind: &str, rest: &str) -> String {
        format!(r#"{{"type":"{kind}",{COMMON}{rest}}}"#)
    }

    #[test]
    fn cow_fault_line() {
        let e = ev(Body::CowFault(CowFault {
            site: Site::Thp,
            fault: FaultKind::Unshare,
            address: 0x7f00_0000_2000,
            pfn: 4096,
            new_pfn: None,
            decision: Decision::Reuse,
            shared_mapping: false,
            ret: 0x800,
            page: page(),
            swap_count: None,
        }));
        assert_eq!(
            line(&mut JsonlExporter::new(), &e).unwrap(),
            golden(
                "cow_fault",
                r#","site":"thp","fault":"unshare","address":"0x7f0000002000","pfn":4096,"new_pfn":null,"decision":"reuse","shared_mapping":false,"ret":2048,"refcount":3,"mapcount":1,"anon":true,"anon_exclusive":false,"ksm":false,"swapcache":true,"large":false,"page_valid":true"#
            )
        );
    }

    #[test]
    fn gup_line_inlines_its_stack_and_stack_defs_print_nothing() {
        let mut x = JsonlExporter::new();
        let def = ev(Body::StackDef(StackDef {
            id: 9,
            frames: vec!["pin_user_pages+0x10".into(), "io_\"sqe\"+0x4".into()],
        }));
        assert_eq!(line(&mut x, &def), None);
        let mut g = Gup {
            path: GupPath::Fast,
            address: 0x1000,
            pfn: 77,
            refs: 2,
            pin: true,
            write: false,
            longterm: true,
            force: false,
            failed: false,
            page: PageState {
                anon_exclusive: None,
                ..page()
            },
            stack: Some(9),
        };
        let want_prefix = r#","path":"fast","address":"0x1000","pfn":77,"refs":2,"pin":true,"write":false,"longterm":true,"force":false,"failed":false,"refcount":3,"mapcount":1,"anon":true,"anon_exclusive":null,"stack":"#;
        assert_eq!(
            line(&mut x, &ev(Body::Gup(g.clone()))).unwrap(),
            golden(
                "gup",
                &format!(r#"{want_prefix}["pin_user_pages+0x10","io_\"sqe\"+0x4"]"#)
            )
        );
        g.stack = None;
        assert_eq!(
            line(&mut x, &ev(Body::Gup(g.clone()))).unwrap(),
            golden("gup", &format!("{want_prefix}[]"))
        );
        g.stack = Some(10); // never defined
        assert_eq!(
            line(&mut x, &ev(Body::Gup(g))).unwrap(),
            golden("gup", &format!("{want_prefix}[]"))
        );
    }

    #[test]
    fn unpin_line() {
        let e = ev(Body::Unpin(Unpin {
            pfn: 4660,
            refs: 1,
            pin: true,
            refcount_before: 1026,
        }));
        assert_eq!(
            line(&mut JsonlExporter::new(), &e).unwrap(),
            golden(
                "unpin",
                r#","pfn":4660,"refs":1,"pin":true,"refcount_before":1026"#
            )
        );
    }

    #[test]
    fn fork_vma_line() {
        let e = ev(Body::ForkVma(ForkVma {
            child_mm: 8,
            child_pid: None,
            start: 0x7f00_0000_0000,
            end: 0x7f00_0010_0000,
            vm_flags: 0x100073,
        }));
        assert_eq!(
            line(&mut JsonlExporter::new(), &e).unwrap(),
            golden(
                "fork_vma",
                r#","child_pid":null,"child_mm":8,"start":"0x7f0000000000","end":"0x7f0000100000","vm_flags":"0x100073""#
            )
        );
    }

    #[test]
    fn fork_copy_line() {
        let e = ev(Body::ForkCopy(ForkCopy {
            child_mm: 8,
            child_pid: Some(43),
            address: 0x5000,
            new_pfn: Some(99),
        }));
        assert_eq!(
            line(&mut JsonlExporter::new(), &e).unwrap(),
            golden(
                "fork_copy",
                r#","child_pid":43,"child_mm":8,"address":"0x5000","new_pfn":99"#
            )
        );
    }

    #[test]
    fn fork_line() {
        let e = ev(Body::TaskFork(TaskFork {
            child_pid: 43,
            child_tid: 43,
            child_mm: 8,
        }));
        assert_eq!(
            line(&mut JsonlExporter::new(), &e).unwrap(),
            golden("fork", r#","child_pid":43,"child_tid":43,"child_mm":8"#)
        );
    }

    #[test]
    fn exit_line() {
        assert_eq!(
            line(&mut JsonlExporter::new(), &ev(Body::TaskExit)).unwrap(),
            golden("exit", "")
        );
    }

    #[test]
    fn lost_line_counts_drops_errors_and_skips() {
        let e = ev(Body::Lost(Lost {
            hook: "gup_fast".into(),
            cpu: 2,
            dropped: 5,
            errors: 3,
            skipped: 2,
        }));
        assert_eq!(
            line(&mut JsonlExporter::new(), &e).unwrap(),
            golden(
                "lost",
                r#","hook":"gup_fast","count":10,"dropped":5,"errors":3,"skipped":2"#
            )
        );
    }

    #[test]
    fn hostile_comm_is_escaped_then_json_quoted() {
        let mut e = ev(Body::TaskExit);
        e.task.comm = Comm::new("a\"b\x1b[2J\n");
        let l = line(&mut JsonlExporter::new(), &e).unwrap();
        assert!(l.contains(r#""comm":"a\\x22b\\x1b[2J\\x0a""#), "{l}");
        assert!(!l.contains('\n') && !l.contains('\x1b'));
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["comm"], "a\\x22b\\x1b[2J\\x0a");
    }
}
