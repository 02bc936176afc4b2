//! The pure core: decoded events, the correlation engine, alert rules and
//! report building. No I/O, no aya types.

pub mod event;

pub mod alert;
mod alerts;
mod bounded;
pub mod config;
pub mod engine;
#[cfg(test)]
mod engine_tests;
pub(crate) mod fasthash;
mod pages;
pub mod reason;
pub mod report;
pub mod rules;
pub mod service_config;
#[cfg(test)]
pub(crate) mod testkit;

pub use alert::{Alert, Holder, RuleId, Severity};
pub use config::{Config, ConfigError};
pub use engine::{Engine, StateSizes};
pub use event::*;
pub use report::{LostCounts, Report, Summary};
