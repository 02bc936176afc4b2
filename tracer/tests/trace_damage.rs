//! Trace files that were cut short, damaged or written by someone else:
//! every case gives a precise error or a counted warning, never a panic.

mod trace_support;

use std::path::{Path, PathBuf};

use cowtrace::{
    model::{Body, Event, Task},
    trace::{TraceError, TraceReader, TraceWarning, TraceWriter, Truncated, WriterOptions},
};
use trace_support::*;

/// A small trace of four blocks (one per group), with the file offset where
/// each block ends; the header ends at `ends[0]`.
struct Sample {
    bytes: Vec<u8>,
    groups: Vec<Vec<Event>>,
    /// ends[0] = header end, ends[i] = end of block i.
    ends: Vec<u64>,
}

fn sample() -> Sample {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.cwt");
    let mut all = every_variant();
    all.extend(cow_walk(30));
    let groups: Vec<Vec<Event>> = all.chunks(10).map(<[Event]>::to_vec).collect();
    let mut w = TraceWriter::create(&path, &meta(), WriterOptions::default()).unwrap();
    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    let mut ends = vec![len(&path)];
    for g in &groups {
        for e in g {
            w.push(e).unwrap();
        }
        w.flush().unwrap();
        ends.push(len(&path));
    }
    w.finish().unwrap();
    Sample {
        bytes: std::fs::read(&path).unwrap(),
        groups,
        ends,
    }
}

fn read_bytes(bytes: &[u8]) -> Result<(Vec<Event>, TraceReader), TraceError> {
    let mut r = TraceReader::from_bytes("mem.cwt", bytes.to_vec())?;
    let events = read_all(&mut r);
    Ok((events, r))
}

#[test]
fn cut_at_every_byte_reads_back_exactly_the_complete_blocks() {
    let s = sample();
    assert_eq!(s.groups.len(), 4);
    let len = s.bytes.len() as u64;
    let header = s.ends[0];
    for cut in 0..=len {
        let res = read_bytes(&s.bytes[..cut as usize]);
        if cut == 0 {
            assert!(matches!(res, Err(TraceError::Empty { .. })), "cut {cut}");
            continue;
        }
        if cut < header {
            match res {
                Err(TraceError::TruncatedHeader { at_byte, .. }) => assert_eq!(at_byte, cut),
                Err(e) => panic!("cut {cut}: {e}"),
                Ok(_) => panic!("cut {cut}: read a file without its header"),
            }
            continue;
        }
        let (events, r) = res.unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let k = s.ends[1..].iter().filter(|&&e| e <= cut).count();
        assert_eq!(events, s.groups[..k].concat(), "cut {cut}");
        assert!(r.warnings().is_empty(), "cut {cut}: {:?}", r.warnings());
        let want = (cut < len).then(|| Truncated {
            file: PathBuf::from("mem.cwt"),
            at_byte: s.ends[k],
            complete_blocks: k as u64,
            file_len: cut,
        });
        assert_eq!(r.truncation(), want, "cut {cut}");
    }
}

#[test]
fn missing_empty_and_directory_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.cwt");
    match TraceReader::open(std::slice::from_ref(&missing)) {
        Err(TraceError::Open { file, source }) => {
            assert_eq!(file, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{:?}", other.err()),
    }
    let empty = dir.path().join("empty.cwt");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        TraceReader::open(&[empty]),
        Err(TraceError::Empty { .. })
    ));
    assert!(matches!(
        TraceReader::open(&[dir.path().to_path_buf()]),
        Err(TraceError::IsDirectory { .. })
    ));
    assert!(matches!(TraceReader::open(&[]), Err(TraceError::NoInput)));
}

