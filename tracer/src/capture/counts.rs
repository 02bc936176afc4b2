//! Lean mode's in-kernel counts (`COUNTS`): per process, site and outcome,
//! the ordinary decisions the kernel side counted instead of recording.
//!
//! The map only grows; userspace turns growth into deltas. Keys of
//! processes that are gone are deleted once they have been read idle, so a
//! long-running service does not fill the map with dead pids.

use std::collections::HashMap;

use aya::maps::{MapData, PerCpuHashMap};
use tracer_common::counts::{COUNTS_MAP, CountKey, CountValue};

use super::{Capture, CaptureError};

/// Growth of one key since the previous poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountDelta {
    pub key: CountKey,
    pub comm: [u8; 16],
    pub delta: u64,
}

/// Polls after which an unchanged key of a dead process is deleted.
const IDLE_POLLS_BEFORE_DELETE: u32 = 4;

/// The pure part: totals seen per key, deltas, idleness.
#[derive(Debug, Default)]
pub struct CountTotals {
    seen: HashMap<CountKey, (u64, u32)>,
}

impl CountTotals {
    /// Feeds one key's current total (summed over CPUs); returns its growth.
    /// A total below the last one (the key was deleted and re-created)
    /// counts from zero.
    pub fn update(&mut self, key: CountKey, total: u64) -> u64 {
        let e = self.seen.entry(key).or_insert((0, 0));
        let delta = if total >= e.0 { total - e.0 } else { total };
        e.0 = total;
        e.1 = if delta == 0 { e.1.saturating_add(1) } else { 0 };
        delta
    }

    /// Keys idle for long enough whose process `alive` says is gone; they
    /// are forgotten here and should be deleted from the map.
    pub fn reap(&mut self, alive: impl Fn(u32) -> bool) -> Vec<CountKey> {
        let dead: Vec<CountKey> = self
            .seen
            .iter()
            .filter(|(k, (_, idle))| *idle >= IDLE_POLLS_BEFORE_DELETE && !alive(k.tgid))
            .map(|(k, _)| *k)
            .collect();
        for k in &dead {
            self.seen.remove(k);
        }
        dead
    }
}

pub struct CountsReader {
    map: PerCpuHashMap<MapData, CountKey, CountValue>,
    totals: CountTotals,
}

impl CountsReader {
    pub fn new(capture: &mut Capture) -> Result<Self, CaptureError> {
        let map = capture.ebpf.take_map(COUNTS_MAP).ok_or(CaptureError::Map {
            map: COUNTS_MAP,
            detail: "missing".into(),
        })?;
        let map = PerCpuHashMap::try_from(map).map_err(|e| CaptureError::Map {
            map: COUNTS_MAP,
            detail: e.to_string(),
        })?;
        Ok(Self {
            map,
            totals: CountTotals::default(),
        })
    }

    /// Reads every key and returns the non-zero growth since the last call.
    pub fn poll(&mut self) -> Vec<CountDelta> {
        let mut out = Vec::new();
        for item in self.map.iter() {
            let Ok((key, values)) = item else { continue };
            let mut total = 0u64;
            let mut comm = [0u8; 16];
            for v in values.iter() {
                total = total.saturating_add(v.count);
                if comm[0] == 0 {
                    comm = v.comm;
                }
            }
            let delta = self.totals.update(key, total);
            if delta > 0 {
                out.push(CountDelta { key, comm, delta });
            }
        }
        for key in self
            .totals
            .reap(|tgid| std::path::Path::new(&format!("/proc/{tgid}")).exists())
        {
            let _ = self.map.remove(&key);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tgid: u32) -> CountKey {
        CountKey {
            tgid,
            site: 0,
            outcome: 1,
            _pad: [0; 2],
        }
    }

    #[test]
    fn deltas_are_growth_since_the_last_read() {
        let mut t = CountTotals::default();
        assert_eq!(t.update(key(1), 5), 5);
        assert_eq!(t.update(key(1), 5), 0);
        assert_eq!(t.update(key(1), 12), 7);
        assert_eq!(t.update(key(2), 3), 3);
    }

    #[test]
    fn a_recreated_key_counts_from_zero() {
        let mut t = CountTotals::default();
        t.update(key(1), 100);
        assert_eq!(t.update(key(1), 4), 4);
    }

    #[test]
    fn only_idle_keys_of_dead_processes_are_reaped() {
        let mut t = CountTotals::default();
        t.update(key(1), 1);
        t.update(key(2), 1);
        for _ in 0..IDLE_POLLS_BEFORE_DELETE {
            t.update(key(1), 1);
            t.update(key(2), 1);
        }
        // Process 1 is alive, 2 is gone.
        assert_eq!(t.reap(|tgid| tgid == 1), vec![key(2)]);
        assert!(t.reap(|_| false).contains(&key(1)));
        // A reaped key that reappears starts over.
        assert_eq!(t.update(key(2), 2), 2);
    }

    #[test]
    fn a_busy_key_is_never_reaped() {
        let mut t = CountTotals::default();
        for n in 1..=10 {
            t.update(key(1), n);
        }
        assert!(t.reap(|_| false).is_empty());
    }
}
