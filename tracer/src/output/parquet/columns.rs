//! The Arrow schema of the Parquet export and the column builders that
//! collect rows into record batches (pure, in memory).
//!
//! `schema()` and `Columns::finish` list the columns in the same order;
//! `RecordBatch::try_new` refuses a batch whose types or count differ from
//! the schema, and the tests compare every column by name with the
//! JSON-lines export.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{
        BooleanBuilder, Int32Builder, ListBuilder, StringBuilder, TimestampNanosecondBuilder,
        UInt32Builder, UInt64Builder,
    },
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use super::row::{Row, Source};

/// Version of the column set, stored in the file's key-value metadata
/// (`cowtrace.parquet_schema`). Columns are only ever added.
pub const SCHEMA_VERSION: &str = "1";

const UTC: &str = "UTC";

fn stack_item() -> Field {
    Field::new("item", DataType::Utf8, false)
}

/// The export's columns, in file order. Nullable columns are the ones an
/// event type may lack (see the schema table in docs/parquet-export.md).
pub fn schema() -> SchemaRef {
    use DataType::{Boolean, Int32, UInt32, UInt64, Utf8};
    let f = Field::new;
    Arc::new(Schema::new(vec![
        f("host", Utf8, false),
        f("kernel_release", Utf8, false),
        f("type", Utf8, false),
        f("time_ns", UInt64, false),
        f(
            "wall_time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some(UTC.into())),
            true,
        ),
        f("cpu", UInt32, false),
        f("pid", UInt32, false),
        f("tid", UInt32, false),
        f("comm", Utf8, false),
        f("mm", UInt64, false),
        f("site", Utf8, true),
        f("fault", Utf8, true),
        f("decision", Utf8, true),
        f("address", UInt64, true),
        f("pfn", UInt64, true),
        f("new_pfn", UInt64, true),
        f("shared_mapping", Boolean, true),
        f("ret", UInt32, true),
        f("refcount", Int32, true),
        f("mapcount", Int32, true),
        f("anon", Boolean, true),
        f("anon_exclusive", Boolean, true),
        f("ksm", Boolean, true),
        f("swapcache", Boolean, true),
        f("large", Boolean, true),
        f("page_valid", Boolean, true),
        f("swap_count", UInt32, true),
        f("path", Utf8, true),
        f("refs", UInt32, true),
        f("pin", Boolean, true),
        f("write", Boolean, true),
        f("longterm", Boolean, true),
        f("force", Boolean, true),
        f("failed", Boolean, true),
        Field::new_list("stack", stack_item(), true),
        f("refcount_before", Int32, true),
        f("child_pid", UInt32, true),
        f("child_tid", UInt32, true),
        f("child_mm", UInt64, true),
        f("start", UInt64, true),
        f("end", UInt64, true),
        f("vm_flags", UInt64, true),
        f("hook", Utf8, true),
        f("count", UInt64, true),
        f("dropped", UInt64, true),
        f("errors", UInt64, true),
        f("skipped", UInt64, true),
    ]))
}

/// One builder per column, filled a row at a time.
pub struct Columns {
    host: StringBuilder,
    kernel_release: StringBuilder,
    kind: StringBuilder,
    time_ns: UInt64Builder,
    wall_time: TimestampNanosecondBuilder,
    cpu: UInt32Builder,
    pid: UInt32Builder,
    tid: UInt32Builder,
    comm: StringBuilder,
    mm: UInt64Builder,
    site: StringBuilder,
    fault: StringBuilder,
    decision: StringBuilder,
    address: UInt64Builder,
    pfn: UInt64Builder,
    new_pfn: UInt64Builder,
    shared_mapping: BooleanBuilder,
    ret: UInt32Builder,
    refcount: Int32Builder,
    mapcount: Int32Builder,
    anon: BooleanBuilder,
    anon_exclusive: BooleanBuilder,
    ksm: BooleanBuilder,
    swapcache: BooleanBuilder,
    large: BooleanBuilder,
    page_valid: BooleanBuilder,
    swap_count: UInt32Builder,
    path: StringBuilder,
    refs: UInt32Builder,
    pin: BooleanBuilder,
    write: BooleanBuilder,
    longterm: BooleanBuilder,
    force: BooleanBuilder,
    failed: BooleanBuilder,
    stack: ListBuilder<StringBuilder>,
    refcount_before: Int32Builder,
    child_pid: UInt32Builder,
    child_tid: UInt32Builder,
    child_mm: UInt64Builder,
    start: UInt64Builder,
    end: UInt64Builder,
    vm_flags: UInt64Builder,
    hook: StringBuilder,
    count: UInt64Builder,
    dropped: UInt64Builder,
    errors: UInt64Builder,
    skipped: UInt64Builder,
    rows: usize,
}

