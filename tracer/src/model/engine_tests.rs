//! Engine tests over synthetic streams: the kernel discussion's sequence
//! under both semantics, each rule, dedup, caps, and invariants (proptest).

use super::alert::{Alert, RuleId, Severity};
use super::config::Config;
use super::engine::Engine;
use super::event::*;
use super::report::Report;
use super::testkit::*;

const APP: u32 = 100;
const CHILD: u32 = 101;
const MM: u64 = 1;
const CHILD_MM: u64 = 2;

fn run(engine: &mut Engine, events: &[Event]) -> Vec<Alert> {
    let mut out = Vec::new();
    for e in events {
        engine.feed(e, &mut out);
    }
    out
}

fn rules_of(alerts: &[Alert]) -> Vec<RuleId> {
    alerts.iter().map(|a| a.rule).collect()
}

fn reason_count(r: &Report, decision: &str, fault: &str, reason: &str) -> u64 {
    r.reasons
        .iter()
        .filter(|x| x.decision == decision && x.fault == fault && x.reason == reason)
        .map(|x| x.count)
        .sum()
}

/// map private, write, fork, child exits (the first write of a fresh page
/// is not a COW decision: nothing to trace before the fork).
fn fork_then_child_exit(pages: u64) -> Vec<Event> {
    let app = task(APP, "app");
    let child = task(CHILD, "app");
    vec![
        ev(
            1_000,
            app,
            MM,
            fork_vma(CHILD_MM, CHILD, BASE, BASE + pages * PAGE),
        ),
        ev(1_001, app, MM, task_fork(CHILD, CHILD_MM)),
        ev(2_000, child, CHILD_MM, Body::TaskExit),
        ev(
            2_500,
            app,
            MM,
            stack_def(7, &["try_grab_page+0x1c", "follow_page_pte+0x2a0"]),
        ),
    ]
}

/// 5.10: no unshare. The read-only pin leaves the page write-protected and
/// shared-looking; the next write copies it away from the pin.
#[test]
fn discussion_sequence_on_5_10_alerts_at_pin_and_at_write() {
    let app = task(APP, "app");
    let mut events = fork_then_child_exit(16);
    for i in 0..16u64 {
        let (a, pfn) = (BASE + i * PAGE, 0x1000 + i);
        // Read-only pin: refcount 1 mapping + 1024 pin bias.
        events.push(ev(
            3_000 + i,
            app,
            MM,
            gup(a, pfn, true, false, anon(1025, 1, None), Some(7)),
        ));
    }
    for i in 0..16u64 {
        let (a, pfn) = (BASE + i * PAGE, 0x1000 + i);
        // page_count != 1 because of the pin: 5.10 copies.
        events.push(ev(
            5_000 + i,
            app,
            MM,
            write_copy(a, pfn, 0x9000 + i, anon(1025, 1, None)),
        ));
    }
    let mut e = Engine::new(Config::default(), caps(false));
    let alerts = run(&mut e, &events);
    assert_eq!(
        rules_of(&alerts),
        vec![RuleId::UnprotectedRoPin, RuleId::PinThenCow]
    );

    let ro = &alerts[0];
    assert_eq!(
        (ro.pid, ro.time_ns, ro.pfn, ro.address),
        (APP, 3_000, 0x1000, BASE)
    );
    assert_eq!(ro.severity, Severity::Warning);
    assert!(ro.message.contains("fork"), "{}", ro.message);

    let p = &alerts[1];
    assert_eq!(p.severity, Severity::Critical);
    assert_eq!(
        (p.pid, p.time_ns, p.pfn, p.address),
        (APP, 5_000, 0x1000, BASE)
    );
    let h = p
        .holder
        .as_ref()
        .map(|h| (h.pid, h.pin, h.age_ns, h.stack.clone()));
    assert_eq!(
        h,
        Some((
            APP,
            true,
            2_000,
            vec![
                "try_grab_page+0x1c".to_string(),
                "follow_page_pte+0x2a0".into()
            ]
        ))
    );
    assert!(!p.message.contains("kernel bug"), "{}", p.message);
    assert!(p.message.contains("pid 100 (app) wrote"), "{}", p.message);

    let r = e.report();
    // Dedup: one alert per rule for the 16-page buffer, the rest counted.
    let counts: Vec<_> = r
        .alerts
        .iter()
        .map(|a| (a.rule, a.count, a.suppressed))
        .collect();
    assert_eq!(
        counts,
        vec![
            (RuleId::UnprotectedRoPin, 16, 15),
            (RuleId::PinThenCow, 16, 15)
        ]
    );
    assert_eq!(r.processes.len(), 1);
    let pr = &r.processes[0];
    assert_eq!(
        (pr.pid, pr.cow_copies, pr.gup_pins, pr.bytes_copied),
        (APP, 16, 16, 16 * PAGE)
    );
    assert_eq!(pr.decisions_by_site.get("wp").map(|s| s.copies), Some(16));
    assert_eq!(reason_count(&r, "copy", "write", "extra_references"), 16);
    assert_eq!(r.mappings.len(), 1, "16 contiguous pages are one range");
    let m = &r.mappings[0];
    assert_eq!(
        (m.start, m.end, m.pages, m.copies),
        (BASE, BASE + 16 * PAGE, 16, 16)
    );
    assert!(r.complete);
}

