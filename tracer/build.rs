//! Builds the eBPF object (`tracer-ebpf`, target `bpfel-unknown-none`) with
//! the nightly toolchain and bpf-linker, and hands it to `src/capture` to
//! embed. `cargo xtask setup` installs both.
//!
//! The eBPF crate gets its own target directory (`target/bpf`), shared by
//! every host profile, so debug, release, test and clippy builds reuse one
//! eBPF build. Without bpf-linker the host crates still build (plain
//! `cargo build|test|clippy` on a fresh machine): the object is then empty
//! and `cowtrace` refuses to trace, saying how to fix it.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .parent()
        .expect("tracer/ is inside the workspace")
        .to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it")).join("cowtrace.bpf.o");

    for p in [
        "tracer-ebpf/src",
        "tracer-ebpf/Cargo.toml",
        "tracer-common/src",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=COWTRACE_BPF_OBJ");
    println!("cargo:rerun-if-env-changed=PATH");

    if let Some(prebuilt) = env::var_os("COWTRACE_BPF_OBJ") {
        fs::copy(&prebuilt, &out)
            .unwrap_or_else(|e| panic!("COWTRACE_BPF_OBJ={}: {e}", Path::new(&prebuilt).display()));
        return;
    }
    if !have("bpf-linker", &["--version"]) || !have("rustup", &["run", "nightly", "rustc", "-V"]) {
        println!(
            "cargo:warning=eBPF object not built (bpf-linker or the nightly toolchain is missing); \
             run `cargo xtask setup`. cowtrace will refuse to trace."
        );
        fs::write(&out, b"").expect("write OUT_DIR");
        return;
    }

    let target_dir = root.join("target").join("bpf");
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--package",
        "tracer-ebpf",
        "--bins",
    ])
    .args([
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
    ])
    .arg("--target-dir")
    .arg(&target_dir)
    .current_dir(&root)
    .env(
        "CARGO_ENCODED_RUSTFLAGS",
        [
            "--cfg=bpf_target_arch=\"x86_64\"",
            "-Cdebuginfo=2",
            "-Clink-arg=--btf",
        ]
        .join("\x1f"),
    );
    for var in [
        "RUSTC",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("spawn rustup run nightly cargo build");
    if !status.success() {
        panic!("building the eBPF object failed ({status}); see the errors above");
    }
    let obj = target_dir.join("bpfel-unknown-none/release/cowtrace");
    fs::copy(&obj, &out).unwrap_or_else(|e| panic!("copy {}: {e}", obj.display()));
}

fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
