//! Per-hook, per-CPU loss and error counters kept by the eBPF side.

use aya::maps::{MapData, PerCpuArray};
use tracer_common::{ERRORS_MAP, LOST_MAP, hook};

use super::{Capture, CaptureError};

/// Counts that grew since the previous poll, for one hook on one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossDelta {
    pub hook: u16,
    pub cpu: u32,
    pub dropped: u64,
    pub errors: u64,
}

pub struct LossCounters {
    lost: PerCpuArray<MapData, u64>,
    errors: PerCpuArray<MapData, u64>,
    /// Last seen totals, `[hook][cpu] -> (dropped, errors)`.
    seen: Vec<Vec<(u64, u64)>>,
}

impl LossCounters {
    pub fn new(capture: &mut Capture) -> Result<Self, CaptureError> {
        let take = |c: &mut Capture, name: &'static str| {
            let map = c.ebpf.take_map(name).ok_or(CaptureError::Map {
                map: name,
                detail: "missing".into(),
            })?;
            PerCpuArray::try_from(map).map_err(|e| CaptureError::Map {
                map: name,
                detail: e.to_string(),
            })
        };
        let lost = take(capture, LOST_MAP)?;
        let errors = take(capture, ERRORS_MAP)?;
        Ok(Self {
            lost,
            errors,
            seen: vec![Vec::new(); hook::COUNT as usize],
        })
    }

    /// Reads every counter and returns the non-zero growth since the last call.
    pub fn poll(&mut self) -> Vec<LossDelta> {
        let mut out = Vec::new();
        for h in 0..hook::COUNT {
            let (Ok(lost), Ok(errors)) = (self.lost.get(&h, 0), self.errors.get(&h, 0)) else {
                continue;
            };
            let seen = &mut self.seen[h as usize];
            for (cpu, (&l, &e)) in lost.iter().zip(errors.iter()).enumerate() {
                if seen.len() <= cpu {
                    seen.resize(cpu + 1, (0, 0));
                }
                let (pl, pe) = seen[cpu];
                if l > pl || e > pe {
                    out.push(LossDelta {
                        hook: h as u16,
                        cpu: cpu as u32,
                        dropped: l.saturating_sub(pl),
                        errors: e.saturating_sub(pe),
                    });
                    seen[cpu] = (l, e);
                }
            }
        }
        out
    }
}
