//! `/proc/kallsyms` and tracefs `available_filter_functions`.
//!
//! kallsyms answers "does this kernel have the symbol" and "where is it"
//! (the address of the `vmemmap_base` variable goes to BPF; kernel stack
//! addresses are symbolized as `symbol+0xoff`). `available_filter_functions`
//! answers "can a kprobe attach to it": functions the compiler inlined
//! everywhere, or that ftrace refuses (notrace, `__init`), are missing there
//! even when kallsyms lists the name.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

pub const KALLSYMS: &str = "/proc/kallsyms";

/// Where tracefs may be mounted, in order of preference.
pub const FILTER_FUNCTIONS: [&str; 2] = [
    "/sys/kernel/tracing/available_filter_functions",
    "/sys/kernel/debug/tracing/available_filter_functions",
];

#[derive(Debug, thiserror::Error)]
pub enum KallsymsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("/proc/kallsyms line {line}: cannot parse `{text}`")]
    Malformed { line: usize, text: String },
    #[error(
        "/proc/kallsyms shows every address as 0 (kernel.kptr_restrict or missing \
         CAP_SYSLOG): run as root, or `sysctl kernel.kptr_restrict=0`"
    )]
    AddressesHidden,
    #[error("/proc/kallsyms is empty")]
    Empty,
    #[error(
        "tracefs not readable ({}): mount it with `mount -t tracefs nodev /sys/kernel/tracing`",
        FILTER_FUNCTIONS.join(", ")
    )]
    NoTracefs,
}

/// One kallsyms entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Symbol {
    addr: u64,
    name: Box<str>,
}

/// The kernel's symbol table.
#[derive(Clone, Debug, Default)]
pub struct Kallsyms {
    /// Name -> (address, type letter) of the first entry with that name.
    by_name: HashMap<Box<str>, (u64, char)>,
    /// Text symbols (t/T/w/W) with a non-zero address, sorted by address.
    text: Vec<Symbol>,
}

impl Kallsyms {
    /// Parses the text of `/proc/kallsyms`: `ADDR TYPE NAME [\t[MODULE]]`.
    pub fn parse(text: &str) -> Result<Self, KallsymsError> {
        let mut by_name: HashMap<Box<str>, (u64, char)> = HashMap::new();
        let mut text_syms = Vec::new();
        let mut any_nonzero = false;
        let mut count = 0usize;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut it = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
                return Err(malformed(i, line));
            };
            let addr = u64::from_str_radix(addr, 16).map_err(|_| malformed(i, line))?;
            let kind = kind.chars().next().ok_or_else(|| malformed(i, line))?;
            count += 1;
            any_nonzero |= addr != 0;
            by_name.entry(name.into()).or_insert((addr, kind));
            if addr != 0 && matches!(kind, 't' | 'T' | 'w' | 'W') {
                text_syms.push(Symbol {
                    addr,
                    name: name.into(),
                });
            }
        }
        if count == 0 {
            return Err(KallsymsError::Empty);
        }
        if !any_nonzero {
            return Err(KallsymsError::AddressesHidden);
        }
        text_syms.sort_by_key(|s| s.addr);
        Ok(Self {
            by_name,
            text: text_syms,
        })
    }

    /// Reads and parses `/proc/kallsyms` (or another file in its format).
    pub fn load(path: &Path) -> Result<Self, KallsymsError> {
        Self::parse(&read(path)?)
    }

    /// Address of a symbol (data or text).
    pub fn address(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).map(|&(a, _)| a)
    }

    /// Whether `name` is a function (text) symbol.
    pub fn has_function(&self, name: &str) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|&(_, k)| matches!(k, 't' | 'T' | 'w' | 'W'))
    }

    /// `addr` as `(symbol, offset)`: the closest text symbol at or below it.
    pub fn symbolize(&self, addr: u64) -> Option<(&str, u64)> {
        let idx = self.text.partition_point(|s| s.addr <= addr);
        let sym = self.text.get(idx.checked_sub(1)?)?;
        Some((&sym.name, addr - sym.addr))
    }
}

/// Live stack symbolization for `decode` (kallsyms of the running kernel).
impl crate::decode::Symbolizer for Kallsyms {
    fn symbolize(&self, addr: u64) -> Option<(String, u64)> {
        Kallsyms::symbolize(self, addr).map(|(name, off)| (name.to_string(), off))
    }
}

fn malformed(i: usize, line: &str) -> KallsymsError {
    KallsymsError::Malformed {
        line: i + 1,
        text: line.chars().take(80).collect(),
    }
}

