//! Perfetto export: a trace as `TracePacket`s with track events, for the
//! Perfetto UI and trace processor.
//!
//! * a track per process (`TrackDescriptor` with a `ProcessDescriptor`);
//! * COW and unshare faults, FOLL_GET grabs, forks and exits as instants
//!   on the process's track;
//! * each FOLL_PIN as a slice from the grab to its release, on a child
//!   track per (process, page): pins of different pages overlap without
//!   nesting, which slices on one track cannot;
//! * the engine's alerts as instants (category `alert`);
//! * lost-event markers as instants on a global `cowtrace` track.
//!
//! Timestamps are the events' CLOCK_MONOTONIC nanoseconds, written without
//! a clock id: trace processor takes them as its default clock, which keeps
//! relative times exact without a clock snapshot.
//!
//! The protobuf wire format is written by hand (a few field numbers, see
//! `field`): a code generator would cost more than this file.

use std::collections::HashMap;

use crate::model::{Alert, Body, Config, Decision, Engine, Event, FaultKind, KernelCaps, Site};

/// Field numbers of the messages used (perfetto/protos/perfetto/trace).
mod field {
    pub const TRACE_PACKET: u32 = 1;
    pub const PACKET_TIMESTAMP: u32 = 8;
    pub const PACKET_SEQUENCE_ID: u32 = 10;
    pub const PACKET_TRACK_EVENT: u32 = 11;
    pub const PACKET_TRACK_DESCRIPTOR: u32 = 60;
    pub const DESC_UUID: u32 = 1;
    pub const DESC_NAME: u32 = 2;
    pub const DESC_PROCESS: u32 = 3;
    pub const DESC_PARENT_UUID: u32 = 5;
    pub const PROCESS_PID: u32 = 1;
    pub const PROCESS_NAME: u32 = 6;
    pub const EVENT_DEBUG_ANNOTATIONS: u32 = 4;
    pub const EVENT_TYPE: u32 = 9;
    pub const EVENT_TRACK_UUID: u32 = 11;
    pub const EVENT_CATEGORIES: u32 = 22;
    pub const EVENT_NAME: u32 = 23;
    pub const ANNOTATION_UINT: u32 = 3;
    pub const ANNOTATION_STRING: u32 = 6;
    pub const ANNOTATION_NAME: u32 = 10;
}

/// `TrackEvent.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    SliceBegin = 1,
    SliceEnd = 2,
    Instant = 3,
}

/// Our one packet sequence.
const SEQUENCE_ID: u64 = 1;
/// The global track (losses).
const GLOBAL_TRACK: u64 = 1;
const PROCESS_TRACK_BASE: u64 = 1 << 40;
const PIN_TRACK_BASE: u64 = 1 << 48;

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    varint(buf, u64::from(field) << 3);
    varint(buf, v);
}

fn bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    varint(buf, (u64::from(field) << 3) | 2);
    varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// An annotation value.
enum Arg<'a> {
    U(u64),
    S(&'a str),
}

fn annotation(name: &str, value: &Arg<'_>) -> Vec<u8> {
    let mut a = Vec::with_capacity(32);
    bytes(&mut a, field::ANNOTATION_NAME, name.as_bytes());
    match value {
        Arg::U(v) => uint(&mut a, field::ANNOTATION_UINT, *v),
        Arg::S(s) => bytes(&mut a, field::ANNOTATION_STRING, s.as_bytes()),
    }
    a
}

/// A pin slice still open: its track and the references it holds.
struct OpenPin {
    track: u64,
    refs: u32,
}

/// Turns events (in time order) into Perfetto trace bytes.
pub struct PerfettoExporter {
    engine: Engine,
    alerts: Vec<Alert>,
    processes: HashMap<u32, u64>,
    pin_tracks: HashMap<(u32, u64), u64>,
    /// Open pins by pfn, the latest last.
    open: HashMap<u64, Vec<OpenPin>>,
    last_ns: u64,
    started: bool,
}

impl PerfettoExporter {
    /// Alerts come from an engine with `config` over the same events.
    pub fn new(caps: KernelCaps, config: Config) -> Self {
        PerfettoExporter {
            engine: Engine::new(config, caps),
            alerts: Vec::new(),
            processes: HashMap::new(),
            pin_tracks: HashMap::new(),
            open: HashMap::new(),
            last_ns: 0,
            started: false,
        }
    }

