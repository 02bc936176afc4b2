//! The test kernels: resolve the newest Debian package of each line, fetch
//! it with a private apt configuration, and cache the unpacked kernel.
//!
//! Exact point versions disappear from the archive over time, so nothing here
//! names one: each line is a package-name pattern, and the newest name the
//! archive offers wins. The machine's own apt state is never touched: apt runs
//! with its own sources, lists, cache and config under `~/.cache/cowtrace/apt`.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

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

/// One `apt-cache madison` row: which version a suite offers.
#[derive(Debug, PartialEq, Eq)]
pub struct Offer {
    pub version: String,
    pub suite: String,
}

/// Parses `apt-cache madison` (`pkg | version | uri suite/component arch Packages`).
pub fn parse_madison(text: &str) -> Vec<Offer> {
    text.lines()
        .filter_map(|l| {
            let mut cols = l.split('|').map(str::trim);
            let _pkg = cols.next()?;
            let version = cols.next()?.to_owned();
            let source = cols.next()?;
            let suite = source
                .split_whitespace()
                .nth(1)?
                .split('/')
                .next()?
                .to_owned();
            Some(Offer { version, suite })
        })
        .collect()
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
            let apt = apt
                .get_or_insert_with(|| PrivateApt::prepare().map_err(|e| format!("{e:#}")))
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            fetch(apt, line, refresh)
        };
        results.push((line, one()));
    }
    results
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

const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const SYSTEM_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Suites the kernel lines come from. 6.12 for bookworm has been published
/// in bookworm-backports and, later, in bookworm(-security) proper; all three
/// are listed and apt picks the newest.
const KERNEL_SUITES: &[(&str, &str)] = &[
    (MIRROR, "bullseye"),
    (SECURITY_MIRROR, "bullseye-security"),
    (MIRROR, "bookworm"),
    (SECURITY_MIRROR, "bookworm-security"),
    (MIRROR, "bookworm-backports"),
    (MIRROR, "sid"),
];

/// Suites trusted through the machine's keyring alone, used to obtain a
/// newer `debian-archive-keyring` for unstable (see [`PrivateApt::keyring`]).
const KEYRING_SUITES: &[(&str, &str)] = &[(MIRROR, "bookworm"), (MIRROR, "trixie")];

/// apt with its own state under `~/.cache/cowtrace/apt`.
struct PrivateApt {
    root: PathBuf,
    /// Sources for the kernel suites, signed-by the system keyring and the
    /// newer keyring from the archive.
    kernel_sources: PathBuf,
}