/// 6.1: the read-only pin unshares (copies) first, pins an exclusive page,
/// and the later write reuses it: nothing to report.
#[test]
fn discussion_sequence_on_6_1_is_quiet() {
    let app = task(APP, "app");
    let mut events = fork_then_child_exit(4);
    for i in 0..4u64 {
        let (a, pfn, new) = (BASE + i * PAGE, 0x1000 + i, 0x9000 + i);
        events.push(ev(
            3_000 + i,
            app,
            MM,
            unshare_copy(a, pfn, new, anon(2, 1, Some(false))),
        ));
        events.push(ev(
            3_100 + i,
            app,
            MM,
            gup(a, new, true, false, anon(1025, 1, Some(true)), Some(7)),
        ));
    }
    for i in 0..4u64 {
        let (a, new) = (BASE + i * PAGE, 0x9000 + i);
        events.push(ev(
            5_000 + i,
            app,
            MM,
            write_reuse(a, new, anon(1025, 1, Some(true))),
        ));
    }
    let mut e = Engine::new(Config::default(), caps(true));
    let alerts = run(&mut e, &events);
    assert!(alerts.is_empty(), "{alerts:#?}");
    let r = e.report();
    let pr = &r.processes[0];
    assert_eq!(
        (pr.unshare_copies, pr.cow_reuses, pr.cow_copies, pr.gup_pins),
        (4, 4, 0, 4)
    );
    assert_eq!(reason_count(&r, "reuse", "write", "anon_exclusive"), 4);
    assert_eq!(reason_count(&r, "copy", "unshare", "extra_references"), 4);
    assert_eq!(r.mappings[0].unshares, 4);
}

/// With PageAnonExclusive semantics a pinned page must never be copied:
/// if it is, the alert says it is a kernel bug.
#[test]
fn pin_then_cow_on_6_1_names_a_kernel_bug() {
    let app = task(APP, "app");
    let events = vec![
        ev(
            10,
            app,
            MM,
            gup(BASE, 0x10, true, true, anon(1025, 1, Some(true)), None),
        ),
        ev(
            20,
            app,
            MM,
            write_copy(BASE, 0x10, 0x20, anon(1025, 1, Some(true))),
        ),
    ];
    let mut e = Engine::new(Config::default(), caps(true));
    let alerts = run(&mut e, &events);
    assert_eq!(rules_of(&alerts), vec![RuleId::PinThenCow]);
    assert!(
        alerts[0].message.contains("kernel bug"),
        "{}",
        alerts[0].message
    );
    assert_eq!(reason_count(&e.report(), "copy", "write", "unexplained"), 1);
}

/// vmsplice of fork-shared pages, then a write: the pipe keeps the old page.
#[test]
fn vmsplice_then_write_names_writer_and_holder() {
    let app = task(APP, "writer");
    let child = task(CHILD, "writer");
    let events = vec![
        ev(1, app, MM, fork_vma(CHILD_MM, CHILD, BASE, BASE + PAGE)),
        ev(2, app, MM, task_fork(CHILD, CHILD_MM)),
        // vmsplice: FOLL_GET, read-only; 2 mappings + the pipe's reference.
        ev(
            10,
            app,
            MM,
            gup(BASE, 0x10, false, false, anon(3, 2, Some(false)), None),
        ),
        // The child writes first: it copies in its own mm; the parent
        // still maps the page the pipe holds. Not a divergence.
        ev(
            20,
            child,
            CHILD_MM,
            write_copy(BASE, 0x10, 0x30, anon(3, 2, Some(false))),
        ),
        // The parent writes: the pipe reference keeps refcount > 1: copy.
        ev(
            30,
            app,
            MM,
            write_copy(BASE, 0x10, 0x20, anon(2, 1, Some(false))),
        ),
    ];
    let mut e = Engine::new(Config::default(), caps(true));
    let alerts = run(&mut e, &events);
    assert_eq!(rules_of(&alerts), vec![RuleId::GupRefThenCow]);
    let a = &alerts[0];
    assert_eq!((a.pid, a.time_ns, a.severity), (APP, 30, Severity::Warning));
    let h = a.holder.as_ref().map(|h| (h.pid, h.pin, h.age_ns));
    assert_eq!(h, Some((APP, false, 20)));
    assert!(
        a.message.contains("pid 100 (writer) wrote"),
        "{}",
        a.message
    );
    assert!(a.message.contains("old contents"), "{}", a.message);
}

