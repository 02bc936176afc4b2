//! Synthetic wire records for tests and benchmarks: constant tables shaped
//! like real kernels', record builders, and a deterministic storm of
//! records mimicking `cargo xtask bench`'s cow-storm and gup-storm.
//!
//! Compiled for the crate's own tests and, behind the `test-support`
//! feature, for the benchmarks and integration tests (a bench cannot reach
//! `#[cfg(test)]` code). Not part of the library's API: the tables are test
//! inputs only; the real values come from `kernel::consts` (BTF plus the
//! cited macro table).

use std::mem::size_of;

use tracer_common::{
    CowFaultRecord, ForkVmaRecord, GupRecord, Header, PageSnapshot, TaskExitRecord, TaskForkRecord,
    UnpinRecord, gup_path, hook, kind, site,
};

use super::stacks::{StackSource, Symbolizer};
use super::wire::bytes_of;
use super::{KernelConsts, RetKind};

pub const PRESENT: u64 = 1 << 0;
pub const RW: u64 = 1 << 1;

/// A 4 KiB PTE (or PMD) mapping `pfn` with the given low bits.
pub fn pte(pfn: u64, bits: u64) -> u64 {
    (pfn << 12) | bits
}

/// A readable small anonymous page.
pub fn page(refcount: i32, mapcount: i32) -> PageSnapshot {
    PageSnapshot {
        mapping_low: 0x1,
        refcount,
        mapcount,
        large_mapcount: PageSnapshot::NO_COUNT,
        state: PageSnapshot::VALID,
        ..Default::default()
    }
}

/// A 5.10-like table: FOLL_* and fault flags are the 5.10 macros
/// (include/linux/mm.h), `enum pageflags` numbering of 5.10
/// (PG_owner_priv_1 10, PG_reserved 12, PG_head 16, PG_swapbacked 19), no
/// PG_anon_exclusive, no FAULT_FLAG_UNSHARE.
pub fn consts_5_10() -> KernelConsts {
    KernelConsts {
        foll_write: 0x01,
        foll_get: 0x04,
        foll_pin: 0x40000,
        foll_longterm: 0x10000,
        foll_force: 0x10,
        fault_flag_write: 0x1,
        fault_flag_unshare: None,
        pg_anon_exclusive: None,
        pg_swapcache: Some(10),
        pg_head: 16,
        pg_reserved: Some(12),
        pg_swapbacked: Some(19),
        mapping_anon: 0x1,
        mapping_ksm: 0x3,
        mapping_flags_mask: 0x3,
        vm_shared: 0x8,
        vm_write: 0x2,
        pte_present: PRESENT,
        pte_write: RW,
        pte_pfn_mask: 0x000f_ffff_ffff_f000,
        pmd_pse: 0x80,
        pmd_pat_large: 0x1000,
        // VM_FAULT_ERROR: OOM | SIGBUS | SIGSEGV | HWPOISON | HWPOISON_LARGE | FALLBACK.
        vm_fault_error_mask: 0x873,
        vm_fault_retry: 0x400,
        vm_fault_fallback: 0x800,
    }
}

/// A 6.1-like table: same FOLL_* macros as 5.10, FAULT_FLAG_UNSHARE 1024,
/// PG_anon_exclusive 17 (alias of PG_mappedtodisk).
pub fn consts_6_1() -> KernelConsts {
    KernelConsts {
        fault_flag_unshare: Some(1024),
        pg_anon_exclusive: Some(17),
        ..consts_5_10()
    }
}

/// The 6.1 table with the FOLL_* enum numbering of 6.12 (WRITE=1, GET=2,
/// FORCE=8, LONGTERM=256, PIN=524288) and PG_anon_exclusive 11.
pub fn consts_6_12() -> KernelConsts {
    KernelConsts {
        foll_write: 1,
        foll_get: 2,
        foll_force: 8,
        foll_longterm: 256,
        foll_pin: 524_288,
        pg_anon_exclusive: Some(11),
        ..consts_6_1()
    }
}