impl Default for Columns {
    fn default() -> Self {
        Self::new()
    }
}

impl Columns {
    pub fn new() -> Self {
        Columns {
            host: StringBuilder::new(),
            kernel_release: StringBuilder::new(),
            kind: StringBuilder::new(),
            time_ns: UInt64Builder::new(),
            wall_time: TimestampNanosecondBuilder::new().with_timezone(UTC),
            cpu: UInt32Builder::new(),
            pid: UInt32Builder::new(),
            tid: UInt32Builder::new(),
            comm: StringBuilder::new(),
            mm: UInt64Builder::new(),
            site: StringBuilder::new(),
            fault: StringBuilder::new(),
            decision: StringBuilder::new(),
            address: UInt64Builder::new(),
            pfn: UInt64Builder::new(),
            new_pfn: UInt64Builder::new(),
            shared_mapping: BooleanBuilder::new(),
            ret: UInt32Builder::new(),
            refcount: Int32Builder::new(),
            mapcount: Int32Builder::new(),
            anon: BooleanBuilder::new(),
            anon_exclusive: BooleanBuilder::new(),
            ksm: BooleanBuilder::new(),
            swapcache: BooleanBuilder::new(),
            large: BooleanBuilder::new(),
            page_valid: BooleanBuilder::new(),
            swap_count: UInt32Builder::new(),
            path: StringBuilder::new(),
            refs: UInt32Builder::new(),
            pin: BooleanBuilder::new(),
            write: BooleanBuilder::new(),
            longterm: BooleanBuilder::new(),
            force: BooleanBuilder::new(),
            failed: BooleanBuilder::new(),
            stack: ListBuilder::new(StringBuilder::new()).with_field(stack_item()),
            refcount_before: Int32Builder::new(),
            child_pid: UInt32Builder::new(),
            child_tid: UInt32Builder::new(),
            child_mm: UInt64Builder::new(),
            start: UInt64Builder::new(),
            end: UInt64Builder::new(),
            vm_flags: UInt64Builder::new(),
            hook: StringBuilder::new(),
            count: UInt64Builder::new(),
            dropped: UInt64Builder::new(),
            errors: UInt64Builder::new(),
            skipped: UInt64Builder::new(),
            rows: 0,
        }
    }

    /// Rows collected since the last `finish`.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one row: every column gets exactly one value or null.
    pub fn push(&mut self, src: &Source, r: &Row<'_>) {
        self.host.append_value(&src.host);
        self.kernel_release.append_value(&src.kernel_release);
        self.kind.append_value(r.kind);
        self.time_ns.append_value(r.time_ns);
        self.wall_time.append_option(src.wall_time_ns(r.time_ns));
        self.cpu.append_value(r.cpu);
        self.pid.append_value(r.pid);
        self.tid.append_value(r.tid);
        self.comm.append_value(&r.comm);
        self.mm.append_value(r.mm);
        self.site.append_option(r.site);
        self.fault.append_option(r.fault);
        self.decision.append_option(r.decision);
        self.address.append_option(r.address);
        self.pfn.append_option(r.pfn);
        self.new_pfn.append_option(r.new_pfn);
        self.shared_mapping.append_option(r.shared_mapping);
        self.ret.append_option(r.ret);
        self.refcount.append_option(r.refcount);
        self.mapcount.append_option(r.mapcount);
        self.anon.append_option(r.anon);
        self.anon_exclusive.append_option(r.anon_exclusive);
        self.ksm.append_option(r.ksm);
        self.swapcache.append_option(r.swapcache);
        self.large.append_option(r.large);
        self.page_valid.append_option(r.page_valid);
        self.swap_count.append_option(r.swap_count);
        self.path.append_option(r.path);
        self.refs.append_option(r.refs);
        self.pin.append_option(r.pin);
        self.write.append_option(r.write);
        self.longterm.append_option(r.longterm);
        self.force.append_option(r.force);
        self.failed.append_option(r.failed);
        match r.stack {
            Some(frames) => {
                for frame in frames {
                    self.stack.values().append_value(frame);
                }
                self.stack.append(true);
            }
            None => self.stack.append_null(),
        }
        self.refcount_before.append_option(r.refcount_before);
        self.child_pid.append_option(r.child_pid);
        self.child_tid.append_option(r.child_tid);
        self.child_mm.append_option(r.child_mm);
        self.start.append_option(r.start);
        self.end.append_option(r.end);
        self.vm_flags.append_option(r.vm_flags);
        self.hook.append_option(r.hook);
        self.count.append_option(r.count);
        self.dropped.append_option(r.dropped);
        self.errors.append_option(r.errors);
        self.skipped.append_option(r.skipped);
        self.rows += 1;
    }

