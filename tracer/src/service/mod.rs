//! Running cowtrace as a service: alert sinks, Prometheus metrics and
//! systemd readiness notification. The CLI (`cli::watch`) wires them to
//! the capture loop; nothing here touches probes.
//!
//! * [`sinks`]: stdout, JSON lines, syslog and webhook destinations, each
//!   on its own thread behind a bounded queue.
//! * [`metrics`]: counters, snapshots and the `/metrics` endpoint.
//! * [`notify`]: `sd_notify` READY/RELOADING/STOPPING.

pub mod metrics;
pub mod notify;
pub mod sinks;
