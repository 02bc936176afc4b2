//! Host throughput of cowtrace's userspace: wire decode + correlation (the
//! live path), trace-file size per event, and trace-file replay +
//! correlation (the `report` path), over a synthetic cow-storm of ≥ 10 M
//! write faults on one core.
//!
//! `cargo bench -p tracer --bench pipeline` (release). The event count can
//! be lowered for a quick look: `COWTRACE_BENCH_EVENTS=1000000`.
//!
//! The stream mimics `cargo xtask bench`'s cow-storm: rounds of a fork (a
//! new child mm), the child's write to every page of a 32 MiB buffer
//! (copies, new pfns), then the parent's write to every page (reuses).

use std::hint::black_box;
use std::time::Instant;

use cowtrace::decode::{Decoder, DecoderConfig, KernelConsts, NoStacks, NoSymbols, RetKind};
use cowtrace::model::{Alert, Config, Engine, Event, KernelCaps};
use cowtrace::trace::{ClockBase, TraceMeta, TraceReader, TraceWriter, WriterOptions};
use tracer_common::{
    CowFaultRecord, Header, PageSnapshot, TaskExitRecord, TaskForkRecord, hook, kind, site,
};

const DEFAULT_EVENTS: u64 = 10_000_000;
/// Pages of the 32 MiB buffer.
const PAGES: u64 = 8192;
const BUF_START: u64 = 0x7f00_0000_0000;
const PARENT_PID: u32 = 4242;
const PARENT_MM: u64 = 0xffff_8880_1000_0000;
/// The fault rate of the storm: one fault every 7 µs.
const FAULT_GAP_NS: u64 = 7_000;

const PRESENT: u64 = 1;
const RW: u64 = 2;

/// A 6.1-like kernel (FOLL_* of 6.1, PG_anon_exclusive 17, 4 KiB pages).
fn consts() -> KernelConsts {
    KernelConsts {
        foll_write: 0x01,
        foll_get: 0x04,
        foll_pin: 0x40000,
        foll_longterm: 0x10000,
        foll_force: 0x10,
        fault_flag_write: 0x1,
        fault_flag_unshare: Some(1024),
        pg_anon_exclusive: Some(17),
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
        vm_fault_error_mask: 0x873,
        vm_fault_retry: 0x400,
        vm_fault_fallback: 0x800,
    }
}

fn caps() -> KernelCaps {
    KernelCaps {
        release: "6.1.0-bench-amd64".into(),
        anon_exclusive: true,
        page_size: 4096,
    }
}

