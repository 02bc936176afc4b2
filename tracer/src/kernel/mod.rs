//! What the running kernel offers: BTF layouts, kallsyms, constants and the
//! attach plan. The only place (with the eBPF side) that knows kernel versions.
//!
//! - [`info`]: [`KernelInfo::probe`] reads everything once (the only I/O);
//! - [`btf`]: member offsets, enum values, prototypes from BTF;
//! - [`kallsyms`]: symbols, stack symbolization, ftrace-attachable functions;
//! - [`layout`]: fills [`tracer_common::Layout`] and says where each offset came from;
//! - [`consts`]: [`crate::decode::KernelConsts`] from BTF and one cited macro table;
//! - [`hooks`]: the attach plan as data; [`mod@plan`]: its resolution here;
//! - [`preempt`]: the preemption model (trampolines can lose invocations);
//! - [`mod@check`]: `cowtrace check` (text and JSON).
//!
//! Everything but [`KernelInfo::probe`] and the `load` functions is pure and
//! unit-tested with fixtures (see `testutil`), and `debian_lines` checks the
//! four supported Debian kernels from their real BTF.

pub mod btf;
pub mod check;
pub mod consts;
pub mod hooks;
pub mod info;
pub mod kallsyms;
pub mod layout;
pub mod plan;
pub mod preempt;
pub mod version;

#[cfg(test)]
mod debian_lines;
#[cfg(test)]
mod testutil;

pub use btf::{KernelBtf, TypeSource};
pub use check::{CheckReport, check, check_with};
pub use consts::{ConstSource, ConstsError, kernel_consts, resolve_consts};
pub use info::{KernelError, KernelInfo, Privileges};
pub use kallsyms::{FilterFunctions, Kallsyms, KallsymsError};
pub use layout::{LayoutReport, resolve_layout};
pub use plan::{AttachPlan, HookPlan, MechanismChoice, plan, plan_with};
pub use preempt::{PreemptModel, Preemption};
pub use version::KernelVersion;

// Compile-time guarantee that the parsed BTF can live in a shared context.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<KernelBtf>();
};
