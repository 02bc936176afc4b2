//! `cowtrace check`: the attach plan and its gaps, for a kernel engineer
//! (text) or a machine (JSON). Pure rendering over [`KernelInfo`]; the CLI
//! prints the result and exits non-zero unless [`CheckReport::ready`].

use std::fmt::Write as _;

use serde::Serialize;

use super::consts::ConstSource;
use super::info::{KPROBE_PMU, KernelInfo};
use super::layout::LayoutReport;
use super::plan::{
    AttachKind, AttachPlan, ChosenAlt, HookPlan, Mechanism, MechanismChoice, plan_with,
};
use super::preempt::Preemption;
use super::version::KernelVersion;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Tracing cannot work until this is fixed.
    Error,
    /// Tracing works with less coverage or less verification.
    Warning,
}

/// An actionable finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub message: String,
}

/// What `check` learned about the kernel itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelSummary {
    pub release: String,
    pub version: Option<KernelVersion>,
    pub btf: bool,
    pub kallsyms: bool,
    /// The available_filter_functions file read, if any.
    pub filter_functions: Option<String>,
    pub kprobes_supported: bool,
    pub euid: u32,
    /// CapEff as printed in /proc/self/status.
    pub cap_eff: Option<String>,
    pub privileges_sufficient: bool,
    /// The preemption model and where it was read.
    pub preemption: Preemption,
}

/// Everything `cowtrace check` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub kernel: KernelSummary,
    pub problems: Vec<Problem>,
    pub layout: LayoutReport,
    pub constants: Vec<ConstSource>,
    pub constants_error: Option<String>,
    pub plan: AttachPlan,
}

/// Resolves layout, constants and plan for `info` and lists the problems.
pub fn check(info: &KernelInfo) -> CheckReport {
    check_with(info, MechanismChoice::Auto)
}

/// [`check`] with the attach mechanism restricted (`--mechanism`).
pub fn check_with(info: &KernelInfo, choice: MechanismChoice) -> CheckReport {
    let (_, layout) = info.resolve_layout();
    let plan = plan_with(info, &layout, choice);
    let (constants, constants_error) = match info.resolve_consts() {
        Ok((_, sources)) => (sources, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let problems = problems(info, &plan, constants_error.as_deref());
    CheckReport {
        kernel: KernelSummary {
            release: info.release.clone(),
            version: info.version,
            btf: info.btf.is_some(),
            kallsyms: info.kallsyms.is_some(),
            filter_functions: info
                .filter_functions
                .as_ref()
                .map(|f| f.source.display().to_string()),
            kprobes_supported: info.kprobes_supported,
            euid: info.privileges.euid,
            cap_eff: info.privileges.cap_eff.map(|c| format!("{c:016x}")),
            privileges_sufficient: info.privileges.sufficient(),
            preemption: info.preemption.clone(),
        },
        problems,
        layout,
        constants,
        constants_error,
        plan,
    }
}

fn problems(info: &KernelInfo, plan: &AttachPlan, consts_err: Option<&str>) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut err = |m: String| {
        out.push(Problem {
            severity: Severity::Error,
            message: m,
        })
    };
    if !info.privileges.sufficient() {
        let who = if info.privileges.euid == 0 {
            "root without"
        } else {
            "not root, missing"
        };
        err(format!(
            "{who} {}: run as root or grant CAP_BPF,CAP_PERFMON \
             (e.g. `setcap cap_bpf,cap_perfmon+ep $(command -v cowtrace)`)",
            info.privileges.missing().join(", ")
        ));
    }
    if let Some(e) = &info.btf_error {
        err(e.clone());
    }
    if !info.kprobes_supported {
        err(format!(
            "kernel built without CONFIG_KPROBES ({KPROBE_PMU} absent)"
        ));
    }
    if let Some(e) = &info.kallsyms_error {
        err(e.clone());
    }
    if let Some(e) = consts_err {
        err(format!("kernel constants: {e}"));
    }
    // One line per distinct cause: without kprobes every hook fails alike.
    let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
    for h in plan.missing_required() {
        let why = first_reason(h).unwrap_or("no alternative");
        match by_reason.iter_mut().find(|(r, _)| *r == why) {
            Some((_, hooks)) => hooks.push(h.name),
            None => by_reason.push((why, vec![h.name])),
        }
    }
    for (why, hooks) in by_reason {
        err(format!(
            "required hook(s) {} cannot attach: {why}",
            hooks.join(", ")
        ));
    }
    for h in plan
        .hooks
        .iter()
        .filter(|h| !h.required && h.chosen.is_none())
    {
        out.push(Problem {
            severity: Severity::Warning,
            message: format!(
                "optional hook {} not attached: lost {}",
                h.name, h.lost_when_missing
            ),
        });
    }
    let preempted: Vec<&str> = plan
        .hooks
        .iter()
        .filter(|h| {
            h.chosen
                .as_ref()
                .is_some_and(|c| c.mechanism == Mechanism::Fentry)
        })
        .map(|h| h.name)
        .collect();
    if !preempted.is_empty() && info.preemption.trampolines_preemptible() {
        out.push(Problem {
            severity: Severity::Warning,
            message: format!(
                "{} use trampolines on a kernel that preempts inside them ({}): \
                 decisions can be skipped, and are then reported as lost",
                preempted.join(", "),
                info.preemption.describe()
            ),
        });
    }
    for n in &plan.notes {
        out.push(Problem {
            severity: Severity::Warning,
            message: n.clone(),
        });
    }
    out
}

/// The first reason of the alternative that came closest (fewest reasons):
/// the blocker worth fixing first.
fn first_reason(h: &HookPlan) -> Option<&str> {
    h.rejected
        .iter()
        .min_by_key(|r| r.reasons.len())?
        .reasons
        .first()
        .map(String::as_str)
}

/// `kprobe`, or `raw_tp` when the hook only uses raw tracepoints.
fn mechanism_label(c: &ChosenAlt) -> &'static str {
    if c.attachments
        .iter()
        .all(|a| a.kind == AttachKind::RawTracepoint)
    {
        return "raw_tp";
    }
    match c.mechanism {
        Mechanism::Kprobe => "kprobe",
        Mechanism::Fentry => "fentry",
    }
}

