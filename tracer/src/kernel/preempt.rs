//! The kernel's preemption model, which decides whether fentry/fexit
//! programs can lose invocations.
//!
//! A BPF trampoline runs its programs with migration disabled, not
//! preemption, and skips a program that is already running on the CPU (the
//! kernel counts these as `recursion_misses`). On a kernel that preempts
//! kernel code (`full`, `lazy`, `rt`), a task preempted inside a program
//! makes every other task entering the same program on that CPU go
//! untraced until it resumes: decisions are lost. kprobe programs run with
//! preemption disabled and cannot be skipped that way, so the plan's `auto`
//! choice prefers them there (see [`super::plan`]).
//!
//! Where the model comes from, most direct first:
//! 1. `/sys/kernel/debug/sched/preempt` (PREEMPT_DYNAMIC kernels with
//!    debugfs mounted): the current mode in parentheses;
//! 2. the kernel version string (`/proc/sys/kernel/version`): `PREEMPT_RT`,
//!    `PREEMPT_LAZY` and `PREEMPT` name a static model, no flag means a
//!    kernel that never preempts kernel code (none or voluntary);
//! 3. for `PREEMPT_DYNAMIC` kernels without debugfs, `preempt=` on the
//!    command line, else the build's default from `/boot/config-RELEASE`.
//!
//! When none of these answers, the model is unknown and treated as
//! preemptible: losing decisions silently is worse than a costlier probe.

use std::path::Path;

use serde::Serialize;

/// debugfs file listing the dynamic preemption modes, the current one in
/// parentheses.
pub const SCHED_PREEMPT: &str = "/sys/kernel/debug/sched/preempt";
/// The kernel's version string (`uname -v`).
const VERSION: &str = "/proc/sys/kernel/version";
const CMDLINE: &str = "/proc/cmdline";

/// How the kernel preempts its own code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PreemptModel {
    /// `none`: never preempted in the kernel.
    None,
    /// `voluntary`: only at explicit rescheduling points.
    Voluntary,
    /// A static kernel without PREEMPT in its version string: none or
    /// voluntary, both of which never preempt a running BPF program.
    NoneOrVoluntary,
    /// `full`: anywhere preemption is enabled.
    Full,
    /// `lazy`: at the next tick, or at once for higher classes.
    Lazy,
    /// PREEMPT_RT.
    Rt,
}

impl PreemptModel {
    /// Whether a task can be preempted inside a trampoline program.
    pub fn preempts_kernel(self) -> bool {
        matches!(
            self,
            PreemptModel::Full | PreemptModel::Lazy | PreemptModel::Rt
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            PreemptModel::None => "none",
            PreemptModel::Voluntary => "voluntary",
            PreemptModel::NoneOrVoluntary => "none or voluntary",
            PreemptModel::Full => "full",
            PreemptModel::Lazy => "lazy",
            PreemptModel::Rt => "rt",
        }
    }

    /// A mode name as `preempt=` and debugfs spell it.
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "none" => PreemptModel::None,
            "voluntary" => PreemptModel::Voluntary,
            "full" => PreemptModel::Full,
            "lazy" => PreemptModel::Lazy,
            _ => return None,
        })
    }
}

/// The model and where it was read (or why it is unknown).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Preemption {
    /// `None`: not determined.
    pub model: Option<PreemptModel>,
    pub source: String,
}

impl Preemption {
    pub fn known(model: PreemptModel, source: impl Into<String>) -> Self {
        Self {
            model: Some(model),
            source: source.into(),
        }
    }

    /// Whether trampoline programs may be skipped here: true for
    /// preemptible kernels and for an unknown model.
    pub fn trampolines_preemptible(&self) -> bool {
        self.model.is_none_or(PreemptModel::preempts_kernel)
    }

    /// One line for `cowtrace check` and the plan's reasons.
    pub fn describe(&self) -> String {
        match self.model {
            Some(m) => format!("{} (from {})", m.name(), self.source),
            None => format!("unknown ({})", self.source),
        }
    }

