//! Runs a command with a deadline. A hanging or crashing `cowtrace` must
//! not hang the suite: the command gets its own process group and the whole
//! group is killed when the deadline passes.

use std::io::Read;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// How a command ended.
#[derive(Debug)]
pub struct Finished {
    /// `None`: killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The exit code, if the command exited normally.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// "exit 1", "signal 9", "timed out after 120 s".
    pub fn describe(&self) -> String {
        match self.status {
            None => format!("timed out after {} s", self.elapsed.as_secs()),
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "ended".to_string(),
            },
        }
    }

    /// Stderr on one line, shortened to its start and end, for a failure
    /// detail (the start usually names the error, the end its cause).
    pub fn stderr_excerpt(&self, max: usize) -> String {
        excerpt_one_line(&self.stderr, max)
    }
}

/// `text` with newlines folded to " / ", cut in the middle to `max` characters.
pub fn excerpt_one_line(text: &str, max: usize) -> String {
    let folded = text.trim().lines().collect::<Vec<_>>().join(" / ");
    let len = folded.chars().count();
    if len <= max {
        return folded;
    }
    let head: String = folded.chars().take(max / 2).collect();
    let tail: String = folded.chars().skip(len - (max - max / 2)).collect();
    format!("{head} … {tail}")
}

const POLL: Duration = Duration::from_millis(20);
/// After the command ends, how long its output pipes may stay open (held
/// by a leftover grandchild) before we stop waiting for them.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Runs `cmd` capturing stdout and stderr, killed at `timeout`.
pub fn run_captured(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Finished> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = spawn_in_group(cmd)?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_until(&mut child, start + timeout)?;
    Ok(Finished {
        status,
        stdout: out.recv_timeout(DRAIN_GRACE).unwrap_or_default(),
        stderr: err.recv_timeout(DRAIN_GRACE).unwrap_or_default(),
        elapsed: start.elapsed(),
    })
}

/// Runs `cmd` with the caller's stdio (for the demo), killed at `timeout`.
pub fn run_inherited(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Finished> {
    let start = Instant::now();
    let mut child = spawn_in_group(cmd)?;
    let status = wait_until(&mut child, start + timeout)?;
    Ok(Finished {
        status,
        stdout: String::new(),
        stderr: String::new(),
        elapsed: start.elapsed(),
    })
}

fn spawn_in_group(cmd: &mut Command) -> anyhow::Result<std::process::Child> {
    cmd.process_group(0)
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    rx
}

fn wait_until(
    child: &mut std::process::Child,
    deadline: Instant,
) -> anyhow::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // The group we created for it: the command and whatever it
            // started (a traced workload and its forked children).
            if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: signals only the process group we created.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            child.wait().context("reaping a killed child")?;
            return Ok(None);
        }
        thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let f = run_captured(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!((f.stdout.as_str(), f.stderr.as_str()), ("out\n", "err\n"));
        assert_eq!(f.code(), Some(3));
        assert_eq!(f.describe(), "exit 3");
        assert!(!f.success());
    }

    #[test]
    fn kills_the_whole_group_at_the_deadline() {
        // The grandchild keeps stdout open: without the group kill and the
        // drain grace this would hang.
        let f = run_captured(
            Command::new("sh").args(["-c", "sleep 30 & sleep 30; echo never"]),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(f.status.is_none());
        assert!(f.describe().starts_with("timed out"));
        assert!(f.elapsed < Duration::from_secs(10), "{:?}", f.elapsed);
        assert_eq!(f.stdout, "");
    }

    #[test]
    fn shortens_long_text_to_one_line() {
        assert_eq!(excerpt_one_line("a\nb\n", 10), "a / b");
        assert_eq!(excerpt_one_line("abcdefgh", 4), "ab … gh");
        assert_eq!(excerpt_one_line("abcdefgh", 5), "ab … fgh");
    }
}
