//! `cowtrace export --format parquet`, from the outside: the file is read
//! back with the `parquet` crate's Arrow reader and every row, every
//! column, is compared with the JSON-lines export of the same trace.
#![cfg(feature = "parquet")]

mod trace_support;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use arrow_array::{
    Array, ArrayRef, BooleanArray, Int32Array, ListArray, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use cowtrace::{
    model::{Body, Event, Site},
    trace::{ClockBase, TraceMeta, TraceWriter, WriterOptions},
};
use parquet::{arrow::arrow_reader::ParquetRecordBatchReaderBuilder, file::reader::FileReader};
use serde_json::{Map, Value};
use trace_support::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn cowtrace(args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_cowtrace"))
        .args(args)
        .output()
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

/// Columns the JSON lines do not have: they come from the trace header.
const FROM_HEADER: [&str; 3] = ["host", "kernel_release", "wall_time"];

/// JSON-lines fields printed as hex strings; Parquet stores them as numbers.
const HEX: [&str; 4] = ["address", "start", "end", "vm_flags"];

fn write_trace(path: &Path, meta: &TraceMeta, events: &[Event], opts: WriterOptions) -> TestResult {
    let mut w = TraceWriter::create(path, meta, opts)?;
    for e in events {
        w.push(e)?;
    }
    w.finish()?;
    Ok(())
}

/// `cowtrace export FILES --format jsonl`, parsed.
fn jsonl_export(files: &[&Path]) -> Result<Vec<Map<String, Value>>, Box<dyn std::error::Error>> {
    let mut args = vec!["export".to_string(), "--format".into(), "jsonl".into()];
    args.extend(files.iter().map(|f| arg(f)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cowtrace(&args)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows = Vec::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        match serde_json::from_str(line)? {
            Value::Object(m) => rows.push(m),
            v => return Err(format!("not an object: {v}").into()),
        }
    }
    Ok(rows)
}

/// `cowtrace export FILES --format parquet -o OUT`.
fn parquet_export(files: &[&Path], out: &Path) -> TestResult {
    let mut args = vec![
        "export".to_string(),
        "--format".into(),
        "parquet".into(),
        "-o".into(),
        arg(out),
    ];
    args.extend(files.iter().map(|f| arg(f)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = cowtrace(&args)?;
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    Ok(())
}

/// One cell as JSON: numbers, strings, bools, lists of strings, or null.
fn cell(col: &ArrayRef, i: usize) -> Result<Value, String> {
    if col.is_null(i) {
        return Ok(Value::Null);
    }
    let any = col.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return Ok(a.value(i).into());
    }
    if let Some(a) = any.downcast_ref::<UInt64Array>() {
        return Ok(a.value(i).into());
    }
    if let Some(a) = any.downcast_ref::<UInt32Array>() {
        return Ok(a.value(i).into());
    }
    if let Some(a) = any.downcast_ref::<Int32Array>() {
        return Ok(a.value(i).into());
    }
    if let Some(a) = any.downcast_ref::<BooleanArray>() {
        return Ok(a.value(i).into());
    }
    if let Some(a) = any.downcast_ref::<TimestampNanosecondArray>() {
        return Ok(a.value(i).into());
    }
    if let Some(a) = any.downcast_ref::<ListArray>() {
        let items = a.value(i);
        let items = items
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("stack items are not strings")?;
        return Ok(items.iter().map(|s| Value::from(s.unwrap_or(""))).collect());
    }
    Err(format!("unexpected column type {:?}", col.data_type()))
}

/// Every row of a Parquet file as a map from column name to value.
fn read_parquet(path: &Path) -> Result<Vec<Map<String, Value>>, Box<dyn std::error::Error>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?.build()?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch: RecordBatch = batch?;
        let schema = batch.schema();
        for i in 0..batch.num_rows() {
            let mut row = Map::new();
            for (field, col) in schema.fields().iter().zip(batch.columns()) {
                row.insert(field.name().clone(), cell(col, i)?);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The Parquet row says what the JSON line says, column by column; the
/// columns the line's type lacks are null; host, kernel release and wall
/// time are the header's.
fn assert_same(pq: &Map<String, Value>, json: &Map<String, Value>, meta: &TraceMeta, n: usize) {
    for (key, want) in json {
        let want = match (HEX.contains(&key.as_str()), want) {
            (true, Value::String(s)) => {
                let hex = s.strip_prefix("0x").unwrap_or(s);
                Value::from(u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{s}: {e}")))
            }
            _ => want.clone(),
        };
        assert_eq!(pq.get(key), Some(&want), "row {n}, column {key}: {json:?}");
    }
    let extra: HashSet<&str> = FROM_HEADER.into_iter().collect();
    for (key, v) in pq {
        if !json.contains_key(key) && !extra.contains(key.as_str()) {
            assert_eq!(v, &Value::Null, "row {n}: column {key} should be null");
        }
    }
    assert_eq!(pq["host"], Value::from(meta.hostname.as_str()), "row {n}");
    assert_eq!(
        pq["kernel_release"],
        Value::from(meta.kernel.release.as_str()),
        "row {n}"
    );
    let time = json["time_ns"]
        .as_u64()
        .unwrap_or_else(|| panic!("row {n}"));
    let wall =
        i128::from(meta.clock.realtime_ns) + i128::from(time) - i128::from(meta.clock.monotonic_ns);
    // Null when it does not fit a timestamp (the event at u64::MAX ns).
    let wall = i64::try_from(wall).map_or(Value::Null, Value::from);
    assert_eq!(pq["wall_time"], wall, "row {n}");
}

fn assert_all_same(pq: &[Map<String, Value>], json: &[(Map<String, Value>, &TraceMeta)]) {
    assert_eq!(pq.len(), json.len(), "row counts");
    for (n, (p, (j, meta))) in pq.iter().zip(json).enumerate() {
        assert_same(p, j, meta, n);
    }
}

#[test]
fn every_event_type_matches_the_jsonl_export() -> TestResult {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("t.cwt");
    let out = dir.path().join("t.parquet");
    let meta = meta();
    // Every body variant (stack definition, hostile comm, extreme values),
    // then enough faults for several record batches.
    let mut events = every_variant();
    events.extend(cow_walk(20_000));
    // A swap-in fault with its swap count (other faults have none), at a
    // time too late for a wall-clock timestamp.
    let mut swap = cow_walk(1).remove(0);
    swap.time_ns = u64::MAX;
    if let Body::CowFault(c) = &mut swap.body {
        c.site = Site::Swap;
        c.swap_count = Some(3);
    }
    events.push(swap);
    write_trace(&trace, &meta, &events, WriterOptions::default())?;

    parquet_export(&[&trace], &out)?;
    let pq = read_parquet(&out)?;
    let json = jsonl_export(&[&trace])?;
    assert!(json.len() > 20_000, "{} lines", json.len());
    let types: HashSet<&str> = json.iter().filter_map(|j| j["type"].as_str()).collect();
    assert_eq!(types.len(), 8, "{types:?}");
    assert_eq!(
        json.iter().filter(|j| j.contains_key("swap_count")).count(),
        1
    );
    let json: Vec<_> = json.into_iter().map(|j| (j, &meta)).collect();
    assert_all_same(&pq, &json);
    Ok(())
}

#[test]
fn the_file_carries_the_documented_schema() -> TestResult {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("t.cwt");
    let out = dir.path().join("t.parquet");
    write_trace(&trace, &meta(), &every_variant(), WriterOptions::default())?;
    parquet_export(&[&trace], &out)?;

    let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&out)?)?;
    // Unsigned and timestamp types survive the round trip exactly.
    let want = cowtrace::output::parquet::schema();
    assert_eq!(builder.schema().fields(), want.fields());
    let file = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&out)?)?;
    let kv = file
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    assert!(
        kv.iter().any(|k| k.key == "cowtrace.parquet_schema"
            && k.value.as_deref() == Some(cowtrace::output::parquet::SCHEMA_VERSION)),
        "{kv:?}"
    );
    // The documentation lists every column.
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/parquet-export.md"),
    )?;
    for f in want.fields() {
        assert!(
            doc.contains(&format!("| `{}` |", f.name())),
            "docs/parquet-export.md lacks column {}",
            f.name()
        );
    }
    Ok(())
}

fn host_meta(host: &str, release: &str, realtime_ns: u64) -> TraceMeta {
    let mut m = meta();
    m.hostname = host.into();
    m.kernel.release = release.into();
    m.clock = ClockBase {
        monotonic_ns: 3_000_000_000,
        realtime_ns,
    };
    m
}

#[test]
fn files_from_several_hosts_and_rotated_parts_make_one_table() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Host a: one recording rotated into several parts.
    let a_meta = host_meta("a.example", "6.1.0-56-amd64", 1_800_000_000_000_000_000);
    let a_base = dir.path().join("a.cwt");
    let mut a_events = every_variant();
    a_events.extend(cow_walk(3_000));
    write_trace(
        &a_base,
        &a_meta,
        &a_events,
        WriterOptions {
            max_block_bytes: 1024,
            max_size: Some(1024),
            max_files: None,
        },
    )?;
    let a_parts: Vec<PathBuf> = cowtrace::trace::existing_parts(&a_base)?;
    assert!(a_parts.len() > 2, "{a_parts:?}");
    // Host b: older, another kernel.
    let b_meta = host_meta("b.example", "5.10.0-46-amd64", 1_700_000_000_000_000_000);
    let b = dir.path().join("b.cwt");
    write_trace(&b, &b_meta, &cow_walk(500), WriterOptions::default())?;

    // Any order on the command line: recordings come oldest first, the
    // parts of one recording are stitched by time.
    let mut inputs: Vec<&Path> = a_parts.iter().rev().map(PathBuf::as_path).collect();
    inputs.insert(1, &b);
    let out = dir.path().join("fleet.parquet");
    parquet_export(&inputs, &out)?;
    let pq = read_parquet(&out)?;

    let a_parts: Vec<&Path> = a_parts.iter().map(PathBuf::as_path).collect();
    let mut json: Vec<_> = jsonl_export(&[&b])?
        .into_iter()
        .map(|j| (j, &b_meta))
        .collect();
    json.extend(jsonl_export(&a_parts)?.into_iter().map(|j| (j, &a_meta)));
    assert_all_same(&pq, &json);
    let hosts: HashSet<&str> = pq.iter().filter_map(|r| r["host"].as_str()).collect();
    assert_eq!(hosts, HashSet::from(["a.example", "b.example"]));
    Ok(())
}

#[test]
fn parquet_needs_an_output_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("t.cwt");
    write_trace(&trace, &meta(), &every_variant(), WriterOptions::default())?;
    let r = cowtrace(&["export", &arg(&trace), "--format", "parquet"])?;
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("-o"));
    Ok(())
}