/// A header for a record of type `T`.
pub fn hdr<T>(kind: u16, time_ns: u64, pid: u32, tid: u32, mm: u64) -> Header {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"test");
    Header {
        kind,
        hook: 0,
        size: size_of::<T>() as u32,
        time_ns,
        pid,
        tid,
        cpu: 1,
        _pad0: 0,
        mm,
        comm,
    }
}

/// One ring buffer record of a synthetic stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Fault(CowFaultRecord),
    Gup(GupRecord),
    Unpin(UnpinRecord),
    ForkVma(ForkVmaRecord),
    Fork(TaskForkRecord),
    Exit(TaskExitRecord),
}

impl Record {
    /// The record's bytes as the ring buffer carries them.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Record::Fault(r) => bytes_of(r),
            Record::Gup(r) => bytes_of(r),
            Record::Unpin(r) => bytes_of(r),
            Record::ForkVma(r) => bytes_of(r),
            Record::Fork(r) => bytes_of(r),
            Record::Exit(r) => bytes_of(r),
        }
    }
}

/// Return conventions of the grab helpers the storm's records use (those
/// of 6.1: `try_grab_page` returns bool, `try_grab_folio` a pointer).
pub const STORM_SLOW_RET: RetKind = RetKind::BoolTrue;
pub const STORM_FAST_RET: RetKind = RetKind::NonNull;

/// Shape of a [`Storm`]. The defaults are `cargo xtask bench`'s full
/// workloads: a 32 MiB cow-storm buffer and a 4 MiB gup-storm buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StormShape {
    /// Pages of the cow-storm buffer (the child copies each, the parent
    /// then reuses each).
    pub cow_pages: u64,
    /// Pages of the gup-storm buffer (each pinned read-only and unpinned,
    /// then pinned long-term for writing and unpinned, per round).
    pub gup_pages: u64,
    /// VMAs `copy_page_range` copies per fork (the buffer is one of them).
    pub fork_vmas: u64,
}

impl Default for StormShape {
    fn default() -> Self {
        StormShape {
            cow_pages: 8192,
            gup_pages: 1024,
            fork_vmas: 8,
        }
    }
}

impl StormShape {
    /// Records of one round.
    pub fn round_len(&self) -> u64 {
        self.fork_vmas + 1 + 2 * self.cow_pages + 1 + 4 * self.gup_pages
    }
}

/// What the engine should count after decoding whole rounds of a storm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StormTotals {
    pub copies: u64,
    pub reuses: u64,
    pub pins: u64,
    pub unpins: u64,
    pub forks: u64,
}

/// `process_vm_readv` pins at most this many pages before copying and
/// unpinning them (`PVM_MAX_PP_ARRAY_COUNT`, mm/process_vm_access.c).
const PVM_BATCH: u64 = 16;
const COW_BUF: u64 = 0x7f00_0000_0000;
const GUP_BUF: u64 = 0x7e00_0000_0000;
const COW_PID: u32 = 4242;
const COW_MM: u64 = 0xffff_8880_1000_0000;
const GUP_PID: u32 = 4100;
const GUP_MM: u64 = 0xffff_8880_0800_0000;
/// One record every 7 µs of event time (the storms' fault rate).
const GAP_NS: u64 = 7_000;
/// The kernel stack ids of the two GUP paths.
pub const STORM_SLOW_STACK: u32 = 1;
pub const STORM_FAST_STACK: u32 = 2;

/// A deterministic stream of wire records, round after round: a fork of
/// the cow-storm process (its `copy_page_range` records, then
/// `sched_process_fork`), the child's write to every page (copies to fresh
/// pfns), the child's exit, the parent's write to every page (reuses);
/// then the gup-storm process pins its buffer read-only in batches of 16
/// and unpins each batch (`process_vm_readv`), pins it all long-term for
/// writing on the fast path and unpins it all (io_uring buffer
/// registration). Pfns and gaps are pseudo-random but fixed: a too-regular
/// stream would flatter the trace file's compression.
#[derive(Clone, Debug)]
pub struct Storm {
    shape: StormShape,
    consts: KernelConsts,
    /// Records produced so far.
    n: u64,
}

