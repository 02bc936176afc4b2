//! The attach plan's resolution against the running kernel ([`plan`]); the
//! plan itself is data in [`super::hooks`].
//!
//! Each hook lists alternatives in order of preference. An alternative
//! applies when every target is a symbol of this kernel that a probe can
//! attach to, every struct field it reads was resolved from BTF, the BTF
//! prototypes match the arguments the probes read, and no earlier hook has
//! claimed one of its symbols. The result ([`AttachPlan`]) is what
//! `cowtrace check` prints, what the loader attaches, and what trace headers
//! record.

use std::collections::HashMap;

use serde::Serialize;
use tracer_common::hook;

use super::btf::ReturnType;
pub use super::hooks::{AltSpec, ArgCheck, AttachKind, AttachSpec, HOOKS, HookSpec, Mechanism};
use super::info::{KPROBE_PMU, KernelInfo};
use super::layout::LayoutReport;
use super::preempt::Preemption;
use crate::decode::RetKind;

/// A Layout field a chosen alternative reads, with its BTF source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldUse {
    pub field: &'static str,
    /// BTF path (`vm_fault.(anon).vma`) or other source; `None` if absent.
    pub source: Option<String>,
    pub optional: bool,
}

/// The alternative a hook attaches with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChosenAlt {
    /// Position in the hook's alternatives (0 = preferred).
    pub index: usize,
    pub mechanism: Mechanism,
    pub attachments: Vec<AttachSpec>,
    pub fields: Vec<FieldUse>,
    /// How the grab helper reports success (GUP hooks only).
    pub ret_kind: Option<RetKind>,
    /// Prototype facts checked against BTF.
    pub verified: Vec<String>,
    /// Things that could not be verified or may go wrong at attach time.
    pub warnings: Vec<String>,
}

impl ChosenAlt {
    /// Distinct target symbols, in attachment order.
    pub fn symbols(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for a in &self.attachments {
            if !out.contains(&a.target) {
                out.push(a.target);
            }
        }
        out
    }
}

/// An alternative that does not apply here, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub symbols: Vec<&'static str>,
    pub reasons: Vec<String>,
}

/// The resolution of one hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookPlan {
    pub id: u16,
    pub name: &'static str,
    pub required: bool,
    pub chosen: Option<ChosenAlt>,
    /// Alternatives tried before the chosen one (all of them when none applies).
    pub rejected: Vec<Rejected>,
    /// What is lost when `chosen` is `None`.
    pub lost_when_missing: &'static str,
}

/// Every hook resolved against one kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttachPlan {
    /// `uname -r` of the kernel the plan is for.
    pub kernel: String,
    pub kprobes_supported: bool,
    pub hooks: Vec<HookPlan>,
    /// Global caveats (tracefs unreadable, kallsyms unreadable, ...).
    pub notes: Vec<String>,
}

impl AttachPlan {
    /// Required hooks with no applicable alternative: tracing is not possible.
    pub fn missing_required(&self) -> Vec<&HookPlan> {
        self.hooks
            .iter()
            .filter(|h| h.required && h.chosen.is_none())
            .collect()
    }

    pub fn hook(&self, id: u16) -> Option<&HookPlan> {
        self.hooks.iter().find(|h| h.id == id)
    }

    /// The return convention of the grab helper attached for `id`.
    pub fn ret_kind(&self, id: u16) -> Option<RetKind> {
        self.hook(id)?.chosen.as_ref()?.ret_kind
    }

    /// Every attachment to make, with its hook id.
    pub fn attachments(&self) -> impl Iterator<Item = (u16, &AttachSpec)> {
        self.hooks
            .iter()
            .filter_map(|h| h.chosen.as_ref().map(|c| (h.id, c)))
            .flat_map(|(id, c)| c.attachments.iter().map(move |a| (id, a)))
    }
}

/// Which attach mechanism the plan may use (`--mechanism`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MechanismChoice {
    /// Per hook, the first alternative the kernel supports: fentry/fexit
    /// before kprobes where a hook has both, unless the kernel preempts
    /// inside trampoline programs (then kprobes, which cannot skip).
    #[default]
    Auto,
    /// kprobes/kretprobes only.
    Kprobe,
    /// fentry/fexit for every hook that has such an alternative (a hook
    /// that has one but cannot use it is left out, not silently moved to
    /// kprobes); hooks without one keep their kprobes or tracepoints.
    Fentry,
}

