//! Ring buffer entries into wire structs: size checks and unaligned copies.
//!
//! A ring buffer entry is only guaranteed to be 8-byte aligned by the BPF
//! ring buffer, and a slice handed in by a test or a replay tool not even
//! that, so records are copied out with `read_unaligned`, never referenced
//! in place.

use std::mem::size_of;
use std::ptr;

use tracer_common::{
    CowFaultRecord, ForkCopyRecord, ForkVmaRecord, GupRecord, Header, TaskExitRecord,
    TaskForkRecord, UnpinRecord,
};

use super::DecodeError;

/// Wire structs that may be copied out of arbitrary bytes.
///
/// # Safety
///
/// Implementors are `#[repr(C)]` and made only of integers and arrays of
/// integers with explicit padding (the `tracer-common` contract), so every
/// bit pattern of `size_of::<Self>()` bytes is a valid value.
pub(crate) unsafe trait Wire: Copy {}

// SAFETY: all of these are the `tracer-common` records described above.
unsafe impl Wire for Header {}
unsafe impl Wire for CowFaultRecord {}
unsafe impl Wire for GupRecord {}
unsafe impl Wire for UnpinRecord {}
unsafe impl Wire for ForkVmaRecord {}
unsafe impl Wire for ForkCopyRecord {}
unsafe impl Wire for TaskForkRecord {}
unsafe impl Wire for TaskExitRecord {}

/// Copies a `T` out of the first `size_of::<T>()` bytes, if there are that many.
fn copy_prefix<T: Wire>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the slice holds at least size_of::<T>() readable bytes,
    // read_unaligned has no alignment requirement, and `T: Wire` makes any
    // bit pattern a valid `T`.
    Some(unsafe { ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// One ring buffer entry whose header passed the envelope checks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry<'a> {
    pub hdr: Header,
    /// The record's bytes: exactly `hdr.size` of them.
    bytes: &'a [u8],
}

impl<'a> Entry<'a> {
    /// Checks the envelope: a whole header, and a `size` that covers the
    /// header and fits in the entry. Bytes past `size` (ring buffer
    /// rounding) are ignored.
    pub fn parse(raw: &'a [u8]) -> Result<Self, DecodeError> {
        let hdr: Header =
            copy_prefix(raw).ok_or(DecodeError::TruncatedHeader { len: raw.len() })?;
        let size = hdr.size as usize;
        if size < size_of::<Header>() || size > raw.len() {
            return Err(DecodeError::BadSize {
                claimed: hdr.size,
                len: raw.len(),
            });
        }
        Ok(Entry {
            hdr,
            bytes: &raw[..size],
        })
    }

    /// The record as its kind's struct. A record shorter than the struct is
    /// rejected; a longer one (a newer producer that appended fields) is
    /// accepted and the tail ignored.
    pub fn read<T: Wire>(&self) -> Result<T, DecodeError> {
        copy_prefix(self.bytes).ok_or(DecodeError::Short {
            kind: self.hdr.kind,
            size: self.bytes.len(),
            need: size_of::<T>(),
        })
    }
}

/// The bytes of a wire struct, as the ring buffer carries them, borrowed
/// (synthetic streams for tests and benchmarks).
#[cfg(any(test, feature = "test-support"))]
pub(crate) fn bytes_of<T: Wire>(rec: &T) -> &[u8] {
    // SAFETY: `T: Wire` is plain old data with explicit padding fields (no
    // uninitialised bytes); the slice borrows `rec` for its lifetime.
    unsafe { std::slice::from_raw_parts((rec as *const T).cast::<u8>(), size_of::<T>()) }
}

/// Test helper: the bytes of a wire struct, as the ring buffer carries them.
#[cfg(test)]
pub(crate) fn to_bytes<T: Wire>(rec: &T) -> Vec<u8> {
    let mut v = vec![0u8; size_of::<T>()];
    // SAFETY: `v` has exactly size_of::<T>() bytes; write_unaligned has no
    // alignment requirement.
    unsafe { ptr::write_unaligned(v.as_mut_ptr().cast::<T>(), *rec) };
    v
}

#[cfg(test)]
mod tests {
    use tracer_common::kind;

    use super::*;

    fn hdr(kind: u16, size: usize) -> Header {
        Header {
            kind,
            size: size as u32,
            time_ns: 7,
            pid: 1,
            tid: 2,
            ..Header::default()
        }
    }

    #[test]
    fn reads_exact_record() {
        let rec = UnpinRecord {
            hdr: hdr(kind::UNPIN, size_of::<UnpinRecord>()),
            pfn: 0x1234,
            refs: 3,
            ..Default::default()
        };
        let bytes = to_bytes(&rec);
        let e = Entry::parse(&bytes).unwrap();
        assert_eq!(e.hdr.kind, kind::UNPIN);
        assert_eq!(e.read::<UnpinRecord>().unwrap(), rec);
    }

    #[test]
    fn reads_from_unaligned_slice() {
        let rec = TaskExitRecord {
            hdr: hdr(kind::TASK_EXIT, size_of::<TaskExitRecord>()),
        };
        let mut buf = vec![0u8; 1];
        buf.extend(to_bytes(&rec));
        let e = Entry::parse(&buf[1..]).unwrap();
        assert_eq!(e.read::<TaskExitRecord>().unwrap(), rec);
    }

    #[test]
    fn rejects_truncated_header() {
        let bytes = to_bytes(&hdr(kind::TASK_EXIT, 56));
        assert_eq!(
            Entry::parse(&bytes[..55]).unwrap_err(),
            DecodeError::TruncatedHeader { len: 55 }
        );
    }

    #[test]
    fn rejects_size_beyond_entry_or_below_header() {
        let bytes = to_bytes(&hdr(kind::TASK_EXIT, 57));
        assert_eq!(
            Entry::parse(&bytes).unwrap_err(),
            DecodeError::BadSize {
                claimed: 57,
                len: 56
            }
        );
        let bytes = to_bytes(&hdr(kind::TASK_EXIT, 8));
        assert_eq!(
            Entry::parse(&bytes).unwrap_err(),
            DecodeError::BadSize {
                claimed: 8,
                len: 56
            }
        );
    }

    #[test]
    fn rejects_record_shorter_than_its_struct() {
        // A header-only entry claiming to be an unpin record.
        let bytes = to_bytes(&hdr(kind::UNPIN, 56));
        let e = Entry::parse(&bytes).unwrap();
        assert_eq!(
            e.read::<UnpinRecord>().unwrap_err(),
            DecodeError::Short {
                kind: kind::UNPIN,
                size: 56,
                need: size_of::<UnpinRecord>()
            }
        );
    }

    #[test]
    fn size_limits_the_record_not_the_entry() {
        // The entry has room for a whole unpin record but the header says
        // only 60 bytes belong to it: the struct must not be read.
        let rec = UnpinRecord {
            hdr: hdr(kind::UNPIN, 60),
            ..Default::default()
        };
        let bytes = to_bytes(&rec);
        let e = Entry::parse(&bytes).unwrap();
        assert!(matches!(
            e.read::<UnpinRecord>(),
            Err(DecodeError::Short { size: 60, .. })
        ));
    }

    #[test]
    fn accepts_longer_record() {
        let rec = UnpinRecord {
            hdr: hdr(kind::UNPIN, size_of::<UnpinRecord>() + 16),
            pfn: 9,
            ..Default::default()
        };
        let mut bytes = to_bytes(&rec);
        bytes.extend([0xaa; 16]);
        let e = Entry::parse(&bytes).unwrap();
        assert_eq!(e.read::<UnpinRecord>().unwrap().pfn, 9);
    }
}
