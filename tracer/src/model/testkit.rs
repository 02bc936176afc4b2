//! Small constructors for synthetic event streams (tests only).

use super::event::*;

pub const PAGE: u64 = 4096;
/// A private anonymous mapping's base address in the tests.
pub const BASE: u64 = 0x7f00_0000_0000;

pub fn caps(anon_exclusive: bool) -> KernelCaps {
    KernelCaps {
        release: if anon_exclusive {
            "6.1.0-test"
        } else {
            "5.10.0-test"
        }
        .into(),
        anon_exclusive,
        page_size: PAGE,
    }
}

pub fn task(pid: u32, comm: &str) -> Task {
    Task {
        pid,
        tid: pid,
        comm: Comm::new(comm),
    }
}

pub fn ev(time_ns: u64, task: Task, mm: u64, body: Body) -> Event {
    Event {
        time_ns,
        cpu: 0,
        task,
        mm,
        body,
    }
}

/// An anonymous page as the kernel reports it.
pub fn anon(refcount: i32, mapcount: i32, exclusive: Option<bool>) -> PageState {
    PageState {
        valid: true,
        refcount,
        mapcount,
        anon: true,
        anon_exclusive: exclusive,
        ..PageState::default()
    }
}

pub fn fault(
    fault: FaultKind,
    address: u64,
    pfn: u64,
    new_pfn: Option<u64>,
    decision: Decision,
    page: PageState,
) -> Body {
    Body::CowFault(CowFault {
        site: Site::Wp,
        fault,
        address,
        pfn,
        new_pfn,
        decision,
        shared_mapping: false,
        ret: 0,
        page,
        swap_count: None,
    })
}

pub fn write_copy(address: u64, pfn: u64, new_pfn: u64, page: PageState) -> Body {
    fault(
        FaultKind::Write,
        address,
        pfn,
        Some(new_pfn),
        Decision::Copy,
        page,
    )
}

pub fn write_reuse(address: u64, pfn: u64, page: PageState) -> Body {
    fault(FaultKind::Write, address, pfn, None, Decision::Reuse, page)
}

pub fn unshare_copy(address: u64, pfn: u64, new_pfn: u64, page: PageState) -> Body {
    fault(
        FaultKind::Unshare,
        address,
        pfn,
        Some(new_pfn),
        Decision::Copy,
        page,
    )
}

pub fn gup(
    address: u64,
    pfn: u64,
    pin: bool,
    write: bool,
    page: PageState,
    stack: Option<u32>,
) -> Body {
    Body::Gup(Gup {
        path: GupPath::Slow,
        address,
        pfn,
        refs: 1,
        pin,
        write,
        longterm: false,
        force: false,
        failed: false,
        page,
        stack,
    })
}

pub fn unpin(pfn: u64, refs: u32) -> Body {
    Body::Unpin(Unpin {
        pfn,
        refs,
        pin: true,
        refcount_before: 0,
    })
}

/// A private, writable VMA copied at fork.
pub fn fork_vma(child_mm: u64, child_pid: u32, start: u64, end: u64) -> Body {
    Body::ForkVma(ForkVma {
        child_mm,
        child_pid: Some(child_pid),
        start,
        end,
        // VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE
        vm_flags: 0x33,
    })
}

pub fn fork_copy(child_mm: u64, child_pid: u32, address: u64, new_pfn: u64) -> Body {
    Body::ForkCopy(ForkCopy {
        child_mm,
        child_pid: Some(child_pid),
        address,
        new_pfn: Some(new_pfn),
    })
}

pub fn task_fork(child_pid: u32, child_mm: u64) -> Body {
    Body::TaskFork(TaskFork {
        child_pid,
        child_tid: child_pid,
        child_mm,
    })
}

pub fn lost(dropped: u64) -> Body {
    Body::Lost(Lost {
        hook: "do_wp_page".into(),
        cpu: 0,
        dropped,
        errors: 0,
        skipped: 0,
    })
}

pub fn stack_def(id: u32, frames: &[&str]) -> Body {
    Body::StackDef(StackDef {
        id,
        frames: frames.iter().map(|s| s.to_string()).collect(),
    })
}
