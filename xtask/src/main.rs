//! `cargo xtask <cmd>`: cowtrace's developer tasks.
//!
//! The build machine's own kernel cannot run kprobes, so every test that
//! attaches probes boots a real Debian kernel under QEMU. This crate owns that
//! whole path: installing the tools (`setup`), fetching the test kernels
//! (`kernels`), building the guest binaries once (`build`), packing them into
//! an initramfs (`initramfs`), booting it (`vm`) and turning the guest's
//! output into results (`test`, `demo`).

mod apt;
mod bench;
mod build;
mod cmd;
mod demo;
mod fuzz;
mod guest;
mod initramfs;
mod kernels;
mod package;
mod paths;
mod setup;
mod test;
mod vm;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::kernels::KernelLine;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "cowtrace developer tasks",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building and VM-testing cowtrace needs (idempotent).
    ///
    /// apt packages (QEMU, static busybox, a C toolchain), nightly's
    /// rust-src, bpf-linker built against nightly's LLVM, and the newest
    /// Debian kernel of each tested line under ~/.cache/cowtrace/kernels.
    ///
    /// Example: cargo xtask setup --refresh
    Setup {
        /// Re-resolve the newest kernel package of each line (otherwise a
        /// cached kernel is used as is).
        #[arg(long)]
        refresh: bool,
        /// Only fetch these kernel lines (default: all).
        #[arg(long, value_name = "LINE")]
        kernel: Vec<KernelLine>,
    },
    /// Build the guest binaries (cowtrace and the cow-scenarios example) once.
    ///
    /// Example: cargo xtask build
    Build,
    /// Boot a test kernel under QEMU and run one command in it as root.
    ///
    /// Exits with the command's exit status; 120 on a kernel crash
    /// (panic, Oops, BUG), 124 on a hang, 121 when QEMU stops without the
    /// command finishing, 130 when interrupted.
    ///
    /// Example: cargo xtask vm --kernel 6.1 --include /tmp/probe -- /tmp/probe/prog
    Vm {
        /// Kernel line to boot: 5.10, 6.1, 6.12 or newest.
        #[arg(long, value_name = "LINE")]
        kernel: KernelLine,
        /// Host file or folder to copy into the guest at the same absolute path.
        #[arg(long, value_name = "PATH")]
        include: Vec<PathBuf>,
        /// Kernel modules (by name, e.g. zram) to copy into the guest together
        /// with their dependencies; load them with `modprobe NAME`.
        #[arg(long, value_name = "NAME")]
        module: Vec<String>,
        /// Seconds before the guest counts as hung and is killed.
        #[arg(long, value_name = "S", default_value_t = vm::DEFAULT_TIMEOUT_S)]
        timeout: u64,
        /// Guest memory in MiB.
        #[arg(long, value_name = "MiB", default_value_t = vm::DEFAULT_MEMORY_MIB)]
        memory: u32,
        /// Extra kernel command-line word (repeatable).
        #[arg(long = "append", value_name = "WORD")]
        kernel_args: Vec<String>,
        /// Extra QEMU argument (repeatable), e.g. --qemu-arg=-icount
        /// --qemu-arg=shift=0,sleep=off
        #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
        qemu_args: Vec<String>,
        /// Do not build; put in the guest whichever guest binaries are
        /// already built (for iterating on the runner itself).
        #[arg(long)]
        no_build: bool,
        /// The command to run in the guest, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Lints, host tests, and the scenario suite on every kernel line.
    ///
    /// Ends with `N passed, N failed`; exits non-zero on any failure.
    ///
    /// Example: cargo xtask test --kernel 6.1 --vm-only
    Test {
        /// Only these kernel lines (default: all four).
        #[arg(long, value_name = "LINE")]
        kernel: Vec<KernelLine>,
        /// Only fmt, clippy and the host unit tests.
        #[arg(long, conflicts_with = "vm_only")]
        host_only: bool,
        /// Only the VM scenario suite.
        #[arg(long)]
        vm_only: bool,
        /// Seconds one kernel's suite may take before it counts as hung.
        #[arg(long, value_name = "S", default_value_t = test::SUITE_TIMEOUT_S)]
        timeout: u64,
    },
    /// Boot a kernel and run `cow-scenarios demo` in it.
    ///
    /// Example: cargo xtask demo --kernel 6.12
    Demo {
        /// Kernel line to boot (default: newest).
        #[arg(long, value_name = "LINE", default_value = "newest")]
        kernel: KernelLine,
    },
    /// Deterministic overhead benchmarks in one boot with QEMU's
    /// instruction-count clock: each workload untraced, under the counting
    /// anchor kprobe, under `cowtrace record` and in the alerting mode.
    ///
    /// Example: cargo xtask bench --kernel 6.1 --format json
    Bench {
        /// Kernel line to boot (default: newest).
        #[arg(long, value_name = "LINE", default_value = "newest")]
        kernel: KernelLine,
        #[arg(long, value_enum, default_value = "text")]
        format: bench::Format,
        /// Only these workloads: cow-storm, gup-storm, fork-big (repeatable).
        #[arg(long, value_name = "WORKLOAD")]
        only: Vec<String>,
    },
    /// Fuzz the trace reader (`trace_decode`) for a while, on a temporary
    /// copy of the committed corpus; installs cargo-fuzz if missing, needs
    /// nightly. Crashes land in fuzz/artifacts/trace_decode/.
    ///
    /// Example: cargo xtask fuzz --seconds 300
    Fuzz {
        /// How long to fuzz.
        #[arg(long, value_name = "N", default_value_t = 60)]
        seconds: u64,
    },
    /// Build the Debian package: release binary, hardened systemd unit,
    /// default config in /etc/cowtrace, man pages, Prometheus rules.
    ///
    /// Example: cargo xtask package
    Package,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup { refresh, kernel } => {
            setup::run(refresh, &lines_or_all(kernel)).map(|()| 0)
        }
        Command::Build => build::build().map(|bins| {
            bins.report();
            0
        }),
        Command::Vm {
            kernel,
            include,
            module,
            timeout,
            memory,
            no_build,
            kernel_args,
            qemu_args,
            cmd,
        } => vm::cli(vm::CliArgs {
            line: kernel,
            include,
            modules: module,
            timeout_s: timeout,
            memory_mib: memory,
            build: !no_build,
            kernel_args,
            qemu_args,
            cmd,
        }),
        Command::Test {
            kernel,
            host_only,
            vm_only,
            timeout,
        } => test::run(&test::TestArgs {
            lines: lines_or_all(kernel),
            host: !vm_only,
            vm: !host_only,
            suite_timeout_s: timeout,
        }),
        Command::Demo { kernel } => demo::run(kernel),
        Command::Bench {
            kernel,
            format,
            only,
        } => bench::run(kernel, format, &only),
        Command::Package => package::run().map(|_| 0),
        Command::Fuzz { seconds } => fuzz::run(seconds),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn lines_or_all(lines: Vec<KernelLine>) -> Vec<KernelLine> {
    if lines.is_empty() {
        KernelLine::ALL.to_vec()
    } else {
        lines
    }
}
