//! Build the guest binaries once, on the host, in release mode.
//!
//! They run in the guest linked against the host's glibc; `vm` copies the
//! shared libraries `ldd` lists next to them.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::{cmd, paths};

/// Paths of the freshly built guest binaries.
#[derive(Debug, Clone)]
pub struct GuestBins {
    pub cowtrace: PathBuf,
    /// `None` while the `cow-scenarios` example does not exist yet.
    pub scenarios: Option<PathBuf>,
}

impl GuestBins {
    pub fn all(&self) -> Vec<PathBuf> {
        std::iter::once(self.cowtrace.clone())
            .chain(self.scenarios.clone())
            .collect()
    }

    pub fn report(&self) {
        println!("build: {}", self.cowtrace.display());
        match &self.scenarios {
            Some(p) => println!("build: {}", p.display()),
            None => println!(
                "build: cow-scenarios does not exist yet (tracer/examples/cow-scenarios/): not built"
            ),
        }
    }
}

/// The guest binaries a previous build left, without building.
pub fn existing() -> Vec<PathBuf> {
    let release = paths::target_dir().join("release");
    [
        release.join("cowtrace"),
        release.join("examples").join("cow-scenarios"),
    ]
    .into_iter()
    .filter(|p| p.is_file())
    .collect()
}

const SCENARIOS_DIR: &str = "tracer/examples/cow-scenarios";

/// `cargo build --release -p tracer --bin cowtrace [--example cow-scenarios]`.
pub fn build() -> Result<GuestBins> {
    let root = paths::workspace_root();
    let has_scenarios = root.join(SCENARIOS_DIR).join("main.rs").is_file();
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(&root)
        .args(["build", "--release", "-p", "tracer", "--bin", "cowtrace"]);
    if has_scenarios {
        c.args(["--example", "cow-scenarios"]);
    } else {
        eprintln!("build: {SCENARIOS_DIR}/main.rs does not exist yet: building cowtrace only");
    }
    eprintln!("build: {}", cmd::display(&c));
    cmd::run(&mut c)
        .context("building the guest binaries failed (see the compiler output above)")?;
    let release = paths::target_dir().join("release");
    let bins = GuestBins {
        cowtrace: release.join("cowtrace"),
        scenarios: has_scenarios.then(|| release.join("examples").join("cow-scenarios")),
    };
    for p in bins.all() {
        if !p.is_file() {
            anyhow::bail!("cargo reported success but {} is missing", p.display());
        }
    }
    Ok(bins)
}
