//! Writes trace files: header, sealed blocks, footer; rotation by size.
//!
//! Crash semantics (see `docs/trace-format.md`): a block reaches the file
//! in one `write_all` when it is sealed (size bound or `flush()`), without
//! `fsync`. A crash of the process loses the unsealed block (at most the
//! interval since the last `flush()`); a power loss can in addition lose
//! what the page cache had not yet written back. `finish()` and rotation
//! `fsync` the finished file once.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions, Permissions},
    hash::BuildHasher,
    io::{self, Seek, SeekFrom, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use super::{
    TraceMeta,
    codec::{DeltaState, encode_event},
    error::TraceError,
    format::{
        FORMAT_MAJOR, FORMAT_MINOR, FileHeader, Footer, FrameHeader, IndexEntry, KIND_BLOCK,
        KIND_FOOTER, MAX_INDEX_ENTRIES, MAX_META_LEN,
    },
    rotate::{existing_parts, part_path},
};
use crate::model::{Body, Event};

/// Largest block (uncompressed) a writer produces; well under the readers'
/// 16 MiB cap even when zstd cannot compress at all.
pub const MAX_BLOCK_BYTES: usize = 8 << 20;
/// Largest single record; a bigger one is refused (`RecordTooLarge`).
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Stack definitions remembered for replay into rotated files.
const MAX_REPLAY_STACKS: usize = 1 << 16;
/// zstd level: 3 is zstd's default and costs ~1 µs per event at most.
const ZSTD_LEVEL: i32 = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// Seal a block when its uncompressed records would exceed this
    /// (clamped to [`MAX_BLOCK_BYTES`]).
    pub max_block_bytes: usize,
    /// Rotate after the block that makes the current file reach this size.
    pub max_size: Option<u64>,
    /// Keep at most this many files (the current one included); the oldest
    /// is deleted when a rotation exceeds it. Needs `max_size` to matter.
    pub max_files: Option<u32>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_block_bytes: 1 << 20,
            max_size: None,
            max_files: None,
        }
    }
}

/// What a finished writer produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// The files of this recording still on disk, oldest first.
    pub files: Vec<PathBuf>,
    /// Events in blocks that were written.
    pub events: u64,
    /// Events in blocks whose write failed (their errors were returned).
    pub events_lost: u64,
    pub blocks: u64,
    /// Bytes written over all files, headers and footers included.
    pub bytes: u64,
}

/// The operations the writer needs from a file; a trait so tests can
/// inject failing disks.
pub(crate) trait PartFile: Send {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()>;
    /// Cuts the file back to `len` and continues writing there.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    fn sync(&mut self) -> io::Result<()>;
}

impl PartFile for File {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        Write::write_all(self, b)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)?;
        self.seek(SeekFrom::Start(len)).map(|_| ())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

pub(crate) type Opener = fn(&Path) -> io::Result<Box<dyn PartFile>>;

/// Creates (or truncates) `path` readable by its owner only: `mode(0o600)`
/// applies on creation through the umask, the explicit `fchmod` fixes both
/// a permissive pre-existing file and an unusual umask.
fn create_private(path: &Path) -> io::Result<Box<dyn PartFile>> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(Permissions::from_mode(0o600))?;
    Ok(Box::new(f))
}

/// The file being written.
struct Part {
    path: PathBuf,
    file: Box<dyn PartFile>,
    /// Bytes of complete frames written: where the next frame goes.
    len: u64,
    blocks: u64,
    events: u64,
    index: Vec<IndexEntry>,
    min_time_ns: u64,
    max_time_ns: u64,
}

/// The block being filled.
#[derive(Default)]
struct OpenBlock {
    st: DeltaState,
    buf: Vec<u8>,
    count: u32,
    min_time_ns: u64,
    max_time_ns: u64,
}

