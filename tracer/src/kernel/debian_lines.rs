//! The four supported Debian lines, from their real BTF: layout, constants
//! and attach plan against the values `/work/shared/docs/kernel-facts.md`
//! measured in the VMs.
//!
//! Needs the `.BTF` sections of the Debian kernels: set
//! `COWTRACE_TEST_BTF_DIR` to a directory holding `5.10.btf`, `6.1.btf`,
//! `6.12.btf` and `newest.btf` (vmlinuz -> decompress -> ELF `.BTF`, e.g.
//! `objcopy -O binary --only-section=.BTF vmlinux 6.1.btf`). Without it the
//! test prints why it skipped.

use std::path::PathBuf;

use tracer_common::hook;

use super::btf::KernelBtf;
use super::check::check;
use super::info::{KernelInfo, Privileges};
use super::kallsyms::{FilterFunctions, Kallsyms};
use super::layout::{CompoundEncoding, PROBES_DECODE};
use crate::decode::RetKind;

/// Attachable functions per line: the measured lists of
/// /work/shared/kernels/symbols-*.txt, plus the allocators kernel-facts.md
/// names for the line.
const FUNCS_510: &[&str] = &[
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
];
const FUNCS_61: &[&str] = &[
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
];
const FUNCS_612: &[&str] = &[
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

struct Expect {
    line: &'static str,
    release: &'static str,
    funcs: &'static [&'static str],
    vm_fault_size: u32,
    pg_anon_exclusive: Option<u32>,
    foll_pin: u32,
    fault_flag_unshare: Option<u32>,
    orig_pmd_in_vmf: bool,
    large_mapcount: bool,
    /// (hook, symbols of the chosen alternative, return convention)
    hooks: &'static [(u16, &'static [&'static str], Option<RetKind>)],
}

const LINES: &[Expect] = &[
    Expect {
        line: "5.10",
        release: "5.10.0-46-amd64",
        funcs: FUNCS_510,
        vm_fault_size: 96,
        pg_anon_exclusive: None,
        foll_pin: 0x40000,
        fault_flag_unshare: None,
        orig_pmd_in_vmf: false,
        large_mapcount: false,
        hooks: &[
            (
                hook::GUP_SLOW,
                &["__get_user_pages", "follow_page_pte", "try_grab_page"],
                Some(RetKind::BoolTrue),
            ),
            (
                hook::GUP_FAST,
                &["internal_get_user_pages_fast", "try_grab_compound_head"],
                Some(RetKind::NonNull),
            ),
            (hook::UNPIN, &["put_compound_head"], None),
            (hook::FORK_COPY, &["alloc_pages_vma"], None),
        ],
    },
    Expect {
        line: "6.1",
        release: "6.1.0-56-amd64",
        funcs: FUNCS_61,
        vm_fault_size: 112,
        pg_anon_exclusive: Some(17),
        foll_pin: 0x40000,
        fault_flag_unshare: Some(1024),
        orig_pmd_in_vmf: true,
        large_mapcount: false,
        hooks: &[
            // Debian's 6.1 declares `bool try_grab_page()` (BTF says so).
            (
                hook::GUP_SLOW,
                &["__get_user_pages", "follow_page_pte", "try_grab_page"],
                Some(RetKind::BoolTrue),
            ),
            (
                hook::GUP_FAST,
                &["internal_get_user_pages_fast", "try_grab_folio"],
                Some(RetKind::NonNull),
            ),
            (hook::UNPIN, &["gup_put_folio"], None),
            (hook::FORK_COPY, &["vma_alloc_folio"], None),
        ],
    },
    Expect {
        line: "6.12",
        release: "6.12.117+deb12-amd64",
        funcs: FUNCS_612,
        vm_fault_size: 112,
        pg_anon_exclusive: Some(11),
        foll_pin: 0x80000,
        fault_flag_unshare: Some(1024),
        orig_pmd_in_vmf: true,
        large_mapcount: true,
        hooks: &[
            (
                hook::GUP_SLOW,
                &["__get_user_pages", "follow_page_pte", "try_grab_folio"],
                Some(RetKind::ZeroOk),
            ),
            (
                hook::GUP_FAST,
                &["gup_fast_fallback", "try_grab_folio_fast"],
                Some(RetKind::NonNull),
            ),
            (hook::UNPIN, &["gup_put_folio"], None),
            (hook::FORK_COPY, &["vma_alloc_folio_noprof"], None),
        ],
    },
    Expect {
        line: "newest",
        release: "7.2.13+deb14-amd64",
        funcs: FUNCS_612,
        vm_fault_size: 112,
        pg_anon_exclusive: Some(11),
        foll_pin: 0x80000,
        fault_flag_unshare: Some(1024),
        orig_pmd_in_vmf: true,
        large_mapcount: true,
        hooks: &[
            (
                hook::GUP_SLOW,
                &["__get_user_pages", "follow_page_pte", "try_grab_folio"],
                Some(RetKind::ZeroOk),
            ),
            (
                hook::GUP_FAST,
                &["gup_fast_fallback", "try_grab_folio_fast"],
                Some(RetKind::NonNull),
            ),
            (hook::UNPIN, &["gup_put_folio"], None),
            (hook::FORK_COPY, &["vma_alloc_folio_noprof"], None),
        ],
    },
];

fn info_for(e: &Expect, btf: KernelBtf) -> KernelInfo {
    let mut ksyms = String::from("ffffffff82a00000 D vmemmap_base\n");
    for (i, f) in e.funcs.iter().enumerate() {
        ksyms.push_str(&format!(
            "{:016x} t {f}\n",
            0xffff_ffff_8100_0000u64 + i as u64 * 0x100
        ));
    }
    let mut info = KernelInfo::empty(e.release);
    info.kallsyms = Kallsyms::parse(&ksyms).ok();
    info.filter_functions = Some(FilterFunctions::parse(
        &e.funcs.join("\n"),
        PathBuf::from("fixture"),
    ));
    info.btf = Some(Box::new(btf));
    info.privileges = Privileges {
        euid: 0,
        cap_eff: Some(u64::MAX),
    };
    info
}

#[test]
fn debian_lines_from_their_btf() {
    let Some(dir) = std::env::var_os("COWTRACE_TEST_BTF_DIR") else {
        println!("skipped: COWTRACE_TEST_BTF_DIR not set (see kernel/debian_lines.rs)");
        return;
    };
    let dir = PathBuf::from(dir);
    for e in LINES {
        let path = dir.join(format!("{}.btf", e.line));
        let Ok(bytes) = std::fs::read(&path) else {
            println!("skipped {}: {} unreadable", e.line, path.display());
            continue;
        };
        let btf = KernelBtf::from_bytes(&bytes).expect("Debian BTF parses");
        let info = info_for(e, btf);
        let types = info.types().expect("BTF set");
        let line = e.line;
        assert_eq!(types.struct_size("page").ok(), Some(64), "{line}");
        assert_eq!(
            types.struct_size("vm_fault").ok(),
            Some(e.vm_fault_size),
            "{line}"
        );

        let (c, sources) = info.resolve_consts().expect("constants resolve");
        assert_eq!(c.pg_anon_exclusive, e.pg_anon_exclusive, "{line}");
        assert_eq!(c.foll_pin, e.foll_pin, "{line}");
        assert_eq!(c.foll_write, 1, "{line}");
        assert_eq!(c.fault_flag_write, 1, "{line}");
        assert_eq!(c.fault_flag_unshare, e.fault_flag_unshare, "{line}");
        assert_eq!((c.vm_write, c.vm_shared), (0x2, 0x8), "{line}");
        assert_eq!(c.vm_fault_retry, 0x400, "{line}");
        let foll_from_table = sources
            .iter()
            .any(|s| s.name == "FOLL_PIN" && s.source.starts_with("macro table"));
        assert_eq!(
            foll_from_table,
            e.foll_pin == 0x40000,
            "{line}: FOLL_* macros only before 6.2"
        );

        let r = check(&info);
        let layout = &r.layout;
        assert_eq!(
            layout.is_resolved("vmf_orig_pmd"),
            e.orig_pmd_in_vmf,
            "{line}"
        );
        assert_eq!(
            layout.is_resolved("folio_large_mapcount"),
            e.large_mapcount,
            "{line}"
        );
        let mask = layout.compound_encoding == Some(CompoundEncoding::Mask);
        // 7.x keeps a mask in page->compound_info (HVO + 64-byte pages).
        assert_eq!(mask, e.line == "newest", "{line}");
        let pages_readable = !mask || PROBES_DECODE.contains(&CompoundEncoding::Mask);
        assert_eq!(
            r.plan.missing_required().is_empty(),
            pages_readable,
            "{line}: {}",
            r.render_text()
        );
        if !pages_readable {
            println!("{line}: page->compound_info holds a mask; page hooks wait for probe support");
            continue;
        }
        for (id, symbols, ret) in e.hooks {
            let chosen = r.plan.hook(*id).and_then(|h| h.chosen.as_ref());
            let got = chosen.map(|c| c.symbols()).unwrap_or_default();
            assert_eq!(&got, symbols, "{line}: hook {}", hook::name(*id));
            assert_eq!(
                r.plan.ret_kind(*id),
                *ret,
                "{line}: hook {}",
                hook::name(*id)
            );
        }
        let copy = r
            .plan
            .hook(hook::FORK_COPY)
            .and_then(|h| h.chosen.as_ref())
            .expect("fork_copy");
        assert!(
            copy.verified
                .iter()
                .any(|v| v.ends_with("argument 4 is `addr`")),
            "{line}"
        );
        println!("{line}: layout, constants and plan as measured");
    }
}
