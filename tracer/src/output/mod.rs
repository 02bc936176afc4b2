//! Rendering and sinks: reports (text/JSON), event exports, alerts.
