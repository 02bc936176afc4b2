//! The guest's root file system as an uncompressed "newc" cpio archive (the
//! format the kernel unpacks into its initramfs; see the kernel's
//! Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Built in code rather than with cpio(1) so the content is described in one
//! place ([`Tree`]) and no host tool or staging directory is needed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const TRAILER: &str = "TRAILER!!!";

/// Streams newc entries to `out`. Owner is root, mtime 0: the archive only
/// depends on its content.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    offset: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            offset: 0,
        }
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.header(name, S_IFDIR | perm, 2, 0)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        let len = to_u32(target.len())?;
        self.header(name, S_IFLNK | 0o777, 1, len)?;
        self.write_padded(target.as_bytes())
    }

    /// A regular file whose `size` bytes are read from `data`.
    pub fn file(
        &mut self,
        name: &str,
        perm: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let len = u32::try_from(size).map_err(|_| invalid("file larger than 4 GiB"))?;
        self.header(name, S_IFREG | perm, 1, len)?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            return Err(invalid("file shrank while it was archived"));
        }
        self.offset += copied;
        self.pad()
    }

    /// Writes the trailer and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(TRAILER, 0, 1, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: u32) -> io::Result<()> {
        if name.is_empty() || name.starts_with('/') || name.contains('\0') {
            return Err(invalid("cpio names are relative and non-empty"));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let namesize = to_u32(name.len() + 1)?;
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
        // devminor, rdevmajor, rdevminor, namesize, check.
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, namesize, 0];
        let mut h = String::with_capacity(110);
        h.push_str("070701");
        for f in fields {
            h.push_str(&format!("{f:08x}"));
        }
        self.out.write_all(h.as_bytes())?;
        self.offset += h.len() as u64;
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        self.write_padded(&n)
    }

    fn write_padded(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        self.pad()
    }

    /// Header+name and data are each aligned to 4 bytes.
    fn pad(&mut self) -> io::Result<()> {
        let rem = (4 - self.offset % 4) % 4;
        self.out.write_all(&[0u8; 3][..rem as usize])?;
        self.offset += rem;
        Ok(())
    }
}

fn to_u32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| invalid("cpio field overflows 32 bits"))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Where a file's content comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Vec<u8>),
    /// Read when the archive is written (symlinks on the host are followed).
    Host(PathBuf),
}

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File { perm: u32, source: Source },
    Symlink(String),
}

