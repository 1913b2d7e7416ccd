//! Alerts: webhooks for daemon events (`backup_failed`, `backup_succeeded`, `verify_failed`,
//! `rpo_breach`, `rpo_recovered`, `prune`).
//!
//! Invariants: sending never blocks or fails a job — events go into a bounded queue that one
//! background task drains (a full queue drops the event and logs it); each delivery has the
//! webhook's timeout and up to 4 attempts with backoff (1 s, 2 s, 4 s) on connection errors,
//! timeouts, 429 and 5xx; webhook URLs (they carry tokens) are never logged — logs name the
//! host only.
//!
//! Payload, `format = "json"` (stable; new fields may be added):
//! `{"event", "source", "at", "host", "message", "backup_id"?, "job_id"?, "error"?}`;
//! `format = "slack"`: `{"text": "…"}` (Slack incoming webhooks, Mattermost, Discord's
//! `/slack` endpoints).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{Webhook, WebhookFormat};

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub event: &'static str,
    pub source: Option<String>,
    pub at: DateTime<Utc>,
    /// The machine the daemon runs on.
    pub host: String,
    /// One line for humans.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    pub fn new(event: &'static str, source: Option<&str>, message: String) -> Self {
        Event {
            event,
            source: source.map(str::to_string),
            at: Utc::now(),
            host: hostname(),
            message,
            backup_id: None,
            job_id: None,
            error: None,
        }
    }
}

/// This machine's name (for alerts), from the kernel.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// Handle for sending events; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Event>>,
}

/// The background task delivering events; await [`Delivery::finish`] at shutdown.
pub struct Delivery {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Notifier {
    /// Start delivering to `hooks` (no task when there are none).
    pub fn start(hooks: Vec<Webhook>) -> (Notifier, Delivery) {
        if hooks.is_empty() {
            return (Notifier { tx: None }, Delivery { task: None });
        }
        let (tx, mut rx) = mpsc::channel::<Event>(256);
        let hooks = Arc::new(hooks);
        let task = tokio::spawn(async move {
            let client = match http_client() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("webhooks disabled: cannot build an HTTP client: {e}");
                    return;
                }
            };
            while let Some(ev) = rx.recv().await {
                for h in hooks
                    .iter()
                    .filter(|h| h.events.iter().any(|e| e == ev.event))
                {
                    deliver(&client, h, &ev).await;
                }
            }
        });
        (Notifier { tx: Some(tx) }, Delivery { task: Some(task) })
    }

    /// A notifier that sends nowhere.
    pub fn none() -> Notifier {
        Notifier { tx: None }
    }

    /// Queue an event; never waits.
    pub fn send(&self, ev: Event) {
        tracing::info!(event = ev.event, source = ?ev.source, "{}", ev.message);
        if let Some(tx) = &self.tx {
            if let Err(e) = tx.try_send(ev) {
                tracing::warn!("alert queue full or closed, event dropped: {e}");
            }
        }
    }
}

impl Delivery {
    /// Stop accepting events and wait up to `limit` for queued ones to go out.
    pub async fn finish(mut self, notifier: Notifier, limit: Duration) {
        drop(notifier);
        if let Some(t) = self.task.take() {
            if tokio::time::timeout(limit, t).await.is_err() {
                tracing::warn!("some alerts were not delivered before shutdown");
            }
        }
    }
}

fn http_client() -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .user_agent(concat!("keepsake/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// The body for one webhook.
pub fn payload(format: WebhookFormat, ev: &Event) -> serde_json::Value {
    match format {
        WebhookFormat::Json => serde_json::to_value(ev).unwrap_or(serde_json::Value::Null),
        WebhookFormat::Slack => {
            let icon = match ev.event {
                "backup_succeeded" | "rpo_recovered" => ":white_check_mark:",
                "prune" => ":broom:",
                _ => ":rotating_light:",
            };
            serde_json::json!({
                "text": format!(
                    "{icon} keepsake on {}: {}{}",
                    ev.host,
                    ev.message,
                    ev.error.as_ref().map(|e| format!("\n```{e}```")).unwrap_or_default()
                )
            })
        }
    }
}

async fn deliver(client: &reqwest::Client, h: &Webhook, ev: &Event) {
    let body = payload(h.format, ev);
    let mut delay = Duration::from_secs(1);
    for attempt in 1..=4 {
        let res = client
            .post(h.url.expose())
            .timeout(h.timeout)
            .json(&body)
            .send()
            .await;
        let retry = match res {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                let s = r.status();
                let retry = s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408;
                tracing::warn!(
                    "webhook to {} answered {s} for {} (attempt {attempt})",
                    h.host(),
                    ev.event
                );
                retry
            }
            Err(e) => {
                // reqwest's error text may include the URL: show the kind only.
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                tracing::warn!(
                    "webhook to {} {kind} for {} (attempt {attempt})",
                    h.host(),
                    ev.event
                );
                true
            }
        };
        if !retry || attempt == 4 {
            tracing::error!("alert {} not delivered to {}", ev.event, h.host());
            return;
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_payload_is_a_text_message_and_json_keeps_fields() {
        let mut ev = Event::new(
            "backup_failed",
            Some("wedsync"),
            "backup of wedsync failed".into(),
        );
        ev.error = Some("pg_dump: connection refused".into());
        let s = payload(WebhookFormat::Slack, &ev);
        let text = s["text"].as_str().unwrap_or_default();
        assert!(text.contains("backup of wedsync failed") && text.contains("connection refused"));
        let j = payload(WebhookFormat::Json, &ev);
        assert_eq!(j["event"], "backup_failed");
        assert_eq!(j["source"], "wedsync");
        assert!(j.get("backup_id").is_none());
    }
}