impl CheckReport {
    /// Tracing can start: no errors and every required hook attaches.
    pub fn ready(&self) -> bool {
        self.plan.missing_required().is_empty()
            && !self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    /// The JSON `cowtrace check --format json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The text `cowtrace check` prints.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let k = &self.kernel;
        let yes = |b: bool| if b { "yes" } else { "NO" };
        let _ = writeln!(s, "kernel      {}", k.release);
        let _ = writeln!(s, "BTF         {}", yes(k.btf));
        let _ = writeln!(s, "kprobes     {}", yes(k.kprobes_supported));
        let _ = writeln!(s, "kallsyms    {}", yes(k.kallsyms));
        let _ = writeln!(
            s,
            "ftrace      {}",
            k.filter_functions
                .as_deref()
                .unwrap_or("NO (attachability not verified)")
        );
        let _ = writeln!(
            s,
            "privileges  euid {}, CapEff {} ({})",
            k.euid,
            k.cap_eff.as_deref().unwrap_or("?"),
            if k.privileges_sufficient {
                "sufficient"
            } else {
                "INSUFFICIENT"
            }
        );

        let p = &k.preemption;
        let _ = writeln!(
            s,
            "preemption  {}{}",
            p.describe(),
            if p.trampolines_preemptible() {
                ": trampolines can be preempted, auto uses kprobes"
            } else {
                ""
            }
        );

        let _ = writeln!(
            s,
            "\n{:<10} {:<9} {:<10} {:<40} RETURN",
            "HOOK", "STATUS", "MECHANISM", "SYMBOLS"
        );
        for h in &self.plan.hooks {
            let status = match (&h.chosen, h.required) {
                (Some(_), _) => "ok",
                (None, true) => "MISSING",
                (None, false) => "absent",
            };
            let (mech, syms, ret) = match &h.chosen {
                Some(c) => (
                    mechanism_label(c).to_string(),
                    c.symbols().join(", "),
                    c.ret_kind.map_or("-".to_string(), |r| format!("{r:?}")),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                s,
                "{:<10} {:<9} {:<10} {:<40} {ret}",
                h.name, status, mech, syms
            );
        }

        for h in &self.plan.hooks {
            let _ = writeln!(
                s,
                "\n{} ({}):",
                h.name,
                if h.required { "required" } else { "optional" }
            );
            match &h.chosen {
                Some(c) => {
                    for a in &c.attachments {
                        let kind = a.kind.label();
                        let _ = writeln!(s, "  {kind:<15} {:<32} program {}", a.target, a.program);
                    }
                    for f in &c.fields {
                        let src = f
                            .source
                            .as_deref()
                            .unwrap_or("absent on this kernel (optional)");
                        let _ = writeln!(s, "  field  {:<22} {src}", f.field);
                    }
                    for v in &c.verified {
                        let _ = writeln!(s, "  verified  {v}");
                    }
                    for w in &c.warnings {
                        let _ = writeln!(s, "  warning   {w}");
                    }
                }
                None => {
                    let _ = writeln!(s, "  NOT ATTACHED: lost {}", h.lost_when_missing);
                }
            }
            for r in &h.rejected {
                let _ = writeln!(
                    s,
                    "  skipped alternative {} ({}):",
                    r.index + 1,
                    r.symbols.join(", ")
                );
                for why in &r.reasons {
                    let _ = writeln!(s, "    - {why}");
                }
            }
        }

        let _ = writeln!(s, "\nlayout:");
        for f in &self.layout.fields {
            match (f.value, &f.source) {
                (Some(v), Some(src)) => {
                    let _ = writeln!(s, "  {:<22} {:<20} {src}", f.field, format!("{v:#x}"));
                }
                _ => {
                    let _ = writeln!(
                        s,
                        "  {:<22} {:<20} tried {}{}",
                        f.field,
                        if f.optional { "absent" } else { "UNRESOLVED" },
                        f.tried.join(", "),
                        f.refused
                            .as_deref()
                            .or(f.error.as_deref())
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    );
                }
            }
        }

        let _ = writeln!(s, "\nconstants:");
        match &self.constants_error {
            Some(e) => {
                let _ = writeln!(s, "  UNAVAILABLE: {e}");
            }
            None => {
                for c in &self.constants {
                    let _ = writeln!(
                        s,
                        "  {:<24} {:<20} {}",
                        c.name,
                        format!("{:#x}", c.value),
                        c.source
                    );
                }
            }
        }

        if !self.problems.is_empty() {
            let _ = writeln!(s, "\nproblems:");
            for p in &self.problems {
                let tag = match p.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                let _ = writeln!(s, "  {tag}: {}", p.message);
            }
        }
        let missing = self.plan.missing_required().len();
        let _ = writeln!(
            s,
            "\n{}",
            if self.ready() {
                "ready: every required hook attaches".to_string()
            } else if missing > 0 {
                format!("NOT READY: {missing} required hook(s) cannot attach")
            } else {
                "NOT READY: see the errors above".to_string()
            }
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::info::{CAP_BPF, CAP_PERFMON, Privileges};

    /// The build machine: 6.18 with BTF, no kprobes, tracefs unmounted.
    #[test]
    fn this_machine_without_kprobes_is_not_ready_and_says_why() {
        let Ok(info) = KernelInfo::probe() else {
            println!("skipped: /proc/sys/kernel/osrelease unreadable");
            return;
        };
        if info.kprobes_supported {
            println!("skipped: this machine supports kprobes");
            return;
        }
        let r = check(&info);
        assert!(!r.ready());
        let text = r.render_text();
        assert!(
            text.contains(
                "kernel built without CONFIG_KPROBES (/sys/bus/event_source/devices/kprobe absent)"
            ),
            "{text}"
        );
        assert!(text.contains("NOT READY"));
        // Hooks with fentry alternatives may still attach through
        // trampolines, depending on this machine's BTF; fork_vma cannot.
        assert!(
            r.plan
                .missing_required()
                .iter()
                .any(|h| h.name == "fork_vma")
        );
        if info.btf.is_some() {
            // Layout and constants still resolve: only the mechanism is missing.
            assert!(
                r.layout
                    .unresolved_required()
                    .all(|f| f.field == "vmemmap_base_sym")
            );
            assert!(r.constants_error.is_none(), "{:?}", r.constants_error);
            assert!(text.contains("vm_fault.(anon).vma"), "{text}");
        }
        let json = r.to_json();
        assert_eq!(json["kernel"]["kprobes_supported"], false);
        assert_eq!(json["plan"]["hooks"][0]["name"], "wp_fault");
    }

    fn bare(release: &str) -> KernelInfo {
        let mut info = KernelInfo::empty(release);
        info.btf_error = Some(
            "kernel built without CONFIG_DEBUG_INFO_BTF: /sys/kernel/btf/vmlinux missing".into(),
        );
        info
    }

    #[test]
    fn missing_privileges_and_btf_are_actionable() {
        let mut info = bare("6.1.0-50-amd64");
        info.privileges = Privileges {
            euid: 1000,
            cap_eff: Some(1 << CAP_BPF),
        };
        let r = check(&info);
        let errors: Vec<_> = r
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.message.as_str())
            .collect();
        assert!(
            errors
                .iter()
                .any(|m| m.contains("not root, missing CAP_PERFMON")
                    && m.contains("run as root or grant CAP_BPF,CAP_PERFMON"))
        );
        assert!(
            errors
                .iter()
                .any(|m| m.contains("CONFIG_DEBUG_INFO_BTF: /sys/kernel/btf/vmlinux missing"))
        );
        assert!(
            r.constants_error
                .as_deref()
                .unwrap_or("")
                .contains("need BTF")
        );
        assert!(!r.ready());
    }

    #[test]
    fn privileged_user_gets_no_privilege_error() {
        let mut info = bare("6.1.0");
        info.privileges = Privileges {
            euid: 1000,
            cap_eff: Some((1 << CAP_BPF) | (1 << CAP_PERFMON)),
        };
        let r = check(&info);
        assert!(
            !r.problems
                .iter()
                .any(|p| p.message.contains("CAP_BPF,CAP_PERFMON"))
        );
        // Still not ready: no BTF.
        assert!(!r.ready());
        assert!(r.render_text().contains("UNRESOLVED"));
    }
}
