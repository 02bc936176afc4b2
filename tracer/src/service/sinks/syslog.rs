//! RFC 5424 messages to the local syslog socket (`/dev/log`).
//!
//! The formatter is pure and tested against the RFC's grammar; the sink
//! reconnects once per batch when the daemon restarted under it.

use std::{
    io,
    os::unix::net::UnixDatagram,
    path::PathBuf,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use super::{Deliver, DeliverCtx};
use crate::model::{
    Alert, Severity,
    service_config::{SyslogSink, facility_code},
};

/// The IANA example enterprise number (RFC 5612), reserved for
/// documentation: cowtrace has no private enterprise number of its own.
const SD_ID: &str = "cowtrace@32473";
const APP_NAME: &str = "cowtrace";

pub(super) struct Syslog {
    socket: PathBuf,
    sock: UnixDatagram,
    facility: u8,
    hostname: String,
    pid: u32,
}

impl Syslog {
    pub(super) fn connect(cfg: &SyslogSink, hostname: &str) -> io::Result<Self> {
        let sock = UnixDatagram::unbound()?;
        sock.connect(&cfg.socket)?;
        Ok(Syslog {
            socket: cfg.socket.clone(),
            sock,
            // Validated with the config.
            facility: facility_code(&cfg.facility).unwrap_or(3),
            hostname: hostname.to_string(),
            pid: std::process::id(),
        })
    }

    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        if self.sock.send(msg).is_ok() {
            return Ok(());
        }
        let sock = UnixDatagram::unbound()?;
        sock.connect(&self.socket)?;
        self.sock = sock;
        self.sock.send(msg).map(drop)
    }
}

impl Deliver for Syslog {
    fn deliver(&mut self, batch: &[Arc<Alert>], ctx: &DeliverCtx<'_>) -> Result<(), String> {
        for a in batch {
            let msg = format_rfc5424(
                a,
                self.facility,
                &self.hostname,
                self.pid,
                SystemTime::now(),
            );
            if let Err(e) = self.send(msg.as_bytes()) {
                ctx.error();
                return Err(format!("sending to {}: {e}", self.socket.display()));
            }
        }
        Ok(())
    }
}

fn severity_code(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::Warning => 4,
        Severity::Info => 6,
    }
}

/// One RFC 5424 message:
/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`.
pub fn format_rfc5424(
    a: &Alert,
    facility: u8,
    hostname: &str,
    pid: u32,
    now: SystemTime,
) -> String {
    let pri = u32::from(facility) * 8 + u32::from(severity_code(a.severity));
    let host = header_field(hostname, 255);
    let holder = a
        .holder
        .as_ref()
        .map(|h| format!(" holder_pid=\"{}\" holder_pin=\"{}\"", h.pid, h.pin))
        .unwrap_or_default();
    format!(
        "<{pri}>1 {ts} {host} {APP_NAME} {pid} {msgid} [{SD_ID} rule=\"{rule}\" severity=\"{sev}\" pid=\"{apid}\" comm=\"{comm}\" address=\"{addr:#x}\" pfn=\"{pfn}\" count=\"{count}\"{holder}] {msg}",
        ts = rfc3339(now),
        msgid = header_field(a.rule.as_str(), 32),
        rule = a.rule,
        sev = a.severity,
        apid = a.pid,
        comm = param_value(&a.comm.escaped()),
        addr = a.address,
        pfn = a.pfn,
        count = a.count,
        msg = a.message.replace(['\n', '\r'], " "),
    )
}

/// Header fields are 1..=max printable US-ASCII characters, or "-".
fn header_field(s: &str, max: usize) -> String {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| (33..=126).contains(&b)) {
        "-".into()
    } else {
        s.to_string()
    }
}

/// PARAM-VALUE escapes `"`, `\` and `]` (RFC 5424 section 6.3.3).
fn param_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `2026-11-27T06:19:01.123456Z` (UTC, microseconds).
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{Comm, Holder, RuleId};

    fn alert() -> Alert {
        Alert {
            rule: RuleId::PinThenCow,
            severity: Severity::Critical,
            time_ns: 1,
            message: "pin-then-COW: pid 7 (a]b) copied\na pinned page".into(),
            pid: 7,
            comm: Comm::new("a\"]\\b"),
            mm: 3,
            address: 0x7f00_0000_1000,
            pfn: 5,
            holder: Some(Holder {
                pid: 9,
                comm: Comm::new("h"),
                pin: true,
                stack: vec![],
                age_ns: 1,
                address: 0x1000,
            }),
            count: 2,
            suppressed: 1,
            last_ns: 2,
        }
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_784), (2026, 11, 27));
        let t = UNIX_EPOCH + Duration::from_micros(1_795_760_341_123_456);
        assert_eq!(rfc3339(t), "2026-11-27T06:19:01.123456Z");
    }

    #[test]
    fn message_follows_rfc5424() {
        let t = UNIX_EPOCH + Duration::from_secs(86_400);
        let m = format_rfc5424(&alert(), 3, "db-01", 42, t);
        // daemon(3) * 8 + crit(2) = 26
        assert!(
            m.starts_with(
                "<26>1 1970-01-02T00:00:00.000000Z db-01 cowtrace 42 pin-then-cow [cowtrace@32473 "
            ),
            "{m}"
        );
        // The comm is escaped for display first (`"` and `\` as \x22,
        // \x5c); then `\` and `]` are escaped for the PARAM-VALUE.
        assert!(m.contains(r#"comm="a\\x22\]\\x5cb""#), "{m}");
        assert!(m.contains(r#"address="0x7f0000001000""#), "{m}");
        assert!(m.contains(r#"holder_pid="9" holder_pin="true"]"#), "{m}");
        assert!(
            m.ends_with("] pin-then-COW: pid 7 (a]b) copied a pinned page"),
            "{m}"
        );
        assert!(!m.contains('\n'));
        let bad_host = format_rfc5424(&alert(), 16, "has space", 1, t);
        assert!(
            bad_host.starts_with("<130>1 1970-01-02T00:00:00.000000Z - cowtrace 1 "),
            "{bad_host}"
        );
    }

    #[test]
    fn datagrams_reach_the_socket() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path)?;
        let cfg = SyslogSink {
            name: None,
            min_severity: Severity::Info,
            queue: 1,
            socket: path.clone(),
            facility: "local0".into(),
        };
        let mut s = Syslog::connect(&cfg, "h")?;
        s.send(b"<134>1 x")?;
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf)?;
        assert_eq!(&buf[..n], b"<134>1 x");
        Ok(())
    }
}