    /// The collected rows as a batch of `schema`; the builders start over.
    pub fn finish(&mut self, schema: SchemaRef) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.host.finish()),
            Arc::new(self.kernel_release.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.time_ns.finish()),
            Arc::new(self.wall_time.finish()),
            Arc::new(self.cpu.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.tid.finish()),
            Arc::new(self.comm.finish()),
            Arc::new(self.mm.finish()),
            Arc::new(self.site.finish()),
            Arc::new(self.fault.finish()),
            Arc::new(self.decision.finish()),
            Arc::new(self.address.finish()),
            Arc::new(self.pfn.finish()),
            Arc::new(self.new_pfn.finish()),
            Arc::new(self.shared_mapping.finish()),
            Arc::new(self.ret.finish()),
            Arc::new(self.refcount.finish()),
            Arc::new(self.mapcount.finish()),
            Arc::new(self.anon.finish()),
            Arc::new(self.anon_exclusive.finish()),
            Arc::new(self.ksm.finish()),
            Arc::new(self.swapcache.finish()),
            Arc::new(self.large.finish()),
            Arc::new(self.page_valid.finish()),
            Arc::new(self.swap_count.finish()),
            Arc::new(self.path.finish()),
            Arc::new(self.refs.finish()),
            Arc::new(self.pin.finish()),
            Arc::new(self.write.finish()),
            Arc::new(self.longterm.finish()),
            Arc::new(self.force.finish()),
            Arc::new(self.failed.finish()),
            Arc::new(self.stack.finish()),
            Arc::new(self.refcount_before.finish()),
            Arc::new(self.child_pid.finish()),
            Arc::new(self.child_tid.finish()),
            Arc::new(self.child_mm.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.end.finish()),
            Arc::new(self.vm_flags.finish()),
            Arc::new(self.hook.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.dropped.finish()),
            Arc::new(self.errors.finish()),
            Arc::new(self.skipped.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(schema, columns)
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, BooleanArray, ListArray, StringArray, UInt64Array};

    use super::*;

    fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
        b.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .unwrap_or_else(|| panic!("column {name}"))
    }

    #[test]
    fn batches_match_the_schema_and_keep_nulls() {
        let src = Source {
            host: "h".into(),
            kernel_release: "6.1".into(),
            monotonic_ns: 0,
            realtime_ns: 10,
        };
        let frames = vec!["a+0x1".to_string(), "b+0x2".to_string()];
        let mut c = Columns::new();
        c.push(
            &src,
            &Row {
                kind: "gup",
                pfn: Some(7),
                anon_exclusive: None,
                pin: Some(true),
                stack: Some(&frames),
                ..Row::default()
            },
        );
        c.push(
            &src,
            &Row {
                kind: "exit",
                ..Row::default()
            },
        );
        assert_eq!(c.len(), 2);
        let b = c.finish(schema()).unwrap();
        assert!(c.is_empty());
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.num_columns(), schema().fields().len());
        let kind = col::<StringArray>(&b, "type");
        assert_eq!((kind.value(0), kind.value(1)), ("gup", "exit"));
        let pfn = col::<UInt64Array>(&b, "pfn");
        assert_eq!((pfn.value(0), pfn.is_null(1)), (7, true));
        let pin = col::<BooleanArray>(&b, "pin");
        assert!(pin.value(0) && pin.is_null(1));
        assert!(col::<BooleanArray>(&b, "anon_exclusive").is_null(0));
        let stack = col::<ListArray>(&b, "stack");
        assert!(stack.is_null(1));
        let first = stack.value(0);
        let first = first.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((first.value(0), first.value(1)), ("a+0x1", "b+0x2"));
        assert_eq!(col::<StringArray>(&b, "host").value(1), "h");
    }
}
