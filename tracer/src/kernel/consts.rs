//! Fills [`KernelConsts`]: everything BTF has comes from BTF; the few values
//! that exist only as C macros come from [`MACRO_TABLE`], keyed by kernel
//! version range and citing the source each was read from; x86_64 page-table
//! bits and ABI flags are fixed and cited in [`ARCH_CONSTS`].

use serde::Serialize;

use super::btf::{BtfError, Enumerator, TypeSource};
use super::version::KernelVersion;
use crate::decode::KernelConsts;

/// A constant that exists only as a `#define` on some kernels.
#[derive(Clone, Copy, Debug)]
pub struct MacroConst {
    pub name: &'static str,
    pub value: u64,
    /// First kernel version the value holds for (inclusive).
    pub from: KernelVersion,
    /// First kernel version it no longer holds for (exclusive).
    pub until: KernelVersion,
    /// File, version and where it was read.
    pub source: &'static str,
}

const V5_10: KernelVersion = KernelVersion::new(5, 10, 0);
const V5_11: KernelVersion = KernelVersion::new(5, 11, 0);
const V6_2: KernelVersion = KernelVersion::new(6, 2, 0);

/// Read with the project's search tools: repository Rtoax/linux-5.10.13,
/// path include/linux/mm.h (the v5.10.13 header with added comments):
/// `#define FOLL_WRITE 0x01`, `FOLL_GET 0x04`, `FOLL_FORCE 0x10`,
/// `FOLL_LONGTERM 0x10000`, `FOLL_PIN 0x40000`, `FAULT_FLAG_WRITE 0x01`.
const SRC_MM_510: &str = "include/linux/mm.h v5.10.13";
/// The v6.1 header itself was NOT found with the search tools. The values
/// are identical in v5.10.13 and in the pre-image of "mm: Move FOLL_* defs
/// to mm_types.h" (linux-fsdevel, 2022-12-21, mm.h blob f3f196e4d66d, 6.2
/// merge window), so 5.11..6.1 have them too. The 6.2 merge window
/// renumbered FOLL_* (newer values come from BTF, an anonymous enum).
/// FAULT_FLAG_WRITE is `enum fault_flag` in 6.1's BTF (measured), so its
/// row here only serves kernels between 5.10 and that enum.
/// To be proven by the VM tests on Debian 6.1.
const SRC_MM_61: &str = "include/linux/mm.h: v5.10.13 values, unchanged in the 6.2-merge-window pre-image (v6.1 text not read)";

const fn row(
    name: &'static str,
    value: u64,
    from: KernelVersion,
    until: KernelVersion,
    source: &'static str,
) -> MacroConst {
    MacroConst {
        name,
        value,
        from,
        until,
        source,
    }
}

/// Macro-only values, consulted only when BTF lacks the enumerator
/// (FOLL_* became an anonymous enum and FAULT_FLAG_* `enum fault_flag`).
#[rustfmt::skip]
pub const MACRO_TABLE: &[MacroConst] = &[
    row("FOLL_WRITE",       0x01,    V5_10, V5_11, SRC_MM_510),
    row("FOLL_GET",         0x04,    V5_10, V5_11, SRC_MM_510),
    row("FOLL_FORCE",       0x10,    V5_10, V5_11, SRC_MM_510),
    row("FOLL_LONGTERM",    0x10000, V5_10, V5_11, SRC_MM_510),
    row("FOLL_PIN",         0x40000, V5_10, V5_11, SRC_MM_510),
    row("FAULT_FLAG_WRITE", 0x01,    V5_10, V5_11, SRC_MM_510),
    row("FOLL_WRITE",       0x01,    V5_11, V6_2,  SRC_MM_61),
    row("FOLL_GET",         0x04,    V5_11, V6_2,  SRC_MM_61),
    row("FOLL_FORCE",       0x10,    V5_11, V6_2,  SRC_MM_61),
    row("FOLL_LONGTERM",    0x10000, V5_11, V6_2,  SRC_MM_61),
    row("FOLL_PIN",         0x40000, V5_11, V6_2,  SRC_MM_61),
    row("FAULT_FLAG_WRITE", 0x01,    V5_11, V6_2,  SRC_MM_61),
];

/// An x86_64 or kernel-ABI constant stable across every supported line.
#[derive(Clone, Copy, Debug)]
pub struct ArchConst {
    pub name: &'static str,
    pub value: u64,
    pub source: &'static str,
}

const PGTABLE_TYPES: &str = "arch/x86/include/asm/pgtable_types.h";

