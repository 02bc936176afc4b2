//! Alerts as JSON lines in a file, rotated by size
//! (PATH -> PATH.1 -> ... -> PATH.<max_files>, the oldest deleted).

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{Deliver, DeliverCtx};
use crate::model::{Alert, service_config::JsonlSink};

pub(super) struct Jsonl {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    file: File,
    size: u64,
}

impl Jsonl {
    pub(super) fn open(cfg: &JsonlSink) -> io::Result<Self> {
        let file = open_append(&cfg.path)?;
        let size = file.metadata()?.len();
        Ok(Jsonl {
            path: cfg.path.clone(),
            max_size: cfg.max_size.0,
            max_files: cfg.max_files,
            file,
            size,
        })
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        for (from, to) in rotation_renames(&self.path, self.max_files) {
            match std::fs::rename(&from, &to) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if self.max_files == 0 {
            std::fs::remove_file(&self.path).or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Alert files may name processes and addresses: owner only.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// `PATH.n` for n >= 1.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The renames that shift every kept file one place, oldest first (so
/// none overwrites a file still to be moved); PATH.<max_files> is
/// overwritten by the last shift, which is how the oldest goes.
fn rotation_renames(path: &Path, max_files: u32) -> Vec<(PathBuf, PathBuf)> {
    let mut v = Vec::new();
    for n in (1..max_files).rev() {
        v.push((numbered(path, n), numbered(path, n + 1)));
    }
    if max_files > 0 {
        v.push((path.to_path_buf(), numbered(path, 1)));
    }
    v
}

impl Deliver for Jsonl {
    fn deliver(&mut self, batch: &[Arc<Alert>], _: &DeliverCtx<'_>) -> Result<(), String> {
        let mut go = || -> io::Result<()> {
            for a in batch {
                let mut line = serde_json::to_vec(&**a)?;
                line.push(b'\n');
                self.write_line(&line)?;
            }
            self.file.flush()
        };
        go().map_err(|e| format!("writing {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_shift_oldest_first() {
        let r = rotation_renames(Path::new("/x/a.jsonl"), 3);
        let s: Vec<(String, String)> = r
            .iter()
            .map(|(a, b)| (a.display().to_string(), b.display().to_string()))
            .collect();
        assert_eq!(
            s,
            [
                ("/x/a.jsonl.2", "/x/a.jsonl.3"),
                ("/x/a.jsonl.1", "/x/a.jsonl.2"),
                ("/x/a.jsonl", "/x/a.jsonl.1"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert!(rotation_renames(Path::new("a"), 0).is_empty());
    }
}
