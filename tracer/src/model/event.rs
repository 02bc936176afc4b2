//! Decoded events: the kernel-version-free vocabulary every stage after
//! `decode` speaks (trace files, the correlation engine, exports).
//!
//! Nothing here knows kernel struct layouts or flag values: `decode` turned
//! the raw witnesses into named facts using the running kernel's BTF.
//! Kernel pointers (`mm`) are per-trace ids unless `--raw-pointers` was given.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A task name as the kernel stores it: up to 16 bytes, NUL padded. A
/// process chooses it freely: escape it before printing (see `Comm::escaped`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Comm(pub [u8; 16]);

impl Comm {
    pub fn new(name: &str) -> Self {
        let mut b = [0u8; 16];
        let n = name.len().min(15);
        b[..n].copy_from_slice(&name.as_bytes()[..n]);
        Comm(b)
    }

    /// The bytes up to the first NUL.
    pub fn as_bytes(&self) -> &[u8] {
        let n = self.0.iter().position(|&c| c == 0).unwrap_or(16);
        &self.0[..n]
    }

    /// Printable form: control characters, backslashes, quotes and non-UTF-8
    /// bytes are escaped (`\xNN`), so a process cannot forge report lines or
    /// drive the operator's terminal through its name.
    pub fn escaped(&self) -> String {
        escape_untrusted(self.as_bytes())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.escaped())
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.escaped())
    }
}

/// Escapes bytes a process controls for display: printable ASCII except `\`
/// and `"` pass; everything else becomes `\xNN`.
pub fn escape_untrusted(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' && b != b'"' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// Who did it: the task current when the kernel took the decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
}

/// One decoded event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds (the trace header gives the clock base).
    pub time_ns: u64,
    pub cpu: u32,
    pub task: Task,
    /// The address space the event is about (per-trace id, or the raw
    /// pointer with `--raw-pointers`). 0 when unknown.
    pub mm: u64,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    CowFault(CowFault),
    Gup(Gup),
    Unpin(Unpin),
    ForkVma(ForkVma),
    ForkCopy(ForkCopy),
    TaskFork(TaskFork),
    TaskExit,
    /// Records the kernel side could not deliver (ring buffer full) or could
    /// not read, since the previous `Lost` for the same hook and cpu.
    Lost(Lost),
    /// Defines a symbolized kernel stack referenced by `Gup::stack`. Appears
    /// in a stream before the first event that references it.
    StackDef(StackDef),
}

impl Body {
    /// The event kind as exports name it (`kind` in JSON lines, Parquet).
    pub fn kind(&self) -> &'static str {
        match self {
            Body::CowFault(_) => "cow_fault",
            Body::Gup(_) => "gup",
            Body::Unpin(_) => "unpin",
            Body::ForkVma(_) => "fork_vma",
            Body::ForkCopy(_) => "fork_copy",
            Body::TaskFork(_) => "fork",
            Body::TaskExit => "exit",
            Body::Lost(_) => "lost",
            Body::StackDef(_) => "stack_def",
        }
    }
}

/// Where the kernel took a COW decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Site {
    /// `do_wp_page`: base pages and PTE-mapped large folios.
    Wp,
    /// `do_swap_page`: write fault on a swapped-out page.
    Swap,
    /// `do_huge_pmd_wp_page`: PMD-mapped THP.
    Thp,
    /// `hugetlb_cow` / `hugetlb_wp`.
    Hugetlb,
}

/// Why the fault happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FaultKind {
    /// A write to a write-protected PTE.
    Write,
    /// FAULT_FLAG_UNSHARE: a read-only pin asked for an exclusive page (5.19+).
    Unshare,
}

/// What the kernel decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Decision {
    /// The page stayed in place (made writable, or marked exclusive for unshare).
    Reuse,
    /// A new page replaced it.
    Copy,
    /// Neither: shared mapping, zero page, pfn map, retry, OOM, error,
    /// THP split/fallback.
    Other,
}