const fn arch(name: &'static str, value: u64, source: &'static str) -> ArchConst {
    ArchConst {
        name,
        value,
        source,
    }
}

/// Fixed values, each with its definition site. VM_WRITE / VM_SHARED come
/// from BTF instead when the kernel has them as bit numbers (7.x
/// `VMA_*_BIT` enumerators).
#[rustfmt::skip]
pub const ARCH_CONSTS: &[ArchConst] = &[
    arch("_PAGE_PRESENT",      1 << 0,  PGTABLE_TYPES),
    arch("_PAGE_RW",           1 << 1,  PGTABLE_TYPES),
    arch("_PAGE_PSE",          1 << 7,  PGTABLE_TYPES),
    arch("_PAGE_PAT_LARGE",    1 << 12, PGTABLE_TYPES),
    arch("PTE_PFN_MASK",       0x000f_ffff_ffff_f000,
         "arch/x86/include/asm/pgtable_types.h (__PHYSICAL_MASK_SHIFT 52, PAGE_SHIFT 12)"),
    arch("VM_WRITE",           0x2, "include/linux/mm.h"),
    arch("VM_SHARED",          0x8, "include/linux/mm.h"),
    arch("PAGE_MAPPING_ANON",  0x1, "include/linux/page-flags.h"),
    arch("PAGE_MAPPING_KSM",   0x3,
         "include/linux/page-flags.h (PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE)"),
    arch("PAGE_MAPPING_FLAGS", 0x3, "include/linux/page-flags.h"),
];

/// The members of VM_FAULT_ERROR (`include/linux/mm_types.h`): a fault that
/// returns any of them took no COW decision.
pub const VM_FAULT_ERROR_MEMBERS: [&str; 6] = [
    "VM_FAULT_OOM",
    "VM_FAULT_SIGBUS",
    "VM_FAULT_SIGSEGV",
    "VM_FAULT_HWPOISON",
    "VM_FAULT_HWPOISON_LARGE",
    "VM_FAULT_FALLBACK",
];

#[derive(Debug, thiserror::Error)]
pub enum ConstsError {
    #[error(
        "{name} is neither in this kernel's BTF nor in the macro table for {version} \
         (the table covers 5.10 <= version < 6.2; newer kernels must have it in BTF)"
    )]
    Unknown {
        name: &'static str,
        version: KernelVersion,
    },
    #[error("{name} = {value:#x} does not fit in 32 bits")]
    TooWide { name: &'static str, value: u64 },
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("kernel constants need BTF: {0}")]
    NoBtf(String),
    #[error("kernel release `{0}` does not parse as a version")]
    BadRelease(String),
}

/// Where one constant came from, for `cowtrace check`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConstSource {
    pub name: &'static str,
    pub value: u64,
    pub source: String,
}

/// Enumerators of the enums we read, fetched once.
struct Enums {
    pageflags: Vec<Enumerator>,
    fault_flag: Vec<Enumerator>,
    anon: Vec<Enumerator>,
    vm_fault_reason: Vec<Enumerator>,
}

fn find(list: &[Enumerator], name: &str) -> Option<u64> {
    list.iter().find(|e| e.name == name).map(|e| e.value)
}

struct Resolver<'a> {
    enums: &'a Enums,
    version: KernelVersion,
    sources: Vec<ConstSource>,
}

