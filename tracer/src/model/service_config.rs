//! The service sections of the config file: `[capture]`, `[filters]`,
//! `[[sinks]]`, `[record]`, `[metrics]` (pure data and validation).
//!
//! They sit in the same TOML file as the engine sections so one file
//! describes a whole `cowtrace watch --config FILE` service. `report` and
//! `export` accept and ignore them. Which of them a SIGHUP can change is
//! decided by the service (`service::reload`), not here.

use std::path::PathBuf;

use serde::Deserialize;

use super::alert::Severity;
use super::config::ConfigError;

/// How the kernel side captures, set when the probes are loaded (a reload
/// cannot change it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Lean mode, as `--alerts-only` (either one turns it on): ordinary
    /// decisions counted in the kernel, alert material streamed.
    pub alerts_only: bool,
}

/// In-kernel filters, set when the probes are loaded (a reload cannot
/// change them: it would mean detaching). Command-line filters win.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FiltersConfig {
    /// Only these processes (and the children they fork).
    pub pid: Vec<u32>,
    /// Only tasks whose name starts with this (1 to 15 bytes).
    pub comm: Option<String>,
    /// Only tasks in this cgroup (v2 directory path).
    pub cgroup: Option<PathBuf>,
}

/// Optional trace file recording alongside the alerts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Trace file to write; none: no recording.
    pub path: Option<PathBuf>,
    /// Rotate at this size: bytes, or a string with a K, M or G suffix.
    pub max_size: Option<Size>,
    /// Rotated files kept (needs `max_size`).
    pub max_files: Option<u32>,
}

/// The Prometheus endpoint (off unless `listen` is set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `ADDR:PORT` to serve `/metrics` on, e.g. "127.0.0.1:9464".
    pub listen: Option<String>,
}

/// A byte size written as an integer or as "64K", "256M", "2G".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SizeRepr")]
pub struct Size(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    Bytes(u64),
    Text(String),
}

impl TryFrom<SizeRepr> for Size {
    type Error = String;
    fn try_from(r: SizeRepr) -> Result<Self, String> {
        match r {
            SizeRepr::Bytes(0) => Err("a size must be greater than 0".into()),
            SizeRepr::Bytes(n) => Ok(Size(n)),
            SizeRepr::Text(s) => parse_size(&s).map(Size),
        }
    }
}

/// Parses `4096`, `64K`, `256M`, `2G` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mul = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix `{c}` (use K, M or G)")),
            };
            (&s[..i], mul)
        }
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size"))?;
    n.checked_mul(mul)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("`{s}` is out of range"))
}

/// How the stdout sink writes alerts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdoutFormat {
    #[default]
    Text,
    Json,
}

/// One `[[sinks]]` table; `type` selects the kind.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    Stdout(StdoutSink),
    Jsonl(JsonlSink),
    Syslog(SyslogSink),
    Webhook(WebhookSink),
}

/// Keys every sink has. Each sink runs on its own thread behind a bounded
/// queue of `queue` alerts: when it is full, alerts for that sink are
/// dropped and counted, so a slow sink never slows capture or the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Common<'a> {
    pub name: Option<&'a str>,
    pub min_severity: Severity,
    pub queue: usize,
}

pub const DEFAULT_QUEUE: usize = 4096;

