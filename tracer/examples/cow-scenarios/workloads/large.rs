//! PTE-mapped large folios written after fork: the write-protect decisions
//! `do_wp_page` takes page by page on a folio larger than one page.
//!
//! * pte-thp-fork-write (every line): a 2 MiB THP whose PMD mapping is
//!   split into PTEs by an `mprotect` of one page (the folio stays whole:
//!   its PFNs do not move, smaps stops counting it as AnonHugePages).
//! * mthp-fork-write (6.8+, multi-size THP): 64 KiB folios, enabled for
//!   the workload's duration through
//!   `/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled`.
//!
//! Both then fork a child that keeps mapping the buffer while the parent
//! writes the first half (pages the child maps: copies on every kernel),
//! let the child exit, and write the second half alone: whether a page of
//! a large folio the parent alone maps is reused or copied is the
//! kernel's large-folio rule, measured here by pagemap and not assumed.

use std::ptr::NonNull;

use anyhow::{Context as _, bail};

use super::huge::{HUGE, is_huge_mapped, map, truth_at};
use super::{Ctx, Workload, same_child};
use crate::buffer::Pattern;
use crate::sys::{self, ChildReport, Companion};
use crate::truth::{Step, Truth, step};

/// The 64 KiB multi-size THP knob (absent before 6.8).
const MTHP_KNOB: &str = "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled";
const MTHP_SIZE: usize = 64 << 10;
/// Pages written: the first half while the child maps them, the second
/// half alone. Two 64 KiB folios, or the start of one 2 MiB THP.
const PAGES: usize = 32;

/// What backed the buffer (`Truth::large_folio`).
pub const PTE_MAPPED_THP: &str = "pte-mapped-thp";
pub const MTHP_64K: &str = "mthp-64k";
pub const ABSENT: &str = "absent";

/// A private anonymous mapping aligned to `align`; unmapped on drop.
struct Aligned {
    ptr: NonNull<u8>,
    len: usize,
    page_size: usize,
}

impl Aligned {
    fn new(len: usize, align: usize) -> anyhow::Result<Self> {
        let raw = map(len + align, 0)? as usize;
        let start = raw.next_multiple_of(align);
        // SAFETY: unmapping the unaligned head and the tail of our own
        // fresh mapping, outside [start, start + len).
        unsafe {
            if start > raw {
                libc::munmap(raw as *mut libc::c_void, start - raw);
            }
            let tail = raw + len + align - (start + len);
            if tail > 0 {
                libc::munmap((start + len) as *mut libc::c_void, tail);
            }
        }
        Ok(Aligned {
            ptr: NonNull::new(start as *mut u8).context("mmap returned NULL")?,
            len,
            page_size: crate::buffer::page_size()?,
        })
    }

    fn start(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Writes the pages `pages` in full with `pattern` (first byte volatile:
    /// the write fault happens there).
    fn write(&self, pages: std::ops::Range<usize>, pattern: Pattern) {
        for page in pages {
            let byte = pattern.byte(page);
            // SAFETY: inside the mapping, writable, alive as long as `self`;
            // nobody holds a Rust reference into it.
            unsafe {
                let p = self.ptr.as_ptr().add(page * self.page_size);
                std::ptr::write_volatile(p, byte);
                std::ptr::write_bytes(p.add(1), byte, self.page_size - 1);
            }
        }
    }

    fn protect(&self, page: usize, prot: libc::c_int) -> anyhow::Result<()> {
        // SAFETY: one page inside our own mapping.
        let r = unsafe {
            libc::mprotect(
                self.ptr.as_ptr().add(page * self.page_size).cast(),
                self.page_size,
                prot,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error()).context("mprotect");
        }
        Ok(())
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: exactly our mapping; no pointer into it is used afterwards.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A sysfs THP knob set for the workload's life; the previous setting is
/// written back on drop (the suite's other scenarios run in the same boot).
struct Knob {
    path: &'static str,
    old: String,
}

impl Knob {
    /// `Ok(None)` when the kernel has no such knob.
    fn set(path: &'static str, value: &str) -> anyhow::Result<Option<Knob>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {path}")),
        };
        let old = selected(&text).with_context(|| format!("{path}: no [selected] value"))?;
        std::fs::write(path, value).with_context(|| format!("writing {value} to {path}"))?;
        Ok(Some(Knob { path, old }))
    }
}

impl Drop for Knob {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(self.path, &self.old) {
            eprintln!("cannot restore {} to {}: {e}", self.path, self.old);
        }
    }
}

/// The bracketed choice of a sysfs list: `always [inherit] madvise never`.
fn selected(text: &str) -> Option<String> {
    let open = text.find('[')?;
    let close = text[open..].find(']')? + open;
    Some(text[open + 1..close].to_string())
}

/// `AnonHugePages` (kB) of our VMA containing `addr`: PMD-mapped THP only.
fn anon_huge_kb(addr: u64) -> anyhow::Result<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").context("reading smaps")?;
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ')
            && let Some((lo, hi)) = range.split_once('-')
            && let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16))
        {
            inside = (lo..hi).contains(&addr);
            continue;
        }
        if inside && let Some(rest) = line.strip_prefix("AnonHugePages:") {
            let kb = rest.trim().trim_end_matches("kB").trim();
            return kb.parse().context("AnonHugePages value");
        }
    }
    bail!("no VMA with AnonHugePages at {addr:#x} in smaps")
}