impl Storm {
    /// A storm for a 6.1-like kernel ([`consts_6_1`]).
    pub fn new(shape: StormShape) -> Self {
        Storm {
            shape,
            consts: consts_6_1(),
            n: 0,
        }
    }

    pub fn consts(&self) -> KernelConsts {
        self.consts.clone()
    }

    /// Records produced so far.
    pub fn produced(&self) -> u64 {
        self.n
    }

    /// What `rounds` whole rounds amount to.
    pub fn totals(&self, rounds: u64) -> StormTotals {
        StormTotals {
            copies: rounds * self.shape.cow_pages,
            reuses: rounds * self.shape.cow_pages,
            pins: rounds * 2 * self.shape.gup_pages,
            unpins: rounds * 2 * self.shape.gup_pages,
            forks: rounds,
        }
    }

    /// Appends the next `count` records to `out`.
    pub fn fill(&mut self, count: usize, out: &mut Vec<Record>) {
        out.reserve(count);
        for _ in 0..count {
            out.push(self.record(self.n));
            self.n += 1;
        }
    }

    /// The `n`th record of the stream.
    fn record(&self, n: u64) -> Record {
        let s = &self.shape;
        let len = s.round_len();
        let round = n / len;
        let mut i = n % len;
        let time_ns = 1_000_000_000 + n * GAP_NS + noise(n) % 1000;
        let (child_pid, child_mm) = child_of(round);
        if i < s.fork_vmas {
            let mut h = header::<ForkVmaRecord>(kind::FORK_VMA, hook::FORK_VMA, time_ns);
            h.pid = COW_PID;
            h.tid = COW_PID;
            h.mm = COW_MM;
            // The buffer, then the process's other private VMAs.
            let start = COW_BUF + (i << 32);
            let pages = if i == 0 { s.cow_pages } else { 16 };
            return Record::ForkVma(ForkVmaRecord {
                hdr: h,
                child_mm,
                start,
                end: start + pages * 4096,
                vm_flags: 0x73,
            });
        }
        i -= s.fork_vmas;
        if i == 0 {
            let mut h = header::<TaskForkRecord>(kind::TASK_FORK, hook::TASK, time_ns);
            (h.pid, h.tid, h.mm) = (COW_PID, COW_PID, COW_MM);
            return Record::Fork(TaskForkRecord {
                hdr: h,
                child_pid,
                child_tid: child_pid,
                child_mm,
            });
        }
        i -= 1;
        if i < s.cow_pages {
            return Record::Fault(self.fault(time_ns, n, i, Some((child_pid, child_mm))));
        }
        i -= s.cow_pages;
        if i == 0 {
            let mut h = header::<TaskExitRecord>(kind::TASK_EXIT, hook::TASK, time_ns);
            (h.pid, h.tid, h.mm) = (child_pid, child_pid, child_mm);
            return Record::Exit(TaskExitRecord { hdr: h });
        }
        i -= 1;
        if i < s.cow_pages {
            return Record::Fault(self.fault(time_ns, n, i, None));
        }
        i -= s.cow_pages;
        if i < 2 * s.gup_pages {
            // process_vm_readv: batches of pins, then their unpins.
            let batch = i / (2 * PVM_BATCH);
            let in_batch = i % (2 * PVM_BATCH);
            let first = batch * PVM_BATCH;
            let size = PVM_BATCH.min(s.gup_pages - first);
            if in_batch < size {
                return Record::Gup(self.grab(time_ns, first + in_batch, false));
            }
            return Record::Unpin(self.unpin(time_ns, first + in_batch - size, false));
        }
        i -= 2 * s.gup_pages;
        if i < s.gup_pages {
            return Record::Gup(self.grab(time_ns, i, true));
        }
        Record::Unpin(self.unpin(time_ns, i - s.gup_pages, true))
    }

