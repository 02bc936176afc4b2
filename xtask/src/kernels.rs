//! The test kernels: resolve the newest Debian package of each line, fetch
//! it with a private apt configuration, and cache the unpacked kernel.
//!
//! Exact point versions disappear from the archive over time, so nothing here
//! names one: each line is a package-name pattern, and the newest name the
//! archive offers wins. The machine's own apt state is never touched: apt runs
//! with its own sources, lists, cache and config under `~/.cache/cowtrace/apt`.

use std::fmt;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::apt::PrivateApt;
use crate::{cmd, paths};

/// A kernel generation the suite runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelLine {
    /// 5.10 LTS (Debian 11 "bullseye"): before anon-exclusive pages.
    V5_10,
    /// 6.1 LTS (Debian 12 "bookworm").
    V6_1,
    /// 6.12 LTS (bookworm's backport of Debian 13's kernel).
    V6_12,
    /// Whatever Debian unstable ships now.
    Newest,
}

impl KernelLine {
    pub const ALL: [KernelLine; 4] = [Self::V5_10, Self::V6_1, Self::V6_12, Self::Newest];

    pub fn name(self) -> &'static str {
        match self {
            Self::V5_10 => "5.10",
            Self::V6_1 => "6.1",
            Self::V6_12 => "6.12",
            Self::Newest => "newest",
        }
    }
}

impl fmt::Display for KernelLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for KernelLine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| {
                format!("unknown kernel line `{s}` (expected 5.10, 6.1, 6.12 or newest)")
            })
    }
}

/// What to download for one line: found by [`resolve`] from package names.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolution {
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// Packages holding the image and the modules.
    pub packages: Vec<String>,
}

/// Picks the newest kernel of `line` among the archive's package names.
///
/// Pure so the matching rules are unit-tested: 5.10 and 6.1 bump an ABI
/// number (`linux-image-6.1.0-NN-amd64`), 6.12 on bookworm bumps the point
/// release (`linux-image-6.12.NNN+deb12-amd64`), and unstable splits the
/// kernel into `linux-binary-<ver>` (image) and `linux-modules-<ver>` under a
/// `linux-image-<ver>` meta package.
pub fn resolve<S: AsRef<str>>(line: KernelLine, names: &[S]) -> Option<Resolution> {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    match line {
        KernelLine::V5_10 | KernelLine::V6_1 => {
            let base = if line == KernelLine::V5_10 {
                "5.10.0-"
            } else {
                "6.1.0-"
            };
            newest(&names, |n| {
                let abi = n
                    .strip_prefix("linux-image-")?
                    .strip_prefix(base)?
                    .strip_suffix("-amd64")?;
                Some(vec![number(abi)?])
            })
            .map(image_only)
        }
        KernelLine::V6_12 => newest(&names, |n| {
            let point = n
                .strip_prefix("linux-image-6.12.")?
                .strip_suffix("+deb12-amd64")?;
            Some(vec![number(point)?])
        })
        .map(image_only),
        KernelLine::Newest => {
            let release_of = |n: &str| n.strip_prefix("linux-image-").map(str::to_owned);
            let best = newest(&names, |n| {
                let release = n.strip_prefix("linux-image-")?;
                let (version, rest) = release.split_once("+deb")?;
                let debian = number(rest.strip_suffix("-amd64")?)?;
                // Only the split packaging: an image in linux-binary-<release>.
                if !names.contains(&format!("linux-binary-{release}").as_str()) {
                    return None;
                }
                let mut key = version.split('.').map(number).collect::<Option<Vec<_>>>()?;
                key.push(debian);
                Some(key)
            })?;
            let release = release_of(best)?;
            Some(Resolution {
                packages: vec![
                    format!("linux-binary-{release}"),
                    format!("linux-modules-{release}"),
                ],
                release,
            })
        }
    }
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn newest<'a>(names: &[&'a str], key: impl Fn(&str) -> Option<Vec<u64>>) -> Option<&'a str> {
    names
        .iter()
        .filter_map(|n| key(n).map(|k| (k, *n)))
        .max()
        .map(|(_, n)| n)
}

fn image_only(name: &str) -> Resolution {
    Resolution {
        release: name.trim_start_matches("linux-image-").to_owned(),
        packages: vec![name.to_owned()],
    }
}

/// A kernel unpacked in the cache, ready to boot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kernel {
    #[serde(skip)]
    pub dir: PathBuf,
    /// `uname -r` inside the guest.
    pub release: String,
    /// Image path relative to `dir`.
    vmlinuz: PathBuf,
    /// `lib/modules/<release>` relative to `dir`.
    modules: PathBuf,
    /// `name=version (suite)` of every package it came from.
    pub packages: Vec<String>,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.dir.join(&self.vmlinuz)
    }
    /// The unpacked `lib/modules/<release>` tree (modules.dep, kernel/...).
    pub fn modules_dir(&self) -> PathBuf {
        self.dir.join(&self.modules)
    }

    /// The content of `modules.dep`. The packages ship none (their postinst
    /// runs depmod), so it is generated here on first use.
    pub fn modules_dep(&self) -> Result<String> {
        let path = self.modules_dir().join("modules.dep");
        if !path.is_file() {
            depmod(&self.dir.join("root"), &self.release)?;
        }
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }
}