fn default_queue() -> usize {
    DEFAULT_QUEUE
}
fn info() -> Severity {
    Severity::Info
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSink {
    pub name: Option<String>,
    #[serde(default = "info")]
    pub min_severity: Severity,
    #[serde(default = "default_queue")]
    pub queue: usize,
    #[serde(default)]
    pub format: StdoutFormat,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSink {
    pub name: Option<String>,
    #[serde(default = "info")]
    pub min_severity: Severity,
    #[serde(default = "default_queue")]
    pub queue: usize,
    pub path: PathBuf,
    /// Rotate at this size (the current file moves to PATH.1, …).
    #[serde(default = "default_jsonl_size")]
    pub max_size: Size,
    /// Rotated files kept besides the current one.
    #[serde(default = "default_jsonl_files")]
    pub max_files: u32,
}

fn default_jsonl_size() -> Size {
    Size(64 << 20)
}
fn default_jsonl_files() -> u32 {
    4
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSink {
    pub name: Option<String>,
    #[serde(default = "info")]
    pub min_severity: Severity,
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// The local syslog datagram socket.
    #[serde(default = "dev_log")]
    pub socket: PathBuf,
    /// Syslog facility name (RFC 5424 table 1): "daemon", "user", "local0"…
    #[serde(default = "daemon")]
    pub facility: String,
}

fn dev_log() -> PathBuf {
    PathBuf::from("/dev/log")
}
fn daemon() -> String {
    "daemon".into()
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSink {
    pub name: Option<String>,
    #[serde(default = "info")]
    pub min_severity: Severity,
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// `http://` or `https://` URL the batches are POSTed to.
    pub url: String,
    /// PEM file of the CA certificate(s) that sign the receiver's
    /// certificate (a private CA, a self-signed receiver). When given, these
    /// replace the built-in Mozilla roots for this sink. Read when the sink
    /// starts (a reload that leaves the sink's settings as they were keeps
    /// the certificates it has).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Alerts per POST at most.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Seconds an alert may wait for its batch to fill.
    #[serde(default = "one")]
    pub batch_secs: f64,
    /// Seconds one request may take (connect to last byte).
    #[serde(default = "five")]
    pub timeout_secs: f64,
    /// Retries of a failed POST (exponential backoff from `backoff_secs`,
    /// doubling up to `backoff_max_secs`); then the batch is dropped.
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "half")]
    pub backoff_secs: f64,
    #[serde(default = "thirty")]
    pub backoff_max_secs: f64,
    /// At exit, seconds spent delivering what is still queued.
    #[serde(default = "five")]
    pub drain_secs: f64,
}

fn default_batch() -> usize {
    100
}
fn default_retries() -> u32 {
    5
}
fn one() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}
fn five() -> f64 {
    5.0
}
fn thirty() -> f64 {
    30.0
}

/// Facility names and codes (RFC 5424 section 6.2.1).
pub const FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

pub fn facility_code(name: &str) -> Option<u8> {
    FACILITIES.iter().find(|(n, _)| *n == name).map(|&(_, c)| c)
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::Jsonl(_) => "jsonl",
            SinkConfig::Syslog(_) => "syslog",
            SinkConfig::Webhook(_) => "webhook",
        }
    }

    pub fn common(&self) -> Common<'_> {
        let (name, min_severity, queue) = match self {
            SinkConfig::Stdout(s) => (&s.name, s.min_severity, s.queue),
            SinkConfig::Jsonl(s) => (&s.name, s.min_severity, s.queue),
            SinkConfig::Syslog(s) => (&s.name, s.min_severity, s.queue),
            SinkConfig::Webhook(s) => (&s.name, s.min_severity, s.queue),
        };
        Common {
            name: name.as_deref(),
            min_severity,
            queue,
        }
    }

    /// Parses a `--sink` flag: `stdout`, `stdout=json`, `jsonl=PATH`,
    /// `syslog`, `webhook=URL`. Everything else takes its default.
    pub fn from_flag(spec: &str) -> Result<SinkConfig, String> {
        let (kind, arg) = match spec.split_once('=') {
            Some((k, a)) => (k, Some(a)),
            None => (spec, None),
        };
        let mut t = toml::Table::new();
        t.insert("type".into(), kind.into());
        match (kind, arg) {
            ("stdout", None) | ("syslog", None) => {}
            ("stdout", Some(f)) => {
                t.insert("format".into(), f.into());
            }
            ("jsonl", Some(p)) if !p.is_empty() => {
                t.insert("path".into(), p.into());
            }
            ("webhook", Some(u)) if !u.is_empty() => {
                t.insert("url".into(), u.into());
            }
            ("jsonl", _) => return Err("`jsonl` needs a path: --sink jsonl=PATH".into()),
            ("webhook", _) => return Err("`webhook` needs a URL: --sink webhook=URL".into()),
            ("syslog", Some(_)) => {
                return Err("`syslog` takes no argument (use a [[sinks]] table)".into());
            }
            _ => {
                return Err(format!(
                    "unknown sink `{kind}` (stdout, stdout=json, jsonl=PATH, syslog, webhook=URL)"
                ));
            }
        }
        let s: SinkConfig = t
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        s.validate(0).map_err(|e| e.to_string())?;
        Ok(s)
    }

    /// Checks what types alone cannot. `index` names the table in errors.
    pub fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let err = |reason: String| ConfigError::Sink { index, reason };
        if self.common().queue == 0 {
            return Err(err("queue must be at least 1".into()));
        }
        match self {
            SinkConfig::Stdout(_) => {}
            SinkConfig::Jsonl(j) => {
                if j.path.as_os_str().is_empty() {
                    return Err(err("path must not be empty".into()));
                }
            }
            SinkConfig::Syslog(s) => {
                if facility_code(&s.facility).is_none() {
                    let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
                    return Err(err(format!(
                        "unknown facility `{}` (one of {})",
                        s.facility,
                        names.join(", ")
                    )));
                }
            }
            SinkConfig::Webhook(w) => {
                if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                    return Err(err(format!(
                        "url must start with http:// or https://, got `{}`",
                        w.url
                    )));
                }
                if w.batch_size == 0 {
                    return Err(err("batch_size must be at least 1".into()));
                }
                for (key, v) in [
                    ("batch_secs", w.batch_secs),
                    ("timeout_secs", w.timeout_secs),
                    ("backoff_secs", w.backoff_secs),
                    ("backoff_max_secs", w.backoff_max_secs),
                    ("drain_secs", w.drain_secs),
                ] {
                    if !(v.is_finite() && v > 0.0 && v < 1e6) {
                        return Err(err(format!(
                            "{key} must be a positive number of seconds, got {v}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Sink names for metrics and logs: the configured `name`, else the kind,
/// suffixed with the position when a kind repeats. Errors on duplicates.
pub fn sink_names(sinks: &[SinkConfig]) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = Vec::with_capacity(sinks.len());
    for (i, s) in sinks.iter().enumerate() {
        let name = match s.common().name {
            Some(n) => n.to_string(),
            None if sinks.iter().filter(|o| o.kind() == s.kind()).count() > 1 => {
                format!("{}-{i}", s.kind())
            }
            None => s.kind().to_string(),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::Sink {
                index: i,
                reason: format!("name must be printable ASCII without spaces, got {name:?}"),
            });
        }
        if names.contains(&name) {
            return Err(ConfigError::Sink {
                index: i,
                reason: format!("duplicate sink name `{name}`"),
            });
        }
        names.push(name);
    }
    Ok(names)
}

/// Validation of the service sections, called by `Config::validate`.
pub fn validate(
    filters: &FiltersConfig,
    sinks: &[SinkConfig],
    record: &RecordConfig,
    metrics: &MetricsConfig,
) -> Result<(), ConfigError> {
    if let Some(c) = &filters.comm
        && (c.is_empty() || c.len() > 15)
    {
        return Err(ConfigError::Value {
            key: "filters.comm",
            reason: format!("must be 1 to 15 bytes, got {}", c.len()),
        });
    }
    for (i, s) in sinks.iter().enumerate() {
        s.validate(i)?;
    }
    sink_names(sinks)?;
    if record.max_files.is_some() && record.max_size.is_none() {
        return Err(ConfigError::Value {
            key: "record.max_files",
            reason: "needs record.max_size".into(),
        });
    }
    if let Some(l) = &metrics.listen
        && l.parse::<std::net::SocketAddr>().is_err()
    {
        return Err(ConfigError::Value {
            key: "metrics.listen",
            reason: format!("`{l}` is not an ADDR:PORT socket address"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Config;

    fn err(text: &str) -> String {
        Config::from_toml_str(text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn all_sink_kinds_parse_with_defaults() -> Result<(), ConfigError> {
        let c = Config::from_toml_str(
            "[[sinks]]\ntype = \"stdout\"\nformat = \"json\"\n\
             [[sinks]]\ntype = \"jsonl\"\npath = \"/var/lib/cowtrace/alerts.jsonl\"\nmax_size = \"1M\"\n\
             [[sinks]]\ntype = \"syslog\"\nfacility = \"local3\"\nmin_severity = \"warning\"\n\
             [[sinks]]\ntype = \"webhook\"\nurl = \"https://hooks.example/x\"\nname = \"ops\"\n\
             [record]\npath = \"/var/lib/cowtrace/trace.cwt\"\nmax_size = 1048576\nmax_files = 3\n\
             [metrics]\nlisten = \"127.0.0.1:9464\"\n[filters]\ncomm = \"postgres\"\n",
        )?;
        assert_eq!(c.sinks.len(), 4);
        match &c.sinks[1] {
            SinkConfig::Jsonl(j) => {
                assert_eq!(j.max_size, Size(1 << 20));
                assert_eq!(j.max_files, 4);
                assert_eq!(j.queue, DEFAULT_QUEUE);
            }
            other => panic!("{other:?}"),
        }
        match &c.sinks[2] {
            SinkConfig::Syslog(s) => {
                assert_eq!(s.socket, PathBuf::from("/dev/log"));
                assert_eq!(s.min_severity, Severity::Warning);
            }
            other => panic!("{other:?}"),
        }
        match &c.sinks[3] {
            SinkConfig::Webhook(w) => {
                assert_eq!((w.batch_size, w.retries), (100, 5));
                assert_eq!(w.backoff_secs, 0.5);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            sink_names(&c.sinks)?,
            ["stdout", "jsonl", "syslog", "ops"].map(String::from)
        );
        assert_eq!(c.record.max_files, Some(3));
        assert_eq!(c.record.max_size, Some(Size(1 << 20)));
        assert_eq!(c.metrics.listen.as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(c.filters.comm.as_deref(), Some("postgres"));
        Ok(())
    }

    #[test]
    fn invalid_service_sections_name_the_problem() {
        for (text, want) in [
            ("[[sinks]]\ntype = \"carrier-pigeon\"\n", "carrier-pigeon"),
            (
                "[[sinks]]\ntype = \"stdout\"\nfromat = \"json\"\n",
                "fromat",
            ),
            ("[[sinks]]\ntype = \"stdout\"\nformat = \"xml\"\n", "xml"),
            ("[[sinks]]\ntype = \"jsonl\"\n", "path"),
            (
                "[[sinks]]\ntype = \"webhook\"\nurl = \"ftp://x\"\n",
                "sinks[0]",
            ),
            (
                "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"webhook\"\nurl = \"http://a\"\nbatch_size = 0\n",
                "sinks[1]: batch_size",
            ),
            (
                "[[sinks]]\ntype = \"webhook\"\nurl = \"http://a\"\ntimeout_secs = -1\n",
                "timeout_secs",
            ),
            (
                "[[sinks]]\ntype = \"syslog\"\nfacility = \"kitchen\"\n",
                "kitchen",
            ),
            ("[[sinks]]\ntype = \"stdout\"\nqueue = 0\n", "queue"),
            (
                "[[sinks]]\ntype = \"stdout\"\nname = \"a\"\n[[sinks]]\ntype = \"syslog\"\nname = \"a\"\n",
                "duplicate sink name `a`",
            ),
            ("[record]\nmax_files = 3\n", "record.max_files"),
            ("[record]\nmax_size = \"12X\"\n", "12X"),
            ("[record]\nmax_size = 0\n", "greater than 0"),
            ("[record]\npaht = \"x\"\n", "paht"),
            ("[metrics]\nlisten = \"localhost\"\n", "metrics.listen"),
            (
                "[filters]\ncomm = \"a-very-long-process-name\"\n",
                "filters.comm",
            ),
            ("[filters]\npids = [1]\n", "pids"),
        ] {
            let e = err(text);
            assert!(e.contains(want), "{text:?} gave {e:?}, wanted {want:?}");
        }
    }

    #[test]
    fn sink_flags() {
        let ok = |s: &str| SinkConfig::from_flag(s).map(|c| c.kind());
        assert_eq!(ok("stdout"), Ok("stdout"));
        assert_eq!(ok("stdout=json"), Ok("stdout"));
        assert_eq!(ok("jsonl=/tmp/a.jsonl"), Ok("jsonl"));
        assert_eq!(ok("syslog"), Ok("syslog"));
        assert_eq!(ok("webhook=http://127.0.0.1:9/x"), Ok("webhook"));
        for bad in [
            "jsonl",
            "webhook=",
            "webhook=gopher://x",
            "stdout=xml",
            "syslog=x",
            "kafka=x",
        ] {
            assert!(SinkConfig::from_flag(bad).is_err(), "{bad}");
        }
        let names = sink_names(&[
            SinkConfig::from_flag("stdout").unwrap_or_else(|e| panic!("{e}")),
            SinkConfig::from_flag("stdout=json").unwrap_or_else(|e| panic!("{e}")),
        ]);
        assert_eq!(names.ok(), Some(vec!["stdout-0".into(), "stdout-1".into()]));
    }
}
