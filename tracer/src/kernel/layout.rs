//! Fills [`tracer_common::Layout`] from BTF and kallsyms, and records where
//! every value came from (for `cowtrace check` and the trace header).
//!
//! The member names tried per field are the only kernel knowledge here; a
//! field the running kernel lacks stays [`ABSENT`] and the attach plan keeps
//! the probes that need it detached.

use serde::Serialize;
use tracer_common::Layout;
use tracer_common::layout::ABSENT;

use super::btf::TypeSource;

/// One offset the probes read: a [`Layout`] field and the struct members
/// that may hold it, tried in order.
#[derive(Clone, Copy, Debug)]
pub struct FieldSpec {
    /// The [`Layout`] field name.
    pub field: &'static str,
    pub strukt: &'static str,
    /// Member names tried in order (a rename across versions adds one).
    pub members: &'static [&'static str],
    /// `Some(why)`: the kernel may legitimately lack it.
    pub optional: Option<&'static str>,
}

const fn req(
    field: &'static str,
    strukt: &'static str,
    members: &'static [&'static str],
) -> FieldSpec {
    FieldSpec {
        field,
        strukt,
        members,
        optional: None,
    }
}

/// Every struct member offset of [`Layout`].
pub const FIELDS: &[FieldSpec] = &[
    req("page_flags", "page", &["flags"]),
    req("page_refcount", "page", &["_refcount"]),
    req("page_mapcount", "page", &["_mapcount"]),
    req("page_mapping", "page", &["mapping"]),
    // 7.x renamed it `compound_info` and may store a mask in it: see
    // [`CompoundEncoding`].
    req(
        "page_compound_head",
        "page",
        &["compound_head", "compound_info"],
    ),
    FieldSpec {
        field: "folio_large_mapcount",
        strukt: "folio",
        members: &["_large_mapcount"],
        optional: Some(
            "large folios keep no folio-wide mapcount here (before 6.x `_large_mapcount`)",
        ),
    },
    req("vmf_vma", "vm_fault", &["vma"]),
    req("vmf_address", "vm_fault", &["address"]),
    req("vmf_flags", "vm_fault", &["flags"]),
    req("vmf_orig_pte", "vm_fault", &["orig_pte"]),
    req("vmf_pte", "vm_fault", &["pte"]),
    req("vmf_pmd", "vm_fault", &["pmd"]),
    FieldSpec {
        field: "vmf_orig_pmd",
        strukt: "vm_fault",
        members: &["orig_pmd"],
        optional: Some("5.10 passes orig_pmd to do_huge_pmd_wp_page as its 2nd argument"),
    },
    req("vma_mm", "vm_area_struct", &["vm_mm"]),
    req("vma_start", "vm_area_struct", &["vm_start"]),
    req("vma_end", "vm_area_struct", &["vm_end"]),
    // 6.3+ wraps it in a union with the writable alias `__vm_flags`.
    req("vma_flags", "vm_area_struct", &["vm_flags", "__vm_flags"]),
    req("task_mm", "task_struct", &["mm"]),
    req("task_pid", "task_struct", &["pid"]),
    req("task_tgid", "task_struct", &["tgid"]),
    // The swap count of a swap-in's entry (optional: the swap-in decision
    // is recorded without it).
    opt(
        "swap_info_max",
        "swap_info_struct",
        &["max"],
        SWAP_COUNT_WHY,
    ),
    opt(
        "swap_info_swap_map",
        "swap_info_struct",
        &["swap_map"],
        "7.x keeps swap counts in per-cluster swap tables instead of swap_map",
    ),
    opt(
        "swap_info_cluster_info",
        "swap_info_struct",
        &["cluster_info"],
        SWAP_COUNT_WHY,
    ),
    opt(
        "swap_cluster_table",
        "swap_cluster_info",
        &["table"],
        "swap tables exist from 6.18; earlier kernels count in swap_map",
    ),
];

const SWAP_COUNT_WHY: &str = "without it swap-in records carry no swap count";

const fn opt(
    field: &'static str,
    strukt: &'static str,
    members: &'static [&'static str],
    why: &'static str,
) -> FieldSpec {
    FieldSpec {
        field,
        strukt,
        members,
        optional: Some(why),
    }
}

