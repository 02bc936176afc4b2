//! The trace file format (see `docs/trace-format.md`): writer and reader.
//!
//! * [`meta`]: the self-describing header contents.
//! * `format`: byte layout of the header, frames and footer (pure).
//! * `codec`: events <-> records inside a block, delta coded (pure).
//! * [`TraceWriter`]: blocks, flushing, rotation, file mode.
//! * [`TraceReader`]: one or more files, merged by time, damage skipped.

mod codec;
mod error;
mod file_reader;
mod format;
mod input;
pub mod meta;
mod reader;
mod rotate;
mod varint;
mod writer;

pub use error::{BlockDamage, SkipCounts, TraceError, TraceWarning, Truncated};
pub use format::{FORMAT_MAJOR, FORMAT_MINOR, MAX_FRAME_PAYLOAD};
pub use meta::{ClockBase, TraceMeta};
pub use reader::TraceReader;
pub use rotate::{existing_parts, part_path};
pub use varint::DecodeError;
pub use writer::{MAX_BLOCK_BYTES, MAX_RECORD_BYTES, TraceWriter, WriteSummary, WriterOptions};

#[cfg(test)]
mod tests {
    /// The async shell moves writers and readers into blocking tasks, and
    /// the CLI wraps errors in `anyhow` (which needs `Send + Sync`).
    #[test]
    fn writer_and_reader_are_send_and_errors_are_sync() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync + 'static>() {}
        send::<super::TraceWriter>();
        send::<super::TraceReader>();
        send_sync::<super::TraceError>();
        send_sync::<super::TraceWarning>();
    }
}