impl MechanismChoice {
    /// Why alternative `a` of `h` is not allowed here, if it is not.
    fn refuses(self, h: &HookSpec, a: &AltSpec, preemption: &Preemption) -> Option<String> {
        let has = |m: Mechanism| h.alternatives.iter().any(|x| x.mechanism == m);
        match (self, a.mechanism) {
            (MechanismChoice::Kprobe, Mechanism::Fentry) => {
                Some("fentry alternative not allowed by --mechanism kprobe".into())
            }
            (MechanismChoice::Fentry, Mechanism::Kprobe) if has(Mechanism::Fentry) => {
                Some("kprobe alternative not allowed by --mechanism fentry".into())
            }
            // Trampolines run with only migration disabled and skip a
            // program already running on the CPU: with kernel preemption a
            // preempted program makes others miss decisions (see
            // `preempt`). kprobes cannot be skipped that way.
            (MechanismChoice::Auto, Mechanism::Fentry)
                if has(Mechanism::Kprobe) && preemption.trampolines_preemptible() =>
            {
                Some(format!(
                    "fentry not chosen by auto: trampolines can be preempted here, \
                     preemption {} (--mechanism fentry forces it)",
                    preemption.describe()
                ))
            }
            _ => None,
        }
    }
}

/// Resolves [`HOOKS`] against `info` and the layout resolution.
pub fn plan(info: &KernelInfo, layout: &LayoutReport) -> AttachPlan {
    plan_with(info, layout, MechanismChoice::Auto)
}

/// [`plan`] restricted to one mechanism where hooks offer a choice.
pub fn plan_with(info: &KernelInfo, layout: &LayoutReport, choice: MechanismChoice) -> AttachPlan {
    plan_hooks_with(HOOKS, info, layout, choice)
}

/// [`plan`] over any hook table (tests use small ones).
pub fn plan_hooks(hooks: &[HookSpec], info: &KernelInfo, layout: &LayoutReport) -> AttachPlan {
    plan_hooks_with(hooks, info, layout, MechanismChoice::Auto)
}

fn plan_hooks_with(
    hooks: &[HookSpec],
    info: &KernelInfo,
    layout: &LayoutReport,
    choice: MechanismChoice,
) -> AttachPlan {
    let mut notes = Vec::new();
    if let Some(e) = &info.kallsyms_error {
        notes.push(format!("symbol presence not verified: {e}"));
    }
    if let Some(e) = &info.filter_functions_error {
        notes.push(format!("kprobe attachability not verified: {e}"));
    }
    if info.sched_tracepoints.is_none() {
        notes.push("tracefs events not readable: sched tracepoints assumed present".into());
    }
    if info.btf.is_none() {
        notes.push("no BTF: prototypes not verified and no struct field resolves".into());
    }

    let mut claimed: HashMap<&'static str, &'static str> = HashMap::new();
    let mut out = Vec::new();
    for h in hooks {
        let name = hook::name(h.id);
        let mut rejected = Vec::new();
        let mut chosen = None;
        let unmet: Vec<String> = h
            .depends_on
            .iter()
            .filter(|&&d| {
                !out.iter()
                    .any(|p: &HookPlan| p.id == d && p.chosen.is_some())
            })
            .map(|&d| format!("needs hook {} attached", hook::name(d)))
            .collect();
        for (index, a) in h.alternatives.iter().enumerate() {
            let result = if !unmet.is_empty() {
                Err(unmet.clone())
            } else if let Some(why) = choice.refuses(h, a, &info.preemption) {
                Err(vec![why])
            } else {
                evaluate(a, index, name, info, layout, &claimed)
            };
            match result {
                Ok(c) => {
                    for s in c.symbols() {
                        claimed.insert(s, name);
                    }
                    chosen = Some(c);
                    break;
                }
                Err(reasons) => rejected.push(Rejected {
                    index,
                    symbols: distinct_targets(a),
                    reasons,
                }),
            }
        }
        out.push(HookPlan {
            id: h.id,
            name,
            required: h.required,
            chosen,
            rejected,
            lost_when_missing: h.lost,
        });
    }
    AttachPlan {
        kernel: info.release.clone(),
        kprobes_supported: info.kprobes_supported,
        hooks: out,
        notes,
    }
}

fn distinct_targets(a: &AltSpec) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for at in a.attachments {
        if !out.contains(&at.target) {
            out.push(at.target);
        }
    }
    out
}

