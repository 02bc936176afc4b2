//! The live pipeline shared by `record` and `watch`: capture → decode →
//! a sink. The async part is only waiting (ring buffer readiness, a tick,
//! signals, the command, the deadline); each wake-up hands a batch of
//! decoded events to the synchronous sink.

use std::{
    process::ExitStatus,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracer_common::{Filter, hook, layout::ABSENT};

use super::trace_args::TraceArgs;
use crate::{
    capture::{
        AttachKind, Attachment, Capture, CountsReader, LoadOptions, LossCounters, MapStacks,
        RecursionMisses, RingSource,
    },
    decode::{self, Decoder, DecoderConfig, RetKind, StackSource, Symbolizer},
    kernel::{Kallsyms, KernelInfo, check_with, hooks},
    model::{Counted, Event, KernelCaps, LostCounts, Task},
    trace::{ClockBase, TraceMeta},
};

/// Where decoded events go.
pub trait Sink {
    /// A batch of events in ring-buffer order.
    fn events(&mut self, events: &[Event]) -> anyhow::Result<()>;
    /// Called about every `TICK`: flush files, print summaries.
    fn tick(&mut self) -> anyhow::Result<()>;
    /// True when SIGHUP should call `reload`. Only then is a SIGHUP
    /// handler installed: elsewhere SIGHUP keeps its default (terminate).
    fn reloads(&self) -> bool {
        false
    }
    /// SIGHUP: re-read configuration without detaching probes. Errors are
    /// the sink's to report; tracing goes on.
    fn reload(&mut self) {}
    /// Lean mode: decisions the kernel counted since the last call, read
    /// at `now` (CLOCK_MONOTONIC ns). Sinks that cannot use them ignore them.
    fn counted(&mut self, _now: u64, _counts: &[(Task, Counted)]) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What the kernel side records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaptureMode {
    /// Every decision in full.
    #[default]
    Full,
    /// Ordinary `do_wp_page` decisions counted per process in the kernel;
    /// everything an alert can be about recorded in full
    /// (`watch --alerts-only`). Needs PageAnonExclusive (5.19+): before it,
    /// `unprotected-ro-pin` judges fork protection from every write seen,
    /// so older kernels record in full and say so.
    Lean,
}

/// How often losses are polled and sinks ticked. Bounds what a crash can
/// lose from a trace file (it is flushed on every tick).
pub const TICK: Duration = Duration::from_millis(250);

/// How often the ring buffer is drained without being woken. The kernel
/// side wakes the reader only once an eighth of the ring is unread, so
/// this bounds how late a record in a quiet period is seen (an alert's
/// latency), at the price of one cheap wake-up per period.
pub const DRAIN: Duration = Duration::from_millis(50);

/// Why tracing stopped.
#[derive(Debug)]
pub enum Stop {
    Signal(&'static str),
    Duration,
    Command(ExitStatus),
}

/// A running capture and everything needed to decode what it produces.
pub struct Live {
    /// Held for its `Drop`, which detaches every probe.
    #[expect(dead_code, reason = "held for Drop: detaches every probe")]
    pub capture: Capture,
    pub ring: RingSource,
    pub counters: LossCounters,
    /// Lean mode's in-kernel counts.
    pub counts: Option<CountsReader>,
    /// Trampoline invocations the kernel skipped (reported as lost).
    pub misses: RecursionMisses,
    pub stacks: MapStacks,
    pub decoder: Decoder,
    pub symbols: Kallsyms,
    /// Records drained from the ring buffer.
    pub records: u64,
    /// Records the decoder rejected (unknown kind, short record).
    pub undecodable: u64,
    pub signals: StopSignals,
}

/// SIGINT and SIGTERM, caught from before the first probe is attached: a
/// stop request that arrives while attaching, or between attaching and the
/// event loop, must still end in a clean stop (final drain, trace footer,
/// probes detached), not in the default action killing the process.
pub struct StopSignals {
    sigint: Signal,
    sigterm: Signal,
}

impl StopSignals {
    /// Needs the runtime (call inside `block_on`).
    pub fn install() -> anyhow::Result<Self> {
        Ok(StopSignals {
            sigint: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            sigterm: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
        })
    }
}

/// `StackSource` over the capture's stack map.
struct Stacks<'a>(&'a MapStacks);

impl StackSource for Stacks<'_> {
    fn frames(&mut self, id: u32) -> Option<Vec<u64>> {
        self.0.frames(id)
    }
}

/// CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Live {
    /// Drains the ring buffer and the loss counters into `out`.
    fn collect(&mut self, out: &mut Vec<Event>) {
        self.drain(out);
        let now = monotonic_ns();
        for d in self.counters.poll() {
            self.decoder
                .lost(now, d.hook, d.cpu, d.dropped, d.errors, out);
        }
        for d in self.misses.poll() {
            self.decoder.skipped(now, d.hook, d.missed, out);
        }
    }

    /// Hands lean mode's counted decisions to the sink.
    fn deliver_counts(&mut self, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let Some(counts) = &mut self.counts else {
            return Ok(());
        };
        let now = monotonic_ns();
        let batch: Vec<(Task, Counted)> = counts
            .poll()
            .iter()
            .filter_map(|d| decode::counted(&d.key, d.comm, d.delta))
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        sink.counted(now, &batch)
    }

    /// Drains the ring buffer into `out`.
    fn drain(&mut self, out: &mut Vec<Event>) {
        let Live {
            ring,
            stacks,
            decoder,
            symbols,
            records,
            undecodable,
            ..
        } = self;
        let mut source = Stacks(stacks);
        let sym: &dyn Symbolizer = symbols;
        *records += ring.drain(|raw| {
            if decoder.decode(raw, &mut source, sym, out).is_err() {
                *undecodable += 1;
            }
        }) as u64;
    }

    /// Runs until a signal, the deadline or the command's exit, then drains
    /// everything still buffered into the sink.
    pub async fn run(
        &mut self,
        sink: &mut dyn Sink,
        duration: Option<Duration>,
        mut command: Option<tokio::process::Child>,
    ) -> anyhow::Result<Stop> {
        let mut sighup = if sink.reloads() {
            Some(signal(SignalKind::hangup()).context("installing SIGHUP handler")?)
        } else {
            None
        };
        let deadline = duration.map(|d| tokio::time::Instant::from_std(Instant::now() + d));
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain = tokio::time::interval(DRAIN);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(4096);

        let stop = loop {
            tokio::select! {
                r = self.ring.readable() => {
                    r?;
                    self.drain(&mut batch);
                    sink.events(&batch)?;
                    batch.clear();
                }
                _ = drain.tick() => {
                    self.drain(&mut batch);
                    if !batch.is_empty() {
                        sink.events(&batch)?;
                        batch.clear();
                    }
                }
                _ = tick.tick() => {
                    self.collect(&mut batch);
                    sink.events(&batch)?;
                    batch.clear();
                    self.deliver_counts(sink)?;
                    sink.tick()?;
                }
                _ = self.signals.sigint.recv() => break Stop::Signal("SIGINT"),
                _ = self.signals.sigterm.recv() => break Stop::Signal("SIGTERM"),
                _ = async { sighup.as_mut().expect("guarded").recv().await }, if sighup.is_some() => {
                    sink.reload();
                }
                status = async { command.as_mut().expect("guarded").wait().await }, if command.is_some() => {
                    break Stop::Command(status.context("waiting for the command")?);
                }
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    break Stop::Duration;
                }
            }
        };

        if let Stop::Signal(_) = stop {
            // A second SIGINT/SIGTERM while we finish ends the process at
            // once (default action); the trace file stays readable up to
            // its last flushed block.
            // SAFETY: restoring the default disposition is async-signal-safe
            // and touches no Rust state.
            unsafe {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
            }
        }
        // Whatever the kernel produced before we stopped is still delivered.
        self.collect(&mut batch);
        self.decoder.finish(&mut batch);
        sink.events(&batch)?;
        self.deliver_counts(sink)?;
        sink.tick()?;
        Ok(stop)
    }
}

