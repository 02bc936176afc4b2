//! `demo`: the four main workloads under one `cowtrace watch`, each
//! introduced in one sentence, so a newcomer sees the kernel's decisions and
//! cowtrace's live alerts side by side. `watch` prints the full report when
//! the command exits.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use crate::runner::run_inherited;
use crate::workloads::Workload;

/// Pages per workload: enough to see, small enough for a TCG guest.
const DEMO_PAGES: usize = 16;
/// Lets `watch` print a workload's alerts before the next intro.
const PAUSE: Duration = Duration::from_millis(700);

pub fn demo(cowtrace: &Path, self_exe: &Path, timeout: Duration) -> anyhow::Result<ExitCode> {
    println!(
        "cowtrace demo: four small programs make the kernel copy or reuse pages; each \
         measures the outcome itself (pagemap) and cowtrace shows what it saw, live."
    );
    let finished = run_inherited(
        Command::new(cowtrace)
            .args(["watch", "--format", "text", "--"])
            .arg(self_exe)
            .arg("demo-workloads"),
        timeout,
    )?;
    if finished.success() {
        println!("cowtrace demo: done.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("cowtrace demo: cowtrace watch {}", finished.describe());
        Ok(ExitCode::FAILURE)
    }
}

/// The traced side of the demo: runs the workloads one after another.
pub fn workloads() -> ExitCode {
    let mut ok = true;
    for w in Workload::MAIN {
        println!("{}", w.intro());
        match w.run(DEMO_PAGES) {
            Ok(truth) => println!("   measured: {}", truth.summary()),
            Err(e) => {
                ok = false;
                println!("   failed: {e:#}");
            }
        }
        std::thread::sleep(PAUSE);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