/// The guest file tree, keyed by path relative to `/`. A `BTreeMap` keeps a
/// directory before everything below it, which is the order the kernel's
/// unpacker needs.
#[derive(Debug, Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// A directory (and its parents).
    pub fn dir(&mut self, path: &str) -> Result<()> {
        let key = key(path)?;
        self.parents(&key);
        self.nodes.entry(key).or_insert(Node::Dir);
        Ok(())
    }

    pub fn bytes(&mut self, path: &str, perm: u32, data: impl Into<Vec<u8>>) -> Result<()> {
        self.insert(
            path,
            Node::File {
                perm,
                source: Source::Bytes(data.into()),
            },
        )
    }

    /// A host file's content at `path` in the guest.
    pub fn host_file(&mut self, path: &str, host: &Path) -> Result<()> {
        let meta = fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
        let perm = meta.permissions().mode() & 0o7777;
        self.insert(
            path,
            Node::File {
                perm,
                source: Source::Host(host.to_path_buf()),
            },
        )
    }

    /// Adds `path` unless something is there already (busybox applets must
    /// not shadow real files).
    pub fn symlink_if_absent(&mut self, path: &str, target: &str) -> Result<()> {
        let k = key(path)?;
        if !self.nodes.contains_key(&k) {
            self.insert(path, Node::Symlink(target.to_owned()))?;
        }
        Ok(())
    }

    pub fn contains(&self, path: &str) -> bool {
        key(path).is_ok_and(|k| self.nodes.contains_key(&k))
    }

    /// A host file or folder (recursively) at the same absolute path.
    /// Symlinks inside a folder stay symlinks.
    pub fn include(&mut self, host: &Path) -> Result<()> {
        if !host.is_absolute() {
            bail!("--include needs an absolute path, got {}", host.display());
        }
        let path = host
            .to_str()
            .with_context(|| format!("{} is not UTF-8", host.display()))?;
        let meta =
            fs::metadata(host).with_context(|| format!("cannot include {}", host.display()))?;
        if !meta.is_dir() {
            return self.host_file(path, host);
        }
        self.dir(path)?;
        let mut entries: Vec<PathBuf> = fs::read_dir(host)
            .with_context(|| format!("listing {}", host.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()
            .with_context(|| format!("listing {}", host.display()))?;
        entries.sort();
        for entry in entries {
            let lmeta = fs::symlink_metadata(&entry)
                .with_context(|| format!("reading {}", entry.display()))?;
            if lmeta.file_type().is_symlink() {
                let target = fs::read_link(&entry)
                    .with_context(|| format!("reading {}", entry.display()))?;
                let name = entry
                    .to_str()
                    .with_context(|| format!("{} is not UTF-8", entry.display()))?;
                let target = target
                    .to_str()
                    .with_context(|| format!("{} points to a non-UTF-8 path", entry.display()))?;
                self.insert(name, Node::Symlink(target.to_owned()))?;
            } else {
                self.include(&entry)?;
            }
        }
        Ok(())
    }

    fn insert(&mut self, path: &str, node: Node) -> Result<()> {
        let key = key(path)?;
        self.parents(&key);
        self.nodes.insert(key, node);
        Ok(())
    }

    fn parents(&mut self, key: &str) {
        let mut at = 0;
        while let Some(i) = key[at..].find('/') {
            let parent = &key[..at + i];
            self.nodes.entry(parent.to_owned()).or_insert(Node::Dir);
            at += i + 1;
        }
    }

    /// Writes the whole archive.
    pub fn write<W: Write>(&self, out: W) -> Result<W> {
        let mut w = CpioWriter::new(out);
        for (name, node) in &self.nodes {
            match node {
                Node::Dir => w.dir(name, 0o755),
                Node::Symlink(t) => w.symlink(name, t),
                Node::File {
                    perm,
                    source: Source::Bytes(b),
                } => w.file(name, *perm, b.len() as u64, &mut b.as_slice()),
                Node::File {
                    perm,
                    source: Source::Host(p),
                } => {
                    let mut f =
                        fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
                    let size = f
                        .metadata()
                        .with_context(|| format!("reading {}", p.display()))?
                        .len();
                    w.file(name, *perm, size, &mut f)
                }
            }
            .with_context(|| format!("writing /{name} into the initramfs"))?;
        }
        w.finish().context("finishing the initramfs")
    }
}

/// `/a/b/../c` style paths are refused; the key has no leading `/`.
fn key(path: &str) -> Result<String> {
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => parts.push(s.to_str().context("non-UTF-8 path")?),
            Component::ParentDir | Component::Prefix(_) => bail!("unsupported guest path {path}"),
        }
    }
    if parts.is_empty() {
        bail!("empty guest path");
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry: (name, mode, nlink, data).
    type Entry = (String, u32, u32, Vec<u8>);

    /// A minimal newc reader, independent of the writer, that also checks
    /// the 4-byte alignment the kernel insists on.
    fn parse(mut buf: &[u8]) -> Vec<Entry> {
        let total = buf.len();
        let mut out = Vec::new();
        loop {
            assert_eq!((total - buf.len()) % 4, 0, "header not aligned");
            assert_eq!(&buf[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&buf[6 + 8 * i..14 + 8 * i]).unwrap(),
                    16,
                )
                .unwrap()
            };
            let (mode, nlink, size, namesize) =
                (field(1), field(4), field(6) as usize, field(11) as usize);
            let name_end = 110 + namesize;
            assert_eq!(buf[name_end - 1], 0, "name not NUL-terminated");
            let name = String::from_utf8(buf[110..name_end - 1].to_vec()).unwrap();
            let data_start = name_end.next_multiple_of(4);
            let data = buf[data_start..data_start + size].to_vec();
            buf = &buf[(data_start + size).next_multiple_of(4)..];
            if name == TRAILER {
                assert!(buf.is_empty(), "bytes after the trailer");
                return out;
            }
            out.push((name, mode, nlink, data));
        }
    }

    #[test]
    fn newc_round_trip_with_alignment() {
        let mut t = Tree::new();
        t.bytes("/init", 0o755, "#!/bin/sh\n").unwrap();
        t.bytes("/usr/local/bin/x", 0o644, vec![7u8; 5]).unwrap();
        t.symlink_if_absent("/bin/sh", "/bin/busybox").unwrap();
        t.symlink_if_absent("/init", "/nope").unwrap();
        t.dir("/tmp").unwrap();
        let bytes = t.write(Vec::new()).unwrap();
        let entries = parse(&bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "init",
                "tmp",
                "usr",
                "usr/local",
                "usr/local/bin",
                "usr/local/bin/x"
            ]
        );
        let by = |n: &str| entries.iter().find(|e| e.0 == n).unwrap().clone();
        assert_eq!(by("init").1, S_IFREG | 0o755);
        assert_eq!(by("init").3, b"#!/bin/sh\n");
        assert_eq!(by("bin/sh").1, S_IFLNK | 0o777);
        assert_eq!(by("bin/sh").3, b"/bin/busybox");
        assert_eq!(by("usr").1, S_IFDIR | 0o755);
        assert_eq!(by("usr").2, 2);
        assert_eq!(by("usr/local/bin/x").3, [7u8; 5]);
    }

    #[test]
    fn includes_a_host_folder_at_the_same_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("probe");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/data"), "abc").unwrap();
        std::os::unix::fs::symlink("sub/data", root.join("link")).unwrap();
        let mut t = Tree::new();
        t.include(&root).unwrap();
        let entries = parse(&t.write(Vec::new()).unwrap());
        let rel = |p: &str| {
            root.join(p)
                .to_str()
                .unwrap()
                .trim_start_matches('/')
                .to_owned()
        };
        let find = |n: String| entries.iter().find(|e| e.0 == n).cloned().unwrap();
        assert_eq!(find(rel("sub/data")).3, b"abc");
        assert_eq!(find(rel("link")).1 & 0o170_000, S_IFLNK);
        assert_eq!(find(rel("link")).3, b"sub/data");
        assert!(t.include(Path::new("relative")).is_err());
    }

    #[test]
    fn refuses_parent_components() {
        assert!(key("/a/../b").is_err());
        assert_eq!(key("/a/./b").unwrap(), "a/b");
    }
}
