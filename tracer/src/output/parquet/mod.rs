//! Parquet export: one row per event, typed columns, the host and kernel
//! release on every row, so traces from many hosts land in one table that
//! DuckDB, ClickHouse or Spark query directly.
//!
//! * `row`: an event as a flat row (pure; names and values as the
//!   JSON-lines export prints them).
//! * `columns`: the Arrow schema and the builders that batch rows.
//! * [`ParquetExporter`]: batches rows and writes them with the `parquet`
//!   crate's Arrow writer (zstd pages).
//!
//! The schema is documented in `docs/parquet-export.md`.

mod columns;
mod row;

use std::{io::Write, sync::Arc};

use arrow_schema::SchemaRef;
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    errors::ParquetError,
    file::{metadata::KeyValue, properties::WriterProperties},
};

pub use columns::{SCHEMA_VERSION, schema};
pub use row::{Row, RowMapper, Source};

use crate::{model::Event, trace::TraceMeta};

/// Rows collected before they are handed to the writer as one batch: a
/// few MiB of builders, whatever the trace's size.
const BATCH_ROWS: usize = 8192;

/// Rows per row group: large enough for good compression and few footer
/// entries, small enough that the writer's in-memory group stays bounded.
const ROW_GROUP_ROWS: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ParquetExportError {
    #[error("writing parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("building a record batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// What a finished export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetSummary {
    pub rows: u64,
}

/// Writes events as Parquet rows to `W`.
///
/// Call [`begin_source`](Self::begin_source) with each recording's header
/// before its events (several recordings, from several hosts, go into one
/// file), then [`finish`](Self::finish): without it the file has no footer
/// and no reader accepts it.
pub struct ParquetExporter<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
    columns: columns::Columns,
    mapper: RowMapper,
    source: Source,
    rows: u64,
}

impl<W: Write + Send> ParquetExporter<W> {
    pub fn new(out: W) -> Result<Self, ParquetExportError> {
        let schema = schema();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(concat!("cowtrace ", env!("CARGO_PKG_VERSION")).into())
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "cowtrace.parquet_schema".into(),
                SCHEMA_VERSION.to_string(),
            )]))
            .build();
        let writer = ArrowWriter::try_new(out, Arc::clone(&schema), Some(props))?;
        Ok(ParquetExporter {
            writer,
            schema,
            columns: columns::Columns::new(),
            mapper: RowMapper::new(),
            source: Source::default(),
            rows: 0,
        })
    }

    /// The events that follow come from the recording `meta` describes:
    /// its host, kernel release and clock base fill their columns, and
    /// stack ids start afresh (they are per recording).
    pub fn begin_source(&mut self, meta: &TraceMeta) {
        self.source = Source::from_meta(meta);
        self.mapper.reset();
    }

    /// Adds the row of `ev` (stack definitions add none).
    pub fn event(&mut self, ev: &Event) -> Result<(), ParquetExportError> {
        if let Some(row) = self.mapper.row(ev) {
            self.columns.push(&self.source, &row);
            self.rows += 1;
        }
        if self.columns.len() >= BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), ParquetExportError> {
        if self.columns.is_empty() {
            return Ok(());
        }
        let batch = self.columns.finish(Arc::clone(&self.schema))?;
        self.writer.write(&batch)?;
        Ok(())
    }

    /// Writes what is pending and the footer; returns the output (still to
    /// be flushed by the caller if it buffers) and what was written.
    pub fn finish(mut self) -> Result<(W, ParquetSummary), ParquetExportError> {
        self.flush_batch()?;
        let out = self.writer.into_inner()?;
        Ok((out, ParquetSummary { rows: self.rows }))
    }
}
