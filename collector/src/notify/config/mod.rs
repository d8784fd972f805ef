//! The `[notify]`, `[webhook]` and `[email]` sections: raw as written, and
//! [`validate`]d into the [`NotifyConfig`] the notifier trusts.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use picket_config::{ConfigError, HumanDuration, invalid, read_file, read_secret};
use serde::{Deserialize, Serialize};
use ureq::tls::{Certificate, PemItem, RootCerts, parse_pem};

/// Notifications waiting per channel before new ones are dropped for it.
pub const DEFAULT_QUEUE: usize = 64;

/// How long in-flight deliveries may finish after shutdown is requested:
/// part of the collector's whole stop, which stays under 5 s.
pub const DEFAULT_GRACE: Duration = Duration::from_millis(1_500);

/// The longest wait between two attempts, whatever `backoff` and the
/// number of retries say.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNotify {
    pub cooldown: HumanDuration,
}

impl Default for RawNotify {
    fn default() -> Self {
        RawNotify {
            cooldown: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebhook {
    /// Empty: no webhook.
    pub url: String,
    pub timeout: HumanDuration,
    pub retries: u32,
    pub backoff: HumanDuration,
    /// PEM CA bundle for an `https://` URL; empty: the Mozilla roots
    /// built into the binary.
    pub ca_file: String,
}

impl Default for RawWebhook {
    fn default() -> Self {
        RawWebhook {
            url: String::new(),
            timeout: HumanDuration(Duration::from_secs(10)),
            retries: 5,
            backoff: HumanDuration(Duration::from_secs(1)),
            ca_file: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEmail {
    /// Empty: no e-mail.
    pub host: String,
    /// 0: the mode's standard port.
    pub port: u16,
    /// `starttls`, `tls` (implicit TLS) or `plain`.
    pub tls: String,
    pub username: String,
    pub password_file: String,
    pub from: String,
    pub to: Vec<String>,
    pub timeout: HumanDuration,
    pub retries: u32,
    pub backoff: HumanDuration,
}

impl Default for RawEmail {
    fn default() -> Self {
        RawEmail {
            host: String::new(),
            port: 0,
            tls: "starttls".into(),
            username: String::new(),
            password_file: String::new(),
            from: "picket@localhost".into(),
            to: Vec::new(),
            timeout: HumanDuration(Duration::from_secs(30)),
            retries: 3,
            backoff: HumanDuration(Duration::from_secs(1)),
        }
    }
}

/// The validated notification settings.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// See [`super::Cooldowns`].
    pub cooldown: Duration,
    pub webhook: Option<WebhookConfig>,
    pub email: Option<EmailConfig>,
    /// Per-channel queue length ([`DEFAULT_QUEUE`]); not in the file.
    pub queue: usize,
    /// Shutdown grace period ([`DEFAULT_GRACE`]); not in the file.
    pub grace: Duration,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    /// Per attempt, connection to last byte of the answer.
    pub timeout: Duration,
    /// Attempts after the first one.
    pub retries: u32,
    /// Wait before the first retry, doubled for each next one.
    pub backoff: Duration,
    /// The CAs trusted for `https://`.
    pub roots: RootCerts,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// Built at validation, so TLS set-up problems stop the start-up.
    pub transport: AsyncSmtpTransportBuilder,
    /// `host:port (mode)`, for messages.
    pub server: String,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    /// Per attempt, the whole SMTP session.
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Implicit,
    /// No TLS: a local relay, or tests.
    Plain,
}

/// An `email.tls` that names no mode.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not one of starttls, tls, plain")]
pub struct UnknownSmtpTls(String);

impl SmtpTls {
    pub fn parse(s: &str) -> Result<Self, UnknownSmtpTls> {
        match s {
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" => Ok(SmtpTls::Implicit),
            "plain" => Ok(SmtpTls::Plain),
            _ => Err(UnknownSmtpTls(s.to_string())),
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::Plain => 25,
        }
    }
}

/// Check the three sections; reads the SMTP password file.
pub fn validate(
    notify: &RawNotify,
    webhook: &RawWebhook,
    email: &RawEmail,
) -> Result<NotifyConfig, ConfigError> {
    Ok(NotifyConfig {
        cooldown: notify.cooldown.0,
        webhook: validate_webhook(webhook)?,
        email: validate_email(email)?,
        queue: DEFAULT_QUEUE,
        grace: DEFAULT_GRACE,
    })
}

fn validate_webhook(w: &RawWebhook) -> Result<Option<WebhookConfig>, ConfigError> {
    if w.url.is_empty() {
        return Ok(None);
    }
    let https = check_url(&w.url).map_err(|e| invalid("webhook.url", e.to_string()))?;
    let roots = if w.ca_file.is_empty() {
        RootCerts::WebPki
    } else if !https {
        return Err(invalid(
            "webhook.ca_file",
            "is set but webhook.url is http://: use https://",
        ));
    } else {
        let pem = read_file("webhook.ca_file", &w.ca_file)?;
        let certs: Vec<Certificate<'static>> = parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(invalid(
                "webhook.ca_file",
                format!("no PEM certificate in {}", w.ca_file),
            ));
        }
        RootCerts::from(certs)
    };
    Ok(Some(WebhookConfig {
        url: w.url.clone(),
        timeout: attempt_timeout("webhook.timeout", w.timeout.0)?,
        retries: retries("webhook.retries", w.retries)?,
        backoff: backoff("webhook.backoff", w.backoff.0)?,
        roots,
    }))
}

/// A `webhook.url` that [`check_url`] refuses.
#[derive(Debug, thiserror::Error)]
enum UrlError {
    #[error("{url:?} is not a URL: {error}")]
    Syntax {
        url: String,
        error: ureq::http::uri::InvalidUri,
    },
    #[error("{0:?} must start with http:// or https://")]
    Scheme(String),
    #[error("{0:?} has no host")]
    NoHost(String),
}

/// An absolute `http://` or `https://` URL with a host; true for https.
fn check_url(url: &str) -> Result<bool, UrlError> {
    let uri: ureq::http::Uri = url.parse().map_err(|error| UrlError::Syntax {
        url: url.to_string(),
        error,
    })?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(UrlError::Scheme(url.to_string())),
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost(url.to_string()));
    }
    Ok(https)
}

