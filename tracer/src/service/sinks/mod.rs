//! Alert sinks: any number at once, each on its own thread behind a
//! bounded queue.
//!
//! The capture loop only ever calls `try_send`: when a sink's queue is
//! full its alert is dropped and counted, so a slow or dead sink can slow
//! neither capture nor another sink. Each sink's `Deliver` runs on its
//! thread with batches of what is queued.

mod jsonl;
mod stdout;
mod syslog;
mod webhook;

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::model::{
    Alert,
    service_config::{SinkConfig, sink_names},
};

pub use syslog::format_rfc5424;
pub use webhook::batch_body;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink `{name}`: {what}: {source}")]
    Io {
        name: String,
        what: String,
        source: std::io::Error,
    },
    #[error("sink `{name}`: {reason}")]
    Setup { name: String, reason: String },
    #[error(transparent)]
    Config(#[from] crate::model::ConfigError),
}

/// Counters of one sink, shared between its thread and the metrics.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Alerts handed to the destination.
    pub delivered: AtomicU64,
    /// Alerts dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Alerts dropped after delivery failed (retries exhausted).
    pub dropped_failed: AtomicU64,
    /// Alerts still queued when the drain time at exit ran out.
    pub dropped_shutdown: AtomicU64,
    /// Failed delivery attempts (each retry counts).
    pub errors: AtomicU64,
}

/// A plain copy of `SinkStats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub delivered: u64,
    pub dropped_queue_full: u64,
    pub dropped_failed: u64,
    pub dropped_shutdown: u64,
    pub errors: u64,
}

impl SinkStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            delivered: self.delivered.load(Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Relaxed),
            dropped_failed: self.dropped_failed.load(Relaxed),
            dropped_shutdown: self.dropped_shutdown.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }

    fn dropped(&self) -> u64 {
        let s = self.snapshot();
        s.dropped_queue_full + s.dropped_failed + s.dropped_shutdown
    }
}

/// What a sink's thread shares with the set that owns it.
#[derive(Debug, Default)]
struct Shared {
    stats: SinkStats,
    /// Set when the set closes: from then on the sink has its drain time
    /// to deliver what is queued.
    closing: OnceLock<Instant>,
}

impl Shared {
    /// The instant a closing sink must give up by, if it is closing.
    fn give_up_at(&self, drain: Duration) -> Option<Instant> {
        self.closing.get().map(|&t| t + drain)
    }
}

/// A destination for alerts, driven by its sink's thread.
trait Deliver: Send + 'static {
    /// Delivers a batch. `give_up_at` bounds retries while closing.
    /// Returns Err with the alerts not delivered counted as failed.
    fn deliver(&mut self, batch: &[Arc<Alert>], ctx: &DeliverCtx<'_>) -> Result<(), String>;
}

/// What `deliver` may look at: its counters (for errors and retries) and
/// when to give up.
struct DeliverCtx<'a> {
    shared: &'a Shared,
    drain: Duration,
}

impl DeliverCtx<'_> {
    fn give_up_at(&self) -> Option<Instant> {
        self.shared.give_up_at(self.drain)
    }
    fn error(&self) {
        self.shared.stats.errors.fetch_add(1, Relaxed);
    }
    fn dropped(&self) -> u64 {
        self.shared.stats.dropped()
    }
}

/// How a sink's thread groups alerts.
#[derive(Debug, Clone, Copy)]
struct Batching {
    max: usize,
    /// How long the first alert of a batch waits for more.
    wait: Duration,
    /// Time allowed at exit for what is still queued.
    drain: Duration,
}

impl Batching {
    const IMMEDIATE: Batching = Batching {
        max: 256,
        wait: Duration::ZERO,
        drain: Duration::from_secs(2),
    };
}

/// Context sinks need to start.
#[derive(Debug, Clone)]
pub struct SinkContext {
    pub hostname: String,
}

struct Running {
    name: String,
    config: SinkConfig,
    tx: SyncSender<Arc<Alert>>,
    shared: Arc<Shared>,
    handle: JoinHandle<()>,
    drain: Duration,
}

