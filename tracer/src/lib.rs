//! cowtrace: trace the kernel's copy-on-write, unshare and GUP pin decisions.
//!
//! The modules follow the data's path:
//!
//! ```text
//! kernel hooks ──► ring buffer ──► decode ──► correlate ──► sinks
//!  (capture)        (capture)      (decode)    (model)       (trace, output)
//! ```
//!
//! * [`kernel`]: what the running kernel offers: BTF layouts, kallsyms,
//!   constants, the attach plan (data).
//! * [`capture`]: loads the embedded eBPF object, attaches it per plan and
//!   drains the ring buffer (the only async code besides the CLI).
//! * [`decode`]: raw wire records into [`model::Event`]s (pure).
//! * [`model`]: the correlation engine, alert rules and reports (pure).
//! * [`trace`]: the trace file format: writer and reader.
//! * [`output`]: report rendering, event exports, alert sinks.
//! * [`cli`]: one module per subcommand.

pub mod capture;
pub mod cli;
pub mod decode;
pub mod kernel;
pub mod model;
pub mod output;
pub mod service;
pub mod trace;
