//! E-mail over SMTP, one message per notification to every recipient.
//!
//! The subject is the one operators' mail filters already know:
//! `[picket CRITICAL] pi-cesson-01 - temperature` (`[picket RESOLVED] ...`
//! when it is over). The body, plain text:
//!
//! ```text
//! picket alert
//! Device: pi-cesson-01
//! Labels: club=CESSON, site=cesson-b827eb123456
//! Level: CRITICAL
//! Rule: temperature
//! Message: temperature 81.2 °C
//! Value: 81.2
//! Date: 2024-12-04T14:35:22Z
//! ```
//! with an `Instance:` line when the rule matched one, and `picket alert
//! resolved` / `Level: RESOLVED (critical)` for a resolution.
//!
//! SMTP replies 4xx, timeouts and connection failures are retried with
//! exponential backoff; 5xx (a refused login or recipient) is not.

use std::fmt::Write as _;
use std::time::Duration;

use lettre::message::{Mailbox, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::config::EmailConfig;
use super::{Failed, Kind, Notification, retrying};
use crate::model::Millis;

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("cannot build the message: {0}")]
    Message(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("no answer from the SMTP server within {0:?}")]
    Timeout(Duration),
}

impl EmailError {
    /// Worth another attempt: a 4xx reply, a timeout or a network failure.
    /// A 5xx reply (bad credentials, refused recipient), a TLS failure or
    /// a message we cannot build would fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            EmailError::Message(_) => false,
            EmailError::Timeout(_) => true,
            EmailError::Smtp(e) => {
                e.is_transient()
                    || e.is_timeout()
                    || !(e.is_permanent() || e.is_client() || e.is_tls() || e.is_response())
            }
        }
    }
}

/// The body text, as the module documents it.
pub fn body(n: &Notification) -> String {
    let mut b = String::new();
    let title = match n.state {
        Kind::Firing => "picket alert",
        Kind::Resolved => "picket alert resolved",
    };
    let labels = if n.labels.is_empty() {
        "-".to_string()
    } else {
        n.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let severity = match n.severity {
        picket_protocol::Severity::Info => "info",
        picket_protocol::Severity::Warning => "warning",
        picket_protocol::Severity::Critical => "critical",
    };
    let level = match n.state {
        Kind::Firing => n.level().to_string(),
        Kind::Resolved => format!("{} ({severity})", n.level()),
    };
    // Writing to a String cannot fail.
    let _ = writeln!(b, "{title}");
    let _ = writeln!(b, "Device: {}", n.device);
    let _ = writeln!(b, "Labels: {labels}");
    let _ = writeln!(b, "Level: {level}");
    let _ = writeln!(b, "Rule: {}", n.rule);
    if let Some(i) = &n.instance {
        let _ = writeln!(b, "Instance: {i}");
    }
    let _ = writeln!(b, "Message: {}", n.message);
    match n.value {
        Some(v) => {
            let _ = writeln!(b, "Value: {v}");
        }
        None => {
            let _ = writeln!(b, "Value: -");
        }
    }
    let _ = writeln!(b, "Date: {}", rfc3339(n.ts));
    b
}

/// `2024-12-04T14:35:22Z` (with milliseconds when there are some), or the
/// raw number for a time outside what a calendar date can show.
pub fn rfc3339(ts: Millis) -> String {
    i128::from(ts)
        .checked_mul(1_000_000)
        .and_then(|ns| OffsetDateTime::from_unix_timestamp_nanos(ns).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ts} ms since 1970"))
}

/// The message for `n`, from `from` to every `to`.
pub fn message(n: &Notification, from: &Mailbox, to: &[Mailbox]) -> Result<Message, EmailError> {
    let mut builder = Message::builder().from(from.clone()).subject(n.headline());
    for rcpt in to {
        builder = builder.to(rcpt.clone());
    }
    Ok(builder.singlepart(SinglePart::plain(body(n)))?)
}

/// The e-mail channel.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    config: EmailConfig,
}

