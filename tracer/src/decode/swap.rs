//! The swap count witness of a swap-in record into a count.
//!
//! The probe reads the kernel's per-slot reference count raw, in one of
//! two shapes (`tracer_common::swap_witness`):
//!
//! * `SWAP_MAP` (up to 6.x): the `swap_map[offset]` byte. Its low bits are
//!   the count; `SWAP_HAS_CACHE` (0x40) says the slot also has a swap-cache
//!   page and `COUNT_CONTINUED` (0x80) that the count went on in
//!   continuation pages (include/linux/swap.h, the same values from 2.6.37
//!   through 6.17).
//! * `SWAP_TABLE` (6.18+ swap tables holding counts, 7.x): the slot's table
//!   word. A free slot is 0, a swapped-out slot is a shadow (bit 0 set), a
//!   cached slot a pfn (low bits `0b10`); the count is the top
//!   `SWP_TB_COUNT_BITS` (4 on x86_64) bits, its maximum meaning "continued
//!   in the cluster's extend table" (mm/swap_table.h).
//!
//! Both shapes are macros, not BTF: the values are proved by the VM
//! scenarios (a page swapped out then shared by fork counts 2).

use tracer_common::swap_witness;

/// `SWAP_HAS_CACHE` (include/linux/swap.h).
const SWAP_HAS_CACHE: u64 = 0x40;
/// `COUNT_CONTINUED` (include/linux/swap.h).
const COUNT_CONTINUED: u64 = 0x80;
/// `SWP_TB_COUNT_BITS` on 64-bit (mm/swap_table.h: `min(4, BITS_PER_LONG -
/// SWP_TB_PFN_BITS)`), the count at the top of the word.
const SWP_TB_COUNT_BITS: u32 = 4;
/// `SWP_TB_SHADOW_MARK` and `SWP_TB_PFN_MARK` / its mask (mm/swap_table.h).
const SWP_TB_SHADOW_MARK: u64 = 0b1;
const SWP_TB_PFN_MARK: u64 = 0b10;
const SWP_TB_PFN_MARK_MASK: u64 = 0b11;

/// The count a record's witness shows; `None` when nothing was read or the
/// word is not a countable slot (a bad slot, a reserved pointer form).
pub(crate) fn swap_count(format: u8, witness: u64) -> Option<u32> {
    match format {
        swap_witness::SWAP_MAP => {
            let count = witness & 0xff & !(SWAP_HAS_CACHE | COUNT_CONTINUED);
            u32::try_from(count).ok()
        }
        swap_witness::SWAP_TABLE => {
            let countable = witness == 0
                || witness & SWP_TB_SHADOW_MARK != 0
                || witness & SWP_TB_PFN_MARK_MASK == SWP_TB_PFN_MARK;
            countable
                .then(|| u32::try_from(witness >> (64 - SWP_TB_COUNT_BITS)).ok())
                .flatten()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_map_byte_drops_the_cache_and_continuation_bits() {
        let f = swap_witness::SWAP_MAP;
        assert_eq!(swap_count(f, 0x02), Some(2));
        assert_eq!(swap_count(f, 0x41), Some(1), "SWAP_HAS_CACHE");
        assert_eq!(swap_count(f, 0xbe), Some(0x3e), "COUNT_CONTINUED");
        assert_eq!(swap_count(f, 0x40), Some(0), "cache only");
    }

    #[test]
    fn swap_table_count_is_in_the_top_bits_of_countable_words() {
        let f = swap_witness::SWAP_TABLE;
        // A swapped-out slot (shadow) referenced twice.
        assert_eq!(swap_count(f, (2 << 60) | 0x1234_5671), Some(2));
        // A cached slot: pfn << 2 | 0b10, one reference.
        assert_eq!(swap_count(f, (1 << 60) | (0x1_2345 << 2) | 0b10), Some(1));
        assert_eq!(swap_count(f, 0), Some(0), "free slot");
        // The reserved pointer form and a bad slot are not counts.
        assert_eq!(swap_count(f, 0x100 | 0b100), None);
        assert_eq!(swap_count(f, !0u64 << 3), None);
    }

    #[test]
    fn nothing_read_is_no_count() {
        assert_eq!(swap_count(swap_witness::NONE, 0x02), None);
        assert_eq!(swap_count(200, 0x02), None);
    }
}