/// A FOLL_GET reference whose end the refcount shows is not an alert.
#[test]
fn released_gup_references_are_inferred_from_the_refcount() {
    let app = task(APP, "app");
    let events = vec![
        ev(
            10,
            app,
            MM,
            gup(BASE, 0x10, false, false, anon(3, 2, Some(false)), None),
        ),
        // The reference is gone (2 mappings, refcount 2): a plain fork COW.
        ev(
            30,
            app,
            MM,
            write_copy(BASE, 0x10, 0x20, anon(2, 2, Some(false))),
        ),
    ];
    let mut e = Engine::new(Config::default(), caps(true));
    assert!(run(&mut e, &events).is_empty());
    assert_eq!(
        reason_count(&e.report(), "copy", "write", "shared_by_mappings"),
        1
    );
}

#[test]
fn fork_with_pins_is_one_alert_per_fork_with_the_page_count() {
    let app = task(APP, "db");
    let mut events = Vec::new();
    for i in 0..4u64 {
        let b = gup(
            BASE + i * PAGE,
            0x10 + i,
            true,
            true,
            anon(1025, 1, Some(true)),
            None,
        );
        events.push(ev(10 + i, app, MM, b));
    }
    for (n, (child, child_mm)) in [(CHILD, CHILD_MM), (CHILD + 1, 3)].into_iter().enumerate() {
        let t0 = 100 + 100 * n as u64;
        events.push(ev(
            t0,
            app,
            MM,
            fork_vma(child_mm, child, BASE, BASE + 4 * PAGE),
        ));
        for i in 0..4u64 {
            let b = fork_copy(child_mm, child, BASE + i * PAGE, 0x100 * (n as u64 + 1) + i);
            events.push(ev(t0 + 1 + i, app, MM, b));
        }
        events.push(ev(t0 + 10, app, MM, task_fork(child, child_mm)));
    }
    let mut e = Engine::new(Config::default(), caps(true));
    let alerts = run(&mut e, &events);
    assert_eq!(
        rules_of(&alerts),
        vec![RuleId::ForkWithPins, RuleId::ForkWithPins]
    );
    assert!(alerts[0].message.contains("MADV_DONTFORK"));
    assert!(alerts[0].message.contains("child pid 101"));
    assert_eq!(alerts[0].pfn, 0x10, "the pinned page, found by address");
    assert_eq!(alerts[0].holder.as_ref().map(|h| h.pin), Some(true));
    let r = e.report();
    let counts: Vec<_> = r.alerts.iter().map(|a| (a.count, a.suppressed)).collect();
    assert_eq!(counts, vec![(4, 3), (4, 3)]);
    let db = r.processes.iter().find(|p| p.pid == APP);
    assert_eq!(db.map(|p| p.fork_pinned_copies), Some(8));
}

#[test]
fn dedup_window_reemits_after_it_expires() {
    let mut cfg = Config::default();
    cfg.dedup.window_secs = 1.0;
    let app = task(APP, "app");
    let mut events = Vec::new();
    // Same page pinned and copied three times; the third is 2 s later.
    for (k, t) in [0u64, 100_000_000, 2_100_000_000].into_iter().enumerate() {
        let (pfn, new) = (0x10 + k as u64 * 0x10, 0x11 + k as u64 * 0x10);
        events.push(ev(
            t,
            app,
            MM,
            gup(BASE, pfn, true, false, anon(1025, 1, None), None),
        ));
        events.push(ev(
            t + 1,
            app,
            MM,
            write_copy(BASE, pfn, new, anon(1025, 1, None)),
        ));
    }
    let mut e = Engine::new(cfg, caps(false));
    let alerts = run(&mut e, &events);
    let pins: Vec<_> = alerts
        .iter()
        .filter(|a| a.rule == RuleId::PinThenCow)
        .collect();
    assert_eq!(pins.len(), 2);
    let r = e.report();
    let in_report: Vec<_> = r
        .alerts
        .iter()
        .filter(|a| a.rule == RuleId::PinThenCow)
        .map(|a| (a.count, a.suppressed))
        .collect();
    assert_eq!(in_report, vec![(2, 1), (1, 0)]);
    let s = r
        .alert_summary
        .iter()
        .find(|s| s.rule == RuleId::PinThenCow);
    assert_eq!(s.map(|s| (s.emitted, s.suppressed)), Some((2, 1)));
}

