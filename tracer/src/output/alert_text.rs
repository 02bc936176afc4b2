//! One alert as text for `watch`: one line, plus the holder and its kernel
//! stack on indented lines.
//!
//! Process-controlled strings (task names) are escaped with
//! `Comm::escaped`; the rest goes through [`safe`] as a second fence, so
//! nothing in an alert can move the operator's cursor or forge a line.

use std::fmt::Write as _;

use crate::model::rules::fmt_ns;
use crate::model::{Alert, Holder};

/// Replaces control and non-ASCII characters with `\xNN` escapes and keeps
/// everything else (including backslashes of escapes made earlier, so an
/// already escaped name is not escaped twice).
pub fn safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// Event time as seconds with microseconds (CLOCK_MONOTONIC of the trace).
pub fn fmt_time(ns: u64) -> String {
    format!("{}.{:06}", ns / 1_000_000_000, (ns % 1_000_000_000) / 1_000)
}

/// The holder line and its stack frames, each prefixed by `indent`.
pub fn holder_lines(h: &Holder, indent: &str) -> Vec<String> {
    let mut v = vec![format!(
        "{indent}holder: pid {} ({}) {} at {:#x}, held {}",
        h.pid,
        h.comm.escaped(),
        if h.pin { "FOLL_PIN" } else { "FOLL_GET" },
        h.address,
        fmt_ns(h.age_ns),
    )];
    for (i, f) in h.stack.iter().enumerate() {
        v.push(format!("{indent}  #{i:<2} {}", safe(f)));
    }
    v
}

/// `12.345678 CRITICAL pin-then-cow pid 42 (app) addr 0x.. pfn 0x..: message`
/// followed by the holder lines. No trailing newline.
pub fn render(a: &Alert) -> String {
    let mut s = format!(
        "{} {} {} pid {} ({}) mm {:#x} addr {:#x} pfn {:#x}: {}",
        fmt_time(a.time_ns),
        a.severity.as_str().to_uppercase(),
        a.rule,
        a.pid,
        a.comm.escaped(),
        a.mm,
        a.address,
        a.pfn,
        safe(&a.message),
    );
    if a.count > 1 {
        let _ = write!(s, " [x{}, {} suppressed]", a.count, a.suppressed);
    }
    if let Some(h) = &a.holder {
        for line in holder_lines(h, "    ") {
            s.push('\n');
            s.push_str(&line);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Comm, RuleId, Severity};

    fn alert(comm: &str) -> Alert {
        Alert {
            rule: RuleId::GupRefThenCow,
            severity: Severity::Warning,
            time_ns: 2_000_500_000,
            message: format!("pid 7 ({}) wrote", Comm::new(comm).escaped()),
            pid: 7,
            comm: Comm::new(comm),
            mm: 1,
            address: 0x7f00_0000_0000,
            pfn: 0x1234,
            holder: Some(Holder {
                pid: 8,
                comm: Comm::new("pipe\x1b]0;x"),
                pin: false,
                stack: vec!["try_grab_page+0x1c".into(), "evil\nline".into()],
                age_ns: 1_500_000,
                address: 0x7f00_0000_0000,
            }),
            count: 3,
            suppressed: 2,
            last_ns: 3_000_000_000,
        }
    }

    #[test]
    fn one_line_plus_holder_lines_and_nothing_unescaped() {
        let out = render(&alert("a\x1b[31mb"));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].starts_with("2.000500 WARNING gup-ref-then-cow pid 7 (a\\x1b[31mb)"));
        assert!(lines[0].ends_with("[x3, 2 suppressed]"));
        assert!(lines[1].contains("pid 8 (pipe\\x1b]0;x) FOLL_GET"));
        assert!(lines[1].contains("held 1.500 ms"));
        assert!(lines[3].contains("evil\\x0aline"));
        assert!(!out.contains('\x1b'));
        // The name inside the message is escaped once, not twice.
        assert!(lines[0].contains("pid 7 (a\\x1b[31mb) wrote"));
    }
}
