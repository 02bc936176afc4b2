//! What can go wrong with trace files: fatal errors ([`TraceError`]),
//! damage a reader steps over ([`TraceWarning`]) and the report of a file
//! that ends early ([`Truncated`]). Every variant names the file and, where
//! there is one, the byte offset, so an operator can inspect it with `xxd`.

use std::{fmt, io, path::PathBuf};

/// A problem that stops writing, or stops reading a file.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("no trace files given")]
    NoInput,
    #[error("{}: cannot open: {source}", file.display())]
    Open { file: PathBuf, source: io::Error },
    #[error("{}: is a directory, not a trace file", file.display())]
    IsDirectory { file: PathBuf },
    #[error("{}: empty file: no trace header", file.display())]
    Empty { file: PathBuf },
    #[error("{}: byte {offset}: not a cowtrace trace file (bad magic)", file.display())]
    BadMagic { file: PathBuf, offset: u64 },
    #[error(
        "{}: byte {offset}: trace format {major}.{minor} is newer than this cowtrace reads \
         ({supported}.x); use a newer cowtrace",
        file.display()
    )]
    UnsupportedVersion {
        file: PathBuf,
        offset: u64,
        major: u16,
        minor: u16,
        supported: u16,
    },
    #[error("{}: byte {at_byte}: the file ends inside its header", file.display())]
    TruncatedHeader { file: PathBuf, at_byte: u64 },
    #[error("{}: byte {offset}: header checksum mismatch (the file is damaged)", file.display())]
    HeaderChecksum { file: PathBuf, offset: u64 },
    #[error(
        "{}: byte {offset}: header claims {len} bytes of metadata (limit {limit})",
        file.display()
    )]
    HeaderTooLarge {
        file: PathBuf,
        offset: u64,
        len: u64,
        limit: u64,
    },
    #[error("{}: byte {offset}: trace metadata is not valid: {source}", file.display())]
    BadMeta {
        file: PathBuf,
        offset: u64,
        source: serde_json::Error,
    },
    #[error(
        "{}: recorded on {found}, but {} was recorded on {expected}: \
         refusing to merge traces of different hosts or kernels",
        file.display(), first.display()
    )]
    Mismatch {
        file: PathBuf,
        first: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "{}: is the same file as {} (recording {recording_id:016x}, part {sequence})",
        file.display(), other.display()
    )]
    DuplicateFile {
        file: PathBuf,
        other: PathBuf,
        recording_id: u64,
        sequence: u32,
    },
    #[error("{}: byte {offset}: read failed: {source}", file.display())]
    Read {
        file: PathBuf,
        offset: u64,
        source: io::Error,
    },
    #[error("{}: cannot create: {source}", file.display())]
    Create { file: PathBuf, source: io::Error },
    #[error("{}: byte {offset}: write failed: {source}", file.display())]
    Write {
        file: PathBuf,
        offset: u64,
        source: io::Error,
    },
    #[error("{}: cannot remove the rotated-out file: {source}", file.display())]
    Remove { file: PathBuf, source: io::Error },
    #[error("{}: cannot encode the trace metadata: {source}", file.display())]
    EncodeMeta {
        file: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: trace metadata is {len} bytes (limit {limit})", file.display())]
    MetaTooLarge { file: PathBuf, len: u64, limit: u64 },
    #[error("{}: zstd failed: {source}", file.display())]
    Compress { file: PathBuf, source: io::Error },
    #[error("an event record of {len} bytes exceeds the {limit}-byte limit")]
    RecordTooLarge { len: u64, limit: u64 },
    #[error("invalid trace writer options: {0}")]
    InvalidOptions(&'static str),
}

/// Why a block's contents could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockDamage {
    /// zstd refused the payload (or it decompressed past the declared size).
    Decompress(String),
    /// It decompressed to a size other than the header declares.
    RawLength { declared: u32, actual: u64 },
    /// A record's framing ran past the end of the block; the records before
    /// it were kept.
    Framing { record: u64 },
}

