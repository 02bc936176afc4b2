//! Shared by the `trace_*` integration tests: sample events, a proptest
//! strategy for random event streams, and trace metadata.

#![allow(dead_code)] // each test binary uses a different subset

use cowtrace::{
    model::{
        Body, Comm, CowFault, Decision, Event, FaultKind, ForkCopy, ForkVma, Gup, GupPath,
        KernelCaps, Lost, PageState, Site, StackDef, Task, TaskFork, Unpin,
    },
    trace::{ClockBase, TraceMeta, TraceReader},
};
use proptest::prelude::*;

pub fn meta() -> TraceMeta {
    TraceMeta {
        tool_version: "0.1.0-test".into(),
        hostname: "testhost".into(),
        kernel: KernelCaps {
            release: "6.12.0-test".into(),
            anon_exclusive: true,
            page_size: 4096,
        },
        clock: ClockBase {
            monotonic_ns: 1_000,
            realtime_ns: 1_700_000_000_000_000_000,
        },
        attach_plan: serde_json::json!({"hooks": [{"name": "do_wp_page", "kind": "kprobe"}]}),
        raw_pointers: false,
        command: vec!["cowtrace".into(), "record".into()],
    }
}

pub fn task() -> Task {
    Task {
        pid: 4242,
        tid: 4243,
        comm: Comm::new("walker"),
    }
}

pub fn ev(time_ns: u64, body: Body) -> Event {
    Event {
        time_ns,
        cpu: 1,
        task: task(),
        mm: 3,
        body,
    }
}

pub fn page() -> PageState {
    PageState {
        valid: true,
        refcount: 2,
        mapcount: 1,
        anon: true,
        anon_exclusive: Some(false),
        ksm: false,
        swapcache: false,
        large: false,
    }
}

/// One event of every `Body` variant, with non-default values everywhere.
pub fn every_variant() -> Vec<Event> {
    let mut comm = [0u8; 16];
    comm.copy_from_slice(b"fifteen+chars\x01\xff\x00");
    vec![
        ev(
            10,
            Body::StackDef(StackDef {
                id: 7,
                frames: vec!["gup_fast+0x1c".into(), "?".into()],
            }),
        ),
        ev(
            20,
            Body::CowFault(CowFault {
                site: Site::Hugetlb,
                fault: FaultKind::Unshare,
                address: 0x7fff_ffff_f000,
                pfn: 0x1_2345,
                new_pfn: Some(0x9_8765),
                decision: Decision::Copy,
                shared_mapping: true,
                ret: 0x204,
                page: PageState {
                    ksm: true,
                    swapcache: true,
                    large: true,
                    ..page()
                },
                swap_count: None,
            }),
        ),
        ev(
            30,
            Body::Gup(Gup {
                path: GupPath::Fast,
                address: 0x5555_0000_1000,
                pfn: 17,
                refs: 512,
                pin: true,
                write: true,
                longterm: true,
                force: true,
                failed: true,
                page: PageState {
                    refcount: -3,
                    mapcount: -1,
                    anon_exclusive: None,
                    ..page()
                },
                stack: Some(7),
            }),
        ),
        ev(
            40,
            Body::Unpin(Unpin {
                pfn: u64::MAX,
                refs: u32::MAX,
                pin: true,
                refcount_before: i32::MIN,
            }),
        ),
        ev(
            50,
            Body::ForkVma(ForkVma {
                child_mm: 9,
                child_pid: Some(4300),
                start: 0x7f00_0000_0000,
                end: 0x7f00_0020_0000,
                vm_flags: 0x0810_0073,
            }),
        ),
        ev(
            60,
            Body::ForkCopy(ForkCopy {
                child_mm: 9,
                child_pid: None,
                address: 0x7f00_0000_3000,
                new_pfn: None,
            }),
        ),
        ev(
            70,
            Body::TaskFork(TaskFork {
                child_pid: 4300,
                child_tid: 4300,
                child_mm: 9,
            }),
        ),
        Event {
            time_ns: 80,
            cpu: 7,
            task: Task {
                pid: 1,
                tid: 2,
                comm: Comm(comm),
            },
            mm: 0,
            body: Body::TaskExit,
        },
        ev(
            90,
            Body::Lost(Lost {
                hook: "wp_page_copy".into(),
                cpu: 3,
                dropped: u64::MAX,
                errors: 1,
                // The stored seeds predate the field (format 1.0) and
                // must still decode to this: absent means 0.
                skipped: 0,
            }),
        ),
    ]
}

/// A process walking a 4 KiB-page buffer after fork: one COW copy per page,
/// a few µs apart with jitter, old and new pages mostly consecutive.
pub fn cow_walk(n: u64) -> Vec<Event> {
    let mut rng = 0x2545_f491_4f6c_dd1du64; // xorshift: deterministic jitter
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut t = 5_000_000_000u64;
    let (mut pfn, mut new_pfn) = (0x10_0000u64, 0x20_0000u64);
    (0..n)
        .map(|i| {
            t += 1_500 + next() % 2_000;
            pfn += if next() % 64 == 0 { next() % 4096 } else { 1 };
            new_pfn += if next() % 512 == 0 { next() % 4096 } else { 1 };
            ev(
                t,
                Body::CowFault(CowFault {
                    site: Site::Wp,
                    fault: FaultKind::Write,
                    address: 0x7f3a_4000_0000 + i * 4096,
                    pfn,
                    new_pfn: Some(new_pfn),
                    decision: Decision::Copy,
                    shared_mapping: false,
                    ret: 0,
                    page: PageState {
                        mapcount: 2,
                        ..page()
                    },
                    swap_count: None,
                }),
            )
        })
        .collect()
}

