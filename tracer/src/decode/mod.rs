//! Raw wire records into [`crate::model::Event`]s. Pure and synchronous.
//!
//! The eBPF side records raw witnesses (PTE values, page words, flag
//! words); this module names them with the running kernel's constants
//! ([`KernelConsts`]) and derives the kernel's decisions from them:
//!
//! - `wire`: envelope checks and unaligned copies of ring buffer entries;
//! - `cow`: COW fault decision table and page state;
//! - `gup`: GUP grabs (FOLL_* flags, per-helper return conventions), unpins;
//! - `stacks`: stack ids into `StackDef` events, once per trace;
//! - `fork`: joins fork page-table copies with the child's pid;
//! - `pointers`: kernel pointers into per-trace ids;
//! - `counts`: lean mode's in-kernel decision counts.
//!
//! [`Decoder`] ties them together and keeps the per-trace state.

pub mod consts;
mod counts;
mod cow;
mod fork;
mod gup;
mod pointers;
mod stacks;
mod swap;
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub mod synthetic;
mod wire;

pub use consts::KernelConsts;
pub use counts::counted;
pub use fork::ForkLimits;
pub use gup::RetKind;
pub use stacks::{NoStacks, NoSymbols, StackSource, Symbolizer};

use serde::{Deserialize, Serialize};
use tracer_common::{
    CowFaultRecord, ForkCopyRecord, ForkVmaRecord, GupRecord, Header, TaskExitRecord,
    TaskForkRecord, UnpinRecord, hook, kind,
};

use crate::model::{Body, Comm, Event, ForkCopy, ForkVma, Lost, Task, TaskFork};
use fork::ForkJoin;
use pointers::PointerIds;
use stacks::StackDefs;
use wire::Entry;

/// Why a ring buffer entry was not decoded. None is fatal: the decoder
/// counts each in [`DecodeStats`] and goes on with the next entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("ring buffer entry of {len} bytes is shorter than a record header")]
    TruncatedHeader { len: usize },
    #[error("record header claims {claimed} bytes but the entry holds {len}")]
    BadSize { claimed: u32, len: usize },
    #[error("record of kind {kind} is {size} bytes, shorter than its {need}-byte struct")]
    Short { kind: u16, size: usize, need: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("record of kind {kind}: unknown {field} value {value}")]
    BadField {
        kind: u16,
        field: &'static str,
        value: u64,
    },
}

/// What the decoder needs to know about the kernel and the recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecoderConfig {
    pub consts: KernelConsts,
    /// Return convention of the slow-path grab helper the plan attached.
    pub slow_ret: RetKind,
    /// Return convention of the fast-path grab helper the plan attached.
    pub fast_ret: RetKind,
    /// Keep kernel pointers (`mm`, unknown stack frames) instead of ids.
    pub raw_pointers: bool,
}

/// Memory bounds of the decoder's per-trace state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Kernel pointers remembered for id assignment (least recently used
    /// evicted beyond this; see `pointers`).
    pub pointer_ids: usize,
    /// Stack ids remembered as defined (the set is cleared beyond this and
    /// stacks are defined again).
    pub stack_ids: usize,
    pub fork: ForkLimits,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            pointer_ids: 64 * 1024,
            // Four times the BPF stack map's size.
            stack_ids: 4 * tracer_common::STACKS_MAX_ENTRIES as usize,
            fork: ForkLimits::default(),
        }
    }
}

/// Counters for reports ("the trace is incomplete because ...").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeStats {
    /// Records decoded into events.
    pub records: u64,
    /// Records of a kind this version does not know.
    pub unknown_kinds: u64,
    /// Truncated entries, bad sizes, records shorter than their struct.
    pub short_records: u64,
    /// Records with an unknown site or GUP path.
    pub bad_fields: u64,
    /// Fork copy events emitted with their child's pid.
    pub fork_joined: u64,
    /// Fork copy events emitted without it (failed fork, or a bound hit).
    pub fork_unjoined: u64,
    /// Fork windows closed without their `sched_process_fork`.
    pub fork_windows_expired: u64,
    /// `StackDef` events emitted.
    pub stacks_defined: u64,
    /// Stack ids whose frames were no longer available.
    pub stacks_missing: u64,
    /// Kernel pointers forgotten to bound memory (they get new ids if seen again).
    pub pointer_ids_evicted: u64,
}

