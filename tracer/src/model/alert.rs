//! Alerts: what the rules raise, and their identity for dedup.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use super::event::Comm;

/// The built-in rules. The serialized form is the rule's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleId {
    /// A Copy decision on a page with an outstanding FOLL_PIN.
    PinThenCow,
    /// A Copy decision on a page with an outstanding FOLL_GET reference.
    GupRefThenCow,
    /// A Reuse decision while another process (or another mm) holds a GUP
    /// reference or pin on the page: the holder observes the write.
    GupRefThenReuse,
    /// A read-only FOLL_PIN of an anonymous page that may still be shared.
    UnprotectedRoPin,
    /// A fork copied pinned pages eagerly.
    ForkWithPins,
    /// A process copies pages faster than the configured rate.
    CowStorm,
}

impl RuleId {
    pub const ALL: [RuleId; 6] = [
        RuleId::PinThenCow,
        RuleId::GupRefThenCow,
        RuleId::GupRefThenReuse,
        RuleId::UnprotectedRoPin,
        RuleId::ForkWithPins,
        RuleId::CowStorm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::PinThenCow => "pin-then-cow",
            RuleId::GupRefThenCow => "gup-ref-then-cow",
            RuleId::GupRefThenReuse => "gup-ref-then-reuse",
            RuleId::UnprotectedRoPin => "unprotected-ro-pin",
            RuleId::ForkWithPins => "fork-with-pins",
            RuleId::CowStorm => "cow-storm",
        }
    }

    /// The severity a rule has unless the config overrides it. A pin that
    /// diverges or a foreign holder that observes writes breaks a program's
    /// data; a FOLL_GET holder keeping old contents is the documented (if
    /// surprising) behaviour of such users; the rest is advice.
    pub fn default_severity(self) -> Severity {
        match self {
            RuleId::PinThenCow | RuleId::GupRefThenReuse => Severity::Critical,
            RuleId::GupRefThenCow | RuleId::UnprotectedRoPin => Severity::Warning,
            RuleId::ForkWithPins | RuleId::CowStorm => Severity::Info,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who holds the page the alert is about (the other side of the story).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub pid: u32,
    #[serde(serialize_with = "ser_comm")]
    pub comm: Comm,
    /// FOLL_PIN (true) or FOLL_GET (false).
    pub pin: bool,
    /// Kernel stack of the grab, innermost first (empty when unknown).
    pub stack: Vec<String>,
    /// Event time of the alert minus the time of the grab.
    pub age_ns: u64,
    /// User address the holder grabbed the page at.
    #[serde(serialize_with = "ser_hex")]
    pub address: u64,
}

/// One alert, after dedup: `count` occurrences, of which the first was
/// emitted and `suppressed` were only counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub rule: RuleId,
    pub severity: Severity,
    /// Event time of the first occurrence.
    pub time_ns: u64,
    /// Human-readable, shows both sides (the faulting task and the holder).
    /// Process-controlled parts are already escaped.
    pub message: String,
    pub pid: u32,
    #[serde(serialize_with = "ser_comm")]
    pub comm: Comm,
    pub mm: u64,
    #[serde(serialize_with = "ser_hex")]
    pub address: u64,
    pub pfn: u64,
    pub holder: Option<Holder>,
    pub count: u64,
    pub suppressed: u64,
    /// Event time of the latest occurrence.
    pub last_ns: u64,
}

/// Task names are serialized escaped: JSON consumers print them too.
pub(crate) fn ser_comm<S: Serializer>(c: &Comm, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&c.escaped())
}

pub(crate) fn ser_hex<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:#x}"))
}

/// Dedup identity: rule, process, address space and range (a 2 MiB region
/// of the address, or a rule-specific discriminator such as the child mm of
/// a fork).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DedupKey {
    pub rule: RuleId,
    pub pid: u32,
    pub mm: u64,
    pub range: u64,
}

/// Dedup regions are PMD-sized (2 MiB with 4 KiB pages): one pinned buffer
/// is one alert, with its pages counted.
pub(crate) const DEDUP_REGION_SHIFT: u32 = 21;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_serialize_as_their_ids() {
        for r in RuleId::ALL {
            let j = serde_json::to_string(&r).unwrap_or_default();
            assert_eq!(j, format!("\"{}\"", r.as_str()));
            assert_eq!(RuleId::ALL[r.index()], r);
        }
    }

    #[test]
    fn alert_serializes_hex_address_and_escaped_comm() {
        let a = Alert {
            rule: RuleId::PinThenCow,
            severity: Severity::Critical,
            time_ns: 1,
            message: "m".into(),
            pid: 7,
            comm: Comm::new("a\x1b[2Jb"),
            mm: 3,
            address: 0x7f00_0000_1000,
            pfn: 5,
            holder: None,
            count: 1,
            suppressed: 0,
            last_ns: 1,
        };
        let v: serde_json::Value = serde_json::to_value(&a).unwrap_or_default();
        assert_eq!(v["address"], "0x7f0000001000");
        assert_eq!(v["comm"], "a\\x1b[2Jb");
        assert_eq!(v["rule"], "pin-then-cow");
        assert_eq!(v["severity"], "critical");
        assert!(v["holder"].is_null());
    }
}
