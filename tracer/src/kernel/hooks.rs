//! The attach plan as data: every hook, its alternatives in order of
//! preference, what each alternative attaches, reads and assumes.
//!
//! Symbols and prototypes per kernel line are in
//! `/work/shared/docs/kernel-facts.md` (measured on the Debian kernels);
//! nothing here is keyed by version: [`super::plan::plan`] picks the first
//! alternative the running kernel supports.

use serde::Serialize;
use tracer_common::{hook, prog};

use super::layout::{
    ENTIRE_MAPCOUNT_FIELD, NR_SWAPFILES_FIELD, PAGE_SIZE_FIELD, PG_HEAD_FIELD,
    SWAP_CLUSTER_SIZE_FIELD, SWAP_INFO_FIELD, SWAP_TABLE_SLOTS_FIELD, VMEMMAP_FIELD,
};

/// How a program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// kprobe/kretprobe on functions, raw tracepoints on tracepoints.
    Kprobe,
    /// fentry/fexit through a BPF trampoline: a direct call at the
    /// function's ftrace site instead of a probe handler, and an exit that
    /// sees the arguments again. Needs the function in the kernel's BTF.
    Fentry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachKind {
    Kprobe,
    Kretprobe,
    RawTracepoint,
    Fentry,
    Fexit,
}

impl AttachKind {
    /// Attaches to a kernel function (not a tracepoint).
    pub fn on_function(self) -> bool {
        self != AttachKind::RawTracepoint
    }

    /// Needs the function's prototype in BTF (a trampoline program).
    pub fn needs_btf_func(self) -> bool {
        matches!(self, AttachKind::Fentry | AttachKind::Fexit)
    }

    pub fn label(self) -> &'static str {
        match self {
            AttachKind::Kprobe => "kprobe",
            AttachKind::Kretprobe => "kretprobe",
            AttachKind::RawTracepoint => "raw_tracepoint",
            AttachKind::Fentry => "fentry",
            AttachKind::Fexit => "fexit",
        }
    }
}

/// One program attached to one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AttachSpec {
    /// A [`tracer_common::prog`] name.
    pub program: &'static str,
    /// A kernel function, or a tracepoint name for raw tracepoints.
    pub target: &'static str,
    pub kind: AttachKind,
}

/// A prototype fact the probes rely on, verified against BTF.
#[derive(Clone, Copy, Debug)]
pub enum ArgCheck {
    /// Parameter `index` (0-based) of `func` is named `name`.
    Param {
        func: &'static str,
        index: usize,
        name: &'static str,
    },
    /// The value lives in Layout field `field` when the kernel has it, else
    /// in parameter `index` of `func` named `name` (5.10's `orig_pmd`).
    FieldOrParam {
        field: &'static str,
        func: &'static str,
        index: usize,
        name: &'static str,
    },
    /// `func` has exactly `count` parameters: an fexit program finds the
    /// return value right after the arguments.
    Arity { func: &'static str, count: usize },
    /// `func` has at most `max` parameters: x86 BPF trampolines before 6.4
    /// take at most six.
    MaxArgs { func: &'static str, max: usize },
}

/// One way to implement a hook.
#[derive(Clone, Copy, Debug)]
pub struct AltSpec {
    pub mechanism: Mechanism,
    pub attachments: &'static [AttachSpec],
    /// Layout fields the programs read; all must be resolved.
    pub fields: &'static [&'static str],
    /// Layout fields read when the kernel has them.
    pub optional_fields: &'static [&'static str],
    /// The grab helper whose BTF return type says how success is reported.
    pub ret_of: Option<&'static str>,
    pub args: &'static [ArgCheck],
}

/// A hook: what cowtrace observes, and the ways to observe it.
#[derive(Clone, Copy, Debug)]
pub struct HookSpec {
    /// A [`tracer_common::hook`] id.
    pub id: u16,
    pub required: bool,
    /// What the user does not see when no alternative applies.
    pub lost: &'static str,
    pub alternatives: &'static [AltSpec],
    /// Hooks whose programs must be attached for this one to work (a
    /// window their entry probe opens).
    pub depends_on: &'static [u16],
}

const fn kp(program: &'static str, target: &'static str) -> AttachSpec {
    AttachSpec {
        program,
        target,
        kind: AttachKind::Kprobe,
    }
}

