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

use anyhow::{Context, Result, bail};

use crate::build;
use crate::initramfs::Tree;
use crate::kernels::{self, Kernel, KernelLine};
use crate::{cmd, paths};

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

/// Where in the guest the guest binaries go (on PATH).
const GUEST_BIN_DIR: &str = "/usr/local/bin";

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
    pub cmd: &'a [String],
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
        kernel: &kernel,
        bins: &bins,
        includes: &includes,
        modules: &args.modules,
        timeout: Duration::from_secs(args.timeout_s),
        memory_mib: args.memory_mib,
        cmd: &args.cmd,
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
    let tree = guest_tree(cfg, &ready, &exit)?;
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
                let line = clean_console_line(&line);
                if is_firmware_banner(&line) {
                    continue;
                }
                if line.contains(&ready) {
                    boot.get_or_insert(started.elapsed());
                } else if let Some(rest) = line.split_once(&exit).map(|(_, r)| r) {
                    watch.exited(rest.trim().parse().unwrap_or(-1));
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

fn is_firmware_banner(line: &str) -> bool {
    line.starts_with("SeaBIOS (version ") || line == "Booting from ROM..."
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

fn qemu_command(cfg: &VmConfig, initrd: &Path) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-accel", "tcg", "-cpu", "max,pdpe1gb=off", "-smp", "2"])
        .arg("-m")
        .arg(cfg.memory_mib.to_string())
        // No NIC: nothing needs one, and it would need iPXE option ROMs.
        .args(["-nographic", "-no-reboot", "-net", "none"])
        .arg("-kernel")
        .arg(cfg.kernel.vmlinuz())
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
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

/// Everything the guest sees.
fn guest_tree(cfg: &VmConfig, ready: &str, exit: &str) -> Result<Tree> {
    let mut t = Tree::new();
    for d in [
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "root",
        "var/tmp",
        "mnt",
        GUEST_BIN_DIR,
    ] {
        t.dir(d)?;
    }
    t.bytes("/etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n")?;
    t.bytes("/etc/group", 0o644, "root:x:0:\n")?;
    t.bytes("/init", 0o755, init_script(cfg.cmd, ready, exit))?;
    add_busybox(&mut t)?;
    for bin in cfg.bins {
        let name = bin
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no UTF-8 file name", bin.display()))?;
        t.host_file(&format!("{GUEST_BIN_DIR}/{name}"), bin)?;
        add_shared_libs(&mut t, bin)?;
    }
    for inc in cfg.includes {
        t.include(inc)?;
    }
    if !cfg.modules.is_empty() {
        add_modules(&mut t, cfg.kernel, cfg.modules)?;
    }
    Ok(t)
}

/// POSIX-sh single quoting.
pub fn sh_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// `/init`: mount what cowtrace and the scenarios need, run the command,
/// report its status, power off. Optional file systems and knobs may be
/// missing on some kernels, so their failures are ignored.
pub fn init_script(cmd: &[String], ready: &str, exit: &str) -> String {
    let command: Vec<String> = cmd.iter().map(|a| sh_quote(a)).collect();
    format!(
        r#"#!/bin/sh
export PATH={GUEST_BIN_DIR}:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
# --include'd files may live under /tmp: carry them onto the new tmpfs.
mkdir -p /run/newtmp && mount -t tmpfs tmpfs /run/newtmp && cp -a /tmp/. /run/newtmp/ &&
  mount --move /run/newtmp /tmp && rmdir /run/newtmp 2>/dev/null
mount -t tmpfs tmpfs /dev/shm
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
echo 16 > /proc/sys/vm/nr_hugepages 2>/dev/null
thp=/sys/kernel/mm/transparent_hugepage/enabled
[ -w $thp ] && echo madvise > $thp
hostname cowtrace-vm
cd /
echo {ready}
{command} </dev/null
echo "{exit} $?"
poweroff -f
"#,
        command = command.join(" ")
    )
}

fn add_busybox(t: &mut Tree) -> Result<()> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("busybox not found: run `cargo xtask setup` (installs busybox-static)")?;
    if !ldd_libs(&busybox)?.is_empty() {
        bail!(
            "{} is dynamically linked: install busybox-static (`cargo xtask setup`)",
            busybox.display()
        );
    }
    t.host_file("/bin/busybox", &busybox)?;
    let list = cmd::output(Command::new(&busybox).arg("--list-full"))?;
    for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        t.symlink_if_absent(&format!("/{applet}"), "/bin/busybox")?;
    }
    Ok(())
}

/// Shared libraries (and the loader) `ldd` lists, copied to the same paths
/// so the host-built binaries run unchanged in the guest.
fn add_shared_libs(t: &mut Tree, bin: &Path) -> Result<()> {
    for lib in ldd_libs(bin)? {
        let guest = lib
            .to_str()
            .with_context(|| format!("{} is not UTF-8", lib.display()))?
            .to_owned();
        if !t.contains(&guest) {
            t.host_file(&guest, &lib)?;
        }
    }
    Ok(())
}