pub(super) fn pte_thp_fork_write(ctx: Ctx) -> anyhow::Result<Truth> {
    let m = Aligned::new(HUGE, HUGE)?;
    // SAFETY: advice on our own mapping.
    if unsafe { libc::madvise(m.ptr.as_ptr().cast(), HUGE, libc::MADV_HUGEPAGE) } != 0 {
        return Err(std::io::Error::last_os_error()).context("madvise(MADV_HUGEPAGE)");
    }
    m.write(0..HUGE / m.page_size, Pattern::Old);
    let all = ctx.pagemap.pfns(m.start(), HUGE / m.page_size)?;
    if !is_huge_mapped(&all) || anon_huge_kb(m.start())? < (HUGE >> 10) as u64 {
        bail!("the 2 MiB buffer is not one PMD-mapped THP (is THP enabled?)");
    }
    // Changing the protection of one page splits the PMD mapping (not the
    // folio); restoring it leaves every page mapped writable by a PTE.
    let before = ctx.pagemap.pfns(m.start(), PAGES)?;
    let last = HUGE / m.page_size - 1;
    m.protect(last, libc::PROT_READ)?;
    m.protect(last, libc::PROT_READ | libc::PROT_WRITE)?;
    let split = Step::measured(
        step::SPLIT_PMD,
        ctx.pid,
        before,
        ctx.pagemap.pfns(m.start(), PAGES)?,
    );
    if anon_huge_kb(m.start())? != 0 {
        bail!("mprotect did not split the THP's PMD mapping");
    }
    let mut truth = fork_write(&ctx, &m, Workload::PteThpForkWrite, vec![split])?;
    truth.large_folio = Some(PTE_MAPPED_THP.into());
    Ok(truth)
}

pub(super) fn mthp_fork_write(ctx: Ctx) -> anyhow::Result<Truth> {
    let Some(knob) = Knob::set(MTHP_KNOB, "always")? else {
        // No multi-size THP on this kernel: the truth says so, and the
        // check holds the kernel version against it.
        let mut truth = truth_at(
            &ctx,
            Workload::MthpForkWrite,
            ctx.buf.start(),
            1,
            None,
            vec![],
        )?;
        truth.large_folio = Some(ABSENT.into());
        return Ok(truth);
    };
    let m = Aligned::new(PAGES * ctx.buf.page_size(), MTHP_SIZE)?;
    m.write(0..PAGES, Pattern::Old);
    let pfns = ctx.pagemap.pfns(m.start(), PAGES)?;
    let per_folio = MTHP_SIZE / m.page_size;
    let large = pfns.chunks(per_folio).all(|c| {
        c[0].is_multiple_of(per_folio as u64)
            && c.iter().enumerate().all(|(i, &p)| p == c[0] + i as u64)
    });
    if !large {
        bail!("the buffer is not backed by 64 KiB folios (pfns {pfns:?})");
    }
    let mut truth = fork_write(&ctx, &m, Workload::MthpForkWrite, vec![])?;
    drop(knob);
    truth.large_folio = Some(MTHP_64K.into());
    Ok(truth)
}

/// Fork; write the first half while the child maps it; let the child exit;
/// write the second half alone. Both writes are measured over all pages.
fn fork_write(
    ctx: &Ctx,
    m: &Aligned,
    workload: Workload,
    mut steps: Vec<Step>,
) -> anyhow::Result<Truth> {
    let half = PAGES / 2;
    let mut child = Companion::spawn(|| {
        Ok(ChildReport {
            pid: sys::getpid(),
            ..Default::default()
        })
    })?;
    let child_pid = child.pid();
    same_child(child_pid, &child.report()?)?;
    let measure = |name: &str, pages: std::ops::Range<usize>| -> anyhow::Result<Step> {
        let before = ctx.pagemap.pfns(m.start(), PAGES)?;
        m.write(pages, Pattern::New);
        let after = ctx.pagemap.pfns(m.start(), PAGES)?;
        Ok(Step::measured(name, ctx.pid, before, after))
    };
    let shared = measure(step::PARENT_WRITE, 0..half)?;
    child.release()?;
    // No transient batch reference may make a refcount rule copy.
    sys::drain_lru_batches()?;
    let alone = measure(step::PARENT_WRITE_ALONE, half..PAGES)?;
    steps.extend([shared, alone]);
    truth_at(ctx, workload, m.start(), PAGES, Some(child_pid), steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_value_is_the_bracketed_one() {
        assert_eq!(
            selected("always [inherit] madvise never\n").as_deref(),
            Some("inherit")
        );
        assert_eq!(selected("[never]").as_deref(), Some("never"));
        assert_eq!(selected("always madvise"), None);
    }
}
