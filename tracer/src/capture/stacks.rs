//! Kernel stacks referenced by GUP records, read from the `STACKS` map.

use aya::maps::{MapData, StackTraceMap};
use tracer_common::STACKS_MAP;

use super::{Capture, CaptureError};

pub struct MapStacks {
    map: StackTraceMap<MapData>,
}

impl MapStacks {
    pub fn new(capture: &mut Capture) -> Result<Self, CaptureError> {
        let map = capture.ebpf.take_map(STACKS_MAP).ok_or(CaptureError::Map {
            map: STACKS_MAP,
            detail: "missing".into(),
        })?;
        let map = StackTraceMap::try_from(map).map_err(|e| CaptureError::Map {
            map: STACKS_MAP,
            detail: e.to_string(),
        })?;
        Ok(Self { map })
    }

    /// Raw frame addresses, innermost first.
    pub fn frames(&self, id: u32) -> Option<Vec<u64>> {
        let st = self.map.get(&id, 0).ok()?;
        Some(
            st.frames()
                .iter()
                .map(|f| f.ip)
                .filter(|&ip| ip != 0)
                .collect(),
        )
    }
}
