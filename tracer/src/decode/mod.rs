//! Raw wire records into [`crate::model::Event`]s. Pure and synchronous.

pub mod consts;

pub use consts::KernelConsts;
