//! Bounded memory: a day of a busy host must not grow the correlation
//! engine without limit. 100 million synthetic events over 10 million
//! distinct pages (ten times `[engine] max_pages`) and 50 000 processes,
//! fed to the engine with its default caps, must keep the whole process
//! under 256 MiB resident (VmHWM, the peak, from /proc/self/status).
//!
//! Ignored by default (about a minute in release, far more in debug):
//!
//! ```text
//! cargo test --release -p tracer --test engine_memory -- --ignored --nocapture
//! ```
//!
//! `COWTRACE_MEMORY_EVENTS=N` changes the event count (e.g. for a quick try).

use std::time::Instant;

use cowtrace::model::{
    Body, Comm, Config, CowFault, Decision, Engine, Event, FaultKind, ForkVma, Gup, GupPath,
    KernelCaps, PageState, Site, Task, TaskFork, Unpin,
};

const EVENTS: u64 = 100_000_000;
const PAGES: u64 = 10_000_000;
const PROCESSES: u64 = 50_000;
const LIMIT_BYTES: u64 = 256 << 20;
const PAGE: u64 = 4096;

/// xorshift64*: deterministic, fast, good enough to spread pages.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The synthetic host: processes each with an mm, touching pages spread
/// over `PAGES` page frames (page `n` is mapped at the same offset in
/// every process, as after fork).
struct Host {
    rng: Rng,
    time_ns: u64,
}

impl Host {
    fn page_state(&mut self, pinned: bool) -> PageState {
        PageState {
            valid: true,
            refcount: if pinned {
                1025
            } else {
                1 + (self.rng.next() % 3) as i32
            },
            mapcount: 1 + (self.rng.next() % 2) as i32,
            anon: true,
            anon_exclusive: Some(self.rng.next().is_multiple_of(2)),
            ksm: false,
            swapcache: false,
            large: false,
        }
    }

    fn event(&mut self, i: u64) -> Event {
        self.time_ns += 200 + self.rng.next() % 400;
        let pid = (self.rng.next() % PROCESSES) as u32 + 1000;
        let page = self.rng.next() % PAGES;
        let pfn = 0x10_0000 + page;
        let address = 0x7f00_0000_0000 + page * PAGE;
        let roll = self.rng.next() % 1000;
        let body = match roll {
            0..700 => {
                let copy = roll.is_multiple_of(2);
                Body::CowFault(CowFault {
                    site: Site::Wp,
                    fault: if roll % 10 == 1 {
                        FaultKind::Unshare
                    } else {
                        FaultKind::Write
                    },
                    address,
                    pfn,
                    new_pfn: copy.then_some(pfn + PAGES),
                    decision: if copy {
                        Decision::Copy
                    } else {
                        Decision::Reuse
                    },
                    shared_mapping: false,
                    ret: 0,
                    page: self.page_state(roll.is_multiple_of(7)),
                    swap_count: None,
                })
            }
            700..850 => Body::Gup(Gup {
                path: if roll.is_multiple_of(2) {
                    GupPath::Fast
                } else {
                    GupPath::Slow
                },
                address,
                pfn,
                refs: 1,
                pin: !roll.is_multiple_of(3),
                write: roll.is_multiple_of(5),
                longterm: roll.is_multiple_of(4),
                force: false,
                failed: false,
                page: self.page_state(false),
                stack: None,
            }),
            850..990 => Body::Unpin(Unpin {
                pfn,
                refs: 1,
                pin: !roll.is_multiple_of(3),
                refcount_before: 1025,
            }),
            990..995 => Body::ForkVma(ForkVma {
                child_mm: u64::from(pid) + 1,
                child_pid: Some(pid + 1),
                start: address,
                end: address + 512 * PAGE,
                vm_flags: 0x73,
            }),
            995..998 => Body::TaskFork(TaskFork {
                child_pid: pid + 1,
                child_tid: pid + 1,
                child_mm: u64::from(pid) + 1,
            }),
            _ => Body::TaskExit,
        };
        Event {
            time_ns: self.time_ns,
            cpu: (i % 8) as u32,
            task: Task {
                pid,
                tid: pid,
                comm: Comm::new("memtest"),
            },
            mm: u64::from(pid),
            body,
        }
    }
}

/// VmHWM (peak resident set) in bytes.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM value");
    kib * 1024
}

#[test]
#[ignore = "about a minute in release; run with --ignored --nocapture"]
fn a_hundred_million_events_over_ten_million_pages_stay_under_256_mib() {
    let events = std::env::var("COWTRACE_MEMORY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EVENTS);
    let caps = KernelCaps {
        release: "6.12.0-memtest".into(),
        anon_exclusive: true,
        page_size: 4096,
    };
    let config = Config::default();
    let caps_cfg = config.engine.clone();
    let mut engine = Engine::new(config, caps);
    let mut host = Host {
        rng: Rng(0x9e37_79b9_7f4a_7c15),
        time_ns: 1_000_000_000,
    };
    let mut alerts = Vec::new();
    let mut raised = 0u64;
    let start_rss = peak_rss_bytes();
    let started = Instant::now();
    for i in 0..events {
        let ev = host.event(i);
        engine.feed(&ev, &mut alerts);
        raised += alerts.len() as u64;
        alerts.clear();
    }
    let fed = started.elapsed();
    let report = engine.report();
    let sizes = engine.state_sizes();
    let peak = peak_rss_bytes();
    let secs = fed.as_secs_f64();
    println!(
        "engine memory: {events} events over {PAGES} pages in {secs:.1} s ({:.1} M events/s); \
         VmHWM {:.1} MiB (before {:.1} MiB); state {sizes:?}; alerts raised {raised}, \
         kept {}; evictions {:?}",
        events as f64 / secs / 1e6,
        peak as f64 / (1 << 20) as f64,
        start_rss as f64 / (1 << 20) as f64,
        report.alerts.len(),
        engine.evictions(),
    );
    assert!(sizes.pages <= caps_cfg.max_pages, "{sizes:?}");
    assert!(
        sizes.mapping_pages <= caps_cfg.max_mapping_pages,
        "{sizes:?}"
    );
    assert!(sizes.processes <= caps_cfg.max_processes, "{sizes:?}");
    // The caps were reached: otherwise this measured nothing about them.
    assert!(
        events < EVENTS || sizes.pages * 2 > caps_cfg.max_pages,
        "{sizes:?}"
    );
    assert!(
        peak < LIMIT_BYTES,
        "peak resident {} MiB exceeds {} MiB",
        peak >> 20,
        LIMIT_BYTES >> 20
    );
}
