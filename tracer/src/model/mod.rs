//! The pure core: decoded events, the correlation engine, alert rules and
//! report building. No I/O, no aya types.

pub mod event;

pub use event::*;
