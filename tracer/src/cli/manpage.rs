//! `cowtrace manpage DIR` (hidden): writes cowtrace.1 and one
//! cowtrace-SUBCOMMAND.1 per subcommand, generated from the clap
//! definitions so the man pages cannot drift from `--help`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::{Cli, CliResult};

/// Write the man pages (used by `cargo xtask package`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write the pages into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Renders every page: (file name, roff text).
pub fn pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .context("rendering cowtrace.1")?;
    out.push(("cowtrace.1".to_string(), buf));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("cowtrace-{}", sub.get_name());
        let mut buf = Vec::new();
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("cowtrace {}", sub.get_name()));
        clap_mangen::Man::new(page)
            .render(&mut buf)
            .with_context(|| format!("rendering {name}.1"))?;
        out.push((format!("{name}.1"), buf));
    }
    Ok(out)
}

pub fn run(args: Args) -> CliResult {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    for (name, text) in pages()? {
        let path = args.dir.join(&name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pages_cover_the_subcommands_and_the_service_flags() -> anyhow::Result<()> {
        let pages = super::pages()?;
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "cowtrace.1",
            "cowtrace-watch.1",
            "cowtrace-record.1",
            "cowtrace-report.1",
        ] {
            assert!(names.contains(&want), "{names:?}");
        }
        assert!(!names.contains(&"cowtrace-manpage.1"));
        let watch = pages
            .iter()
            .find(|(n, _)| n == "cowtrace-watch.1")
            .map(|(_, t)| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_default();
        assert!(
            watch.starts_with(".ie") || watch.contains(".TH cowtrace-watch"),
            "{watch}"
        );
        for flag in ["metrics\\-listen", "sink", "config"] {
            assert!(watch.contains(flag), "no {flag} in\n{watch}");
        }
        Ok(())
    }
}
