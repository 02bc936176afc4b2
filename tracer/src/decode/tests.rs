//! Decoder tests over synthetic ring buffer entries (bytes, as the ring
//! buffer delivers them).

use std::mem::size_of;

use tracer_common::{gup_path, site};

use super::stacks::fakes::{MapStacks, TableSymbols};
use super::synthetic::{PRESENT, RW, consts_6_1, hdr, page, pte};
use super::wire::{Wire, to_bytes};
use super::*;
use crate::model::{Decision, GupPath, StackDef};

const PARENT_MM: u64 = 0xffff_8880_1000_0000;
const CHILD_MM: u64 = 0xffff_8880_2000_0000;
const OTHER_MM: u64 = 0xffff_8880_3000_0000;
const SEC: u64 = 1_000_000_000;

fn cfg(raw_pointers: bool) -> DecoderConfig {
    DecoderConfig {
        consts: consts_6_1(),
        slow_ret: RetKind::BoolTrue,
        fast_ret: RetKind::NonNull,
        raw_pointers,
    }
}

/// A decoder plus the fakes it is fed with.
struct Rig {
    d: Decoder,
    stacks: MapStacks,
    sym: TableSymbols,
}

impl Rig {
    fn new(raw_pointers: bool) -> Self {
        Self::with_limits(raw_pointers, DecodeLimits::default())
    }

    fn with_limits(raw_pointers: bool, limits: DecodeLimits) -> Self {
        Rig {
            d: Decoder::with_limits(cfg(raw_pointers), limits),
            stacks: MapStacks::default(),
            sym: TableSymbols(vec![(0xffff_ffff_8120_0000, "try_grab_page")]),
        }
    }

    fn feed_bytes(&mut self, bytes: &[u8]) -> Result<Vec<Event>, DecodeError> {
        let mut out = Vec::new();
        self.d
            .decode(bytes, &mut self.stacks, &self.sym, &mut out)?;
        Ok(out)
    }

    fn feed<T: Wire>(&mut self, rec: &T) -> Vec<Event> {
        self.feed_bytes(&to_bytes(rec)).unwrap()
    }
}

fn cow(time_ns: u64, tid: u32, mm: u64) -> CowFaultRecord {
    CowFaultRecord {
        hdr: hdr::<CowFaultRecord>(kind::COW_FAULT, time_ns, tid, tid, mm),
        address: 0x7f00_0000_0000,
        orig_entry: pte(0x100, PRESENT),
        entry_after: pte(0x200, PRESENT | RW),
        after_valid: 1,
        vm_flags: 0x73,
        fault_flags: 0x1,
        page: page(2, 2),
        site: site::WP,
        ..Default::default()
    }
}

fn gup_rec(time_ns: u64, stack_id: i32) -> GupRecord {
    GupRecord {
        hdr: hdr::<GupRecord>(kind::GUP, time_ns, 50, 51, PARENT_MM),
        address: 0x7f00_0000_0000,
        pfn: 0x100,
        page: page(1025, 1),
        gup_flags: 0x40000 | 0x10000 | 0x1,
        refs: 1,
        stack_id,
        path: gup_path::SLOW,
        ret: 1,
        ..Default::default()
    }
}

fn fork_vma(time_ns: u64, tid: u32, child_mm: u64, start: u64) -> ForkVmaRecord {
    ForkVmaRecord {
        hdr: hdr::<ForkVmaRecord>(kind::FORK_VMA, time_ns, tid, tid, PARENT_MM),
        child_mm,
        start,
        end: start + 0x1000,
        vm_flags: 0x73,
    }
}

fn fork_copy(time_ns: u64, tid: u32, child_mm: u64, address: u64) -> ForkCopyRecord {
    ForkCopyRecord {
        hdr: hdr::<ForkCopyRecord>(kind::FORK_COPY, time_ns, tid, tid, PARENT_MM),
        child_mm,
        address,
        new_pfn: 0x999,
    }
}

