//! Rendering and sinks: reports (text/JSON), event exports, alerts.
pub mod alert_text;
pub mod jsonl;
pub mod perfetto;
pub mod report_text;
