//! The webhook: one JSON POST per notification, which a Slack incoming
//! webhook also accepts as is (it reads `text` and ignores the rest).
//!
//! ```json
//! {"device": "pi-cesson-01", "labels": {"club": "CESSON"},
//!  "alert": {"rule": "temperature", "severity": "critical", "state": "firing",
//!            "value": 81.2, "message": "temperature 81.2 °C"},
//!  "ts": 1733323122000,
//!  "text": "[picket CRITICAL] pi-cesson-01 - temperature: temperature 81.2 °C"}
//! ```
//! `alert.instance` is present when the rule matched an instance;
//! `alert.value` is `null` when the alert has no value.
//!
//! ureq is blocking, so each attempt runs on tokio's blocking pool with a
//! timeout covering the whole exchange. Connection errors, timeouts, 408,
//! 429 and 5xx are retried with exponential backoff; any other answer
//! outside 2xx means the request itself is wrong and is not repeated.

use std::collections::BTreeMap;
use std::sync::Arc;

use picket_protocol::{DeviceId, Severity};
use serde::Serialize;
use ureq::Agent;
use ureq::tls::{TlsConfig, TlsProvider};

use super::config::WebhookConfig;
use super::{Failed, Kind, Notification, retrying};
use crate::model::Millis;

/// How much of an error answer's body goes into the log.
const ERROR_BODY_LIMIT: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the server answered HTTP {status}: {body:?}")]
    Status { status: u16, body: String },
    #[error(transparent)]
    Http(#[from] ureq::Error),
    #[error("the request task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot encode the payload: {0}")]
    Encode(#[from] serde_json::Error),
}

impl WebhookError {
    /// Worth another attempt: the server or the network may do better
    /// later. Anything else will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            WebhookError::Status { status, .. } => retryable_status(*status),
            WebhookError::Http(ureq::Error::Io(e)) => !is_tls_refusal(e),
            WebhookError::Http(e) => matches!(
                e,
                ureq::Error::Timeout(_)
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::HostNotFound
                    | ureq::Error::Protocol(_)
                    | ureq::Error::BodyStalled
            ),
            WebhookError::Task(_) | WebhookError::Encode(_) => false,
        }
    }
}

/// A TLS handshake that failed on its merits (unknown CA, wrong name, no
/// common protocol): ureq reports it as I/O, but it will fail again.
fn is_tls_refusal(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

/// 408 (request timeout), 429 (rate limited) and 5xx are the server's
/// trouble, not the request's.
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// The JSON body.
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    pub device: &'a DeviceId,
    pub labels: &'a BTreeMap<String, String>,
    pub alert: PayloadAlert<'a>,
    pub ts: Millis,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct PayloadAlert<'a> {
    pub rule: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<&'a str>,
    pub severity: Severity,
    pub state: Kind,
    pub value: Option<f64>,
    pub message: &'a str,
}

impl<'a> Payload<'a> {
    pub fn new(n: &'a Notification) -> Self {
        Payload {
            device: &n.device,
            labels: &n.labels,
            alert: PayloadAlert {
                rule: &n.rule,
                instance: n.instance.as_deref(),
                severity: n.severity,
                state: n.state,
                value: n.value,
                message: &n.message,
            },
            ts: n.ts,
            text: text(n),
        }
    }
}

/// The one-line summary: `[picket CRITICAL] pi-cesson-01 - temperature:
/// temperature 81.2 °C`. `&`, `<` and `>` are escaped as Slack requires
/// (they introduce links and mentions in its `text`).
pub fn text(n: &Notification) -> String {
    let line = format!("{}: {}", n.headline(), n.message);
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The webhook channel.
pub struct Webhook {
    agent: Agent,
    config: WebhookConfig,
}

impl Webhook {
    pub fn new(config: WebhookConfig) -> Self {
        // ureq would otherwise pick a rustls provider itself; the process
        // uses ring everywhere, installed once.
        picket_config::tls::install_provider();
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(provider)
            .root_certs(config.roots.clone())
            .build();
        let agent = Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(concat!("picket-collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Webhook { agent, config }
    }

    /// POST `n`, retrying as the module documents. Returns the number of
    /// attempts it took.
    pub async fn send(&self, n: &Notification) -> Result<u32, Failed<WebhookError>> {
        let body: Arc<[u8]> = serde_json::to_vec(&Payload::new(n))
            .map_err(|e| Failed {
                attempts: 0,
                error: e.into(),
            })?
            .into();
        retrying(
            "webhook",
            self.config.retries,
            self.config.backoff,
            WebhookError::is_retryable,
            || {
                let agent = self.agent.clone();
                let url = self.config.url.clone();
                let body = body.clone();
                async move { tokio::task::spawn_blocking(move || post(&agent, &url, &body)).await? }
            },
        )
        .await
    }
}

fn post(agent: &Agent, url: &str, body: &[u8]) -> Result<(), WebhookError> {
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    // The body often says what is wrong (Slack: "invalid_payload").
    let text = response
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_string()
        .unwrap_or_default();
    let body = text.chars().take(ERROR_BODY_LIMIT).collect();
    Err(WebhookError::Status { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::notify::test_notification as notification;

    #[test]
    fn payload_fields() {
        let n = notification();
        let v = serde_json::to_value(Payload::new(&n)).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "device": "pi-cesson-01",
                "labels": {"club": "CESSON"},
                "alert": {
                    "rule": "temperature",
                    "severity": "critical",
                    "state": "firing",
                    "value": 81.2,
                    "message": "temperature 81.2 °C",
                },
                "ts": 1_733_323_122_000u64,
                "text": "[picket CRITICAL] pi-cesson-01 - temperature: temperature 81.2 °C",
            })
        );
    }

    #[test]
    fn a_resolution_with_an_instance_and_no_value() {
        let n = Notification {
            rule: "disk_full".into(),
            instance: Some("/data".into()),
            severity: Severity::Warning,
            state: Kind::Resolved,
            value: None,
            message: "disk /data back under 90 %".into(),
            ..notification()
        };
        let v = serde_json::to_value(Payload::new(&n)).expect("json");
        assert_eq!(v["alert"]["instance"], "/data");
        assert_eq!(v["alert"]["state"], "resolved");
        assert_eq!(v["alert"]["severity"], "warning");
        assert!(v["alert"]["value"].is_null());
        assert_eq!(
            v["text"],
            "[picket RESOLVED] pi-cesson-01 - disk_full: disk /data back under 90 %"
        );
    }

    #[test]
    fn text_escapes_what_slack_would_interpret() {
        let n = Notification {
            message: "free < 2 GB & <!channel> > now".into(),
            ..notification()
        };
        assert_eq!(
            text(&n),
            "[picket CRITICAL] pi-cesson-01 - temperature: free &lt; 2 GB &amp; &lt;!channel&gt; &gt; now"
        );
    }

    #[test]
    fn which_statuses_are_retried() {
        let table = [
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (408, true),
            (410, false),
            (413, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (599, true),
        ];
        for (status, want) in table {
            assert_eq!(retryable_status(status), want, "{status}");
            let e = WebhookError::Status {
                status,
                body: String::new(),
            };
            assert_eq!(e.is_retryable(), want, "{status}");
        }
        assert!(WebhookError::Http(ureq::Error::ConnectionFailed).is_retryable());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(WebhookError::Http(ureq::Error::Io(reset)).is_retryable());
        let refused = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(!WebhookError::Http(ureq::Error::Io(refused)).is_retryable());
        assert!(!WebhookError::Http(ureq::Error::BadUri("x".into())).is_retryable());
    }
}