/// A fixed pseudo-random word per `n` (splitmix64): allocator pfns and
/// fault gaps are not sequential in a real trace, and a too-regular stream
/// would flatter the trace file's compression.
fn noise(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The child of round `round`: its pid and (raw) mm.
fn child_of(round: u64) -> (u32, u64) {
    (
        PARENT_PID + 1 + round as u32,
        PARENT_MM + ((round + 1) << 20),
    )
}

fn header<T>(kind: u16, time_ns: u64, pid: u32, mm: u64) -> Header {
    let mut comm = [0u8; 16];
    comm[..9].copy_from_slice(b"cow-storm");
    Header {
        kind,
        hook: hook::WP_FAULT,
        size: std::mem::size_of::<T>() as u32,
        time_ns,
        pid,
        tid: pid,
        cpu: 0,
        _pad0: 0,
        mm,
        comm,
    }
}

/// One ring buffer record of the synthetic stream.
enum Raw {
    Fault(CowFaultRecord),
    Fork(TaskForkRecord),
    Exit(TaskExitRecord),
}

impl Raw {
    fn bytes(&self) -> &[u8] {
        match self {
            Raw::Fault(r) => record_bytes(r),
            Raw::Fork(r) => record_bytes(r),
            Raw::Exit(r) => record_bytes(r),
        }
    }
}

/// The records the storm produces around its `n`th write fault: the fork
/// before a round's first fault, the child's exit before the parent's first.
fn records_at(n: u64, out: &mut Vec<Raw>) {
    let round = n / (2 * PAGES);
    let (child_pid, child_mm) = child_of(round);
    let time_ns = 1_000_000_000 + n * FAULT_GAP_NS;
    if n.is_multiple_of(2 * PAGES) {
        out.push(Raw::Fork(TaskForkRecord {
            hdr: header::<TaskForkRecord>(kind::TASK_FORK, time_ns, PARENT_PID, PARENT_MM),
            child_pid,
            child_tid: child_pid,
            child_mm,
        }));
    } else if n % (2 * PAGES) == PAGES {
        out.push(Raw::Exit(TaskExitRecord {
            hdr: header::<TaskExitRecord>(kind::TASK_EXIT, time_ns, child_pid, child_mm),
        }));
    }
    out.push(Raw::Fault(fault_record(n)));
}

/// The `n`th write fault of the storm as the ring buffer carries it.
fn fault_record(n: u64) -> CowFaultRecord {
    let round = n / (2 * PAGES);
    let in_round = n % (2 * PAGES);
    let child = in_round < PAGES;
    let page = in_round % PAGES;
    // The buffer's pages: scattered over 1 GiB of memory, fixed per page.
    let pfn = 0x10_0000 + noise(page) % 0x4_0000;
    let (pid, mm, refcount, mapcount, new_pfn) = if child {
        // The child's write: shared page, copied to a fresh pfn.
        let (child_pid, child_mm) = child_of(round);
        (child_pid, child_mm, 2, 2, 0x80_0000 + noise(n) % 0x4_0000)
    } else {
        (PARENT_PID, PARENT_MM, 1, 1, pfn)
    };
    let time_ns = 1_000_000_000 + n * FAULT_GAP_NS + noise(n) % 1000;
    CowFaultRecord {
        hdr: header::<CowFaultRecord>(kind::COW_FAULT, time_ns, pid, mm),
        address: BUF_START + page * 4096,
        orig_entry: (pfn << 12) | PRESENT,
        entry_after: (new_pfn << 12) | PRESENT | RW,
        vm_flags: 0x73,
        page: PageSnapshot {
            mapping_low: 0x1,
            refcount,
            mapcount,
            large_mapcount: PageSnapshot::NO_COUNT,
            state: PageSnapshot::VALID,
            ..PageSnapshot::default()
        },
        fault_flags: 0x1,
        ret: 0,
        site: site::WP,
        after_valid: 1,
        nested_wp: 0,
        _pad: [0; 5],
    }
}

/// The wire bytes of a record (only called with tracer-common's records).
fn record_bytes<T: Copy>(rec: &T) -> &[u8] {
    // SAFETY: tracer-common's records are `repr(C)` plain old data with
    // explicit padding fields (no uninitialised bytes); the slice borrows `rec`.
    unsafe { std::slice::from_raw_parts((rec as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

fn meta() -> TraceMeta {
    TraceMeta {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        hostname: "bench".into(),
        kernel: caps(),
        clock: ClockBase {
            monotonic_ns: 0,
            realtime_ns: 0,
        },
        attach_plan: serde_json::Value::Null,
        raw_pointers: false,
        command: vec!["pipeline-bench".into()],
    }
}

fn rate(n: u64, secs: f64) -> String {
    format!("{:.2} M events/s", n as f64 / secs / 1e6)
}

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs us with `--bench`-less arguments; any
    // run does the full measurement unless the count is lowered.
    // Write faults; the forks and exits around them come on top.
    let total: u64 = match std::env::var("COWTRACE_BENCH_EVENTS") {
        Ok(v) => v.parse()?,
        Err(_) => DEFAULT_EVENTS,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("storm.cwt");

    // 1. Live path: wire records -> events -> engine; the events also go
    // to the trace writer, timed separately.
    let mut decoder = Decoder::new(DecoderConfig {
        consts: consts(),
        slow_ret: RetKind::NonNull,
        fast_ret: RetKind::NonNull,
        raw_pointers: false,
    });
    let mut engine = Engine::new(Config::default(), caps());
    let mut writer = TraceWriter::create(&path, &meta(), WriterOptions::default())?;
    let mut batch: Vec<Event> = Vec::with_capacity(4096);
    let mut alerts: Vec<Alert> = Vec::new();
    let mut records: Vec<Raw> = Vec::with_capacity(4096);
    let (mut decode_s, mut correlate_s, mut write_s) = (0.0f64, 0.0f64, 0.0f64);
    let mut decoded = 0u64;
    let mut n = 0u64;
    while n < total {
        let chunk = (total - n).min(4096);
        for i in n..n + chunk {
            records_at(i, &mut records);
        }
        let t = Instant::now();
        for rec in &records {
            decoder
                .decode(rec.bytes(), &mut NoStacks, &NoSymbols, &mut batch)
                .map_err(|e| anyhow::anyhow!("a record did not decode: {e:?}"))?;
        }
        decode_s += t.elapsed().as_secs_f64();
        records.clear();
        let t = Instant::now();
        for ev in &batch {
            engine.feed(ev, &mut alerts);
        }
        alerts.clear();
        correlate_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for ev in &batch {
            writer.push(ev)?;
        }
        write_s += t.elapsed().as_secs_f64();
        decoded += batch.len() as u64;
        batch.clear();
        n += chunk;
    }
    let t = Instant::now();
    decoder.finish(&mut batch);
    for ev in &batch {
        engine.feed(ev, &mut alerts);
        writer.push(ev)?;
    }
    decoded += batch.len() as u64;
    let summary = writer.finish()?;
    write_s += t.elapsed().as_secs_f64();
    let live_report = engine.report();
    anyhow::ensure!(decoded >= total, "{decoded} events from {total} faults");
    anyhow::ensure!(
        summary.events == decoded,
        "{} events written",
        summary.events
    );

    // 2. Replay path: trace file -> events -> engine.
    let mut reader = TraceReader::open(std::slice::from_ref(&path))?;
    let mut replay = Engine::new(Config::default(), caps());
    let t = Instant::now();
    let mut replayed = 0u64;
    while let Some(ev) = reader.next_event() {
        replay.feed(&ev?, &mut alerts);
        alerts.clear();
        replayed += 1;
    }
    let replay_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        replayed == decoded,
        "{replayed} events replayed of {decoded}"
    );
    anyhow::ensure!(
        replay.report().events == live_report.events,
        "the replayed report differs from the live one"
    );
    black_box(&live_report);

    println!(
        "pipeline bench: {decoded} events ({total} write faults, cow-storm pattern), one core"
    );
    let total = decoded;
    let live_s = decode_s + correlate_s;
    println!(
        "  decode + correlate (live):   {} ({:.0} ns/event: decode {:.0}, correlate {:.0})",
        rate(total, live_s),
        live_s * 1e9 / total as f64,
        decode_s * 1e9 / total as f64,
        correlate_s * 1e9 / total as f64
    );
    println!(
        "  trace write (zstd):          {} ({:.0} ns/event)",
        rate(total, write_s),
        write_s * 1e9 / total as f64
    );
    println!(
        "  replay + correlate (report): {} ({:.0} ns/event)",
        rate(total, replay_s),
        replay_s * 1e9 / total as f64
    );
    println!(
        "  on disk: {} bytes, {:.2} bytes/event",
        summary.bytes,
        summary.bytes as f64 / total as f64
    );
    Ok(())
}
