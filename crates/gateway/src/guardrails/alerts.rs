//! Alert webhooks: signed JSON posts with bounded retries, delivered by a background task so the
//! request path never waits on them.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use portcullis_core::{Decision, Event};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::events::Events;
use crate::metrics::Metrics;

/// Alerts waiting for delivery; past it new alerts are dropped (and counted), never awaited.
pub const QUEUE_CAPACITY: usize = 1024;
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "x-portcullis-signature";

/// Where and how alerts are posted.
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Vec<u8>,
    pub timeout: Duration,
    /// Attempts per alert, at least 1.
    pub attempts: u32,
    /// Pause before the second attempt; doubles each time, at most 60 s.
    pub backoff: Duration,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Hands alerts to the delivery task. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct AlertSender {
    queue: Option<mpsc::Sender<Vec<u8>>>,
    metrics: Option<Metrics>,
}

impl AlertSender {
    /// A sender that delivers nothing (no webhook configured): alerts are only events.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Starts the delivery task for `webhook`.
    pub fn start(webhook: Webhook, events: Events, metrics: Metrics) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(deliver_all(webhook, receiver, events, metrics.clone()));
        Self {
            queue: Some(queue),
            metrics: Some(metrics),
        }
    }

    /// Queues `alert` for delivery without waiting; a full queue drops it (logged and counted).
    pub fn send(&self, alert: &serde_json::Value) {
        let Some(queue) = &self.queue else {
            return;
        };
        let Ok(body) = serde_json::to_vec(alert) else {
            return;
        };
        if queue.try_send(body).is_err() {
            tracing::warn!(
                "alert webhook queue is full; alert dropped (the event is in the ledger)"
            );
            if let Some(metrics) = &self.metrics {
                metrics.increment("portcullis_alert_webhook_dropped_total", &[]);
            }
        }
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn deliver_all(
    webhook: Webhook,
    mut receiver: mpsc::Receiver<Vec<u8>>,
    events: Events,
    metrics: Metrics,
) {
    let client = match reqwest::Client::builder()
        .timeout(webhook.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "cannot build the alert webhook client; alerts stay events only");
            return;
        }
    };
    while let Some(body) = receiver.recv().await {
        let delivered = deliver(&client, &webhook, body).await;
        let outcome = match delivered {
            Ok(attempts) => {
                metrics.increment(
                    "portcullis_alert_webhook_deliveries_total",
                    &[("outcome", "delivered".to_owned())],
                );
                tracing::debug!(attempts, "alert delivered");
                continue;
            }
            Err(attempts) => attempts,
        };
        metrics.increment(
            "portcullis_alert_webhook_deliveries_total",
            &[("outcome", "failed".to_owned())],
        );
        events
            .emit_best_effort(
                Event::new(
                    "alert.webhook_failed",
                    Decision::Info,
                    "alert_webhook_failed",
                )
                .data(serde_json::json!({"attempts": outcome})),
            )
            .await;
    }
}

/// Posts `body` until a 2xx answer or `attempts` tries; `Ok(tries)` or `Err(tries)`.
async fn deliver(client: &reqwest::Client, webhook: &Webhook, body: Vec<u8>) -> Result<u32, u32> {
    let signature = signature(&webhook.secret, &body);
    let mut backoff = webhook.backoff;
    let attempts = webhook.attempts.max(1);
    for attempt in 1..=attempts {
        let answer = client
            .post(&webhook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .body(body.clone())
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => return Ok(attempt),
            Ok(response) => {
                tracing::info!(
                    attempt,
                    status = response.status().as_u16(),
                    "alert webhook refused"
                );
            }
            Err(err) => {
                tracing::info!(attempt, error = %err, "alert webhook unreachable");
            }
        }
        if attempt < attempts {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
        }
    }
    Err(attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
