//! The report as text, in the order a kernel engineer reads it: what the
//! trace covers, the alerts (most severe first, with the holder's stack),
//! then aligned tables (processes, hot mappings, decision reasons) and the
//! completeness status line last.

use std::fmt::Write as _;

/// Hot mappings listed in the text report (the JSON report has them all).
const TEXT_MAPPINGS: usize = 12;

use crate::model::Report;

use super::alert_text::{fmt_time, holder_lines, safe};

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// Renders rows under a header with per-column widths; two spaces between
/// columns, no trailing spaces.
fn table(out: &mut String, header: &[(&str, Align)], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|(h, _)| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::from(" ");
        for ((c, w), (_, a)) in cells.zip(&widths).zip(header) {
            l.push(' ');
            match a {
                Align::Left => {
                    let _ = write!(l, "{c:<w$}");
                }
                Align::Right => {
                    let _ = write!(l, "{c:>w$}");
                }
            }
            l.push(' ');
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(out, &mut header.iter().map(|(h, _)| *h));
    for r in rows {
        line(out, &mut r.iter().map(String::as_str));
    }
}

/// Bytes with a binary unit.
fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn render(r: &Report) -> String {
    use Align::{Left as L, Right as R};
    let mut out = String::new();
    let sem = if r.kernel.anon_exclusive {
        "PageAnonExclusive semantics, 5.19+"
    } else {
        "refcount semantics, before 5.19"
    };
    let _ = writeln!(
        out,
        "cowtrace report: kernel {} ({sem}), {} events",
        safe(&r.kernel.release),
        r.events
    );
    if !r.complete {
        let _ = writeln!(
            out,
            "INCOMPLETE: {} records lost in the kernel; counts are lower bounds and alerts may be missing",
            r.lost_events
        );
    }

    // Alerts, most severe first, then by time.
    let mut alerts: Vec<_> = r.alerts.iter().collect();
    alerts.sort_by_key(|a| (a.severity, a.time_ns));
    let suppressed: u64 = r.alerts.iter().map(|a| a.suppressed).sum();
    let _ = writeln!(
        out,
        "\nALERTS ({}, {suppressed} repeats suppressed)",
        alerts.len()
    );
    if alerts.is_empty() {
        out.push_str("  none\n");
    }
    for a in alerts {
        let _ = writeln!(
            out,
            "  {:<8} {}  x{} ({} suppressed)  pid {} ({})  mm {:#x}  addr {:#x}  pfn {:#x}  first {}  last {}",
            a.severity.as_str().to_uppercase(),
            a.rule,
            a.count,
            a.suppressed,
            a.pid,
            a.comm.escaped(),
            a.mm,
            a.address,
            a.pfn,
            fmt_time(a.time_ns),
            fmt_time(a.last_ns),
        );
        let _ = writeln!(out, "    {}", safe(&a.message));
        if let Some(h) = &a.holder {
            for l in holder_lines(h, "    ") {
                out.push_str(&l);
                out.push('\n');
            }
        }
    }
    let rules: Vec<Vec<String>> = r
        .alert_summary
        .iter()
        .filter(|s| s.emitted + s.suppressed + s.allowed > 0)
        .map(|s| {
            vec![
                s.rule.to_string(),
                s.emitted.to_string(),
                s.suppressed.to_string(),
                s.allowed.to_string(),
            ]
        })
        .collect();
    if !rules.is_empty() {
        out.push('\n');
        table(
            &mut out,
            &[
                ("RULE", L),
                ("EMITTED", R),
                ("SUPPRESSED", R),
                ("ALLOWED", R),
            ],
            &rules,
        );
    }

    let _ = writeln!(out, "\nPROCESSES ({})", r.processes.len());
    let rows: Vec<Vec<String>> = r
        .processes
        .iter()
        .map(|p| {
            let sites = p
                .decisions_by_site
                .iter()
                .map(|(s, c)| format!("{s}:{}/{}/{}", c.copies, c.reuses, c.other))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                p.pid.to_string(),
                format!(
                    "{}{}",
                    p.comm.escaped(),
                    if p.exited { " (exited)" } else { "" }
                ),
                p.cow_copies.to_string(),
                p.cow_reuses.to_string(),
                p.unshare_copies.to_string(),
                p.unshare_reuses.to_string(),
                p.other_decisions.to_string(),
                p.gup_pins.to_string(),
                p.gup_gets.to_string(),
                p.fork_pinned_copies.to_string(),
                fmt_bytes(p.bytes_copied),
                sites,
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            ("PID", R),
            ("COMM", L),
            ("COPIES", R),
            ("REUSES", R),
            ("UNSH-COPY", R),
            ("UNSH-REUSE", R),
            ("OTHER", R),
            ("PINS", R),
            ("GETS", R),
            ("FORK-PIN", R),
            ("COPIED", R),
            ("SITE:COPY/REUSE/OTHER", L),
        ],
        &rows,
    );

    // The text form shows the hottest few; `--format json` lists them all.
    let shown = r.mappings.len().min(TEXT_MAPPINGS);
    let _ = writeln!(
        out,
        "\nHOT MAPPINGS ({shown} shown, {} more{})",
        r.mappings.len() - shown + r.mappings_omitted as usize,
        if shown < r.mappings.len() {
            "; --format json lists more"
        } else {
            ""
        }
    );
    let rows: Vec<Vec<String>> = r
        .mappings
        .iter()
        .take(TEXT_MAPPINGS)
        .map(|m| {
            vec![
                m.pid.to_string(),
                m.comm.escaped(),
                format!("{:#x}", m.mm),
                format!("{:#x}-{:#x}", m.start, m.end),
                m.pages.to_string(),
                m.copies.to_string(),
                m.reuses.to_string(),
                m.unshares.to_string(),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            ("PID", R),
            ("COMM", L),
            ("MM", R),
            ("RANGE", L),
            ("PAGES", R),
            ("COPIES", R),
            ("REUSES", R),
            ("UNSHARES", R),
        ],
        &rows,
    );

    let _ = writeln!(out, "\nDECISION REASONS");
    let rows: Vec<Vec<String>> = r
        .reasons
        .iter()
        .map(|x| {
            vec![
                x.decision.to_string(),
                x.fault.to_string(),
                x.reason.to_string(),
                x.count.to_string(),
            ]
        })
        .collect();
    table(
        &mut out,
        &[("DECISION", L), ("FAULT", L), ("REASON", L), ("COUNT", R)],
        &rows,
    );

    let d = &r.decisions;
    let e = &r.evictions;
    let _ = writeln!(
        out,
        "\n{}: {} events ({} out of order), decisions {} (copies {}, reuses {}, unshare copies {}, \
         unshare reuses {}, other {}), lost {}, unmatched unpins {}, evictions {} (pages {}, with holders {}, \
         processes {}, mapping pages {}, alerts {})",
        if r.complete { "complete" } else { "INCOMPLETE" },
        r.events,
        r.out_of_order_events,
        d.total(),
        d.cow_copies,
        d.cow_reuses,
        d.unshare_copies,
        d.unshare_reuses,
        d.other,
        r.lost_events,
        r.unmatched_unpins,
        e.total(),
        e.pages,
        e.pages_with_holders,
        e.processes,
        e.mapping_pages,
        e.alerts,
    );
    if r.counted_decisions > 0 {
        let _ = writeln!(
            out,
            "lean mode: {} ordinary decisions were counted in the kernel, not recorded: they are in \
             the decision and per-process counts, not in mappings or reasons",
            r.counted_decisions
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testkit::*;
    use crate::model::{Config, Engine, Event};

    /// 5.10: pin then write in "app"; a fork-COW storm in a process with a
    /// hostile name; one lost record.
    fn sample() -> Report {
        let app = task(100, "app");
        let evil = task(200, "x\x1b[2J\nFAKE");
        let mut evs: Vec<Event> = vec![
            ev(
                1,
                app,
                1,
                stack_def(3, &["try_grab_page+0x1c", "__get_user_pages+0x1a0"]),
            ),
            ev(
                2,
                app,
                1,
                gup(BASE, 0x10, true, false, anon(1026, 2, None), Some(3)),
            ),
            ev(3, app, 1, write_copy(BASE, 0x10, 0x11, anon(1026, 2, None))),
            ev(4, app, 1, lost(7)),
        ];
        for i in 0..5u64 {
            evs.push(ev(
                10 + i,
                evil,
                2,
                write_copy(BASE + i * PAGE, 0x100 + i, 0x200 + i, anon(2, 2, None)),
            ));
        }
        let mut e = Engine::new(Config::default(), caps(false));
        let mut out = Vec::new();
        for x in &evs {
            e.feed(x, &mut out);
        }
        e.report()
    }

    #[test]
    fn alerts_come_first_then_tables_then_status() {
        let text = render(&sample());
        let pos = |needle: &str| text.find(needle).unwrap_or(usize::MAX);
        assert!(pos("INCOMPLETE: 7 records lost") < pos("ALERTS"));
        assert!(pos("CRITICAL pin-then-cow") < pos("PROCESSES"), "{text}");
        assert!(
            pos("WARNING  unprotected-ro-pin") < pos("PROCESSES"),
            "{text}"
        );
        assert!(pos("holder: pid 100 (app) FOLL_PIN") < pos("PROCESSES"));
        assert!(pos("#0  try_grab_page+0x1c") < pos("PROCESSES"));
        assert!(pos("PROCESSES (2)") < pos("HOT MAPPINGS"));
        assert!(pos("HOT MAPPINGS") < pos("DECISION REASONS"));
        assert!(pos("extra_references") > pos("DECISION REASONS"));
        let last = text.lines().last().unwrap_or_default();
        assert!(last.starts_with("INCOMPLETE: 9 events"), "{last}");
        // The hostile name is escaped everywhere and forges no line.
        assert!(!text.contains('\x1b'));
        assert!(text.contains("x\\x1b[2J\\x0aFAKE"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("FAKE")));
    }

    #[test]
    fn process_table_is_sorted_and_aligned() {
        let text = render(&sample());
        let rows: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("PROCESSES"))
            .skip(1)
            .take(3)
            .collect();
        assert!(rows[0].trim_start().starts_with("PID"));
        assert!(
            rows[1].trim_start().starts_with("200"),
            "most copies first: {rows:?}"
        );
        assert!(rows[2].trim_start().starts_with("100"));
        // Right-aligned numeric column: COPIES ends at the same column.
        let end = |l: &str, h: &str| l.find(h).map(|i| i + h.len());
        let col = end(rows[0], "COPIES");
        assert_eq!(col, end(rows[1], " 5"), "{rows:?}");
    }

    #[test]
    fn bytes_pick_a_binary_unit() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(65536), "64.0 KiB");
        assert_eq!(fmt_bytes(2 << 20), "2.0 MiB");
    }

    #[test]
    fn tables_align_columns() {
        let mut s = String::new();
        table(
            &mut s,
            &[("A", Align::Right), ("NAME", Align::Left)],
            &[
                vec!["1".into(), "x".into()],
                vec!["100".into(), "longer".into()],
            ],
        );
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "    A  NAME");
        assert_eq!(lines[1], "    1  x");
        assert_eq!(lines[2], "  100  longer");
    }
}
