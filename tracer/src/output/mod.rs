//! Rendering and sinks: reports (text/JSON), event exports, alerts.
pub mod alert_text;
pub mod jsonl;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod perfetto;
pub mod report_text;