fn read(path: &Path) -> Result<String, KallsymsError> {
    std::fs::read_to_string(path).map_err(|source| KallsymsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Functions ftrace (and so kprobes) can attach to.
#[derive(Clone, Debug, Default)]
pub struct FilterFunctions {
    /// Name -> how many functions carry it. More than one means a kprobe by
    /// name is ambiguous (newer kernels refuse it with EADDRNOTAVAIL).
    counts: HashMap<Box<str>, u32>,
    /// The file they were read from.
    pub source: PathBuf,
}

impl FilterFunctions {
    /// Parses `available_filter_functions`: `name` or `name [module]` per
    /// line (newer kernels may list the same name several times).
    pub fn parse(text: &str, source: PathBuf) -> Self {
        let mut counts: HashMap<Box<str>, u32> = HashMap::new();
        for line in text.lines() {
            if let Some(name) = line.split_whitespace().next() {
                *counts.entry(name.into()).or_default() += 1;
            }
        }
        Self { counts, source }
    }

    /// Reads the first readable of [`FILTER_FUNCTIONS`] (tracefs may be
    /// unmounted, or only mounted under debugfs).
    pub fn load() -> Result<Self, KallsymsError> {
        FILTER_FUNCTIONS
            .iter()
            .find_map(|p| {
                let text = std::fs::read_to_string(p).ok()?;
                Some(Self::parse(&text, PathBuf::from(p)))
            })
            .ok_or(KallsymsError::NoTracefs)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.counts.contains_key(name)
    }

    /// How many attachable functions share this name (0: not attachable).
    pub fn count(&self, name: &str) -> u32 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Names listed more than once.
    pub fn duplicates(&self) -> HashSet<&str> {
        self.counts
            .iter()
            .filter(|&(_, &n)| n > 1)
            .map(|(k, _)| &**k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "\
ffffffff81000000 T _stext
ffffffff81001000 t do_wp_page
ffffffff81001400 T copy_page_range
ffffffff81001900 W weak_fn
ffffffff82a00000 D vmemmap_base
0000000000000000 A fixed_percpu_data
ffffffffc0100000 t nf_hook\t[nf_tables]
";

    #[test]
    fn looks_up_data_and_functions() {
        let k = Kallsyms::parse(FIXTURE).unwrap();
        assert_eq!(k.address("vmemmap_base"), Some(0xffff_ffff_82a0_0000));
        assert!(k.has_function("do_wp_page"));
        assert!(k.has_function("weak_fn"));
        assert!(!k.has_function("vmemmap_base"));
        assert!(!k.has_function("nope"));
        assert_eq!(k.address("nf_hook"), Some(0xffff_ffff_c010_0000));
    }

    #[test]
    fn symbolizes_to_nearest_text_symbol_below() {
        let k = Kallsyms::parse(FIXTURE).unwrap();
        assert_eq!(
            k.symbolize(0xffff_ffff_8100_1010),
            Some(("do_wp_page", 0x10))
        );
        assert_eq!(
            k.symbolize(0xffff_ffff_8100_1400),
            Some(("copy_page_range", 0))
        );
        // Data symbols never win: vmemmap_base lies between text symbols.
        assert_eq!(
            k.symbolize(0xffff_ffff_82a0_0008),
            Some(("weak_fn", 0x19f_e708))
        );
        assert_eq!(k.symbolize(0x1000), None);
        assert_eq!(k.symbolize(0xffff_ffff_c010_0004), Some(("nf_hook", 4)));
    }

    #[test]
    fn zeroed_addresses_are_an_actionable_error() {
        let hidden = "0000000000000000 T _stext\n0000000000000000 t do_wp_page\n";
        let err = Kallsyms::parse(hidden).unwrap_err();
        assert!(matches!(err, KallsymsError::AddressesHidden));
        assert!(err.to_string().contains("kptr_restrict"));
    }

    #[test]
    fn malformed_and_empty_input() {
        assert!(matches!(Kallsyms::parse(""), Err(KallsymsError::Empty)));
        assert!(matches!(
            Kallsyms::parse("zzzz T x\n"),
            Err(KallsymsError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            Kallsyms::parse("ffff T\n"),
            Err(KallsymsError::Malformed { .. })
        ));
    }

    #[test]
    fn filter_functions_modules_and_duplicates() {
        let text = "do_wp_page\nfolio_put\nfolio_put\nnft_do_chain [nf_tables]\n\n";
        let f = FilterFunctions::parse(text, PathBuf::from("x"));
        assert!(f.contains("do_wp_page"));
        assert!(f.contains("nft_do_chain"));
        assert!(!f.contains("[nf_tables]"));
        assert_eq!(f.count("folio_put"), 2);
        assert_eq!(f.count("absent"), 0);
        assert_eq!(f.len(), 3);
        assert_eq!(f.duplicates(), HashSet::from(["folio_put"]));
    }

    #[test]
    fn host_kallsyms_when_readable() {
        match Kallsyms::load(Path::new(KALLSYMS)) {
            Ok(k) => {
                // Every x86_64 kernel has these.
                assert!(k.has_function("do_wp_page") || k.has_function("handle_mm_fault"));
                let addr = k.address("handle_mm_fault").unwrap_or(0);
                if addr != 0 {
                    // Aliases may share the address: check the offset only.
                    assert_eq!(k.symbolize(addr + 1).map(|(_, off)| off), Some(1));
                }
            }
            Err(e) => println!("skipped: {e}"),
        }
    }
}