/// The running sinks. Dropping it without `close` detaches the threads.
#[derive(Default)]
pub struct SinkSet {
    running: Vec<Running>,
    /// Sinks removed by a reload, still delivering their queue.
    retired: Vec<Running>,
}

impl SinkSet {
    /// Starts every sink; destinations are opened here, so a bad path or
    /// URL is reported before tracing starts (or a reload is refused).
    pub fn start(configs: &[SinkConfig], ctx: &SinkContext) -> Result<SinkSet, SinkError> {
        let mut set = SinkSet::default();
        set.reconfigure(configs, ctx)?;
        Ok(set)
    }

    /// Applies a new list: unchanged sinks (same name, same settings) keep
    /// their thread, queue and counters; new ones start; removed ones
    /// deliver their queue and stop. If any new sink fails to start,
    /// nothing changes.
    pub fn reconfigure(
        &mut self,
        configs: &[SinkConfig],
        ctx: &SinkContext,
    ) -> Result<(), SinkError> {
        enum Slot {
            Keep(usize),
            // Boxed: a `Running` is a few hundred bytes, a `Keep` one word.
            New(Box<Running>),
        }
        let names = sink_names(configs)?;
        let mut claimed = vec![false; self.running.len()];
        let mut plan = Vec::with_capacity(configs.len());
        for (config, name) in configs.iter().zip(names) {
            let same = self
                .running
                .iter()
                .enumerate()
                .position(|(i, r)| !claimed[i] && r.name == name && &r.config == config);
            if let Some(i) = same {
                claimed[i] = true;
                plan.push(Slot::Keep(i));
                continue;
            }
            match spawn(name, config, ctx) {
                Ok(r) => plan.push(Slot::New(Box::new(r))),
                Err(e) => {
                    // Nothing changes: stop what was just started.
                    for slot in plan {
                        if let Slot::New(r) = slot {
                            self.retired.push(*r);
                        }
                    }
                    self.close_retired_channels();
                    return Err(e);
                }
            }
        }
        let mut old: Vec<Option<Running>> = self.running.drain(..).map(Some).collect();
        for slot in plan {
            match slot {
                Slot::Keep(i) => self.running.extend(old[i].take()),
                Slot::New(r) => self.running.push(*r),
            }
        }
        self.retired.extend(old.into_iter().flatten());
        self.close_retired_channels();
        Ok(())
    }

    /// Retired sinks get their drain time from now; their channel closes
    /// when the `Running` (and its sender) is dropped in `reap`.
    fn close_retired_channels(&mut self) {
        let now = Instant::now();
        for r in &mut self.retired {
            let _ = r.shared.closing.set(now);
            // Replace the sender with a closed one so the thread sees the
            // end of its queue once drained.
            let (closed, _) = mpsc::sync_channel(0);
            r.tx = closed;
        }
        self.retired.retain(|r| !r.handle.is_finished());
    }

