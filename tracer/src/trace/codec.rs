//! The record codec: `model::Event` <-> the bytes inside one block
//! (before compression). Pure: no I/O.
//!
//! Each record is `kind (varint) | length (varint) | payload`. The payload of
//! an event record starts with a common part (a "changed fields" bitmap,
//! the time delta, then only the task/cpu/mm fields that differ from the
//! previous event in the block), followed by the body. Times, addresses and
//! pfns are coded as zigzag deltas against the previous event *in the same
//! block*, so every block decodes on its own. `docs/trace-format.md` is the
//! normative description; keep the two in step.

use super::varint::{Cursor, DecodeError, apply_delta, delta, put_bytes, put_i, put_u};
use crate::model::{
    Body, Comm, CowFault, Decision, Event, FaultKind, ForkCopy, ForkVma, Gup, GupPath, Lost,
    PageState, Site, StackDef, Task, TaskFork, Unpin,
};

/// Record kinds. Numbers are never reused once retired.
pub mod kind {
    pub const COW_FAULT: u64 = 1;
    pub const GUP: u64 = 2;
    pub const UNPIN: u64 = 3;
    pub const FORK_VMA: u64 = 4;
    pub const FORK_COPY: u64 = 5;
    pub const TASK_FORK: u64 = 6;
    pub const TASK_EXIT: u64 = 7;
    pub const LOST: u64 = 8;
    pub const STACK_DEF: u64 = 9;
}

/// Bits of the common part's "changed" bitmap.
mod changed {
    pub const CPU: u64 = 1 << 0;
    pub const PID: u64 = 1 << 1;
    pub const TID: u64 = 1 << 2;
    pub const COMM: u64 = 1 << 3;
    pub const MM: u64 = 1 << 4;
}

/// What the delta coding is relative to. Reset at every block start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeltaState {
    time: u64,
    cpu: u32,
    pid: u32,
    tid: u32,
    comm: Comm,
    mm: u64,
    /// Last user address (CowFault, Gup, ForkCopy address; ForkVma start).
    address: u64,
    /// Last pfn (CowFault, Gup, Unpin).
    pfn: u64,
    /// Last new pfn (CowFault, ForkCopy).
    new_pfn: u64,
}

/// Appends `ev` as one framed record to `out`, advancing `st`.
pub fn encode_event(st: &mut DeltaState, ev: &Event, out: &mut Vec<u8>) {
    let mut p = Vec::with_capacity(32);
    encode_common(st, ev, &mut p);
    let kind = encode_body(st, &ev.body, &mut p);
    put_u(out, kind);
    put_bytes(out, &p);
}

fn encode_common(st: &mut DeltaState, ev: &Event, p: &mut Vec<u8>) {
    let t = &ev.task;
    let mut bits = 0;
    for (cond, bit) in [
        (ev.cpu != st.cpu, changed::CPU),
        (t.pid != st.pid, changed::PID),
        (t.tid != st.tid, changed::TID),
        (t.comm != st.comm, changed::COMM),
        (ev.mm != st.mm, changed::MM),
    ] {
        if cond {
            bits |= bit;
        }
    }
    put_u(p, bits);
    put_i(p, delta(st.time, ev.time_ns));
    st.time = ev.time_ns;
    if bits & changed::CPU != 0 {
        put_u(p, ev.cpu.into());
        st.cpu = ev.cpu;
    }
    if bits & changed::PID != 0 {
        put_u(p, t.pid.into());
        st.pid = t.pid;
    }
    if bits & changed::TID != 0 {
        put_u(p, t.tid.into());
        st.tid = t.tid;
    }
    if bits & changed::COMM != 0 {
        // All 16 bytes minus trailing NULs: exact, including bytes a kernel
        // may leave after the terminator.
        let n = t.comm.0.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        put_bytes(p, &t.comm.0[..n]);
        st.comm = t.comm;
    }
    if bits & changed::MM != 0 {
        put_u(p, ev.mm);
        st.mm = ev.mm;
    }
}

