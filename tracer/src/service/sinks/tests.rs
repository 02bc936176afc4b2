//! Sink behaviour against real destinations on this machine: a webhook
//! receiver on 127.0.0.1, a receiver that never answers, files, sockets.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use super::*;
use crate::model::{Comm, Config, RuleId, Severity};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn alert(i: u32, severity: Severity) -> Alert {
    Alert {
        rule: RuleId::PinThenCow,
        severity,
        time_ns: u64::from(i),
        message: format!("alert {i}"),
        pid: i,
        comm: Comm::new("t"),
        mm: 1,
        address: 0x1000,
        pfn: 2,
        holder: None,
        count: 1,
        suppressed: 0,
        last_ns: u64::from(i),
    }
}

fn sinks(toml: &str) -> Result<Vec<SinkConfig>, crate::model::ConfigError> {
    Ok(Config::from_toml_str(toml)?.sinks)
}

fn ctx() -> SinkContext {
    SinkContext {
        hostname: "test-host".into(),
    }
}

/// Reads one HTTP/1.1 request (headers and a Content-Length body).
fn read_request(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut r = BufReader::new(stream);
    let mut head = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((head, body))
}

/// An HTTP receiver answering `statuses` in turn (then 200), sending each
/// request's head and body out; stops after `max` requests.
fn receiver(
    statuses: Vec<u16>,
    max: usize,
) -> std::io::Result<(String, mpsc::Receiver<(String, serde_json::Value)>)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hook", l.local_addr()?);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for (n, conn) in l.incoming().enumerate() {
            if n >= max {
                return;
            }
            let Ok(mut s) = conn else { return };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            // One request per connection is enough for the client.
            let Ok((head, body)) = read_request(&mut s) else {
                continue;
            };
            let status = statuses.next().unwrap_or(200);
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            if tx.send((head, v)).is_err() {
                return;
            }
        }
    });
    Ok((url, rx))
}

#[test]
fn webhook_batches_retries_and_delivers_pending_before_exit() -> TestResult {
    // Two failures (503) before the receiver accepts: retried with backoff.
    let (url, rx) = receiver(vec![503, 503], 50)?;
    let cfg = sinks(&format!(
        "[[sinks]]\ntype = \"webhook\"\nurl = \"{url}\"\nbatch_size = 3\nbatch_secs = 0.2\n\
         backoff_secs = 0.05\nretries = 3\n"
    ))?;
    let set = SinkSet::start(&cfg, &ctx())?;
    for i in 0..7 {
        set.send(&alert(i, Severity::Critical));
    }
    // Closing right away: everything queued must still arrive.
    let stats = set.close();
    let mut got = Vec::new();
    let mut requests = 0;
    while let Ok((head, v)) = rx.recv_timeout(Duration::from_secs(2)) {
        requests += 1;
        assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json")
        );
        assert_eq!(v["host"], "test-host");
        let alerts = v["alerts"].as_array().cloned().unwrap_or_default();
        assert!(
            !alerts.is_empty() && alerts.len() <= 3,
            "batch of {}",
            alerts.len()
        );
        got.extend(alerts.iter().filter_map(|a| a["pid"].as_u64()));
    }
    // The two requests answered 503 carried the first batch: it came three
    // times, then the rest in order, each once.
    assert_eq!(got, [0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 4, 5, 6]);
    assert!(requests >= 5, "{requests} requests (3 batches + 2 retries)");
    assert_eq!(stats.len(), 1);
    let s = stats[0].1;
    assert_eq!((s.delivered, s.errors), (7, 2), "{s:?}");
    assert_eq!(
        s.dropped_queue_full + s.dropped_failed + s.dropped_shutdown,
        0
    );
    Ok(())
}

#[test]
fn client_errors_are_not_retried() -> TestResult {
    let (url, rx) = receiver(vec![400], 10)?;
    let cfg = sinks(&format!(
        "[[sinks]]\ntype = \"webhook\"\nurl = \"{url}\"\nbatch_secs = 0.01\nbackoff_secs = 0.01\n"
    ))?;
    let set = SinkSet::start(&cfg, &ctx())?;
    set.send(&alert(1, Severity::Info));
    let s = set.close()[0].1;
    assert_eq!(
        (s.delivered, s.dropped_failed, s.errors),
        (0, 1, 1),
        "{s:?}"
    );
    assert!(rx.recv_timeout(Duration::from_secs(1)).is_ok());
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "retried a 400"
    );
    Ok(())
}

