//! `cargo xtask fuzz --seconds N`: a time-boxed run of the `trace_decode`
//! fuzz target (see `fuzz/README.md`).
//!
//! libFuzzer adds every input that finds new coverage to its first corpus
//! directory; the run works on a copy of the committed seeds in a temporary
//! directory, so the checked-in corpus only changes when someone means it
//! to. Crashes still land in `fuzz/artifacts/trace_decode/` with the command
//! to reproduce them. Not part of `cargo xtask test`: it needs nightly and
//! minutes of CPU to be worth anything.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cmd, paths};

pub const TARGET: &str = "trace_decode";
/// libFuzzer's limit on the fuzzer's memory: the reader's own bounds are
/// 16 MiB per block, so anything near this is a bug.
const RSS_LIMIT_MB: u32 = 1024;

/// The libFuzzer options for a run of `seconds`.
pub fn libfuzzer_args(seconds: u64) -> Vec<String> {
    vec![
        format!("-max_total_time={seconds}"),
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
        "-print_final_stats=1".to_owned(),
    ]
}

pub fn run(seconds: u64) -> Result<i32> {
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    ensure_cargo_fuzz()?;
    let root = paths::workspace_root();
    let seeds = root.join("fuzz").join("corpus").join(TARGET);
    let work = tempfile::Builder::new()
        .prefix("cowtrace-fuzz-")
        .tempdir()
        .context("creating a temporary corpus directory")?;
    let copied = copy_corpus(&seeds, work.path())?;
    println!(
        "fuzz: {copied} seeds from {} copied to {}",
        seeds.display(),
        work.path().display()
    );
    let mut c = Command::new("cargo");
    c.current_dir(&root)
        .args(["+nightly", "fuzz", "run", TARGET])
        .arg(work.path())
        .arg("--")
        .args(libfuzzer_args(seconds));
    println!("fuzz: {}", cmd::display(&c));
    let shown = cmd::display(&c);
    let status = c
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if status.success() {
        println!("fuzz: {TARGET}: no crash in {seconds} s");
        Ok(0)
    } else {
        println!(
            "fuzz: {TARGET} failed ({status}); a crashing input is in {}",
            root.join("fuzz").join("artifacts").join(TARGET).display()
        );
        Ok(1)
    }
}

/// Installs cargo-fuzz when `cargo fuzz` does not run.
fn ensure_cargo_fuzz() -> Result<()> {
    if cmd::succeeds(Command::new("cargo").args(["+nightly", "fuzz", "--version"])) {
        return Ok(());
    }
    println!("fuzz: cargo-fuzz is missing: installing it");
    cmd::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .context("installing cargo-fuzz")
}

/// Copies the regular files of `from` into `to`; returns how many.
fn copy_corpus(from: &Path, to: &Path) -> Result<usize> {
    let entries = std::fs::read_dir(from)
        .with_context(|| format!("reading the corpus {}", from.display()))?;
    let mut n = 0;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading the corpus {}", from.display()))?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let dest: PathBuf = to.join(entry.file_name());
        std::fs::copy(entry.path(), &dest)
            .with_context(|| format!("copying {} to {}", entry.path().display(), dest.display()))?;
        n += 1;
    }
    if n == 0 {
        bail!("the corpus {} has no seeds", from.display());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_is_time_boxed_and_memory_bounded() {
        let args = libfuzzer_args(42);
        assert!(args.contains(&"-max_total_time=42".to_owned()));
        assert!(args.iter().any(|a| a.starts_with("-rss_limit_mb=")));
    }

    #[test]
    fn only_files_are_copied_and_an_empty_corpus_is_an_error() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        assert!(copy_corpus(from.path(), to.path()).is_err());
        std::fs::write(from.path().join("seed-1"), b"CWT").unwrap();
        std::fs::create_dir(from.path().join("sub")).unwrap();
        assert_eq!(copy_corpus(from.path(), to.path()).unwrap(), 1);
        assert_eq!(std::fs::read(to.path().join("seed-1")).unwrap(), b"CWT");
        assert!(copy_corpus(&from.path().join("missing"), to.path()).is_err());
    }
}