    fn packet(out: &mut Vec<u8>, ts: Option<u64>, field: u32, msg: &[u8]) {
        let mut p = Vec::with_capacity(msg.len() + 16);
        if let Some(ts) = ts {
            uint(&mut p, field::PACKET_TIMESTAMP, ts);
        }
        uint(&mut p, field::PACKET_SEQUENCE_ID, SEQUENCE_ID);
        bytes(&mut p, field, msg);
        bytes(out, field::TRACE_PACKET, &p);
    }

    fn descriptor(out: &mut Vec<u8>, uuid: u64, name: &str, parent: Option<u64>, pid: Option<u32>) {
        let mut d = Vec::with_capacity(64);
        uint(&mut d, field::DESC_UUID, uuid);
        bytes(&mut d, field::DESC_NAME, name.as_bytes());
        if let Some(p) = parent {
            uint(&mut d, field::DESC_PARENT_UUID, p);
        }
        if let Some(pid) = pid {
            let mut pd = Vec::with_capacity(32);
            uint(&mut pd, field::PROCESS_PID, u64::from(pid));
            bytes(&mut pd, field::PROCESS_NAME, name.as_bytes());
            bytes(&mut d, field::DESC_PROCESS, &pd);
        }
        Self::packet(out, None, field::PACKET_TRACK_DESCRIPTOR, &d);
    }

