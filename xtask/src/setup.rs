//! `cargo xtask setup`: install everything the build and the VM tests need.
//!
//! Every step first checks whether its work is already done, so a second run
//! takes seconds; every failure says which step failed and what to do.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::kernels::{self, KernelLine};
use crate::{cmd, paths};

/// Debian packages and why each is needed.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "boots the test kernels"),
    ("busybox-static", "the guest's whole userland"),
    (
        "prometheus",
        "promtool: lints the metrics exposition and the alerting rules",
    ),
    ("gcc", "the C linker rustc and bpf-linker's build need"),
    ("libc6-dev", "crt files and libc for linking host binaries"),
    ("debian-archive-keyring", "verifies the kernel packages"),
    ("kmod", "depmod, to index the test kernels' modules"),
    (
        "xz-utils",
        "unpacks xz-compressed kernel modules for the guest",
    ),
];

/// Runs every step; kernels for `lines`. Fails listing every failed step.
pub fn run(refresh: bool, lines: &[KernelLine]) -> Result<()> {
    tools()?;
    let failed: Vec<String> = kernel_step(lines, refresh)
        .into_iter()
        .filter_map(|(line, r)| r.err().map(|e| format!("kernel {line}: {e:#}")))
        .collect();
    if !failed.is_empty() {
        bail!(
            "setup could not fetch every kernel:\n  {}\nre-run `cargo xtask setup` once the archive is reachable",
            failed.join("\n  ")
        );
    }
    println!("setup: done");
    Ok(())
}

/// The tool steps (apt packages, rust-src, bpf-linker), without kernels.
pub fn tools() -> Result<()> {
    step("apt packages", apt_packages)?;
    step("nightly rust-src", rust_src)?;
    step("bpf-linker", bpf_linker)?;
    Ok(())
}

/// The kernel step, one result per line.
pub fn kernel_step(
    lines: &[KernelLine],
    refresh: bool,
) -> Vec<(KernelLine, Result<kernels::Kernel>)> {
    println!(
        "setup: test kernels ({})",
        if refresh {
            "re-resolving"
        } else {
            "cache first"
        }
    );
    let started = Instant::now();
    let results = kernels::ensure(lines, refresh);
    println!(
        "setup: test kernels: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    results
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("setup: {name}");
    let started = Instant::now();
    f().with_context(|| format!("setup step `{name}` failed"))?;
    println!(
        "setup: {name}: ok ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn installed(package: &str) -> bool {
    cmd::output(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", package]))
        .is_ok_and(|s| s.trim() == "installed")
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(p, _)| !installed(p))
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        println!(
            "  all installed: {}",
            APT_PACKAGES
                .iter()
                .map(|(p, _)| *p)
                .collect::<Vec<_>>()
                .join(" ")
        );
        return Ok(());
    }
    for (p, why) in APT_PACKAGES.iter().filter(|(p, _)| missing.contains(p)) {
        println!("  missing {p} ({why})");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "not root: install them with `sudo apt-get install {}`",
            missing.join(" ")
        );
    }
    let apt = || {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    cmd::run(apt().args(["-q", "update"]))
        .context("apt-get update failed: check /etc/apt/sources.list.d and the network")?;
    cmd::run(
        apt()
            .args(["-q", "-y", "install", "--no-install-recommends"])
            .args(&missing),
    )
    .with_context(|| format!("could not install {}", missing.join(" ")))?;
    Ok(())
}

fn rust_src() -> Result<()> {
    let listed = cmd::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("rustup with a nightly toolchain is required (rustup toolchain install nightly)")?;
    if listed.lines().any(|l| l.starts_with("rust-src")) {
        println!("  already installed");
        return Ok(());
    }
    cmd::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

/// bpf-linker must link the same LLVM major as the nightly rustc that emits
/// the bitcode (22). Debian has no LLVM 22, but the toolchain ships
/// `libLLVM.so.22*`; llvm-sys only needs a prefix with a `bin/llvm-config`
/// that exists and a `lib/libLLVM.so`, so we build such a prefix from
/// symlinks. The linker keeps an rpath to it: the prefix must stay put.
fn bpf_linker() -> Result<()> {
    if cmd::succeeds(Command::new("bpf-linker").arg("--version")) {
        println!("  already installed");
        return Ok(());
    }
    let libllvm = nightly_libllvm()?;
    let prefix = paths::cache_dir()?.join("llvm-22");
    make_llvm_prefix(&prefix, &libllvm)?;
    println!(
        "  building bpf-linker against {} (takes a few minutes)",
        libllvm.display()
    );
    cmd::run(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", &prefix),
    )
    .context("cargo install bpf-linker failed (see above)")?;
    if !cmd::succeeds(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker was installed but does not run: is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

fn nightly_libllvm() -> Result<PathBuf> {
    let sysroot = cmd::output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("no nightly toolchain: rustup toolchain install nightly")?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let mut found: Vec<PathBuf> = fs::read_dir(&lib)
        .with_context(|| format!("listing {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.22"))
        })
        .collect();
    found.sort();
    found.pop().with_context(|| {
        format!(
            "no libLLVM.so.22* in {}: the nightly must use LLVM 22",
            lib.display()
        )
    })
}

fn make_llvm_prefix(prefix: &Path, libllvm: &Path) -> Result<()> {
    let bin = prefix.join("bin");
    let lib = prefix.join("lib");
    fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let config = bin.join("llvm-config");
    fs::write(&config, "").with_context(|| format!("writing {}", config.display()))?;
    fs::set_permissions(&config, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", config.display()))?;
    let soname = libllvm
        .file_name()
        .context("libLLVM path has no file name")?;
    for link in [lib.join("libLLVM.so"), lib.join(soname)] {
        if link.symlink_metadata().is_ok() {
            fs::remove_file(&link).with_context(|| format!("replacing {}", link.display()))?;
        }
        symlink(libllvm, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}
