//! Kernel release strings (`uname -r`) as comparable versions.
//!
//! Only the macro-constant table in `kernel::consts` is keyed by version;
//! everything else is decided by what the kernel's BTF and symbols show.

use std::fmt;

use serde::Serialize;

/// `major.minor.patch` of a kernel release; distribution suffixes dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses `5.10.0-46-amd64`, `6.12.111+deb12-amd64`, `6.18.44-fc-v595`,
    /// `6.1`; `None` when the string does not start with `N.N`.
    pub fn parse(release: &str) -> Option<Self> {
        let mut parts = release.splitn(3, '.');
        let major = parts.next()?;
        if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let minor_part = parts.next()?;
        let minor = leading_digits(minor_part)?;
        // "6.2-rc1": the minor number ends the version.
        let patch = if minor.len() == minor_part.len() {
            parts.next().and_then(leading_digits).unwrap_or("0")
        } else {
            "0"
        };
        Some(Self::new(
            major.parse().ok()?,
            minor.parse().ok()?,
            patch.parse().ok()?,
        ))
    }
}

/// The non-empty run of ASCII digits `s` starts with.
fn leading_digits(s: &str) -> Option<&str> {
    let end = s.bytes().take_while(u8::is_ascii_digit).count();
    (end > 0).then(|| &s[..end])
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_and_vendor_releases() {
        let cases = [
            ("5.10.0-46-amd64", KernelVersion::new(5, 10, 0)),
            ("6.1.0-50-amd64", KernelVersion::new(6, 1, 0)),
            ("6.12.111+deb12-amd64", KernelVersion::new(6, 12, 111)),
            ("7.2.13+deb14-amd64", KernelVersion::new(7, 2, 13)),
            ("6.18.44-fc-v595", KernelVersion::new(6, 18, 44)),
            ("6.1", KernelVersion::new(6, 1, 0)),
            ("6.2-rc1", KernelVersion::new(6, 2, 0)),
        ];
        for (s, want) in cases {
            assert_eq!(KernelVersion::parse(s), Some(want), "{s}");
        }
    }

    #[test]
    fn rejects_non_versions() {
        for s in ["", "linux", "6", "6-1", "x.1.2"] {
            assert_eq!(KernelVersion::parse(s), None, "{s}");
        }
    }

    #[test]
    fn orders_numerically() {
        assert!(KernelVersion::new(6, 2, 0) > KernelVersion::new(6, 1, 158));
        assert!(KernelVersion::new(6, 10, 0) > KernelVersion::new(6, 9, 12));
        assert_eq!(KernelVersion::new(6, 12, 111).to_string(), "6.12.111");
    }
}
