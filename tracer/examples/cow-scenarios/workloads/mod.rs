//! The workloads: each makes the kernel take one kind of COW / unshare / GUP
//! decision on a buffer it owns and measures the outcome itself (pagemap
//! PFNs and, where it matters, what a referenced view still shows).

mod fork_writes;
mod huge;
mod iouring;
mod large;
mod ro_pin;
mod swap;
mod vmsplice;

use crate::buffer::AnonBuffer;
use crate::sys;
use crate::truth::{Step, Truth};

/// A workload, named as on the command line and in the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// fork; the child writes every page (copies), exits; the parent writes (reuses).
    ForkChildWrites,
    /// fork (child stays); read-only pin of our own pages with process_vm_readv; then write.
    RoPinAfterFork,
    /// fork (child stays); vmsplice the buffer into a pipe; write; read the pipe back.
    VmspliceThenWrite,
    /// io_uring fixed buffers (long-term write pin); fork; the parent writes.
    IouringPin,
    /// fork-child-writes on many pages, to overrun a small ring buffer.
    Overload,
    /// MADV_PAGEOUT our own pages, then write: swap-in reuses in place.
    SwapPrivateWrite,
    /// MADV_PAGEOUT, fork (child keeps the swap entries), parent writes, child reads.
    SwapSharedWrite,
    /// fork; child vmsplices and unmaps; parent pages out, writes, reads the pipe.
    VmspliceSwapLeak,
    /// fork; child vmsplices part of a THP and unmaps it; parent writes, reads the pipe.
    ThpVmspliceLeak,
    /// MAP_HUGETLB page: parent writes while a child maps it, then alone.
    HugetlbForkWrite,
    /// MAP_HUGETLB page pinned by io_uring fixed buffers, then fork.
    HugetlbPinFork,
    /// A 2 MiB THP split into PTEs; fork; parent writes half shared, half alone.
    PteThpForkWrite,
    /// 64 KiB multi-size THP folios; fork; parent writes half shared, half alone.
    MthpForkWrite,
}

impl Workload {
    pub const ALL: [Workload; 13] = [
        Workload::ForkChildWrites,
        Workload::RoPinAfterFork,
        Workload::VmspliceThenWrite,
        Workload::IouringPin,
        Workload::Overload,
        Workload::SwapPrivateWrite,
        Workload::SwapSharedWrite,
        Workload::VmspliceSwapLeak,
        Workload::ThpVmspliceLeak,
        Workload::HugetlbForkWrite,
        Workload::HugetlbPinFork,
        Workload::PteThpForkWrite,
        Workload::MthpForkWrite,
    ];

    /// The four that show distinct kernel behaviour (the demo's set).
    pub const MAIN: [Workload; 4] = [
        Workload::ForkChildWrites,
        Workload::RoPinAfterFork,
        Workload::VmspliceThenWrite,
        Workload::IouringPin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::ForkChildWrites => "fork-child-writes",
            Workload::RoPinAfterFork => "ro-pin-after-fork",
            Workload::VmspliceThenWrite => "vmsplice-then-write",
            Workload::IouringPin => "iouring-pin",
            Workload::Overload => "overload",
            Workload::SwapPrivateWrite => "swap-private-write",
            Workload::SwapSharedWrite => "swap-shared-write",
            Workload::VmspliceSwapLeak => "vmsplice-swap-leak",
            Workload::ThpVmspliceLeak => "thp-vmsplice-leak",
            Workload::HugetlbForkWrite => "hugetlb-fork-write",
            Workload::HugetlbPinFork => "hugetlb-pin-fork",
            Workload::PteThpForkWrite => "pte-thp-fork-write",
            Workload::MthpForkWrite => "mthp-fork-write",
        }
    }

    pub fn default_pages(self) -> usize {
        match self {
            Workload::Overload => 4096,
            _ => 16,
        }
    }

    /// A one-line plain-English introduction (the demo prints it).
    pub fn intro(self) -> &'static str {
        match self {
            Workload::ForkChildWrites => {
                "== fork, then the child writes: parent and child share every page after fork; \
                 the child's writes copy, and the parent, alone again, reuses its pages in place"
            }
            Workload::RoPinAfterFork => {
                "== read-only pin after fork: process_vm_readv pins our own fork-shared pages \
                 read-only; 5.19+ kernels unshare (copy) at pin time, older ones copy at the next \
                 write, away from the pin"
            }
            Workload::VmspliceThenWrite => {
                "== vmsplice, then write: the pipe keeps a reference to the old pages; the write \
                 copies away from it, and the pipe still shows the old data"
            }
            Workload::IouringPin => {
                "== io_uring fixed buffers, then fork: the pages are pinned long-term, so fork \
                 copies them for the child at once and the parent keeps writing its pinned pages \
                 in place"
            }
            Workload::Overload => {
                "== overload: thousands of copies at once, to show that lost events are reported"
            }
            Workload::SwapPrivateWrite => {
                "== swap-in, then write: our own pages come back from swap and are reused in place"
            }
            Workload::SwapSharedWrite => {
                "== swap-in of fork-shared pages, then write: do_swap_page hands the fault to the \
                 write-protect path, which copies"
            }
            Workload::VmspliceSwapLeak => {
                "== vmsplice, unmap, swap out, write: before 5.19 the swap-in reuses the page the \
                 pipe still holds, and the pipe shows the writer's new data"
            }
            Workload::ThpVmspliceLeak => {
                "== vmsplice part of a THP, unmap, write: before 5.19 the whole huge page is reused \
                 while the pipe holds it; later kernels split it and copy"
            }
            Workload::HugetlbForkWrite => {
                "== hugetlb page after fork: copied while the child maps it, reused once alone"
            }
            Workload::HugetlbPinFork => {
                "== pinned hugetlb page, then fork: since 5.13 the child gets its own copy at \
                 fork (copy_hugetlb_page_range); before, it shares the pinned page"
            }
            Workload::PteThpForkWrite => {
                "== PTE-mapped THP after fork: pages the child maps are copied one by one; \
                 written alone, the kernel's large-folio rule decides reuse or copy"
            }
            Workload::MthpForkWrite => {
                "== 64 KiB multi-size THP after fork: copied while shared; written alone, \
                 reused or copied by the kernel's large-folio rule"
            }
        }
    }

    pub fn run(self, pages: usize) -> anyhow::Result<Truth> {
        let ctx = Ctx::new(pages)?;
        match self {
            Workload::ForkChildWrites | Workload::Overload => fork_writes::run(ctx, self),
            Workload::RoPinAfterFork => ro_pin::run(ctx),
            Workload::VmspliceThenWrite => vmsplice::run(ctx),
            Workload::IouringPin => iouring::run(ctx),
            Workload::SwapPrivateWrite => swap::private_write(ctx),
            Workload::SwapSharedWrite => swap::shared_write(ctx),
            Workload::VmspliceSwapLeak => swap::vmsplice_leak(ctx),
            Workload::ThpVmspliceLeak => huge::thp_vmsplice_leak(ctx),
            Workload::HugetlbForkWrite => huge::hugetlb_fork_write(ctx),
            Workload::HugetlbPinFork => huge::hugetlb_pin_fork(ctx),
            Workload::PteThpForkWrite => large::pte_thp_fork_write(ctx),
            Workload::MthpForkWrite => large::mthp_fork_write(ctx),
        }
    }
}