#[test]
fn a_dead_receiver_blocks_nothing_and_drops_are_counted() -> TestResult {
    // Accepts connections, never reads or answers.
    let dead = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/", dead.local_addr()?);
    let (jpath_dir, _keep) = {
        let d = tempfile::tempdir()?;
        (d.path().to_path_buf(), d)
    };
    let jpath = jpath_dir.join("a.jsonl");
    let cfg = sinks(&format!(
        "[[sinks]]\ntype = \"webhook\"\nurl = \"{url}\"\nqueue = 4\nbatch_size = 2\nbatch_secs = 0.01\n\
         timeout_secs = 0.3\nretries = 1\nbackoff_secs = 0.05\ndrain_secs = 0.3\n\
         [[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\nqueue = 1000\n",
        jpath.display()
    ))?;
    let set = SinkSet::start(&cfg, &ctx())?;
    let t0 = Instant::now();
    for i in 0..200 {
        set.send(&alert(i, Severity::Warning));
        if i % 50 == 0 {
            thread::sleep(Duration::from_millis(5));
        }
    }
    let sending = t0.elapsed();
    assert!(
        sending < Duration::from_millis(500),
        "send took {sending:?}"
    );
    let t1 = Instant::now();
    let stats = set.close();
    // Drain 0.3 s, plus at most one request timeout and the 1 s margin.
    assert!(
        t1.elapsed() < Duration::from_secs(3),
        "close took {:?}",
        t1.elapsed()
    );
    let hook = stats[0].1;
    let dropped = hook.dropped_queue_full + hook.dropped_failed + hook.dropped_shutdown;
    assert_eq!(hook.delivered, 0, "{hook:?}");
    assert!(hook.dropped_queue_full >= 190, "{hook:?}");
    assert!((194..=200).contains(&dropped), "{hook:?}");
    // The other sink got everything, unaffected.
    assert_eq!(stats[1].1.delivered, 200, "{:?}", stats[1]);
    let lines = std::fs::read_to_string(&jpath)?;
    assert_eq!(lines.lines().count(), 200);
    drop(dead);
    Ok(())
}

#[test]
fn jsonl_rotates_and_filters_by_severity() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("alerts.jsonl");
    let cfg = sinks(&format!(
        "[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\nmax_size = 600\nmax_files = 2\nmin_severity = \"warning\"\n",
        path.display()
    ))?;
    let set = SinkSet::start(&cfg, &ctx())?;
    for i in 0..40 {
        let sev = if i % 2 == 0 {
            Severity::Warning
        } else {
            Severity::Info
        };
        set.send(&alert(i, sev));
    }
    let s = set.close()[0].1;
    assert_eq!(s.delivered, 20);
    let mut pids = Vec::new();
    for p in [
        path.with_extension("jsonl.2"),
        path.with_extension("jsonl.1"),
        path.clone(),
    ] {
        let text = std::fs::read_to_string(&p)?;
        assert!(text.len() <= 600, "{} is {} bytes", p.display(), text.len());
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            assert_eq!(v["severity"], "warning");
            pids.push(v["pid"].as_u64().unwrap_or(u64::MAX));
        }
    }
    assert!(!path.with_extension("jsonl.3").exists());
    // The newest alerts survive, in order; the oldest were rotated away.
    assert!(
        !pids.is_empty() && pids.windows(2).all(|w| w[0] < w[1]),
        "{pids:?}"
    );
    assert_eq!(pids.last(), Some(&38));
    Ok(())
}

#[test]
fn reload_keeps_unchanged_sinks_and_refuses_broken_ones() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    let one = format!(
        "[[sinks]]\ntype = \"jsonl\"\nname = \"a\"\npath = \"{}\"\n",
        a.display()
    );
    let mut set = SinkSet::start(&sinks(&one)?, &ctx())?;
    set.send(&alert(1, Severity::Info));
    // A sink whose file cannot be opened: refused, the old set stays.
    let broken = format!(
        "{one}[[sinks]]\ntype = \"jsonl\"\npath = \"{}/missing/dir/x\"\n",
        dir.path().display()
    );
    let e = set.reconfigure(&sinks(&broken)?, &ctx());
    assert!(e.is_err());
    assert_eq!(set.len(), 1);
    // Adding b keeps a (same thread and counters).
    let two = format!(
        "{one}[[sinks]]\ntype = \"jsonl\"\nname = \"b\"\npath = \"{}\"\n",
        b.display()
    );
    set.reconfigure(&sinks(&two)?, &ctx())?;
    set.send(&alert(2, Severity::Info));
    let names: Vec<String> = set.stats().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["a", "b"]);
    let stats = set.close();
    assert_eq!(std::fs::read_to_string(&a)?.lines().count(), 2);
    assert_eq!(std::fs::read_to_string(&b)?.lines().count(), 1);
    // `a` kept its counters across the reload.
    let delivered: Vec<u64> = stats.iter().map(|(_, s)| s.delivered).collect();
    assert_eq!(delivered, [2, 1]);
    Ok(())
}