/// Reads every event; panics on fatal errors (tests want them visible).
pub fn read_all(r: &mut TraceReader) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(e) = r.next_event() {
        out.push(e.expect("fatal read error"));
    }
    out
}

/// What a reader yields for `events`: identical repeated stack definitions
/// are carried once (the documented reader rule).
pub fn dedup_stacks(events: &[Event]) -> Vec<Event> {
    let mut seen = std::collections::HashMap::new();
    events
        .iter()
        .filter(|e| match &e.body {
            Body::StackDef(s) => seen.insert(s.id, s.frames.clone()).as_ref() != Some(&s.frames),
            _ => true,
        })
        .cloned()
        .collect()
}

fn arb_page() -> impl Strategy<Value = PageState> {
    (
        any::<bool>(),
        any::<i32>(),
        any::<i32>(),
        any::<[bool; 4]>(),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(valid, refcount, mapcount, [anon, ksm, swapcache, large], anon_exclusive)| {
                PageState {
                    valid,
                    refcount,
                    mapcount,
                    anon,
                    anon_exclusive,
                    ksm,
                    swapcache,
                    large,
                }
            },
        )
}

fn arb_body() -> impl Strategy<Value = Body> {
    let site = prop_oneof![
        Just(Site::Wp),
        Just(Site::Swap),
        Just(Site::Thp),
        Just(Site::Hugetlb)
    ];
    let decision = prop_oneof![
        Just(Decision::Reuse),
        Just(Decision::Copy),
        Just(Decision::Other)
    ];
    let cow = (
        site,
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        any::<Option<u64>>(),
        decision,
    )
        .prop_flat_map(|t| (Just(t), any::<bool>(), any::<u32>(), arb_page()))
        .prop_map(
            |((site, unshare, address, pfn, new_pfn, decision), shared_mapping, ret, page)| {
                Body::CowFault(CowFault {
                    site,
                    fault: if unshare {
                        FaultKind::Unshare
                    } else {
                        FaultKind::Write
                    },
                    address,
                    pfn,
                    new_pfn,
                    decision,
                    shared_mapping,
                    ret,
                    page,
                    swap_count: None,
                })
            },
        );
    let gup = (
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<[bool; 5]>(),
        arb_page(),
        any::<Option<u32>>(),
    )
        .prop_map(
            |(fast, address, pfn, refs, [pin, write, longterm, force, failed], page, stack)| {
                Body::Gup(Gup {
                    path: if fast { GupPath::Fast } else { GupPath::Slow },
                    address,
                    pfn,
                    refs,
                    pin,
                    write,
                    longterm,
                    force,
                    failed,
                    page,
                    stack,
                })
            },
        );
    prop_oneof![
        4 => cow,
        2 => gup,
        1 => (any::<u64>(), any::<u32>(), any::<bool>(), any::<i32>())
            .prop_map(|(pfn, refs, pin, refcount_before)| Body::Unpin(Unpin { pfn, refs, pin, refcount_before })),
        1 => (any::<u64>(), any::<Option<u32>>(), any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(child_mm, child_pid, start, end, vm_flags)| Body::ForkVma(ForkVma { child_mm, child_pid, start, end, vm_flags })),
        1 => (any::<u64>(), any::<Option<u32>>(), any::<u64>(), any::<Option<u64>>())
            .prop_map(|(child_mm, child_pid, address, new_pfn)| Body::ForkCopy(ForkCopy { child_mm, child_pid, address, new_pfn })),
        1 => (any::<u32>(), any::<u32>(), any::<u64>())
            .prop_map(|(child_pid, child_tid, child_mm)| Body::TaskFork(TaskFork { child_pid, child_tid, child_mm })),
        1 => Just(Body::TaskExit),
        1 => (".{0,24}", any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(hook, cpu, dropped, errors, skipped)| Body::Lost(Lost { hook, cpu, dropped, errors, skipped })),
        1 => (any::<u32>(), proptest::collection::vec(".{0,40}", 0..6))
            .prop_map(|(id, frames)| Body::StackDef(StackDef { id, frames })),
    ]
}

/// A random event; tasks, cpus and mms come from small pools so the delta
/// coding's "unchanged" paths are exercised as well as the changed ones.
pub fn arb_event() -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        0u32..4,
        0u32..3,
        any::<[u8; 16]>(),
        any::<bool>(),
        0u64..3,
        arb_body(),
    )
        .prop_map(|(time_ns, cpu, who, comm, odd_comm, mm, body)| {
            let comm = if odd_comm {
                Comm(comm)
            } else {
                Comm::new(["a", "bb", "ccc"][who as usize])
            };
            Event {
                time_ns,
                cpu,
                task: Task {
                    pid: 100 + who,
                    tid: 200 + who,
                    comm,
                },
                mm,
                body,
            }
        })
}
