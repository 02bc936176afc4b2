//! Opening trace files for the offline subcommands, with the damage the
//! reader found reported on stderr (and in JSON outputs by the caller).

use std::path::PathBuf;

use super::Failure;
use crate::trace::TraceReader;

/// Opens one or more trace files; unreadable input is exit status 2.
pub fn open(files: &[PathBuf]) -> Result<TraceReader, Failure> {
    TraceReader::open(files).map_err(Failure::input)
}

/// After reading: says on stderr what was skipped or cut off.
pub fn report_damage(reader: &TraceReader) {
    for w in reader.warnings() {
        eprintln!("cowtrace: warning: {w}");
    }
    if let Some(t) = reader.truncation() {
        eprintln!("cowtrace: warning: {t}");
    }
}

/// The `"truncated"` JSON member: `{"at_byte": N, "complete_blocks": M}` or null.
pub fn truncation_json(reader: &TraceReader) -> serde_json::Value {
    match reader.truncation() {
        Some(t) => {
            serde_json::json!({ "at_byte": t.at_byte, "complete_blocks": t.complete_blocks })
        }
        None => serde_json::Value::Null,
    }
}