/// `depmod -b ROOT RELEASE`. Bookworm's depmod only looks in
/// `ROOT/lib/modules`; merged-/usr packages put modules in
/// `ROOT/usr/lib/modules`, so `ROOT/lib` becomes a link to `usr/lib`.
fn depmod(root: &Path, release: &str) -> Result<()> {
    let lib = root.join("lib");
    if lib.symlink_metadata().is_err() && root.join("usr/lib/modules").is_dir() {
        std::os::unix::fs::symlink("usr/lib", &lib)
            .with_context(|| format!("linking {}", lib.display()))?;
    }
    let depmod = ["/usr/sbin/depmod", "/sbin/depmod"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .context("depmod not found: run `cargo xtask setup` (installs kmod)")?;
    cmd::run(Command::new(depmod).arg("-b").arg(root).arg(release))
        .with_context(|| format!("generating modules.dep for {release}"))
}

const KERNEL_JSON: &str = "kernel.json";

fn kernels_dir() -> Result<PathBuf> {
    Ok(paths::cache_dir()?.join("kernels"))
}

/// The cached kernel of `line`, if a previous set-up completed it.
pub fn cached(line: KernelLine) -> Result<Option<Kernel>> {
    let dir = kernels_dir()?.join(line.name());
    let json = dir.join(KERNEL_JSON);
    if !json.exists() {
        return Ok(None);
    }
    let text = fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    let mut kernel: Kernel = serde_json::from_str(&text)
        .with_context(|| format!("{} is corrupt: delete it and re-run setup", json.display()))?;
    kernel.dir = dir;
    if !kernel.vmlinuz().is_file() {
        return Ok(None);
    }
    Ok(Some(kernel))
}

/// Like [`cached`], but an error telling what to run when it is missing.
pub fn require(line: KernelLine) -> Result<Kernel> {
    cached(line)?.with_context(|| {
        format!("kernel {line} is not fetched yet: run `cargo xtask setup --kernel {line}`")
    })
}

/// Makes sure every line in `lines` is cached, fetching what is missing (or
/// everything when `refresh`). Returns one result per line, in order, so a
/// caller can count a line that cannot be fetched as that line's failure.
pub fn ensure(lines: &[KernelLine], refresh: bool) -> Vec<(KernelLine, Result<Kernel>)> {
    // apt is prepared (lists updated) only when some line needs fetching, so
    // a fully cached set-up never touches the network.
    let mut apt: Option<Result<PrivateApt, String>> = None;
    let mut lock: Option<Result<CacheLock, String>> = None;
    let mut results = Vec::new();
    for &line in lines {
        let mut one = || -> Result<Kernel> {
            if !refresh && let Some(k) = cached(line)? {
                println!(
                    "  kernel {line:<6} cached: {} ({})",
                    k.release,
                    k.dir.display()
                );
                return Ok(k);
            }
            // Another `cargo xtask` may be fetching the same kernel: wait
            // for it, then look again.
            lock.get_or_insert_with(|| CacheLock::acquire().map_err(|e| format!("{e:#}")))
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if !refresh && let Some(k) = cached(line)? {
                println!(
                    "  kernel {line:<6} cached: {} (fetched meanwhile)",
                    k.release
                );
                return Ok(k);
            }
            let apt = apt
                .get_or_insert_with(|| PrivateApt::prepare(refresh).map_err(|e| format!("{e:#}")))
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            fetch(apt, line, refresh)
        };
        results.push((line, one()));
    }
    results
}

/// An exclusive `flock` on the kernel cache, released when dropped (the
/// kernel also releases it if we die).
struct CacheLock {
    _file: fs::File,
}

impl CacheLock {
    fn acquire() -> Result<Self> {
        let dir = kernels_dir()?;
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a descriptor we own; no memory is shared.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("locking {}", path.display()));
        }
        Ok(CacheLock { _file: file })
    }
}

