//! The webhook sink over HTTPS: a receiver on 127.0.0.1 that speaks only
//! TLS, with a certificate issued by a throwaway CA. With that CA as the
//! sink's `ca_file` the JSON batches arrive; without it (Mozilla roots) or
//! with another CA, the handshake fails and the drops are counted.

use std::{
    io::{BufRead, BufReader, Write as _},
    net::TcpListener,
    path::Path,
    sync::{Arc, mpsc},
    thread,
    time::Duration,
};

use cowtrace::{
    model::{
        Alert, Comm, Config, RuleId, Severity,
        service_config::{SinkConfig, WebhookSink},
    },
    service::sinks::{SinkContext, SinkSet, StatsSnapshot},
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::{
    ServerConfig, ServerConnection, StreamOwned,
    pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
};

type TestResult = Result<(), Box<dyn std::error::Error>>;
type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A CA (its certificate as PEM) and a server certificate it issued for
/// 127.0.0.1 and localhost, ready to serve.
struct Pki {
    ca_pem: String,
    server: Arc<ServerConfig>,
}

fn pki(ca_name: &str) -> Res<Pki> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?
        .signed_by(&key, &issuer)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    Ok(Pki {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    })
}

/// What the receiver saw on one connection.
#[derive(Debug)]
enum Seen {
    /// A request over TLS: its head, its JSON body, the TLS version.
    Request(String, serde_json::Value, String),
    /// No request: why, and whether the TLS handshake had completed.
    Failed {
        #[allow(dead_code)] // shown in assertion messages (Debug)
        why: String,
        handshake_done: bool,
    },
}

/// Reads one HTTP/1.1 request (head and a Content-Length body).
fn read_request(r: &mut impl BufRead) -> std::io::Result<(String, Vec<u8>)> {
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
            return {
                let mut body = vec![0; len];
                r.read_exact(&mut body)?;
                Ok((head, body))
            };
        }
        head.push_str(&line);
    }
}

