//! The self-describing header of a trace file.

use serde::{Deserialize, Serialize};

use crate::model::KernelCaps;

/// Relates the events' CLOCK_MONOTONIC timestamps to wall-clock time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockBase {
    /// CLOCK_MONOTONIC at the start of the recording, in ns.
    pub monotonic_ns: u64,
    /// CLOCK_REALTIME at the same instant, in ns since the Unix epoch.
    pub realtime_ns: u64,
}

/// Everything a reader on another machine needs to interpret the events.
///
/// Stored as JSON in every trace file's header. `serde(default)`: a header
/// written before a field was added still reads (fields are only ever added).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceMeta {
    /// cowtrace's version that wrote the file.
    pub tool_version: String,
    pub hostname: String,
    pub kernel: KernelCaps,
    pub clock: ClockBase,
    /// The attach plan as `cowtrace check --format json` prints it.
    pub attach_plan: serde_json::Value,
    /// Kernel pointers are raw (`--raw-pointers`) instead of per-trace ids.
    pub raw_pointers: bool,
    /// The command line that made the recording.
    pub command: Vec<String>,
}
