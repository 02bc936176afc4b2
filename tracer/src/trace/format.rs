//! Byte layout of the file header, the frame header shared by blocks and
//! the footer, and the footer payload. Pure: encoding to and decoding from
//! byte slices, no I/O. `docs/trace-format.md` is the specification.

use super::varint::DecodeError;

/// First 8 bytes of every trace file. The high byte and the CR LF / SUB / LF
/// sequence catch 7-bit and text-mode transfers (the PNG trick).
pub const MAGIC: [u8; 8] = *b"\x89CWT\r\n\x1a\n";

/// Bumped for changes an older reader would misread. Readers refuse a
/// greater major version.
pub const FORMAT_MAJOR: u16 = 1;
/// Bumped for additive changes (new record kinds, appended fields, new
/// frame kinds). Readers accept any minor version.
/// 1: `CowFault.swap_count` and `Lost.skipped` appended.
pub const FORMAT_MINOR: u16 = 1;

/// Fixed part of the file header: magic, versions, flags, recording id,
/// sequence, metadata length, checksum.
pub const FILE_HEADER_LEN: usize = 36;
/// The metadata JSON may not exceed this (the attach plan is a few KiB).
pub const MAX_META_LEN: u32 = 1 << 20;

/// Frame header: 4-byte tag, lengths, count, time range, two checksums.
pub const FRAME_HEADER_LEN: usize = 40;
/// No frame payload, stored or decompressed, may exceed this: a reader
/// refuses bigger length fields before allocating anything.
pub const MAX_FRAME_PAYLOAD: u32 = 16 << 20;

/// Frame tags: `CWT` plus a kind letter.
pub const TAG_PREFIX: [u8; 3] = *b"CWT";
pub const KIND_BLOCK: u8 = b'B';
pub const KIND_FOOTER: u8 = b'F';

/// Last 4 bytes of a footer (and so of a cleanly finished file).
pub const END_MAGIC: [u8; 4] = *b"CWTE";

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The fixed part of a file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub major: u16,
    pub minor: u16,
    /// Reserved, written as 0; readers ignore bits they do not know.
    pub flags: u32,
    /// Random per recording; equal in all files of one rotation series.
    pub recording_id: u64,
    /// 0 for the first file of a recording, +1 per rotation.
    pub sequence: u32,
    pub meta_len: u32,
}

impl FileHeader {
    /// The header followed by the metadata and its checksum: the complete
    /// header frame, written with one `write_all`.
    pub fn encode(&self, meta_json: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(FILE_HEADER_LEN + meta_json.len() + 4);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&self.major.to_le_bytes());
        b.extend_from_slice(&self.minor.to_le_bytes());
        b.extend_from_slice(&self.flags.to_le_bytes());
        b.extend_from_slice(&self.recording_id.to_le_bytes());
        b.extend_from_slice(&self.sequence.to_le_bytes());
        b.extend_from_slice(&self.meta_len.to_le_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b.extend_from_slice(meta_json);
        b.extend_from_slice(&crc32c::crc32c(meta_json).to_le_bytes());
        b
    }

    /// Versions only (bytes 8..12): frozen in every format version, so a
    /// reader can refuse a newer file before trusting the rest.
    pub fn versions(b: &[u8; 12]) -> (u16, u16) {
        (u16_at(b, 8), u16_at(b, 10))
    }

    /// Decodes the fixed part; `None` when its checksum does not match.
    pub fn decode(b: &[u8; FILE_HEADER_LEN]) -> Option<FileHeader> {
        if crc32c::crc32c(&b[..32]) != u32_at(b, 32) {
            return None;
        }
        Some(FileHeader {
            major: u16_at(b, 8),
            minor: u16_at(b, 10),
            flags: u32_at(b, 12),
            recording_id: u64_at(b, 16),
            sequence: u32_at(b, 24),
            meta_len: u32_at(b, 28),
        })
    }
}

/// The header in front of every block and of the footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: u8,
    /// Bytes of payload on disk after this header.
    pub stored_len: u32,
    /// Bytes after decompression (blocks); equals `stored_len` for the footer.
    pub raw_len: u32,
    /// Event records in a block; index entries in a footer.
    pub count: u32,
    /// Smallest and largest event time in a block (whole file in a footer).
    pub min_time_ns: u64,
    pub max_time_ns: u64,
    /// CRC32C of the stored payload.
    pub payload_crc: u32,
}

/// Why 40 bytes are not a frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFrame {
    /// No `CWT` tag, or the header checksum does not match.
    Corrupt,
    /// A checksummed header whose length exceeds [`MAX_FRAME_PAYLOAD`].
    TooLarge(u32),
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[..3].copy_from_slice(&TAG_PREFIX);
        b[3] = self.kind;
        b[4..8].copy_from_slice(&self.stored_len.to_le_bytes());
        b[8..12].copy_from_slice(&self.raw_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.count.to_le_bytes());
        b[16..24].copy_from_slice(&self.min_time_ns.to_le_bytes());
        b[24..32].copy_from_slice(&self.max_time_ns.to_le_bytes());
        b[32..36].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, BadFrame> {
        if b[..3] != TAG_PREFIX || crc32c::crc32c(&b[..36]) != u32_at(b, 36) {
            return Err(BadFrame::Corrupt);
        }
        let h = FrameHeader {
            kind: b[3],
            stored_len: u32_at(b, 4),
            raw_len: u32_at(b, 8),
            count: u32_at(b, 12),
            min_time_ns: u64_at(b, 16),
            max_time_ns: u64_at(b, 24),
            payload_crc: u32_at(b, 32),
        };
        let biggest = h.stored_len.max(h.raw_len);
        if biggest > MAX_FRAME_PAYLOAD {
            return Err(BadFrame::TooLarge(biggest));
        }
        Ok(h)
    }
}