/// The single-threaded runtime the live subcommands run on: the pipeline
/// is one consumer; a second thread would buy nothing but contention.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Starts `-- COMMAND` (after the probes are attached), if one was given.
pub fn spawn_command(command: &[String]) -> anyhow::Result<Option<tokio::process::Child>> {
    let Some((program, args)) = command.split_first() else {
        return Ok(None);
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("starting `{program}`"))?;
    Ok(Some(child))
}

/// One line on why tracing stopped.
pub fn describe(stop: &Stop) -> String {
    match stop {
        Stop::Signal(name) => format!("stopped by {name}"),
        Stop::Duration => "stopped after --duration".to_string(),
        Stop::Command(status) => match status.code() {
            Some(code) => format!("command exited with status {code}"),
            None => format!("command ended: {status}"),
        },
    }
}

/// Adds what a `Lost` event carries to `tally`.
pub fn tally_lost(tally: &mut LostCounts, ev: &Event) {
    if let crate::model::Body::Lost(l) = &ev.body {
        tally.add(l);
    }
}

/// "no events lost" or a warning with the count and its causes.
pub fn loss_note(lost: &LostCounts) -> String {
    let total = lost.total();
    if total == 0 {
        return "no events lost".to_string();
    }
    let causes: Vec<String> = [
        (lost.dropped, "ring buffer full"),
        (lost.errors, "unreadable state"),
        (lost.skipped, "trampoline programs skipped by the kernel"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{n} {why}"))
    .collect();
    format!(
        "WARNING: {total} events lost ({}); the trace is incomplete",
        causes.join(", ")
    )
}

/// Probes the kernel, resolves layout, constants and the attach plan, loads
/// and attaches the programs: everything up to the first event. Refuses
/// (with what to do) when this kernel or these privileges cannot work.
pub fn prepare(args: &TraceArgs, mode: CaptureMode) -> anyhow::Result<(Live, TraceMeta)> {
    args.check_ring_bytes()?;
    let signals = StopSignals::install()?;
    let info = KernelInfo::probe().context("reading the running kernel")?;
    let report = check_with(&info, args.mechanism.into());
    if !report.ready() {
        let problems: Vec<String> = report.problems.iter().map(|p| p.message.clone()).collect();
        bail!(
            "cowtrace cannot trace on this kernel ({}):\n  - {}\n(`cowtrace check` shows the full attach plan)",
            info.release,
            problems.join("\n  - ")
        );
    }
    let (layout, _) = info.resolve_layout();
    let consts = info.kernel_consts().context("resolving kernel constants")?;
    let plan = &report.plan;
    let attachments: Vec<Attachment> = plan
        .attachments()
        .map(|(_, a)| Attachment {
            program: a.program.to_string(),
            target: a.target.to_string(),
            kind: match a.kind {
                hooks::AttachKind::Kprobe => AttachKind::Kprobe,
                hooks::AttachKind::Kretprobe => AttachKind::Kretprobe,
                hooks::AttachKind::RawTracepoint => AttachKind::RawTracepoint,
                hooks::AttachKind::Fentry => AttachKind::Fentry,
                hooks::AttachKind::Fexit => AttachKind::Fexit,
            },
        })
        .collect();
    let (mut filter, pids) = args.filter()?;
    filter.swap_hook = u32::from(plan.hook(hook::SWAP).is_some_and(|h| h.chosen.is_some()));
    let lean = mode == CaptureMode::Lean && consts.pg_anon_exclusive.is_some();
    if mode == CaptureMode::Lean && !lean {
        eprintln!(
            "cowtrace: --alerts-only: this kernel has no PageAnonExclusive (before 5.19); \
             recording every decision in full"
        );
    }
    if lean {
        filter.mode = Filter::LEAN;
        filter.unshare_flag = consts.fault_flag_unshare.unwrap_or(0);
        filter.pg_swapcache = consts.pg_swapcache.unwrap_or(ABSENT);
        filter.fault_fail_mask = consts.vm_fault_error_mask | consts.vm_fault_retry;
    }
    let opts = LoadOptions {
        layout,
        filter,
        ring_bytes: args.ring_bytes,
        pids,
    };
    let mut capture = Capture::load(&opts, &attachments)?;
    let ring = RingSource::new(&mut capture)?;
    let counters = LossCounters::new(&mut capture)?;
    // Every program, once: trampolines skip when preempted inside, kprobe
    // programs when another BPF program runs on the CPU, raw tracepoint
    // programs on recursion; the kernel counts all of them alike.
    let mut programs: Vec<(u16, String)> = Vec::new();
    for (hook, a) in plan.attachments() {
        if !programs.iter().any(|(_, p)| p == a.program) {
            programs.push((hook, a.program.to_string()));
        }
    }
    let misses = RecursionMisses::new(&capture, &programs)?;
    let counts = if lean {
        Some(CountsReader::new(&mut capture)?)
    } else {
        None
    };
    let stacks = MapStacks::new(&mut capture)?;

    let decoder = Decoder::new(DecoderConfig {
        consts: consts.clone(),
        slow_ret: plan.ret_kind(hook::GUP_SLOW).unwrap_or(RetKind::NonNull),
        fast_ret: plan.ret_kind(hook::GUP_FAST).unwrap_or(RetKind::NonNull),
        raw_pointers: args.raw_pointers,
    });
    let symbols = info.kallsyms.clone().unwrap_or_default();
    let meta = TraceMeta {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: hostname(),
        kernel: KernelCaps {
            release: info.release.clone(),
            anon_exclusive: consts.pg_anon_exclusive.is_some(),
            page_size: 4096,
        },
        clock: ClockBase {
            monotonic_ns: monotonic_ns(),
            realtime_ns: realtime_ns(),
        },
        attach_plan: serde_json::to_value(plan).context("serializing the attach plan")?,
        raw_pointers: args.raw_pointers,
        command: std::env::args().collect(),
    };
    let live = Live {
        capture,
        ring,
        counters,
        counts,
        misses,
        stacks,
        decoder,
        symbols,
        records: 0,
        undecodable: 0,
        signals,
    };
    Ok((live, meta))
}

fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_note_names_each_cause() {
        assert_eq!(loss_note(&LostCounts::default()), "no events lost");
        let lost = LostCounts {
            dropped: 3,
            errors: 0,
            skipped: 2,
        };
        assert_eq!(
            loss_note(&lost),
            "WARNING: 5 events lost (3 ring buffer full, 2 trampoline programs skipped \
             by the kernel); the trace is incomplete"
        );
    }
}