    /// Offers an alert to every sink whose severity threshold it meets.
    pub fn send(&self, alert: &Alert) {
        let shared = Arc::new(alert.clone());
        for r in &self.running {
            if alert.severity > r.config.common().min_severity {
                continue;
            }
            match r.tx.try_send(Arc::clone(&shared)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    r.shared.stats.dropped_queue_full.fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// Name and counters of each running sink, in config order.
    pub fn stats(&self) -> Vec<(String, StatsSnapshot)> {
        self.running
            .iter()
            .map(|r| (r.name.clone(), r.shared.stats.snapshot()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Closes every queue and waits for the sinks to deliver what is
    /// queued, each within its drain time. Returns the final counters.
    pub fn close(mut self) -> Vec<(String, StatsSnapshot)> {
        let now = Instant::now();
        let mut all: Vec<Running> = self.running.drain(..).collect();
        all.append(&mut self.retired);
        let mut deadline = now;
        let mut handles = Vec::with_capacity(all.len());
        let mut out = Vec::new();
        for r in all {
            let _ = r.shared.closing.set(now);
            // A thread mid-request may overrun its drain by one request
            // timeout; give it a moment more than its own deadline.
            deadline = deadline.max(now + r.drain + Duration::from_secs(1));
            handles.push((r.name, r.shared, r.handle));
            // `r.tx` dropped here: the queue ends after what is in it.
        }
        while handles.iter().any(|(_, _, h)| !h.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for (name, shared, handle) in handles {
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                log::warn!("sink `{name}` did not finish delivering within its drain time");
            }
            out.push((name, shared.stats.snapshot()));
        }
        out
    }
}

fn spawn(name: String, config: &SinkConfig, ctx: &SinkContext) -> Result<Running, SinkError> {
    let (deliver, batching): (Box<dyn Deliver>, Batching) = match config {
        SinkConfig::Stdout(s) => (Box::new(stdout::Stdout::new(s.format)), Batching::IMMEDIATE),
        SinkConfig::Jsonl(j) => (
            Box::new(jsonl::Jsonl::open(j).map_err(|e| SinkError::Io {
                name: name.clone(),
                what: format!("opening {}", j.path.display()),
                source: e,
            })?),
            Batching::IMMEDIATE,
        ),
        SinkConfig::Syslog(s) => (
            Box::new(
                syslog::Syslog::connect(s, &ctx.hostname).map_err(|e| SinkError::Io {
                    name: name.clone(),
                    what: format!("connecting to {}", s.socket.display()),
                    source: e,
                })?,
            ),
            Batching::IMMEDIATE,
        ),
        SinkConfig::Webhook(w) => (
            Box::new(webhook::Webhook::new(w, &ctx.hostname).map_err(|reason| {
                SinkError::Setup {
                    name: name.clone(),
                    reason,
                }
            })?),
            Batching {
                max: w.batch_size,
                wait: Duration::from_secs_f64(w.batch_secs),
                drain: Duration::from_secs_f64(w.drain_secs),
            },
        ),
    };
    let (tx, rx) = mpsc::sync_channel(config.common().queue);
    let shared = Arc::new(Shared::default());
    let thread_shared = Arc::clone(&shared);
    let handle = std::thread::Builder::new()
        .name(format!("sink-{}", config.kind()))
        .spawn(move || run_worker(rx, deliver, &thread_shared, batching))
        .map_err(|e| SinkError::Io {
            name: name.clone(),
            what: "starting its thread".into(),
            source: e,
        })?;
    Ok(Running {
        name,
        config: config.clone(),
        tx,
        shared,
        handle,
        drain: batching.drain,
    })
}

/// A sink's thread: gathers batches and delivers them until its queue is
/// closed and empty (or its drain time at exit has run out).
fn run_worker(
    rx: mpsc::Receiver<Arc<Alert>>,
    mut deliver: Box<dyn Deliver>,
    shared: &Shared,
    batching: Batching,
) {
    let ctx = DeliverCtx {
        shared,
        drain: batching.drain,
    };
    let mut batch: Vec<Arc<Alert>> = Vec::with_capacity(batching.max.min(1024));
    loop {
        let Ok(first) = rx.recv() else { return };
        batch.push(first);
        let fill_until = Instant::now() + batching.wait;
        while batch.len() < batching.max {
            let now = Instant::now();
            let wait = if shared.closing.get().is_some() {
                Duration::ZERO
            } else {
                fill_until.saturating_duration_since(now)
            };
            match rx.recv_timeout(wait) {
                Ok(a) => batch.push(a),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if ctx.give_up_at().is_some_and(|t| Instant::now() >= t) {
            // Out of drain time: count the rest, do not try.
            let rest = batch.len() as u64 + rx.try_iter().count() as u64;
            shared.stats.dropped_shutdown.fetch_add(rest, Relaxed);
            return;
        }
        let n = batch.len() as u64;
        match deliver.deliver(&batch, &ctx) {
            Ok(()) => shared.stats.delivered.fetch_add(n, Relaxed),
            Err(e) => {
                log::warn!("alert sink: {e}; {n} alerts dropped");
                shared.stats.dropped_failed.fetch_add(n, Relaxed)
            }
        };
        batch.clear();
    }
}

#[cfg(test)]
mod tests;
