//! What the running kernel offers: BTF layouts, kallsyms, constants and the
//! attach plan. The only place (with the eBPF side) that knows kernel versions.