impl OpenBlock {
    fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encodes `ev` without committing: the record and the state after it.
    fn encode(&self, ev: &Event) -> (Vec<u8>, DeltaState) {
        let mut st = self.st;
        let mut rec = Vec::with_capacity(32);
        encode_event(&mut st, ev, &mut rec);
        (rec, st)
    }

    fn commit(&mut self, rec: &[u8], st: DeltaState, time_ns: u64) {
        if self.count == 0 {
            self.min_time_ns = time_ns;
            self.max_time_ns = time_ns;
        }
        self.min_time_ns = self.min_time_ns.min(time_ns);
        self.max_time_ns = self.max_time_ns.max(time_ns);
        self.buf.extend_from_slice(rec);
        self.st = st;
        self.count += 1;
    }
}

pub struct TraceWriter {
    base: PathBuf,
    meta_json: Vec<u8>,
    opts: WriterOptions,
    recording_id: u64,
    open: Opener,
    part: Option<Part>,
    next_sequence: u32,
    block: OpenBlock,
    compressor: zstd::bulk::Compressor<'static>,
    /// Every `StackDef` seen, replayed at the start of each rotated file (so
    /// each file resolves its own stacks) and after a failed block write.
    stacks: BTreeMap<u32, Event>,
    replay_stacks: bool,
    summary: WriteSummary,
    finished: bool,
}

impl TraceWriter {
    /// Creates `path` (mode 0600) and writes its header. Rotated parts left
    /// by an earlier recording at the same path (`path.N`) are deleted: the
    /// new part 0 replaces theirs, and a reader must not stitch them in.
    pub fn create(path: &Path, meta: &TraceMeta, opts: WriterOptions) -> Result<Self, TraceError> {
        Self::create_with(path, meta, opts, create_private)
    }

