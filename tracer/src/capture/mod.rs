//! Load the embedded eBPF object, attach it per the attach plan, drain the
//! ring buffer. This and the CLI are the only async code: everything after
//! the ring buffer is handed to the synchronous `decode` → `model` pipeline.

mod anchor;
mod counters;
mod counts;
mod error;
mod loader;
mod misses;
mod object;
mod ring;
mod stacks;

pub use anchor::{ANCHOR_TARGET, Anchor};
pub use counters::{LossCounters, LossDelta};
pub use counts::{CountDelta, CountTotals, CountsReader};
pub use error::CaptureError;
pub use loader::{AttachKind, Attachment, Capture, LoadOptions};
pub use misses::{MissDelta, RecursionMisses};
pub use object::ebpf_object;
pub use ring::RingSource;
pub use stacks::MapStacks;
