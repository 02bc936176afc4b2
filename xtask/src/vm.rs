//! Boot a test kernel under QEMU with a generated initramfs, run one command
//! in it as root, and report how it ended.
//!
//! Guest protocol: `/init` prints `<ready marker>` once the file systems are
//! mounted, then runs the command and prints `<exit marker> <status>` before
//! powering off. Both markers carry a per-run nonce so a command's own output
//! cannot fake them. Anything else the guest prints is streamed to the caller
//! line by line and also collected. Kernel crashes are recognised in the
//! console output; a guest that neither finishes nor crashes before the
//! deadline is a hang. QEMU never outlives the run: it is killed on every
//! exit path (including Ctrl-C, and the death of this process through
//! `PR_SET_PDEATHSIG`).

use std::io::{BufRead, BufReader, BufWriter, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::build;
use crate::kernels::{self, Kernel, KernelLine};
use crate::{cmd, guest, paths};

pub const DEFAULT_TIMEOUT_S: u64 = 300;
pub const DEFAULT_MEMORY_MIB: u32 = 1024;

/// Exit codes of `cargo xtask vm` when the command's own status is not known.
pub const EXIT_KERNEL_CRASH: i32 = 120;
pub const EXIT_QEMU_FAILED: i32 = 121;
pub const EXIT_TIMEOUT: i32 = 124;
pub const EXIT_INTERRUPTED: i32 = 130;

/// Console lines that mean the kernel is broken, whatever the command does.
const CRASH_PATTERNS: &[&str] = &["Kernel panic", "BUG:", "Oops:", "general protection fault"];

/// After a crash line, how long to keep collecting the backtrace.
const CRASH_GRACE: Duration = Duration::from_secs(5);
/// After the exit marker, how long `poweroff -f` may take.
const POWEROFF_GRACE: Duration = Duration::from_secs(15);

/// What to boot and run.
pub struct VmConfig<'a> {
    pub kernel: &'a Kernel,
    /// Copied to /usr/local/bin with the shared libraries they need.
    pub bins: &'a [PathBuf],
    /// Host files or folders copied to the same absolute path.
    pub includes: &'a [PathBuf],
    /// Kernel modules (names) copied with their dependencies.
    pub modules: &'a [String],
    pub timeout: Duration,
    pub memory_mib: u32,
    /// Extra QEMU arguments (e.g. `-icount shift=0,sleep=off` for
    /// deterministic guest time in benchmarks).
    pub qemu_args: &'a [String],
    /// Extra kernel command-line words, after the defaults.
    pub kernel_args: &'a [String],
    pub cmd: &'a [String],
}