/// The chosen alternative, or every reason it does not apply.
fn evaluate(
    a: &AltSpec,
    index: usize,
    hook_name: &str,
    info: &KernelInfo,
    layout: &LayoutReport,
    claimed: &HashMap<&'static str, &'static str>,
) -> Result<ChosenAlt, Vec<String>> {
    let mut reasons = Vec::new();
    let mut verified = Vec::new();
    let mut warnings = Vec::new();

    let needs_kprobes = a
        .attachments
        .iter()
        .any(|x| matches!(x.kind, AttachKind::Kprobe | AttachKind::Kretprobe));
    if needs_kprobes && !info.kprobes_supported {
        reasons.push(format!(
            "kernel built without CONFIG_KPROBES ({KPROBE_PMU} absent)"
        ));
    }
    for target in distinct_targets(a) {
        let kind = a
            .attachments
            .iter()
            .find(|x| x.target == target)
            .map_or(AttachKind::Kprobe, |x| x.kind);
        if let Some(owner) = claimed.get(target).filter(|&&o| o != hook_name) {
            reasons.push(format!("`{target}` is already used by hook {owner}"));
            continue;
        }
        match kind {
            AttachKind::RawTracepoint => match &info.sched_tracepoints {
                Some(set) if !set.contains(target) => {
                    reasons.push(format!("tracepoint sched/{target} not found in tracefs"));
                }
                _ => {}
            },
            AttachKind::Kprobe | AttachKind::Kretprobe => {
                symbol_check(target, info, &mut reasons, &mut warnings);
            }
            AttachKind::Fentry | AttachKind::Fexit => {
                // A trampoline patches the same ftrace site a kprobe on
                // entry uses, and is typed by the function's BTF.
                symbol_check(target, info, &mut reasons, &mut warnings);
                match info.types().map(|t| t.func(target)) {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => reasons.push(format!("`{target}` has no BTF prototype: {e}")),
                    None => reasons.push(format!("fentry on `{target}` needs BTF")),
                }
            }
        }
    }

    let mut fields = Vec::new();
    for &f in a.fields {
        let report = layout.get(f);
        match report.filter(|r| r.resolved()) {
            Some(r) => fields.push(FieldUse {
                field: f,
                source: r.source.clone(),
                optional: false,
            }),
            None => {
                let tried = report.map(|r| r.tried.join(", ")).unwrap_or_default();
                let why = report
                    .and_then(|r| r.refused.as_deref())
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                reasons.push(format!("field {f} unresolved (tried {tried}){why}"));
            }
        }
    }
    for &f in a.optional_fields {
        let source = layout
            .get(f)
            .filter(|r| r.resolved())
            .and_then(|r| r.source.clone());
        fields.push(FieldUse {
            field: f,
            source,
            optional: true,
        });
    }

    let ret_kind = match a.ret_of {
        None => None,
        Some(func) => match info.types().map(|t| t.func(func)) {
            Some(Ok(sig)) => match sig.ret {
                ReturnType::Bool => Some(RetKind::BoolTrue),
                ReturnType::Int => Some(RetKind::ZeroOk),
                ReturnType::Pointer => Some(RetKind::NonNull),
                other => {
                    reasons.push(format!(
                        "`{func}` returns {other:?}: cannot tell a grab's success"
                    ));
                    None
                }
            },
            Some(Err(e)) => {
                reasons.push(format!("return convention of `{func}` unknown: {e}"));
                None
            }
            None => {
                reasons.push(format!("return convention of `{func}` unknown: no BTF"));
                None
            }
        },
    };

    for check in a.args {
        arg_check(
            check,
            info,
            layout,
            &mut reasons,
            &mut verified,
            &mut warnings,
        );
    }

    if !reasons.is_empty() {
        return Err(reasons);
    }
    Ok(ChosenAlt {
        index,
        mechanism: a.mechanism,
        attachments: a.attachments.to_vec(),
        fields,
        ret_kind,
        verified,
        warnings,
    })
}

fn symbol_check(
    target: &str,
    info: &KernelInfo,
    reasons: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let in_kallsyms = info.kallsyms.as_ref().map(|k| k.has_function(target));
    if in_kallsyms == Some(false) {
        reasons.push(format!("`{target}` not in /proc/kallsyms"));
        return;
    }
    match &info.filter_functions {
        Some(f) => match f.count(target) {
            0 => reasons.push(format!(
                "`{target}` is in kallsyms but not attachable (not in available_filter_functions: \
                 inlined or notrace)"
            )),
            1 => {}
            n => warnings.push(format!(
                "`{target}` names {n} functions: a kprobe by name is ambiguous (newer kernels refuse it)"
            )),
        },
        None if in_kallsyms.is_none() => warnings.push(format!("`{target}` presence not verified")),
        None => {}
    }
}

