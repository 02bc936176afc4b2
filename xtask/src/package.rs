//! `cargo xtask package`: a Debian package of the service.
//!
//! Built with `dpkg-deb` from a staged tree (no cargo-deb to install and
//! compile): the release binary, the hardened systemd unit, the default
//! config in /etc/cowtrace (a conffile), man pages generated from the clap
//! definitions (`cowtrace manpage`), and the documented defaults and
//! Prometheus rules under /usr/share/doc/cowtrace. The unit and the rules
//! are checked with `systemd-analyze` and `promtool` when installed.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use crate::{cmd, paths};

const SUMMARY: &str = "trace the kernel's copy-on-write, unshare and GUP pin decisions";

/// The files the package installs from the source tree: (source relative
/// to the workspace, destination in the package, mode).
const FILES: &[(&str, &str, u32)] = &[
    (
        "packaging/cowtrace.service",
        "lib/systemd/system/cowtrace.service",
        0o644,
    ),
    (
        "packaging/cowtrace.toml",
        "etc/cowtrace/cowtrace.toml",
        0o644,
    ),
    (
        "tracer/src/model/default-config.toml",
        "usr/share/doc/cowtrace/default-config.toml",
        0o644,
    ),
    (
        "packaging/prometheus-rules.yml",
        "usr/share/doc/cowtrace/prometheus-rules.yml",
        0o644,
    ),
];

/// The DEBIAN/control file. `installed_kib` is the staged tree's size.
pub fn control(version: &str, arch: &str, installed_kib: u64) -> String {
    format!(
        "Package: cowtrace\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: cowtrace maintainers <cowtrace@example.invalid>\n\
         Installed-Size: {installed_kib}\n\
         Depends: libc6\n\
         Section: admin\n\
         Priority: optional\n\
         Description: {SUMMARY}\n \
         cowtrace attaches eBPF probes to do_wp_page, the GUP paths and\n \
         copy_page_range, records whether the kernel reused, copied or unshared\n \
         a page and on what page state, and raises alerts such as pin-then-COW\n \
         (a pinned page copied away from its holder). The cowtrace service\n \
         sends alerts to the journal, files, syslog and webhooks, and serves\n \
         Prometheus metrics.\n"
    )
}

/// Bytes of the regular files under `dir`, in KiB rounded up.
fn tree_kib(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let md = entry.metadata()?;
        if md.is_dir() {
            total += tree_kib(&entry.path())? * 1024;
        } else {
            total += md.len();
        }
    }
    Ok(total.div_ceil(1024))
}

fn install(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dst.display()))?;
    Ok(())
}

/// Checks the unit with `systemd-analyze verify` (ExecStart pointed at
/// `binary`, which must exist for the check) and the exposure score with
/// `systemd-analyze security`; skipped when systemd-analyze is missing.
pub fn verify_unit(unit: &Path, binary: &Path) -> Result<Option<String>> {
    if !cmd::succeeds(Command::new("systemd-analyze").arg("--version")) {
        return Ok(None);
    }
    let dir = tempfile::tempdir()?;
    let text = fs::read_to_string(unit).with_context(|| format!("reading {}", unit.display()))?;
    let copy = dir.path().join("cowtrace.service");
    fs::write(
        &copy,
        text.replace("/usr/bin/cowtrace", &binary.display().to_string()),
    )?;
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .context("running systemd-analyze verify")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on unknown keys; any output is a finding.
    anyhow::ensure!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {}: {said}",
        unit.display()
    );
    let sec = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=30", "--no-pager"])
        .arg(&copy)
        .output()
        .context("running systemd-analyze security")?;
    let report = String::from_utf8_lossy(&sec.stdout).into_owned();
    let overall = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("")
        .trim()
        .to_string();
    anyhow::ensure!(
        sec.status.success(),
        "systemd-analyze security: exposure above 3.0: {overall}"
    );
    Ok(Some(overall))
}

/// `promtool check rules`; None when promtool is missing.
pub fn check_rules(rules: &Path) -> Result<Option<()>> {
    if !cmd::succeeds(Command::new("promtool").arg("--version")) {
        return Ok(None);
    }
    cmd::output(Command::new("promtool").args(["check", "rules"]).arg(rules))?;
    Ok(Some(()))
}

