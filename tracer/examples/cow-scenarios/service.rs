//! The `watch-service` scenario's driver: `cowtrace watch --config` as
//! systemd would run it. A notify socket stands in for systemd, a small
//! HTTP receiver on 127.0.0.1 for the alert webhook. Two workloads run,
//! with a SIGHUP reload (adding a sink) between them; then SIGTERM. The
//! verdict is the pure `checks::service::check`.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::checks::{Verdict, service};
use crate::runner::{Finished, run_captured};
use crate::suite::Config;
use crate::workloads::Workload;

pub const NAME: &str = "watch-service";
/// Probes attach slowly under TCG.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Long enough for a tick, a webhook batch and a file write.
const SETTLE: Duration = Duration::from_millis(1500);

pub fn run(cfg: &Config) -> Verdict {
    scenario(cfg).unwrap_or_else(|e| Verdict::failed(format!("{e:#}")))
}

/// The guest boots with `lo` down; the webhook and metrics need it.
fn loopback_up() -> anyhow::Result<()> {
    // SAFETY: a plain socket for the interface ioctls; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket");
    }
    // SAFETY: ifreq is plain data; all zero is a valid start.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: valid fd and ifreq for SIOCGIFFLAGS / SIOCSIFFLAGS.
    let r = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr)
        } else {
            -1
        }
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    if r != 0 {
        return Err(err).context("bringing lo up");
    }
    Ok(())
}

/// Answers every POST with 204 and keeps its JSON body.
fn webhook_receiver() -> anyhow::Result<(String, Arc<Mutex<Vec<Value>>>)> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding the webhook receiver")?;
    let url = format!("http://{}/alerts", l.local_addr()?);
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&bodies);
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { return };
            if let Ok(v) = read_post(&mut s)
                && let Ok(mut b) = out.lock()
            {
                b.push(v);
            }
        }
    });
    Ok((url, bodies))
}

fn read_post(s: &mut TcpStream) -> anyhow::Result<Value> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            bail!("connection closed in the headers");
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().context("content-length")?;
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")?;
    Ok(serde_json::from_slice(&body)?)
}

fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits for the next sd_notify datagram.
fn next_notify(sock: &UnixDatagram, limit: Duration) -> anyhow::Result<String> {
    sock.set_read_timeout(Some(limit))?;
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).context("waiting for sd_notify")?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn config_text(url: &str, metrics: &str, before: &Path, after: Option<&Path>) -> String {
    let mut t = format!(
        "[metrics]\nlisten = \"{metrics}\"\n\
         [[sinks]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"{url}\"\nbatch_secs = 0.1\n\
         [[sinks]]\ntype = \"stdout\"\nformat = \"json\"\n\
         [[sinks]]\ntype = \"jsonl\"\nname = \"before\"\npath = \"{}\"\n",
        before.display()
    );
    if let Some(a) = after {
        t.push_str(&format!(
            "[[sinks]]\ntype = \"jsonl\"\nname = \"after\"\npath = \"{}\"\n",
            a.display()
        ));
    }
    t
}

fn workload(cfg: &Config, n: u32) -> anyhow::Result<Finished> {
    let w = Workload::VmspliceThenWrite;
    let truth = cfg.dir.join(format!("service-{n}.json"));
    run_captured(
        Command::new(&cfg.self_exe)
            .args(["run", w.name(), "--truth"])
            .arg(&truth),
        cfg.timeout,
    )
}

fn signal(pid: u32, sig: libc::c_int) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: signals only the child we started and have not reaped.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error()).context("kill");
    }
    Ok(())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn scenario(cfg: &Config) -> anyhow::Result<Verdict> {
    loopback_up()?;
    let dir = cfg.dir.join(NAME);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).context("removing the last run's files")?;
    }
    std::fs::create_dir_all(&dir)?;
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).context("binding the notify socket")?;
    let (url, bodies) = webhook_receiver()?;
    let metrics_addr = format!("127.0.0.1:{}", free_port()?);
    let before = dir.join("before.jsonl");
    let after = dir.join("after.jsonl");
    let config = dir.join("cowtrace.toml");
    std::fs::write(&config, config_text(&url, &metrics_addr, &before, None))?;

    let (stdout, stderr) = (dir.join("watch.stdout"), dir.join("watch.stderr"));
    let pid = std::process::id().to_string();
    let started = Instant::now();
    let mut child = Command::new(&cfg.cowtrace)
        .arg("watch")
        .arg("--config")
        .arg(&config)
        .args(["--format", "json", "--status-interval", "0", "--pid", &pid])
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout)?)
        .stderr(File::create(&stderr)?)
        .process_group(0)
        .spawn()
        .context("starting cowtrace watch")?;
    let watch_pid = child.id();
    let result = (|| -> anyhow::Result<Vec<String>> {
        let mut seen = vec![next_notify(&notify, READY_TIMEOUT)?];
        workload(cfg, 1)?;
        thread::sleep(SETTLE);
        std::fs::write(
            &config,
            config_text(&url, &metrics_addr, &before, Some(&after)),
        )?;
        signal(watch_pid, libc::SIGHUP)?;
        seen.push(next_notify(&notify, STOP_TIMEOUT)?);
        seen.push(next_notify(&notify, STOP_TIMEOUT)?);
        workload(cfg, 2)?;
        thread::sleep(SETTLE);
        Ok(seen)
    })();
    let metrics = http_get(&metrics_addr, "/metrics").unwrap_or_default();
    let _ = signal(watch_pid, libc::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() >= deadline {
            // SAFETY: the process group we created.
            unsafe { libc::kill(-(watch_pid as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let watch = Finished {
        status,
        stdout: read(&stdout),
        stderr: read(&stderr),
        elapsed: started.elapsed(),
    };
    let mut seen = match result {
        Ok(seen) => seen,
        Err(e) => {
            return Ok(Verdict::failed(format!(
                "{e:#}; watch {}: {}",
                watch.describe(),
                watch.stderr_excerpt(240)
            )));
        }
    };
    if let Ok(m) = next_notify(&notify, Duration::from_secs(1)) {
        seen.push(m);
    }
    let webhook = bodies.lock().map(|b| b.clone()).unwrap_or_default();
    Ok(service::check(&service::Observed {
        watch: &watch,
        notify: &seen,
        webhook: &webhook,
        jsonl_before: &read(&before),
        jsonl_after: &read(&after),
        metrics: &metrics,
    }))
}