    fn track_event(
        out: &mut Vec<u8>,
        ts: u64,
        track: u64,
        kind: EventType,
        category: &str,
        name: &str,
        args: &[(&str, Arg<'_>)],
    ) {
        let mut e = Vec::with_capacity(96);
        uint(&mut e, field::EVENT_TYPE, kind as u64);
        uint(&mut e, field::EVENT_TRACK_UUID, track);
        if kind != EventType::SliceEnd {
            bytes(&mut e, field::EVENT_CATEGORIES, category.as_bytes());
            bytes(&mut e, field::EVENT_NAME, name.as_bytes());
        }
        for (k, v) in args {
            bytes(&mut e, field::EVENT_DEBUG_ANNOTATIONS, &annotation(k, v));
        }
        Self::packet(out, Some(ts), field::PACKET_TRACK_EVENT, &e);
    }

    /// The process's track, described on first sight.
    fn process_track(&mut self, out: &mut Vec<u8>, pid: u32, comm: &str) -> u64 {
        if let Some(&t) = self.processes.get(&pid) {
            return t;
        }
        let t = PROCESS_TRACK_BASE + u64::from(pid);
        Self::descriptor(out, t, comm, None, Some(pid));
        self.processes.insert(pid, t);
        t
    }

    fn pin_track(&mut self, out: &mut Vec<u8>, pid: u32, parent: u64, pfn: u64) -> u64 {
        if let Some(&t) = self.pin_tracks.get(&(pid, pfn)) {
            return t;
        }
        let t = PIN_TRACK_BASE + self.pin_tracks.len() as u64;
        Self::descriptor(out, t, &format!("pin pfn {pfn:#x}"), Some(parent), None);
        self.pin_tracks.insert((pid, pfn), t);
        t
    }

    /// Appends the packets for one event (and the alerts it raised).
    pub fn event(&mut self, ev: &Event, out: &mut Vec<u8>) {
        if !self.started {
            Self::descriptor(out, GLOBAL_TRACK, "cowtrace", None, None);
            self.started = true;
        }
        let ts = ev.time_ns;
        self.last_ns = self.last_ns.max(ts);
        let comm = ev.task.comm.escaped();
        let pid = ev.task.pid;
        match &ev.body {
            Body::CowFault(f) => {
                let track = self.process_track(out, pid, &comm);
                let name = match (f.fault, f.decision) {
                    (FaultKind::Write, Decision::Copy) => "cow copy",
                    (FaultKind::Write, Decision::Reuse) => "cow reuse",
                    (FaultKind::Write, Decision::Other) => "cow other",
                    (FaultKind::Unshare, Decision::Copy) => "unshare copy",
                    (FaultKind::Unshare, Decision::Reuse) => "unshare reuse",
                    (FaultKind::Unshare, Decision::Other) => "unshare other",
                };
                let site = match f.site {
                    Site::Wp => "wp",
                    Site::Swap => "swap",
                    Site::Thp => "thp",
                    Site::Hugetlb => "hugetlb",
                };
                let addr = format!("{:#x}", f.address);
                Self::track_event(
                    out,
                    ts,
                    track,
                    EventType::Instant,
                    "fault",
                    name,
                    &[
                        ("address", Arg::S(&addr)),
                        ("pfn", Arg::U(f.pfn)),
                        ("site", Arg::S(site)),
                        ("refcount", Arg::U(f.page.refcount.max(0) as u64)),
                        ("mapcount", Arg::U(f.page.mapcount.max(0) as u64)),
                    ],
                );
            }
            Body::Gup(g) if g.failed => {}
            Body::Gup(g) if g.pin => {
                let parent = self.process_track(out, pid, &comm);
                let track = self.pin_track(out, pid, parent, g.pfn);
                let addr = format!("{:#x}", g.address);
                let mode = if g.write { "write" } else { "read" };
                Self::track_event(
                    out,
                    ts,
                    track,
                    EventType::SliceBegin,
                    "pin",
                    "FOLL_PIN",
                    &[
                        ("address", Arg::S(&addr)),
                        ("pfn", Arg::U(g.pfn)),
                        ("mode", Arg::S(mode)),
                        ("longterm", Arg::U(u64::from(g.longterm))),
                    ],
                );
                self.open.entry(g.pfn).or_default().push(OpenPin {
                    track,
                    refs: g.refs.max(1),
                });
            }
            Body::Gup(g) => {
                let track = self.process_track(out, pid, &comm);
                let addr = format!("{:#x}", g.address);
                Self::track_event(
                    out,
                    ts,
                    track,
                    EventType::Instant,
                    "gup",
                    "FOLL_GET",
                    &[("address", Arg::S(&addr)), ("pfn", Arg::U(g.pfn))],
                );
            }
            Body::Unpin(u) if u.pin => self.unpin(out, ts, u.pfn, u.refs.max(1)),
            Body::TaskFork(t) => {
                let track = self.process_track(out, pid, &comm);
                Self::track_event(
                    out,
                    ts,
                    track,
                    EventType::Instant,
                    "task",
                    "fork",
                    &[("child_pid", Arg::U(u64::from(t.child_pid)))],
                );
            }
            Body::TaskExit if ev.task.pid == ev.task.tid => {
                let track = self.process_track(out, pid, &comm);
                Self::track_event(out, ts, track, EventType::Instant, "task", "exit", &[]);
            }
            Body::Lost(l) => {
                Self::track_event(
                    out,
                    ts,
                    GLOBAL_TRACK,
                    EventType::Instant,
                    "lost",
                    "events lost",
                    &[
                        ("hook", Arg::S(&l.hook)),
                        ("cpu", Arg::U(u64::from(l.cpu))),
                        ("dropped", Arg::U(l.dropped)),
                        ("errors", Arg::U(l.errors)),
                        ("skipped", Arg::U(l.skipped)),
                    ],
                );
            }
            _ => {}
        }
        self.engine.feed(ev, &mut self.alerts);
        let alerts = std::mem::take(&mut self.alerts);
        for a in &alerts {
            let track = self.process_track(out, a.pid, &a.comm.escaped());
            Self::track_event(
                out,
                a.time_ns,
                track,
                EventType::Instant,
                "alert",
                a.rule.as_str(),
                &[
                    ("severity", Arg::S(a.severity.as_str())),
                    ("message", Arg::S(&a.message)),
                ],
            );
        }
        self.alerts = alerts;
        self.alerts.clear();
    }

    /// Ends pin slices of `pfn`, the latest first, `refs` references worth.
    fn unpin(&mut self, out: &mut Vec<u8>, ts: u64, pfn: u64, mut refs: u32) {
        let Some(stack) = self.open.get_mut(&pfn) else {
            return;
        };
        let mut ended = Vec::new();
        while refs > 0 {
            let Some(top) = stack.last_mut() else { break };
            let n = refs.min(top.refs);
            top.refs -= n;
            refs -= n;
            if top.refs == 0 {
                ended.push(top.track);
                stack.pop();
            }
        }
        if stack.is_empty() {
            self.open.remove(&pfn);
        }
        for track in ended {
            Self::track_event(out, ts, track, EventType::SliceEnd, "", "", &[]);
        }
    }

    /// Ends the pins still held when the trace stops, at its last event.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let ts = self.last_ns;
        let mut open: Vec<(u64, Vec<OpenPin>)> = self.open.drain().collect();
        open.sort_by_key(|(pfn, _)| *pfn);
        for (_, stack) in open {
            for p in stack.into_iter().rev() {
                Self::track_event(out, ts, p.track, EventType::SliceEnd, "", "", &[]);
            }
        }
    }
}

#[cfg(test)]
mod tests;