impl PrivateApt {
    fn prepare() -> Result<Self> {
        if !Path::new(SYSTEM_KEYRING).is_file() {
            bail!("{SYSTEM_KEYRING} is missing: install the debian-archive-keyring package");
        }
        let root = paths::cache_dir()?.join("apt");
        for d in [
            "lists/partial",
            "cache/archives/partial",
            "state",
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/preferences.d",
            "etc/trusted.gpg.d",
        ] {
            let p = root.join(d);
            fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        let status = root.join("state/status");
        if !status.exists() {
            fs::write(&status, "").with_context(|| format!("creating {}", status.display()))?;
        }
        let apt = PrivateApt {
            kernel_sources: root.join("etc/kernels.list"),
            root,
        };
        let newer = apt.keyring()?;
        let keyrings = format!("{SYSTEM_KEYRING},{}", newer.display());
        write_sources(&apt.kernel_sources, KERNEL_SUITES, &keyrings)?;
        println!("  apt: updating the kernel suites' package lists");
        apt.update(&apt.kernel_sources)?;
        Ok(apt)
    }

    /// The newest `debian-archive-keyring` the stable suites offer, unpacked.
    ///
    /// Unstable is signed with the keys of the newest releases; a bookworm
    /// machine's keyring may not hold them (today sid is still signed with the
    /// bookworm key too, which will not last). Fetching the newer keyring
    /// *package* through apt from suites the machine's keyring already
    /// verifies is sound: apt checks the .deb's SHA-256 against a Packages
    /// index whose InRelease signature it verified with keys we trust, so the
    /// new keys arrive through the same chain of trust Debian uses for a
    /// keyring upgrade.
    fn keyring(&self) -> Result<PathBuf> {
        let dir = self.root.join("keyring");
        let found = |d: &Path| {
            ["debian-archive-keyring.pgp", "debian-archive-keyring.gpg"]
                .into_iter()
                .map(|f| d.join("usr/share/keyrings").join(f))
                .find(|p| p.is_file())
        };
        if let Some(k) = found(&dir) {
            return Ok(k);
        }
        let sources = self.root.join("etc/keyring.list");
        write_sources(&sources, KEYRING_SUITES, SYSTEM_KEYRING)?;
        println!("  apt: fetching the newest debian-archive-keyring (to verify unstable)");
        self.update(&sources)?;
        let debs = self.root.join("keyring-deb");
        if debs.exists() {
            fs::remove_dir_all(&debs).with_context(|| format!("removing {}", debs.display()))?;
        }
        fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
        cmd::run(self.command("apt-get", &sources).current_dir(&debs).args([
            "-q",
            "download",
            "debian-archive-keyring",
        ]))
        .context("downloading debian-archive-keyring")?;
        for entry in fs::read_dir(&debs)? {
            let deb = entry?.path();
            cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))
                .with_context(|| format!("unpacking {}", deb.display()))?;
        }
        fs::remove_dir_all(&debs).ok();
        found(&dir).context("the debian-archive-keyring package holds no archive keyring")
    }

    /// apt-get/apt-cache with every path pointing into our own directory.
    fn command(&self, prog: &str, sources: &Path) -> Command {
        let r = |p: &str| self.root.join(p).display().to_string();
        let mut c = Command::new(prog);
        let opts = [
            format!("Dir::State={}", r("state")),
            format!("Dir::State::Lists={}", r("lists")),
            format!("Dir::State::status={}", r("state/status")),
            format!("Dir::Cache={}", r("cache")),
            format!("Dir::Etc::SourceList={}", sources.display()),
            format!("Dir::Etc::SourceParts={}", r("etc/sources.list.d")),
            format!("Dir::Etc::Parts={}", r("etc/apt.conf.d")),
            format!("Dir::Etc::Preferences={}", r("etc/preferences")),
            format!("Dir::Etc::PreferencesParts={}", r("etc/preferences.d")),
            format!("Dir::Etc::TrustedParts={}", r("etc/trusted.gpg.d")),
            format!("Dir::Etc::Trusted={}", r("etc/trusted.gpg")),
            "APT::Architecture=amd64".to_owned(),
            "APT::Architectures=amd64".to_owned(),
            "Acquire::Languages=none".to_owned(),
            // The mirror this machine reaches may be a frozen snapshot whose
            // Release files are past Valid-Until; signatures and hashes are
            // still checked, only freshness is not (the machine's own apt
            // config says the same).
            "Acquire::Check-Valid-Until=false".to_owned(),
            // Our files live under root's home, which the _apt user cannot
            // enter.
            "APT::Sandbox::User=root".to_owned(),
        ];
        for o in opts {
            c.arg("-o").arg(o);
        }
        if let Some(proxy) = machine_http_proxy() {
            c.arg("-o").arg(format!("Acquire::http::Proxy={proxy}"));
        }
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    fn update(&self, sources: &Path) -> Result<()> {
        cmd::output(
            self.command("apt-get", sources)
                .args(["-q", "update", "--error-on=any"]),
        )
        .map(drop)
        .context(
            "apt-get update with the private configuration failed (is deb.debian.org reachable?)",
        )
    }

    fn resolve(&self, line: KernelLine) -> Result<Resolution> {
        let out = cmd::output(self.command("apt-cache", &self.kernel_sources).args([
            "search",
            "--names-only",
            r"^linux-(image|binary)-[0-9].*-amd64$",
        ]))?;
        let names: Vec<&str> = out.lines().filter_map(|l| l.split(" - ").next()).collect();
        resolve(line, &names)
            .with_context(|| format!("no {line} kernel package in {}", suites_text(KERNEL_SUITES)))
    }

    /// `name=version (suite; also suite...)` for the version apt will fetch.
    fn describe(&self, package: &str) -> Result<String> {
        let out = cmd::output(
            self.command("apt-cache", &self.kernel_sources)
                .args(["madison", package]),
        )?;
        let offers = parse_madison(&out);
        let newest = offers
            .first()
            .with_context(|| format!("apt-cache madison lists no version of {package}"))?;
        let suites: Vec<&str> = offers.iter().map(|o| o.suite.as_str()).collect();
        Ok(format!(
            "{package}={} ({})",
            newest.version,
            suites.join(", ")
        ))
    }

    fn download(&self, packages: &[String], dir: &Path) -> Result<()> {
        cmd::run(
            self.command("apt-get", &self.kernel_sources)
                .current_dir(dir)
                .args(["-q", "download"])
                .args(packages),
        )
    }
}

fn suites_text(suites: &[(&str, &str)]) -> String {
    suites
        .iter()
        .map(|(_, s)| *s)
        .collect::<Vec<_>>()
        .join(", ")
}

fn write_sources(path: &Path, suites: &[(&str, &str)], keyrings: &str) -> Result<()> {
    let text: String = suites
        .iter()
        .map(|(uri, suite)| format!("deb [arch=amd64 signed-by={keyrings}] {uri} {suite} main\n"))
        .collect();
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The HTTP proxy the machine's own apt uses, if any: the private
/// configuration does not read /etc/apt/apt.conf.d, but must go out the
/// same way.
fn machine_http_proxy() -> Option<String> {
    let out = cmd::output(Command::new("apt-config").args(["shell", "P", "Acquire::http::Proxy"]))
        .ok()?;
    let v = out.trim().strip_prefix("P=")?.trim_matches('\'').to_owned();
    (!v.is_empty()).then_some(v)
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

    #[test]
    fn madison_rows_give_version_and_suite() {
        let text = "linux-image-6.12.117+deb12-amd64 | 6.12.117-1~deb12u1 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages\n\
                    linux-image-6.12.117+deb12-amd64 | 6.12.117-1~bpo12+1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages\n";
        assert_eq!(
            parse_madison(text),
            [
                Offer {
                    version: "6.12.117-1~deb12u1".into(),
                    suite: "bookworm-security".into()
                },
                Offer {
                    version: "6.12.117-1~bpo12+1".into(),
                    suite: "bookworm-backports".into()
                },
            ]
        );
    }
}