/// What every workload starts from: a populated buffer and our pagemap.
struct Ctx {
    buf: AnonBuffer,
    pagemap: crate::pagemap::Pagemap,
    pid: u32,
}

impl Ctx {
    fn new(pages: usize) -> anyhow::Result<Ctx> {
        // Before populating: every page batch the workload fills is then on
        // this one CPU, where `sys::drain_lru_batches` reaches it.
        sys::pin_to_current_cpu()?;
        let buf = AnonBuffer::populated(pages)?;
        let pagemap = crate::pagemap::Pagemap::open_self(buf.page_size() as u64)?;
        let ctx = Ctx {
            buf,
            pagemap,
            pid: sys::getpid(),
        };
        // Fails loudly now (no privilege, not populated) rather than later.
        ctx.pfns()?;
        Ok(ctx)
    }

    /// Our PFNs of the buffer, now.
    fn pfns(&self) -> anyhow::Result<Vec<u64>> {
        self.pagemap.pfns(self.buf.start(), self.buf.pages())
    }

    /// PFNs before and after `action`, as one step of this process.
    fn step(
        &self,
        name: &str,
        action: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<Step> {
        let before = self.pfns()?;
        action()?;
        Ok(Step::measured(name, self.pid, before, self.pfns()?))
    }

    /// A child's own measurement: it opens its own pagemap after fork.
    fn measure_in_child(
        &self,
        action: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<sys::ChildReport> {
        let pagemap = crate::pagemap::Pagemap::open_self(self.buf.page_size() as u64)?;
        let pfns_before = pagemap.pfns(self.buf.start(), self.buf.pages())?;
        action()?;
        let pfns_after = pagemap.pfns(self.buf.start(), self.buf.pages())?;
        Ok(sys::ChildReport {
            pid: sys::getpid(),
            pfns_before,
            pfns_after,
        })
    }

    fn truth(
        &self,
        workload: Workload,
        child_pid: Option<u32>,
        steps: Vec<Step>,
    ) -> anyhow::Result<Truth> {
        Ok(Truth {
            workload: workload.name().to_string(),
            kernel: sys::kernel_release()?,
            page_size: self.buf.page_size() as u64,
            pages: self.buf.pages(),
            start: self.buf.start(),
            end: self.buf.end(),
            parent_pid: self.pid,
            child_pid,
            steps,
            pipe_shows_old_data: None,
            swapped_out: None,
            swap_references: None,
            large_folio: None,
        })
    }
}

/// The pid the child reported must be the one fork gave us.
fn same_child(expected: u32, report: &sys::ChildReport) -> anyhow::Result<()> {
    if report.pid != expected {
        anyhow::bail!(
            "child reported pid {} but fork returned {expected}",
            report.pid
        );
    }
    Ok(())
}