fn ldd_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ldd {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // ldd exits 1 for a static binary ("not a dynamic executable").
    if !out.status.success() {
        return Ok(Vec::new());
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", bin.display()))
}

/// Library paths in `ldd` output; a library ldd cannot find is an error.
pub fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim) {
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("shared library {} not found", name.trim());
                }
                rest.split_whitespace().next()
            }
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// Copies `names` and their dependencies to `/lib/modules/<release>` with a
/// matching `modules.dep`, so `modprobe NAME` works in the guest. Modules are
/// decompressed on the host: busybox's modprobe may not read `.ko.xz`.
fn add_modules(t: &mut Tree, kernel: &Kernel, names: &[String]) -> Result<()> {
    let dir = kernel.modules_dir();
    let dep = kernel.modules_dep()?;
    let guest = format!("/lib/modules/{}", kernel.release);
    let files = module_files(&dep, names)?;
    for rel in &files {
        let data = decompressed(&dir.join(rel))?;
        t.bytes(&format!("{guest}/{}", plain_module_name(rel)), 0o644, data)?;
    }
    let guest_dep: String = dep
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(p, _)| files.iter().any(|f| f == p))
        })
        .map(|l| {
            let words: Vec<String> = l.split_whitespace().map(plain_module_name).collect();
            format!("{}\n", words.join(" "))
        })
        .collect();
    t.bytes(&format!("{guest}/modules.dep"), 0o644, guest_dep)
}

/// `x.ko.xz` -> `x.ko` (also `.zst`, `.gz`), keeping modules.dep's `:`.
pub fn plain_module_name(word: &str) -> String {
    let (path, colon) = match word.strip_suffix(':') {
        Some(p) => (p, ":"),
        None => (word, ""),
    };
    let plain = [".xz", ".zst", ".gz"]
        .into_iter()
        .find_map(|c| path.strip_suffix(c).filter(|s| s.ends_with(".ko")))
        .unwrap_or(path);
    format!("{plain}{colon}")
}

fn decompressed(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {tool} (cargo xtask setup installs it)"))?;
    if !out.status.success() {
        bail!(
            "{tool} -dc {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The files of `names` and everything they depend on, from `modules.dep`
/// (which already lists the transitive dependencies of each module).
pub fn module_files(modules_dep: &str, names: &[String]) -> Result<Vec<String>> {
    let canon = |s: &str| s.replace('-', "_");
    let mut files: Vec<String> = Vec::new();
    for name in names {
        let line = modules_dep
            .lines()
            .find(|l| {
                l.split_once(':').is_some_and(|(path, _)| {
                    let base = path.rsplit('/').next().unwrap_or(path);
                    let stem = base.split(".ko").next().unwrap_or(base);
                    canon(stem) == canon(name)
                })
            })
            .with_context(|| {
                format!("module {name} is not in this kernel's modules.dep (built in, or unknown)")
            })?;
        let (path, deps) = line.split_once(':').unwrap_or((line, ""));
        for f in std::iter::once(path).chain(deps.split_whitespace()) {
            if !files.iter().any(|x| x == f) {
                files.push(f.to_owned());
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_lists_libraries_and_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        let script = init_script(&["echo".into(), "x y".into()], "READY-1", "EXIT-1");
        assert!(script.contains("\n'echo' 'x y' </dev/null\n"));
        assert!(script.contains("echo \"EXIT-1 $?\"\npoweroff -f"));
        let ready = script.find("echo READY-1").unwrap();
        assert!(ready > script.find("mount -t bpf").unwrap());
    }

    #[test]
    fn console_control_sequences_are_removed() {
        assert_eq!(
            clean_console_line("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)\r"),
            "SeaBIOS (version 1.16)"
        );
        assert_eq!(clean_console_line("plain [ok] text"), "plain [ok] text");
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

    #[test]
    fn modules_come_with_their_dependencies() {
        let dep = "kernel/mm/zsmalloc.ko.xz:\n\
                   kernel/drivers/block/zram/zram.ko.xz: kernel/mm/zsmalloc.ko.xz kernel/lib/lz4.ko.xz\n\
                   kernel/fs/nls/nls_utf8.ko:\n";
        let files = module_files(dep, &["zram".into(), "zsmalloc".into()]).unwrap();
        assert_eq!(
            files,
            [
                "kernel/drivers/block/zram/zram.ko.xz",
                "kernel/mm/zsmalloc.ko.xz",
                "kernel/lib/lz4.ko.xz"
            ]
        );
        assert_eq!(
            module_files(dep, &["nls-utf8".into()]).unwrap(),
            ["kernel/fs/nls/nls_utf8.ko"]
        );
        assert!(module_files(dep, &["nope".into()]).is_err());
        assert_eq!(
            plain_module_name("kernel/mm/zsmalloc.ko.xz:"),
            "kernel/mm/zsmalloc.ko:"
        );
        assert_eq!(
            plain_module_name("kernel/lib/lz4.ko.zst"),
            "kernel/lib/lz4.ko"
        );
        assert_eq!(
            plain_module_name("kernel/fs/nls/nls_utf8.ko"),
            "kernel/fs/nls/nls_utf8.ko"
        );
    }
}
