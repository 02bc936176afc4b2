//! Reads one trace file: header, then frame by frame, stepping over damage.
//!
//! Fatal problems (the header, I/O errors) are `TraceError`s; damage after
//! the header costs only the damaged block and becomes a warning; a missing
//! footer means the writer did not finish and is reported as [`Truncated`].

use std::{io::Read, path::PathBuf};

use super::{
    TraceMeta,
    codec::{Decoded, DeltaState, decode_record},
    error::{BlockDamage, MAX_WARNINGS, SkipCounts, TraceError, TraceWarning, Truncated},
    format::{
        BadFrame, FILE_HEADER_LEN, FORMAT_MAJOR, FRAME_HEADER_LEN, FileHeader, Footer, FrameHeader,
        KIND_BLOCK, KIND_FOOTER, MAGIC, MAX_FRAME_PAYLOAD, MAX_META_LEN, TAG_PREFIX,
    },
    input::Input,
    varint::Cursor,
};
use crate::model::Event;

/// Warnings and skip counters shared by all files of one reader.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub warnings: Vec<TraceWarning>,
    pub counts: SkipCounts,
}

impl Diagnostics {
    pub fn warn(&mut self, w: TraceWarning) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(w);
        } else {
            self.counts.warnings_suppressed += 1;
        }
    }
}