    /// Reads the running kernel's model (see the module documentation).
    pub fn probe(release: &str) -> Self {
        let read = |p: &str| std::fs::read_to_string(Path::new(p)).ok();
        let config = format!("/boot/config-{release}");
        resolve(&Sources {
            debugfs: read(SCHED_PREEMPT).as_deref(),
            version: read(VERSION).as_deref().unwrap_or(""),
            cmdline: read(CMDLINE).as_deref().unwrap_or(""),
            config: read(&config).as_deref().map(|c| (config.as_str(), c)),
        })
    }
}

/// What [`resolve`] reads, as text.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sources<'a> {
    /// `sched/preempt` in debugfs, if readable.
    pub debugfs: Option<&'a str>,
    /// `/proc/sys/kernel/version`.
    pub version: &'a str,
    /// `/proc/cmdline`.
    pub cmdline: &'a str,
    /// (path, contents) of the kernel's build configuration, if readable.
    pub config: Option<(&'a str, &'a str)>,
}

/// The model the sources give, most direct first.
pub fn resolve(s: &Sources<'_>) -> Preemption {
    if let Some(m) = s.debugfs.and_then(parse_debugfs) {
        return Preemption::known(m, SCHED_PREEMPT);
    }
    let flags: Vec<&str> = s.version.split_whitespace().collect();
    let has = |f: &str| flags.contains(&f);
    let from_version = format!("the version string \"{}\"", s.version.trim());
    if has("PREEMPT_RT") {
        return Preemption::known(PreemptModel::Rt, from_version);
    }
    if has("PREEMPT_DYNAMIC") {
        if let Some(m) = parse_cmdline(s.cmdline) {
            return Preemption::known(m, "preempt= on the kernel command line");
        }
        if let Some((path, text)) = s.config
            && let Some(m) = parse_config(text)
        {
            return Preemption::known(m, format!("the build default in {path}"));
        }
        return Preemption {
            model: None,
            source: format!(
                "a PREEMPT_DYNAMIC kernel whose mode is not readable: mount debugfs \
                 to expose {SCHED_PREEMPT}"
            ),
        };
    }
    if has("PREEMPT_LAZY") {
        return Preemption::known(PreemptModel::Lazy, from_version);
    }
    if has("PREEMPT") {
        return Preemption::known(PreemptModel::Full, from_version);
    }
    if s.version.trim().is_empty() {
        return Preemption {
            model: None,
            source: format!("{VERSION} not readable"),
        };
    }
    Preemption::known(PreemptModel::NoneOrVoluntary, from_version)
}

/// The parenthesized mode of `none (voluntary) full`.
pub fn parse_debugfs(text: &str) -> Option<PreemptModel> {
    let start = text.find('(')?;
    let end = start + text[start..].find(')')?;
    PreemptModel::parse(text[start + 1..end].trim())
}

/// The last `preempt=` on the command line (the kernel keeps the last).
pub fn parse_cmdline(cmdline: &str) -> Option<PreemptModel> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("preempt="))
        .next_back()
        .and_then(PreemptModel::parse)
}

