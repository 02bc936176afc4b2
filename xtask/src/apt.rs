//! apt with a private configuration: its own sources, lists, cache and
//! config under `~/.cache/cowtrace/apt`, so fetching test kernels never
//! touches the machine's apt state.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::kernels::{KernelLine, Resolution, resolve};
use crate::{cmd, paths};

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
pub struct PrivateApt {
    root: PathBuf,
    /// Sources for the kernel suites, signed-by the system keyring and the
    /// newer keyring from the archive.
    kernel_sources: PathBuf,
}

impl PrivateApt {
    /// Sets up the private apt and updates its lists; `refresh` also
    /// re-fetches the archive keyring.
    pub fn prepare(refresh: bool) -> Result<Self> {
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
        let newer = apt.keyring(refresh)?;
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
    fn keyring(&self, refresh: bool) -> Result<PathBuf> {
        let dir = self.root.join("keyring");
        let found = |d: &Path| {
            ["debian-archive-keyring.pgp", "debian-archive-keyring.gpg"]
                .into_iter()
                .map(|f| d.join("usr/share/keyrings").join(f))
                .find(|p| p.is_file())
        };
        if !refresh && let Some(k) = found(&dir) {
            return Ok(k);
        }
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
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

    pub fn resolve(&self, line: KernelLine) -> Result<Resolution> {
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
    pub fn describe(&self, package: &str) -> Result<String> {
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

    pub fn download(&self, packages: &[String], dir: &Path) -> Result<()> {
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