fn page_bits(ps: &PageState) -> u64 {
    let ae = match ps.anon_exclusive {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    };
    u64::from(ps.valid)
        | u64::from(ps.anon) << 1
        | ae << 2
        | u64::from(ps.ksm) << 4
        | u64::from(ps.swapcache) << 5
        | u64::from(ps.large) << 6
}

fn addr(st: &mut DeltaState, p: &mut Vec<u8>, a: u64) {
    put_i(p, delta(st.address, a));
    st.address = a;
}

fn pfn(st: &mut DeltaState, p: &mut Vec<u8>, v: u64) {
    put_i(p, delta(st.pfn, v));
    st.pfn = v;
}

fn new_pfn(st: &mut DeltaState, p: &mut Vec<u8>, v: Option<u64>) {
    if let Some(v) = v {
        put_i(p, delta(st.new_pfn, v));
        st.new_pfn = v;
    }
}

fn encode_body(st: &mut DeltaState, body: &Body, p: &mut Vec<u8>) -> u64 {
    match body {
        Body::CowFault(c) => {
            let site = match c.site {
                Site::Wp => 0,
                Site::Swap => 1,
                Site::Thp => 2,
                Site::Hugetlb => 3,
            };
            let decision = match c.decision {
                Decision::Reuse => 0,
                Decision::Copy => 1,
                Decision::Other => 2,
            };
            let bits = site
                | u64::from(c.fault == FaultKind::Unshare) << 2
                | decision << 3
                | u64::from(c.shared_mapping) << 5
                | u64::from(c.new_pfn.is_some()) << 6
                | page_bits(&c.page) << 7;
            put_u(p, bits);
            addr(st, p, c.address);
            pfn(st, p, c.pfn);
            new_pfn(st, p, c.new_pfn);
            put_u(p, c.ret.into());
            put_i(p, c.page.refcount.into());
            put_i(p, c.page.mapcount.into());
            // Appended in format 1.0 (readers before it ignore it): 0 for
            // none, else the swap count + 1.
            put_u(p, c.swap_count.map_or(0, |n| u64::from(n) + 1));
            kind::COW_FAULT
        }
        Body::Gup(g) => {
            let bits = u64::from(g.path == GupPath::Fast)
                | u64::from(g.pin) << 1
                | u64::from(g.write) << 2
                | u64::from(g.longterm) << 3
                | u64::from(g.force) << 4
                | u64::from(g.failed) << 5
                | u64::from(g.stack.is_some()) << 6
                | page_bits(&g.page) << 7;
            put_u(p, bits);
            addr(st, p, g.address);
            pfn(st, p, g.pfn);
            put_u(p, g.refs.into());
            put_i(p, g.page.refcount.into());
            put_i(p, g.page.mapcount.into());
            if let Some(s) = g.stack {
                put_u(p, s.into());
            }
            kind::GUP
        }
        Body::Unpin(u) => {
            put_u(p, u64::from(u.pin));
            pfn(st, p, u.pfn);
            put_u(p, u.refs.into());
            put_i(p, u.refcount_before.into());
            kind::UNPIN
        }
        Body::ForkVma(f) => {
            put_u(p, u64::from(f.child_pid.is_some()));
            put_u(p, f.child_mm);
            if let Some(pid) = f.child_pid {
                put_u(p, pid.into());
            }
            addr(st, p, f.start);
            put_u(p, f.end.wrapping_sub(f.start));
            put_u(p, f.vm_flags);
            kind::FORK_VMA
        }
        Body::ForkCopy(f) => {
            put_u(
                p,
                u64::from(f.child_pid.is_some()) | u64::from(f.new_pfn.is_some()) << 1,
            );
            put_u(p, f.child_mm);
            if let Some(pid) = f.child_pid {
                put_u(p, pid.into());
            }
            addr(st, p, f.address);
            new_pfn(st, p, f.new_pfn);
            kind::FORK_COPY
        }
        Body::TaskFork(f) => {
            put_u(p, f.child_pid.into());
            put_u(p, f.child_tid.into());
            put_u(p, f.child_mm);
            kind::TASK_FORK
        }
        Body::TaskExit => kind::TASK_EXIT,
        Body::Lost(l) => {
            put_bytes(p, l.hook.as_bytes());
            put_u(p, l.cpu.into());
            put_u(p, l.dropped);
            put_u(p, l.errors);
            put_u(p, l.skipped);
            kind::LOST
        }
        Body::StackDef(s) => {
            put_u(p, s.id.into());
            put_u(p, s.frames.len() as u64);
            for f in &s.frames {
                put_bytes(p, f.as_bytes());
            }
            kind::STACK_DEF
        }
    }
}

