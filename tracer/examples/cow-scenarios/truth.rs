//! The ground truth one workload run measured about itself: which pages
//! changed PFN at each step, for which process, and what a pinned or
//! referenced view showed. Written by `run`, read by the checks.
//!
//! ```json
//! {"workload": "vmsplice-then-write", "kernel": "6.1.0-56-amd64",
//!  "page_size": 4096, "pages": 16, "start": "0x7ff0f42d5000", "end": "0x7ff0f42e5000",
//!  "parent_pid": 106, "child_pid": 107,
//!  "steps": [{"name": "vmsplice", "pid": 106, "pfns_before": [..16], "pfns_after": [..16],
//!             "changed": 0}, ...],
//!  "pipe_shows_old_data": true}
//! ```

use serde::{Deserialize, Serialize};

use crate::pagemap::count_changed;

/// Step names: the checks look steps up by these.
pub mod step {
    /// The child wrote every page (pid = child).
    pub const CHILD_WRITE: &str = "child-write";
    /// The parent wrote every page (pid = parent).
    pub const PARENT_WRITE: &str = "parent-write";
    /// `process_vm_readv` on ourselves pinned the buffer read-only.
    pub const PIN: &str = "pin";
    /// `vmsplice` took references on the buffer.
    pub const VMSPLICE: &str = "vmsplice";
    /// io_uring fixed-buffer registration pinned the buffer.
    pub const REGISTER: &str = "register";
    /// Fork with the buffer pinned: `pfns_before` are the parent's PFNs,
    /// `pfns_after` the child's (pid = child).
    pub const FORK: &str = "fork";
    /// io_uring fixed buffers unregistered.
    pub const UNREGISTER: &str = "unregister";
    /// The child read every page back after the parent's write (pid =
    /// child; `pfns_after` are the child's PFNs then).
    pub const CHILD_READ: &str = "child-read";
    /// The parent wrote again after its last child exited (pid = parent).
    pub const PARENT_WRITE_ALONE: &str = "parent-write-alone";
    /// A large-folio workload's check that the PMD mapping was split into
    /// PTEs without splitting the folio (pid = parent; PFNs must not move).
    pub const SPLIT_PMD: &str = "split-pmd";
}

/// One measured step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    /// The process whose pages were measured and that acted.
    pub pid: u32,
    pub pfns_before: Vec<u64>,
    pub pfns_after: Vec<u64>,
    /// Pages whose PFN differs between before and after.
    pub changed: usize,
}

