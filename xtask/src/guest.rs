//! What the guest sees: busybox, `/init`, the guest binaries with their
//! shared libraries, `--include`d host paths and requested kernel modules.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::initramfs::Tree;
use crate::kernels::Kernel;
use crate::vm::VmConfig;

/// Where in the guest the guest binaries go (on PATH).
const GUEST_BIN_DIR: &str = "/usr/local/bin";

/// Everything the guest sees.
pub fn guest_tree(cfg: &VmConfig, ready: &str, exit: &str) -> Result<Tree> {
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
# Swap on zram when its module was copied in (`--module zram`; the test
# suite always does): MADV_PAGEOUT only swaps with a swap device.
if [ -d /lib/modules ] && modprobe zram 2>/dev/null; then
  echo 1G > /sys/block/zram0/disksize && mkswap /dev/zram0 >/dev/null &&
    swapon /dev/zram0 || echo "warning: zram swap setup failed"
fi
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
