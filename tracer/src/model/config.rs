//! Engine configuration: caps, rules, thresholds, allow-lists (TOML).
//!
//! The documented defaults live in `default-config.toml` next to this file;
//! a unit test proves that file parses to `Config::default()`, so the two
//! cannot drift apart.

use serde::Deserialize;

use super::alert::{RuleId, Severity};
use super::event::Comm;
use super::service_config::{
    self, CaptureConfig, FiltersConfig, MetricsConfig, RecordConfig, SinkConfig,
};

/// Everything the engine can be told. All sections are optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub engine: EngineConfig,
    pub dedup: DedupConfig,
    pub allow: AllowConfig,
    pub cow_storm: CowStormConfig,
    pub rules: RulesConfig,
    /// Service sections (`watch --config`): see `service_config`.
    pub capture: CaptureConfig,
    pub filters: FiltersConfig,
    pub sinks: Vec<SinkConfig>,
    pub record: RecordConfig,
    pub metrics: MetricsConfig,
}

/// Caps on the engine's state (see `default-config.toml` for the why).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub max_pages: usize,
    pub max_processes: usize,
    pub max_mapping_pages: usize,
    pub max_alerts: usize,
    pub max_stacks: usize,
    pub report_mappings: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_pages: 1 << 17,
            max_processes: 1 << 16,
            max_mapping_pages: 1 << 17,
            max_alerts: 10_000,
            max_stacks: 1 << 16,
            report_mappings: 50,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// Seconds of event time a repeat is only counted.
    pub window_secs: f64,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig { window_secs: 60.0 }
    }
}

impl DedupConfig {
    pub fn window_ns(&self) -> u64 {
        // Validated finite and positive; `as` saturates for huge values.
        (self.window_secs * 1e9) as u64
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllowConfig {
    /// Task names whose alerts are counted but not raised.
    pub comm: Vec<String>,
    /// Cgroup paths: applied by the in-kernel filter (events carry no
    /// cgroup); the engine ignores them.
    pub cgroup: Vec<String>,
}

impl AllowConfig {
    /// Compares as the kernel stores names: truncated to 15 bytes.
    pub fn allows_comm(&self, comm: &Comm) -> bool {
        self.comm
            .iter()
            .any(|c| Comm::new(c).as_bytes() == comm.as_bytes())
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CowStormConfig {
    /// COW copies per second of event time, per process.
    pub copies_per_sec: f64,
}

impl Default for CowStormConfig {
    fn default() -> Self {
        CowStormConfig {
            copies_per_sec: 10_000.0,
        }
    }
}

/// One table per rule id (kebab-case, as in alerts).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct RulesConfig {
    pub pin_then_cow: RuleConfig,
    pub gup_ref_then_cow: RuleConfig,
    pub gup_ref_then_reuse: RuleConfig,
    pub unprotected_ro_pin: RuleConfig,
    pub fork_with_pins: RuleConfig,
    pub cow_storm: RuleConfig,
}

impl Default for RulesConfig {
    fn default() -> Self {
        let d = |r: RuleId| RuleConfig {
            enabled: true,
            severity: r.default_severity(),
        };
        RulesConfig {
            pin_then_cow: d(RuleId::PinThenCow),
            gup_ref_then_cow: d(RuleId::GupRefThenCow),
            gup_ref_then_reuse: d(RuleId::GupRefThenReuse),
            unprotected_ro_pin: d(RuleId::UnprotectedRoPin),
            fork_with_pins: d(RuleId::ForkWithPins),
            cow_storm: d(RuleId::CowStorm),
        }
    }
}

impl RulesConfig {
    pub fn get(&self, rule: RuleId) -> &RuleConfig {
        match rule {
            RuleId::PinThenCow => &self.pin_then_cow,
            RuleId::GupRefThenCow => &self.gup_ref_then_cow,
            RuleId::GupRefThenReuse => &self.gup_ref_then_reuse,
            RuleId::UnprotectedRoPin => &self.unprotected_ro_pin,
            RuleId::ForkWithPins => &self.fork_with_pins,
            RuleId::CowStorm => &self.cow_storm,
        }
    }
}

/// A rule's switch and severity. A table that gives only `enabled` keeps
/// the rule's built-in severity (filled in by `Config::from_toml_str`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "unset_severity")]
    pub severity: Severity,
}

fn yes() -> bool {
    true
}

/// Placeholder replaced by the rule's default severity after parsing; serde
/// cannot know which rule a `RuleConfig` belongs to.
fn unset_severity() -> Severity {
    Severity::Info
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Syntax errors, unknown keys, wrong types, bad severities (toml names
    /// the key, the line and what was expected).
    #[error("invalid config: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid config: {key}: {reason}")]
    Value { key: &'static str, reason: String },
    #[error("invalid config: sinks[{index}]: {reason}")]
    Sink { index: usize, reason: String },
}

impl Config {
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let raw: RawSeverities = toml::from_str(s)?;
        let mut c: Config = toml::from_str(s)?;
        for r in RuleId::ALL {
            if !raw.has_severity(r) {
                c.rules_mut(r).severity = r.default_severity();
            }
        }
        c.validate()?;
        Ok(c)
    }

    fn rules_mut(&mut self, rule: RuleId) -> &mut RuleConfig {
        let r = &mut self.rules;
        match rule {
            RuleId::PinThenCow => &mut r.pin_then_cow,
            RuleId::GupRefThenCow => &mut r.gup_ref_then_cow,
            RuleId::GupRefThenReuse => &mut r.gup_ref_then_reuse,
            RuleId::UnprotectedRoPin => &mut r.unprotected_ro_pin,
            RuleId::ForkWithPins => &mut r.fork_with_pins,
            RuleId::CowStorm => &mut r.cow_storm,
        }
    }

    /// Checks what types alone cannot: positive thresholds and caps.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::Value {
                    key,
                    reason: format!("must be greater than 0, got {v}"),
                })
            }
        };
        positive("cow_storm.copies_per_sec", self.cow_storm.copies_per_sec)?;
        positive("dedup.window_secs", self.dedup.window_secs)?;
        let e = &self.engine;
        for (key, v) in [
            ("engine.max_pages", e.max_pages),
            ("engine.max_processes", e.max_processes),
            ("engine.max_mapping_pages", e.max_mapping_pages),
            ("engine.max_alerts", e.max_alerts),
            ("engine.max_stacks", e.max_stacks),
        ] {
            if v == 0 {
                return Err(ConfigError::Value {
                    key,
                    reason: "must be at least 1".into(),
                });
            }
        }
        service_config::validate(&self.filters, &self.sinks, &self.record, &self.metrics)
    }
}