fn fetch(apt: &PrivateApt, line: KernelLine, refresh: bool) -> Result<Kernel> {
    let res = apt
        .resolve(line)
        .with_context(|| format!("resolving the newest {line} kernel package"))?;
    if refresh
        && let Some(k) = cached(line)?
        && k.release == res.release
    {
        println!(
            "  kernel {line:<6} {} is still the newest (cached)",
            k.release
        );
        return Ok(k);
    }
    let mut packages = Vec::new();
    for p in &res.packages {
        packages.push(apt.describe(p)?);
    }
    println!("  kernel {line:<6} fetching {}", packages.join(", "));
    let final_dir = kernels_dir()?.join(line.name());
    let staging = kernels_dir()?.join(format!("{}.partial", line.name()));
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    let debs = staging.join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    apt.download(&res.packages, &debs)
        .with_context(|| format!("downloading {}", res.packages.join(" ")))?;
    let root = staging.join("root");
    for entry in fs::read_dir(&debs).with_context(|| format!("listing {}", debs.display()))? {
        let deb = entry?.path();
        cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))
            .with_context(|| format!("unpacking {}", deb.display()))?;
    }
    fs::remove_dir_all(&debs).with_context(|| format!("removing {}", debs.display()))?;
    let kernel = locate(&staging, &res.release, packages)?;
    kernel.modules_dep()?;
    fs::write(
        staging.join(KERNEL_JSON),
        serde_json::to_string_pretty(&kernel).context("serialising kernel.json")?,
    )
    .context("writing kernel.json")?;
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir)
            .with_context(|| format!("removing the old {}", final_dir.display()))?;
    }
    fs::rename(&staging, &final_dir)
        .with_context(|| format!("moving {} into place", staging.display()))?;
    let kernel = require(line)?;
    println!("  kernel {line:<6} ready: {}", kernel.vmlinuz().display());
    Ok(kernel)
}

/// Finds the image and the modules tree in an unpacked kernel: older
/// packages put them in `boot/` and `lib/modules/`, newer ones (merged /usr)
/// in `usr/lib/modules/<release>/`.
fn locate(dir: &Path, release: &str, packages: Vec<String>) -> Result<Kernel> {
    let rel = |p: String| PathBuf::from("root").join(p);
    let images = [
        format!("boot/vmlinuz-{release}"),
        format!("usr/lib/modules/{release}/vmlinuz"),
        format!("lib/modules/{release}/vmlinuz"),
    ];
    let vmlinuz = images
        .into_iter()
        .map(rel)
        .find(|p| dir.join(p).is_file())
        .with_context(|| format!("no vmlinuz for {release} in the unpacked packages"))?;
    let modules = [
        format!("lib/modules/{release}"),
        format!("usr/lib/modules/{release}"),
    ]
    .into_iter()
    .map(rel)
    .find(|p| dir.join(p).join("modules.dep").is_file() || dir.join(p).join("kernel").is_dir())
    .with_context(|| format!("no modules tree for {release} in the unpacked packages"))?;
    Ok(Kernel {
        dir: dir.to_path_buf(),
        release: release.to_owned(),
        vmlinuz,
        modules,
        packages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &[
        "linux-image-5.10.0-9-amd64",
        "linux-image-5.10.0-46-amd64",
        "linux-image-5.10.0-46-rt-amd64",
        "linux-image-6.1.0-9-amd64",
        "linux-image-6.1.0-56-amd64",
        "linux-image-6.1.0-56-cloud-amd64",
        "linux-image-6.12.9+deb12-amd64",
        "linux-image-6.12.117+deb12-amd64",
        "linux-image-6.12.43+deb12-amd64",
        "linux-image-6.12.200+deb12-cloud-amd64",
        "linux-image-6.16.3+deb13-amd64",
        "linux-image-7.2.13+deb14-amd64",
        "linux-binary-7.2.13+deb14-amd64",
        "linux-image-7.10.1+deb14-amd64",
        "linux-binary-7.10.1+deb14-amd64",
        "linux-binary-7.10.1+deb14-rt-amd64",
        "linux-image-amd64",
    ];

    #[test]
    fn picks_the_highest_abi_number_not_the_lexically_last() {
        let r = resolve(KernelLine::V5_10, NAMES).unwrap();
        assert_eq!(r.release, "5.10.0-46-amd64");
        assert_eq!(r.packages, ["linux-image-5.10.0-46-amd64"]);
        let r = resolve(KernelLine::V6_1, NAMES).unwrap();
        assert_eq!(r.release, "6.1.0-56-amd64");
    }

    #[test]
    fn the_6_12_line_ignores_flavours_and_other_releases() {
        let r = resolve(KernelLine::V6_12, NAMES).unwrap();
        assert_eq!(r.release, "6.12.117+deb12-amd64");
    }

    #[test]
    fn newest_needs_the_split_packaging_and_compares_numerically() {
        let r = resolve(KernelLine::Newest, NAMES).unwrap();
        assert_eq!(r.release, "7.10.1+deb14-amd64");
        assert_eq!(
            r.packages,
            [
                "linux-binary-7.10.1+deb14-amd64",
                "linux-modules-7.10.1+deb14-amd64"
            ]
        );
        // Without any linux-binary-* package there is no newest kernel.
        let old: Vec<&str> = NAMES
            .iter()
            .copied()
            .filter(|n| !n.contains("binary"))
            .collect();
        assert_eq!(resolve(KernelLine::Newest, &old), None);
    }

    #[test]
    fn lines_parse_and_print() {
        for l in KernelLine::ALL {
            assert_eq!(l.name().parse::<KernelLine>(), Ok(l));
        }
        assert!("6.2".parse::<KernelLine>().is_err());
    }
}
