use thiserror::Error;

/// What can go wrong between the embedded object and a running capture.
#[derive(Debug, Error)]
pub enum CaptureError {
    #[error(
        "this cowtrace binary was built without its eBPF object (bpf-linker or the nightly \
         toolchain was missing at build time); run `cargo xtask setup` and rebuild"
    )]
    NoObject,
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("program `{program}` is missing from the eBPF object")]
    NoProgram { program: String },
    #[error("map `{map}` is missing from the eBPF object or has the wrong type: {detail}")]
    Map { map: &'static str, detail: String },
    #[error("loading program `{program}` into the kernel failed: {source}")]
    ProgramLoad {
        program: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("attaching `{program}` to `{target}` failed: {source}")]
    Attach {
        program: String,
        target: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("reading the kernel's BTF for fentry/fexit programs (/sys/kernel/btf/vmlinux): {0}")]
    Btf(String),
    #[error("ring buffer: {0}")]
    Ring(#[source] std::io::Error),
}