/// Decodes one trace's records. Holds per-trace state (pointer ids, stacks
/// defined, pending fork joins), so use one decoder per recording.
#[derive(Debug)]
pub struct Decoder {
    cfg: DecoderConfig,
    pointers: PointerIds,
    stacks: StackDefs,
    fork: ForkJoin,
    stats: DecodeStats,
}

impl Decoder {
    pub fn new(cfg: DecoderConfig) -> Self {
        Self::with_limits(cfg, DecodeLimits::default())
    }

    pub fn with_limits(cfg: DecoderConfig, limits: DecodeLimits) -> Self {
        Decoder {
            pointers: PointerIds::new(cfg.raw_pointers, limits.pointer_ids),
            stacks: StackDefs::new(limits.stack_ids, cfg.raw_pointers),
            fork: ForkJoin::new(limits.fork),
            stats: DecodeStats::default(),
            cfg,
        }
    }

    /// Decodes one ring buffer entry, appending zero or more events to
    /// `out` (a `StackDef` before the first `Gup` using it; held fork
    /// events when their join completes or expires). Errors are counted in
    /// [`Decoder::stats`] and leave the decoder usable.
    ///
    /// A `CowFault` record does not allocate beyond `out`'s growth: it is
    /// the hot path (one per write-protect fault).
    pub fn decode(
        &mut self,
        raw: &[u8],
        stacks: &mut dyn StackSource,
        sym: &dyn Symbolizer,
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        let res = Entry::parse(raw).and_then(|e| {
            self.fork.expire(e.hdr.time_ns, out);
            self.dispatch(&e, stacks, sym, out)
        });
        match &res {
            Ok(()) => self.stats.records += 1,
            Err(DecodeError::UnknownKind(_)) => self.stats.unknown_kinds += 1,
            Err(DecodeError::BadField { .. }) => self.stats.bad_fields += 1,
            Err(
                DecodeError::TruncatedHeader { .. }
                | DecodeError::BadSize { .. }
                | DecodeError::Short { .. },
            ) => self.stats.short_records += 1,
        }
        res
    }

    /// Synthesizes a `Lost` event for what a hook on a cpu dropped
    /// (`dropped`: ring buffer full) or failed to read (`errors`) since the
    /// previous call for that hook and cpu. Nothing when both are zero.
    pub fn lost(
        &mut self,
        time_ns: u64,
        hook: u16,
        cpu: u32,
        dropped: u64,
        errors: u64,
        out: &mut Vec<Event>,
    ) {
        self.push_lost(time_ns, hook, cpu, [dropped, errors, 0], out);
    }

    /// Synthesizes a `Lost` event for trampoline invocations of `hook` the
    /// kernel skipped (its recursion guard) since the previous call; the
    /// kernel does not say on which CPU. Nothing when zero.
    pub fn skipped(&mut self, time_ns: u64, hook: u16, skipped: u64, out: &mut Vec<Event>) {
        self.push_lost(time_ns, hook, 0, [0, 0, skipped], out);
    }

    fn push_lost(
        &mut self,
        time_ns: u64,
        hook: u16,
        cpu: u32,
        [dropped, errors, skipped]: [u64; 3],
        out: &mut Vec<Event>,
    ) {
        if dropped == 0 && errors == 0 && skipped == 0 {
            return;
        }
        self.fork.expire(time_ns, out);
        out.push(Event {
            time_ns,
            cpu,
            task: Task::default(),
            mm: 0,
            body: Body::Lost(Lost {
                hook: hook::name(hook).to_owned(),
                cpu,
                dropped,
                errors,
                skipped,
            }),
        });
    }