fn task_fork(time_ns: u64, tid: u32, child_pid: u32, child_mm: u64) -> TaskForkRecord {
    TaskForkRecord {
        hdr: hdr::<TaskForkRecord>(kind::TASK_FORK, time_ns, tid, tid, PARENT_MM),
        child_pid,
        child_tid: child_pid,
        child_mm,
    }
}

fn task_exit(time_ns: u64, tid: u32) -> TaskExitRecord {
    TaskExitRecord {
        hdr: hdr::<TaskExitRecord>(kind::TASK_EXIT, time_ns, tid, tid, 0),
    }
}

/// `(kind tag, child_pid)` of fork events, for compact assertions.
fn fork_view(evs: &[Event]) -> Vec<(&'static str, Option<u32>)> {
    evs.iter()
        .map(|e| match &e.body {
            Body::ForkVma(v) => ("vma", v.child_pid),
            Body::ForkCopy(c) => ("copy", c.child_pid),
            Body::TaskFork(f) => ("fork", Some(f.child_pid)),
            Body::CowFault(_) => ("cow", None),
            Body::TaskExit => ("exit", None),
            _ => ("other", None),
        })
        .collect()
}

#[test]
fn cow_fault_event_envelope() {
    let mut rig = Rig::new(false);
    let evs = rig.feed(&cow(1234, 77, PARENT_MM));
    assert_eq!(evs.len(), 1);
    let e = &evs[0];
    assert_eq!((e.time_ns, e.cpu, e.mm), (1234, 1, 1));
    assert_eq!((e.task.pid, e.task.tid), (77, 77));
    assert_eq!(e.task.comm.as_bytes(), b"test");
    let Body::CowFault(f) = &e.body else {
        panic!("not a fault: {e:?}")
    };
    assert_eq!(
        (f.decision, f.pfn, f.new_pfn),
        (Decision::Copy, 0x100, Some(0x200))
    );
    assert_eq!(f.page.refcount, 2);
    assert_eq!(rig.d.stats().records, 1);
}

#[test]
fn pointer_ids_in_order_and_raw_mode() {
    let mut rig = Rig::new(false);
    let mms: Vec<u64> = [OTHER_MM, PARENT_MM, OTHER_MM, 0]
        .iter()
        .map(|&mm| rig.feed(&cow(1, 1, mm))[0].mm)
        .collect();
    assert_eq!(mms, vec![1, 2, 1, 0]);

    let mut raw = Rig::new(true);
    assert_eq!(raw.feed(&cow(1, 1, OTHER_MM))[0].mm, OTHER_MM);
}

#[test]
fn pointer_ids_bounded() {
    let limits = DecodeLimits {
        pointer_ids: 8,
        ..DecodeLimits::default()
    };
    let mut rig = Rig::with_limits(false, limits);
    for i in 0..100u64 {
        rig.feed(&cow(1, 1, PARENT_MM + i * 0x1000));
    }
    assert!(rig.d.stats().pointer_ids_evicted >= 92);
    // The most recent pointer is still known.
    assert_eq!(rig.feed(&cow(2, 1, PARENT_MM + 99 * 0x1000))[0].mm, 100);
}

#[test]
fn gup_stack_defined_once_before_first_use() {
    let mut rig = Rig::new(false);
    rig.stacks
        .stacks
        .insert(4, vec![0xffff_ffff_8120_0010, 0xffff_ffff_9999_0000]);
    let evs = rig.feed(&gup_rec(10, 4));
    assert_eq!(evs.len(), 2);
    assert_eq!(
        evs[0].body,
        Body::StackDef(StackDef {
            id: 4,
            frames: vec!["try_grab_page+0x10".into(), "?".into()]
        })
    );
    assert_eq!(evs[0].time_ns, 10);
    let Body::Gup(g) = &evs[1].body else {
        panic!("not a gup: {:?}", evs[1])
    };
    assert_eq!(g.stack, Some(4));
    assert_eq!(g.path, GupPath::Slow);
    assert!(g.pin && g.write && g.longterm && !g.force && !g.failed);

    let evs = rig.feed(&gup_rec(11, 4));
    assert_eq!(evs.len(), 1);
    assert!(matches!(&evs[0].body, Body::Gup(g) if g.stack == Some(4)));
    assert_eq!(rig.stacks.lookups, 1);
    assert_eq!(rig.d.stats().stacks_defined, 1);

    // No stack, and a stack the map lost.
    let evs = rig.feed(&gup_rec(12, -17));
    assert!(matches!(&evs[..], [Event { body: Body::Gup(g), .. }] if g.stack.is_none()));
    let evs = rig.feed(&gup_rec(13, 5));
    assert!(matches!(&evs[..], [Event { body: Body::Gup(g), .. }] if g.stack.is_none()));
    assert_eq!(rig.d.stats().stacks_missing, 1);
}