    /// A write fault on cow-storm page `page`: the child's (`Some`) copies
    /// the fork-shared page to a fresh pfn; the parent's reuses it.
    fn fault(&self, time_ns: u64, n: u64, idx: u64, child: Option<(u32, u64)>) -> CowFaultRecord {
        // The buffer's pages: scattered over 1 GiB of memory, fixed per page.
        let pfn = 0x10_0000 + scatter(idx);
        let (pid, mm, refcount, mapcount, new_pfn) = match child {
            Some((pid, mm)) => (pid, mm, 2, 2, 0x80_0000 + noise(n) % 0x4_0000),
            None => (COW_PID, COW_MM, 1, 1, pfn),
        };
        let mut h = header::<CowFaultRecord>(kind::COW_FAULT, hook::WP_FAULT, time_ns);
        (h.pid, h.tid, h.mm) = (pid, pid, mm);
        CowFaultRecord {
            hdr: h,
            address: COW_BUF + idx * 4096,
            orig_entry: pte(pfn, PRESENT),
            entry_after: pte(new_pfn, PRESENT | RW),
            vm_flags: 0x73,
            page: page(refcount, mapcount),
            fault_flags: self.consts.fault_flag_write,
            ret: 0,
            site: site::WP,
            after_valid: 1,
            ..Default::default()
        }
    }

    /// The gup-storm's pfn of its page `page`.
    fn gup_pfn(page: u64) -> u64 {
        0x40_0000 + scatter(page)
    }

    /// A pin of gup-storm page `page`: read-only on the slow path
    /// (`process_vm_readv`) or long-term for writing on the fast path
    /// (io_uring registration). The page is the process's own: exclusive.
    fn grab(&self, time_ns: u64, idx: u64, longterm: bool) -> GupRecord {
        let c = &self.consts;
        let (hook_id, path, flags, stack, ret) = if longterm {
            (
                hook::GUP_FAST,
                gup_path::FAST,
                c.foll_pin | c.foll_write | c.foll_longterm,
                STORM_FAST_STACK,
                0xffff_ea00_0000_0000 + idx * 64,
            )
        } else {
            (
                hook::GUP_SLOW,
                gup_path::SLOW,
                c.foll_pin,
                STORM_SLOW_STACK,
                1,
            )
        };
        let mut h = header::<GupRecord>(kind::GUP, hook_id, time_ns);
        (h.pid, h.tid, h.mm) = (GUP_PID, GUP_PID, GUP_MM);
        let mut p = page(1 + 1024, 1);
        if let Some(bit) = c.pg_anon_exclusive {
            p.flags |= 1 << bit;
        }
        GupRecord {
            hdr: h,
            address: GUP_BUF + idx * 4096,
            pfn: Self::gup_pfn(idx),
            page: p,
            gup_flags: flags,
            refs: 1,
            stack_id: stack as i32,
            path,
            ret,
            ..Default::default()
        }
    }

    fn unpin(&self, time_ns: u64, page: u64, longterm: bool) -> UnpinRecord {
        let c = &self.consts;
        let mut h = header::<UnpinRecord>(kind::UNPIN, hook::UNPIN, time_ns);
        (h.pid, h.tid, h.mm) = (GUP_PID, GUP_PID, GUP_MM);
        let flags = if longterm {
            c.foll_pin | c.foll_write | c.foll_longterm
        } else {
            c.foll_pin
        };
        UnpinRecord {
            hdr: h,
            pfn: Self::gup_pfn(page),
            refs: 1,
            gup_flags: flags,
            refcount_before: 1 + 1024,
            ..Default::default()
        }
    }
}

/// The child of round `round`: its pid and (raw) mm.
fn child_of(round: u64) -> (u32, u64) {
    (
        COW_PID + 1 + (round % 30_000) as u32,
        COW_MM + ((round + 1) << 20),
    )
}