fn arg_check(
    check: &ArgCheck,
    info: &KernelInfo,
    layout: &LayoutReport,
    reasons: &mut Vec<String>,
    verified: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let (func, index, name) = match *check {
        ArgCheck::MaxArgs { func, max } => {
            match info.types().map(|t| t.func(func)) {
                Some(Ok(sig)) if sig.params.len() <= max => {}
                Some(Ok(sig)) => reasons.push(format!(
                    "{func}: has {} arguments, a BPF trampoline takes at most {max}",
                    sig.params.len()
                )),
                Some(Err(e)) => reasons.push(format!("{func}: arity unknown ({e})")),
                None => reasons.push(format!("{func}: arity unknown (no BTF)")),
            }
            return;
        }
        ArgCheck::Arity { func, count } => {
            match info.types().map(|t| t.func(func)) {
                Some(Ok(sig)) if sig.params.len() == count => {
                    verified.push(format!("{func}: {count} argument(s)"));
                }
                Some(Ok(sig)) => reasons.push(format!(
                    "{func}: has {} arguments, the program expects {count}",
                    sig.params.len()
                )),
                Some(Err(e)) => reasons.push(format!("{func}: arity unknown ({e})")),
                None => reasons.push(format!("{func}: arity unknown (no BTF)")),
            }
            return;
        }
        ArgCheck::Param { func, index, name } => (func, index, name),
        ArgCheck::FieldOrParam {
            field,
            func,
            index,
            name,
        } => {
            if let Some(src) = layout
                .get(field)
                .filter(|r| r.resolved())
                .and_then(|r| r.source.as_deref())
            {
                verified.push(format!("{name} read from {src}"));
                return;
            }
            (func, index, name)
        }
    };
    let Some(types) = info.types() else {
        warnings.push(format!(
            "{func}: argument {} `{name}` not verified (no BTF)",
            index + 1
        ));
        return;
    };
    match types.func(func) {
        Ok(sig) => match sig.params.get(index) {
            Some(p) if p == name => {
                verified.push(format!("{func}: argument {} is `{name}`", index + 1));
            }
            Some(p) => reasons.push(format!(
                "{func}: argument {} is `{p}`, the probe expects `{name}`",
                index + 1
            )),
            None => reasons.push(format!(
                "{func}: has {} arguments, the probe reads argument {} (`{name}`)",
                sig.params.len(),
                index + 1
            )),
        },
        Err(e) => warnings.push(format!(
            "{func}: argument {} `{name}` not verified ({e})",
            index + 1
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use tracer_common::prog;

    use super::*;
    use crate::kernel::btf::ReturnType::{Bool, Int, Pointer, Void};
    use crate::kernel::kallsyms::{FilterFunctions, Kallsyms};
    use crate::kernel::layout::resolve_layout;
    use crate::kernel::testutil::FakeTypes;

    /// A kernel with these attachable functions (in kallsyms and ftrace).
    fn kernel(release: &str, funcs: &[&str], types: FakeTypes) -> (KernelInfo, LayoutReport) {
        let mut ksyms = String::from("ffffffff82a00000 D vmemmap_base\n");
        for (i, f) in funcs.iter().enumerate() {
            ksyms.push_str(&format!(
                "{:016x} t {f}\n",
                0xffff_ffff_8100_0000u64 + i as u64 * 0x100
            ));
        }
        let mut info = KernelInfo::empty(release);
        info.kallsyms = Some(Kallsyms::parse(&ksyms).unwrap());
        info.filter_functions = Some(FilterFunctions::parse(
            &funcs.join("\n"),
            PathBuf::from("t"),
        ));
        info.sched_tracepoints = Some(HashSet::from([
            "sched_process_fork".into(),
            "sched_process_exit".into(),
        ]));
        let (_, report) = resolve_layout(Some(&types), Ok(Some(0xffff_ffff_82a0_0000)));
        info.btf = Some(Box::new(types));
        (info, report)
    }

    fn common_protos(t: FakeTypes) -> FakeTypes {
        t.with_common_layout()
            .func("do_wp_page", &["vmf"], Int)
            .func("copy_page_range", &["dst_vma", "src_vma"], Int)
            .func(
                "follow_page_pte",
                &["vma", "address", "pmd", "flags", "ctx"],
                Pointer,
            )
    }

    fn v510() -> (KernelInfo, LayoutReport) {
        let t = common_protos(FakeTypes::default())
            .func("do_huge_pmd_wp_page", &["vmf", "orig_pmd"], Int)
            .func(
                "__get_user_pages",
                &[
                    "mm",
                    "start",
                    "nr_pages",
                    "gup_flags",
                    "pages",
                    "vmas",
                    "locked",
                ],
                Int,
            )
            .func("try_grab_page", &["page", "flags"], Bool)
            .func(
                "internal_get_user_pages_fast",
                &["start", "nr_pages", "gup_flags", "pages"],
                Int,
            )
            .func(
                "try_grab_compound_head",
                &["page", "refs", "flags"],
                Pointer,
            )
            .func("put_compound_head", &["page", "refs", "flags"], Void)
            .func(
                "alloc_pages_vma",
                &["gfp_mask", "order", "vma", "addr", "node", "hugepage"],
                Pointer,
            );
        kernel(
            "5.10.0-46-amd64",
            &[
                "do_wp_page",
                "do_huge_pmd_wp_page",
                "__get_user_pages",
                "follow_page_pte",
                "try_grab_page",
                "internal_get_user_pages_fast",
                "try_grab_compound_head",
                "put_compound_head",
                "copy_page_range",
                "alloc_pages_vma",
            ],
            t,
        )
    }

    fn v61() -> (KernelInfo, LayoutReport) {
        let t = common_protos(FakeTypes::default())
            .member("vm_fault.(anon).orig_pmd", 64)
            .func("do_huge_pmd_wp_page", &["vmf"], Int)
            .func(
                "__get_user_pages",
                &[
                    "mm",
                    "start",
                    "nr_pages",
                    "gup_flags",
                    "pages",
                    "vmas",
                    "locked",
                ],
                Int,
            )
            .func("try_grab_page", &["page", "flags"], Int)
            .func("try_grab_folio", &["page", "refs", "flags"], Pointer)
            .func(
                "internal_get_user_pages_fast",
                &["start", "nr_pages", "gup_flags", "pages"],
                Int,
            )
            .func("gup_put_folio", &["folio", "refs", "flags"], Void)
            .func(
                "vma_alloc_folio",
                &["gfp", "order", "vma", "addr", "hugepage"],
                Pointer,
            );
        kernel(
            "6.1.0-50-amd64",
            &[
                "do_wp_page",
                "do_huge_pmd_wp_page",
                "__get_user_pages",
                "follow_page_pte",
                "try_grab_page",
                "try_grab_folio",
                "internal_get_user_pages_fast",
                "gup_put_folio",
                "copy_page_range",
                "vma_alloc_folio",
            ],
            t,
        )
    }

    fn v612_types() -> FakeTypes {
        common_protos(FakeTypes::default())
            .member("vm_fault.(anon).orig_pmd", 64)
            .member("folio.(anon)._large_mapcount", 100)
            .func("do_huge_pmd_wp_page", &["vmf"], Int)
            .func(
                "__get_user_pages",
                &["mm", "start", "nr_pages", "gup_flags", "pages", "locked"],
                Int,
            )
            .func("try_grab_folio", &["folio", "refs", "flags"], Int)
            .func(
                "gup_fast_fallback",
                &["start", "nr_pages", "gup_flags", "pages"],
                Int,
            )
            .func("try_grab_folio_fast", &["page", "refs", "flags"], Pointer)
            .func("gup_put_folio", &["folio", "refs", "flags"], Void)
            .func(
                "vma_alloc_folio_noprof",
                &["gfp", "order", "vma", "addr"],
                Pointer,
            )
    }

    const V612_FUNCS: &[&str] = &[
        "do_wp_page",
        "do_huge_pmd_wp_page",
        "__get_user_pages",
        "follow_page_pte",
        "try_grab_folio",
        "gup_fast_fallback",
        "try_grab_folio_fast",
        "gup_put_folio",
        "copy_page_range",
        "vma_alloc_folio_noprof",
    ];

    fn chosen_symbols(p: &AttachPlan, id: u16) -> Vec<&'static str> {
        p.hook(id)
            .and_then(|h| h.chosen.as_ref())
            .map(ChosenAlt::symbols)
            .unwrap_or_default()
    }

    #[test]
    fn v510_plan() {
        let (info, layout) = v510();
        let p = plan(&info, &layout);
        assert!(
            p.missing_required().is_empty(),
            "{:#?}",
            p.missing_required()
        );
        assert_eq!(
            chosen_symbols(&p, hook::GUP_SLOW),
            ["__get_user_pages", "follow_page_pte", "try_grab_page"]
        );
        assert_eq!(p.ret_kind(hook::GUP_SLOW), Some(RetKind::BoolTrue));
        assert_eq!(
            chosen_symbols(&p, hook::GUP_FAST),
            ["internal_get_user_pages_fast", "try_grab_compound_head"]
        );
        assert_eq!(p.ret_kind(hook::GUP_FAST), Some(RetKind::NonNull));
        assert_eq!(chosen_symbols(&p, hook::UNPIN), ["put_compound_head"]);
        assert_eq!(chosen_symbols(&p, hook::FORK_COPY), ["alloc_pages_vma"]);
        // orig_pmd is not in vm_fault on 5.10: the 2nd argument carries it.
        let thp = p.hook(hook::THP_WP).unwrap().chosen.as_ref().unwrap();
        assert!(
            thp.verified
                .iter()
                .any(|v| v.contains("argument 2 is `orig_pmd`")),
            "{:?}",
            thp.verified
        );
        let copy = p.hook(hook::FORK_COPY).unwrap().chosen.as_ref().unwrap();
        assert!(
            copy.verified
                .iter()
                .any(|v| v == "alloc_pages_vma: argument 4 is `addr`")
        );
        assert!(p.hook(hook::TASK).unwrap().chosen.is_some());
    }

    #[test]
    fn v61_plan_uses_try_grab_folio_on_the_fast_path() {
        let (info, layout) = v61();
        let p = plan(&info, &layout);
        assert!(
            p.missing_required().is_empty(),
            "{:#?}",
            p.missing_required()
        );
        assert_eq!(
            chosen_symbols(&p, hook::GUP_SLOW),
            ["__get_user_pages", "follow_page_pte", "try_grab_page"]
        );
        assert_eq!(p.ret_kind(hook::GUP_SLOW), Some(RetKind::ZeroOk));
        let fast = p.hook(hook::GUP_FAST).unwrap();
        assert_eq!(fast.chosen.as_ref().unwrap().index, 2);
        assert_eq!(
            chosen_symbols(&p, hook::GUP_FAST),
            ["internal_get_user_pages_fast", "try_grab_folio"]
        );
        assert_eq!(p.ret_kind(hook::GUP_FAST), Some(RetKind::NonNull));
        assert_eq!(fast.rejected.len(), 2);
        assert_eq!(chosen_symbols(&p, hook::UNPIN), ["gup_put_folio"]);
        assert_eq!(chosen_symbols(&p, hook::FORK_COPY), ["vma_alloc_folio"]);
        let thp = p.hook(hook::THP_WP).unwrap().chosen.as_ref().unwrap();
        assert_eq!(thp.mechanism, Mechanism::Fentry);
        assert!(
            thp.fields
                .iter()
                .any(|f| f.field == "vmf_orig_pmd" && !f.optional && f.source.is_some())
        );
    }

    #[test]
    fn fentry_is_preferred_and_kprobes_can_be_forced() {
        let (info, layout) = v61();
        let auto = plan(&info, &layout);
        let wp = auto.hook(hook::WP_FAULT).unwrap().chosen.as_ref().unwrap();
        assert_eq!(wp.mechanism, Mechanism::Fentry);
        assert_eq!(
            wp.attachments.iter().map(|a| a.kind).collect::<Vec<_>>(),
            [AttachKind::Fentry, AttachKind::Fexit]
        );
        let forced = plan_with(&info, &layout, MechanismChoice::Kprobe);
        for h in &forced.hooks {
            if let Some(c) = &h.chosen {
                assert_eq!(c.mechanism, Mechanism::Kprobe, "{}", h.name);
            }
        }
        let wp = forced.hook(hook::WP_FAULT).unwrap();
        assert!(wp.rejected[0].reasons[0].contains("--mechanism kprobe"));
        // Hooks without an fentry alternative keep kprobes under `fentry`.
        let f = plan_with(&info, &layout, MechanismChoice::Fentry);
        let fork = f.hook(hook::FORK_VMA).unwrap().chosen.as_ref().unwrap();
        assert_eq!(fork.mechanism, Mechanism::Kprobe);
        // 6.1: the slow path's per-page programs are trampolines, its
        // seven-parameter entry a kprobe.
        let slow = f.hook(hook::GUP_SLOW).unwrap().chosen.as_ref().unwrap();
        assert_eq!(
            slow.attachments.iter().map(|a| a.kind).collect::<Vec<_>>(),
            [AttachKind::Kprobe, AttachKind::Fentry, AttachKind::Fexit]
        );
        assert_eq!(
            f.hook(hook::WP_FAULT)
                .unwrap()
                .chosen
                .as_ref()
                .unwrap()
                .mechanism,
            Mechanism::Fentry
        );
    }

    #[test]
    fn auto_takes_kprobes_where_the_kernel_preempts_inside_trampolines() {
        use crate::kernel::preempt::{PreemptModel, Preemption};
        let (mut info, layout) = v61();
        for preemption in [
            Preemption::known(PreemptModel::Lazy, "/sys/kernel/debug/sched/preempt"),
            Preemption {
                model: None,
                source: "not readable".into(),
            },
        ] {
            info.preemption = preemption;
            let auto = plan(&info, &layout);
            for h in &auto.hooks {
                if let Some(c) = &h.chosen {
                    assert_eq!(c.mechanism, Mechanism::Kprobe, "{}", h.name);
                }
            }
            let wp = auto.hook(hook::WP_FAULT).unwrap();
            assert!(
                wp.rejected[0].reasons[0].contains("fentry not chosen by auto"),
                "{:?}",
                wp.rejected
            );
            // Forcing fentry still gets trampolines.
            let f = plan_with(&info, &layout, MechanismChoice::Fentry);
            let wp = f.hook(hook::WP_FAULT).unwrap().chosen.as_ref().unwrap();
            assert_eq!(wp.mechanism, Mechanism::Fentry);
            // `check` says so, and warns only when trampolines are forced.
            let warns = |r: &crate::kernel::CheckReport| {
                r.problems.iter().any(|p| {
                    p.message
                        .contains("use trampolines on a kernel that preempts")
                })
            };
            let auto = crate::kernel::check(&info);
            assert!(!warns(&auto));
            assert!(auto.render_text().contains("auto uses kprobes"));
            assert!(warns(&crate::kernel::check_with(
                &info,
                MechanismChoice::Fentry
            )));
        }
        info.preemption = Preemption::known(PreemptModel::Voluntary, "debugfs");
        let wp = plan(&info, &layout);
        let wp = wp.hook(hook::WP_FAULT).unwrap().chosen.as_ref().unwrap();
        assert_eq!(wp.mechanism, Mechanism::Fentry);
    }

    #[test]
    fn v510_thp_passes_a_struct_by_value_so_it_keeps_kprobes() {
        let (info, layout) = v510();
        let p = plan(&info, &layout);
        let thp = p.hook(hook::THP_WP).unwrap();
        assert_eq!(thp.chosen.as_ref().unwrap().mechanism, Mechanism::Kprobe);
        assert!(
            thp.rejected[0]
                .reasons
                .iter()
                .any(|r| r.contains("has 2 arguments, the program expects 1")),
            "{:?}",
            thp.rejected
        );
        // Forcing fentry leaves the hook out rather than moving it back.
        let f = plan_with(&info, &layout, MechanismChoice::Fentry);
        assert!(f.hook(hook::THP_WP).unwrap().chosen.is_none());
    }

    #[test]
    fn v612_plan_and_ret_kinds_follow_btf() {
        let (info, layout) = kernel("6.12.111+deb12-amd64", V612_FUNCS, v612_types());
        let p = plan(&info, &layout);
        assert!(
            p.missing_required().is_empty(),
            "{:#?}",
            p.missing_required()
        );
        // Six parameters in `__get_user_pages`: all of the slow path on
        // trampolines; the kprobe alternatives are not even evaluated.
        let slow = p.hook(hook::GUP_SLOW).unwrap().chosen.as_ref().unwrap();
        assert_eq!((slow.index, slow.mechanism), (0, Mechanism::Fentry));
        assert_eq!(
            chosen_symbols(&p, hook::GUP_SLOW),
            ["__get_user_pages", "follow_page_pte", "try_grab_folio"]
        );
        let forced = plan_with(&info, &layout, MechanismChoice::Kprobe);
        let slow = forced.hook(hook::GUP_SLOW).unwrap();
        assert!(
            slow.rejected
                .iter()
                .flat_map(|r| &r.reasons)
                .any(|r| r.contains("`try_grab_page` not in /proc/kallsyms"))
        );
        assert_eq!(p.ret_kind(hook::GUP_SLOW), Some(RetKind::ZeroOk));
        assert_eq!(
            chosen_symbols(&p, hook::GUP_FAST),
            ["gup_fast_fallback", "try_grab_folio_fast"]
        );
        assert_eq!(p.ret_kind(hook::GUP_FAST), Some(RetKind::NonNull));
        assert_eq!(
            chosen_symbols(&p, hook::FORK_COPY),
            ["vma_alloc_folio_noprof"]
        );
        let wp = p.hook(hook::WP_FAULT).unwrap().chosen.as_ref().unwrap();
        let large = wp
            .fields
            .iter()
            .find(|f| f.field == "folio_large_mapcount")
            .unwrap();
        assert_eq!(
            large.source.as_deref(),
            Some("folio.(anon)._large_mapcount")
        );
        let programs: Vec<_> = p.attachments().map(|(_, a)| a.program).collect();
        assert!(
            programs.contains(&prog::GUP_SLOW_PRF_FX) && !programs.contains(&prog::GUP_SLOW_PF_FX)
        );
    }

    #[test]
    fn a_symbol_claimed_by_an_earlier_hook_is_not_reused() {
        // 6.12-like but without the fast-path symbols, and with
        // internal_get_user_pages_fast: gup_fast's 6.1 alternative would
        // take try_grab_folio, which gup_slow already owns.
        let mut funcs: Vec<&str> = V612_FUNCS
            .iter()
            .copied()
            .filter(|f| !matches!(*f, "gup_fast_fallback" | "try_grab_folio_fast"))
            .collect();
        funcs.push("internal_get_user_pages_fast");
        let types = v612_types().func(
            "internal_get_user_pages_fast",
            &["start", "nr_pages", "gup_flags", "pages"],
            Int,
        );
        let (info, layout) = kernel("6.12.0", &funcs, types);
        let p = plan(&info, &layout);
        let fast = p.hook(hook::GUP_FAST).unwrap();
        assert!(fast.chosen.is_none());
        assert!(
            fast.rejected[2]
                .reasons
                .iter()
                .any(|r| r == "`try_grab_folio` is already used by hook gup_slow")
        );
        assert_eq!(
            p.missing_required()
                .iter()
                .map(|h| h.name)
                .collect::<Vec<_>>(),
            ["gup_fast"]
        );
    }

    #[test]
    fn fork_copy_needs_the_fork_window() {
        // copy_page_range inlined (not attachable): fork_vma is missing, so
        // fork_alloc would never see a window and is not attached either.
        let (mut info, layout) = v61();
        let names = ["do_wp_page", "vma_alloc_folio"].join("\n");
        info.filter_functions = Some(FilterFunctions::parse(&names, PathBuf::from("t")));
        let p = plan(&info, &layout);
        let copy = p.hook(hook::FORK_COPY).unwrap();
        assert!(copy.chosen.is_none());
        assert_eq!(copy.rejected[0].reasons, ["needs hook fork_vma attached"]);
    }

    #[test]
    fn without_kprobes_only_tracepoints_attach() {
        let (mut info, layout) = v61();
        info.kprobes_supported = false;
        let p = plan(&info, &layout);
        let missing: Vec<_> = p.missing_required().iter().map(|h| h.name).collect();
        // 6.1's `__get_user_pages` has seven parameters: its context probe
        // needs a kprobe; the fast path and unpins work on trampolines.
        assert_eq!(missing, ["gup_slow", "fork_vma"]);
        assert!(p.hook(hook::TASK).unwrap().chosen.is_some());
        // do_wp_page still attaches, through a trampoline.
        let wp = p.hook(hook::WP_FAULT).unwrap().chosen.as_ref().unwrap();
        assert_eq!(wp.mechanism, Mechanism::Fentry);
        let forced = plan_with(&info, &layout, MechanismChoice::Kprobe);
        let wp = forced.hook(hook::WP_FAULT).unwrap();
        assert!(wp.chosen.is_none());
        assert!(wp.rejected[1].reasons[0].contains("CONFIG_KPROBES"));
    }

    #[test]
    fn inlined_functions_and_prototype_mismatches_reject() {
        let (mut info, layout) = v61();
        // do_wp_page in kallsyms but not in ftrace's list (inlined/notrace).
        let names = ["do_huge_pmd_wp_page", "copy_page_range"].join("\n");
        info.filter_functions = Some(FilterFunctions::parse(&names, PathBuf::from("t")));
        let p = plan(&info, &layout);
        let wp = p.hook(hook::WP_FAULT).unwrap();
        assert!(
            wp.rejected[0]
                .reasons
                .iter()
                .any(|r| r.contains("not attachable"))
        );

        let (info, layout) = kernel(
            "6.1.0",
            &["copy_page_range"],
            common_protos(FakeTypes::default()).func("copy_page_range", &["src", "dst"], Int),
        );
        let p = plan(&info, &layout);
        let fork = p.hook(hook::FORK_VMA).unwrap();
        assert!(fork.chosen.is_none());
        assert!(
            fork.rejected[0]
                .reasons
                .iter()
                .any(|r| r.contains("argument 1 is `src`, the probe expects `dst_vma`"))
        );
    }

    #[test]
    fn without_btf_every_field_hook_is_missing_with_the_tried_names() {
        let (mut info, _) = v61();
        info.btf = None;
        info.btf_error = Some("kernel built without CONFIG_DEBUG_INFO_BTF".into());
        let (_, layout) = resolve_layout(None, Ok(None));
        let p = plan(&info, &layout);
        assert_eq!(p.missing_required().len(), 5);
        let task = p.hook(hook::TASK).unwrap();
        assert!(
            task.rejected[0]
                .reasons
                .iter()
                .any(|r| r == "field task_pid unresolved (tried task_struct.pid)")
        );
        assert!(p.notes.iter().any(|n| n.contains("no BTF")));
    }

    #[test]
    fn plan_serializes_for_trace_headers() {
        let (info, layout) = v510();
        let v = serde_json::to_value(plan(&info, &layout)).unwrap();
        assert_eq!(v["kernel"], "5.10.0-46-amd64");
        assert_eq!(v["hooks"][0]["name"], "wp_fault");
        assert_eq!(v["hooks"][0]["chosen"]["attachments"][1]["kind"], "fexit");
        assert_eq!(v["hooks"][0]["chosen"]["mechanism"], "fentry");
        assert_eq!(v["hooks"][2]["chosen"]["ret_kind"], "BoolTrue");
    }
}
