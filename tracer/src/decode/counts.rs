//! Lean mode's in-kernel counts (`tracer_common::counts`) into model terms.

use tracer_common::{
    counts::{CountKey, outcome},
    site,
};

use crate::model::{Comm, Counted, Decision, Site, Task};

/// One key's growth as the process that decided and what it decided;
/// `None` for a site or outcome this userspace does not know.
pub fn counted(key: &CountKey, comm: [u8; 16], delta: u64) -> Option<(Task, Counted)> {
    let site = match key.site {
        site::WP => Site::Wp,
        site::SWAP => Site::Swap,
        site::THP => Site::Thp,
        site::HUGETLB => Site::Hugetlb,
        _ => return None,
    };
    let decision = match key.outcome {
        outcome::REUSE => Decision::Reuse,
        outcome::COPY => Decision::Copy,
        outcome::OTHER => Decision::Other,
        _ => return None,
    };
    // The kernel keys by process; the thread that counted first is not kept.
    let task = Task {
        pid: key.tgid,
        tid: key.tgid,
        comm: Comm(comm),
    };
    Some((
        task,
        Counted {
            site,
            decision,
            count: delta,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(site: u8, outcome: u8) -> CountKey {
        CountKey {
            tgid: 42,
            site,
            outcome,
            _pad: [0; 2],
        }
    }

    #[test]
    fn keys_name_the_process_site_and_decision() {
        let (task, c) = counted(
            &key(site::WP, outcome::COPY),
            *b"app\0\0\0\0\0\0\0\0\0\0\0\0\0",
            7,
        )
        .expect("known key");
        assert_eq!((task.pid, task.comm.escaped().as_str()), (42, "app"));
        assert_eq!((c.site, c.decision, c.count), (Site::Wp, Decision::Copy, 7));
        let (_, c) = counted(&key(site::WP, outcome::REUSE), [0; 16], 1).expect("known key");
        assert_eq!(c.decision, Decision::Reuse);
        let (_, c) = counted(&key(site::WP, outcome::OTHER), [0; 16], 1).expect("known key");
        assert_eq!(c.decision, Decision::Other);
    }

    #[test]
    fn unknown_sites_and_outcomes_are_refused() {
        assert!(counted(&key(9, outcome::COPY), [0; 16], 1).is_none());
        assert!(counted(&key(site::WP, 0), [0; 16], 1).is_none());
    }
}