impl fmt::Display for BlockDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockDamage::Decompress(e) => write!(f, "cannot decompress: {e}"),
            BlockDamage::RawLength { declared, actual } => {
                write!(f, "decompressed to {actual} bytes, header says {declared}")
            }
            BlockDamage::Framing { record } => {
                write!(
                    f,
                    "record {record} is malformed; the rest of the block is dropped"
                )
            }
        }
    }
}

/// Damage a reader stepped over. The events that could be read were read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceWarning {
    #[error(
        "{}: byte {offset}: damaged frame header; skipped {skipped} bytes to the next block",
        file.display()
    )]
    CorruptFrame {
        file: PathBuf,
        offset: u64,
        skipped: u64,
    },
    #[error(
        "{}: byte {offset}: frame claims {len} bytes (limit {limit}); skipped {skipped} bytes \
         to the next block",
        file.display()
    )]
    FrameTooLarge {
        file: PathBuf,
        offset: u64,
        len: u64,
        limit: u64,
        skipped: u64,
    },
    #[error("{}: byte {offset}: block checksum mismatch; block skipped", file.display())]
    BlockChecksum { file: PathBuf, offset: u64 },
    #[error("{}: byte {offset}: block damaged: {damage}", file.display())]
    BadBlock {
        file: PathBuf,
        offset: u64,
        damage: BlockDamage,
    },
    #[error("{}: byte {offset}: record {record} of this block skipped: {reason}", file.display())]
    BadRecord {
        file: PathBuf,
        offset: u64,
        record: u64,
        reason: super::varint::DecodeError,
    },
    #[error("{}: byte {offset}: unknown frame kind {kind:#04x} skipped", file.display())]
    UnknownFrame {
        file: PathBuf,
        offset: u64,
        kind: u8,
    },
    #[error("{}: byte {offset}: damaged footer ignored", file.display())]
    BadFooter { file: PathBuf, offset: u64 },
    #[error(
        "{}: byte {offset}: footer lists {expected} blocks, {found} were found",
        file.display()
    )]
    IndexMismatch {
        file: PathBuf,
        offset: u64,
        expected: u64,
        found: u64,
    },
    #[error("{}: byte {offset}: {len} bytes after the footer ignored", file.display())]
    TrailingData {
        file: PathBuf,
        offset: u64,
        len: u64,
    },
    #[error(
        "{}: recording {found:016x} differs from {expected:016x} of the first file",
        file.display()
    )]
    OtherRecording {
        file: PathBuf,
        found: u64,
        expected: u64,
    },
}

/// A file that ends without its footer: the writer was killed, the machine
/// lost power or the disk filled. Everything up to `at_byte` was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncated {
    pub file: PathBuf,
    /// End of the last complete frame: the first byte not read.
    pub at_byte: u64,
    /// Blocks read completely from this file (damaged ones not counted).
    pub complete_blocks: u64,
    /// Size of the file as read.
    pub file_len: u64,
}

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: truncated at byte {} of {} (not closed cleanly); {} complete blocks read",
            self.file.display(),
            self.at_byte,
            self.file_len,
            self.complete_blocks
        )
    }
}

/// Totals of what a reader skipped, including what its warnings do not list
/// one by one (unknown record kinds can be millions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkipCounts {
    /// Blocks dropped for a bad checksum, decompression or framing.
    pub damaged_blocks: u64,
    /// Bytes stepped over to find the next frame after damage.
    pub skipped_bytes: u64,
    /// Records of kinds this reader does not know (newer writers).
    pub unknown_records: u64,
    /// Records of known kinds with values this reader cannot represent.
    pub bad_records: u64,
    /// Frames of kinds this reader does not know.
    pub unknown_frames: u64,
    /// Warnings not kept because [`MAX_WARNINGS`] were kept already.
    pub warnings_suppressed: u64,
}

/// Warnings kept per reader; the rest are counted only.
pub const MAX_WARNINGS: usize = 1000;