impl Resolver<'_> {
    fn note(&mut self, name: &'static str, value: u64, source: String) -> u64 {
        if self.sources.iter().any(|s| s.name == name) {
            return value;
        }
        self.sources.push(ConstSource {
            name,
            value,
            source,
        });
        value
    }

    /// A `pageflags` bit, absent on kernels that lack it.
    fn pageflag(&mut self, name: &'static str) -> Option<u32> {
        let v = find(&self.enums.pageflags, name)?;
        let bit = u32::try_from(v).ok()?;
        self.note(name, v, "BTF enum pageflags".into());
        Some(bit)
    }

    /// A value from BTF (`list`, described by `what`), else the macro table.
    fn btf_or_macro(
        &mut self,
        name: &'static str,
        list: Which,
        what: &str,
    ) -> Result<u32, ConstsError> {
        let v = match find(self.list(list), name) {
            Some(v) => self.note(name, v, format!("BTF {what}")),
            None => {
                let m = macro_value(name, self.version).ok_or(ConstsError::Unknown {
                    name,
                    version: self.version,
                })?;
                self.note(name, m.value, format!("macro table: {}", m.source))
            }
        };
        u32::try_from(v).map_err(|_| ConstsError::TooWide { name, value: v })
    }

    fn list(&self, which: Which) -> &[Enumerator] {
        match which {
            Which::FaultFlag => &self.enums.fault_flag,
            Which::Anon => &self.enums.anon,
        }
    }

    fn vm_fault(&mut self, name: &'static str) -> Result<u32, ConstsError> {
        let v = find(&self.enums.vm_fault_reason, name).ok_or(ConstsError::Unknown {
            name,
            version: self.version,
        })?;
        self.note(name, v, "BTF enum vm_fault_reason".into());
        u32::try_from(v).map_err(|_| ConstsError::TooWide { name, value: v })
    }

    /// A `vm_flags` bit: from BTF where the kernel numbers them
    /// (`VMA_WRITE_BIT`, 7.x), else the fixed value.
    fn vm_flag(&mut self, name: &'static str, bit_name: &str) -> u64 {
        match find(&self.enums.anon, bit_name).filter(|&b| b < 64) {
            Some(bit) => self.note(name, 1 << bit, format!("BTF anonymous enum ({bit_name})")),
            None => self.arch(name),
        }
    }

    fn arch(&mut self, name: &'static str) -> u64 {
        match ARCH_CONSTS.iter().find(|c| c.name == name) {
            Some(c) => self.note(name, c.value, format!("x86_64/ABI: {}", c.source)),
            // Unreachable by construction (names are this file's literals);
            // a zero mask makes decode report "unknown" rather than lie.
            None => 0,
        }
    }
}

#[derive(Clone, Copy)]
enum Which {
    FaultFlag,
    Anon,
}

/// The macro-table entry for `name` on `version`.
pub fn macro_value(name: &str, version: KernelVersion) -> Option<&'static MacroConst> {
    MACRO_TABLE
        .iter()
        .find(|m| m.name == name && m.from <= version && version < m.until)
}

/// [`KernelConsts`] for the running kernel, with the source of each value.
pub fn resolve_consts(
    types: &dyn TypeSource,
    version: KernelVersion,
) -> Result<(KernelConsts, Vec<ConstSource>), ConstsError> {
    let enums = Enums {
        pageflags: types.enumerators("pageflags")?,
        fault_flag: types.enumerators("fault_flag")?,
        anon: types.enumerators("")?,
        vm_fault_reason: types.enumerators("vm_fault_reason")?,
    };
    let mut r = Resolver {
        enums: &enums,
        version,
        sources: Vec::new(),
    };

    // FOLL_* live in an anonymous enum (6.2+ in BTF) or in the macro table.
    let foll_write = r.btf_or_macro("FOLL_WRITE", Which::Anon, "anonymous enum (FOLL_*)")?;
    let foll_get = r.btf_or_macro("FOLL_GET", Which::Anon, "anonymous enum (FOLL_*)")?;
    let foll_pin = r.btf_or_macro("FOLL_PIN", Which::Anon, "anonymous enum (FOLL_*)")?;
    let foll_longterm = r.btf_or_macro("FOLL_LONGTERM", Which::Anon, "anonymous enum (FOLL_*)")?;
    let foll_force = r.btf_or_macro("FOLL_FORCE", Which::Anon, "anonymous enum (FOLL_*)")?;
    let fault_flag_write =
        r.btf_or_macro("FAULT_FLAG_WRITE", Which::FaultFlag, "enum fault_flag")?;
    // 5.19+ only, and only ever an enumerator: absent means "no unshare".
    let fault_flag_unshare = match find(&enums.fault_flag, "FAULT_FLAG_UNSHARE") {
        Some(v) => Some(
            u32::try_from(r.note("FAULT_FLAG_UNSHARE", v, "BTF enum fault_flag".into())).map_err(
                |_| ConstsError::TooWide {
                    name: "FAULT_FLAG_UNSHARE",
                    value: v,
                },
            )?,
        ),
        None => None,
    };

    let pg_head = r.pageflag("PG_head").ok_or(ConstsError::Unknown {
        name: "PG_head",
        version,
    })?;
    // PG_swapcache and PG_anon_exclusive are aliases (PG_owner_priv_1,
    // PG_mappedtodisk or PG_owner_2 depending on the version); BTF lists
    // aliases as enumerators of their own, so the name lookup finds them.
    let pg_anon_exclusive = r.pageflag("PG_anon_exclusive");
    let pg_swapcache = r.pageflag("PG_swapcache");
    let pg_reserved = r.pageflag("PG_reserved");
    let pg_swapbacked = r.pageflag("PG_swapbacked");

    let mut vm_fault_error_mask = 0u32;
    for name in VM_FAULT_ERROR_MEMBERS {
        vm_fault_error_mask |= r.vm_fault(name)?;
    }
    let vm_fault_retry = r.vm_fault("VM_FAULT_RETRY")?;
    let vm_fault_fallback = r.vm_fault("VM_FAULT_FALLBACK")?;

    let consts = KernelConsts {
        foll_write,
        foll_get,
        foll_pin,
        foll_longterm,
        foll_force,
        fault_flag_write,
        fault_flag_unshare,
        pg_anon_exclusive,
        pg_swapcache,
        pg_head,
        pg_reserved,
        pg_swapbacked,
        mapping_anon: r.arch("PAGE_MAPPING_ANON"),
        mapping_ksm: r.arch("PAGE_MAPPING_KSM"),
        mapping_flags_mask: r.arch("PAGE_MAPPING_FLAGS"),
        vm_shared: r.vm_flag("VM_SHARED", "VMA_SHARED_BIT"),
        vm_write: r.vm_flag("VM_WRITE", "VMA_WRITE_BIT"),
        pte_present: r.arch("_PAGE_PRESENT"),
        pte_write: r.arch("_PAGE_RW"),
        pte_pfn_mask: r.arch("PTE_PFN_MASK"),
        pmd_pse: r.arch("_PAGE_PSE"),
        pmd_pat_large: r.arch("_PAGE_PAT_LARGE"),
        vm_fault_error_mask,
        vm_fault_retry,
        vm_fault_fallback,
    };
    Ok((consts, r.sources))
}

