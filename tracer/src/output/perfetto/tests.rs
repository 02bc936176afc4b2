//! Decodes the export back with a minimal protobuf reader and checks the
//! tracks, instants, pin slices and alerts against the events given.

use super::*;
use crate::model::testkit::{anon, caps, ev, fork_vma, gup, lost, task, unpin, write_copy};

/// A decoded field: varint or length-delimited.
#[derive(Debug, Clone)]
enum V {
    Int(u64),
    Len(Vec<u8>),
}

fn read_varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Every (field, value) of one message; None on malformed input.
fn fields(b: &[u8]) -> Option<Vec<(u32, V)>> {
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let key = read_varint(b, &mut i)?;
        let f = (key >> 3) as u32;
        match key & 7 {
            0 => out.push((f, V::Int(read_varint(b, &mut i)?))),
            2 => {
                let n = read_varint(b, &mut i)? as usize;
                out.push((f, V::Len(b.get(i..i + n)?.to_vec())));
                i += n;
            }
            _ => return None,
        }
    }
    Some(out)
}

fn int(fs: &[(u32, V)], f: u32) -> Option<u64> {
    fs.iter().find_map(|(k, v)| match v {
        V::Int(n) if *k == f => Some(*n),
        _ => None,
    })
}

fn msg(fs: &[(u32, V)], f: u32) -> Option<Vec<(u32, V)>> {
    fs.iter().find_map(|(k, v)| match v {
        V::Len(b) if *k == f => fields(b),
        _ => None,
    })
}

fn string(fs: &[(u32, V)], f: u32) -> Option<String> {
    fs.iter().find_map(|(k, v)| match v {
        V::Len(b) if *k == f => String::from_utf8(b.clone()).ok(),
        _ => None,
    })
}

#[derive(Debug, PartialEq)]
struct Track {
    uuid: u64,
    name: String,
    parent: Option<u64>,
    pid: Option<u64>,
}

#[derive(Debug, PartialEq)]
struct TE {
    ts: u64,
    kind: u64,
    track: u64,
    category: Option<String>,
    name: Option<String>,
    annotations: Vec<(String, String)>,
}

fn decode(bytes: &[u8]) -> (Vec<Track>, Vec<TE>) {
    let trace = fields(bytes).unwrap_or_else(|| panic!("not a protobuf Trace"));
    let (mut tracks, mut events) = (Vec::new(), Vec::new());
    for (f, v) in trace {
        assert_eq!(f, field::TRACE_PACKET);
        let V::Len(p) = v else {
            panic!("packet is not a message")
        };
        let p = fields(&p).unwrap_or_else(|| panic!("malformed packet"));
        assert_eq!(int(&p, field::PACKET_SEQUENCE_ID), Some(SEQUENCE_ID));
        if let Some(d) = msg(&p, field::PACKET_TRACK_DESCRIPTOR) {
            tracks.push(Track {
                uuid: int(&d, field::DESC_UUID).unwrap_or(0),
                name: string(&d, field::DESC_NAME).unwrap_or_default(),
                parent: int(&d, field::DESC_PARENT_UUID),
                pid: msg(&d, field::DESC_PROCESS).and_then(|pd| int(&pd, field::PROCESS_PID)),
            });
        } else if let Some(e) = msg(&p, field::PACKET_TRACK_EVENT) {
            let annotations = e
                .iter()
                .filter(|(k, _)| *k == field::EVENT_DEBUG_ANNOTATIONS)
                .filter_map(|(_, v)| match v {
                    V::Len(b) => fields(b),
                    V::Int(_) => None,
                })
                .map(|a| {
                    let value = string(&a, field::ANNOTATION_STRING)
                        .or_else(|| int(&a, field::ANNOTATION_UINT).map(|n| n.to_string()))
                        .unwrap_or_default();
                    (
                        string(&a, field::ANNOTATION_NAME).unwrap_or_default(),
                        value,
                    )
                })
                .collect();
            events.push(TE {
                ts: int(&p, field::PACKET_TIMESTAMP).unwrap_or(0),
                kind: int(&e, field::EVENT_TYPE).unwrap_or(0),
                track: int(&e, field::EVENT_TRACK_UUID).unwrap_or(0),
                category: string(&e, field::EVENT_CATEGORIES),
                name: string(&e, field::EVENT_NAME),
                annotations,
            });
        } else {
            panic!("packet with neither a descriptor nor an event: {p:?}");
        }
    }
    (tracks, events)
}