    pub(crate) fn create_with(
        path: &Path,
        meta: &TraceMeta,
        mut opts: WriterOptions,
        open: Opener,
    ) -> Result<Self, TraceError> {
        if opts.max_block_bytes == 0 {
            return Err(TraceError::InvalidOptions(
                "max_block_bytes must be positive",
            ));
        }
        if opts.max_files == Some(0) {
            return Err(TraceError::InvalidOptions("max_files must be at least 1"));
        }
        if opts.max_size == Some(0) {
            return Err(TraceError::InvalidOptions("max_size must be positive"));
        }
        opts.max_block_bytes = opts.max_block_bytes.min(MAX_BLOCK_BYTES);
        let meta_json = serde_json::to_vec(meta).map_err(|source| TraceError::EncodeMeta {
            file: path.to_path_buf(),
            source,
        })?;
        if meta_json.len() > MAX_META_LEN as usize {
            return Err(TraceError::MetaTooLarge {
                file: path.to_path_buf(),
                len: meta_json.len() as u64,
                limit: MAX_META_LEN.into(),
            });
        }
        let compressor =
            zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|source| TraceError::Compress {
                file: path.to_path_buf(),
                source,
            })?;
        // A missing directory shows up as the create error below.
        for stale in existing_parts(path).unwrap_or_default() {
            if stale.as_path() != path {
                remove_part(&stale)?;
            }
        }
        let mut w = TraceWriter {
            base: path.to_path_buf(),
            meta_json,
            opts,
            recording_id: recording_id(),
            open,
            part: None,
            next_sequence: 0,
            block: OpenBlock::default(),
            compressor,
            stacks: BTreeMap::new(),
            replay_stacks: false,
            summary: WriteSummary::default(),
            finished: false,
        };
        w.open_next_part()?;
        Ok(w)
    }

    /// Buffers one event; seals and writes the block first if the event
    /// would overflow it (rotating when the file is full). On `Err` (a block
    /// could not be written) that block's events are lost and counted in
    /// [`WriteSummary::events_lost`]; `ev` itself is still kept.
    pub fn push(&mut self, ev: &Event) -> Result<(), TraceError> {
        check_record_size(ev)?;
        let mut result = self.start_block();
        let (rec, st) = self.block.encode(ev);
        if !self.block.is_empty() && self.block.buf.len() + rec.len() > self.opts.max_block_bytes {
            keep_first(&mut result, self.flush());
            keep_first(&mut result, self.start_block());
            keep_first(&mut result, self.append(ev));
        } else {
            self.block.commit(&rec, st, ev.time_ns);
        }
        if let Body::StackDef(s) = &ev.body
            && (self.stacks.len() < MAX_REPLAY_STACKS || self.stacks.contains_key(&s.id))
        {
            self.stacks.insert(s.id, ev.clone());
        }
        result
    }

    /// Adds `ev` to the open block, sealing it first when full (no rotation:
    /// used while replaying stacks, which must stay in front of the events).
    fn append(&mut self, ev: &Event) -> Result<(), TraceError> {
        let (rec, st) = self.block.encode(ev);
        if !self.block.is_empty() && self.block.buf.len() + rec.len() > self.opts.max_block_bytes {
            let result = self.seal_and_write();
            // The new block starts from a fresh delta state.
            let (rec, st) = self.block.encode(ev);
            self.block.commit(&rec, st, ev.time_ns);
            return result;
        }
        self.block.commit(&rec, st, ev.time_ns);
        Ok(())
    }

    /// At the start of a block, replays the known stacks when a rotation or
    /// a failed write may have separated them from the events using them.
    fn start_block(&mut self) -> Result<(), TraceError> {
        if !self.block.is_empty() || !self.replay_stacks {
            return Ok(());
        }
        self.replay_stacks = false;
        let stacks: Vec<Event> = self.stacks.values().cloned().collect();
        let mut result = Ok(());
        for s in &stacks {
            keep_first(&mut result, self.append(s));
        }
        result
    }

    /// Seals the open block and writes it (one `write_all`, no `fsync`).
    /// Rotates afterwards when the file reached `max_size`.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        self.seal_and_write()?;
        if let (Some(max), Some(part)) = (self.opts.max_size, &self.part)
            && part.len >= max
        {
            self.rotate()?;
        }
        Ok(())
    }

    fn seal_and_write(&mut self) -> Result<(), TraceError> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = std::mem::take(&mut self.block);
        let result = self.write_block(&block);
        if result.is_err() {
            self.summary.events_lost += u64::from(block.count);
            // The lost block may have carried stack definitions.
            self.replay_stacks = !self.stacks.is_empty();
        }
        result
    }

    fn write_block(&mut self, block: &OpenBlock) -> Result<(), TraceError> {
        if self.part.is_none() {
            // A previous rotation failed to open the next file: retry.
            self.open_next_part()?;
        }
        let Some(part) = self.part.as_mut() else {
            return Ok(());
        };
        let payload =
            self.compressor
                .compress(&block.buf)
                .map_err(|source| TraceError::Compress {
                    file: part.path.clone(),
                    source,
                })?;
        let header = FrameHeader {
            kind: KIND_BLOCK,
            stored_len: payload.len() as u32,
            raw_len: block.buf.len() as u32,
            count: block.count,
            min_time_ns: block.min_time_ns,
            max_time_ns: block.max_time_ns,
            payload_crc: crc32c::crc32c(&payload),
        };
        let mut frame = Vec::with_capacity(header.encode().len() + payload.len());
        frame.extend_from_slice(&header.encode());
        frame.extend_from_slice(&payload);
        write_frame(part, &frame)?;
        if part.index.len() < MAX_INDEX_ENTRIES {
            part.index.push(IndexEntry {
                offset: part.len,
                min_time_ns: block.min_time_ns,
                max_time_ns: block.max_time_ns,
                events: block.count,
            });
        }
        if part.blocks == 0 {
            part.min_time_ns = block.min_time_ns;
            part.max_time_ns = block.max_time_ns;
        }
        part.min_time_ns = part.min_time_ns.min(block.min_time_ns);
        part.max_time_ns = part.max_time_ns.max(block.max_time_ns);
        part.len += frame.len() as u64;
        part.blocks += 1;
        part.events += u64::from(block.count);
        self.summary.blocks += 1;
        self.summary.events += u64::from(block.count);
        self.summary.bytes += frame.len() as u64;
        Ok(())
    }

    /// Finishes the current file and opens the next part.
    fn rotate(&mut self) -> Result<(), TraceError> {
        if let Some(part) = self.part.take() {
            self.finish_part(part)?;
        }
        self.open_next_part()
    }

    fn open_next_part(&mut self) -> Result<(), TraceError> {
        let sequence = self.next_sequence;
        let path = part_path(&self.base, sequence);
        let file = (self.open)(&path).map_err(|source| TraceError::Create {
            file: path.clone(),
            source,
        })?;
        let mut part = Part {
            path: path.clone(),
            file,
            len: 0,
            blocks: 0,
            events: 0,
            index: Vec::new(),
            min_time_ns: 0,
            max_time_ns: 0,
        };
        let header = FileHeader {
            major: FORMAT_MAJOR,
            minor: FORMAT_MINOR,
            flags: 0,
            recording_id: self.recording_id,
            sequence,
            meta_len: self.meta_json.len() as u32,
        }
        .encode(&self.meta_json);
        write_frame(&mut part, &header)?;
        part.len = header.len() as u64;
        self.summary.bytes += part.len;
        self.summary.files.push(path);
        self.next_sequence = sequence.saturating_add(1);
        self.part = Some(part);
        if sequence > 0 {
            self.replay_stacks = !self.stacks.is_empty();
        }
        if let Some(old) = self
            .opts
            .max_files
            .and_then(|keep| sequence.checked_sub(keep))
        {
            let old = part_path(&self.base, old);
            self.summary.files.retain(|f| f != &old);
            remove_part(&old)?;
        }
        Ok(())
    }

    /// Writes the footer and syncs: the file is complete.
    fn finish_part(&mut self, mut part: Part) -> Result<(), TraceError> {
        let footer = Footer {
            blocks: part.blocks,
            events: part.events,
            index: std::mem::take(&mut part.index),
            footer_offset: part.len,
        }
        .encode();
        let header = FrameHeader {
            kind: KIND_FOOTER,
            stored_len: footer.len() as u32,
            raw_len: footer.len() as u32,
            count: part.blocks.min(MAX_INDEX_ENTRIES as u64) as u32,
            min_time_ns: part.min_time_ns,
            max_time_ns: part.max_time_ns,
            payload_crc: crc32c::crc32c(&footer),
        };
        let mut frame = header.encode().to_vec();
        frame.extend_from_slice(&footer);
        write_frame(&mut part, &frame)?;
        part.len += frame.len() as u64;
        self.summary.bytes += frame.len() as u64;
        part.file.sync().map_err(|source| TraceError::Write {
            file: part.path.clone(),
            offset: part.len,
            source,
        })
    }

    /// Writes the open block, then `fsync`s the current file.
    pub fn sync(&mut self) -> Result<(), TraceError> {
        self.flush()?;
        match self.part.as_mut() {
            Some(part) => part.file.sync().map_err(|source| TraceError::Write {
                file: part.path.clone(),
                offset: part.len,
                source,
            }),
            None => Ok(()),
        }
    }

    /// Writes the open block and the footer, and syncs the file.
    pub fn finish(mut self) -> Result<WriteSummary, TraceError> {
        self.finished = true;
        self.flush()?;
        if let Some(part) = self.part.take() {
            self.finish_part(part)?;
        }
        Ok(std::mem::take(&mut self.summary))
    }

    /// Events in blocks written so far (buffered events not included).
    pub fn events_written(&self) -> u64 {
        self.summary.events
    }

    /// Events buffered in the open block.
    pub fn events_buffered(&self) -> u64 {
        self.block.count.into()
    }

    /// The file currently written to.
    pub fn current_path(&self) -> Option<&Path> {
        self.part.as_ref().map(|p| p.path.as_path())
    }
}