fn validate_email(e: &RawEmail) -> Result<Option<EmailConfig>, ConfigError> {
    if e.host.is_empty() {
        if !e.to.is_empty() {
            return Err(invalid("email.host", "must be set when email.to is"));
        }
        return Ok(None);
    }
    if e.host
        .contains(|c: char| c.is_whitespace() || c == '/' || c == ':')
    {
        return Err(invalid(
            "email.host",
            format!(
                "{:?} is not a host name (the port goes in email.port)",
                e.host
            ),
        ));
    }
    let mode = SmtpTls::parse(&e.tls).map_err(|r| invalid("email.tls", r.to_string()))?;
    let port = if e.port == 0 {
        mode.default_port()
    } else {
        e.port
    };
    let (from, to) = addresses(e)?;
    let credentials = credentials(e)?;
    let timeout = attempt_timeout("email.timeout", e.timeout.0)?;
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(e.host.as_str())
        .port(port)
        .tls(smtp_tls(mode, &e.host)?)
        .timeout(Some(timeout));
    if let Some(c) = credentials {
        transport = transport.credentials(c);
    }
    Ok(Some(EmailConfig {
        transport,
        server: format!("{}:{port} ({})", e.host, e.tls),
        from,
        to,
        timeout,
        retries: retries("email.retries", e.retries)?,
        backoff: backoff("email.backoff", e.backoff.0)?,
    }))
}

/// `email.from` and `email.to`, parsed.
fn addresses(e: &RawEmail) -> Result<(Mailbox, Vec<Mailbox>), ConfigError> {
    let from: Mailbox = e.from.parse().map_err(|err| {
        invalid(
            "email.from",
            format!("{:?} is not an address: {err}", e.from),
        )
    })?;
    if e.to.is_empty() {
        return Err(invalid("email.to", "must list at least one address"));
    }
    let to =
        e.to.iter()
            .map(|a| {
                a.parse::<Mailbox>()
                    .map_err(|err| invalid("email.to", format!("{a:?} is not an address: {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
    Ok((from, to))
}

/// A user name and password, both or neither; reads the password file.
fn credentials(e: &RawEmail) -> Result<Option<Credentials>, ConfigError> {
    match (e.username.is_empty(), e.password_file.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some(Credentials::new(
            e.username.clone(),
            read_secret("email.password_file", &e.password_file)?,
        ))),
        (true, false) => Err(invalid(
            "email.username",
            "must be set when email.password_file is",
        )),
        (false, true) => Err(invalid(
            "email.password_file",
            "must be set when email.username is",
        )),
    }
}

/// The TLS of an SMTP connection to `host`.
fn smtp_tls(mode: SmtpTls, host: &str) -> Result<Tls, ConfigError> {
    Ok(match mode {
        SmtpTls::Plain => Tls::None,
        SmtpTls::StartTls | SmtpTls::Implicit => {
            picket_config::tls::install_provider();
            let params = TlsParameters::new(host.to_string())
                .map_err(|err| invalid("email.host", format!("cannot set up TLS: {err}")))?;
            if mode == SmtpTls::StartTls {
                Tls::Required(params)
            } else {
                Tls::Wrapper(params)
            }
        }
    })
}

fn attempt_timeout(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d < Duration::from_millis(100) || d > Duration::from_secs(600) {
        return Err(invalid(key, "must be between 100ms and 10m"));
    }
    Ok(d)
}

fn retries(key: &str, n: u32) -> Result<u32, ConfigError> {
    if n > 20 {
        return Err(invalid(key, "must be at most 20"));
    }
    Ok(n)
}

fn backoff(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() || d > MAX_BACKOFF {
        return Err(invalid(key, "must be between 1ms and 5m"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