    /// End of the recording: emits the fork events still waiting for a
    /// `sched_process_fork`, unjoined.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        self.fork.finish(out);
    }

    pub fn stats(&self) -> DecodeStats {
        let f = self.fork.counters;
        DecodeStats {
            fork_joined: f.joined,
            fork_unjoined: f.unjoined,
            fork_windows_expired: f.windows_expired,
            stacks_missing: self.stacks.missing,
            pointer_ids_evicted: self.pointers.evicted,
            ..self.stats
        }
    }

    fn dispatch(
        &mut self,
        e: &Entry<'_>,
        stacks: &mut dyn StackSource,
        sym: &dyn Symbolizer,
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        let k = e.hdr.kind;
        match k {
            kind::COW_FAULT => {
                let r: CowFaultRecord = e.read()?;
                let body = cow::cow_fault(&r, &self.cfg.consts).ok_or(DecodeError::BadField {
                    kind: k,
                    field: "site",
                    value: r.site.into(),
                })?;
                let ev = self.event(&r.hdr, Body::CowFault(body));
                out.push(ev);
            }
            kind::GUP => {
                let r: GupRecord = e.read()?;
                let c = &self.cfg;
                let mut body = gup::gup(&r, &c.consts, c.slow_ret, c.fast_ret).ok_or(
                    DecodeError::BadField {
                        kind: k,
                        field: "gup path",
                        value: r.path.into(),
                    },
                )?;
                let resolved = self.stacks.resolve(r.stack_id, stacks, sym);
                body.stack = resolved.id;
                if let Some(def) = resolved.def {
                    self.stats.stacks_defined += 1;
                    let ev = self.event(&r.hdr, Body::StackDef(def));
                    out.push(ev);
                }
                let ev = self.event(&r.hdr, Body::Gup(body));
                out.push(ev);
            }
            kind::UNPIN => {
                let r: UnpinRecord = e.read()?;
                let ev = self.event(&r.hdr, Body::Unpin(gup::unpin(&r, &self.cfg.consts)));
                out.push(ev);
            }
            kind::FORK_VMA => {
                let r: ForkVmaRecord = e.read()?;
                self.parent_first(&r.hdr);
                let body = ForkVma {
                    child_mm: self.pointers.forking(r.child_mm, r.hdr.tid),
                    child_pid: None,
                    start: r.start,
                    end: r.end,
                    vm_flags: r.vm_flags,
                };
                let ev = self.event(&r.hdr, Body::ForkVma(body));
                self.fork.hold(r.hdr.tid, r.child_mm, ev, out);
            }
            kind::FORK_COPY => {
                let r: ForkCopyRecord = e.read()?;
                self.parent_first(&r.hdr);
                let body = ForkCopy {
                    child_mm: self.pointers.forking(r.child_mm, r.hdr.tid),
                    child_pid: None,
                    address: r.address,
                    new_pfn: (r.new_pfn != 0).then_some(r.new_pfn),
                };
                let ev = self.event(&r.hdr, Body::ForkCopy(body));
                self.fork.hold(r.hdr.tid, r.child_mm, ev, out);
            }
            kind::TASK_FORK => {
                let r: TaskForkRecord = e.read()?;
                self.parent_first(&r.hdr);
                // CLONE_VM (threads, vfork) shares the parent's mm: not a new
                // address space. Otherwise the child mm is new even if its
                // address was seen before (see `pointers`).
                let child_mm = if r.child_mm == r.hdr.mm {
                    self.pointers.id(r.child_mm)
                } else {
                    self.pointers.forked(r.child_mm, r.hdr.tid)
                };
                self.fork.join(r.hdr.tid, r.child_mm, r.child_pid, out);
                let body = TaskFork {
                    child_pid: r.child_pid,
                    child_tid: r.child_tid,
                    child_mm,
                };
                let ev = self.event(&r.hdr, Body::TaskFork(body));
                out.push(ev);
            }
            kind::TASK_EXIT => {
                let r: TaskExitRecord = e.read()?;
                self.fork.task_exit(r.hdr.tid, out);
                let ev = self.event(&r.hdr, Body::TaskExit);
                out.push(ev);
            }
            other => return Err(DecodeError::UnknownKind(other)),
        }
        Ok(())
    }

    /// Ids go in order of first appearance: a record names its own (the
    /// parent's) mm before the child's.
    fn parent_first(&mut self, hdr: &Header) {
        self.pointers.id(hdr.mm);
    }

    /// The envelope of an event from a record header.
    fn event(&mut self, hdr: &Header, body: Body) -> Event {
        Event {
            time_ns: hdr.time_ns,
            cpu: hdr.cpu,
            task: Task {
                pid: hdr.pid,
                tid: hdr.tid,
                comm: Comm(hdr.comm),
            },
            mm: self.pointers.id(hdr.mm),
            body,
        }
    }
}

#[cfg(test)]
mod tests;
