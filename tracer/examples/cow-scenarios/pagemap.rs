//! Ground truth from `/proc/self/pagemap`: which physical page backs each
//! virtual page right now. Comparing PFNs before and after a step tells us,
//! without trusting any tracer, whether the kernel copied or reused a page.
//!
//! Format (Documentation/admin-guide/mm/pagemap.rst): one little-endian u64
//! per virtual page at offset `(vaddr / page_size) * 8`; bit 63 present,
//! bit 62 swapped, bits 0-54 the PFN. Since 4.2 the PFN reads as 0 without
//! CAP_SYS_ADMIN, which would silently make every page look "unchanged":
//! we refuse that instead of producing a meaningless truth.

use std::fs::File;
use std::os::unix::fs::FileExt;

const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;
const PFN_MASK: u64 = (1 << 55) - 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PagemapError {
    #[error("page at {vaddr:#x} is not present (not populated, or swapped out)")]
    NotPresent { vaddr: u64 },
    #[error(
        "page at {vaddr:#x} is present but its PFN reads as 0: /proc/self/pagemap hides \
         PFNs without CAP_SYS_ADMIN; run cow-scenarios as root"
    )]
    Hidden { vaddr: u64 },
}

/// Decodes one pagemap entry into the PFN of a present page.
pub fn pfn_of_entry(entry: u64, vaddr: u64) -> Result<u64, PagemapError> {
    if entry & PRESENT == 0 || entry & SWAPPED != 0 {
        return Err(PagemapError::NotPresent { vaddr });
    }
    match entry & PFN_MASK {
        0 => Err(PagemapError::Hidden { vaddr }),
        pfn => Ok(pfn),
    }
}

/// The calling process's pagemap. Open it in the process you measure: a file
/// opened before `fork` keeps describing the parent's address space.
pub struct Pagemap {
    file: File,
    page_size: u64,
}

impl Pagemap {
    pub fn open_self(page_size: u64) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let file = File::open("/proc/self/pagemap").context("opening /proc/self/pagemap")?;
        Ok(Pagemap { file, page_size })
    }

    /// PFNs of `pages` consecutive pages from `start` (page aligned).
    pub fn pfns(&self, start: u64, pages: usize) -> anyhow::Result<Vec<u64>> {
        self.entries(start, pages)?
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let vaddr = start + i as u64 * self.page_size;
                Ok(pfn_of_entry(entry, vaddr)?)
            })
            .collect()
    }

    /// How many of `pages` consecutive pages from `start` are swapped out
    /// (bit 62: the PTE holds a swap entry, the page has no PFN).
    pub fn swapped(&self, start: u64, pages: usize) -> anyhow::Result<usize> {
        Ok(self
            .entries(start, pages)?
            .into_iter()
            .filter(|&e| is_swapped(e))
            .count())
    }

    fn entries(&self, start: u64, pages: usize) -> anyhow::Result<Vec<u64>> {
        use anyhow::Context as _;
        let mut raw = vec![0u8; pages * 8];
        let offset = (start / self.page_size) * 8;
        self.file
            .read_exact_at(&mut raw, offset)
            .with_context(|| format!("reading /proc/self/pagemap at offset {offset:#x}"))?;
        Ok(raw
            .chunks_exact(8)
            .map(|b| {
                let mut word = [0u8; 8];
                word.copy_from_slice(b);
                u64::from_le_bytes(word)
            })
            .collect())
    }
}

/// A pagemap entry for a page that is swapped out.
pub fn is_swapped(entry: u64) -> bool {
    entry & SWAPPED != 0
}

/// How many positions differ between two equally long PFN lists.
pub fn count_changed(before: &[u64], after: &[u64]) -> usize {
    before.iter().zip(after).filter(|(a, b)| a != b).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_present_pfn_and_ignores_flag_bits() {
        // present + exclusively-mapped (bit 56) + soft-dirty (bit 55) + pfn
        let entry = PRESENT | (1 << 56) | (1 << 55) | 0x1_2345;
        assert_eq!(pfn_of_entry(entry, 0x1000), Ok(0x1_2345));
    }

    #[test]
    fn refuses_hidden_and_absent_pages() {
        assert_eq!(
            pfn_of_entry(PRESENT, 0x2000),
            Err(PagemapError::Hidden { vaddr: 0x2000 })
        );
        assert_eq!(
            pfn_of_entry(0x42, 0x3000),
            Err(PagemapError::NotPresent { vaddr: 0x3000 })
        );
        assert_eq!(
            pfn_of_entry(PRESENT | SWAPPED | 7, 0x4000),
            Err(PagemapError::NotPresent { vaddr: 0x4000 })
        );
    }

    #[test]
    fn swapped_is_bit_62() {
        assert!(is_swapped(SWAPPED | 0x1234));
        assert!(!is_swapped(PRESENT | 0x1234));
    }

    #[test]
    fn counts_changed_positions() {
        assert_eq!(count_changed(&[1, 2, 3], &[1, 9, 8]), 2);
        assert_eq!(count_changed(&[1, 2], &[1, 2]), 0);
    }
}