#[test]
fn wrong_magic_and_newer_version_are_refused_with_their_offsets() {
    let s = sample();
    let err = read_bytes(b"PK\x03\x04 this is a zip file").err().unwrap();
    assert!(
        matches!(err, TraceError::BadMagic { offset: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("mem.cwt"), "{err}");

    let mut newer = s.bytes.clone();
    newer[8..10].copy_from_slice(&2u16.to_le_bytes());
    match read_bytes(&newer).err().unwrap() {
        TraceError::UnsupportedVersion {
            offset: 8,
            major: 2,
            minor: cowtrace::trace::FORMAT_MINOR,
            supported: 1,
            ..
        } => {}
        e => panic!("{e}"),
    }

    // A newer *minor* version is additive and reads (the checksum covers
    // the version, so it has to be recomputed as a newer writer would).
    let mut minor = s.bytes.clone();
    minor[10..12].copy_from_slice(&9u16.to_le_bytes());
    let crc = crc32c::crc32c(&minor[..32]);
    minor[32..36].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(read_bytes(&minor).unwrap().0, s.groups.concat());
}

#[test]
fn header_damage_is_fatal_and_located() {
    let s = sample();
    let header = s.ends[0] as usize;
    // A bit flip in the fixed part, and one in the metadata JSON.
    let mut b = s.bytes.clone();
    b[20] ^= 0x04;
    assert!(matches!(
        read_bytes(&b),
        Err(TraceError::HeaderChecksum { offset: 32, .. })
    ));
    let mut b = s.bytes.clone();
    b[50] ^= 0x01;
    match read_bytes(&b) {
        Err(TraceError::HeaderChecksum { offset, .. }) => assert_eq!(offset, header as u64 - 4),
        other => panic!("{:?}", other.err()),
    }
    // A metadata length claiming 4 GiB: refused before any allocation,
    // whether or not the checksum was forged to match.
    let mut b = s.bytes.clone();
    b[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        read_bytes(&b),
        Err(TraceError::HeaderChecksum { offset: 32, .. })
    ));
    let crc = crc32c::crc32c(&b[..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    match read_bytes(&b).err().unwrap() {
        TraceError::HeaderTooLarge {
            offset: 28, len, ..
        } => assert_eq!(len, u64::from(u32::MAX)),
        e => panic!("{e}"),
    }
}

/// Offset of block `i` (0-based) in the sample.
fn block_at(s: &Sample, i: usize) -> usize {
    s.ends[i] as usize
}

#[test]
fn a_bit_flip_inside_a_block_costs_only_that_block() {
    let s = sample();
    let at = block_at(&s, 1);
    let mut b = s.bytes.clone();
    b[at + 45] ^= 0x20; // in block 1's compressed payload
    let (events, r) = read_bytes(&b).unwrap();
    let mut want = s.groups.clone();
    want.remove(1);
    assert_eq!(events, want.concat());
    assert_eq!(
        r.warnings(),
        [TraceWarning::BlockChecksum {
            file: "mem.cwt".into(),
            offset: at as u64
        }]
    );
    assert_eq!(r.skipped().damaged_blocks, 1);
    assert_eq!(r.truncation(), None);
}

#[test]
fn a_damaged_frame_header_is_skipped_by_resynchronising() {
    let s = sample();
    let at = block_at(&s, 2);
    let mut b = s.bytes.clone();
    b[at + 5] ^= 0x80; // block 2's stored length
    let (events, r) = read_bytes(&b).unwrap();
    let mut want = s.groups.clone();
    want.remove(2);
    assert_eq!(events, want.concat());
    let skipped = s.ends[3] - s.ends[2];
    assert_eq!(
        r.warnings()[0],
        TraceWarning::CorruptFrame {
            file: "mem.cwt".into(),
            offset: at as u64,
            skipped
        }
    );
    // The footer noticed that a block went missing.
    assert!(
        matches!(
            r.warnings()[1],
            TraceWarning::IndexMismatch {
                expected: 4,
                found: 3,
                ..
            }
        ),
        "{:?}",
        r.warnings()
    );
    assert_eq!(r.skipped().skipped_bytes, skipped);
}

#[test]
fn a_forged_gigabyte_block_length_is_refused_without_allocating() {
    let s = sample();
    let at = block_at(&s, 0);
    let mut b = s.bytes.clone();
    b[at + 4..at + 8].copy_from_slice(&(3u32 << 30).to_le_bytes());
    let crc = crc32c::crc32c(&b[at..at + 36]);
    b[at + 36..at + 40].copy_from_slice(&crc.to_le_bytes());
    let (events, r) = read_bytes(&b).unwrap();
    assert_eq!(events, s.groups[1..].concat());
    match &r.warnings()[0] {
        TraceWarning::FrameTooLarge {
            offset, len, limit, ..
        } => {
            assert_eq!((*offset, *len, *limit), (at as u64, 3 << 30, 16 << 20));
        }
        w => panic!("{w}"),
    }
}

#[test]
fn garbage_after_the_footer_is_reported() {
    let s = sample();
    let mut b = s.bytes.clone();
    b.extend_from_slice(b"garbage");
    let (events, r) = read_bytes(&b).unwrap();
    assert_eq!(events, s.groups.concat());
    assert_eq!(
        r.warnings(),
        [TraceWarning::TrailingData {
            file: "mem.cwt".into(),
            offset: s.bytes.len() as u64,
            len: 7
        }]
    );
}

// ---- a file built by hand from docs/trace-format.md ----

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn record(out: &mut Vec<u8>, kind: u64, payload: &[u8]) {
    varint(out, kind);
    varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn frame(kind: u8, payload: &[u8], raw_len: usize, count: u32) -> Vec<u8> {
    let mut h = b"CWT".to_vec();
    h.push(kind);
    h.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    h.extend_from_slice(&(raw_len as u32).to_le_bytes());
    h.extend_from_slice(&count.to_le_bytes());
    h.extend_from_slice(&10u64.to_le_bytes());
    h.extend_from_slice(&20u64.to_le_bytes());
    h.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(payload);
    h
}

#[test]
fn a_file_written_from_the_specification_by_a_newer_writer_reads() {
    let json = serde_json::to_vec(&serde_json::json!({
        "hostname": "spec", "tool_version": "9.0", "a_field_from_the_future": [1, 2]
    }))
    .unwrap();
    let mut f = b"\x89CWT\r\n\x1a\n".to_vec();
    f.extend_from_slice(&1u16.to_le_bytes()); // major
    f.extend_from_slice(&3u16.to_le_bytes()); // a newer minor
    f.extend_from_slice(&0x8000_0000u32.to_le_bytes()); // an unknown flag
    f.extend_from_slice(&0xabcdu64.to_le_bytes()); // recording id
    f.extend_from_slice(&0u32.to_le_bytes()); // sequence
    f.extend_from_slice(&(json.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    f.extend_from_slice(&json);
    f.extend_from_slice(&crc32c::crc32c(&json).to_le_bytes());

    // Block: an unknown record kind, a TaskExit at t=10 (nothing changed
    // from the zero state), a TaskExit at t=20 with two appended bytes.
    let mut raw = Vec::new();
    record(&mut raw, 200, &[1, 2, 3]);
    record(&mut raw, 7, &[0x00, 20]); // changed = 0, time delta zigzag(10) = 20
    record(&mut raw, 7, &[0x00, 20, 0xee, 0xff]);
    let z = zstd::bulk::compress(&raw, 3).unwrap();
    f.extend_from_slice(&frame(b'B', &z, raw.len(), 2));
    // A frame kind from the future, then the footer.
    f.extend_from_slice(&frame(b'X', b"whatever", 8, 0));
    let footer_at = f.len() as u64;
    let mut footer = Vec::new();
    footer.extend_from_slice(&1u64.to_le_bytes()); // blocks
    footer.extend_from_slice(&2u64.to_le_bytes()); // events
    footer.extend_from_slice(&0u32.to_le_bytes()); // no index entries
    footer.extend_from_slice(&footer_at.to_le_bytes());
    footer.extend_from_slice(b"CWTE");
    f.extend_from_slice(&frame(b'F', &footer, footer.len(), 0));

    let (events, r) = read_bytes(&f).unwrap();
    let exit = |t| Event {
        time_ns: t,
        cpu: 0,
        task: Task::default(),
        mm: 0,
        body: Body::TaskExit,
    };
    assert_eq!(events, [exit(10), exit(20)]);
    assert_eq!(r.meta().hostname, "spec");
    assert_eq!(r.skipped().unknown_records, 1);
    assert_eq!(r.skipped().unknown_frames, 1);
    assert_eq!(r.truncation(), None);
    assert!(
        matches!(
            r.warnings(),
            [TraceWarning::UnknownFrame { kind: b'X', .. }]
        ),
        "{:?}",
        r.warnings()
    );
}
