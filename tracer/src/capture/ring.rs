//! The ring buffer as an async source: wait for readiness, drain every
//! record, clear readiness. No polling with sleeps.

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tracer_common::EVENTS_MAP;

use super::{Capture, CaptureError};

pub struct RingSource {
    fd: AsyncFd<RingBuf<MapData>>,
}

impl RingSource {
    /// Takes the `EVENTS` ring buffer out of the capture.
    pub fn new(capture: &mut Capture) -> Result<Self, CaptureError> {
        let map = capture.ebpf.take_map(EVENTS_MAP).ok_or(CaptureError::Map {
            map: EVENTS_MAP,
            detail: "missing".into(),
        })?;
        let ring = RingBuf::try_from(map).map_err(|e| CaptureError::Map {
            map: EVENTS_MAP,
            detail: e.to_string(),
        })?;
        // SAFETY: the ring buffer owns its map fd, which stays open and the
        // same for as long as the `RingBuf` lives, i.e. inside the AsyncFd.
        let fd = unsafe { AsyncFd::register(ring) }.map_err(|e| CaptureError::Ring(e.into()))?;
        Ok(Self { fd })
    }

    /// Waits until records are available (cancel-safe).
    pub async fn readable(&self) -> Result<(), CaptureError> {
        let mut guard = self.fd.readable().await.map_err(CaptureError::Ring)?;
        guard.clear_ready();
        Ok(())
    }

    /// Hands every record currently in the buffer to `f`; returns how many.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let ring = self.fd.get_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            f(&item);
            n += 1;
        }
        n
    }
}