impl Step {
    pub fn measured(name: &str, pid: u32, pfns_before: Vec<u64>, pfns_after: Vec<u64>) -> Step {
        let changed = count_changed(&pfns_before, &pfns_after);
        Step {
            name: name.to_string(),
            pid,
            pfns_before,
            pfns_after,
            changed,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Truth {
    pub workload: String,
    /// `uname -r`.
    pub kernel: String,
    pub page_size: u64,
    pub pages: usize,
    /// The buffer is `[start, end)`.
    #[serde(with = "crate::hex")]
    pub start: u64,
    #[serde(with = "crate::hex")]
    pub end: u64,
    pub parent_pid: u32,
    pub child_pid: Option<u32>,
    pub steps: Vec<Step>,
    /// vmsplice-then-write: the pipe still returned the data from before the
    /// write (it kept a reference to the old pages).
    #[serde(default)]
    pub pipe_shows_old_data: Option<bool>,
    /// Swap workloads: pages pagemap showed swapped out (bit 62) right
    /// before the parent's write.
    #[serde(default)]
    pub swapped_out: Option<usize>,
    /// Swap workloads: page-table references to each swapped-out page's
    /// swap entry when the parent writes, as the workload arranged them
    /// (the parent, plus a child forked after the page-out that still
    /// holds the entries): the swap count the kernel must show.
    #[serde(default)]
    pub swap_references: Option<u32>,
    /// Large-folio workloads: what backed the buffer (`pte-mapped-thp`: a
    /// 2 MiB THP whose PMD was split into PTEs; `mthp-64k`: 64 KiB
    /// multi-size THP folios; `absent`: the kernel offers no multi-size THP).
    #[serde(default)]
    pub large_folio: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TruthError {
    #[error("the truth has no step {0:?}")]
    MissingStep(String),
    #[error("the truth is inconsistent: {0}")]
    Inconsistent(String),
}

impl Truth {
    pub fn step(&self, name: &str) -> Result<&Step, TruthError> {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| TruthError::MissingStep(name.to_string()))
    }

    /// Page index of `address` when it lies in the buffer.
    pub fn page_of(&self, address: u64) -> Option<usize> {
        if address >= self.start && address < self.end && self.page_size > 0 {
            Some(((address - self.start) / self.page_size) as usize)
        } else {
            None
        }
    }

    pub fn in_range(&self, address: u64) -> bool {
        self.page_of(address).is_some()
    }

    /// Checks that the file describes what it claims (a hand-edited or
    /// truncated truth must not make a check pass).
    pub fn validate(&self) -> Result<(), TruthError> {
        let bad = |m: String| Err(TruthError::Inconsistent(m));
        if self.pages == 0 || self.page_size == 0 {
            return bad("no pages".into());
        }
        if self.end.checked_sub(self.start) != Some(self.pages as u64 * self.page_size) {
            return bad(format!(
                "[{:#x}, {:#x}) is not {} pages of {} bytes",
                self.start, self.end, self.pages, self.page_size
            ));
        }
        for s in &self.steps {
            if s.pfns_before.len() != self.pages || s.pfns_after.len() != self.pages {
                return bad(format!("step {} does not list {} PFNs", s.name, self.pages));
            }
            if s.changed != count_changed(&s.pfns_before, &s.pfns_after) {
                return bad(format!(
                    "step {}: changed count disagrees with its PFNs",
                    s.name
                ));
            }
        }
        Ok(())
    }

    /// One line of measured numbers, for people.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{} (pid {}): {}/{} pages copied (new PFN)",
                    s.name, s.pid, s.changed, self.pages
                )
            })
            .collect();
        if let Some(n) = self.swapped_out {
            parts.push(format!("swapped out before the write: {n}/{}", self.pages));
        }
        if let Some(old) = self.pipe_shows_old_data {
            parts.push(format!(
                "pipe shows old data: {}",
                if old { "yes" } else { "no" }
            ));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Truth {
        Truth {
            workload: "fork-child-writes".into(),
            kernel: "6.1.0".into(),
            page_size: 4096,
            pages: 2,
            start: 0x10000,
            end: 0x12000,
            parent_pid: 10,
            child_pid: Some(11),
            steps: vec![Step::measured(
                step::CHILD_WRITE,
                11,
                vec![1, 2],
                vec![3, 2],
            )],
            pipe_shows_old_data: None,
            swapped_out: None,
            swap_references: None,
            large_folio: None,
        }
    }

    #[test]
    fn round_trips_with_hex_addresses() {
        let t = sample();
        let text = serde_json::to_string(&t).unwrap();
        assert!(text.contains(r#""start":"0x10000""#));
        assert_eq!(serde_json::from_str::<Truth>(&text).unwrap(), t);
    }

    #[test]
    fn maps_addresses_to_pages() {
        let t = sample();
        assert_eq!(t.page_of(0x10000), Some(0));
        assert_eq!(t.page_of(0x11fff), Some(1));
        assert_eq!(t.page_of(0x12000), None);
        assert_eq!(t.page_of(0xffff), None);
    }

    #[test]
    fn validate_catches_inconsistencies() {
        assert_eq!(sample().validate(), Ok(()));
        let mut t = sample();
        t.steps[0].changed = 2;
        assert!(t.validate().is_err());
        let mut t = sample();
        t.end += 4096;
        assert!(t.validate().is_err());
        let mut t = sample();
        t.steps[0].pfns_after.pop();
        assert!(t.validate().is_err());
        assert_eq!(
            sample().step("nope"),
            Err(TruthError::MissingStep("nope".into()))
        );
        assert_eq!(sample().step(step::CHILD_WRITE).unwrap().changed, 1);
    }
}