fn copies(pid: u32, n: u64, t0: u64, step: u64) -> Vec<Event> {
    let t = task(pid, "forker");
    (0..n)
        .map(|i| {
            ev(
                t0 + i * step,
                t,
                MM,
                write_copy(BASE + i * PAGE, 0x10 + i, 0x1_0000 + i, anon(2, 2, None)),
            )
        })
        .collect()
}

#[test]
fn cow_storm_fires_above_the_rate_only() {
    let mut cfg = Config::default();
    cfg.cow_storm.copies_per_sec = 10.0;
    // 10 copies in a second: at the threshold, not above.
    let mut e = Engine::new(cfg.clone(), caps(false));
    assert!(run(&mut e, &copies(APP, 10, 0, 50_000_000)).is_empty());
    // 11 in a second: one alert, at the 11th copy.
    let mut e = Engine::new(cfg.clone(), caps(false));
    let alerts = run(&mut e, &copies(APP, 30, 0, 10_000_000));
    assert_eq!(rules_of(&alerts), vec![RuleId::CowStorm]);
    assert_eq!(alerts[0].time_ns, 100_000_000);
    assert!(
        alerts[0].message.contains("11 copy-on-write copies"),
        "{}",
        alerts[0].message
    );
    // 20 copies spread over 4 s: 5/s, never.
    let mut e = Engine::new(cfg, caps(false));
    assert!(run(&mut e, &copies(APP, 20, 0, 200_000_000)).is_empty());
}

#[test]
fn foreign_holder_observing_a_reuse_is_critical_but_own_pins_are_not() {
    let app = task(APP, "app");
    let reader = task(200, "reader");
    let events = vec![
        // The app pins its own page: its later write reuses it. Fine.
        ev(
            1,
            app,
            MM,
            gup(BASE, 0x10, true, true, anon(1025, 1, Some(true)), None),
        ),
        ev(
            2,
            app,
            MM,
            write_reuse(BASE, 0x10, anon(1025, 1, Some(true))),
        ),
        // Another process pins a page of the app's mm (remote GUP).
        ev(
            3,
            reader,
            MM,
            gup(
                BASE + PAGE,
                0x11,
                true,
                false,
                anon(1025, 1, Some(true)),
                None,
            ),
        ),
        ev(
            4,
            app,
            MM,
            write_reuse(BASE + PAGE, 0x11, anon(1025, 1, Some(true))),
        ),
    ];
    let mut e = Engine::new(Config::default(), caps(true));
    let alerts = run(&mut e, &events);
    assert_eq!(rules_of(&alerts), vec![RuleId::GupRefThenReuse]);
    let a = &alerts[0];
    assert_eq!((a.pid, a.pfn, a.severity), (APP, 0x11, Severity::Critical));
    assert_eq!(a.holder.as_ref().map(|h| h.pid), Some(200));
    assert!(a.message.contains("pid 200 (reader)"), "{}", a.message);
    assert!(a.message.contains("do_wp_page"), "{}", a.message);
}

#[test]
fn allow_list_and_disabled_rules_silence_alerts_but_count_them() -> Result<(), super::ConfigError> {
    let cfg =
        Config::from_toml_str("[allow]\ncomm = [\"app\"]\n[rules.cow-storm]\nenabled = false\n")?;
    let app = task(APP, "app");
    let mut events = vec![
        ev(
            1,
            app,
            MM,
            gup(BASE, 0x10, true, true, anon(1025, 1, Some(true)), None),
        ),
        ev(
            2,
            app,
            MM,
            write_copy(BASE, 0x10, 0x20, anon(1025, 1, Some(true))),
        ),
    ];
    events.extend(copies(7, 20_000, 10, 1));
    let mut e = Engine::new(cfg, caps(true));
    assert!(run(&mut e, &events).is_empty());
    let r = e.report();
    let s = r
        .alert_summary
        .iter()
        .find(|s| s.rule == RuleId::PinThenCow);
    assert_eq!(s.map(|s| (s.emitted, s.allowed)), Some((0, 1)));
    // Hot reload: the allow-list is gone, the state (the pin) is kept.
    let mut e2 = e;
    e2.set_config(Config::default());
    let mut more = Vec::new();
    e2.feed(
        &ev(
            30,
            app,
            MM,
            gup(
                BASE + PAGE,
                0x30,
                true,
                true,
                anon(1025, 1, Some(true)),
                None,
            ),
        ),
        &mut more,
    );
    e2.feed(
        &ev(
            40,
            app,
            MM,
            write_copy(BASE + PAGE, 0x30, 0x31, anon(1025, 1, Some(true))),
        ),
        &mut more,
    );
    assert_eq!(rules_of(&more), vec![RuleId::PinThenCow]);
    assert_eq!(e2.report().decisions.cow_copies, 20_002);
    Ok(())
}

