//! Everything cowtrace reads about the running kernel, gathered once.
//!
//! [`KernelInfo::probe`] is the only function here that touches the system;
//! a missing piece (no BTF, tracefs not mounted, no privileges) is recorded
//! with its reason instead of failing, so `cowtrace check` can show every
//! gap at once. The pure consumers ([`super::plan::plan`],
//! [`super::layout::resolve_layout`], [`super::consts::kernel_consts`]) take
//! the parsed pieces and are tested without a kernel.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;
use tracer_common::Layout;

use super::btf::{KernelBtf, TypeSource, VMLINUX_BTF};
use super::consts::{ConstSource, ConstsError, resolve_consts};
use super::kallsyms::{FilterFunctions, KALLSYMS, Kallsyms};
use super::layout::{LayoutReport, resolve_layout};
use super::preempt::{PreemptModel, Preemption};
use super::version::KernelVersion;
use crate::decode::KernelConsts;

/// Present when the kernel supports kprobes (CONFIG_KPROBES + perf events).
pub const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";
/// tracefs event directories, in order of preference.
const TRACEFS_EVENTS: [&str; 2] = [
    "/sys/kernel/tracing/events",
    "/sys/kernel/debug/tracing/events",
];

/// Capability numbers (include/uapi/linux/capability.h).
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot read the kernel release from /proc/sys/kernel/osrelease: {0}")]
    Release(#[source] std::io::Error),
}

/// The process's effective privileges as far as BPF tracing cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Privileges {
    pub euid: u32,
    /// `CapEff` from /proc/self/status (`None`: unreadable).
    pub cap_eff: Option<u64>,
}

impl Privileges {
    /// Parses the `CapEff:` line of `/proc/<pid>/status`.
    pub fn parse_cap_eff(status: &str) -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    }

    pub fn has(&self, cap: u32) -> bool {
        self.cap_eff.is_some_and(|c| c & (1u64 << cap) != 0)
    }

    /// Loading BPF and attaching kprobes needs CAP_BPF + CAP_PERFMON, or
    /// CAP_SYS_ADMIN (which covers both on kernels before 5.8 too).
    pub fn sufficient(&self) -> bool {
        self.has(CAP_SYS_ADMIN) || (self.has(CAP_BPF) && self.has(CAP_PERFMON))
    }

    /// Capabilities still needed, by name (empty when [`Self::sufficient`]).
    pub fn missing(&self) -> Vec<&'static str> {
        if self.sufficient() {
            return vec![];
        }
        [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
            .into_iter()
            .filter(|&(c, _)| !self.has(c))
            .map(|(_, n)| n)
            .collect()
    }

    fn probe() -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        let cap_eff = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| Self::parse_cap_eff(&s));
        Self { euid, cap_eff }
    }
}

/// What the running kernel offers, each piece with the reason it is missing.
pub struct KernelInfo {
    /// `uname -r`.
    pub release: String,
    /// `None` when `release` does not parse.
    pub version: Option<KernelVersion>,
    pub btf: Option<Box<dyn TypeSource + Send + Sync>>,
    pub btf_error: Option<String>,
    pub kallsyms: Option<Kallsyms>,
    pub kallsyms_error: Option<String>,
    /// ftrace-attachable functions; `None` when tracefs is unreadable (then
    /// attachability is assumed from kallsyms and the plan says so).
    pub filter_functions: Option<FilterFunctions>,
    pub filter_functions_error: Option<String>,
    /// `sched` tracepoint names found in tracefs; `None`: tracefs not
    /// mounted (they are then assumed present, as on every supported line).
    pub sched_tracepoints: Option<HashSet<String>>,
    pub kprobes_supported: bool,
    pub privileges: Privileges,
    /// Whether kernel code is preempted (decides fentry against kprobes).
    pub preemption: Preemption,
}

impl std::fmt::Debug for KernelInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelInfo")
            .field("release", &self.release)
            .field("btf", &self.btf.is_some())
            .field("kallsyms", &self.kallsyms.is_some())
            .field("filter_functions", &self.filter_functions.is_some())
            .field("kprobes_supported", &self.kprobes_supported)
            .field("privileges", &self.privileges)
            .field("preemption", &self.preemption)
            .finish()
    }
}

