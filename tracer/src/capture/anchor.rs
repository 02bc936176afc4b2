//! The benchmark anchor: only the counting `baseline_count` kprobe on
//! `do_wp_page`, so `cargo xtask bench` can show what the cheapest possible
//! probe on the hottest hook costs next to cowtrace's real programs.

use aya::maps::{MapData, PerCpuArray};
use tracer_common::{Filter, Layout, prog};

use super::{AttachKind, Attachment, Capture, CaptureError, LoadOptions};

/// The per-CPU counter map `baseline_count` increments.
const BASELINE_MAP: &str = "BASELINE";
/// The hook the anchor measures: the write-fault handler every COW passes.
pub const ANCHOR_TARGET: &str = "do_wp_page";

/// `baseline_count` attached to `do_wp_page`, and its counter.
pub struct Anchor {
    /// Held for its `Drop`, which detaches the probe.
    _capture: Capture,
    counts: PerCpuArray<MapData, u64>,
}

impl Anchor {
    /// Loads the object (layout and filters are irrelevant to the counting
    /// program) and attaches only the anchor.
    pub fn attach(ring_bytes: u32) -> Result<Self, CaptureError> {
        let opts = LoadOptions {
            layout: Layout::EMPTY,
            filter: Filter::default(),
            ring_bytes,
            pids: Vec::new(),
        };
        let plan = [Attachment {
            program: prog::BASELINE_COUNT.to_string(),
            target: ANCHOR_TARGET.to_string(),
            kind: AttachKind::Kprobe,
        }];
        let mut capture = Capture::load(&opts, &plan)?;
        let map = capture
            .ebpf
            .take_map(BASELINE_MAP)
            .ok_or(CaptureError::Map {
                map: BASELINE_MAP,
                detail: "missing".into(),
            })?;
        let counts = PerCpuArray::try_from(map).map_err(|e| CaptureError::Map {
            map: BASELINE_MAP,
            detail: e.to_string(),
        })?;
        Ok(Self {
            _capture: capture,
            counts,
        })
    }

    /// `do_wp_page` calls counted so far, summed over CPUs.
    pub fn count(&self) -> Result<u64, CaptureError> {
        let per_cpu = self.counts.get(&0, 0).map_err(|e| CaptureError::Map {
            map: BASELINE_MAP,
            detail: e.to_string(),
        })?;
        Ok(per_cpu.iter().sum())
    }
}