/// How a tail page's `compound_head` / `compound_info` word names its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompoundEncoding {
    /// Head pointer + 1 (`compound_head`; `compound_info` without a mask).
    HeadPointer,
    /// A mask with bit 0 set; head = tail address & mask (`compound_info`
    /// with CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP and a power-of-2
    /// `sizeof(struct page)`: `compound_info_has_mask()` in
    /// include/linux/page-flags.h, 7.x).
    Mask,
}

/// Encodings the probes decode (tracer-ebpf `page.rs`: `word - 1`, or
/// `page & word` when `Layout::compound_info_mask` is set).
pub const PROBES_DECODE: &[CompoundEncoding] =
    &[CompoundEncoding::HeadPointer, CompoundEncoding::Mask];

/// Functions of mm/hugetlb_vmemmap.c, built only with
/// CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP: their presence in BTF shows it.
const HVO_FUNCS: [&str; 2] = ["hugetlb_vmemmap_optimize_folio", "hugetlb_vmemmap_init"];

/// The encoding of the matched member (`path` ends with its name).
fn compound_encoding(t: &dyn TypeSource, path: &str, page_size: u32) -> CompoundEncoding {
    if !path.ends_with(".compound_info") {
        return CompoundEncoding::HeadPointer;
    }
    let hvo = HVO_FUNCS.iter().any(|f| t.func(f).is_ok());
    if hvo && page_size.is_power_of_two() {
        CompoundEncoding::Mask
    } else {
        CompoundEncoding::HeadPointer
    }
}

/// Layout entries that are not struct members.
pub const PAGE_SIZE_FIELD: &str = "page_size";
pub const PG_HEAD_FIELD: &str = "pg_head";
pub const VMEMMAP_FIELD: &str = "vmemmap_base_sym";
/// Derived from BTF sizes or from members of another struct.
pub const SWAP_CLUSTER_SIZE_FIELD: &str = "swap_cluster_info_size";
pub const SWAP_TABLE_SLOTS_FIELD: &str = "swap_table_slots";
pub const ENTIRE_MAPCOUNT_FIELD: &str = "folio_entire_mapcount";
/// Addresses from kallsyms (static variables: CONFIG_KALLSYMS_ALL).
pub const SWAP_INFO_FIELD: &str = "swap_info_sym";
pub const NR_SWAPFILES_FIELD: &str = "nr_swapfiles_sym";

/// Optional fields resolved outside [`FIELDS`], in the order reported.
pub const DERIVED_FIELDS: [&str; 3] = [
    SWAP_CLUSTER_SIZE_FIELD,
    SWAP_TABLE_SLOTS_FIELD,
    ENTIRE_MAPCOUNT_FIELD,
];
/// The kallsyms variables the swap count reads, with their Layout fields.
pub const SWAP_SYMBOLS: [(&str, &str); 2] = [
    (SWAP_INFO_FIELD, "swap_info"),
    (NR_SWAPFILES_FIELD, "nr_swapfiles"),
];

/// What was found for one [`Layout`] field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldReport {
    pub field: &'static str,
    /// The value put into the layout (offset, size, bit or address).
    pub value: Option<u64>,
    /// Where it came from: `vm_fault.(anon).vma`, `sizeof(struct page)`,
    /// `enum pageflags::PG_head`, `kallsyms vmemmap_base`.
    pub source: Option<String>,
    /// Exact names tried, as `struct.member`, when nothing matched.
    pub tried: Vec<String>,
    /// Why it is missing (the last lookup error), when it is.
    pub error: Option<String>,
    /// Found, but in a form the probes cannot use (then also unresolved).
    pub refused: Option<String>,
    /// The kernel may lack it without anything being wrong.
    pub optional: bool,
}

impl FieldReport {
    pub fn resolved(&self) -> bool {
        self.value.is_some()
    }
}

/// Per-field provenance of a resolved [`Layout`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LayoutReport {
    pub fields: Vec<FieldReport>,
    /// Set when BTF was unavailable: every BTF field is then unresolved.
    pub btf_error: Option<String>,
    /// How tail pages name their head on this kernel (when resolved).
    pub compound_encoding: Option<CompoundEncoding>,
}