/// An HTTPS receiver on 127.0.0.1 answering 200 to every request; returns
/// its URL and what it sees, connection by connection.
fn https_receiver(server: Arc<ServerConfig>) -> Res<(String, mpsc::Receiver<Seen>)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("https://{}/hook", l.local_addr()?);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in l.incoming().take(50) {
            let Ok(tcp) = conn else { return };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let seen = match ServerConnection::new(Arc::clone(&server)) {
                Ok(tls) => serve(StreamOwned::new(tls, tcp)),
                Err(e) => Seen::Failed {
                    why: e.to_string(),
                    handshake_done: false,
                },
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    Ok((url, rx))
}

fn serve(mut s: StreamOwned<ServerConnection, std::net::TcpStream>) -> Seen {
    let (head, body) = match read_request(&mut BufReader::new(&mut s)) {
        Ok(r) => r,
        Err(e) => {
            return Seen::Failed {
                why: e.to_string(),
                handshake_done: !s.conn.is_handshaking(),
            };
        }
    };
    let version = format!("{:?}", s.conn.protocol_version());
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.conn.send_close_notify();
    let _ = s.flush();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    Seen::Request(head, json, version)
}

fn alert(i: u32) -> Alert {
    Alert {
        rule: RuleId::PinThenCow,
        severity: Severity::Critical,
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

fn ctx() -> SinkContext {
    SinkContext {
        hostname: "tls-host".into(),
    }
}

/// A `[[sinks]]` webhook table, with `ca_file` when given.
fn webhook_toml(url: &str, ca_file: Option<&Path>) -> String {
    let ca = ca_file.map_or(String::new(), |p| {
        format!("ca_file = \"{}\"\n", p.display())
    });
    format!(
        "[[sinks]]\ntype = \"webhook\"\nurl = \"{url}\"\n{ca}batch_size = 2\nbatch_secs = 0.05\n\
         retries = 1\nbackoff_secs = 0.05\ntimeout_secs = 2\ndrain_secs = 2\n"
    )
}

/// Sends `n` alerts through the sink the TOML describes and closes it.
fn deliver(toml: &str, n: u32) -> Res<StatsSnapshot> {
    let set = SinkSet::start(&Config::from_toml_str(toml)?.sinks, &ctx())?;
    for i in 0..n {
        set.send(&alert(i));
    }
    let stats = set.close();
    Ok(stats.first().ok_or("no sink")?.1)
}

#[test]
fn batches_arrive_over_tls_with_the_private_ca() -> TestResult {
    let pki = pki("cowtrace test CA")?;
    let dir = tempfile::tempdir()?;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem)?;
    let (url, rx) = https_receiver(Arc::clone(&pki.server))?;

    let s = deliver(&webhook_toml(&url, Some(&ca_file)), 5)?;
    assert_eq!((s.delivered, s.errors), (5, 0), "{s:?}");

    let mut pids = Vec::new();
    while let Ok(seen) = rx.recv_timeout(Duration::from_millis(500)) {
        let Seen::Request(head, body, version) = seen else {
            panic!("{seen:?}");
        };
        assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        assert!(version.contains("TLS"), "{version}");
        assert_eq!(body["host"], "tls-host");
        assert_eq!(body["dropped_total"], 0);
        let alerts = body["alerts"].as_array().ok_or("no alerts array")?;
        assert!((1..=2).contains(&alerts.len()), "batch of {}", alerts.len());
        for a in alerts {
            assert_eq!(a["rule"], "pin-then-cow", "{a}");
            pids.push(a["pid"].as_u64().ok_or("no pid")?);
        }
    }
    assert_eq!(pids, [0, 1, 2, 3, 4]);
    Ok(())
}

#[test]
fn a_receiver_the_sink_cannot_verify_gets_nothing_and_drops_are_counted() -> TestResult {
    let server = pki("cowtrace test CA")?;
    let other = pki("some other CA")?;
    let dir = tempfile::tempdir()?;
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, &other.ca_pem)?;
    let (url, rx) = https_receiver(Arc::clone(&server.server))?;

    // Mozilla's roots, then a CA that did not issue the certificate.
    for ca_file in [None, Some(other_ca.as_path())] {
        let s = deliver(&webhook_toml(&url, ca_file), 3)?;
        assert_eq!(s.delivered, 0, "{ca_file:?}: {s:?}");
        assert_eq!(s.dropped_failed, 3, "{ca_file:?}: {s:?}");
        // Each batch: the first try and one retry, both refused.
        assert!(s.errors >= 2, "{ca_file:?}: {s:?}");
    }
    // The client hung up during the handshake, before any request: it
    // refused the server's certificate.
    let mut refused = 0;
    while let Ok(seen) = rx.recv_timeout(Duration::from_millis(500)) {
        match seen {
            Seen::Failed {
                handshake_done: false,
                ..
            } => refused += 1,
            _ => panic!("the sink got further than the handshake: {seen:?}"),
        }
    }
    assert!(refused >= 4, "{refused} refused handshakes");
    Ok(())
}

#[test]
fn an_unusable_ca_file_is_refused_when_the_sink_starts() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.pem");
    let key_only = dir.path().join("key.pem");
    std::fs::write(&key_only, KeyPair::generate()?.serialize_pem())?;
    for (file, word) in [
        (&missing, "reading ca_file"),
        (&key_only, "no PEM certificate"),
    ] {
        let toml = webhook_toml("https://127.0.0.1:9/hook", Some(file));
        let sinks = Config::from_toml_str(&toml)?.sinks;
        let err = match SinkSet::start(&sinks, &ctx()) {
            Ok(_) => panic!("{} accepted", file.display()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(word), "{err}");
        assert!(err.contains(&file.display().to_string()), "{err}");
    }
    Ok(())
}

#[test]
fn ca_file_is_optional_in_toml_and_absent_from_the_flag() -> TestResult {
    let ca_of = |s: &SinkConfig| match s {
        SinkConfig::Webhook(WebhookSink { ca_file, .. }) => Ok(ca_file.clone()),
        other => Err(format!("not a webhook: {other:?}")),
    };
    let flag = SinkConfig::from_flag("webhook=https://hooks.example.net/cow")?;
    assert_eq!(ca_of(&flag)?, None);
    let plain = Config::from_toml_str(&webhook_toml("https://h.example/x", None))?;
    assert_eq!(ca_of(&plain.sinks[0])?, None);
    let with = Config::from_toml_str(&webhook_toml(
        "https://h.example/x",
        Some(Path::new("/etc/cowtrace/ca.pem")),
    ))?;
    assert_eq!(
        ca_of(&with.sinks[0])?,
        Some(Path::new("/etc/cowtrace/ca.pem").to_path_buf())
    );
    Ok(())
}
