//! `cargo xtask demo`: boot one kernel and run `cow-scenarios demo` in it.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::kernels::KernelLine;
use crate::vm::{self, VmConfig};
use crate::{build, setup};

/// The demo narrates several scenarios; give it more room than one command.
const DEMO_TIMEOUT: Duration = Duration::from_secs(900);

pub fn run(line: KernelLine) -> Result<i32> {
    setup::tools()?;
    let kernel = setup::kernel_step(&[line], false)
        .pop()
        .map(|(_, r)| r)
        .context("no kernel result")??;
    let bins = build::build()?;
    bins.scenarios
        .as_ref()
        .context("the demo needs the cow-scenarios example (tracer/examples/cow-scenarios/), which does not exist yet")?;
    let files = bins.all();
    let cmd = ["cow-scenarios".to_owned(), "demo".to_owned()];
    let cfg = VmConfig {
        timeout: DEMO_TIMEOUT,
        ..VmConfig::new(&kernel, &files, &cmd)
    };
    eprintln!("demo: booting {line} ({})", kernel.release);
    let run = vm::run(&cfg, &mut |l| println!("{l}"))?;
    eprintln!("demo: {line}: {}", run.describe());
    Ok(run.exit_code())
}
