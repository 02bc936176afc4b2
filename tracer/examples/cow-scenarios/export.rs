//! Reads `cowtrace export --format jsonl`: one event object per line.
//!
//! Deliberately our own types, not cowtrace's: the checks are an independent
//! reading of the documented schema. Unknown fields and unknown event types
//! are tolerated (the schema grows additively); addresses may be hex strings
//! or numbers.

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Event {
    #[serde(default)]
    pub time_ns: u64,
    pub pid: u32,
    #[serde(default)]
    pub tid: u32,
    #[serde(default)]
    pub comm: String,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    CowFault(CowFault),
    Gup(Gup),
    Unpin(Unpin),
    ForkVma(ForkVma),
    ForkCopy(ForkCopy),
    Fork(Fork),
    Exit,
    Lost(Lost),
    #[serde(other)]
    Unknown,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Write,
    Unshare,
    #[serde(other)]
    Unknown,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Reuse,
    Copy,
    Other,
    #[serde(other)]
    Unknown,
}

fn default_site() -> String {
    "wp".into()
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct CowFault {
    /// `wp`, `swap`, `thp` or `hugetlb` (absent in old exports: `wp`).
    #[serde(default = "default_site")]
    pub site: String,
    pub fault: FaultKind,
    #[serde(deserialize_with = "crate::hex::deserialize")]
    pub address: u64,
    #[serde(deserialize_with = "crate::hex::deserialize")]
    pub pfn: u64,
    #[serde(default, deserialize_with = "crate::hex::deserialize_opt")]
    pub new_pfn: Option<u64>,
    pub decision: Decision,
    #[serde(default)]
    pub refcount: Option<i64>,
    #[serde(default)]
    pub mapcount: Option<i64>,
    /// The page is part of a large folio (THP, mTHP).
    #[serde(default)]
    pub large: Option<bool>,
    /// `swap` site: references to the swap entry before the fault.
    #[serde(default)]
    pub swap_count: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Gup {
    /// 0 when the tracer could not tell the user address.
    #[serde(default, deserialize_with = "crate::hex::deserialize")]
    pub address: u64,
    #[serde(deserialize_with = "crate::hex::deserialize")]
    pub pfn: u64,
    #[serde(default = "one")]
    pub refs: u32,
    pub pin: bool,
    pub write: bool,
    #[serde(default)]
    pub longterm: bool,
    #[serde(default)]
    pub failed: bool,
    #[serde(default)]
    pub stack: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Unpin {
    #[serde(deserialize_with = "crate::hex::deserialize")]
    pub pfn: u64,
    #[serde(default = "one")]
    pub refs: u32,
    pub pin: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ForkVma {
    #[serde(default)]
    pub child_pid: Option<u32>,
    #[serde(deserialize_with = "crate::hex::deserialize")]
    pub start: u64,
    #[serde(deserialize_with = "crate::hex::deserialize")]
    pub end: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ForkCopy {
    #[serde(default)]
    pub child_pid: Option<u32>,
    #[serde(default, deserialize_with = "crate::hex::deserialize")]
    pub child_mm: u64,
    #[serde(deserialize_with = "crate::hex::deserialize")]
    pub address: u64,
    #[serde(default, deserialize_with = "crate::hex::deserialize_opt")]
    pub new_pfn: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Fork {
    pub child_pid: u32,
    #[serde(default, deserialize_with = "crate::hex::deserialize")]
    pub child_mm: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Lost {
    #[serde(default)]
    pub hook: String,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub dropped: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub skipped: u64,
}

impl Lost {
    /// Records this marker stands for: `count` when given, else the parts.
    pub fn total(&self) -> u64 {
        self.count
            .unwrap_or(self.dropped + self.errors + self.skipped)
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("export line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses a whole JSON-lines export; blank lines are skipped.
pub fn parse_jsonl(text: &str) -> Result<Vec<Event>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| ParseError {
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_type_and_ignores_extras() {
        let text = r#"
{"type":"cow_fault","time_ns":5,"cpu":1,"pid":7,"tid":7,"comm":"x","mm":"0x1","site":"wp","fault":"write","address":"0x7f0000001000","pfn":100,"new_pfn":200,"decision":"copy","shared_mapping":false,"ret":0,"refcount":3,"mapcount":2,"anon":true,"anon_exclusive":null,"ksm":false,"swapcache":false,"large":false,"page_valid":true,"future_field":[1,2]}
{"type":"gup","time_ns":6,"cpu":0,"pid":7,"tid":7,"comm":"x","mm":1,"path":"fast","address":"0x7f0000001000","pfn":"0x64","refs":1,"pin":true,"write":false,"longterm":false,"force":false,"failed":false,"refcount":1025,"mapcount":1,"anon":true,"anon_exclusive":true,"stack":["pin_user_pages_remote+0x1f"]}
{"type":"unpin","time_ns":7,"cpu":0,"pid":7,"tid":7,"comm":"x","mm":0,"pfn":100,"refs":1,"pin":true,"refcount_before":1025}
{"type":"fork_vma","time_ns":8,"cpu":0,"pid":7,"tid":7,"comm":"x","mm":0,"child_pid":null,"child_mm":"0x2","start":"0x1000","end":"0x3000","vm_flags":"0x100073"}
{"type":"fork_copy","time_ns":9,"cpu":0,"pid":7,"tid":7,"comm":"x","mm":0,"child_pid":8,"child_mm":"0x2","address":"0x1000","new_pfn":300}

{"type":"fork","time_ns":10,"cpu":0,"pid":7,"tid":7,"comm":"x","mm":0,"child_pid":8,"child_tid":8,"child_mm":"0x2"}
{"type":"exit","time_ns":11,"cpu":0,"pid":8,"tid":8,"comm":"x","mm":0}
{"type":"lost","time_ns":12,"cpu":0,"pid":0,"tid":0,"comm":"","mm":0,"hook":"wp_fault","count":5,"dropped":5,"errors":0}
{"type":"brand_new_kind","time_ns":13,"pid":1,"tid":1}
"#;
        let events = parse_jsonl(text).unwrap();
        assert_eq!(events.len(), 9);
        match &events[0].body {
            Body::CowFault(f) => {
                assert_eq!(f.address, 0x7f00_0000_1000);
                assert_eq!((f.pfn, f.new_pfn), (100, Some(200)));
                assert_eq!((f.fault, f.decision), (FaultKind::Write, Decision::Copy));
                assert_eq!((f.refcount, f.mapcount), (Some(3), Some(2)));
            }
            other => panic!("not a cow_fault: {other:?}"),
        }
        match &events[1].body {
            Body::Gup(g) => assert!(g.pfn == 100 && g.pin && !g.write && g.stack.is_some()),
            other => panic!("not a gup: {other:?}"),
        }
        assert!(
            matches!(&events[3].body, Body::ForkVma(v) if v.start == 0x1000 && v.child_pid.is_none())
        );
        assert!(
            matches!(&events[4].body, Body::ForkCopy(c) if c.child_pid == Some(8) && c.child_mm == 2)
        );
        assert!(matches!(&events[5].body, Body::Fork(f) if f.child_pid == 8));
        assert_eq!(events[6].body, Body::Exit);
        assert!(matches!(&events[7].body, Body::Lost(l) if l.total() == 5));
        assert_eq!(events[8].body, Body::Unknown);
    }

    #[test]
    fn lost_total_falls_back_to_parts() {
        let l = Lost {
            hook: String::new(),
            count: None,
            dropped: 3,
            errors: 2,
            skipped: 1,
        };
        assert_eq!(l.total(), 6);
    }

    #[test]
    fn reports_the_bad_line() {
        let text = "{\"type\":\"exit\",\"pid\":1}\n{\"type\":\"cow_fault\",\"pid\":1}\n";
        let err = parse_jsonl(text).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(parse_jsonl("not json").is_err());
    }
}
