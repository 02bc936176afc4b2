//! Rotation file naming: part 0 is the path given (`trace.cwt`), part N is
//! `trace.cwt.N`. Numbers only grow, so no file is ever renamed (a reader
//! holding one open never sees it change name) and the oldest part is the
//! lowest number still present.

use std::{
    ffi::OsString,
    io,
    path::{Path, PathBuf},
};

/// The path of rotation part `sequence` of the recording at `base`.
pub fn part_path(base: &Path, sequence: u32) -> PathBuf {
    if sequence == 0 {
        return base.to_path_buf();
    }
    let mut s = OsString::from(base.as_os_str());
    s.push(format!(".{sequence}"));
    PathBuf::from(s)
}

/// The rotation number of `name` if it is `base_name` or `base_name.N`.
fn part_number(base_name: &str, name: &str) -> Option<u32> {
    if name == base_name {
        return Some(0);
    }
    let digits = name.strip_prefix(base_name)?.strip_prefix('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0)
}

/// The parts of the recording at `base` present on disk, oldest first.
/// Hand the result to [`super::TraceReader::open`].
pub fn existing_parts(base: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = match base.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(base_name) = base.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(n) = name.to_str().and_then(|name| part_number(base_name, name)) {
            parts.push((n, part_path(base, n)));
        }
    }
    parts.sort();
    Ok(parts.into_iter().map(|(_, p)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            part_path(Path::new("/t/trace.cwt"), 0),
            Path::new("/t/trace.cwt")
        );
        assert_eq!(
            part_path(Path::new("/t/trace.cwt"), 12),
            Path::new("/t/trace.cwt.12")
        );
        assert_eq!(part_number("trace.cwt", "trace.cwt"), Some(0));
        assert_eq!(part_number("trace.cwt", "trace.cwt.3"), Some(3));
        for other in [
            "trace.cwt.",
            "trace.cwt.0",
            "trace.cwt.x",
            "trace.cwtx",
            "trace.cwt.1.2",
        ] {
            assert_eq!(part_number("trace.cwt", other), None, "{other}");
        }
    }

    #[test]
    fn existing_parts_sorts_numerically() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("t.cwt");
        for n in [0u32, 10, 2, 9] {
            std::fs::write(part_path(&base, n), b"x").unwrap();
        }
        std::fs::write(dir.path().join("t.cwt.bak"), b"x").unwrap();
        let got = existing_parts(&base).unwrap();
        let want: Vec<_> = [0, 2, 9, 10].iter().map(|&n| part_path(&base, n)).collect();
        assert_eq!(got, want);
    }
}
