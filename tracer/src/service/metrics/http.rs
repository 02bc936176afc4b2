//! A minimal HTTP/1.1 endpoint for scrapes: `GET /metrics` answers the
//! latest snapshot, anything else 404. One thread, one connection at a
//! time, short timeouts: a scraper is one client every few seconds, and a
//! stuck client must not hold the endpoint for long.

use std::{
    io::{self, BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{Snapshot, render};

const IO_TIMEOUT: Duration = Duration::from_secs(2);
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The latest snapshot, replaced by the capture loop every tick.
pub type Shared = Arc<Mutex<Snapshot>>;

/// A running endpoint; the thread lives as long as the process.
pub struct MetricsServer {
    pub addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` now (so a taken port is an error at start) and serves
    /// from a thread.
    pub fn start(addr: SocketAddr, shared: Shared) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(s) => {
                            if let Err(e) = serve(s, &shared) {
                                log::debug!("metrics: {e}");
                            }
                        }
                        Err(e) => log::debug!("metrics: accept: {e}"),
                    }
                }
            })?;
        Ok(MetricsServer { addr })
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers (bounded: a scrape sends a few).
    for _ in 0..100 {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") | ("HEAD", "/metrics") => {
            let snap = shared.lock().map(|s| s.clone()).unwrap_or_default();
            ("200 OK", CONTENT_TYPE, render(&snap))
        }
        ("GET", _) | ("HEAD", _) => (
            "404 Not Found",
            "text/plain",
            "cowtrace: metrics are at /metrics\n".to_string(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", String::new()),
    };
    let mut w = stream;
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        w.write_all(body.as_bytes())?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn get(addr: SocketAddr, path: &str) -> io::Result<String> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn serves_the_latest_snapshot() -> io::Result<()> {
        let shared: Shared = Arc::default();
        let server = MetricsServer::start(
            "127.0.0.1:0".parse().map_err(io::Error::other)?,
            shared.clone(),
        )?;
        let r = get(server.addr, "/metrics")?;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(
            r.contains("\ncowtrace_config_reloads_total{result=\"success\"} 0\n"),
            "{r}"
        );
        if let Ok(mut s) = shared.lock() {
            s.counters.reload(true);
        }
        let r = get(server.addr, "/metrics?x=1")?;
        assert!(
            r.contains("\ncowtrace_config_reloads_total{result=\"success\"} 1\n"),
            "{r}"
        );
        let r = get(server.addr, "/")?;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        Ok(())
    }
}