/// What one record in a block turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Event(Event),
    /// A record kind this reader does not know (from a newer writer): skipped.
    Unknown(u64),
}

/// Decodes the record at the cursor, advancing `st`. An `Err` that is not
/// [`DecodeError::is_record_local`] leaves `st` unreliable: the caller must
/// drop the rest of the block.
pub fn decode_record(st: &mut DeltaState, c: &mut Cursor<'_>) -> Result<Decoded, DecodeError> {
    let kind = c.u()?;
    let payload = c.len_bytes()?;
    if !(kind::COW_FAULT..=kind::STACK_DEF).contains(&kind) {
        return Ok(Decoded::Unknown(kind));
    }
    // Trailing bytes after the fields we know are fields a newer writer
    // appended: ignored.
    let mut p = Cursor::new(payload);
    let (time_ns, cpu, task, mm) = decode_common(st, &mut p)?;
    let body = decode_body(st, kind, &mut p)?;
    Ok(Decoded::Event(Event {
        time_ns,
        cpu,
        task,
        mm,
        body,
    }))
}

fn decode_common(
    st: &mut DeltaState,
    p: &mut Cursor<'_>,
) -> Result<(u64, u32, Task, u64), DecodeError> {
    let bits = p.u()?;
    st.time = apply_delta(st.time, p.i()?);
    // A bad value here would leave the state wrong for the following
    // records: not local to this one.
    let state = |r: Result<u32, DecodeError>, field| match r {
        Err(DecodeError::BadValue(_)) => Err(DecodeError::BadState(field)),
        other => other,
    };
    if bits & changed::CPU != 0 {
        st.cpu = state(p.u32("cpu"), "cpu")?;
    }
    if bits & changed::PID != 0 {
        st.pid = state(p.u32("pid"), "pid")?;
    }
    if bits & changed::TID != 0 {
        st.tid = state(p.u32("tid"), "tid")?;
    }
    if bits & changed::COMM != 0 {
        let b = p.len_bytes()?;
        if b.len() > 16 {
            return Err(DecodeError::BadState("comm"));
        }
        let mut comm = [0u8; 16];
        comm[..b.len()].copy_from_slice(b);
        st.comm = Comm(comm);
    }
    if bits & changed::MM != 0 {
        st.mm = p.u()?;
    }
    let task = Task {
        pid: st.pid,
        tid: st.tid,
        comm: st.comm,
    };
    Ok((st.time, st.cpu, task, st.mm))
}

fn page_state(bits: u64, refcount: i32, mapcount: i32) -> Result<PageState, DecodeError> {
    let anon_exclusive = match (bits >> 2) & 3 {
        0 => None,
        1 => Some(false),
        2 => Some(true),
        _ => return Err(DecodeError::BadValue("anon_exclusive")),
    };
    Ok(PageState {
        valid: bits & 1 != 0,
        refcount,
        mapcount,
        anon: bits & 2 != 0,
        anon_exclusive,
        ksm: bits & (1 << 4) != 0,
        swapcache: bits & (1 << 5) != 0,
        large: bits & (1 << 6) != 0,
    })
}

fn read_addr(st: &mut DeltaState, p: &mut Cursor<'_>) -> Result<u64, DecodeError> {
    st.address = apply_delta(st.address, p.i()?);
    Ok(st.address)
}

fn read_pfn(st: &mut DeltaState, p: &mut Cursor<'_>) -> Result<u64, DecodeError> {
    st.pfn = apply_delta(st.pfn, p.i()?);
    Ok(st.pfn)
}