fn header<T>(kind: u16, hook: u16, time_ns: u64) -> Header {
    let mut comm = [0u8; 16];
    comm[..9].copy_from_slice(b"cow-storm");
    Header {
        kind,
        hook,
        size: size_of::<T>() as u32,
        time_ns,
        pid: 0,
        tid: 0,
        cpu: 0,
        _pad0: 0,
        mm: 0,
        comm,
    }
}

/// Page `i` of a buffer to a frame among 2^18 (1 GiB), distinct for
/// distinct `i` below 2^18 (an odd multiplier permutes the residues), so
/// no two pages of a buffer share a pfn as they never do in the kernel.
fn scatter(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9) & 0x3_ffff
}

/// A fixed pseudo-random word per `n` (splitmix64).
fn noise(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The storm's two kernel stacks (one per GUP path), as a stack map.
#[derive(Clone, Copy, Debug, Default)]
pub struct StormStacks;

impl StackSource for StormStacks {
    fn frames(&mut self, id: u32) -> Option<Vec<u64>> {
        match id {
            STORM_SLOW_STACK => Some(vec![
                0xffff_ffff_8120_0010,
                0xffff_ffff_8120_1020,
                0xffff_ffff_8130_0030,
            ]),
            STORM_FAST_STACK => Some(vec![0xffff_ffff_8120_2040, 0xffff_ffff_8140_0050]),
            _ => None,
        }
    }
}

/// Names every kernel address after its 1 MiB region.
#[derive(Clone, Copy, Debug, Default)]
pub struct StormSymbols;

impl Symbolizer for StormSymbols {
    fn symbolize(&self, addr: u64) -> Option<(String, u64)> {
        Some((format!("fn_{:x}", addr >> 20), addr & 0xf_ffff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder, DecoderConfig};
    use crate::model::{Config, Engine, KernelCaps};

    /// Two whole rounds of a small storm decode and correlate into exactly
    /// the decisions, pins and unpins the storm claims, with no alert
    /// (nothing in it is a bug) and no unmatched unpin.
    #[test]
    fn a_small_storm_correlates_to_its_own_totals() {
        let shape = StormShape {
            cow_pages: 100,
            gup_pages: 40,
            fork_vmas: 3,
        };
        let mut storm = Storm::new(shape);
        let mut d = Decoder::new(DecoderConfig {
            consts: storm.consts(),
            slow_ret: STORM_SLOW_RET,
            fast_ret: STORM_FAST_RET,
            raw_pointers: false,
        });
        let mut engine = Engine::new(
            Config::default(),
            KernelCaps {
                release: "6.1.0-test".into(),
                anon_exclusive: true,
                page_size: 4096,
            },
        );
        let mut recs = Vec::new();
        storm.fill(2 * shape.round_len() as usize, &mut recs);
        let (mut events, mut alerts) = (Vec::new(), Vec::new());
        for r in &recs {
            d.decode(r.bytes(), &mut StormStacks, &StormSymbols, &mut events)
                .unwrap();
        }
        d.finish(&mut events);
        for ev in &events {
            engine.feed(ev, &mut alerts);
        }
        let want = storm.totals(2);
        let rep = engine.report();
        assert_eq!(rep.decisions.cow_copies, want.copies);
        assert_eq!(rep.decisions.cow_reuses, want.reuses);
        assert_eq!(engine.summary().pins, want.pins);
        assert_eq!(rep.unmatched_unpins, 0);
        assert_eq!(engine.outstanding_pins(), 0);
        assert!(alerts.is_empty(), "{alerts:?}");
        assert_eq!(d.stats().stacks_defined, 2);
        assert_eq!(d.stats().fork_joined, 2 * shape.fork_vmas);
        let forks = events
            .iter()
            .filter(|e| matches!(e.body, crate::model::Body::TaskFork(_)))
            .count() as u64;
        assert_eq!(forks, want.forks);
    }
}