/// The preemption model a kernel configuration selects.
pub fn parse_config(config: &str) -> Option<PreemptModel> {
    let set = |opt: &str| config.lines().any(|l| l.trim() == format!("{opt}=y"));
    [
        ("CONFIG_PREEMPT_RT", PreemptModel::Rt),
        ("CONFIG_PREEMPT_LAZY", PreemptModel::Lazy),
        ("CONFIG_PREEMPT", PreemptModel::Full),
        ("CONFIG_PREEMPT_VOLUNTARY", PreemptModel::Voluntary),
        ("CONFIG_PREEMPT_NONE", PreemptModel::None),
    ]
    .into_iter()
    .find(|(opt, _)| set(opt))
    .map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    // As printed by the Debian kernels' guests (`uname -v`, debugfs).
    const V612: &str = "#1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1~deb12u1 (2026-11-14)\n";
    const V72: &str = "#1 SMP PREEMPT_DYNAMIC Debian 7.2.13-1 (2026-10-28)\n";
    const V510: &str = "#1 SMP Debian 5.10.247-1 (2026-01-10)\n";

    #[test]
    fn debugfs_names_the_current_mode() {
        assert_eq!(
            parse_debugfs("none (voluntary) full \n"),
            Some(PreemptModel::Voluntary)
        );
        assert_eq!(parse_debugfs("full (lazy) \n"), Some(PreemptModel::Lazy));
        assert_eq!(
            parse_debugfs("none voluntary (full) lazy\n"),
            Some(PreemptModel::Full)
        );
        assert_eq!(parse_debugfs("none voluntary full\n"), None);
        assert_eq!(parse_debugfs("(bogus)"), None);
    }

    #[test]
    fn debugfs_wins_over_everything_else() {
        let p = resolve(&Sources {
            debugfs: Some("full (lazy) \n"),
            version: V72,
            cmdline: "preempt=voluntary",
            config: Some(("/boot/config-x", "CONFIG_PREEMPT_VOLUNTARY=y\n")),
        });
        assert_eq!(p.model, Some(PreemptModel::Lazy));
        assert_eq!(p.source, SCHED_PREEMPT);
        assert!(p.trampolines_preemptible());
    }

    #[test]
    fn dynamic_kernels_fall_back_to_cmdline_then_config() {
        let base = Sources {
            debugfs: None,
            version: V612,
            cmdline: "console=ttyS0 quiet",
            config: Some((
                "/boot/config-6.12",
                "# CONFIG_PREEMPT_NONE is not set\nCONFIG_PREEMPT_VOLUNTARY=y\n\
                 CONFIG_PREEMPT_DYNAMIC=y\n",
            )),
        };
        let p = resolve(&base);
        assert_eq!(p.model, Some(PreemptModel::Voluntary));
        assert!(p.source.contains("/boot/config-6.12"), "{}", p.source);
        assert!(!p.trampolines_preemptible());

        let full = resolve(&Sources {
            cmdline: "quiet preempt=none preempt=full",
            ..base
        });
        assert_eq!(full.model, Some(PreemptModel::Full));
        assert!(full.trampolines_preemptible());

        let unknown = resolve(&Sources {
            config: None,
            ..base
        });
        assert_eq!(unknown.model, None);
        assert!(
            unknown.source.contains("mount debugfs"),
            "{}",
            unknown.source
        );
        assert!(
            unknown.trampolines_preemptible(),
            "unknown counts as preemptible"
        );
    }

    #[test]
    fn static_kernels_are_named_by_their_version_string() {
        let at = |version| {
            resolve(&Sources {
                version,
                ..Sources::default()
            })
            .model
        };
        assert_eq!(at(V510), Some(PreemptModel::NoneOrVoluntary));
        assert_eq!(at("#1 SMP PREEMPT Debian"), Some(PreemptModel::Full));
        assert_eq!(at("#1 SMP PREEMPT_RT Debian"), Some(PreemptModel::Rt));
        assert_eq!(at("#1 SMP PREEMPT_LAZY x"), Some(PreemptModel::Lazy));
        assert_eq!(at(""), None);
        assert!(!Preemption::known(PreemptModel::NoneOrVoluntary, "x").trampolines_preemptible());
    }

    #[test]
    fn config_picks_the_selected_model() {
        assert_eq!(
            parse_config("CONFIG_PREEMPT_BUILD=y\nCONFIG_PREEMPT_LAZY=y\n"),
            Some(PreemptModel::Lazy)
        );
        assert_eq!(
            parse_config("CONFIG_PREEMPT=y\nCONFIG_PREEMPT_COUNT=y\n"),
            Some(PreemptModel::Full)
        );
        assert_eq!(
            parse_config("CONFIG_PREEMPT_NONE=y\n"),
            Some(PreemptModel::None)
        );
        assert_eq!(parse_config("# CONFIG_PREEMPT is not set\n"), None);
    }
}