#[test]
fn varints_encode_like_protobuf() {
    for (v, want) in [
        (0u64, vec![0u8]),
        (1, vec![1]),
        (300, vec![0xac, 0x02]),
        (
            u64::MAX,
            vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
    ] {
        let mut b = Vec::new();
        varint(&mut b, v);
        assert_eq!(b, want, "{v}");
        let mut i = 0;
        assert_eq!(read_varint(&b, &mut i), Some(v));
    }
}

#[test]
fn tracks_instants_pin_slices_and_alerts_decode_back() {
    let app = task(10, "app");
    let child = task(11, "child");
    let events = [
        // pin pfn 77 twice (nested on its track), pin pfn 90 once
        ev(
            100,
            app,
            1,
            gup(0x1000, 77, true, true, anon(1026, 1, Some(true)), None),
        ),
        ev(
            110,
            app,
            1,
            gup(0x1000, 77, true, true, anon(2050, 1, Some(true)), None),
        ),
        ev(
            120,
            app,
            1,
            gup(0x2000, 90, true, false, anon(1026, 1, Some(true)), None),
        ),
        ev(130, app, 1, fork_vma(2, 11, 0, 0x10_0000)),
        // the parent writes the pinned page after fork: copied, pin-then-cow
        ev(
            140,
            app,
            1,
            write_copy(0x1000, 77, 78, anon(2051, 2, Some(false))),
        ),
        ev(
            150,
            child,
            2,
            write_copy(0x2000, 90, 91, anon(1027, 2, Some(false))),
        ),
        ev(160, app, 1, unpin(77, 1)),
        ev(170, app, 1, lost(5)),
    ];
    let mut ex = PerfettoExporter::new(caps(true), Config::default());
    let mut out = Vec::new();
    for e in &events {
        ex.event(e, &mut out);
    }
    ex.finish(&mut out);
    let (tracks, tes) = decode(&out);

    // Tracks: global, one per process (with its pid), one per pinned page.
    let pids: Vec<(String, Option<u64>)> = tracks
        .iter()
        .filter(|t| t.pid.is_some())
        .map(|t| (t.name.clone(), t.pid))
        .collect();
    assert_eq!(pids, [("app".into(), Some(10)), ("child".into(), Some(11))]);
    let app_track = PROCESS_TRACK_BASE + 10;
    let pin_tracks: Vec<&Track> = tracks
        .iter()
        .filter(|t| t.name.starts_with("pin pfn"))
        .collect();
    assert_eq!(pin_tracks.len(), 2);
    assert!(pin_tracks.iter().all(|t| t.parent == Some(app_track)));
    let uuids: std::collections::HashSet<u64> = tracks.iter().map(|t| t.uuid).collect();
    assert_eq!(uuids.len(), tracks.len(), "track uuids are unique");
    assert!(
        tes.iter().all(|e| uuids.contains(&e.track)),
        "events refer to described tracks"
    );

    // Faults: an instant each, on the faulting process's track.
    let faults: Vec<(&TE, u64)> = tes
        .iter()
        .filter(|e| e.category.as_deref() == Some("fault"))
        .map(|e| (e, e.track))
        .collect();
    assert_eq!(faults.len(), 2);
    assert!(
        faults
            .iter()
            .all(|(e, _)| e.kind == EventType::Instant as u64
                && e.name.as_deref() == Some("cow copy"))
    );
    assert_eq!(faults[1].1, PROCESS_TRACK_BASE + 11);
    assert!(
        faults[0]
            .0
            .annotations
            .contains(&("address".into(), "0x1000".into()))
    );
    assert!(
        faults[0]
            .0
            .annotations
            .contains(&("pfn".into(), "77".into()))
    );

    // Pins: page 77 has two begins; the unpin at 160 ends the inner one,
    // finish() ends the rest at the last event (170), inner first.
    let t77 = pin_tracks
        .iter()
        .find(|t| t.name == "pin pfn 0x4d")
        .map(|t| t.uuid);
    let on77: Vec<(u64, u64)> = tes
        .iter()
        .filter(|e| Some(e.track) == t77)
        .map(|e| (e.ts, e.kind))
        .collect();
    let (b, e) = (EventType::SliceBegin as u64, EventType::SliceEnd as u64);
    assert_eq!(on77, [(100, b), (110, b), (160, e), (170, e)]);
    let t90 = pin_tracks
        .iter()
        .find(|t| t.name == "pin pfn 0x5a")
        .map(|t| t.uuid);
    let on90: Vec<(u64, u64)> = tes
        .iter()
        .filter(|e| Some(e.track) == t90)
        .map(|e| (e.ts, e.kind))
        .collect();
    assert_eq!(on90, [(120, b), (170, e)]);
    assert!(
        tes.iter()
            .filter(|e| e.kind == b)
            .all(|e| e.name.as_deref() == Some("FOLL_PIN"))
    );

    // Alerts: instants in category "alert", named by rule.
    let alerts: Vec<&TE> = tes
        .iter()
        .filter(|e| e.category.as_deref() == Some("alert"))
        .collect();
    assert!(
        alerts
            .iter()
            .any(|a| a.name.as_deref() == Some("pin-then-cow")
                && a.track == app_track
                && a.ts == 140
                && a.annotations
                    .iter()
                    .any(|(k, v)| k == "severity" && v == "critical")),
        "{alerts:?}"
    );

    // The loss marker, on the global track.
    let lost: Vec<&TE> = tes
        .iter()
        .filter(|e| e.category.as_deref() == Some("lost"))
        .collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].track, GLOBAL_TRACK);
    assert!(
        lost[0]
            .annotations
            .contains(&("dropped".into(), "5".into()))
    );

    // Timestamps never go backwards in the packet stream.
    assert!(tes.windows(2).all(|w| w[0].ts <= w[1].ts));
}