#[test]
fn lost_events_and_unknown_unpins_are_reported() {
    let app = task(APP, "app");
    let events = vec![
        ev(1, app, MM, unpin(0x10, 3)),
        ev(2, app, MM, lost(5)),
        ev(
            3,
            app,
            MM,
            gup(BASE, 0x11, true, true, anon(1025, 1, Some(true)), None),
        ),
        ev(4, app, MM, unpin(0x11, 2)),
    ];
    let mut e = Engine::new(Config::default(), caps(true));
    run(&mut e, &events);
    let r = e.report();
    assert!(!r.complete);
    assert_eq!(r.lost_events, 5);
    assert_eq!(r.lost_by_hook.get("do_wp_page").map(|l| l.dropped), Some(5));
    assert_eq!(r.unmatched_unpins, 3 + 1);
    assert_eq!(e.summary().lost, 5);
}

#[test]
fn exited_processes_keep_their_aggregates() {
    let child = task(CHILD, "kid");
    let events = vec![
        ev(
            1,
            child,
            CHILD_MM,
            write_copy(BASE, 0x10, 0x20, anon(2, 2, None)),
        ),
        ev(2, child, CHILD_MM, Body::TaskExit),
    ];
    let mut e = Engine::new(Config::default(), caps(false));
    run(&mut e, &events);
    let r = e.report();
    assert_eq!(r.processes.len(), 1);
    assert!(r.processes[0].exited);
    assert_eq!(r.processes[0].cow_copies, 1);
}

/// A mixed stream touching every rule and table.
fn mixed_stream() -> Vec<Event> {
    let mut v = fork_then_child_exit(8);
    let app = task(APP, "app");
    for i in 0..8u64 {
        v.push(ev(
            3_000 + i,
            app,
            MM,
            gup(
                BASE + i * PAGE,
                0x10 + i,
                true,
                false,
                anon(1025, 1, None),
                Some(7),
            ),
        ));
        v.push(ev(
            4_000 + i,
            app,
            MM,
            write_copy(BASE + i * PAGE, 0x10 + i, 0x100 + i, anon(1025, 1, None)),
        ));
        v.push(ev(4_500 + i, app, MM, unpin(0x10 + i, 1)));
    }
    v.push(ev(5_000, app, MM, lost(2)));
    v.extend(copies(300, 50, 6_000, 1_000));
    v
}

#[test]
fn live_chunks_and_offline_give_identical_reports() {
    let events = mixed_stream();
    let mut offline = Engine::new(Config::default(), caps(false));
    let a1 = run(&mut offline, &events);
    for split in [1, events.len() / 3, events.len() - 1] {
        let mut live = Engine::new(Config::default(), caps(false));
        let mut a2 = run(&mut live, &events[..split]);
        let _snapshot = live.report();
        let _status = live.summary();
        a2.extend(run(&mut live, &events[split..]));
        assert_eq!(a1, a2, "split {split}");
        assert_eq!(offline.report(), live.report(), "split {split}");
    }
    assert_eq!(offline.summary().events, events.len() as u64);
}

