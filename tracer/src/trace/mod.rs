//! The trace file format (see `docs/trace-format.md`): writer and reader.

pub mod meta;

pub use meta::{ClockBase, TraceMeta};
