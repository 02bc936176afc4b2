//! Arbitrary bytes through the whole trace reader (header, frames,
//! decompression, records, merge) and the JSON-lines export. Any panic,
//! hang or unbounded allocation is a bug: damage must come out as a
//! `TraceError` or a counted warning.
//!
//! Checksums stop almost every random mutation at the frame layer, so each
//! input is read three ways: as is; with every checksum it can locate
//! recomputed (mutations then reach zstd and the frame logic); and as the
//! decompressed contents of one valid block (mutations reach the record
//! decoder directly).
//!
//! The seed corpus (`fuzz/corpus/trace_decode/`) holds small valid traces;
//! `COWTRACE_WRITE_FUZZ_SEEDS=1 cargo test -p tracer --test trace_seeds`
//! regenerates it.

#![no_main]

use cowtrace::{output::jsonl::JsonlExporter, trace::TraceReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    read(data.to_vec());
    read(with_checksums_fixed(data));
    read(as_one_block(data));
});

fn read(bytes: Vec<u8>) {
    let Ok(mut reader) = TraceReader::from_bytes("fuzz.cwt", bytes) else {
        return;
    };
    let mut export = JsonlExporter::new();
    let mut line = String::new();
    while let Some(ev) = reader.next_event() {
        let Ok(ev) = ev else { break };
        line.clear();
        export.line(&ev, &mut line);
    }
    let _ = (
        reader.truncation(),
        reader.warnings().len(),
        reader.skipped(),
    );
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

fn put_crc(b: &mut [u8], at: usize, over: std::ops::Range<usize>) {
    let crc = crc32c::crc32c(&b[over]);
    b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Recomputes the header, metadata and frame checksums (layout in
/// `docs/trace-format.md`) wherever the lengths allow.
fn with_checksums_fixed(data: &[u8]) -> Vec<u8> {
    let mut b = data.to_vec();
    if b.len() < 36 {
        return b;
    }
    put_crc(&mut b, 32, 0..32);
    let meta_end = 36usize.saturating_add(u32_at(&b, 28));
    if meta_end + 4 > b.len() {
        return b;
    }
    put_crc(&mut b, meta_end, 36..meta_end);
    let mut off = meta_end + 4;
    while off + 40 <= b.len() && &b[off..off + 3] == b"CWT" {
        let end = (off + 40).saturating_add(u32_at(&b, off + 4)).min(b.len());
        put_crc(&mut b, off + 32, off + 40..end);
        put_crc(&mut b, off + 36, off..off + 36);
        off = end;
    }
    b
}

/// A valid file whose only block decompresses to `records`.
fn as_one_block(records: &[u8]) -> Vec<u8> {
    let Ok(z) = zstd::bulk::compress(records, 1) else {
        return Vec::new();
    };
    let mut f = b"\x89CWT\r\n\x1a\n\x01\x00\x00\x00".to_vec();
    f.extend_from_slice(&[0; 12]); // flags, recording id
    f.extend_from_slice(&[0, 0, 0, 0, 2, 0, 0, 0]); // sequence, metadata length
    f.extend_from_slice(&[0; 4]);
    put_crc(&mut f, 32, 0..32);
    f.extend_from_slice(b"{}");
    f.extend_from_slice(&crc32c::crc32c(b"{}").to_le_bytes());
    let at = f.len();
    f.extend_from_slice(b"CWTB");
    f.extend_from_slice(&(z.len() as u32).to_le_bytes());
    f.extend_from_slice(&(records.len() as u32).to_le_bytes());
    f.extend_from_slice(&[0; 28]);
    f.extend_from_slice(&z);
    let end = f.len();
    put_crc(&mut f, at + 32, at + 40..end);
    put_crc(&mut f, at + 36, at..at + 36);
    f
}