impl LayoutReport {
    pub fn get(&self, field: &str) -> Option<&FieldReport> {
        self.fields.iter().find(|f| f.field == field)
    }

    pub fn is_resolved(&self, field: &str) -> bool {
        self.get(field).is_some_and(FieldReport::resolved)
    }

    /// Fields that are neither resolved nor optional.
    pub fn unresolved_required(&self) -> impl Iterator<Item = &FieldReport> {
        self.fields.iter().filter(|f| !f.resolved() && !f.optional)
    }
}

impl FieldReport {
    fn found(field: &'static str, value: u64, source: String, optional: bool) -> Self {
        Self {
            field,
            value: Some(value),
            source: Some(source),
            tried: vec![],
            error: None,
            refused: None,
            optional,
        }
    }

    fn missing(field: &'static str, tried: Vec<String>, error: String, optional: bool) -> Self {
        Self {
            field,
            value: None,
            source: None,
            tried,
            error: Some(error),
            refused: None,
            optional,
        }
    }
}

/// Resolves every [`Layout`] field. `types` is `None` without BTF.
/// `vmemmap_base` is the kallsyms address of the `vmemmap_base` variable:
/// `Ok(None)` when kallsyms was read and has no such symbol (fixed vmemmap),
/// `Err(why)` when kallsyms could not be read (then it stays unresolved:
/// guessing the default would read wrong pages under KASLR).
pub fn resolve_layout(
    types: Option<&dyn TypeSource>,
    vmemmap_base: Result<Option<u64>, String>,
) -> (Layout, LayoutReport) {
    let mut layout = Layout::EMPTY;
    let mut report = LayoutReport::default();
    match types {
        Some(t) => {
            report.fields.push(page_size(t, &mut layout));
            report.fields.push(pg_head(t, &mut layout));
            for spec in FIELDS {
                let f = member(t, spec, &mut layout, &mut report.compound_encoding);
                report.fields.push(f);
            }
            report.fields.push(swap_cluster_size(t, &mut layout));
            report.fields.push(swap_table_slots(t, &mut layout));
            report.fields.push(entire_mapcount(t, &mut layout));
        }
        None => {
            let no_btf = |field, tried: &[String], optional| {
                FieldReport::missing(field, tried.to_vec(), "no BTF".into(), optional)
            };
            report.btf_error = Some("no BTF: every struct offset is unresolved".into());
            report.fields.push(no_btf(
                PAGE_SIZE_FIELD,
                &["sizeof(struct page)".into()],
                false,
            ));
            report.fields.push(no_btf(
                PG_HEAD_FIELD,
                &["enum pageflags::PG_head".into()],
                false,
            ));
            for spec in FIELDS {
                report
                    .fields
                    .push(no_btf(spec.field, &spec.tried(), spec.optional.is_some()));
            }
            for field in DERIVED_FIELDS {
                report.fields.push(no_btf(field, &[], true));
            }
        }
    }
    report.fields.push(vmemmap(vmemmap_base, &mut layout));
    (layout, report)
}

impl FieldSpec {
    /// `struct.member` for every name tried.
    fn tried(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}.{m}", self.strukt))
            .collect()
    }
}

/// `sizeof(struct page)`: the stride of the vmemmap array.
fn page_size(t: &dyn TypeSource, layout: &mut Layout) -> FieldReport {
    const SRC: &str = "sizeof(struct page)";
    match t.struct_size("page") {
        Ok(n) => {
            layout.page_size = n;
            FieldReport::found(PAGE_SIZE_FIELD, u64::from(n), SRC.into(), false)
        }
        Err(e) => FieldReport::missing(PAGE_SIZE_FIELD, vec![SRC.into()], e.to_string(), false),
    }
}