/// Where one block sits, for readers that seek (time-range queries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: u64,
    pub min_time_ns: u64,
    pub max_time_ns: u64,
    pub events: u32,
}

const INDEX_ENTRY_LEN: usize = 28;
/// Fixed bytes of a footer payload besides the entries.
const FOOTER_FIXED_LEN: usize = 8 + 8 + 4 + 8 + 4;
/// More blocks than this are counted but not indexed, so the footer stays
/// within [`MAX_FRAME_PAYLOAD`].
pub const MAX_INDEX_ENTRIES: usize =
    (MAX_FRAME_PAYLOAD as usize - FOOTER_FIXED_LEN) / INDEX_ENTRY_LEN;

/// The footer payload: totals, the block index, and a trailer that lets a
/// reader find the footer from the end of the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footer {
    pub blocks: u64,
    pub events: u64,
    /// Empty when the file had more than [`MAX_INDEX_ENTRIES`] blocks.
    pub index: Vec<IndexEntry>,
    /// File offset of the footer's frame header.
    pub footer_offset: u64,
}

impl Footer {
    pub fn encode(&self) -> Vec<u8> {
        let index: &[IndexEntry] = if self.index.len() > MAX_INDEX_ENTRIES {
            &[]
        } else {
            &self.index
        };
        let mut b = Vec::with_capacity(FOOTER_FIXED_LEN + index.len() * INDEX_ENTRY_LEN);
        b.extend_from_slice(&self.blocks.to_le_bytes());
        b.extend_from_slice(&self.events.to_le_bytes());
        b.extend_from_slice(&(index.len() as u32).to_le_bytes());
        for e in index {
            b.extend_from_slice(&e.offset.to_le_bytes());
            b.extend_from_slice(&e.min_time_ns.to_le_bytes());
            b.extend_from_slice(&e.max_time_ns.to_le_bytes());
            b.extend_from_slice(&e.events.to_le_bytes());
        }
        b.extend_from_slice(&self.footer_offset.to_le_bytes());
        b.extend_from_slice(&END_MAGIC);
        b
    }

    pub fn decode(b: &[u8]) -> Result<Footer, DecodeError> {
        if b.len() < FOOTER_FIXED_LEN {
            return Err(DecodeError::UnexpectedEnd);
        }
        let n = u32_at(b, 16) as usize;
        let want = n
            .checked_mul(INDEX_ENTRY_LEN)
            .and_then(|x| x.checked_add(FOOTER_FIXED_LEN))
            .ok_or(DecodeError::BadValue("index_entries"))?;
        // A newer writer may append fields before the trailer: only the
        // trailer's position (the last 12 bytes) is fixed.
        if b.len() < want {
            return Err(DecodeError::UnexpectedEnd);
        }
        let end = b.len();
        if b[end - 4..] != END_MAGIC {
            return Err(DecodeError::BadValue("end_magic"));
        }
        let index = (0..n)
            .map(|i| {
                let at = 20 + i * INDEX_ENTRY_LEN;
                IndexEntry {
                    offset: u64_at(b, at),
                    min_time_ns: u64_at(b, at + 8),
                    max_time_ns: u64_at(b, at + 16),
                    events: u32_at(b, at + 24),
                }
            })
            .collect();
        Ok(Footer {
            blocks: u64_at(b, 0),
            events: u64_at(b, 8),
            index,
            footer_offset: u64_at(b, end - 12),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_header_round_trip_and_checksum() {
        let h = FileHeader {
            major: FORMAT_MAJOR,
            minor: FORMAT_MINOR,
            flags: 0,
            recording_id: 0x1122_3344_5566_7788,
            sequence: 3,
            meta_len: 2,
        };
        let b = h.encode(b"{}");
        assert_eq!(b.len(), FILE_HEADER_LEN + 2 + 4);
        let mut fixed = [0u8; FILE_HEADER_LEN];
        fixed.copy_from_slice(&b[..FILE_HEADER_LEN]);
        assert_eq!(FileHeader::decode(&fixed), Some(h));
        fixed[20] ^= 0x10;
        assert_eq!(FileHeader::decode(&fixed), None);
    }

    #[test]
    fn frame_header_round_trip_and_limits() {
        let h = FrameHeader {
            kind: KIND_BLOCK,
            stored_len: 100,
            raw_len: 300,
            count: 7,
            min_time_ns: 5,
            max_time_ns: 9,
            payload_crc: 0xdead_beef,
        };
        let b = h.encode();
        assert_eq!(FrameHeader::decode(&b), Ok(h));
        let mut flipped = b;
        flipped[13] ^= 1;
        assert_eq!(FrameHeader::decode(&flipped), Err(BadFrame::Corrupt));
        let huge = FrameHeader {
            raw_len: u32::MAX,
            ..h
        }
        .encode();
        assert_eq!(
            FrameHeader::decode(&huge),
            Err(BadFrame::TooLarge(u32::MAX))
        );
    }

    #[test]
    fn footer_round_trip() {
        let f = Footer {
            blocks: 2,
            events: 10,
            index: vec![
                IndexEntry {
                    offset: 100,
                    min_time_ns: 1,
                    max_time_ns: 2,
                    events: 4,
                },
                IndexEntry {
                    offset: 200,
                    min_time_ns: 3,
                    max_time_ns: 4,
                    events: 6,
                },
            ],
            footer_offset: 300,
        };
        assert_eq!(Footer::decode(&f.encode()), Ok(f));
    }

    #[test]
    fn footer_with_a_huge_entry_count_is_rejected_without_allocating() {
        let mut b = Footer::default().encode();
        b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Footer::decode(&b), Err(DecodeError::UnexpectedEnd));
    }
}
