//! What the running kernel offers: BTF layouts, kallsyms, constants and the
//! attach plan. The only place (with the eBPF side) that knows kernel versions.

pub mod btf;
pub mod check;
pub mod consts;
pub mod hooks;
pub mod info;
pub mod kallsyms;
pub mod layout;
pub mod plan;
pub mod version;

#[cfg(test)]
mod debian_lines;
#[cfg(test)]
mod testutil;

pub use btf::{KernelBtf, TypeSource};
pub use check::{CheckReport, check};
pub use consts::{ConstSource, ConstsError, kernel_consts, resolve_consts};
pub use info::{KernelError, KernelInfo, Privileges};
pub use kallsyms::{FilterFunctions, Kallsyms, KallsymsError};
pub use layout::{LayoutReport, resolve_layout};
pub use plan::{AttachPlan, HookPlan, plan};
pub use version::KernelVersion;

// Compile-time guarantee that the parsed BTF can live in a shared context.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<KernelBtf>();
};