const fn kret(program: &'static str, target: &'static str) -> AttachSpec {
    AttachSpec {
        program,
        target,
        kind: AttachKind::Kretprobe,
    }
}

const fn fentry(program: &'static str, target: &'static str) -> AttachSpec {
    AttachSpec {
        program,
        target,
        kind: AttachKind::Fentry,
    }
}

const fn fexit(program: &'static str, target: &'static str) -> AttachSpec {
    AttachSpec {
        program,
        target,
        kind: AttachKind::Fexit,
    }
}

const fn rawtp(program: &'static str, target: &'static str) -> AttachSpec {
    AttachSpec {
        program,
        target,
        kind: AttachKind::RawTracepoint,
    }
}

const fn param(func: &'static str, index: usize, name: &'static str) -> ArgCheck {
    ArgCheck::Param { func, index, name }
}

/// An alternative with the common defaults.
const fn alt(attachments: &'static [AttachSpec], fields: &'static [&'static str]) -> AltSpec {
    AltSpec {
        mechanism: Mechanism::Kprobe,
        attachments,
        fields,
        optional_fields: &[],
        ret_of: None,
        args: &[],
    }
}

/// Read, when the kernel has it, by every probe that reads a `struct page`.
const PAGE_OPTIONAL: &[&str] = &["folio_large_mapcount"];
/// THP records read the folio's entire mapcount where `_large_mapcount` is absent.
const THP_OPTIONAL: &[&str] = &["folio_large_mapcount", "folio_entire_mapcount"];
/// The swap-in probe also reads the swap count of the entry: through
/// `swap_map` (up to 6.x) or the cluster's swap table (7.x).
#[rustfmt::skip]
const SWAP_OPTIONAL: &[&str] = &[
    "folio_large_mapcount", SWAP_INFO_FIELD, NR_SWAPFILES_FIELD, "swap_info_max",
    "swap_info_swap_map", "swap_info_cluster_info", SWAP_CLUSTER_SIZE_FIELD,
    "swap_cluster_table", SWAP_TABLE_SLOTS_FIELD,
];
/// hugetlb folios keep their mapcount in the folio-wide entire mapcount.
const HUGETLB_OPTIONAL: &[&str] = &["folio_large_mapcount", ENTIRE_MAPCOUNT_FIELD];
/// The eager hugetlb copy probe turns the new page into a pfn.
const FORK_HUGE_FIELDS: &[&str] = &[VMEMMAP_FIELD, PAGE_SIZE_FIELD, "task_mm"];

// Layout fields per probe family. Every `struct page` reader needs the
// vmemmap base, sizeof(struct page) and PG_head besides the page words.

#[rustfmt::skip]
const WP_FIELDS: &[&str] = &[
    VMEMMAP_FIELD, PAGE_SIZE_FIELD, PG_HEAD_FIELD, "page_flags", "page_refcount",
    "page_mapcount", "page_mapping", "page_compound_head", "vmf_vma", "vmf_address",
    "vmf_flags", "vmf_orig_pte", "vmf_pte", "vma_mm", "vma_flags", "task_mm",
];
#[rustfmt::skip]
const THP_FIELDS: &[&str] = &[
    VMEMMAP_FIELD, PAGE_SIZE_FIELD, PG_HEAD_FIELD, "page_flags", "page_refcount",
    "page_mapcount", "page_mapping", "page_compound_head", "vmf_vma", "vmf_address",
    "vmf_flags", "vmf_pmd", "vma_mm", "vma_flags", "task_mm",
];
#[rustfmt::skip]
const THP_FIELDS_ORIG_PMD: &[&str] = &[
    VMEMMAP_FIELD, PAGE_SIZE_FIELD, PG_HEAD_FIELD, "page_flags", "page_refcount",
    "page_mapcount", "page_mapping", "page_compound_head", "vmf_vma", "vmf_address",
    "vmf_flags", "vmf_pmd", "vmf_orig_pmd", "vma_mm", "vma_flags", "task_mm",
];
#[rustfmt::skip]
const GUP_SLOW_FIELDS: &[&str] = &[
    VMEMMAP_FIELD, PAGE_SIZE_FIELD, PG_HEAD_FIELD, "page_flags", "page_refcount",
    "page_mapcount", "page_mapping", "page_compound_head", "vma_mm", "task_mm",
];
#[rustfmt::skip]
const PAGE_TASK_FIELDS: &[&str] = &[
    VMEMMAP_FIELD, PAGE_SIZE_FIELD, PG_HEAD_FIELD, "page_flags", "page_refcount",
    "page_mapcount", "page_mapping", "page_compound_head", "task_mm",
];
#[rustfmt::skip]
const HUGETLB_FIELDS: &[&str] = &[
    VMEMMAP_FIELD, PAGE_SIZE_FIELD, PG_HEAD_FIELD, "page_flags", "page_refcount",
    "page_mapcount", "page_mapping", "page_compound_head", "vma_mm", "vma_flags", "task_mm",
];
#[rustfmt::skip]
const HUGETLB_VMF_FIELDS: &[&str] = &[
    VMEMMAP_FIELD, PAGE_SIZE_FIELD, PG_HEAD_FIELD, "page_flags", "page_refcount",
    "page_mapcount", "page_mapping", "page_compound_head", "vmf_vma", "vmf_address",
    "vmf_flags", "vmf_pte", "vma_mm", "vma_flags", "task_mm",
];
const FORK_VMA_FIELDS: &[&str] = &["vma_mm", "vma_start", "vma_end", "vma_flags", "task_mm"];
/// Every record header carries `current->mm`.
const HEADER_FIELDS: &[&str] = &["task_mm"];
const TASK_FIELDS: &[&str] = &["task_pid", "task_tgid", "task_mm"];

const SLOW_CONTEXT_ARGS: [ArgCheck; 4] = [
    param("__get_user_pages", 0, "mm"),
    param("__get_user_pages", 1, "start"),
    param("follow_page_pte", 0, "vma"),
    param("follow_page_pte", 1, "address"),
];

/// Parameters an x86 BPF trampoline takes before 6.4.
const TRAMPOLINE_MAX_ARGS: usize = 6;

/// fentry on the fast path's entry, fexit on its `(page, refs, flags)`
/// grab, which must have exactly those three parameters (the return value
/// follows them).
const fn fast_fentry(
    attachments: &'static [AttachSpec],
    args: &'static [ArgCheck],
    grab: &'static str,
) -> AltSpec {
    AltSpec {
        mechanism: Mechanism::Fentry,
        optional_fields: PAGE_OPTIONAL,
        ret_of: Some(grab),
        args,
        ..alt(attachments, PAGE_TASK_FIELDS)
    }
}

const fn fast_args(start: &'static str, grab: &'static str, first: &'static str) -> [ArgCheck; 5] {
    [
        param(start, 0, "start"),
        param(grab, 0, first),
        param(grab, 1, "refs"),
        param(grab, 2, "flags"),
        ArgCheck::Arity {
            func: grab,
            count: 3,
        },
    ]
}

const FAST_612_ARGS: [ArgCheck; 5] = fast_args("gup_fast_fallback", "try_grab_folio_fast", "page");
const FAST_510_ARGS: [ArgCheck; 5] = fast_args(
    "internal_get_user_pages_fast",
    "try_grab_compound_head",
    "page",
);
const FAST_61_ARGS: [ArgCheck; 5] =
    fast_args("internal_get_user_pages_fast", "try_grab_folio", "page");

const FAST_612: &[AttachSpec] = &[
    fentry(prog::GUP_FAST_START_FE, "gup_fast_fallback"),
    fexit(prog::GUP_FAST_PRF_FX, "try_grab_folio_fast"),
];
const FAST_510: &[AttachSpec] = &[
    fentry(prog::GUP_FAST_START_FE, "internal_get_user_pages_fast"),
    fexit(prog::GUP_FAST_PRF_FX, "try_grab_compound_head"),
];
const FAST_61: &[AttachSpec] = &[
    fentry(prog::GUP_FAST_START_FE, "internal_get_user_pages_fast"),
    fexit(prog::GUP_FAST_PRF_FX, "try_grab_folio"),
];

/// The hooks, in the order symbols are claimed.
pub const HOOKS: &[HookSpec] = &[
    HookSpec {
        id: hook::WP_FAULT,
        required: true,
        depends_on: &[],
        lost: "write-protect and unshare fault decisions (reuse / copy): the core of cowtrace",
        alternatives: &[
            AltSpec {
                mechanism: Mechanism::Fentry,
                optional_fields: PAGE_OPTIONAL,
                args: &[
                    param("do_wp_page", 0, "vmf"),
                    ArgCheck::Arity {
                        func: "do_wp_page",
                        count: 1,
                    },
                ],
                ..alt(
                    &[
                        fentry(prog::WP_FENTRY, "do_wp_page"),
                        fexit(prog::WP_FEXIT, "do_wp_page"),
                    ],
                    WP_FIELDS,
                )
            },
            AltSpec {
                optional_fields: PAGE_OPTIONAL,
                args: &[param("do_wp_page", 0, "vmf")],
                ..alt(
                    &[
                        kp(prog::WP_ENTRY, "do_wp_page"),
                        kret(prog::WP_EXIT, "do_wp_page"),
                    ],
                    WP_FIELDS,
                )
            },
        ],
    },
    HookSpec {
        id: hook::THP_WP,
        required: false,
        depends_on: &[],
        lost: "THP whole-page decisions (write faults on PMD-mapped huge pages): on 5.10 \
               where a THP held by GUP in another process is reused whole and the holder \
               sees the write",
        alternatives: &[
            // 5.18+: do_huge_pmd_wp_page(vmf), orig_pmd in vmf.
            AltSpec {
                mechanism: Mechanism::Fentry,
                optional_fields: THP_OPTIONAL,
                args: &[
                    param("do_huge_pmd_wp_page", 0, "vmf"),
                    ArgCheck::Arity {
                        func: "do_huge_pmd_wp_page",
                        count: 1,
                    },
                ],
                ..alt(
                    &[
                        fentry(prog::THP_FENTRY, "do_huge_pmd_wp_page"),
                        fexit(prog::THP_FEXIT, "do_huge_pmd_wp_page"),
                    ],
                    THP_FIELDS_ORIG_PMD,
                )
            },
            // 5.10's do_huge_pmd_wp_page(vmf, orig_pmd) passes a pmd_t
            // struct by value, which trampolines before 6.1 refuse: kprobes.
            AltSpec {
                optional_fields: &[
                    "vmf_orig_pmd",
                    "folio_large_mapcount",
                    "folio_entire_mapcount",
                ],
                args: &[
                    param("do_huge_pmd_wp_page", 0, "vmf"),
                    ArgCheck::FieldOrParam {
                        field: "vmf_orig_pmd",
                        func: "do_huge_pmd_wp_page",
                        index: 1,
                        name: "orig_pmd",
                    },
                ],
                ..alt(
                    &[
                        kp(prog::THP_ENTRY, "do_huge_pmd_wp_page"),
                        kret(prog::THP_EXIT, "do_huge_pmd_wp_page"),
                    ],
                    THP_FIELDS,
                )
            },
        ],
    },
    HookSpec {
        id: hook::GUP_SLOW,
        required: true,
        depends_on: &[],
        lost: "slow-path GUP grabs (pins and gets that fault pages in or walk page tables)",
        alternatives: &[
            // 6.12+: every program a trampoline; the grab is one fexit.
            AltSpec {
                mechanism: Mechanism::Fentry,
                optional_fields: PAGE_OPTIONAL,
                ret_of: Some("try_grab_folio"),
                args: &[
                    SLOW_CONTEXT_ARGS[0],
                    SLOW_CONTEXT_ARGS[1],
                    SLOW_CONTEXT_ARGS[2],
                    SLOW_CONTEXT_ARGS[3],
                    ArgCheck::MaxArgs {
                        func: "__get_user_pages",
                        max: TRAMPOLINE_MAX_ARGS,
                    },
                    param("try_grab_folio", 0, "folio"),
                    param("try_grab_folio", 1, "refs"),
                    param("try_grab_folio", 2, "flags"),
                    ArgCheck::Arity {
                        func: "try_grab_folio",
                        count: 3,
                    },
                ],
                ..alt(
                    &[
                        fentry(prog::GUP_SLOW_START_FE, "__get_user_pages"),
                        fentry(prog::GUP_FOLLOW_PTE_FE, "follow_page_pte"),
                        fexit(prog::GUP_SLOW_PRF_FX, "try_grab_folio"),
                    ],
                    GUP_SLOW_FIELDS,
                )
            },
            // 5.10, 6.1: `__get_user_pages` has seven parameters, one too
            // many for their trampolines: a kprobe there, fentry/fexit for
            // the per-page programs.
            AltSpec {
                mechanism: Mechanism::Fentry,
                optional_fields: PAGE_OPTIONAL,
                ret_of: Some("try_grab_page"),
                args: &[
                    SLOW_CONTEXT_ARGS[0],
                    SLOW_CONTEXT_ARGS[1],
                    SLOW_CONTEXT_ARGS[2],
                    SLOW_CONTEXT_ARGS[3],
                    param("try_grab_page", 0, "page"),
                    param("try_grab_page", 1, "flags"),
                    ArgCheck::Arity {
                        func: "try_grab_page",
                        count: 2,
                    },
                ],
                ..alt(
                    &[
                        kp(prog::GUP_SLOW_START, "__get_user_pages"),
                        fentry(prog::GUP_FOLLOW_PTE_FE, "follow_page_pte"),
                        fexit(prog::GUP_SLOW_PF_FX, "try_grab_page"),
                    ],
                    GUP_SLOW_FIELDS,
                )
            },
            AltSpec {
                optional_fields: PAGE_OPTIONAL,
                ret_of: Some("try_grab_page"),
                args: &[
                    SLOW_CONTEXT_ARGS[0],
                    SLOW_CONTEXT_ARGS[1],
                    SLOW_CONTEXT_ARGS[2],
                    SLOW_CONTEXT_ARGS[3],
                    param("try_grab_page", 0, "page"),
                    param("try_grab_page", 1, "flags"),
                ],
                ..alt(
                    &[
                        kp(prog::GUP_SLOW_START, "__get_user_pages"),
                        kp(prog::GUP_FOLLOW_PTE, "follow_page_pte"),
                        kp(prog::GUP_SLOW_PF, "try_grab_page"),
                        kret(prog::GUP_SLOW_EXIT, "try_grab_page"),
                    ],
                    GUP_SLOW_FIELDS,
                )
            },
            AltSpec {
                optional_fields: PAGE_OPTIONAL,
                ret_of: Some("try_grab_folio"),
                args: &[
                    SLOW_CONTEXT_ARGS[0],
                    SLOW_CONTEXT_ARGS[1],
                    SLOW_CONTEXT_ARGS[2],
                    SLOW_CONTEXT_ARGS[3],
                    param("try_grab_folio", 0, "folio"),
                    param("try_grab_folio", 1, "refs"),
                    param("try_grab_folio", 2, "flags"),
                ],
                ..alt(
                    &[
                        kp(prog::GUP_SLOW_START, "__get_user_pages"),
                        kp(prog::GUP_FOLLOW_PTE, "follow_page_pte"),
                        kp(prog::GUP_SLOW_PRF, "try_grab_folio"),
                        kret(prog::GUP_SLOW_EXIT, "try_grab_folio"),
                    ],
                    GUP_SLOW_FIELDS,
                )
            },
        ],
    },
    HookSpec {
        id: hook::GUP_FAST,
        required: true,
        depends_on: &[],
        lost: "fast-path GUP grabs (pin_user_pages_fast & co: io_uring, O_DIRECT, vmsplice)",
        alternatives: &[
            fast_fentry(FAST_612, &FAST_612_ARGS, "try_grab_folio_fast"),
            fast_fentry(FAST_510, &FAST_510_ARGS, "try_grab_compound_head"),
            fast_fentry(FAST_61, &FAST_61_ARGS, "try_grab_folio"),
            AltSpec {
                optional_fields: PAGE_OPTIONAL,
                ret_of: Some("try_grab_folio_fast"),
                args: &[
                    param("gup_fast_fallback", 0, "start"),
                    param("try_grab_folio_fast", 0, "page"),
                    param("try_grab_folio_fast", 1, "refs"),
                    param("try_grab_folio_fast", 2, "flags"),
                ],
                ..alt(
                    &[
                        kp(prog::GUP_FAST_START, "gup_fast_fallback"),
                        kp(prog::GUP_FAST_PRF, "try_grab_folio_fast"),
                        kret(prog::GUP_FAST_EXIT, "try_grab_folio_fast"),
                    ],
                    PAGE_TASK_FIELDS,
                )
            },
            AltSpec {
                optional_fields: PAGE_OPTIONAL,
                ret_of: Some("try_grab_compound_head"),
                args: &[
                    param("internal_get_user_pages_fast", 0, "start"),
                    param("try_grab_compound_head", 0, "page"),
                    param("try_grab_compound_head", 1, "refs"),
                    param("try_grab_compound_head", 2, "flags"),
                ],
                ..alt(
                    &[
                        kp(prog::GUP_FAST_START, "internal_get_user_pages_fast"),
                        kp(prog::GUP_FAST_PRF, "try_grab_compound_head"),
                        kret(prog::GUP_FAST_EXIT, "try_grab_compound_head"),
                    ],
                    PAGE_TASK_FIELDS,
                )
            },
            // 6.1: try_grab_folio(page, refs, flags) is the fast-path grab
            // (the slow path uses try_grab_page there).
            AltSpec {
                optional_fields: PAGE_OPTIONAL,
                ret_of: Some("try_grab_folio"),
                args: &[
                    param("internal_get_user_pages_fast", 0, "start"),
                    param("try_grab_folio", 0, "page"),
                    param("try_grab_folio", 1, "refs"),
                    param("try_grab_folio", 2, "flags"),
                ],
                ..alt(
                    &[
                        kp(prog::GUP_FAST_START, "internal_get_user_pages_fast"),
                        kp(prog::GUP_FAST_PRF, "try_grab_folio"),
                        kret(prog::GUP_FAST_EXIT, "try_grab_folio"),
                    ],
                    PAGE_TASK_FIELDS,
                )
            },
        ],
    },
    HookSpec {
        id: hook::UNPIN,
        required: true,
        depends_on: &[],
        lost: "pin releases (unpin_user_page*): pins would look held forever",
        alternatives: &[
            AltSpec {
                mechanism: Mechanism::Fentry,
                args: &[
                    param("gup_put_folio", 0, "folio"),
                    param("gup_put_folio", 1, "refs"),
                    param("gup_put_folio", 2, "flags"),
                ],
                ..alt(&[fentry(prog::UNPIN_FE, "gup_put_folio")], PAGE_TASK_FIELDS)
            },
            AltSpec {
                mechanism: Mechanism::Fentry,
                args: &[
                    param("put_compound_head", 0, "page"),
                    param("put_compound_head", 1, "refs"),
                    param("put_compound_head", 2, "flags"),
                ],
                ..alt(
                    &[fentry(prog::UNPIN_FE, "put_compound_head")],
                    PAGE_TASK_FIELDS,
                )
            },
            AltSpec {
                args: &[
                    param("gup_put_folio", 0, "folio"),
                    param("gup_put_folio", 1, "refs"),
                    param("gup_put_folio", 2, "flags"),
                ],
                ..alt(&[kp(prog::UNPIN, "gup_put_folio")], PAGE_TASK_FIELDS)
            },
            AltSpec {
                args: &[
                    param("put_compound_head", 0, "page"),
                    param("put_compound_head", 1, "refs"),
                    param("put_compound_head", 2, "flags"),
                ],
                ..alt(&[kp(prog::UNPIN, "put_compound_head")], PAGE_TASK_FIELDS)
            },
        ],
    },
    HookSpec {
        id: hook::UNPIN_FOLIO,
        required: false,
        depends_on: &[],
        lost: "pin releases through unpin_user_folio (io_uring buffer teardown on 7.x, \
               where it inlines gup_put_folio): those pins would look held until a \
               later refcount shows otherwise",
        alternatives: &[AltSpec {
            args: &[
                param("unpin_user_folio", 0, "folio"),
                param("unpin_user_folio", 1, "npages"),
            ],
            ..alt(
                &[
                    kp(prog::UNPIN_FOLIO_ENTRY, "unpin_user_folio"),
                    kret(prog::UNPIN_FOLIO_EXIT, "unpin_user_folio"),
                ],
                PAGE_TASK_FIELDS,
            )
        }],
    },
    HookSpec {
        id: hook::FORK_VMA,
        required: true,
        depends_on: &[],
        lost: "fork page-table copies (which mappings a child shares with its parent)",
        alternatives: &[AltSpec {
            args: &[
                param("copy_page_range", 0, "dst_vma"),
                param("copy_page_range", 1, "src_vma"),
            ],
            ..alt(
                &[
                    kp(prog::FORK_VMA_ENTRY, "copy_page_range"),
                    kret(prog::FORK_VMA_EXIT, "copy_page_range"),
                ],
                FORK_VMA_FIELDS,
            )
        }],
    },
    HookSpec {
        id: hook::FORK_COPY,
        required: false,
        // fork_alloc only records inside the copy_page_range window.
        depends_on: &[hook::FORK_VMA],
        lost: "eager copies of pinned pages at fork",
        alternatives: &[
            AltSpec {
                args: &[param("vma_alloc_folio_noprof", 3, "addr")],
                ..alt(
                    &[kp(prog::FORK_ALLOC, "vma_alloc_folio_noprof")],
                    HEADER_FIELDS,
                )
            },
            AltSpec {
                args: &[param("vma_alloc_folio", 3, "addr")],
                ..alt(&[kp(prog::FORK_ALLOC, "vma_alloc_folio")], HEADER_FIELDS)
            },
            AltSpec {
                args: &[param("alloc_pages_vma", 3, "addr")],
                ..alt(&[kp(prog::FORK_ALLOC, "alloc_pages_vma")], HEADER_FIELDS)
            },
        ],
    },
    HookSpec {
        id: hook::TASK,
        required: false,
        depends_on: &[],
        lost: "child pids of fork events, process exits",
        alternatives: &[alt(
            &[
                rawtp(prog::TASK_FORK, "sched_process_fork"),
                rawtp(prog::TASK_EXIT, "sched_process_exit"),
            ],
            TASK_FIELDS,
        )],
    },
    HookSpec {
        id: hook::SWAP,
        required: false,
        // The do_wp_page entry probe marks a swap-in it was handed over from.
        depends_on: &[hook::WP_FAULT],
        lost: "swap-in decisions (a write fault on a swapped-out page reused in place by \
               do_swap_page, or handed over to do_wp_page): on 5.10 this is where a page \
               held by GUP in another process is reused and the holder sees the write",
        alternatives: &[AltSpec {
            optional_fields: SWAP_OPTIONAL,
            args: &[param("do_swap_page", 0, "vmf")],
            ..alt(
                &[
                    kp(prog::SWAP_ENTRY, "do_swap_page"),
                    kret(prog::SWAP_EXIT, "do_swap_page"),
                ],
                WP_FIELDS,
            )
        }],
    },
    HookSpec {
        id: hook::HUGETLB,
        required: false,
        depends_on: &[],
        lost: "hugetlb write-fault decisions (reuse or copy of a MAP_HUGETLB page)",
        alternatives: &[
            // hugetlb_wp(vmf)
            AltSpec {
                optional_fields: HUGETLB_OPTIONAL,
                args: &[param("hugetlb_wp", 0, "vmf")],
                ..alt(
                    &[
                        kp(prog::HUGETLB_ENTRY_VMF0, "hugetlb_wp"),
                        kret(prog::HUGETLB_EXIT, "hugetlb_wp"),
                    ],
                    HUGETLB_VMF_FIELDS,
                )
            },
            // 6.10+: hugetlb_wp(pagecache_folio, vmf)
            AltSpec {
                optional_fields: HUGETLB_OPTIONAL,
                args: &[param("hugetlb_wp", 1, "vmf")],
                ..alt(
                    &[
                        kp(prog::HUGETLB_ENTRY_VMF1, "hugetlb_wp"),
                        kret(prog::HUGETLB_EXIT, "hugetlb_wp"),
                    ],
                    HUGETLB_VMF_FIELDS,
                )
            },
            // 6.1: hugetlb_wp(mm, vma, address, ptep, flags, pagecache_page, ptl)
            AltSpec {
                optional_fields: HUGETLB_OPTIONAL,
                args: &[
                    param("hugetlb_wp", 1, "vma"),
                    param("hugetlb_wp", 2, "address"),
                    param("hugetlb_wp", 3, "ptep"),
                    param("hugetlb_wp", 4, "flags"),
                ],
                ..alt(
                    &[
                        kp(prog::HUGETLB_ENTRY_FLAGS, "hugetlb_wp"),
                        kret(prog::HUGETLB_EXIT, "hugetlb_wp"),
                    ],
                    HUGETLB_FIELDS,
                )
            },
            // 5.10: hugetlb_cow(mm, vma, address, ptep, pagecache_page, ptl)
            AltSpec {
                optional_fields: HUGETLB_OPTIONAL,
                args: &[
                    param("hugetlb_cow", 1, "vma"),
                    param("hugetlb_cow", 2, "address"),
                    param("hugetlb_cow", 3, "ptep"),
                ],
                ..alt(
                    &[
                        kp(prog::HUGETLB_ENTRY_COW, "hugetlb_cow"),
                        kret(prog::HUGETLB_EXIT, "hugetlb_cow"),
                    ],
                    HUGETLB_FIELDS,
                )
            },
        ],
    },
    HookSpec {
        id: hook::FORK_COPY_HUGETLB,
        required: false,
        // fork_huge_copy only records inside the copy_page_range window.
        depends_on: &[hook::FORK_VMA],
        lost: "eager copies of pinned hugetlb pages at fork (copy_hugetlb_page_range, \
               5.13+): fork-with-pins cannot fire for MAP_HUGETLB buffers",
        alternatives: &[
            // 6.10+: copy_user_large_folio(dst, src, addr_hint, vma)
            AltSpec {
                args: &[
                    param("copy_user_large_folio", 0, "dst"),
                    param("copy_user_large_folio", 2, "addr_hint"),
                ],
                ..alt(
                    &[kp(prog::FORK_HUGE_COPY, "copy_user_large_folio")],
                    FORK_HUGE_FIELDS,
                )
            },
            // copy_user_huge_page(dst, src, addr_hint, vma, pages_per_huge_page)
            AltSpec {
                args: &[
                    param("copy_user_huge_page", 0, "dst"),
                    param("copy_user_huge_page", 2, "addr_hint"),
                ],
                ..alt(
                    &[kp(prog::FORK_HUGE_COPY, "copy_user_huge_page")],
                    FORK_HUGE_FIELDS,
                )
            },
        ],
    },
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_program_name_is_used_and_hooks_are_unique() {
        let mut ids = HashSet::new();
        let mut programs = HashSet::new();
        for h in HOOKS {
            assert!(ids.insert(h.id), "duplicate hook {}", h.id);
            assert_ne!(hook::name(h.id), "unknown");
            // Dependencies are resolved first: they must come earlier.
            for d in h.depends_on {
                assert!(
                    ids.contains(d) && *d != h.id,
                    "hook {} depends on later {d}",
                    h.id
                );
            }
            for a in h.alternatives {
                programs.extend(a.attachments.iter().map(|x| x.program));
            }
        }
        for p in [
            prog::WP_ENTRY,
            prog::WP_EXIT,
            prog::THP_ENTRY,
            prog::THP_EXIT,
            prog::SWAP_ENTRY,
            prog::SWAP_EXIT,
            prog::HUGETLB_ENTRY_COW,
            prog::HUGETLB_ENTRY_FLAGS,
            prog::HUGETLB_ENTRY_VMF1,
            prog::HUGETLB_ENTRY_VMF0,
            prog::HUGETLB_EXIT,
            prog::GUP_SLOW_START,
            prog::GUP_FOLLOW_PTE,
            prog::GUP_SLOW_PF,
            prog::GUP_SLOW_PRF,
            prog::GUP_SLOW_EXIT,
            prog::GUP_FAST_START,
            prog::GUP_FAST_PRF,
            prog::GUP_FAST_EXIT,
            prog::UNPIN,
            prog::FORK_VMA_ENTRY,
            prog::FORK_VMA_EXIT,
            prog::FORK_ALLOC,
            prog::FORK_HUGE_COPY,
            prog::TASK_FORK,
            prog::TASK_EXIT,
        ] {
            assert!(programs.contains(p), "{p} never attached");
        }
    }
}
