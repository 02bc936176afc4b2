//! Host throughput of cowtrace's userspace on one core: wire decode +
//! correlation (the live path), trace-file size per event, and trace-file
//! replay + correlation (the `report` path), over ≥ 10 M synthetic records.
//!
//! `cargo bench -p tracer --bench pipeline` (release). Knobs, for a quick
//! look or another shape:
//! - `COWTRACE_BENCH_EVENTS` records to decode (default 10 M);
//! - `COWTRACE_BENCH_COW_PAGES` / `COWTRACE_BENCH_GUP_PAGES` buffer sizes
//!   in pages (defaults: 8192 = 32 MiB and 1024 = 4 MiB, as in
//!   `cargo xtask bench`);
//! - `COWTRACE_BENCH_REPLAY=0` skips the replay (e.g. to profile the live
//!   path alone).
//!
//! The stream (`cowtrace::decode::synthetic::Storm`) mixes the cow-storm
//! and gup-storm workloads: per round a fork (its `copy_page_range`
//! records and `sched_process_fork`), the child's write to every buffer
//! page (copies to fresh pfns, in a new address space each round), its
//! exit, the parent's write to every page (reuses), then read-only pins
//! and unpins of the gup buffer in batches of 16 (`process_vm_readv`) and a
//! long-term write pin of all of it followed by the unpins (io_uring).
//! About 80% of the records are COW faults, 20% pins and unpins.

use std::hint::black_box;

use anyhow::Context as _;
use cowtrace::decode::synthetic::{
    STORM_FAST_RET, STORM_SLOW_RET, Storm, StormShape, StormStacks, StormSymbols,
};
use cowtrace::decode::{Decoder, DecoderConfig};
use cowtrace::model::{Alert, Config, Engine, Event, KernelCaps};
use cowtrace::trace::{ClockBase, TraceMeta, TraceReader, TraceWriter, WriterOptions};

const DEFAULT_EVENTS: u64 = 10_000_000;
/// Records decoded per batch: about what one ring buffer poll hands over.
const BATCH: usize = 4096;

