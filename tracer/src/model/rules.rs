//! Alert texts for the built-in rules, and the conditions that are pure
//! functions of one event's page state. The engine decides *when* (it owns
//! the state); this module says *what* and *why*, in words a kernel engineer
//! can act on. Every message names both sides: the task whose fault or grab
//! triggered the rule, and the holder of the page.

use super::alert::Holder;
use super::event::{Comm, FaultKind, Gup, Task};
use super::pages::HolderRec;

/// Human duration, ASCII only.
pub fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.3} s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.3} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.3} us", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

pub(crate) fn who(pid: u32, comm: &Comm) -> String {
    format!("pid {pid} ({})", comm.escaped())
}

/// The alert's view of a holder record at `now`.
pub(crate) fn holder_view(h: &HolderRec, now: u64, frames: Option<&Vec<String>>) -> Holder {
    Holder {
        pid: h.pid,
        comm: h.comm,
        pin: h.pin,
        stack: frames.cloned().unwrap_or_default(),
        age_ns: now.saturating_sub(h.time_ns),
        address: h.address,
    }
}

fn grab_kind(h: &HolderRec) -> &'static str {
    match (h.pin, h.write) {
        (true, true) => "writable FOLL_PIN",
        (true, false) => "read-only FOLL_PIN",
        (false, true) => "writable FOLL_GET reference",
        (false, false) => "read-only FOLL_GET reference",
    }
}

fn fault_verb(fault: FaultKind) -> &'static str {
    match fault {
        FaultKind::Write => "wrote to",
        FaultKind::Unshare => "unshared (read-only pin request) at",
    }
}

pub(crate) struct FaultFacts<'a> {
    pub task: &'a Task,
    /// The deciding path's short name (`wp`, `swap`, `thp`, `hugetlb`).
    pub site: &'static str,
    pub fault: FaultKind,
    pub address: u64,
    pub pfn: u64,
    pub new_pfn: Option<u64>,
    pub now: u64,
}

fn copied(f: &FaultFacts<'_>) -> String {
    match f.new_pfn {
        Some(n) => format!("copied pfn {:#x} to pfn {n:#x}", f.pfn),
        None => format!("copied pfn {:#x}", f.pfn),
    }
}

pub(crate) fn pin_then_cow(
    f: &FaultFacts<'_>,
    h: &HolderRec,
    anon_exclusive_kernel: bool,
) -> String {
    let verdict = if anon_exclusive_kernel {
        "This kernel has PageAnonExclusive semantics (5.19+), under which a pinned \
         anonymous page is never copied away from its pin: this indicates a kernel bug."
    } else {
        "Expected before 5.19 when a read-only pin lands on a page still write-protected \
         after fork: pin with FOLL_WRITE, or keep the buffer out of fork (MADV_DONTFORK)."
    };
    format!(
        "{} {} {:#x} and the kernel {} while {} holds a {} on it (taken {} ago at {:#x}): \
         the pin now refers to a page the process no longer maps; neither side sees the \
         other's writes. {verdict}",
        who(f.task.pid, &f.task.comm),
        fault_verb(f.fault),
        f.address,
        copied(f),
        who(h.pid, &h.comm),
        grab_kind(h),
        fmt_ns(f.now.saturating_sub(h.time_ns)),
        h.address,
    )
}

pub(crate) fn gup_ref_then_cow(f: &FaultFacts<'_>, h: &HolderRec) -> String {
    format!(
        "{} {} {:#x} and the kernel {} while {} holds a {} on the old page (taken {} ago at \
         {:#x}, e.g. vmsplice): the holder keeps the old contents and does not see this write.",
        who(f.task.pid, &f.task.comm),
        fault_verb(f.fault),
        f.address,
        copied(f),
        who(h.pid, &h.comm),
        grab_kind(h),
        fmt_ns(f.now.saturating_sub(h.time_ns)),
        h.address,
    )
}