/// [`KernelConsts`] for the running kernel.
pub fn kernel_consts(
    types: &dyn TypeSource,
    version: KernelVersion,
) -> Result<KernelConsts, ConstsError> {
    resolve_consts(types, version).map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::testutil::FakeTypes;

    fn vm_fault_reason(t: FakeTypes) -> FakeTypes {
        [
            ("VM_FAULT_OOM", 1),
            ("VM_FAULT_SIGBUS", 2),
            ("VM_FAULT_MAJOR", 4),
            ("VM_FAULT_HWPOISON", 16),
            ("VM_FAULT_HWPOISON_LARGE", 32),
            ("VM_FAULT_SIGSEGV", 64),
            ("VM_FAULT_NOPAGE", 256),
            ("VM_FAULT_RETRY", 1024),
            ("VM_FAULT_FALLBACK", 2048),
        ]
        .into_iter()
        .fold(t, |t, (n, v)| t.enumerator("vm_fault_reason", n, v))
    }

    /// 5.10: macros for FOLL_* and fault flags, no PG_anon_exclusive.
    fn v510() -> FakeTypes {
        let t = FakeTypes::default()
            .enumerator("pageflags", "PG_owner_priv_1", 9)
            .enumerator("pageflags", "PG_head", 16)
            .enumerator("pageflags", "PG_swapcache", 9)
            .enumerator("pageflags", "PG_reserved", 11)
            .enumerator("pageflags", "PG_swapbacked", 20)
            .enumerator("", "SOMETHING_ELSE", 3);
        vm_fault_reason(t)
    }

    /// 6.12-like: everything in BTF, FOLL_* renumbered.
    fn v612() -> FakeTypes {
        let mut t = v510()
            .enumerator("pageflags", "PG_anon_exclusive", 11)
            .enumerator("fault_flag", "FAULT_FLAG_WRITE", 1)
            .enumerator("fault_flag", "FAULT_FLAG_UNSHARE", 1024);
        for (n, v) in [
            ("FOLL_WRITE", 1),
            ("FOLL_GET", 2),
            ("FOLL_FORCE", 8),
            ("FOLL_LONGTERM", 256),
            ("FOLL_PIN", 1 << 19),
        ] {
            t = t.enumerator("", n, v);
        }
        t
    }

    #[test]
    fn v510_uses_the_cited_macro_table() {
        let (c, src) = resolve_consts(&v510(), KernelVersion::new(5, 10, 0)).unwrap();
        assert_eq!((c.foll_write, c.foll_get, c.foll_force), (0x1, 0x4, 0x10));
        assert_eq!((c.foll_longterm, c.foll_pin), (0x10000, 0x40000));
        assert_eq!(c.fault_flag_write, 1);
        assert_eq!(c.fault_flag_unshare, None);
        assert_eq!(c.pg_anon_exclusive, None);
        assert_eq!(c.pg_swapcache, Some(9));
        assert_eq!(c.pg_head, 16);
        assert_eq!(c.vm_fault_error_mask, 1 | 2 | 16 | 32 | 64 | 2048);
        assert_eq!((c.vm_fault_retry, c.vm_fault_fallback), (1024, 2048));
        let pin = src.iter().find(|s| s.name == "FOLL_PIN").unwrap();
        assert!(
            pin.source
                .starts_with("macro table: include/linux/mm.h v5.10"),
            "{}",
            pin.source
        );
    }

    #[test]
    fn btf_wins_over_the_table_and_renumbering_is_respected() {
        let (c, src) = resolve_consts(&v612(), KernelVersion::new(6, 12, 111)).unwrap();
        assert_eq!((c.foll_get, c.foll_force, c.foll_longterm), (2, 8, 256));
        assert_eq!(c.foll_pin, 1 << 19);
        assert_eq!(c.fault_flag_unshare, Some(1024));
        assert_eq!(c.pg_anon_exclusive, Some(11));
        assert!(src.iter().all(|s| !s.source.starts_with("macro table")));
    }

    #[test]
    fn table_does_not_cover_renumbered_macro_kernels() {
        // 6.3 without FOLL_* in BTF: the 5.10 values would be wrong there.
        let err = resolve_consts(&v510(), KernelVersion::new(6, 3, 0)).unwrap_err();
        assert!(
            matches!(
                err,
                ConstsError::Unknown {
                    name: "FOLL_WRITE",
                    ..
                }
            ),
            "{err}"
        );
        assert!(macro_value("FOLL_PIN", KernelVersion::new(6, 1, 158)).is_some());
        assert!(macro_value("FOLL_PIN", KernelVersion::new(6, 2, 0)).is_none());
        assert!(macro_value("FOLL_PIN", KernelVersion::new(5, 4, 0)).is_none());
    }

    #[test]
    fn vm_flag_bits_come_from_btf_when_numbered() {
        let t = v612()
            .enumerator("", "VMA_WRITE_BIT", 1)
            .enumerator("", "VMA_SHARED_BIT", 3);
        let (c, src) = resolve_consts(&t, KernelVersion::new(7, 2, 13)).unwrap();
        assert_eq!((c.vm_write, c.vm_shared), (2, 8));
        let w = src.iter().find(|s| s.name == "VM_WRITE").unwrap();
        assert_eq!(w.source, "BTF anonymous enum (VMA_WRITE_BIT)");
        // A kernel numbering them differently is followed, not overridden.
        let odd = v612().enumerator("", "VMA_WRITE_BIT", 5);
        let (c, _) = resolve_consts(&odd, KernelVersion::new(7, 2, 13)).unwrap();
        assert_eq!(c.vm_write, 1 << 5);
    }

    #[test]
    fn missing_pg_head_is_an_error() {
        let t = vm_fault_reason(FakeTypes::default());
        let err = resolve_consts(&t, KernelVersion::new(5, 10, 0)).unwrap_err();
        assert!(
            matches!(
                err,
                ConstsError::Unknown {
                    name: "PG_head",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn arch_constants_are_the_x86_64_values() {
        let (c, _) = resolve_consts(&v510(), KernelVersion::new(5, 10, 0)).unwrap();
        assert_eq!(
            (c.pte_present, c.pte_write, c.pmd_pse, c.pmd_pat_large),
            (1, 2, 0x80, 0x1000)
        );
        assert_eq!(c.pte_pfn_mask, 0x000f_ffff_ffff_f000);
        assert_eq!((c.vm_write, c.vm_shared), (2, 8));
        assert_eq!(
            (c.mapping_anon, c.mapping_ksm, c.mapping_flags_mask),
            (1, 3, 3)
        );
    }

    #[test]
    fn host_btf_gives_every_constant_from_btf() {
        let path = std::path::Path::new(crate::kernel::btf::VMLINUX_BTF);
        if !path.exists() {
            println!("skipped: {} absent", path.display());
            return;
        }
        let btf = crate::kernel::btf::KernelBtf::load(path).expect("host BTF readable");
        // The version must not matter when BTF has everything.
        let (c, src) = resolve_consts(&btf, KernelVersion::new(99, 0, 0)).unwrap();
        assert_eq!(c.foll_write, 1);
        assert!(c.foll_pin.is_power_of_two() && c.foll_pin != c.foll_get);
        assert_eq!(c.fault_flag_write, 1);
        assert!(c.fault_flag_unshare.is_some());
        assert!(c.pg_anon_exclusive.is_some());
        assert!(src.iter().all(|s| !s.source.starts_with("macro table")));
    }
}
