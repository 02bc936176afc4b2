//! The fuzz seed corpus doubles as a compatibility fixture: traces written
//! by an earlier build must keep decoding to the same events.
//!
//! `COWTRACE_WRITE_FUZZ_SEEDS=1 cargo test -p tracer --test trace_seeds`
//! rewrites the seeds (do that only on a deliberate format change).

mod trace_support;

use std::path::{Path, PathBuf};

use cowtrace::{
    model::Event,
    trace::{TraceReader, TraceWriter, WriterOptions},
};
use trace_support::*;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/trace_decode")
}

/// Seed name, events, block size, percentage of the file kept.
fn seeds() -> Vec<(&'static str, Vec<Event>, usize, usize)> {
    vec![
        ("every-variant.cwt", every_variant(), 1 << 20, 100),
        ("cow-walk-blocks.cwt", cow_walk(120), 256, 100),
        ("empty.cwt", Vec::new(), 1 << 20, 100),
        ("cut-mid-file.cwt", cow_walk(60), 200, 70),
    ]
}

fn write_seed(path: &Path, events: &[Event], block: usize, keep_percent: usize) {
    let mut w = TraceWriter::create(
        path,
        &meta(),
        WriterOptions {
            max_block_bytes: block,
            ..Default::default()
        },
    )
    .unwrap();
    for e in events {
        w.push(e).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() * keep_percent / 100]).unwrap();
}

#[test]
fn seeds_decode_to_their_events() {
    let dir = corpus();
    if std::env::var_os("COWTRACE_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, events, block, keep) in seeds() {
            write_seed(&dir.join(name), &events, block, keep);
        }
    }
    let mut total = 0;
    for (name, events, _, keep) in seeds() {
        let path = dir.join(name);
        total += std::fs::metadata(&path).unwrap().len();
        let mut r = TraceReader::open(std::slice::from_ref(&path)).unwrap();
        let got = read_all(&mut r);
        assert!(r.warnings().is_empty(), "{name}: {:?}", r.warnings());
        if keep == 100 {
            assert_eq!(got, events, "{name}");
            assert_eq!(r.truncation(), None, "{name}");
        } else {
            // Cut short: a strict prefix of the events.
            assert!(!got.is_empty() && got.len() < events.len(), "{name}");
            assert_eq!(got, events[..got.len()], "{name}");
            assert!(r.truncation().is_some(), "{name}");
        }
    }
    assert!(total < 50 * 1024, "seed corpus is {total} bytes");
}