/// The kernel function behind a site name, as a reader would grep for it.
fn site_path(site: &str) -> &'static str {
    match site {
        "swap" => "swap-in (do_swap_page)",
        "thp" => "huge PMD (do_huge_pmd_wp_page)",
        "hugetlb" => "hugetlb (hugetlb_cow / hugetlb_wp)",
        _ => "write-protect (do_wp_page)",
    }
}

pub(crate) fn gup_ref_then_reuse(f: &FaultFacts<'_>, h: &HolderRec, reason: &str) -> String {
    format!(
        "{} {} {:#x} in place (pfn {:#x} reused by the {} path: {reason}) while {} holds a {} \
         on it taken through another process or address space ({} ago at {:#x}): the holder \
         observes this process's write.",
        who(f.task.pid, &f.task.comm),
        fault_verb(f.fault),
        f.address,
        f.pfn,
        site_path(f.site),
        who(h.pid, &h.comm),
        grab_kind(h),
        fmt_ns(f.now.saturating_sub(h.time_ns)),
        h.address,
    )
}

/// Why a read-only pin's page may still be shared.
pub(crate) enum Unprotected {
    /// 5.19+: PageAnonExclusive was clear after the grab: no unshare happened.
    NotExclusive,
    /// Mapped by more than one page table.
    Mapped(i32),
    /// Before 5.19: a fork write-protected the range after the last write
    /// we saw to this page, so its PTE is likely still read-only.
    ForkProtected { fork_ns: u64 },
}

pub(crate) fn unprotected_ro_pin(task: &Task, g: &Gup, address: u64, why: &Unprotected) -> String {
    let why = match why {
        Unprotected::NotExclusive => {
            "PageAnonExclusive is clear and no unshare happened".to_string()
        }
        Unprotected::Mapped(n) => format!("it is mapped {n} times, shared with another mm"),
        Unprotected::ForkProtected { fork_ns } => format!(
            "a fork at {} write-protected it and no write since was seen",
            fmt_ns(*fork_ns)
        ),
    };
    format!(
        "{} took a read-only FOLL_PIN{} on pfn {:#x} at {address:#x}, an anonymous page that \
         is not exclusive to its mm ({why}): the owner's next write will copy the page away \
         from the pin, which then keeps stale data. Pin with FOLL_WRITE (or use a 5.19+ kernel, \
         which unshares at pin time).",
        who(task.pid, &task.comm),
        if g.longterm { " (longterm)" } else { "" },
        g.pfn,
    )
}

pub(crate) fn fork_with_pins(
    task: &Task,
    child: Option<u32>,
    address: u64,
    h: Option<&HolderRec>,
) -> String {
    let child = child.map_or_else(|| "a child".to_string(), |c| format!("child pid {c}"));
    let holder = h.map_or_else(String::new, |h| {
        format!(" (pinned by {}, {})", who(h.pid, &h.comm), grab_kind(h))
    });
    format!(
        "fork by {} copied pinned pages eagerly for {child}, first at {address:#x}{holder}: each \
         costs a page copy at fork and the child does not share the buffer. If the child does \
         not need it, mark the pinned buffer MADV_DONTFORK. The alert's count is the number of \
         pages copied.",
        who(task.pid, &task.comm),
    )
}

pub(crate) fn cow_storm(task: &Task, copies: u64, threshold: f64) -> String {
    format!(
        "{} made {copies} copy-on-write copies within 1 s of event time (threshold {threshold}/s): \
         look for fork-heavy code paths, KSM, or writes to memory shared with a child.",
        who(task.pid, &task.comm),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(fmt_ns(12), "12 ns");
        assert_eq!(fmt_ns(1_500), "1.500 us");
        assert_eq!(fmt_ns(2_000_000), "2.000 ms");
        assert_eq!(fmt_ns(3_250_000_000), "3.250 s");
    }

    #[test]
    fn messages_escape_process_names() {
        let t = Task {
            pid: 1,
            tid: 1,
            comm: Comm::new("evil\n[CRIT]"),
        };
        let m = cow_storm(&t, 5, 1.0);
        assert!(!m.contains('\n'));
        assert!(m.contains("evil\\x0a[CRIT]"));
    }
}
