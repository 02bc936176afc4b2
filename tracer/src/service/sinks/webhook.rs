//! Alerts POSTed as JSON batches to an HTTP(S) endpoint.
//!
//! Body: `{"host": "...", "dropped_total": N, "alerts": [ALERT, ...]}`
//! where `dropped_total` is every alert this sink has dropped so far, so
//! a receiver can tell it missed some. A failed POST is retried with
//! exponential backoff; while retrying, the queue fills and new alerts
//! are dropped and counted (capture never waits). A 4xx answer other than
//! 408 and 429 is not retried: sending the same body again cannot help.
//!
//! HTTPS is rustls with Mozilla's root certificates, or with only the CA
//! certificates of `ca_file` when the receiver's certificate comes from a
//! private CA (or signs itself): there is no option to skip verification.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use ureq::tls::{PemItem, RootCerts, TlsConfig};

use super::{Deliver, DeliverCtx};
use crate::model::{Alert, service_config::WebhookSink};

pub(super) struct Webhook {
    agent: ureq::Agent,
    url: String,
    hostname: String,
    retries: u32,
    backoff: Duration,
    backoff_max: Duration,
}

impl Webhook {
    /// Builds the client; fails only when `ca_file` cannot be used, so a
    /// bad file is refused at start (or on reload) rather than at the
    /// first alert.
    pub(super) fn new(cfg: &WebhookSink, hostname: &str) -> Result<Self, String> {
        let mut tls = TlsConfig::builder();
        if let Some(path) = &cfg.ca_file {
            tls = tls.root_certs(root_certs(path)?);
        }
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(cfg.timeout_secs)))
            .http_status_as_error(true)
            .user_agent(concat!("cowtrace/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build();
        Ok(Webhook {
            agent: config.into(),
            url: cfg.url.clone(),
            hostname: hostname.to_string(),
            retries: cfg.retries,
            backoff: Duration::from_secs_f64(cfg.backoff_secs),
            backoff_max: Duration::from_secs_f64(cfg.backoff_max_secs),
        })
    }

    fn post(&self, body: &[u8]) -> Result<(), ureq::Error> {
        self.agent
            .post(&self.url)
            .content_type("application/json")
            .send(body)
            .map(drop)
    }
}

/// The certificates of a PEM file as the only roots to trust. Other PEM
/// items (a private key left in the same file) are ignored.
fn root_certs(path: &Path) -> Result<RootCerts, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("reading ca_file {}: {e}", path.display()))?;
    let certs = parse_certs(&pem).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    Ok(RootCerts::new_with_certs(&certs))
}

/// The certificates in PEM text; at least one.
fn parse_certs(pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| format!("not valid PEM: {e}"))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certs)
}

/// The JSON document one batch is sent as.
pub fn batch_body(host: &str, alerts: &[Arc<Alert>], dropped_total: u64) -> serde_json::Value {
    let alerts: Vec<&Alert> = alerts.iter().map(|a| &**a).collect();
    serde_json::json!({
        "host": host,
        "dropped_total": dropped_total,
        "alerts": alerts,
    })
}

fn retryable(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::StatusCode(code) => !(400..500).contains(code) || *code == 408 || *code == 429,
        _ => true,
    }
}

/// Sleeps `d`, but wakes at `give_up_at` if that comes first; false when
/// the deadline cut the sleep short.
fn sleep_until_or(d: Duration, ctx: &DeliverCtx<'_>) -> bool {
    let wake = Instant::now() + d;
    loop {
        let now = Instant::now();
        if now >= wake {
            return true;
        }
        if ctx.give_up_at().is_some_and(|t| now >= t) {
            return false;
        }
        std::thread::sleep((wake - now).min(Duration::from_millis(50)));
    }
}

impl Deliver for Webhook {
    fn deliver(&mut self, batch: &[Arc<Alert>], ctx: &DeliverCtx<'_>) -> Result<(), String> {
        let body = serde_json::to_vec(&batch_body(&self.hostname, batch, ctx.dropped()))
            .map_err(|e| format!("serializing alerts: {e}"))?;
        let mut delay = self.backoff;
        let mut attempt = 0;
        loop {
            let err = match self.post(&body) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            ctx.error();
            if !retryable(&err) || attempt >= self.retries {
                return Err(format!(
                    "POST {} failed after {} attempts: {err}",
                    self.url,
                    attempt + 1
                ));
            }
            if !sleep_until_or(delay, ctx) {
                return Err(format!(
                    "POST {}: out of drain time at exit: {err}",
                    self.url
                ));
            }
            attempt += 1;
            delay = (delay * 2).min(self.backoff_max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_pem_yields_its_certificates_and_skips_keys() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = format!("{}{}{}", cert.pem(), key.serialize_pem(), cert.pem());
        let certs = parse_certs(pem.as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].der(), cert.der().as_ref());
    }

    #[test]
    fn a_pem_without_certificates_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        for text in [key.as_str(), "", "just text\n"] {
            let e = parse_certs(text.as_bytes()).unwrap_err();
            assert!(e.contains("no PEM certificate"), "{text:?}: {e}");
        }
    }
}