/// The page state the kernel's decision rested on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageState {
    /// False when the probe could not read the page (the other fields are then zero).
    pub valid: bool,
    /// Folio reference count (`_refcount` of the head).
    pub refcount: i32,
    /// Mappings of this page (`_mapcount + 1`); for a large folio with a
    /// folio-wide count, that count.
    pub mapcount: i32,
    /// `PageAnon`.
    pub anon: bool,
    /// `PageAnonExclusive`; `None` on kernels without the flag (before 5.19).
    pub anon_exclusive: Option<bool>,
    pub ksm: bool,
    pub swapcache: bool,
    /// Part of a large folio / compound page.
    pub large: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CowFault {
    pub site: Site,
    pub fault: FaultKind,
    pub address: u64,
    /// The page the fault started from.
    pub pfn: u64,
    /// The page mapped after a `Copy`.
    pub new_pfn: Option<u64>,
    pub decision: Decision,
    /// The mapping is shared (VM_SHARED): no COW applies.
    pub shared_mapping: bool,
    /// `vm_fault_t` returned by the kernel.
    pub ret: u32,
    pub page: PageState,
    /// `Site::Swap` only: references to the swap entry the fault started
    /// from (`swap_map` count without SWAP_HAS_CACHE / COUNT_CONTINUED, or
    /// the swap table's count), read before the fault dropped its own.
    /// `None` when not read. When the kernel's count overflowed into
    /// continuation pages this is the part kept in the entry, a lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_count: Option<u32>,
}

/// Which GUP path grabbed the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GupPath {
    Slow,
    Fast,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gup {
    pub path: GupPath,
    /// User address of the page in `Event::mm` (0 when unknown).
    pub address: u64,
    pub pfn: u64,
    /// Pages covered by this grab (a folio grab on the fast path can cover several).
    pub refs: u32,
    /// FOLL_PIN (a pin) rather than FOLL_GET (a plain reference).
    pub pin: bool,
    pub write: bool,
    pub longterm: bool,
    pub force: bool,
    /// The grab failed (no reference was taken).
    pub failed: bool,
    /// Page state after the grab: `refcount` includes the new reference.
    pub page: PageState,
    /// Id of a `StackDef` in the same stream.
    pub stack: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpin {
    pub pfn: u64,
    pub refs: u32,
    /// Released with FOLL_PIN semantics.
    pub pin: bool,
    pub refcount_before: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkVma {
    pub child_mm: u64,
    /// Known once the matching `TaskFork` was seen (decode joins them).
    pub child_pid: Option<u32>,
    pub start: u64,
    pub end: u64,
    pub vm_flags: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkCopy {
    pub child_mm: u64,
    pub child_pid: Option<u32>,
    pub address: u64,
    pub new_pfn: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFork {
    pub child_pid: u32,
    pub child_tid: u32,
    pub child_mm: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    /// Hook name (`tracer_common::hook::name`).
    pub hook: String,
    pub cpu: u32,
    /// Records dropped because the ring buffer was full.
    pub dropped: u64,
    /// Probe invocations that could not read what they needed.
    pub errors: u64,
    /// Invocations the kernel did not run: a trampoline (fentry/fexit)
    /// program already running on the CPU, preempted there, is skipped by
    /// the kernel's recursion guard. The kernel does not say on which CPU:
    /// `cpu` is 0 for these.
    pub skipped: u64,
}

impl Lost {
    /// Events lost for every reason.
    pub fn total(&self) -> u64 {
        self.dropped
            .saturating_add(self.errors)
            .saturating_add(self.skipped)
    }
}
/// Lean mode: ordinary write-fault decisions of one process, site and
/// outcome that the kernel side counted instead of recording (see
/// `tracer_common::counts`). Not an [`Event`]: it carries no page, address
/// or time of its own, only how many more were counted since the last read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub site: Site,
    pub decision: Decision,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackDef {
    pub id: u32,
    /// Innermost frame first, each `symbol+0xoff` (or `0x...` when unknown
    /// and raw pointers were requested, `?` otherwise).
    pub frames: Vec<String>,
}

/// What the kernel the trace came from provides, as far as the rules care.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelCaps {
    /// `uname -r`.
    pub release: String,
    /// PageAnonExclusive / FAULT_FLAG_UNSHARE semantics (5.19+).
    pub anon_exclusive: bool,
    /// Base page size in bytes.
    pub page_size: u64,
}
