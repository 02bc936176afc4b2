//! Trace files hold addresses, pfns and command names: owner-only, whatever
//! the umask. A separate test binary because the umask is process-wide.

mod trace_support;

use std::os::unix::fs::PermissionsExt;

use cowtrace::trace::{TraceWriter, WriterOptions, existing_parts};
use trace_support::*;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn files_are_0600_under_umask_0_including_rotated_and_preexisting_ones() {
    // SAFETY: umask(2) has no memory-safety preconditions.
    let old = unsafe { libc::umask(0) };
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("trace.cwt");
    std::fs::write(&base, b"old contents").unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        mode(&base),
        0o666,
        "umask 0 lets a plain create be world-readable"
    );

    let opts = WriterOptions {
        max_block_bytes: 1024,
        max_size: Some(2048),
        max_files: None,
    };
    let mut w = TraceWriter::create(&base, &meta(), opts).unwrap();
    for e in cow_walk(3000) {
        w.push(&e).unwrap();
    }
    w.finish().unwrap();
    // SAFETY: as above.
    unsafe { libc::umask(old) };

    let parts = existing_parts(&base).unwrap();
    assert!(parts.len() > 2, "{parts:?}");
    for p in parts {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}