#[test]
fn gup_ret_convention_per_path() {
    let mut rig = Rig::new(false);
    let mut r = gup_rec(1, -1);
    r.ret = 0x100; // a bool false with garbage above the low byte
    let evs = rig.feed(&r);
    assert!(matches!(&evs[0].body, Body::Gup(g) if g.failed));
    r.path = gup_path::FAST; // NonNull: 0x100 is a pointer
    let evs = rig.feed(&r);
    assert!(matches!(&evs[0].body, Body::Gup(g) if !g.failed && g.path == GupPath::Fast));
}

#[test]
fn unpin_and_exit() {
    let mut rig = Rig::new(false);
    let u = UnpinRecord {
        hdr: hdr::<UnpinRecord>(kind::UNPIN, 5, 3, 4, PARENT_MM),
        pfn: 0x100,
        refs: 1,
        gup_flags: 0x40000,
        refcount_before: 1025,
        implicit_pin: 0,
    };
    let evs = rig.feed(&u);
    assert_eq!(
        evs[0].body,
        Body::Unpin(crate::model::Unpin {
            pfn: 0x100,
            refs: 1,
            pin: true,
            refcount_before: 1025
        })
    );
    let evs = rig.feed(&task_exit(6, 4));
    assert_eq!((evs[0].mm, &evs[0].body), (0, &Body::TaskExit));
}