#[test]
fn state_stays_within_small_caps_and_evictions_are_counted() -> Result<(), super::ConfigError> {
    let cfg = Config::from_toml_str(
        "[engine]\nmax_pages = 64\nmax_processes = 8\nmax_mapping_pages = 32\nmax_alerts = 4\nmax_stacks = 2\n",
    )?;
    let mut e = Engine::new(cfg, caps(false));
    let mut out = Vec::new();
    for i in 0..2_000u64 {
        let t = task(1 + (i % 50) as u32, "w");
        e.feed(
            &ev(
                i,
                t,
                MM,
                gup(BASE + i * PAGE, i, true, true, anon(1025, 1, None), None),
            ),
            &mut out,
        );
        // Still pinned at the copy: the page record stays.
        let b = write_copy(BASE + i * PAGE, i, 1_000_000 + i, anon(1026, 2, None));
        e.feed(&ev(i, t, MM + i % 3, b), &mut out);
        e.feed(&ev(i, t, MM, stack_def(i as u32, &["f"])), &mut out);
        e.feed(
            &ev(i, t, MM, fork_vma(10 + i, 1, BASE, BASE + PAGE)),
            &mut out,
        );
        let s = e.state_sizes();
        assert!(
            s.pages <= 64 && s.processes <= 8 && s.mapping_pages <= 32 && s.stacks <= 2,
            "{s:?}"
        );
        assert!(s.address_spaces <= 8, "{s:?}");
    }
    let r = e.report();
    assert!(r.evictions.pages > 0 && r.evictions.processes > 0 && r.evictions.mapping_pages > 0);
    assert!(r.evictions.stacks > 0 && r.evictions.address_spaces > 0);
    assert!(r.evictions.pages_with_holders > 0 && r.evictions.alerts > 0);
    assert!(r.alerts.len() <= 4);
    assert_eq!(r.decisions.cow_copies, 2_000, "totals survive eviction");
    Ok(())
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Fault {
            pid: u32,
            page: u64,
            decision: u8,
            unshare: bool,
            refcount: i32,
            mapcount: i32,
        },
        Gup {
            pid: u32,
            page: u64,
            pin: bool,
            write: bool,
            refs: u32,
            refcount: i32,
        },
        Unpin {
            page: u64,
            refs: u32,
        },
        Lost(u64),
        Exit(u32),
        Fork {
            pid: u32,
            child: u32,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u32..4, 0u64..8, 0u8..3, any::<bool>(), -1i32..2100, 0i32..3).prop_map(
                |(pid, page, decision, unshare, refcount, mapcount)| Op::Fault {
                    pid, page, decision, unshare, refcount, mapcount
                }
            ),
            3 => (1u32..4, 0u64..8, any::<bool>(), any::<bool>(), 1u32..3, 0i32..3000)
                .prop_map(|(pid, page, pin, write, refs, refcount)| Op::Gup { pid, page, pin, write, refs, refcount }),
            2 => (0u64..10, 1u32..3).prop_map(|(page, refs)| Op::Unpin { page, refs }),
            1 => (0u64..5).prop_map(Op::Lost),
            1 => (1u32..4).prop_map(Op::Exit),
            1 => (1u32..4, 10u32..12).prop_map(|(pid, child)| Op::Fork { pid, child }),
        ]
    }

    /// Times jitter backwards by up to 3 steps (disorder between CPUs).
    fn to_events(ops: &[(Op, u8)]) -> Vec<Event> {
        ops.iter()
            .enumerate()
            .map(|(i, (op, jitter))| {
                let t = 1_000 * i as u64 + 10_000 - 1_000 * u64::from(*jitter % 4);
                let tk = |pid: u32| task(pid, "p");
                let mm = |pid: u32| u64::from(pid);
                let addr = |page: u64| BASE + page * PAGE;
                match op.clone() {
                    Op::Fault {
                        pid,
                        page,
                        decision,
                        unshare,
                        refcount,
                        mapcount,
                    } => {
                        let d =
                            [Decision::Copy, Decision::Reuse, Decision::Other][decision as usize];
                        let k = if unshare {
                            FaultKind::Unshare
                        } else {
                            FaultKind::Write
                        };
                        let new = (d == Decision::Copy).then_some(0x100 + page);
                        let st = anon(refcount, mapcount, None);
                        ev(t, tk(pid), mm(pid), fault(k, addr(page), page, new, d, st))
                    }
                    Op::Gup {
                        pid,
                        page,
                        pin,
                        write,
                        refs,
                        refcount,
                    } => {
                        let mut b =
                            gup(addr(page), page, pin, write, anon(refcount, 1, None), None);
                        if let Body::Gup(g) = &mut b {
                            g.refs = refs;
                        }
                        ev(t, tk(pid), mm(pid), b)
                    }
                    Op::Unpin { page, refs } => ev(t, tk(1), 1, unpin(page, refs)),
                    Op::Lost(n) => ev(t, tk(1), 0, lost(n)),
                    Op::Exit(pid) => ev(t, tk(pid), mm(pid), Body::TaskExit),
                    Op::Fork { pid, child } => ev(
                        t,
                        tk(pid),
                        mm(pid),
                        fork_copy(u64::from(child), child, addr(0), 0x500),
                    ),
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn invariants_hold(ops in prop::collection::vec((op(), any::<u8>()), 0..200), anon_excl in any::<bool>(), split in 0usize..200) {
            let events = to_events(&ops);
            let cfg = Config::from_toml_str("[engine]\nmax_pages = 6\nmax_processes = 3\nmax_mapping_pages = 5\nmax_alerts = 3\n")
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut e = Engine::new(cfg.clone(), caps(anon_excl));
            let alerts = run(&mut e, &events);
            let r = e.report();

            // Every decision is counted once, in totals and in reasons.
            let decisions = events.iter().filter(|e| matches!(e.body, Body::CowFault(_))).count() as u64;
            prop_assert_eq!(r.decisions.total(), decisions);
            prop_assert_eq!(r.reasons.iter().map(|x| x.count).sum::<u64>(), decisions);
            if r.evictions.processes == 0 {
                let per_proc: u64 = r.processes.iter().map(|p| p.cow_copies + p.cow_reuses + p.unshare_copies + p.unshare_reuses + p.other_decisions).sum();
                prop_assert_eq!(per_proc, decisions);
            }
            prop_assert_eq!(r.events, events.len() as u64);

            // Loss is reported, never hidden.
            let lost: u64 = events.iter().map(|e| if let Body::Lost(l) = &e.body { l.dropped } else { 0 }).sum();
            let any_lost = events.iter().any(|e| matches!(e.body, Body::Lost(_)));
            prop_assert_eq!(r.lost_events, lost);
            prop_assert_eq!(r.complete, !any_lost);

            // Pins: outstanding never negative and never more than granted;
            // every unpinned reference is matched or counted unmatched.
            let granted: u64 = events.iter().map(|e| match &e.body { Body::Gup(g) if g.pin => u64::from(g.refs), _ => 0 }).sum();
            let unpinned: u64 = events.iter().map(|e| match &e.body { Body::Unpin(u) => u64::from(u.refs), _ => 0 }).sum();
            let outstanding = e.outstanding_pins();
            prop_assert!(outstanding <= granted);
            prop_assert!(r.unmatched_unpins <= unpinned);
            prop_assert!(unpinned - r.unmatched_unpins <= granted);
            prop_assert!(e.holder_refs_positive());

            // Disorder is counted, not fatal.
            let mut max = 0;
            let ooo = events.iter().filter(|e| { let o = e.time_ns < max; max = max.max(e.time_ns); o }).count() as u64;
            prop_assert_eq!(r.out_of_order_events, ooo);

            // Bounded state.
            let s = e.state_sizes();
            prop_assert!(s.pages <= 6 && s.processes <= 3 && s.mapping_pages <= 5);
            prop_assert!(r.alerts.len() <= 3);
            prop_assert!(alerts.len() as u64 == r.alert_summary.iter().map(|s| s.emitted).sum::<u64>());

            // Live (two chunks, with a snapshot between) equals offline.
            let split = split.min(events.len());
            let mut live = Engine::new(cfg, caps(anon_excl));
            run(&mut live, &events[..split]);
            let _ = live.report();
            run(&mut live, &events[split..]);
            prop_assert_eq!(live.report(), r);
        }
    }
}

/// Throughput of `feed` on plain COW faults, for a hot set that fits in
/// the caches and for one that does not (each (mm, page) entry is then a
/// cache and TLB miss). Run with `cargo test --release -p tracer --lib
/// model::engine_tests::feed_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: run in release mode"]
fn feed_throughput() {
    use std::time::Instant;
    let n = 5_000_000u64;
    for hot_pages in [4_096u64, 262_144] {
        let events: Vec<Event> = (0..n)
            .map(|i| {
                let t = task(1 + (i % 64) as u32, "bench");
                let page = i % hot_pages;
                let b = write_copy(BASE + page * PAGE, page, 1 << 30 | page, anon(2, 2, None));
                ev(i, t, 1 + (i % 64) / 16, b)
            })
            .collect();
        let mut e = Engine::new(Config::default(), caps(true));
        let mut out = Vec::new();
        let start = Instant::now();
        for ev in &events {
            e.feed(ev, &mut out);
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{hot_pages} hot pages: {:.2} M events/s",
            n as f64 / secs / 1e6
        );
        assert_eq!(e.summary().copies, n);
    }
}

/// 5.10 swap-in reuse counts mappings, not references (`reuse_swap_page`):
/// a pipe holding the page sees the child's write.
#[test]
fn swap_reuse_on_5_10_lets_a_foreign_holder_observe_the_write() {
    let app = task(APP, "app");
    let child = task(CHILD, "app");
    let mut swap_reuse = write_reuse(BASE, 0x10, anon(2, 1, None));
    if let Body::CowFault(f) = &mut swap_reuse {
        f.site = Site::Swap;
    }
    let events = vec![
        ev(1, app, MM, fork_vma(CHILD_MM, CHILD, BASE, BASE + PAGE)),
        ev(2, app, MM, task_fork(CHILD, CHILD_MM)),
        ev(
            10,
            app,
            MM,
            gup(BASE, 0x10, false, false, anon(3, 2, None), None),
        ),
        // The parent writes: refcount 3 (2 maps + pipe): copy away.
        ev(20, app, MM, write_copy(BASE, 0x10, 0x20, anon(3, 2, None))),
        // The child, after swap-in, writes: 1 mapping, the pipe's
        // reference ignored: reused in place.
        ev(30, child, CHILD_MM, swap_reuse),
    ];
    let mut e = Engine::new(Config::default(), caps(false));
    let alerts = run(&mut e, &events);
    assert_eq!(
        rules_of(&alerts),
        vec![RuleId::GupRefThenCow, RuleId::GupRefThenReuse]
    );
    let a = &alerts[1];
    assert_eq!((a.pid, a.mm), (CHILD, CHILD_MM));
    assert_eq!(
        a.holder.as_ref().map(|h| (h.pid, h.pin)),
        Some((APP, false))
    );
    assert!(a.message.contains("sole_mapping"), "{}", a.message);
    // The deciding path is named, and both sides.
    assert!(a.message.contains("do_swap_page"), "{}", a.message);
    assert!(
        a.message.contains(&format!("pid {CHILD} (app)"))
            && a.message.contains(&format!("pid {APP} (app)")),
        "{}",
        a.message
    );
    assert_eq!(
        reason_count(&e.report(), "reuse", "write", "sole_mapping"),
        1
    );
}

/// A THP or swap-in reuse of a page only this process references (its own
/// vmsplice, or a foreign reference the refcount no longer has room for)
/// is not a leak.
#[test]
fn huge_and_swap_reuses_of_own_or_released_references_do_not_alert() {
    let app = task(APP, "app");
    let child = task(CHILD, "app");
    let at = |site, b: Body| match b {
        Body::CowFault(mut f) => {
            f.site = site;
            Body::CowFault(f)
        }
        other => other,
    };
    let events = vec![
        // The app's own reference, then its own THP reuse.
        ev(
            1,
            app,
            MM,
            gup(BASE, 0x200, false, false, anon(2, 1, None), None),
        ),
        ev(
            2,
            app,
            MM,
            at(Site::Thp, write_reuse(BASE, 0x200, anon(2, 1, None))),
        ),
        // The child's reference on another page, released before the
        // parent's swap-in reuse: refcount 1 is the mapping alone.
        ev(
            3,
            child,
            CHILD_MM,
            gup(BASE + PAGE, 0x300, false, false, anon(2, 1, None), None),
        ),
        ev(
            4,
            app,
            MM,
            at(
                Site::Swap,
                write_reuse(BASE + PAGE, 0x300, anon(1, 1, None)),
            ),
        ),
    ];
    let mut e = Engine::new(Config::default(), caps(false));
    let alerts = run(&mut e, &events);
    assert!(
        !rules_of(&alerts).contains(&RuleId::GupRefThenReuse),
        "{alerts:?}"
    );
}

/// Huge pages count by their size and cover their whole range.
#[test]
fn huge_page_decisions_count_their_size() {
    let app = task(APP, "app");
    let mut b = write_copy(BASE + 0x1234, 0x200, 0x400, anon(2, 2, None));
    if let Body::CowFault(f) = &mut b {
        f.site = Site::Hugetlb;
    }
    let mut e = Engine::new(Config::default(), caps(true));
    run(&mut e, &[ev(1, app, MM, b)]);
    let r = e.report();
    assert_eq!(r.processes[0].bytes_copied, 2 << 20);
    assert_eq!(
        r.processes[0]
            .decisions_by_site
            .get("hugetlb")
            .map(|s| s.copies),
        Some(1)
    );
    let m = &r.mappings[0];
    assert_eq!((m.start, m.end, m.pages), (BASE, BASE + (2 << 20), 512));
}

/// The JSON field names are a schema others read: pin them.
#[test]
fn report_json_has_the_documented_fields() -> Result<(), serde_json::Error> {
    let mut e = Engine::new(Config::default(), caps(false));
    run(&mut e, &mixed_stream());
    let v = serde_json::to_value(e.report())?;
    for k in [
        "complete",
        "lost_events",
        "kernel",
        "events",
        "evictions",
        "unmatched_unpins",
        "processes",
        "mappings",
        "reasons",
        "alerts",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["complete"], false);
    assert_eq!(v["kernel"]["anon_exclusive"], false);
    let p = &v["processes"][0];
    for k in [
        "pid",
        "comm",
        "cow_copies",
        "cow_reuses",
        "unshare_copies",
        "unshare_reuses",
        "gup_pins",
        "gup_gets",
        "fork_pinned_copies",
        "bytes_copied",
        "decisions_by_site",
    ] {
        assert!(p.get(k).is_some(), "missing process.{k}");
    }
    assert_eq!(p["pid"], 300, "most copies first");
    assert_eq!(p["decisions_by_site"]["wp"]["copies"], 50);
    let a = v["alerts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["rule"] == "pin-then-cow"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["address"], "0x7f0000000000");
    assert_eq!(a["count"], 8);
    assert_eq!(a["suppressed"], 7);
    assert_eq!(a["holder"]["pin"], true);
    assert_eq!(a["holder"]["address"], "0x7f0000000000");
    assert_eq!(a["holder"]["stack"][0], "try_grab_page+0x1c");
    let r = &v["reasons"][0];
    assert_eq!(
        (&r["decision"], &r["fault"]),
        (&"copy".into(), &"write".into())
    );
    Ok(())
}