/// PG_head: tells a compound head from a small page in BPF.
fn pg_head(t: &dyn TypeSource, layout: &mut Layout) -> FieldReport {
    const SRC: &str = "enum pageflags::PG_head";
    let bit = t
        .enum_value("pageflags", "PG_head")
        .map(|v| v.and_then(|v| u32::try_from(v).ok()));
    match bit {
        Ok(Some(bit)) => {
            layout.pg_head = bit;
            FieldReport::found(PG_HEAD_FIELD, u64::from(bit), SRC.into(), false)
        }
        Ok(None) => FieldReport::missing(
            PG_HEAD_FIELD,
            vec![SRC.into()],
            "no such enumerator".into(),
            false,
        ),
        Err(e) => FieldReport::missing(PG_HEAD_FIELD, vec![SRC.into()], e.to_string(), false),
    }
}

/// One struct member offset, trying the spec's names in order.
fn member(
    t: &dyn TypeSource,
    spec: &FieldSpec,
    layout: &mut Layout,
    encoding: &mut Option<CompoundEncoding>,
) -> FieldReport {
    let optional = spec.optional.is_some();
    let mut last_err = String::from("no member name to try");
    let mut found = None;
    for m in spec.members {
        match t.member_offset(spec.strukt, m) {
            Ok(off) => {
                found = Some(off);
                break;
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    let Some(off) = found else {
        return FieldReport::missing(spec.field, spec.tried(), last_err, optional);
    };
    if spec.field == "page_compound_head" {
        let enc = compound_encoding(t, &off.path, layout.page_size);
        *encoding = Some(enc);
        layout.compound_info_mask = u32::from(enc == CompoundEncoding::Mask);
        if !PROBES_DECODE.contains(&enc) {
            let mut f = FieldReport::missing(
                spec.field,
                spec.tried(),
                format!("{} found but unusable", off.path),
                optional,
            );
            f.refused = Some(format!(
                "{} stores a mask on this kernel (CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP, \
                 {}-byte struct page): the probes decode only a head pointer and would \
                 misread tail pages of large folios",
                off.path, layout.page_size
            ));
            return f;
        }
    }
    if set_offset(layout, spec.field, off.offset) {
        FieldReport::found(spec.field, u64::from(off.offset), off.path, optional)
    } else {
        FieldReport::missing(spec.field, spec.tried(), "no Layout slot".into(), optional)
    }
}

/// `sizeof(struct swap_cluster_info)`: the stride of `cluster_info[]`,
/// needed only where swap tables hold the counts.
fn swap_cluster_size(t: &dyn TypeSource, layout: &mut Layout) -> FieldReport {
    const SRC: &str = "sizeof(struct swap_cluster_info)";
    match t.struct_size("swap_cluster_info") {
        Ok(n) => {
            layout.swap_cluster_info_size = n;
            FieldReport::found(SWAP_CLUSTER_SIZE_FIELD, u64::from(n), SRC.into(), true)
        }
        Err(e) => FieldReport::missing(
            SWAP_CLUSTER_SIZE_FIELD,
            vec![SRC.into()],
            e.to_string(),
            true,
        ),
    }
}

/// `SWAPFILE_CLUSTER`, a macro, seen through `struct swap_table {
/// atomic_long_t entries[SWAPFILE_CLUSTER]; }` (mm/swap_table.h, 6.18+).
fn swap_table_slots(t: &dyn TypeSource, layout: &mut Layout) -> FieldReport {
    const SRC: &str = "sizeof(struct swap_table) / 8";
    let missing =
        |e: String| FieldReport::missing(SWAP_TABLE_SLOTS_FIELD, vec![SRC.into()], e, true);
    match t.struct_size("swap_table") {
        Ok(n) if n >= 8 && n % 8 == 0 => {
            layout.swap_table_slots = n / 8;
            FieldReport::found(SWAP_TABLE_SLOTS_FIELD, u64::from(n / 8), SRC.into(), true)
        }
        Ok(n) => missing(format!("{n} bytes is not a whole number of words")),
        Err(e) => missing(e.to_string()),
    }
}

/// Where a large folio's "entire" mapcount lives, as an offset from the
/// head page: `folio::_entire_mapcount` (6.2+), `folio::_total_mapcount`
/// (6.1, which `FOLIO_MATCH`es it to `compound_mapcount`, the entire
/// mapcount, despite the name), else the first tail page's
/// `compound_mapcount` (5.10: `compound_mapcount_ptr()` is
/// `&page[1].compound_mapcount`). hugetlb keeps its mapcount only there.
fn entire_mapcount(t: &dyn TypeSource, layout: &mut Layout) -> FieldReport {
    const FOLIO: [&str; 2] = ["_entire_mapcount", "_total_mapcount"];
    let mut tried: Vec<String> = FOLIO.iter().map(|m| format!("folio.{m}")).collect();
    tried.push("sizeof(struct page) + page.compound_mapcount".into());
    let mut last_err = String::new();
    for m in FOLIO {
        match t.member_offset("folio", m) {
            Ok(off) => {
                layout.folio_entire_mapcount = off.offset;
                return FieldReport::found(
                    ENTIRE_MAPCOUNT_FIELD,
                    u64::from(off.offset),
                    off.path,
                    true,
                );
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    match (
        t.struct_size("page"),
        t.member_offset("page", "compound_mapcount"),
    ) {
        (Ok(size), Ok(off)) => {
            let at = size + off.offset;
            layout.folio_entire_mapcount = at;
            let src = format!("sizeof(struct page) + {}", off.path);
            FieldReport::found(ENTIRE_MAPCOUNT_FIELD, u64::from(at), src, true)
        }
        (Err(e), _) | (_, Err(e)) => {
            last_err = format!("{last_err}; {e}");
            FieldReport::missing(ENTIRE_MAPCOUNT_FIELD, tried, last_err, true)
        }
    }
}

/// The kallsyms addresses of the swap count's variables. `lookup` answers
/// `Ok(Some(addr))`, `Ok(None)` (no such symbol: e.g. a kernel without
/// CONFIG_KALLSYMS_ALL) or `Err(why)` (kallsyms unreadable). Optional: a
/// kernel without them records swap-ins without their count.
pub fn resolve_swap_symbols(
    layout: &mut Layout,
    report: &mut LayoutReport,
    lookup: impl Fn(&str) -> Result<Option<u64>, String>,
) {
    for (field, sym) in SWAP_SYMBOLS {
        let tried = vec![format!("kallsyms {sym}")];
        let f = match lookup(sym) {
            Ok(Some(addr)) if addr != 0 => {
                match field {
                    SWAP_INFO_FIELD => layout.swap_info_sym = addr,
                    _ => layout.nr_swapfiles_sym = addr,
                }
                FieldReport::found(field, addr, format!("kallsyms {sym}"), true)
            }
            Ok(_) => FieldReport::missing(field, tried, "no such symbol".into(), true),
            Err(why) => FieldReport::missing(field, tried, why, true),
        };
        report.fields.push(f);
    }
}

/// vmemmap_base is a variable only with CONFIG_RANDOMIZE_MEMORY; without it
/// the vmemmap sits at the fixed default the Layout carries.
fn vmemmap(base: Result<Option<u64>, String>, layout: &mut Layout) -> FieldReport {
    match base {
        Ok(Some(addr)) => {
            layout.vmemmap_base_sym = addr;
            let src = "kallsyms vmemmap_base (address of the variable)";
            FieldReport::found(VMEMMAP_FIELD, addr, src.into(), false)
        }
        Ok(None) => {
            let src = format!(
                "default vmemmap {:#x} (no vmemmap_base in kallsyms: kernel without \
                 CONFIG_RANDOMIZE_MEMORY)",
                layout.vmemmap_default
            );
            FieldReport::found(VMEMMAP_FIELD, layout.vmemmap_default, src, false)
        }
        Err(why) => FieldReport::missing(
            VMEMMAP_FIELD,
            vec!["kallsyms vmemmap_base".into()],
            why,
            false,
        ),
    }
}

/// Stores `offset` in the [`Layout`] field named `field`.
fn set_offset(layout: &mut Layout, field: &str, offset: u32) -> bool {
    let slot = match field {
        "page_flags" => &mut layout.page_flags,
        "page_refcount" => &mut layout.page_refcount,
        "page_mapcount" => &mut layout.page_mapcount,
        "page_mapping" => &mut layout.page_mapping,
        "page_compound_head" => &mut layout.page_compound_head,
        "folio_large_mapcount" => &mut layout.folio_large_mapcount,
        "vmf_vma" => &mut layout.vmf_vma,
        "vmf_address" => &mut layout.vmf_address,
        "vmf_flags" => &mut layout.vmf_flags,
        "vmf_orig_pte" => &mut layout.vmf_orig_pte,
        "vmf_pte" => &mut layout.vmf_pte,
        "vmf_pmd" => &mut layout.vmf_pmd,
        "vmf_orig_pmd" => &mut layout.vmf_orig_pmd,
        "vma_mm" => &mut layout.vma_mm,
        "vma_start" => &mut layout.vma_start,
        "vma_end" => &mut layout.vma_end,
        "vma_flags" => &mut layout.vma_flags,
        "task_mm" => &mut layout.task_mm,
        "task_pid" => &mut layout.task_pid,
        "task_tgid" => &mut layout.task_tgid,
        "swap_info_max" => &mut layout.swap_info_max,
        "swap_info_swap_map" => &mut layout.swap_info_swap_map,
        "swap_info_cluster_info" => &mut layout.swap_info_cluster_info,
        "swap_cluster_table" => &mut layout.swap_cluster_table,
        _ => return false,
    };
    *slot = offset;
    offset != ABSENT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::btf::ReturnType;
    use crate::kernel::testutil::FakeTypes;

    #[test]
    fn every_field_spec_has_a_layout_slot() {
        for spec in FIELDS {
            let mut l = Layout::EMPTY;
            assert!(set_offset(&mut l, spec.field, 7), "{}", spec.field);
            assert_ne!(l, Layout::EMPTY, "{}", spec.field);
        }
    }

    #[test]
    fn fills_offsets_and_records_paths() {
        let t = FakeTypes::default().with_common_layout();
        let (l, r) = resolve_layout(Some(&t), Ok(Some(0xffff_ffff_8200_0000)));
        assert_eq!(l.vmf_vma, 0);
        assert_eq!(l.vmf_pte, 88);
        assert_eq!(l.page_refcount, 52);
        assert_eq!(l.page_size, 64);
        assert_eq!(l.pg_head, 16);
        assert_eq!(l.vmemmap_base_sym, 0xffff_ffff_8200_0000);
        assert_eq!(
            r.get("vmf_vma").and_then(|f| f.source.as_deref()),
            Some("vm_fault.(anon).vma")
        );
        // 5.10-like: no orig_pmd, no _large_mapcount: absent but optional.
        assert_eq!(l.vmf_orig_pmd, ABSENT);
        assert_eq!(l.folio_large_mapcount, ABSENT);
        let orig_pmd = r.get("vmf_orig_pmd").unwrap();
        assert!(orig_pmd.optional && !orig_pmd.resolved());
        assert_eq!(orig_pmd.tried, ["vm_fault.orig_pmd"]);
        assert_eq!(r.unresolved_required().count(), 0);
    }

    #[test]
    fn renamed_member_falls_back_in_order() {
        let t = FakeTypes::default()
            .with_common_layout()
            .member("vm_area_struct.(anon).__vm_flags", 32);
        let (l, _) = resolve_layout(Some(&t), Ok(None));
        // vm_flags is listed first and present: it wins.
        assert_eq!(l.vma_flags, 80);

        let mut only_new = FakeTypes::default().size("page", 64);
        only_new = only_new.member("vm_area_struct.(anon).__vm_flags", 32);
        let (l, r) = resolve_layout(Some(&only_new), Ok(None));
        assert_eq!(l.vma_flags, 32);
        assert_eq!(
            r.get("vma_flags").and_then(|f| f.source.as_deref()),
            Some("vm_area_struct.(anon).__vm_flags")
        );
        // Everything else is missing and reported with the names tried.
        let vma = r.get("vmf_vma").unwrap();
        assert_eq!(vma.tried, ["vm_fault.vma"]);
        assert!(vma.error.as_deref().unwrap_or("").contains("vm_fault"));
        assert!(r.unresolved_required().any(|f| f.field == PG_HEAD_FIELD));
    }

    #[test]
    fn compound_info_with_a_mask_is_flagged() {
        // 7.x: compound_info; with HVO and a 64-byte struct page it is a mask.
        let base = FakeTypes::default()
            .with_common_layout()
            .member("page.(anon).(anon).compound_info", 8);
        let (l, r) = resolve_layout(Some(&base), Ok(None));
        // with_common_layout also has compound_head: the old name wins.
        assert_eq!(l.page_compound_head, 8);
        assert_eq!(r.compound_encoding, Some(CompoundEncoding::HeadPointer));

        let renamed = || {
            FakeTypes::default()
                .size("page", 64)
                .member("page.(anon).(anon).compound_info", 8)
        };
        let (l, r) = resolve_layout(Some(&renamed()), Ok(None));
        assert_eq!(l.page_compound_head, 8, "no HVO: still a head pointer");
        assert_eq!(r.compound_encoding, Some(CompoundEncoding::HeadPointer));

        let hvo = renamed().func(
            "hugetlb_vmemmap_optimize_folio",
            &["h", "folio"],
            ReturnType::Int,
        );
        let (l, r) = resolve_layout(Some(&hvo), Ok(None));
        assert_eq!(r.compound_encoding, Some(CompoundEncoding::Mask));
        assert_eq!(l.page_compound_head, 8);
        assert_eq!(
            l.compound_info_mask, 1,
            "the probes must compute page & word"
        );
        let f = r.get("page_compound_head").unwrap();
        assert!(f.resolved());
    }

    #[test]
    fn without_btf_nothing_resolves_but_vmemmap_defaults_when_kallsyms_lacks_it() {
        let (l, r) = resolve_layout(None, Ok(None));
        assert_eq!(l.vmemmap_base_sym, 0);
        assert_eq!(l.page_flags, ABSENT);
        assert!(r.btf_error.is_some());
        assert!(r.is_resolved(VMEMMAP_FIELD));
        // Unreadable kallsyms: no guessing.
        let (_, r) = resolve_layout(None, Err("addresses hidden".into()));
        assert!(!r.is_resolved(VMEMMAP_FIELD));
        assert!(!r.is_resolved("task_mm"));
        assert_eq!(r.fields.len(), FIELDS.len() + DERIVED_FIELDS.len() + 3);
    }

    #[test]
    fn entire_mapcount_is_found_where_each_line_keeps_it() {
        // 6.2+: folio._entire_mapcount.
        let t = FakeTypes::default()
            .with_common_layout()
            .member("folio.(anon).(anon)._entire_mapcount", 84)
            .member("folio.(anon)._total_mapcount", 99);
        let (l, r) = resolve_layout(Some(&t), Ok(None));
        assert_eq!(l.folio_entire_mapcount, 84);
        let f = r.get(ENTIRE_MAPCOUNT_FIELD).unwrap();
        assert_eq!(
            f.source.as_deref(),
            Some("folio.(anon).(anon)._entire_mapcount")
        );
        // 6.1: folio._total_mapcount, the same word as compound_mapcount.
        let t = FakeTypes::default()
            .with_common_layout()
            .member("folio.(anon)._total_mapcount", 84);
        assert_eq!(
            resolve_layout(Some(&t), Ok(None)).0.folio_entire_mapcount,
            84
        );
        // 5.10: no folio; the first tail page's compound_mapcount.
        let t = FakeTypes::default()
            .with_common_layout()
            .member("page.(anon).(anon).compound_mapcount", 20);
        let (l, r) = resolve_layout(Some(&t), Ok(None));
        assert_eq!(l.folio_entire_mapcount, 64 + 20);
        assert!(r.get(ENTIRE_MAPCOUNT_FIELD).unwrap().optional);
        // None of them: absent, optional, with what was tried.
        let (l, r) = resolve_layout(Some(&FakeTypes::default().with_common_layout()), Ok(None));
        assert_eq!(l.folio_entire_mapcount, ABSENT);
        let f = r.get(ENTIRE_MAPCOUNT_FIELD).unwrap();
        assert!(!f.resolved() && f.optional && f.tried.len() == 3);
        assert_eq!(r.unresolved_required().count(), 0);
    }

    #[test]
    fn swap_count_fields_resolve_per_generation() {
        // Up to 6.x: swap_map; no swap table.
        let t = FakeTypes::default()
            .with_common_layout()
            .member("swap_info_struct.max", 76)
            .member("swap_info_struct.swap_map", 80)
            .member("swap_info_struct.cluster_info", 96)
            .size("swap_cluster_info", 24);
        let (l, r) = resolve_layout(Some(&t), Ok(None));
        assert_eq!((l.swap_info_max, l.swap_info_swap_map), (76, 80));
        assert_eq!((l.swap_cluster_table, l.swap_table_slots), (ABSENT, 0));
        assert!(r.get("swap_cluster_table").unwrap().optional);
        // 7.x: no swap_map; a table of 512 words per cluster.
        let t = FakeTypes::default()
            .with_common_layout()
            .member("swap_info_struct.max", 76)
            .member("swap_info_struct.cluster_info", 80)
            .member("swap_cluster_info.table", 8)
            .size("swap_cluster_info", 48)
            .size("swap_table", 4096);
        let (l, _) = resolve_layout(Some(&t), Ok(None));
        assert_eq!(l.swap_info_swap_map, ABSENT);
        assert_eq!(
            (
                l.swap_info_cluster_info,
                l.swap_cluster_table,
                l.swap_cluster_info_size
            ),
            (80, 8, 48)
        );
        assert_eq!(l.swap_table_slots, 512);
        // A table that is not whole words is refused.
        let odd = FakeTypes::default()
            .with_common_layout()
            .size("swap_table", 4092);
        let (l, r) = resolve_layout(Some(&odd), Ok(None));
        assert_eq!(l.swap_table_slots, 0);
        assert!(!r.is_resolved(SWAP_TABLE_SLOTS_FIELD));
    }

    #[test]
    fn swap_symbols_come_from_kallsyms_and_are_optional() {
        let (mut l, mut r) = resolve_layout(None, Ok(None));
        resolve_swap_symbols(&mut l, &mut r, |sym| match sym {
            "swap_info" => Ok(Some(0xffff_ffff_8300_0000)),
            _ => Ok(None),
        });
        assert_eq!(l.swap_info_sym, 0xffff_ffff_8300_0000);
        assert_eq!(l.nr_swapfiles_sym, 0);
        let nr = r.get(NR_SWAPFILES_FIELD).unwrap();
        assert!(!nr.resolved() && nr.optional);
        assert_eq!(nr.tried, ["kallsyms nr_swapfiles"]);
        let (mut l, mut r) = resolve_layout(None, Ok(None));
        resolve_swap_symbols(&mut l, &mut r, |_| Err("kallsyms not read".into()));
        assert_eq!(l.swap_info_sym, 0);
        assert_eq!(
            r.get(SWAP_INFO_FIELD).unwrap().error.as_deref(),
            Some("kallsyms not read")
        );
    }

    #[test]
    fn host_btf_resolves_the_full_layout() {
        let path = std::path::Path::new(crate::kernel::btf::VMLINUX_BTF);
        if !path.exists() {
            println!("skipped: {} absent", path.display());
            return;
        }
        let btf = crate::kernel::btf::KernelBtf::load(path).expect("host BTF readable");
        let (l, r) = resolve_layout(Some(&btf), Ok(None));
        let missing: Vec<_> = r
            .fields
            .iter()
            .filter(|f| !f.resolved())
            .map(|f| f.field)
            .collect();
        // The host runs a 6.18 kernel: every field, optional ones included, exists.
        assert!(missing.is_empty(), "unresolved on host: {missing:?}");
        assert_eq!(l.page_size, 64);
        assert_eq!(l.page_flags, 0);
        assert_eq!(l.vmf_vma, 0);
        // _mapcount and _refcount are adjacent 4-byte words near the end.
        assert_eq!(l.page_refcount, l.page_mapcount + 4);
        assert!(l.task_tgid == l.task_pid + 4, "pid/tgid are adjacent pid_t");
        for f in &r.fields {
            println!(
                "{:22} {:>6?} {}",
                f.field,
                f.value,
                f.source.as_deref().unwrap_or("-")
            );
        }
    }
}
