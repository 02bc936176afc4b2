//! Alerts POSTed as JSON batches to an HTTP(S) endpoint.
//!
//! Body: `{"host": "...", "dropped_total": N, "alerts": [ALERT, ...]}`
//! where `dropped_total` is every alert this sink has dropped so far, so
//! a receiver can tell it missed some. A failed POST is retried with
//! exponential backoff; while retrying, the queue fills and new alerts
//! are dropped and counted (capture never waits). A 4xx answer other than
//! 408 and 429 is not retried: sending the same body again cannot help.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

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
    pub(super) fn new(cfg: &WebhookSink, hostname: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(cfg.timeout_secs)))
            .http_status_as_error(true)
            .user_agent(concat!("cowtrace/", env!("CARGO_PKG_VERSION")))
            .build();
        Webhook {
            agent: config.into(),
            url: cfg.url.clone(),
            hostname: hostname.to_string(),
            retries: cfg.retries,
            backoff: Duration::from_secs_f64(cfg.backoff_secs),
            backoff_max: Duration::from_secs_f64(cfg.backoff_max_secs),
        }
    }

    fn post(&self, body: &[u8]) -> Result<(), ureq::Error> {
        self.agent
            .post(&self.url)
            .content_type("application/json")
            .send(body)
            .map(drop)
    }
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