impl Email {
    pub fn new(config: EmailConfig) -> Self {
        Email {
            transport: config.transport.clone().build(),
            config,
        }
    }

    /// Send `n`, retrying as the module documents. Returns the number of
    /// attempts it took.
    pub async fn send(&self, n: &Notification) -> Result<u32, Failed<EmailError>> {
        let message = message(n, &self.config.from, &self.config.to)
            .map_err(|error| Failed { attempts: 0, error })?;
        let timeout = self.config.timeout;
        retrying(
            "email",
            self.config.retries,
            self.config.backoff,
            EmailError::is_retryable,
            || async {
                // lettre's own timeout is per command; this one bounds the
                // whole session, so a server that trickles cannot hold us.
                match tokio::time::timeout(timeout, self.transport.send(message.clone())).await {
                    Ok(sent) => sent.map(drop).map_err(EmailError::from),
                    Err(_) => Err(EmailError::Timeout(timeout)),
                }
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use picket_protocol::Severity;

    use super::*;

    /// With a second label, to show how labels are listed.
    fn notification() -> Notification {
        Notification {
            labels: BTreeMap::from([
                ("club".into(), "CESSON".into()),
                ("site".into(), "cesson-b827eb123456".into()),
            ]),
            ..crate::notify::test_notification()
        }
    }

    #[test]
    fn body_of_a_firing_alert() {
        assert_eq!(
            body(&notification()),
            "picket alert\n\
             Device: pi-cesson-01\n\
             Labels: club=CESSON, site=cesson-b827eb123456\n\
             Level: CRITICAL\n\
             Rule: temperature\n\
             Message: temperature 81.2 °C\n\
             Value: 81.2\n\
             Date: 2024-12-04T14:38:42Z\n"
        );
    }

    #[test]
    fn body_of_a_resolution() {
        let n = Notification {
            labels: BTreeMap::new(),
            rule: "disk_full".into(),
            instance: Some("/data".into()),
            severity: Severity::Warning,
            state: Kind::Resolved,
            value: None,
            message: "disk /data at 80 %".into(),
            ts: 1_733_323_122_345,
            ..notification()
        };
        assert_eq!(
            body(&n),
            "picket alert resolved\n\
             Device: pi-cesson-01\n\
             Labels: -\n\
             Level: RESOLVED (warning)\n\
             Rule: disk_full\n\
             Instance: /data\n\
             Message: disk /data at 80 %\n\
             Value: -\n\
             Date: 2024-12-04T14:38:42.345Z\n"
        );
    }

    #[test]
    fn dates() {
        let table = [
            (0, "1970-01-01T00:00:00Z"),
            (1_733_323_122_000, "2024-12-04T14:38:42Z"),
            (1_709_164_800_500, "2024-02-29T00:00:00.5Z"),
            (u64::MAX, "18446744073709551615 ms since 1970"),
        ];
        for (ts, want) in table {
            assert_eq!(rfc3339(ts), want, "{ts}");
        }
    }

    #[test]
    fn message_headers() {
        let from: Mailbox = "picket <picket@example.com>".parse().expect("from");
        let to: Vec<Mailbox> = ["ops@example.com", "night@example.com"]
            .iter()
            .map(|a| a.parse().expect("to"))
            .collect();
        let m = message(&notification(), &from, &to).expect("message");
        let raw = String::from_utf8(m.formatted()).expect("utf-8");
        assert!(
            raw.contains("Subject: [picket CRITICAL] pi-cesson-01 - temperature\r\n"),
            "{raw}"
        );
        assert!(
            raw.contains("From: picket <picket@example.com>\r\n"),
            "{raw}"
        );
        assert!(
            raw.contains("To: ops@example.com, night@example.com\r\n"),
            "{raw}"
        );
        let rcpts: Vec<String> = m.envelope().to().iter().map(|a| a.to_string()).collect();
        assert_eq!(rcpts, ["ops@example.com", "night@example.com"]);
    }
}