pub struct FileReader<R> {
    path: PathBuf,
    input: Input<R>,
    pub header: FileHeader,
    pub meta: TraceMeta,
    /// End of the last whole frame (damaged or not).
    frames_end: u64,
    complete_blocks: u64,
    /// Block frames whose header checked out, damaged payload or not.
    block_frames: u64,
    finished: bool,
    truncated: Option<Truncated>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl<R: Read> FileReader<R> {
    /// Reads and checks the header.
    pub fn open(path: PathBuf, r: R) -> Result<Self, TraceError> {
        let mut input = Input::new(r);
        let b = input
            .fill(FILE_HEADER_LEN)
            .map_err(|e| read_error(&path, 0, e))?;
        if b.is_empty() {
            return Err(TraceError::Empty { file: path });
        }
        let m = b.len().min(MAGIC.len());
        if b[..m] != MAGIC[..m] {
            return Err(TraceError::BadMagic {
                file: path,
                offset: 0,
            });
        }
        let truncated = |path: PathBuf, at_byte| TraceError::TruncatedHeader {
            file: path,
            at_byte,
        };
        if b.len() < 12 {
            return Err(truncated(path, b.len() as u64));
        }
        let mut v = [0u8; 12];
        v.copy_from_slice(&b[..12]);
        let (major, minor) = FileHeader::versions(&v);
        if major > FORMAT_MAJOR || major == 0 {
            return Err(TraceError::UnsupportedVersion {
                file: path,
                offset: 8,
                major,
                minor,
                supported: FORMAT_MAJOR,
            });
        }
        if b.len() < FILE_HEADER_LEN {
            return Err(truncated(path, b.len() as u64));
        }
        let mut fixed = [0u8; FILE_HEADER_LEN];
        fixed.copy_from_slice(b);
        let Some(header) = FileHeader::decode(&fixed) else {
            return Err(TraceError::HeaderChecksum {
                file: path,
                offset: 32,
            });
        };
        if header.meta_len > MAX_META_LEN {
            return Err(TraceError::HeaderTooLarge {
                file: path,
                offset: 28,
                len: header.meta_len.into(),
                limit: MAX_META_LEN.into(),
            });
        }
        let total = FILE_HEADER_LEN + header.meta_len as usize + 4;
        let b = input.fill(total).map_err(|e| read_error(&path, 0, e))?;
        if b.len() < total {
            return Err(truncated(path, b.len() as u64));
        }
        let json = &b[FILE_HEADER_LEN..total - 4];
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&b[total - 4..]);
        if crc32c::crc32c(json) != u32::from_le_bytes(crc) {
            return Err(TraceError::HeaderChecksum {
                file: path,
                offset: (total - 4) as u64,
            });
        }
        let meta: TraceMeta =
            serde_json::from_slice(json).map_err(|source| TraceError::BadMeta {
                file: path.clone(),
                offset: FILE_HEADER_LEN as u64,
                source,
            })?;
        input.consume(total);
        Ok(FileReader {
            path,
            input,
            header,
            meta,
            frames_end: total as u64,
            complete_blocks: 0,
            block_frames: 0,
            finished: false,
            truncated: None,
            decompressor: None,
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Set once the file has been read to its end without a footer.
    pub fn truncation(&self) -> Option<&Truncated> {
        self.truncated.as_ref()
    }

    fn read_err(&self, source: std::io::Error) -> TraceError {
        read_error(&self.path, self.input.offset(), source)
    }

    /// The events of the next block (possibly none), or `None` at the end of
    /// the file.
    pub fn next_block(&mut self, diag: &mut Diagnostics) -> Result<Option<Vec<Event>>, TraceError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let off = self.input.offset();
            let avail = self
                .input
                .fill(FRAME_HEADER_LEN)
                .map_err(|e| read_error(&self.path, off, e))?;
            if avail.len() < FRAME_HEADER_LEN {
                self.end_truncated()?;
                return Ok(None);
            }
            let mut hb = [0u8; FRAME_HEADER_LEN];
            hb.copy_from_slice(avail);
            let h = match FrameHeader::decode(&hb) {
                Ok(h) => h,
                Err(bad) => {
                    let skipped = self.resync()?;
                    diag.counts.skipped_bytes += skipped;
                    let file = self.path.clone();
                    diag.warn(match bad {
                        BadFrame::Corrupt => TraceWarning::CorruptFrame {
                            file,
                            offset: off,
                            skipped,
                        },
                        BadFrame::TooLarge(len) => TraceWarning::FrameTooLarge {
                            file,
                            offset: off,
                            len: len.into(),
                            limit: MAX_FRAME_PAYLOAD.into(),
                            skipped,
                        },
                    });
                    continue;
                }
            };
            let total = FRAME_HEADER_LEN + h.stored_len as usize;
            let avail = self
                .input
                .fill(total)
                .map_err(|e| read_error(&self.path, off, e))?;
            if avail.len() < total {
                self.end_truncated()?;
                return Ok(None);
            }
            let payload = &avail[FRAME_HEADER_LEN..];
            let crc_ok = crc32c::crc32c(payload) == h.payload_crc;
            let frame_end = off + total as u64;
            match h.kind {
                KIND_BLOCK => {
                    self.block_frames += 1;
                    let events = if crc_ok {
                        let events = decode_block(
                            &mut self.decompressor,
                            &h,
                            payload,
                            &self.path,
                            off,
                            diag,
                        );
                        if events.is_some() {
                            self.complete_blocks += 1;
                        }
                        events
                    } else {
                        diag.counts.damaged_blocks += 1;
                        diag.warn(TraceWarning::BlockChecksum {
                            file: self.path.clone(),
                            offset: off,
                        });
                        None
                    };
                    self.input.consume(total);
                    self.frames_end = frame_end;
                    return Ok(Some(events.unwrap_or_default()));
                }
                KIND_FOOTER => {
                    let footer = if crc_ok {
                        Footer::decode(payload).ok()
                    } else {
                        None
                    };
                    self.input.consume(total);
                    self.frames_end = frame_end;
                    match footer {
                        Some(f) if f.blocks != self.block_frames => {
                            diag.warn(TraceWarning::IndexMismatch {
                                file: self.path.clone(),
                                offset: off,
                                expected: f.blocks,
                                found: self.block_frames,
                            });
                        }
                        Some(_) => {}
                        None => diag.warn(TraceWarning::BadFooter {
                            file: self.path.clone(),
                            offset: off,
                        }),
                    }
                    self.finished = true;
                    let len = self.input.consume_to_end().map_err(|e| self.read_err(e))?;
                    if len > 0 {
                        diag.warn(TraceWarning::TrailingData {
                            file: self.path.clone(),
                            offset: frame_end,
                            len,
                        });
                    }
                    return Ok(None);
                }
                kind => {
                    // A frame kind from a newer writer: its header checked
                    // out, so its length is trusted and it is stepped over.
                    self.input.consume(total);
                    self.frames_end = frame_end;
                    diag.counts.unknown_frames += 1;
                    diag.warn(TraceWarning::UnknownFrame {
                        file: self.path.clone(),
                        offset: off,
                        kind,
                    });
                }
            }
        }
    }

    fn end_truncated(&mut self) -> Result<(), TraceError> {
        self.input.consume_to_end().map_err(|e| self.read_err(e))?;
        self.finished = true;
        self.truncated = Some(Truncated {
            file: self.path.clone(),
            at_byte: self.frames_end,
            complete_blocks: self.complete_blocks,
            file_len: self.input.offset(),
        });
        Ok(())
    }

    /// Steps from a damaged frame header to the next offset holding a frame
    /// header whose checksum matches (or to the end); returns bytes skipped.
    fn resync(&mut self) -> Result<u64, TraceError> {
        const WINDOW: usize = 64 * 1024;
        let start = self.input.offset();
        self.input.consume(1);
        loop {
            let here = self.input.offset();
            let avail = self
                .input
                .fill(WINDOW)
                .map_err(|e| read_error(&self.path, here, e))?;
            let at_end = avail.len() < WINDOW;
            let Some(i) = avail
                .windows(TAG_PREFIX.len())
                .position(|w| w == TAG_PREFIX)
            else {
                // Keep a possible tag prefix straddling the window edge.
                let keep = if at_end { 0 } else { TAG_PREFIX.len() - 1 };
                let n = avail.len() - keep;
                self.input.consume(n);
                if at_end {
                    break;
                }
                continue;
            };
            if avail.len() - i < FRAME_HEADER_LEN {
                if at_end {
                    // Too short to be a frame: let the caller see the tail
                    // (it reports truncation).
                    self.input.consume(i);
                    break;
                }
                // Refill with the candidate at the window start.
                self.input.consume(i);
                if i == 0 {
                    // Only possible when the window is smaller than a
                    // header, which `WINDOW` rules out; step on regardless.
                    self.input.consume(1);
                }
                continue;
            }
            let mut hb = [0u8; FRAME_HEADER_LEN];
            hb.copy_from_slice(&avail[i..i + FRAME_HEADER_LEN]);
            if FrameHeader::decode(&hb).is_ok() {
                self.input.consume(i);
                break;
            }
            self.input.consume(i + 1);
        }
        Ok(self.input.offset() - start)
    }
}

fn read_error(file: &std::path::Path, offset: u64, source: std::io::Error) -> TraceError {
    TraceError::Read {
        file: file.to_path_buf(),
        offset,
        source,
    }
}

/// Decompresses (bounded by the declared size, itself bounded by
/// [`MAX_FRAME_PAYLOAD`]) and decodes one block. `None` when nothing of it
/// is usable.
fn decode_block(
    dz: &mut Option<zstd::bulk::Decompressor<'static>>,
    h: &FrameHeader,
    payload: &[u8],
    file: &std::path::Path,
    offset: u64,
    diag: &mut Diagnostics,
) -> Option<Vec<Event>> {
    let damaged = |diag: &mut Diagnostics, damage| {
        diag.counts.damaged_blocks += 1;
        diag.warn(TraceWarning::BadBlock {
            file: file.to_path_buf(),
            offset,
            damage,
        });
    };
    // The context is made once per file and reused; making it fails only
    // when zstd cannot allocate, which costs this block, not the process.
    let dz = match dz {
        Some(d) => d,
        None => match zstd::bulk::Decompressor::new() {
            Ok(d) => dz.insert(d),
            Err(e) => {
                damaged(diag, BlockDamage::Decompress(e.to_string()));
                return None;
            }
        },
    };
    let raw = match dz.decompress(payload, h.raw_len as usize) {
        Ok(raw) => raw,
        Err(e) => {
            damaged(diag, BlockDamage::Decompress(e.to_string()));
            return None;
        }
    };
    if raw.len() != h.raw_len as usize {
        damaged(
            diag,
            BlockDamage::RawLength {
                declared: h.raw_len,
                actual: raw.len() as u64,
            },
        );
        return None;
    }
    // Each record takes at least 3 bytes: the count cannot make us
    // allocate more than the block holds.
    let mut events = Vec::with_capacity((h.count as usize).min(raw.len() / 3));
    let mut st = DeltaState::default();
    let mut c = Cursor::new(&raw);
    let mut record = 0u64;
    while !c.is_empty() {
        match decode_record(&mut st, &mut c) {
            Ok(Decoded::Event(e)) => events.push(e),
            Ok(Decoded::Unknown(_)) => diag.counts.unknown_records += 1,
            Err(reason) if reason.is_record_local() => {
                diag.counts.bad_records += 1;
                diag.warn(TraceWarning::BadRecord {
                    file: file.to_path_buf(),
                    offset,
                    record,
                    reason,
                });
            }
            Err(_) => {
                damaged(diag, BlockDamage::Framing { record });
                break;
            }
        }
        record += 1;
    }
    Some(events)
}