impl KernelInfo {
    /// Reads the running kernel: release, BTF, kallsyms, tracefs, kprobe
    /// support, privileges. Only an unreadable release is an error.
    pub fn probe() -> Result<Self, KernelError> {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_err(KernelError::Release)?
            .trim()
            .to_string();
        let (btf, btf_error) = match KernelBtf::load(Path::new(VMLINUX_BTF)) {
            Ok(b) => (Some(Box::new(b) as Box<dyn TypeSource + Send + Sync>), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let (kallsyms, kallsyms_error) = split(Kallsyms::load(Path::new(KALLSYMS)));
        let (filter_functions, filter_functions_error) = split(FilterFunctions::load());
        Ok(Self {
            version: KernelVersion::parse(&release),
            preemption: Preemption::probe(&release),
            release,
            btf,
            btf_error,
            kallsyms,
            kallsyms_error,
            filter_functions,
            filter_functions_error,
            sched_tracepoints: sched_tracepoints(),
            kprobes_supported: Path::new(KPROBE_PMU).exists(),
            privileges: Privileges::probe(),
        })
    }

    /// A kernel described by hand (tests, offline planning): nothing known
    /// but its release; it is taken not to preempt kernel code.
    pub fn empty(release: &str) -> Self {
        Self {
            release: release.to_string(),
            version: KernelVersion::parse(release),
            btf: None,
            btf_error: None,
            kallsyms: None,
            kallsyms_error: None,
            filter_functions: None,
            filter_functions_error: None,
            sched_tracepoints: None,
            kprobes_supported: true,
            privileges: Privileges::default(),
            preemption: Preemption::known(PreemptModel::NoneOrVoluntary, "described by hand"),
        }
    }

    pub fn types(&self) -> Option<&dyn TypeSource> {
        self.btf.as_deref().map(|t| t as &dyn TypeSource)
    }

    /// The [`Layout`] for this kernel and where each field came from.
    pub fn resolve_layout(&self) -> (Layout, LayoutReport) {
        let vmemmap = match &self.kallsyms {
            Some(k) => Ok(k.address("vmemmap_base")),
            None => Err(self
                .kallsyms_error
                .clone()
                .unwrap_or_else(|| "kallsyms not read".into())),
        };
        let (mut layout, mut report) = resolve_layout(self.types(), vmemmap);
        super::layout::resolve_swap_symbols(&mut layout, &mut report, |sym| match &self.kallsyms {
            Some(k) => Ok(k.address(sym)),
            None => Err("kallsyms not read".into()),
        });
        (layout, report)
    }

    /// [`KernelConsts`] for this kernel, with the source of each value.
    pub fn resolve_consts(&self) -> Result<(KernelConsts, Vec<ConstSource>), ConstsError> {
        let types = self
            .types()
            .ok_or_else(|| ConstsError::NoBtf(self.btf_error.clone().unwrap_or_default()))?;
        let version = self
            .version
            .ok_or_else(|| ConstsError::BadRelease(self.release.clone()))?;
        resolve_consts(types, version)
    }

    /// [`KernelConsts`] for this kernel.
    pub fn kernel_consts(&self) -> Result<KernelConsts, ConstsError> {
        self.resolve_consts().map(|(c, _)| c)
    }
}

fn split<T, E: std::fmt::Display>(r: Result<T, E>) -> (Option<T>, Option<String>) {
    match r {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

fn sched_tracepoints() -> Option<HashSet<String>> {
    TRACEFS_EVENTS.iter().find_map(|dir| {
        let entries = std::fs::read_dir(Path::new(dir).join("sched")).ok()?;
        Some(
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcat\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                          CapEff:\t000000c000000000\nCapBnd:\t000001ffffffffff\n";

    #[test]
    fn parses_cap_eff() {
        assert_eq!(Privileges::parse_cap_eff(STATUS), Some(0xc0_0000_0000));
        assert_eq!(Privileges::parse_cap_eff("Name: x\n"), None);
    }

    #[test]
    fn bpf_plus_perfmon_or_sys_admin_suffice() {
        let bpf_perfmon = Privileges {
            euid: 1000,
            cap_eff: Privileges::parse_cap_eff(STATUS),
        };
        assert!(bpf_perfmon.has(CAP_BPF) && bpf_perfmon.has(CAP_PERFMON));
        assert!(bpf_perfmon.sufficient());
        let admin = Privileges {
            euid: 0,
            cap_eff: Some(1 << CAP_SYS_ADMIN),
        };
        assert!(admin.sufficient() && admin.missing().is_empty());
        let only_bpf = Privileges {
            euid: 1000,
            cap_eff: Some(1 << CAP_BPF),
        };
        assert!(!only_bpf.sufficient());
        assert_eq!(only_bpf.missing(), ["CAP_PERFMON"]);
        let none = Privileges::default();
        assert_eq!(none.missing(), ["CAP_BPF", "CAP_PERFMON"]);
    }

    #[test]
    fn probe_reads_this_machine() {
        let info = KernelInfo::probe().expect("osrelease readable");
        assert!(!info.release.is_empty());
        assert!(info.version.is_some(), "{}", info.release);
        // Absent pieces carry their reason.
        assert_eq!(info.btf.is_none(), info.btf_error.is_some());
        assert_eq!(info.kallsyms.is_none(), info.kallsyms_error.is_some());
        assert_eq!(info.kprobes_supported, Path::new(KPROBE_PMU).exists());
    }
}
