//! Lean mode: ordinary decisions counted in the kernel instead of recorded.
//!
//! The `COUNTS` per-CPU hash holds, per process, site and outcome, how many
//! ordinary write faults were decided; userspace sums the CPUs and turns
//! the growth since its last read into count events.

/// The per-CPU hash of counted decisions.
pub const COUNTS_MAP: &str = "COUNTS";
/// Keys the map holds: processes × sites × outcomes. A full map counts the
/// decisions it cannot key as lost (`LOST[hook]`).
pub const COUNTS_MAX_ENTRIES: u32 = 16 * 1024;

/// Outcomes (`CountKey::outcome`), classified at exit the way the decoder
/// classifies a full record of the same (ordinary) shape.
pub mod outcome {
    /// Same pfn, now writable.
    pub const REUSE: u8 = 1;
    /// Another pfn is mapped.
    pub const COPY: u8 = 2;
    /// The fault failed or was retried, or the entry is gone.
    pub const OTHER: u8 = 3;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CountKey {
    /// The faulting process.
    pub tgid: u32,
    /// A [`crate::site`] value.
    pub site: u8,
    /// An [`outcome`] value.
    pub outcome: u8,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountValue {
    /// Decisions counted on this CPU.
    pub count: u64,
    /// The process name when the key was first counted on this CPU.
    pub comm: [u8; 16],
}