impl Drop for TraceWriter {
    /// A writer dropped without `finish()` (an error path) still writes its
    /// buffered block, best effort; the file then reads as truncated.
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.flush();
        }
    }
}

/// Writes one whole frame. On failure the file is cut back to the last
/// complete frame (best effort: if that fails too, readers still stop at the
/// partial frame, whose length or checksum cannot match).
fn write_frame(part: &mut Part, frame: &[u8]) -> Result<(), TraceError> {
    part.file.write_all(frame).map_err(|source| {
        let _ = part.file.truncate(part.len);
        TraceError::Write {
            file: part.path.clone(),
            offset: part.len,
            source,
        }
    })
}

fn keep_first(result: &mut Result<(), TraceError>, next: Result<(), TraceError>) {
    if result.is_ok() {
        *result = next;
    }
}

/// Refuses records over [`MAX_RECORD_BYTES`]. Only stacks and loss records
/// carry strings, so only they can get near it.
fn check_record_size(ev: &Event) -> Result<(), TraceError> {
    let strings = match &ev.body {
        Body::StackDef(s) => s.frames.iter().map(|f| f.len() + 10).sum(),
        Body::Lost(l) => l.hook.len(),
        _ => 0,
    };
    // 128 bytes cover every fixed field of any record.
    let len = strings + 128;
    if len > MAX_RECORD_BYTES {
        return Err(TraceError::RecordTooLarge {
            len: len as u64,
            limit: MAX_RECORD_BYTES as u64,
        });
    }
    Ok(())
}