fn caps() -> KernelCaps {
    KernelCaps {
        release: "6.1.0-bench-amd64".into(),
        anon_exclusive: true,
        page_size: 4096,
    }
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

fn env_u64(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

/// Seconds of CPU time this thread has used. Events per CPU second is
/// "per core", and unlike wall time it does not count the time the build
/// host's other jobs kept us off the CPU (their cache pollution remains).
fn cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; the clock id is a constant every
    // Linux has.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Runs `f`, adding the CPU time it took to `acc`.
fn timed<T>(acc: &mut f64, f: impl FnOnce() -> T) -> T {
    let t = cpu_secs();
    let out = f();
    *acc += cpu_secs() - t;
    out
}

fn rate(n: u64, secs: f64) -> String {
    format!("{:.2} M events/s", n as f64 / secs / 1e6)
}

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs us too; any run does the full
    // measurement unless the count is lowered.
    let total = env_u64("COWTRACE_BENCH_EVENTS", DEFAULT_EVENTS)?;
    let defaults = StormShape::default();
    let shape = StormShape {
        cow_pages: env_u64("COWTRACE_BENCH_COW_PAGES", defaults.cow_pages)?,
        gup_pages: env_u64("COWTRACE_BENCH_GUP_PAGES", defaults.gup_pages)?,
        ..defaults
    };
    anyhow::ensure!(
        shape.cow_pages > 0 && shape.gup_pages > 0,
        "buffer sizes must be positive"
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("storm.cwt");

    // 1. Live path: wire records -> events -> engine; the events also go
    // to the trace writer, timed separately. Generating the records is
    // not timed.
    let mut storm = Storm::new(shape);
    let mut decoder = Decoder::new(DecoderConfig {
        consts: storm.consts(),
        slow_ret: STORM_SLOW_RET,
        fast_ret: STORM_FAST_RET,
        raw_pointers: false,
    });
    let mut engine = Engine::new(Config::default(), caps());
    let mut writer = TraceWriter::create(&path, &meta(), WriterOptions::default())?;
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH + 64);
    let mut alerts: Vec<Alert> = Vec::new();
    let mut records = Vec::with_capacity(BATCH);
    let (mut decode_s, mut correlate_s, mut write_s) = (0.0f64, 0.0f64, 0.0f64);
    let (mut decoded, mut raised) = (0u64, 0u64);
    while storm.produced() < total {
        let chunk = (total - storm.produced()).min(BATCH as u64) as usize;
        records.clear();
        storm.fill(chunk, &mut records);
        timed(&mut decode_s, || {
            for rec in &records {
                decoder
                    .decode(rec.bytes(), &mut StormStacks, &StormSymbols, &mut batch)
                    .map_err(|e| anyhow::anyhow!("a record did not decode: {e}"))?;
            }
            anyhow::Ok(())
        })?;
        timed(&mut correlate_s, || engine.feed_batch(&batch, &mut alerts));
        raised += alerts.len() as u64;
        alerts.clear();
        timed(&mut write_s, || {
            for ev in &batch {
                writer.push(ev)?;
            }
            anyhow::Ok(())
        })?;
        decoded += batch.len() as u64;
        batch.clear();
    }
    decoder.finish(&mut batch);
    engine.feed_batch(&batch, &mut alerts);
    for ev in &batch {
        writer.push(ev)?;
    }
    decoded += batch.len() as u64;
    let summary = timed(&mut write_s, || writer.finish())?;
    // The report is built once per run (or per metrics tick), not per
    // event: timed on its own.
    let mut report_s = 0.0;
    let live_report = timed(&mut report_s, || engine.report());
    anyhow::ensure!(
        summary.events == decoded,
        "{} events written",
        summary.events
    );
    // Whole rounds must add up to what the storm says (a check that the
    // bench measured the mix it claims, not a pile of decode errors).
    let rounds = total / shape.round_len();
    let want = storm.totals(rounds);
    anyhow::ensure!(
        live_report.decisions.cow_copies >= want.copies
            && live_report.decisions.cow_reuses >= want.reuses
            && engine.summary().pins >= want.pins,
        "decisions {:?} below the storm's {want:?}",
        live_report.decisions
    );

    // 2. Replay path: trace file -> events (timed apart) -> engine, one
    // `feed` per event as `cowtrace report` does.
    let mut reader = TraceReader::open(std::slice::from_ref(&path))?;
    let mut replay = Engine::new(Config::default(), caps());
    let (mut read_s, mut feed_s) = (0.0f64, 0.0f64);
    let mut replayed = 0u64;
    let replay_on = env_u64("COWTRACE_BENCH_REPLAY", 1)? != 0;
    if replay_on {
        loop {
            batch.clear();
            timed(&mut read_s, || {
                while batch.len() < BATCH
                    && let Some(ev) = reader.next_event()
                {
                    batch.push(ev?);
                }
                anyhow::Ok(())
            })?;
            if batch.is_empty() {
                break;
            }
            timed(&mut feed_s, || {
                for ev in &batch {
                    replay.feed(ev, &mut alerts);
                }
            });
            alerts.clear();
            replayed += batch.len() as u64;
        }
    }

    anyhow::ensure!(
        !replay_on || replayed == decoded,
        "{replayed} events replayed of {decoded}"
    );
    anyhow::ensure!(
        !replay_on || replay.report() == live_report,
        "the replayed report differs from the live one"
    );
    black_box(&live_report);

    let stats = decoder.stats();
    println!(
        "pipeline bench: {decoded} events from {total} records ({rounds} rounds of \
         cow-storm {} pages + gup-storm {} pages), one core (CPU time)",
        shape.cow_pages, shape.gup_pages
    );
    println!(
        "  mix: {} copies, {} reuses, {} pins, {} unmatched unpins, {} stack defs, \
         {} fork records joined; {raised} alerts; evictions {}",
        live_report.decisions.cow_copies,
        live_report.decisions.cow_reuses,
        engine.summary().pins,
        live_report.unmatched_unpins,
        stats.stacks_defined,
        stats.fork_joined,
        live_report.evictions.total(),
    );
    let n = decoded as f64;
    let live_s = decode_s + correlate_s;
    println!(
        "  decode + correlate (live, feed_batch): {} ({:.0} ns/event: decode {:.0}, \
         correlate {:.0})",
        rate(decoded, live_s),
        live_s * 1e9 / n,
        decode_s * 1e9 / n,
        correlate_s * 1e9 / n
    );
    println!(
        "  report build:                {:.1} ms ({} mapping ranges kept)",
        report_s * 1e3,
        live_report.mappings.len()
    );
    println!(
        "  trace write (zstd):          {} ({:.0} ns/event)",
        rate(decoded, write_s),
        write_s * 1e9 / n
    );
    if replay_on {
        println!(
            "  replay (report): read {:.0} ns/event; correlate one feed() per event \
             {} ({:.0} ns/event)",
            read_s * 1e9 / n,
            rate(decoded, feed_s),
            feed_s * 1e9 / n
        );
    }
    println!(
        "  on disk: {} bytes, {:.2} bytes/event",
        summary.bytes,
        summary.bytes as f64 / n
    );
    Ok(())
}