/// Second, lenient view of the same text: only which rules set a severity.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSeverities {
    rules: std::collections::BTreeMap<String, toml::Table>,
}

impl RawSeverities {
    fn has_severity(&self, rule: RuleId) -> bool {
        self.rules
            .get(rule.as_str())
            .is_some_and(|t| t.contains_key("severity"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_TOML: &str = include_str!("default-config.toml");

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(s)
    }

    #[test]
    fn documented_defaults_equal_default() -> Result<(), ConfigError> {
        assert_eq!(parse(DEFAULT_TOML)?, Config::default());
        Ok(())
    }

    /// The config the Debian package installs in /etc/cowtrace: valid, and
    /// a service left running uses lean capture.
    #[test]
    fn packaged_config_is_valid_and_lean() -> Result<(), ConfigError> {
        let packaged = parse(include_str!("../../../packaging/cowtrace.toml"))?;
        assert!(packaged.capture.alerts_only);
        assert!(!Config::default().capture.alerts_only);
        Ok(())
    }

    #[test]
    fn empty_file_is_the_default() -> Result<(), ConfigError> {
        assert_eq!(parse("")?, Config::default());
        Ok(())
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        for (text, key) in [
            ("[engine]\nmax_page = 3\n", "max_page"),
            ("[rules.pin-then-cwo]\nenabled = false\n", "pin-then-cwo"),
            ("[rules.cow-storm]\nenable = false\n", "enable"),
            ("bogus = 1\n", "bogus"),
        ] {
            let e = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(key), "{text:?} gave {e:?}");
        }
    }

    #[test]
    fn bad_severity_is_an_error() {
        let e = parse("[rules.cow-storm]\nseverity = \"loud\"\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("loud") && e.contains("critical"), "{e}");
    }

    #[test]
    fn zero_and_negative_thresholds_are_errors() {
        for (text, key) in [
            (
                "[cow_storm]\ncopies_per_sec = 0\n",
                "cow_storm.copies_per_sec",
            ),
            (
                "[cow_storm]\ncopies_per_sec = -5.0\n",
                "cow_storm.copies_per_sec",
            ),
            ("[dedup]\nwindow_secs = 0\n", "dedup.window_secs"),
            ("[engine]\nmax_pages = 0\n", "engine.max_pages"),
        ] {
            match parse(text) {
                Err(ConfigError::Value { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text:?}: expected a value error, got {other:?}"),
            }
        }
        // A negative cap is a type error from toml.
        assert!(matches!(
            parse("[engine]\nmax_alerts = -1\n"),
            Err(ConfigError::Toml(_))
        ));
    }

    #[test]
    fn partial_rule_tables_keep_builtin_severity() -> Result<(), ConfigError> {
        let c = parse(
            "[rules.fork-with-pins]\nenabled = false\n\
             [rules.gup-ref-then-cow]\nseverity = \"critical\"\n\
             [allow]\ncomm = [\"postgres\"]\n[cow_storm]\ncopies_per_sec = 5\n",
        )?;
        assert!(!c.rules.fork_with_pins.enabled);
        assert_eq!(c.rules.fork_with_pins.severity, Severity::Info);
        assert_eq!(c.rules.gup_ref_then_cow.severity, Severity::Critical);
        assert!(c.rules.gup_ref_then_cow.enabled);
        assert_eq!(c.cow_storm.copies_per_sec, 5.0);
        assert!(c.allow.allows_comm(&Comm::new("postgres")));
        assert!(!c.allow.allows_comm(&Comm::new("postgres2")));
        Ok(())
    }
}