fn remove_part(path: &Path) -> Result<(), TraceError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(TraceError::Remove {
            file: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// A random id shared by the files of one recording. `RandomState` is seeded
/// from the OS's randomness; no extra dependency needed.
fn recording_id() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one((now, std::process::id()))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::{
        model::{Comm, StackDef, Task},
        trace::TraceReader,
    };

    thread_local! {
        /// Bytes the fake disk accepts before ENOSPC; whether cutting back
        /// fails too (EIO).
        static SPACE: Cell<u64> = const { Cell::new(u64::MAX) };
        static TRUNCATE_FAILS: Cell<bool> = const { Cell::new(false) };
    }

    /// A real file on a disk that fills up: writes as much as fits, then
    /// fails with ENOSPC, like a short `write(2)` followed by an error.
    struct FillingDisk(File);

    impl PartFile for FillingDisk {
        fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
            let space = SPACE.get();
            let n = (b.len() as u64).min(space) as usize;
            Write::write_all(&mut self.0, &b[..n])?;
            SPACE.set(space - n as u64);
            if n < b.len() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            Ok(())
        }

        fn truncate(&mut self, len: u64) -> io::Result<()> {
            if TRUNCATE_FAILS.get() {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            PartFile::truncate(&mut self.0, len)
        }

        fn sync(&mut self) -> io::Result<()> {
            self.0.sync_data()
        }
    }

    fn filling_disk(path: &Path) -> io::Result<Box<dyn PartFile>> {
        Ok(Box::new(FillingDisk(File::create(path)?)))
    }

    fn meta() -> TraceMeta {
        TraceMeta {
            hostname: "h".into(),
            ..TraceMeta::default()
        }
    }

    fn exit(t: u64) -> Event {
        Event {
            time_ns: t,
            cpu: 0,
            task: Task {
                pid: 1,
                tid: 1,
                comm: Comm::new("x"),
            },
            mm: 0,
            body: Body::TaskExit,
        }
    }

    fn stack(t: u64) -> Event {
        Event {
            body: Body::StackDef(StackDef {
                id: 5,
                frames: vec!["f+0x1".into()],
            }),
            ..exit(t)
        }
    }

    fn read(path: &Path) -> (Vec<Event>, TraceReader) {
        let mut r = TraceReader::open(&[path.to_path_buf()]).unwrap();
        let events = r.by_ref().map(|e| e.unwrap()).collect();
        (events, r)
    }

    fn disk_full_then_recovery(truncate_fails: bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.cwt");
        TRUNCATE_FAILS.set(truncate_fails);
        SPACE.set(u64::MAX);
        let mut w =
            TraceWriter::create_with(&path, &meta(), WriterOptions::default(), filling_disk)
                .unwrap();
        w.push(&exit(1)).unwrap();
        w.flush().unwrap();
        w.push(&exit(2)).unwrap();
        w.flush().unwrap();
        let good_len = std::fs::metadata(&path).unwrap().len();

        // The disk fills in the middle of the third block.
        SPACE.set(10);
        w.push(&stack(3)).unwrap();
        w.push(&exit(4)).unwrap();
        let err = w.flush().unwrap_err();
        match &err {
            TraceError::Write {
                file,
                offset,
                source,
            } => {
                assert_eq!(file, &path);
                assert_eq!(*offset, good_len);
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            }
            e => panic!("{e}"),
        }
        assert!(err.to_string().contains("t.cwt"), "{err}");
        let on_disk = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            on_disk,
            if truncate_fails {
                good_len + 10
            } else {
                good_len
            }
        );

        // Readable as it is: the two complete blocks, then truncation.
        let (events, r) = read(&path);
        assert_eq!(events, [exit(1), exit(2)]);
        let t = r.truncation().unwrap();
        assert_eq!(
            (t.at_byte, t.complete_blocks, t.file_len),
            (good_len, 2, on_disk)
        );

        // Space comes back: writing continues, the lost block's stack
        // definition is replayed in front of the next events.
        SPACE.set(u64::MAX);
        w.push(&exit(5)).unwrap();
        let summary = w.finish().unwrap();
        assert_eq!((summary.events, summary.events_lost), (4, 2));
        let (events, r) = read(&path);
        assert_eq!(events, [exit(1), exit(2), stack(3), exit(5)]);
        assert_eq!(r.truncation(), None);
        if truncate_fails {
            // The partial frame is stepped over like any damage.
            assert_eq!(r.warnings().len(), 1, "{:?}", r.warnings());
        } else {
            assert!(r.warnings().is_empty(), "{:?}", r.warnings());
        }
    }

    #[test]
    fn disk_full_loses_one_block_and_the_file_stays_readable() {
        disk_full_then_recovery(false);
    }

    #[test]
    fn disk_full_with_a_failing_truncate_still_reads_back() {
        disk_full_then_recovery(true);
    }

    #[test]
    fn invalid_options_and_oversized_records_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.cwt");
        for opts in [
            WriterOptions {
                max_files: Some(0),
                ..Default::default()
            },
            WriterOptions {
                max_size: Some(0),
                ..Default::default()
            },
            WriterOptions {
                max_block_bytes: 0,
                ..Default::default()
            },
        ] {
            let r = TraceWriter::create(&path, &meta(), opts);
            assert!(matches!(r, Err(TraceError::InvalidOptions(_))));
        }
        let mut w = TraceWriter::create(&path, &meta(), WriterOptions::default()).unwrap();
        let huge = Event {
            body: Body::StackDef(StackDef {
                id: 1,
                frames: vec!["x".repeat(2 << 20)],
            }),
            ..exit(1)
        };
        assert!(matches!(
            w.push(&huge),
            Err(TraceError::RecordTooLarge { .. })
        ));
        assert_eq!(w.events_buffered(), 0);
    }

    #[test]
    fn create_fails_with_the_path_when_the_directory_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("t.cwt");
        match TraceWriter::create(&path, &meta(), WriterOptions::default()) {
            Err(TraceError::Create { file, source }) => {
                assert_eq!(file, path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("{:?}", other.err()),
        }
    }
}