#[test]
fn fork_join_fills_child_pid_and_orders_task_fork_last() {
    let mut rig = Rig::new(false);
    // Eager copy first: the VMA record is emitted at copy_page_range's return.
    assert!(rig.feed(&fork_copy(10, 100, CHILD_MM, 0x1000)).is_empty());
    assert!(rig.feed(&fork_vma(11, 100, CHILD_MM, 0x1000)).is_empty());
    assert!(rig.feed(&fork_vma(12, 100, CHILD_MM, 0x9000)).is_empty());
    let evs = rig.feed(&task_fork(13, 100, 101, CHILD_MM));
    assert_eq!(
        fork_view(&evs),
        vec![
            ("copy", Some(101)),
            ("vma", Some(101)),
            ("vma", Some(101)),
            ("fork", Some(101))
        ]
    );
    // Parent mm id 1, child mm id 2 on every event.
    for e in &evs {
        assert_eq!(e.mm, 1);
        let child = match &e.body {
            Body::ForkVma(v) => v.child_mm,
            Body::ForkCopy(c) => c.child_mm,
            Body::TaskFork(f) => f.child_mm,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(child, 2);
    }
    assert!(matches!(&evs[0].body, Body::ForkCopy(c) if c.new_pfn == Some(0x999)));
    let s = rig.d.stats();
    assert_eq!(
        (s.fork_joined, s.fork_unjoined, s.fork_windows_expired),
        (3, 0, 0)
    );
}

#[test]
fn other_tasks_are_not_delayed() {
    let mut rig = Rig::new(false);
    assert!(rig.feed(&fork_vma(10, 100, CHILD_MM, 0x1000)).is_empty());
    // Another task's fault and another fork, interleaved.
    assert_eq!(
        fork_view(&rig.feed(&cow(11, 200, OTHER_MM))),
        vec![("cow", None)]
    );
    assert!(
        rig.feed(&fork_vma(12, 300, OTHER_MM + 0x1000, 0x1000))
            .is_empty()
    );
    assert!(rig.feed(&fork_vma(13, 100, CHILD_MM, 0x2000)).is_empty());
    let evs = rig.feed(&task_fork(14, 300, 301, OTHER_MM + 0x1000));
    assert_eq!(
        fork_view(&evs),
        vec![("vma", Some(301)), ("fork", Some(301))]
    );
    let evs = rig.feed(&task_fork(15, 100, 101, CHILD_MM));
    assert_eq!(
        fork_view(&evs),
        vec![("vma", Some(101)), ("vma", Some(101)), ("fork", Some(101))]
    );
}

#[test]
fn thread_clone_passes_through_with_shared_mm() {
    let mut rig = Rig::new(false);
    let evs = rig.feed(&task_fork(1, 100, 102, PARENT_MM));
    assert_eq!(fork_view(&evs), vec![("fork", Some(102))]);
    assert!(matches!(&evs[0].body, Body::TaskFork(f) if f.child_mm == evs[0].mm));
}

#[test]
fn failed_fork_flushed_when_next_window_starts() {
    let mut rig = Rig::new(false);
    assert!(rig.feed(&fork_vma(10, 100, CHILD_MM, 0x1000)).is_empty());
    // Same tid copies for another child mm: the first fork failed.
    let evs = rig.feed(&fork_vma(20, 100, OTHER_MM, 0x1000));
    assert_eq!(fork_view(&evs), vec![("vma", None)]);
    let evs = rig.feed(&task_fork(21, 100, 101, OTHER_MM));
    assert_eq!(
        fork_view(&evs),
        vec![("vma", Some(101)), ("fork", Some(101))]
    );
    let s = rig.d.stats();
    assert_eq!(
        (s.fork_joined, s.fork_unjoined, s.fork_windows_expired),
        (1, 1, 1)
    );
}

#[test]
fn failed_fork_flushed_after_timeout_and_by_exit_and_finish() {
    let mut rig = Rig::new(false);
    assert!(rig.feed(&fork_vma(10, 100, CHILD_MM, 0x1000)).is_empty());
    // Just under a second later: still held.
    assert_eq!(
        fork_view(&rig.feed(&cow(9 + SEC, 200, OTHER_MM))),
        vec![("cow", None)]
    );
    // A second after the window's last record: flushed before the new event.
    let evs = rig.feed(&cow(10 + SEC, 200, OTHER_MM));
    assert_eq!(fork_view(&evs), vec![("vma", None), ("cow", None)]);

    // The parent thread exits mid-window.
    assert!(
        rig.feed(&fork_vma(20 + SEC, 100, CHILD_MM + 0x10, 0x1000))
            .is_empty()
    );
    let evs = rig.feed(&task_exit(21 + SEC, 100));
    assert_eq!(fork_view(&evs), vec![("vma", None), ("exit", None)]);

    // finish() flushes what is left, oldest window first.
    assert!(
        rig.feed(&fork_vma(30 + SEC, 300, CHILD_MM + 0x20, 0x1000))
            .is_empty()
    );
    assert!(
        rig.feed(&fork_copy(31 + SEC, 400, CHILD_MM + 0x30, 0x1000))
            .is_empty()
    );
    let mut out = Vec::new();
    rig.d.finish(&mut out);
    assert_eq!(fork_view(&out), vec![("vma", None), ("copy", None)]);
    assert_eq!((out[0].task.tid, out[1].task.tid), (300, 400));
    let s = rig.d.stats();
    assert_eq!((s.fork_unjoined, s.fork_windows_expired), (4, 4));
    let mut again = Vec::new();
    rig.d.finish(&mut again);
    assert!(again.is_empty());
}

#[test]
fn fork_timeout_counts_from_last_record() {
    let mut rig = Rig::new(false);
    // A long fork: records keep coming, 0.6 s apart.
    for i in 0..4 {
        assert!(
            rig.feed(&fork_vma(10 + i * 600_000_000, 100, CHILD_MM, i << 12))
                .is_empty()
        );
    }
    let evs = rig.feed(&task_fork(2 * SEC, 100, 101, CHILD_MM));
    assert_eq!(evs.len(), 5);
    assert_eq!(rig.d.stats().fork_joined, 4);
}

#[test]
fn fork_caps_bound_buffering() {
    let limits = DecodeLimits {
        fork: ForkLimits {
            timeout_ns: SEC,
            per_tid: 3,
            total: 5,
        },
        ..DecodeLimits::default()
    };
    // Per tid: the 4th record flushes all four unjoined.
    let mut rig = Rig::with_limits(false, limits);
    for i in 0..3 {
        assert!(
            rig.feed(&fork_vma(10 + i, 100, CHILD_MM, i << 12))
                .is_empty()
        );
    }
    let evs = rig.feed(&fork_vma(13, 100, CHILD_MM, 3 << 12));
    assert_eq!(fork_view(&evs), vec![("vma", None); 4]);
    assert_eq!(rig.d.fork.held(), 0);

    // Total: 2 + 2 + 1 held; the 6th flushes the least recently active
    // window (tid 100), the others keep waiting and still join.
    let mut rig = Rig::with_limits(false, limits);
    for (t, tid, mm) in [
        (10, 100, CHILD_MM),
        (11, 100, CHILD_MM),
        (20, 200, OTHER_MM),
    ] {
        assert!(rig.feed(&fork_vma(t, tid, mm, t << 12)).is_empty());
    }
    for (t, tid, mm) in [(21, 200, OTHER_MM), (30, 300, OTHER_MM + 1)] {
        assert!(rig.feed(&fork_vma(t, tid, mm, t << 12)).is_empty());
    }
    let evs = rig.feed(&fork_vma(31, 300, OTHER_MM + 1, 31 << 12));
    assert_eq!(fork_view(&evs), vec![("vma", None); 2]);
    assert!(evs.iter().all(|e| e.task.tid == 100));
    assert!(
        rig.feed(&fork_vma(32, 300, OTHER_MM + 1, 32 << 12))
            .is_empty()
    );
    assert_eq!(rig.d.fork.held(), 5);
    let evs = rig.feed(&task_fork(34, 300, 301, OTHER_MM + 1));
    assert_eq!(
        fork_view(&evs),
        vec![
            ("vma", Some(301)),
            ("vma", Some(301)),
            ("vma", Some(301)),
            ("fork", Some(301))
        ]
    );
    let evs = rig.feed(&task_fork(35, 200, 201, OTHER_MM));
    assert_eq!(
        fork_view(&evs),
        vec![("vma", Some(201)), ("vma", Some(201)), ("fork", Some(201))]
    );
    let s = rig.d.stats();
    assert_eq!(
        (s.fork_joined, s.fork_unjoined, s.fork_windows_expired),
        (5, 2, 1)
    );
}

#[test]
fn reused_mm_address_gets_a_fresh_id_at_fork() {
    let mut rig = Rig::new(false);
    // A process ran with CHILD_MM's address (id 1), exited, its mm was freed.
    assert_eq!(rig.feed(&cow(1, 7, CHILD_MM))[0].mm, 1);
    rig.feed(&fork_vma(2, 100, CHILD_MM, 0));
    let evs = rig.feed(&task_fork(3, 100, 101, CHILD_MM));
    // Parent PARENT_MM is id 2; the new child mm id 3, not 1.
    assert!(matches!(&evs[0].body, Body::ForkVma(v) if v.child_mm == 3));
    assert!(matches!(&evs[1].body, Body::TaskFork(f) if f.child_mm == 3));
    assert_eq!(rig.feed(&cow(4, 101, CHILD_MM))[0].mm, 3);
}

#[test]
fn short_and_unknown_records_are_counted_not_fatal() {
    let mut rig = Rig::new(false);
    let good = to_bytes(&cow(1, 1, PARENT_MM));
    assert!(matches!(
        rig.feed_bytes(&good[..20]),
        Err(DecodeError::TruncatedHeader { len: 20 })
    ));
    // Header says a fault record but the entry is cut short.
    assert!(matches!(
        rig.feed_bytes(&good[..100]),
        Err(DecodeError::BadSize { .. })
    ));
    // A fault record whose size covers only its header.
    let mut r = cow(1, 1, PARENT_MM);
    r.hdr.size = size_of::<Header>() as u32;
    assert!(matches!(
        rig.feed_bytes(&to_bytes(&r)),
        Err(DecodeError::Short {
            kind: kind::COW_FAULT,
            ..
        })
    ));
    let mut r = cow(1, 1, PARENT_MM);
    r.hdr.kind = 99;
    assert_eq!(
        rig.feed_bytes(&to_bytes(&r)),
        Err(DecodeError::UnknownKind(99))
    );
    let mut r = cow(1, 1, PARENT_MM);
    r.site = 9;
    assert!(matches!(
        rig.feed_bytes(&to_bytes(&r)),
        Err(DecodeError::BadField {
            field: "site",
            value: 9,
            ..
        })
    ));
    let mut g = gup_rec(1, -1);
    g.path = 0;
    assert!(matches!(
        rig.feed_bytes(&to_bytes(&g)),
        Err(DecodeError::BadField { .. })
    ));
    // A longer record (newer producer) decodes.
    let mut r = cow(1, 1, PARENT_MM);
    r.hdr.size += 8;
    let mut bytes = to_bytes(&r);
    bytes.extend([0u8; 8]);
    assert_eq!(rig.feed_bytes(&bytes).unwrap().len(), 1);
    assert_eq!(rig.feed(&cow(2, 1, PARENT_MM)).len(), 1);
    let s = rig.d.stats();
    assert_eq!(
        (s.records, s.short_records, s.unknown_kinds, s.bad_fields),
        (2, 3, 1, 2)
    );
}

#[test]
fn skipped_runs_make_a_lost_event_without_a_cpu() {
    let mut rig = Rig::new(false);
    let mut out = Vec::new();
    rig.d.skipped(5, tracer_common::hook::WP_FAULT, 0, &mut out);
    assert!(out.is_empty());
    rig.d.skipped(6, tracer_common::hook::WP_FAULT, 4, &mut out);
    assert_eq!(
        out.iter().map(|e| &e.body).collect::<Vec<_>>(),
        [&Body::Lost(Lost {
            hook: "wp_fault".into(),
            cpu: 0,
            dropped: 0,
            errors: 0,
            skipped: 4,
        })]
    );
}

#[test]
fn lost_only_when_non_zero() {
    let mut rig = Rig::new(false);
    let mut out = Vec::new();
    rig.d
        .lost(5, tracer_common::hook::GUP_FAST, 3, 0, 0, &mut out);
    assert!(out.is_empty());
    rig.d
        .lost(5, tracer_common::hook::GUP_FAST, 3, 7, 1, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].time_ns, out[0].cpu, out[0].mm), (5, 3, 0));
    assert_eq!(
        out[0].body,
        Body::Lost(Lost {
            hook: "gup_fast".into(),
            cpu: 3,
            dropped: 7,
            errors: 1,
            skipped: 0,
        })
    );
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the ring buffer hands over, decoding returns (an error
        /// or events) and the decoder stays usable: no panic, no overflow.
        #[test]
        fn arbitrary_entries_never_panic(
            entries in proptest::collection::vec(
                (0u16..10, proptest::collection::vec(any::<u8>(), 0..200)),
                1..40,
            ),
        ) {
            let mut rig = Rig::with_limits(false, DecodeLimits {
                pointer_ids: 4,
                stack_ids: 2,
                fork: ForkLimits { timeout_ns: 5, per_tid: 2, total: 3 },
            });
            rig.stacks.stacks.insert(1, vec![1, 2]);
            let mut ok = 0u64;
            for (kind, mut bytes) in entries {
                if bytes.len() >= 8 {
                    // Make the envelope plausible often enough to reach
                    // the record decoders.
                    bytes[..2].copy_from_slice(&kind.to_ne_bytes());
                    let size = bytes.len() as u32;
                    bytes[4..8].copy_from_slice(&size.to_ne_bytes());
                }
                if rig.feed_bytes(&bytes).is_ok() {
                    ok += 1;
                }
            }
            let mut out = Vec::new();
            rig.d.finish(&mut out);
            prop_assert_eq!(rig.d.fork.held(), 0);
            let s = rig.d.stats();
            prop_assert_eq!(s.records, ok);
        }
    }
}
