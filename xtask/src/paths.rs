//! Where things live: the workspace, the cache, the build outputs.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// `~/.cache/cowtrace`: kernels, the private apt state, the LLVM prefix.
/// Kept outside the work tree so a fresh clone reuses what a previous one
/// fetched, and `cargo clean` does not throw kernels away.
pub fn cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set: cannot locate ~/.cache")?;
    Ok(PathBuf::from(home).join(".cache").join("cowtrace"))
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Scratch space for per-run artefacts (initramfs images) inside `target/`.
pub fn scratch_dir() -> PathBuf {
    target_dir().join("xtask")
}
