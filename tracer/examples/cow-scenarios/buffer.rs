//! The workloads' buffer: a fresh private anonymous mapping, populated page
//! by page, with contents that tell "old" data from "new" data per page (so a
//! pipe that kept a reference can be checked byte for byte).

use std::ptr::NonNull;

use anyhow::{Context as _, bail};

/// What a page holds: the data written at population (`Old`) or by a
/// workload step (`New`). Each page gets its own byte so that a page
/// mix-up shows as a mismatch too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    Old,
    New,
}

impl Pattern {
    pub fn byte(self, page: usize) -> u8 {
        let low = (page % 32) as u8;
        match self {
            Pattern::Old => 0x40 | low,
            Pattern::New => 0xc0 | low,
        }
    }
}

/// True when `data` is exactly pages `0..` filled with `pattern`.
pub fn holds_pattern(data: &[u8], page_size: usize, pattern: Pattern) -> bool {
    data.len().is_multiple_of(page_size)
        && data
            .chunks(page_size)
            .enumerate()
            .all(|(i, page)| page.iter().all(|&b| b == pattern.byte(i)))
}

/// The system page size.
pub fn page_size() -> anyhow::Result<usize> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .context("sysconf(_SC_PAGESIZE) failed")
}

/// A private anonymous mapping; unmapped on drop.
pub struct AnonBuffer {
    ptr: NonNull<u8>,
    pages: usize,
    page_size: usize,
}

impl AnonBuffer {
    /// Maps `pages` pages and writes every page once with [`Pattern::Old`],
    /// so that each one is populated with its own anonymous page.
    pub fn populated(pages: usize) -> anyhow::Result<Self> {
        if pages == 0 {
            bail!("the buffer needs at least one page");
        }
        let page_size = page_size()?;
        let len = pages
            .checked_mul(page_size)
            .context("buffer size overflows")?;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's
        // choosing: no existing memory is affected.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap of the workload buffer");
        }
        let ptr = NonNull::new(addr.cast::<u8>()).context("mmap returned NULL")?;
        let buffer = AnonBuffer {
            ptr,
            pages,
            page_size,
        };
        // Base pages only: a THP (or an mTHP folio on 6.8+) would take the
        // huge-PMD / large-folio paths and change the expected per-page
        // numbers. EINVAL means the kernel has no THP at all: fine.
        // SAFETY: advice on our own mapping, which stays valid.
        if unsafe { libc::madvise(addr, len, libc::MADV_NOHUGEPAGE) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err).context("madvise(MADV_NOHUGEPAGE)");
            }
        }
        buffer.write_pages(Pattern::Old);
        Ok(buffer)
    }

    pub fn start(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    pub fn end(&self) -> u64 {
        self.start() + self.len() as u64
    }

    pub fn len(&self) -> usize {
        self.pages * self.page_size
    }

    pub fn pages(&self) -> usize {
        self.pages
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Writes every page in full with `pattern`. The first byte of each page
    /// is a volatile store so that the write fault happens exactly here.
    pub fn write_pages(&self, pattern: Pattern) {
        for page in 0..self.pages {
            let byte = pattern.byte(page);
            // SAFETY: `page * page_size .. (page + 1) * page_size` lies inside
            // the mapping, which is readable and writable and lives as long
            // as `self`; nobody holds a Rust reference into it.
            unsafe {
                let p = self.ptr.as_ptr().add(page * self.page_size);
                std::ptr::write_volatile(p, byte);
                std::ptr::write_bytes(p.add(1), byte, self.page_size - 1);
            }
        }
    }

    /// True when the buffer currently holds `pattern` in every page.
    pub fn holds(&self, pattern: Pattern) -> bool {
        // SAFETY: the mapping is readable for `len` bytes while `self` lives,
        // and only this thread writes it (through raw pointers, not now).
        let data = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len()) };
        holds_pattern(data, self.page_size, pattern)
    }
}

impl Drop for AnonBuffer {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `populated`; after drop no
        // pointer into it is used.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_differ_per_page_and_between_old_and_new() {
        assert_ne!(Pattern::Old.byte(0), Pattern::New.byte(0));
        assert_ne!(Pattern::Old.byte(0), Pattern::Old.byte(1));
    }

    #[test]
    fn holds_pattern_detects_any_wrong_byte() {
        let ps = 8;
        let mut data: Vec<u8> = (0..3)
            .flat_map(|i| vec![Pattern::Old.byte(i); ps])
            .collect();
        assert!(holds_pattern(&data, ps, Pattern::Old));
        assert!(!holds_pattern(&data, ps, Pattern::New));
        data[2 * ps + 5] = Pattern::New.byte(2);
        assert!(!holds_pattern(&data, ps, Pattern::Old));
        assert!(!holds_pattern(&data[..ps + 1], ps, Pattern::Old));
    }

    #[test]
    fn buffer_writes_are_visible() {
        let buf = AnonBuffer::populated(3).unwrap();
        assert!(buf.holds(Pattern::Old));
        buf.write_pages(Pattern::New);
        assert!(buf.holds(Pattern::New));
        assert_eq!(buf.end() - buf.start(), 3 * buf.page_size() as u64);
        assert_eq!(buf.start() % buf.page_size() as u64, 0);
    }
}
