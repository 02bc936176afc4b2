//! The eBPF object `tracer/build.rs` built, embedded in the binary.

use super::CaptureError;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/cowtrace.bpf.o"));

/// The embedded object, or an error saying how to get one.
pub fn ebpf_object() -> Result<&'static [u8], CaptureError> {
    if OBJECT.is_empty() {
        Err(CaptureError::NoObject)
    } else {
        Ok(OBJECT)
    }
}