pub fn run() -> Result<PathBuf> {
    let root = paths::workspace_root();
    println!("== cargo build --release (cowtrace)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    cmd::run(Command::new(cargo).current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "tracer",
        "--bin",
        "cowtrace",
    ]))?;
    let binary = paths::target_dir().join("release").join("cowtrace");

    let version = env!("CARGO_PKG_VERSION");
    let arch = cmd::output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();
    let out_dir = paths::target_dir().join("package");
    let stage = out_dir.join(format!("cowtrace_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }

    install(&binary, &stage.join("usr/bin/cowtrace"), 0o755)?;
    for (src, dst, mode) in FILES {
        install(&root.join(src), &stage.join(dst), *mode)?;
    }
    let man = stage.join("usr/share/man/man1");
    cmd::run(Command::new(&binary).arg("manpage").arg(&man))?;
    for entry in fs::read_dir(&man)? {
        // -n: no name or time stamp in the header (reproducible).
        cmd::run(Command::new("gzip").args(["-9n"]).arg(entry?.path()))?;
    }

    let unit = stage.join("lib/systemd/system/cowtrace.service");
    match verify_unit(&unit, &binary)? {
        Some(overall) => println!("systemd-analyze: unit verified; {overall}"),
        None => println!("systemd-analyze not installed: unit not verified"),
    }
    match check_rules(&stage.join("usr/share/doc/cowtrace/prometheus-rules.yml"))? {
        Some(()) => println!("promtool: rules checked"),
        None => println!("promtool not installed: rules not checked"),
    }

    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    let kib = tree_kib(&stage)?;
    fs::write(debian.join("control"), control(version, &arch, kib))?;
    // dpkg keeps an edited config across upgrades.
    fs::write(debian.join("conffiles"), "/etc/cowtrace/cowtrace.toml\n")?;

    let deb = out_dir.join(format!("cowtrace_{version}_{arch}.deb"));
    cmd::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    println!(
        "{}",
        cmd::output(Command::new("dpkg-deb").arg("--info").arg(&deb))?
    );
    println!(
        "{}",
        cmd::output(Command::new("dpkg-deb").arg("--contents").arg(&deb))?
    );
    println!("package: {}", deb.display());
    Ok(deb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_has_the_required_fields() {
        let c = control("0.1.0", "amd64", 4242);
        for field in [
            "Package: cowtrace\n",
            "Version: 0.1.0\n",
            "Architecture: amd64\n",
            "Installed-Size: 4242\n",
            "Maintainer: ",
            "Description: trace the kernel",
        ] {
            assert!(c.contains(field), "{field:?} in\n{c}");
        }
        // Continuation lines start with a space; the file ends with a newline.
        let body: Vec<&str> = c
            .lines()
            .skip_while(|l| !l.starts_with("Description"))
            .skip(1)
            .collect();
        assert!(
            !body.is_empty() && body.iter().all(|l| l.starts_with(' ')),
            "{c}"
        );
        assert!(c.ends_with('\n'));
    }

    #[test]
    fn packaged_files_exist() {
        let root = paths::workspace_root();
        for (src, _, _) in FILES {
            assert!(root.join(src).is_file(), "{src}");
        }
    }

    /// The shipped unit passes `systemd-analyze verify` and scores at most
    /// 3.0 ("OK") in `systemd-analyze security`.
    #[test]
    fn the_unit_verifies() -> Result<()> {
        let root = paths::workspace_root();
        let unit = root.join("packaging/cowtrace.service");
        let text = fs::read_to_string(&unit)?;
        for line in [
            "Type=notify",
            "CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_SYS_RESOURCE CAP_SYSLOG",
            "AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_SYS_RESOURCE CAP_SYSLOG",
            "ProtectSystem=strict",
            "StateDirectory=cowtrace",
            "StateDirectoryMode=0700",
            "ExecReload=/bin/kill -HUP $MAINPID",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}");
        }
        match verify_unit(&unit, Path::new("/bin/true"))? {
            Some(overall) => println!("{overall}"),
            None => eprintln!("systemd-analyze not installed: verify skipped"),
        }
        Ok(())
    }

    #[test]
    fn the_prometheus_rules_check() -> Result<()> {
        let rules = paths::workspace_root().join("packaging/prometheus-rules.yml");
        if check_rules(&rules)?.is_none() {
            eprintln!("promtool not installed (cargo xtask setup installs it): check skipped");
        }
        Ok(())
    }
}
