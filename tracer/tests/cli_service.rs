//! `cowtrace watch` as a service, from the outside: invalid configs and
//! sink flags are refused before anything is traced (exit status 2), and
//! alerts reach every configured sink (a JSON lines file and a webhook
//! receiver on 127.0.0.1) in a `--replay`, which runs the same pipeline
//! without a kernel.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    path::Path,
    process::{Command, Output},
    sync::mpsc,
    time::Duration,
};

use cowtrace::{
    model::{
        Body, Comm, CowFault, Decision, Event, FaultKind, ForkVma, Gup, KernelCaps, PageState,
        Site, Task, event::GupPath,
    },
    trace::{TraceMeta, TraceWriter, WriterOptions},
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn cowtrace(args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_cowtrace"))
        .args(args)
        .output()
}

fn page(refcount: i32, mapcount: i32, exclusive: bool) -> PageState {
    PageState {
        valid: true,
        refcount,
        mapcount,
        anon: true,
        anon_exclusive: Some(exclusive),
        ..PageState::default()
    }
}

/// A FOLL_PIN of a page, a fork, then a write fault that copies the
/// pinned page: one pin-then-cow alert.
fn pin_then_cow_trace(path: &Path) -> TestResult {
    let meta = TraceMeta {
        tool_version: "test".into(),
        kernel: KernelCaps {
            release: "6.1.0-test".into(),
            anon_exclusive: true,
            page_size: 4096,
        },
        ..TraceMeta::default()
    };
    let task = Task {
        pid: 10,
        tid: 10,
        comm: Comm::new("app"),
    };
    let ev = |time_ns, body| Event {
        time_ns,
        cpu: 0,
        task,
        mm: 1,
        body,
    };
    let mut w = TraceWriter::create(path, &meta, WriterOptions::default())?;
    for e in [
        ev(
            1,
            Body::Gup(Gup {
                path: GupPath::Slow,
                address: 0x1000,
                pfn: 77,
                refs: 1,
                pin: true,
                write: true,
                longterm: false,
                force: false,
                failed: false,
                page: page(1026, 1, true),
                stack: None,
            }),
        ),
        ev(
            2,
            Body::ForkVma(ForkVma {
                child_mm: 2,
                child_pid: Some(11),
                start: 0,
                end: 0x10_0000,
                vm_flags: 0x33,
            }),
        ),
        ev(
            3,
            Body::CowFault(CowFault {
                site: Site::Wp,
                fault: FaultKind::Write,
                address: 0x1000,
                pfn: 77,
                new_pfn: Some(78),
                decision: Decision::Copy,
                shared_mapping: false,
                ret: 0,
                page: page(1027, 2, false),
                swap_count: None,
            }),
        ),
    ] {
        w.push(&e)?;
    }
    w.finish()?;
    Ok(())
}

#[test]
fn invalid_configs_are_refused_before_tracing() -> TestResult {
    let dir = tempfile::tempdir()?;
    for (text, word) in [
        (
            "[[sinks]]\ntype = \"webhook\"\nurl = \"gopher://x\"\n",
            "sinks[0]",
        ),
        ("[metrics]\nlisten = \"nowhere\"\n", "metrics.listen"),
        ("[record]\nmax_fils = 3\n", "max_fils"),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, text)?;
        let out = cowtrace(&["watch", "--config", &cfg.display().to_string()])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        assert!(stderr.contains(word), "{text:?}: {stderr}");
        assert!(stderr.contains("bad.toml"), "{stderr}");
    }
    let out = cowtrace(&["watch", "--sink", "kafka=broker:9092"])?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown sink `kafka`"));
    Ok(())
}

/// Answers every request 200 and sends each body out.
fn webhook_receiver() -> std::io::Result<(String, mpsc::Receiver<serde_json::Value>)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/cow", l.local_addr()?);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming().take(20) {
            let Ok(mut s) = conn else { return };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut r = BufReader::new(&mut s);
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            let _ = tx.send(serde_json::from_slice(&body).unwrap_or_default());
        }
    });
    Ok((url, rx))
}

#[test]
fn alerts_reach_every_sink() -> TestResult {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("t.cwt");
    pin_then_cow_trace(&trace)?;
    let jsonl = dir.path().join("alerts.jsonl");
    let (url, bodies) = webhook_receiver()?;
    let cfg = dir.path().join("cowtrace.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[sinks]]\ntype = \"webhook\"\nurl = \"{url}\"\nbatch_secs = 0.05\n\
             [[sinks]]\ntype = \"stdout\"\nformat = \"json\"\nmin_severity = \"critical\"\n"
        ),
    )?;
    let out = cowtrace(&[
        "watch",
        "--replay",
        &trace.display().to_string(),
        "--config",
        &cfg.display().to_string(),
        "--sink",
        &format!("jsonl={}", jsonl.display()),
        "--format",
        "json",
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdout: the alert as a JSON line, then the report.
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap_or(""))?;
    assert_eq!(first["rule"], "pin-then-cow");
    let lines = std::fs::read_to_string(&jsonl)?;
    let alert: serde_json::Value = serde_json::from_str(lines.trim())?;
    assert_eq!(
        (alert["rule"].as_str(), alert["pid"].as_u64()),
        (Some("pin-then-cow"), Some(10))
    );
    let body = bodies.recv_timeout(Duration::from_secs(5))?;
    assert_eq!(body["alerts"][0]["rule"], "pin-then-cow");
    assert_eq!(body["dropped_total"], 0);
    Ok(())
}

#[test]
fn perfetto_export_writes_packets_and_needs_an_output_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("t.cwt");
    pin_then_cow_trace(&trace)?;
    let out = dir.path().join("t.pftrace");
    let t = trace.display().to_string();
    let o = out.display().to_string();
    let r = cowtrace(&["export", &t, "--format", "perfetto", "-o", &o])?;
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let bytes = std::fs::read(&out)?;
    // A Trace is a run of field-1 (TracePacket) length-delimited records.
    assert_eq!(bytes.first(), Some(&0x0a));
    let has = |s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has("pin-then-cow") && has("FOLL_PIN") && has("cow copy"));
    let r = cowtrace(&["export", &t, "--format", "perfetto"])?;
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("-o"));
    Ok(())
}