fn read_new_pfn(
    st: &mut DeltaState,
    p: &mut Cursor<'_>,
    present: bool,
) -> Result<Option<u64>, DecodeError> {
    if !present {
        return Ok(None);
    }
    st.new_pfn = apply_delta(st.new_pfn, p.i()?);
    Ok(Some(st.new_pfn))
}

/// Reads every field first and judges values last, so that an unknown enum
/// value (a record-local error) never leaves the delta state half advanced.
fn decode_body(st: &mut DeltaState, kind: u64, p: &mut Cursor<'_>) -> Result<Body, DecodeError> {
    Ok(match kind {
        kind::COW_FAULT => {
            let bits = p.u()?;
            let address = read_addr(st, p)?;
            let pfn = read_pfn(st, p)?;
            let new_pfn = read_new_pfn(st, p, bits & (1 << 6) != 0)?;
            let ret = p.u32("ret");
            let refcount = p.i32("refcount");
            let mapcount = p.i32("mapcount");
            // Absent in records from writers before the field: none.
            let swap_count = if p.is_empty() {
                Ok(None)
            } else {
                p.u32("swap_count").map(|n| n.checked_sub(1))
            };
            let site = match bits & 3 {
                0 => Site::Wp,
                1 => Site::Swap,
                2 => Site::Thp,
                _ => Site::Hugetlb,
            };
            let decision = match (bits >> 3) & 3 {
                0 => Decision::Reuse,
                1 => Decision::Copy,
                2 => Decision::Other,
                _ => return Err(DecodeError::BadValue("decision")),
            };
            Body::CowFault(CowFault {
                site,
                fault: if bits & (1 << 2) != 0 {
                    FaultKind::Unshare
                } else {
                    FaultKind::Write
                },
                address,
                pfn,
                new_pfn,
                decision,
                shared_mapping: bits & (1 << 5) != 0,
                ret: ret?,
                page: page_state(bits >> 7, refcount?, mapcount?)?,
                swap_count: swap_count?,
            })
        }
        kind::GUP => {
            let bits = p.u()?;
            let address = read_addr(st, p)?;
            let pfn = read_pfn(st, p)?;
            let refs = p.u32("refs");
            let refcount = p.i32("refcount");
            let mapcount = p.i32("mapcount");
            let stack = if bits & (1 << 6) != 0 {
                Some(p.u32("stack")?)
            } else {
                None
            };
            Body::Gup(Gup {
                path: if bits & 1 != 0 {
                    GupPath::Fast
                } else {
                    GupPath::Slow
                },
                address,
                pfn,
                refs: refs?,
                pin: bits & (1 << 1) != 0,
                write: bits & (1 << 2) != 0,
                longterm: bits & (1 << 3) != 0,
                force: bits & (1 << 4) != 0,
                failed: bits & (1 << 5) != 0,
                page: page_state(bits >> 7, refcount?, mapcount?)?,
                stack,
            })
        }
        kind::UNPIN => {
            let bits = p.u()?;
            let pfn = read_pfn(st, p)?;
            Body::Unpin(Unpin {
                pfn,
                refs: p.u32("refs")?,
                pin: bits & 1 != 0,
                refcount_before: p.i32("refcount_before")?,
            })
        }
        kind::FORK_VMA => {
            let bits = p.u()?;
            let child_mm = p.u()?;
            let child_pid = if bits & 1 != 0 {
                Some(p.u32("child_pid"))
            } else {
                None
            };
            let start = read_addr(st, p)?;
            let child_pid = child_pid.transpose()?;
            let len = p.u()?;
            let vm_flags = p.u()?;
            Body::ForkVma(ForkVma {
                child_mm,
                child_pid,
                start,
                end: start.wrapping_add(len),
                vm_flags,
            })
        }
        kind::FORK_COPY => {
            let bits = p.u()?;
            let child_mm = p.u()?;
            let child_pid = if bits & 1 != 0 {
                Some(p.u32("child_pid"))
            } else {
                None
            };
            let address = read_addr(st, p)?;
            let new_pfn = read_new_pfn(st, p, bits & 2 != 0)?;
            let child_pid = child_pid.transpose()?;
            Body::ForkCopy(ForkCopy {
                child_mm,
                child_pid,
                address,
                new_pfn,
            })
        }
        kind::TASK_FORK => Body::TaskFork(TaskFork {
            child_pid: p.u32("child_pid")?,
            child_tid: p.u32("child_tid")?,
            child_mm: p.u()?,
        }),
        kind::TASK_EXIT => Body::TaskExit,
        kind::LOST => Body::Lost(Lost {
            hook: p.string("hook")?,
            cpu: p.u32("cpu")?,
            dropped: p.u()?,
            errors: p.u()?,
            // Appended (format 1.1): absent in older records.
            skipped: if p.is_empty() { 0 } else { p.u()? },
        }),
        kind::STACK_DEF => {
            let id = p.u32("id")?;
            let n = p.u()?;
            // Each frame takes at least its length byte: bound the
            // allocation by the bytes actually present.
            let cap = usize::try_from(n).unwrap_or(usize::MAX).min(p.remaining());
            let mut frames = Vec::with_capacity(cap);
            let mut bad = None;
            for _ in 0..n {
                match p.string("frames") {
                    Ok(f) => frames.push(f),
                    Err(e @ DecodeError::BadValue(_)) => bad = Some(e),
                    Err(e) => return Err(e),
                }
            }
            if let Some(e) = bad {
                return Err(e);
            }
            Body::StackDef(StackDef { id, frames })
        }
        _ => return Err(DecodeError::BadValue("kind")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(time_ns: u64, body: Body) -> Event {
        Event {
            time_ns,
            cpu: 3,
            task: Task {
                pid: 100,
                tid: 101,
                comm: Comm::new("walker"),
            },
            mm: 7,
            body,
        }
    }

    fn round_trip(events: &[Event]) -> Vec<Event> {
        let mut st = DeltaState::default();
        let mut buf = Vec::new();
        for e in events {
            encode_event(&mut st, e, &mut buf);
        }
        let mut st = DeltaState::default();
        let mut c = Cursor::new(&buf);
        let mut out = Vec::new();
        while !c.is_empty() {
            match decode_record(&mut st, &mut c) {
                Ok(Decoded::Event(e)) => out.push(e),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    #[test]
    fn comm_with_bytes_after_the_nul_round_trips() {
        let mut comm = Comm::new("ab");
        comm.0[5] = 0xff;
        comm.0[15] = b'z';
        let mut e = ev(5, Body::TaskExit);
        e.task.comm = comm;
        assert_eq!(round_trip(&[e.clone()]), vec![e]);
    }

    #[test]
    fn unknown_kind_is_reported_and_skipped() {
        let mut buf = Vec::new();
        put_u(&mut buf, 200);
        put_bytes(&mut buf, &[1, 2, 3, 4]);
        let mut st = DeltaState::default();
        let e = ev(9, Body::TaskExit);
        encode_event(&mut st.clone(), &e, &mut buf);
        let mut c = Cursor::new(&buf);
        assert_eq!(decode_record(&mut st, &mut c), Ok(Decoded::Unknown(200)));
        assert_eq!(decode_record(&mut st, &mut c), Ok(Decoded::Event(e)));
        assert!(c.is_empty());
    }

    #[test]
    fn appended_fields_are_ignored() {
        let e = ev(
            11,
            Body::TaskFork(TaskFork {
                child_pid: 5,
                child_tid: 5,
                child_mm: 9,
            }),
        );
        let mut st = DeltaState::default();
        let mut rec = Vec::new();
        encode_event(&mut st, &e, &mut rec);
        // Re-frame the payload with two extra bytes, as a newer writer would.
        let mut c = Cursor::new(&rec);
        let k = c.u().unwrap();
        let mut payload = c.len_bytes().unwrap().to_vec();
        payload.extend_from_slice(&[0xaa, 0xbb]);
        let mut buf = Vec::new();
        put_u(&mut buf, k);
        put_bytes(&mut buf, &payload);
        let next = ev(12, Body::TaskExit);
        let mut st2 = st;
        encode_event(&mut st2, &next, &mut buf);
        let mut st = DeltaState::default();
        let mut c = Cursor::new(&buf);
        assert_eq!(decode_record(&mut st, &mut c), Ok(Decoded::Event(e)));
        assert_eq!(decode_record(&mut st, &mut c), Ok(Decoded::Event(next)));
    }

    /// One encoded record as a writer from before its last (appended)
    /// field would have written it; `last` is that field's byte.
    fn without_last_byte(record: &[u8], last: u8) -> Vec<u8> {
        let mut c = Cursor::new(record);
        let kind = c.u().unwrap();
        let payload = c.len_bytes().unwrap();
        assert_eq!(payload.last(), Some(&last));
        let mut old = Vec::new();
        put_u(&mut old, kind);
        put_bytes(&mut old, &payload[..payload.len() - 1]);
        old
    }

    #[test]
    fn swap_count_round_trips_and_is_none_in_records_without_it() {
        let cow = CowFault {
            site: Site::Swap,
            fault: FaultKind::Write,
            address: 0x7000_0000_1000,
            pfn: 0,
            new_pfn: None,
            decision: Decision::Other,
            shared_mapping: false,
            ret: 0,
            page: PageState::default(),
            swap_count: Some(2),
        };
        let e = ev(1, Body::CowFault(cow.clone()));
        let mut buf = Vec::new();
        encode_event(&mut DeltaState::default(), &e, &mut buf);
        let mut c = Cursor::new(&buf);
        let got = decode_record(&mut DeltaState::default(), &mut c);
        assert_eq!(got, Ok(Decoded::Event(e)));
        // A record from a writer before the field: its last byte (the
        // swap count, 3 = Some(2)) cut off and the length fixed.
        let old = without_last_byte(&buf, 3);
        let mut c = Cursor::new(&old);
        let want = ev(
            1,
            Body::CowFault(CowFault {
                swap_count: None,
                ..cow
            }),
        );
        assert_eq!(
            decode_record(&mut DeltaState::default(), &mut c),
            Ok(Decoded::Event(want))
        );
    }

    #[test]
    fn lost_skipped_round_trips_and_is_zero_in_records_without_it() {
        let lost = Lost {
            hook: "wp_fault".into(),
            cpu: 0,
            dropped: 4,
            errors: 1,
            skipped: 3,
        };
        let e = ev(1, Body::Lost(lost.clone()));
        let mut buf = Vec::new();
        encode_event(&mut DeltaState::default(), &e, &mut buf);
        let mut c = Cursor::new(&buf);
        assert_eq!(
            decode_record(&mut DeltaState::default(), &mut c),
            Ok(Decoded::Event(e))
        );
        // A format 1.0 record: the last byte (skipped = 3) cut off.
        let old = without_last_byte(&buf, 3);
        let mut c = Cursor::new(&old);
        let want = ev(1, Body::Lost(Lost { skipped: 0, ..lost }));
        assert_eq!(
            decode_record(&mut DeltaState::default(), &mut c),
            Ok(Decoded::Event(want))
        );
    }

    #[test]
    fn unknown_decision_value_is_local_to_its_record() {
        let cow = CowFault {
            site: Site::Wp,
            fault: FaultKind::Write,
            address: 0x7000_0000_1000,
            pfn: 42,
            new_pfn: Some(43),
            decision: Decision::Copy,
            shared_mapping: false,
            ret: 0,
            page: PageState::default(),
            swap_count: None,
        };
        let a = ev(1, Body::CowFault(cow.clone()));
        let b = ev(
            2,
            Body::CowFault(CowFault {
                address: 0x7000_0000_2000,
                ..cow
            }),
        );
        let mut st = DeltaState::default();
        let mut buf = Vec::new();
        encode_event(&mut st, &a, &mut buf);
        let first_len = buf.len();
        encode_event(&mut st, &b, &mut buf);
        // Find the body's bitmap: skip the record's kind and length, then
        // the common part.
        let mut c = Cursor::new(&buf[..first_len]);
        c.u().unwrap();
        c.u().unwrap();
        let payload_start = c.position();
        let mut p = Cursor::new(&buf[payload_start..first_len]);
        let mut scratch = DeltaState::default();
        decode_common(&mut scratch, &mut p).unwrap();
        let bits_at = payload_start + p.position();
        buf[bits_at] |= 3 << 3; // decision = 3: unknown
        let mut st = DeltaState::default();
        let mut c = Cursor::new(&buf);
        let err = decode_record(&mut st, &mut c).unwrap_err();
        assert!(err.is_record_local(), "{err:?}");
        assert_eq!(decode_record(&mut st, &mut c), Ok(Decoded::Event(b)));
    }

    #[test]
    fn comm_longer_than_sixteen_bytes_is_fatal_for_the_block() {
        let mut p = Vec::new();
        put_u(&mut p, changed::COMM);
        put_i(&mut p, 0);
        put_bytes(&mut p, &[b'x'; 17]);
        let mut buf = Vec::new();
        put_u(&mut buf, kind::TASK_EXIT);
        put_bytes(&mut buf, &p);
        let err = decode_record(&mut DeltaState::default(), &mut Cursor::new(&buf)).unwrap_err();
        assert!(!err.is_record_local());
    }

    #[test]
    fn out_of_range_delta_state_fields_are_fatal_for_the_block() {
        let mut p = Vec::new();
        put_u(&mut p, changed::PID);
        put_i(&mut p, 0);
        put_u(&mut p, u64::from(u32::MAX) + 1);
        let mut buf = Vec::new();
        put_u(&mut buf, kind::TASK_EXIT);
        put_bytes(&mut buf, &p);
        let err = decode_record(&mut DeltaState::default(), &mut Cursor::new(&buf)).unwrap_err();
        assert_eq!(err, DecodeError::BadState("pid"));
        assert!(!err.is_record_local());
    }

    #[test]
    fn a_bad_child_pid_still_advances_the_address_state() {
        let fc = |address| {
            ev(
                1,
                Body::ForkCopy(ForkCopy {
                    child_mm: 1,
                    child_pid: Some(9),
                    address,
                    new_pfn: Some(5),
                }),
            )
        };
        let (a, b) = (fc(0x1000), fc(0x3000));
        let mut st = DeltaState::default();
        let mut buf = Vec::new();
        encode_event(&mut st, &a, &mut buf);
        let first = buf.len();
        encode_event(&mut st, &b, &mut buf);
        // Re-encode the first record with a child pid wider than 32 bits.
        let mut p = Vec::new();
        let mut st2 = DeltaState::default();
        encode_common(&mut st2, &a, &mut p);
        put_u(&mut p, 1 | 2);
        put_u(&mut p, 1);
        put_u(&mut p, 1 << 40);
        put_i(&mut p, 0x1000);
        put_i(&mut p, 5);
        let mut bad = Vec::new();
        put_u(&mut bad, kind::FORK_COPY);
        put_bytes(&mut bad, &p);
        bad.extend_from_slice(&buf[first..]);
        let mut st = DeltaState::default();
        let mut c = Cursor::new(&bad);
        assert_eq!(
            decode_record(&mut st, &mut c),
            Err(DecodeError::BadValue("child_pid"))
        );
        assert_eq!(decode_record(&mut st, &mut c), Ok(Decoded::Event(b)));
    }

    #[test]
    fn stack_def_frame_count_beyond_the_payload_fails_cleanly() {
        let mut p = Vec::new();
        put_u(&mut p, 0);
        put_i(&mut p, 0);
        put_u(&mut p, 1); // id
        put_u(&mut p, u64::MAX); // frame count
        let mut buf = Vec::new();
        put_u(&mut buf, kind::STACK_DEF);
        put_bytes(&mut buf, &p);
        let err = decode_record(&mut DeltaState::default(), &mut Cursor::new(&buf)).unwrap_err();
        assert_eq!(err, DecodeError::UnexpectedEnd);
    }
}
