//! Arbitrary bytes through the whole trace reader (header, frames,
//! decompression, records, merge) and the JSON-lines export. Any panic,
//! hang or unbounded allocation is a bug: damage must come out as a
//! `TraceError` or a counted warning.
//!
//! The seed corpus (`fuzz/corpus/trace_decode/`) holds small valid traces;
//! `COWTRACE_WRITE_FUZZ_SEEDS=1 cargo test -p tracer --test trace_seeds`
//! regenerates it.

#![no_main]

use cowtrace::{output::jsonl::JsonlExporter, trace::TraceReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = TraceReader::from_bytes("fuzz.cwt", data.to_vec()) else {
        return;
    };
    let mut export = JsonlExporter::new();
    let mut line = String::new();
    while let Some(ev) = reader.next_event() {
        let Ok(ev) = ev else { break };
        line.clear();
        export.line(&ev, &mut line);
    }
    let _ = (reader.truncation(), reader.warnings().len(), reader.skipped());
});