impl<'a> VmConfig<'a> {
    /// Runs `cmd` with `bins` in the guest, defaults for everything else;
    /// adjust the public fields for more.
    pub fn new(kernel: &'a Kernel, bins: &'a [PathBuf], cmd: &'a [String]) -> Self {
        VmConfig {
            kernel,
            bins,
            includes: &[],
            modules: &[],
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_S),
            memory_mib: DEFAULT_MEMORY_MIB,
            qemu_args: &[],
            kernel_args: &[],
            cmd,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEnd {
    /// The command finished with this status.
    Exited(i32),
    /// The kernel printed this crash line (the run is a failure even if the
    /// command went on to finish).
    KernelCrash(String),
    /// Neither finished nor crashed before the deadline.
    Timeout,
    /// QEMU stopped without the exit marker (bad kernel image, init died...).
    QemuStopped(String),
    /// Ctrl-C / SIGTERM on the host.
    Interrupted,
}

/// The outcome of one boot.
#[derive(Debug)]
pub struct VmRun {
    pub end: VmEnd,
    /// Every guest console line (protocol markers removed), in order.
    pub output: Vec<String>,
    /// Time from QEMU's start to the guest's ready marker.
    pub boot: Option<Duration>,
    pub elapsed: Duration,
}

impl VmRun {
    /// The exit code `cargo xtask vm` reports for this run.
    pub fn exit_code(&self) -> i32 {
        match &self.end {
            VmEnd::Exited(rc) => *rc,
            VmEnd::KernelCrash(_) => EXIT_KERNEL_CRASH,
            VmEnd::Timeout => EXIT_TIMEOUT,
            VmEnd::QemuStopped(_) => EXIT_QEMU_FAILED,
            VmEnd::Interrupted => EXIT_INTERRUPTED,
        }
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        let boot = self.boot.map_or("never booted".to_owned(), |b| {
            format!("booted in {:.1} s", b.as_secs_f64())
        });
        let total = self.elapsed.as_secs_f64();
        match &self.end {
            VmEnd::Exited(rc) => {
                format!("command exited with status {rc} ({boot}, {total:.1} s in all)")
            }
            VmEnd::KernelCrash(l) => format!("KERNEL CRASH: {l} ({boot}, {total:.1} s)"),
            VmEnd::Timeout => format!("HANG: no result after {total:.0} s ({boot}); QEMU killed"),
            VmEnd::QemuStopped(why) => {
                format!("QEMU stopped before the command finished: {why} ({boot})")
            }
            VmEnd::Interrupted => "interrupted; QEMU killed".to_owned(),
        }
    }
}

/// Arguments of `cargo xtask vm`.
pub struct CliArgs {
    pub line: KernelLine,
    pub include: Vec<PathBuf>,
    pub modules: Vec<String>,
    pub timeout_s: u64,
    pub memory_mib: u32,
    /// Build the guest binaries first (otherwise use what is built).
    pub build: bool,
    pub qemu_args: Vec<String>,
    pub kernel_args: Vec<String>,
    pub cmd: Vec<String>,
}

/// `cargo xtask vm`: build, boot, stream, and return the command's status.
pub fn cli(args: CliArgs) -> Result<i32> {
    let kernel = kernel_for(args.line)?;
    let bins = if args.build {
        build::build()?.all()
    } else {
        build::existing()
    };
    let includes = args
        .include
        .iter()
        .map(|p| std::path::absolute(p).with_context(|| format!("resolving {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let cfg = VmConfig {
        includes: &includes,
        modules: &args.modules,
        timeout: Duration::from_secs(args.timeout_s),
        memory_mib: args.memory_mib,
        qemu_args: &args.qemu_args,
        kernel_args: &args.kernel_args,
        ..VmConfig::new(&kernel, &bins, &args.cmd)
    };
    eprintln!("vm: booting {} ({})", args.line, kernel.release);
    let run = run(&cfg, &mut |l| println!("{l}"))?;
    eprintln!("vm: {}: {}", args.line, run.describe());
    Ok(run.exit_code())
}

/// The cached kernel of `line`, fetched first when missing.
pub fn kernel_for(line: KernelLine) -> Result<Kernel> {
    if let Some(k) = kernels::cached(line)? {
        return Ok(k);
    }
    eprintln!("vm: kernel {line} is not cached yet: fetching it");
    kernels::ensure(&[line], false)
        .pop()
        .map(|(_, r)| r)
        .context("no kernel result")?
}

/// Boots `cfg`, calls `on_line` for each guest console line as it arrives,
/// and returns how the run ended together with all the lines.
pub fn run(cfg: &VmConfig, on_line: &mut dyn FnMut(&str)) -> Result<VmRun> {
    let nonce = nonce();
    let ready = format!("COWTRACE-VM-READY-{nonce}");
    let exit = format!("COWTRACE-VM-EXIT-{nonce}");
    let tree = guest::guest_tree(cfg, &ready, &exit)?;
    let scratch = paths::scratch_dir();
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let image = tempfile::Builder::new()
        .prefix("initramfs-")
        .suffix(".cpio")
        .tempfile_in(&scratch)
        .context("creating the initramfs file")?;
    tree.write(BufWriter::new(image.as_file()))?;

    install_signal_handlers();
    let mut qemu = qemu_command(cfg, image.path());
    let started = Instant::now();
    let child = qemu.spawn().with_context(|| {
        format!(
            "could not start `{}`: run `cargo xtask setup`",
            cmd::display(&qemu)
        )
    })?;
    let mut guard = Qemu(child);
    let (tx, rx) = mpsc::channel();
    if let Some(out) = guard.0.stdout.take() {
        spawn_reader(out, Stream::Out, tx.clone());
    }
    if let Some(err) = guard.0.stderr.take() {
        spawn_reader(err, Stream::Err, tx.clone());
    }
    drop(tx);

    let mut watch = Watch::new(started + cfg.timeout);
    let mut output = Vec::new();
    let mut stderr = Vec::new();
    let mut boot = None;
    let end = loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            break Some(VmEnd::Interrupted);
        }
        let now = Instant::now();
        if now >= watch.deadline {
            break None;
        }
        match rx.recv_timeout((watch.deadline - now).min(Duration::from_millis(200))) {
            Ok((Stream::Out, line)) => {
                let cleaned = clean_console_line(&line);
                // SeaBIOS ends "Booting from ROM..." without a newline, so
                // with a quiet kernel the guest's first line follows it.
                let line = strip_firmware_banner(&cleaned).to_owned();
                if line.is_empty() {
                    continue;
                }
                if let Some((before, _)) = line.split_once(&ready) {
                    boot.get_or_insert(started.elapsed());
                    emit(before, &mut output, on_line);
                } else if let Some((before, rc)) = line.split_once(&exit) {
                    // Output without a final newline shares the marker's line.
                    emit(before, &mut output, on_line);
                    watch.exited(rc.trim().parse().unwrap_or(-1));
                } else {
                    let crash = is_crash(&line);
                    if crash {
                        watch.crashed(&line);
                    }
                    // After the exit marker only the power-off chatter
                    // follows; keep it out unless it is a crash.
                    if watch.status.is_none() || crash {
                        on_line(&line);
                        output.push(line);
                    }
                }
            }
            Ok((Stream::Err, line)) => stderr.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Both pipes closed: QEMU is gone.
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
        }
    };
    guard.kill();
    let status = guard.0.wait().context("waiting for QEMU")?;
    let end = end.unwrap_or_else(|| match (&watch.crash, watch.status) {
        (Some(l), _) => VmEnd::KernelCrash(l.clone()),
        (None, Some(rc)) => VmEnd::Exited(rc),
        (None, None) if Instant::now() >= watch.deadline => VmEnd::Timeout,
        (None, None) => {
            let why = stderr
                .last()
                .cloned()
                .unwrap_or_else(|| format!("QEMU {status}"));
            VmEnd::QemuStopped(why)
        }
    });
    Ok(VmRun {
        end,
        output,
        boot,
        elapsed: started.elapsed(),
    })
}

fn emit(text: &str, output: &mut Vec<String>, on_line: &mut dyn FnMut(&str)) {
    if !text.is_empty() {
        on_line(text);
        output.push(text.to_owned());
    }
}

/// Deadline bookkeeping: a crash or the exit marker shortens it.
struct Watch {
    deadline: Instant,
    crash: Option<String>,
    status: Option<i32>,
}

impl Watch {
    fn new(deadline: Instant) -> Self {
        Watch {
            deadline,
            crash: None,
            status: None,
        }
    }
    fn crashed(&mut self, line: &str) {
        if self.crash.is_none() {
            self.crash = Some(line.trim().to_owned());
            self.deadline = self.deadline.min(Instant::now() + CRASH_GRACE);
        }
    }
    fn exited(&mut self, rc: i32) {
        self.status = Some(rc);
        self.deadline = self.deadline.min(Instant::now() + POWEROFF_GRACE);
    }
}

/// Removes terminal control sequences (SeaBIOS clears the screen) and
/// carriage returns from a serial console line.
pub fn clean_console_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ params final-byte; anything else: ESC + one char.
                if chars.next_if_eq(&'[').is_some() {
                    for p in chars.by_ref() {
                        if ('@'..='~').contains(&p) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// What is left of a console line once SeaBIOS's banner is removed.
pub fn strip_firmware_banner(line: &str) -> &str {
    if line.starts_with("SeaBIOS (version ") {
        return "";
    }
    match line.strip_prefix("Booting from ROM") {
        Some(rest) => rest.trim_start_matches('.'),
        None => line,
    }
}

/// True for a console line that reports a kernel crash.
pub fn is_crash(line: &str) -> bool {
    CRASH_PATTERNS.iter().any(|p| line.contains(p))
}

/// Owns the QEMU process; dropping it kills QEMU (error paths, panics).
struct Qemu(Child);

impl Qemu {
    fn kill(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

/// Forwards lines (serial output ends them with CR LF) to the main loop;
/// bytes that are not UTF-8 are replaced rather than ending the stream.
fn spawn_reader(
    pipe: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::Sender<(Stream, String)>,
) {
    thread::spawn(move || {
        let mut r = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    if tx.send((stream, line)).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// The serial console (our only channel), quiet so the guest's output is
/// readable, and `panic=-1` so a panic ends QEMU at once (`-no-reboot`).
/// `no_timer_check`: under TCG on a loaded host the IO-APIC timer check can
/// time out and panic the boot ("IO-APIC + timer doesn't work"); the
/// emulated timer works, only the check's timing does not.
fn kernel_command_line(extra: &[String]) -> String {
    let mut words = vec!["console=ttyS0", "quiet", "panic=-1", "no_timer_check"];
    words.extend(extra.iter().map(String::as_str));
    words.join(" ")
}

fn qemu_command(cfg: &VmConfig, initrd: &Path) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    // Two guest CPUs, but single-threaded TCG: with multi-threaded TCG a
    // vCPU can run a stale translation of a function while the kernel
    // live-patches it (ftrace/kprobe attach and detach use int3-based text
    // poking), which crashed 7.2 guests with "Oops: int3" at the patched
    // site. Real CPUs serialize that; icount mode is single-threaded anyway.
    c.args(["-accel", "tcg,thread=single", "-smp", "2"])
        .args(["-cpu", "max,pdpe1gb=off"])
        .arg("-m")
        .arg(cfg.memory_mib.to_string())
        // No NIC: nothing needs one, and it would need iPXE option ROMs.
        .args(["-nographic", "-no-reboot", "-net", "none"])
        .arg("-kernel")
        .arg(cfg.kernel.vmlinuz())
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(kernel_command_line(cfg.kernel_args))
        .args(cfg.qemu_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group: a terminal's Ctrl-C reaches us, and we decide
        // when QEMU dies.
        .process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        c.pre_exec(|| {
            // QEMU dies with us even if we are SIGKILLed.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM set a flag the run loop polls, so QEMU is killed and
/// reaped before we exit.
fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// True once Ctrl-C/SIGTERM arrived (callers stop starting new boots).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn nonce() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_control_sequences_are_removed() {
        assert_eq!(
            clean_console_line("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)\r"),
            "SeaBIOS (version 1.16)"
        );
        assert_eq!(clean_console_line("plain [ok] text"), "plain [ok] text");
        assert_eq!(strip_firmware_banner("SeaBIOS (version 1.16)"), "");
        assert_eq!(
            strip_firmware_banner("Booting from ROM...READY-1"),
            "READY-1"
        );
        assert_eq!(strip_firmware_banner("Booting from ROM.."), "");
        assert_eq!(strip_firmware_banner("guest text"), "guest text");
    }

    #[test]
    fn crash_lines_are_recognised() {
        assert!(is_crash(
            "[   12.1] Kernel panic - not syncing: Attempted to kill init!"
        ));
        assert!(is_crash(
            "BUG: unable to handle page fault for address: 0000"
        ));
        assert!(is_crash("Oops: 0002 [#1] PREEMPT SMP NOPTI"));
        assert!(is_crash(
            "general protection fault, probably for non-canonical address"
        ));
        assert!(!is_crash(
            "COWTRACE-RESULT {\"scenario\": \"x\", \"ok\": true}"
        ));
    }
}
