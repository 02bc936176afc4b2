//! Reads `cowtrace report --format json`: completeness, per-process
//! counters and alerts. Unknown fields are ignored.

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Report {
    pub complete: bool,
    pub lost_events: u64,
    pub processes: Vec<Process>,
    pub alerts: Vec<Alert>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Process {
    pub pid: u32,
    #[serde(default)]
    pub comm: String,
    pub cow_copies: u64,
    pub cow_reuses: u64,
    pub unshare_copies: u64,
    pub unshare_reuses: u64,
    pub gup_pins: u64,
    pub gup_gets: u64,
    pub fork_pinned_copies: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Alert {
    pub rule: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default, deserialize_with = "crate::hex::deserialize_opt")]
    pub address: Option<u64>,
    #[serde(default, deserialize_with = "crate::hex::deserialize_opt")]
    pub pfn: Option<u64>,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub holder: Option<AlertHolder>,
}

/// The other side of an alert: who holds the page.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct AlertHolder {
    pub pid: u32,
}

impl Report {
    pub fn parse(text: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Counters of `pid`, summed over its entries (a report may split a
    /// process by comm, e.g. before and after exec). `None` if absent.
    pub fn process(&self, pid: u32) -> Option<Process> {
        self.processes
            .iter()
            .filter(|p| p.pid == pid)
            .fold(None, |acc, p| {
                let mut sum = acc.unwrap_or(Process {
                    pid,
                    comm: p.comm.clone(),
                    ..Default::default()
                });
                sum.cow_copies += p.cow_copies;
                sum.cow_reuses += p.cow_reuses;
                sum.unshare_copies += p.unshare_copies;
                sum.unshare_reuses += p.unshare_reuses;
                sum.gup_pins += p.gup_pins;
                sum.gup_gets += p.gup_gets;
                sum.fork_pinned_copies += p.fork_pinned_copies;
                Some(sum)
            })
    }

    pub fn alerts(&self, rule: &str) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(move |a| a.rule == rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "complete": true, "lost_events": 0, "format_version": 1,
      "processes": [
        {"pid": 7, "comm": "cowtrace", "cow_copies": 1, "cow_reuses": 0, "unshare_copies": 0,
         "unshare_reuses": 0, "gup_pins": 0, "gup_gets": 0, "fork_pinned_copies": 0, "bytes_copied": 4096},
        {"pid": 7, "comm": "cow-scenarios", "cow_copies": 2, "cow_reuses": 3, "unshare_copies": 4,
         "unshare_reuses": 5, "gup_pins": 6, "gup_gets": 7, "fork_pinned_copies": 8, "bytes_copied": 8192}
      ],
      "alerts": [
        {"rule": "gup-ref-then-cow", "severity": "warning", "pid": 7, "comm": "x",
         "address": "0x7f0000000000", "pfn": 12, "holder": {"pid": 7, "comm": "x", "pin": false,
         "stack": [], "age_ns": 5}, "count": 16, "suppressed": 15, "message": "m"},
        {"rule": "fork-with-pins", "severity": "info", "pid": null, "address": null, "pfn": null,
         "holder": null, "count": 1, "suppressed": 0, "message": "m"}
      ]
    }"#;

    #[test]
    fn parses_and_sums_split_processes() {
        let r = Report::parse(SAMPLE).unwrap();
        assert!(r.complete);
        let p = r.process(7).unwrap();
        assert_eq!(
            (p.cow_copies, p.cow_reuses, p.fork_pinned_copies),
            (3, 3, 8)
        );
        assert!(r.process(8).is_none());
        let a: Vec<_> = r.alerts("gup-ref-then-cow").collect();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].address, Some(0x7f00_0000_0000));
        assert_eq!(r.alerts("fork-with-pins").next().unwrap().pid, None);
    }

    #[test]
    fn missing_required_fields_are_errors() {
        assert!(Report::parse(r#"{"complete": true}"#).is_err());
        assert!(
            Report::parse(
                r#"{"complete":true,"lost_events":0,"processes":[{"pid":1}],"alerts":[]}"#
            )
            .is_err()
        );
    }
}
