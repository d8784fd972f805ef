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

/// How long in-flight deliveries may finish after shutdown is requested.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

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

impl SmtpTls {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" => Ok(SmtpTls::Implicit),
            "plain" => Ok(SmtpTls::Plain),
            _ => Err(format!("{s:?} is not one of starttls, tls, plain")),
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
    let https = check_url(&w.url).map_err(|e| invalid("webhook.url", e))?;
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

/// An absolute `http://` or `https://` URL with a host; true for https.
fn check_url(url: &str) -> Result<bool, String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
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
    let mode = SmtpTls::parse(&e.tls).map_err(|r| invalid("email.tls", r))?;
    let port = if e.port == 0 {
        mode.default_port()
    } else {
        e.port
    };
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
    let credentials = match (e.username.is_empty(), e.password_file.is_empty()) {
        (true, true) => None,
        (false, false) => Some(Credentials::new(
            e.username.clone(),
            read_secret("email.password_file", &e.password_file)?,
        )),
        (true, false) => {
            return Err(invalid(
                "email.username",
                "must be set when email.password_file is",
            ));
        }
        (false, true) => {
            return Err(invalid(
                "email.password_file",
                "must be set when email.username is",
            ));
        }
    };
    let timeout = attempt_timeout("email.timeout", e.timeout.0)?;

    let tls = match mode {
        SmtpTls::Plain => Tls::None,
        SmtpTls::StartTls | SmtpTls::Implicit => {
            picket_config::tls::install_provider();
            let params = TlsParameters::new(e.host.clone())
                .map_err(|err| invalid("email.host", format!("cannot set up TLS: {err}")))?;
            if mode == SmtpTls::StartTls {
                Tls::Required(params)
            } else {
                Tls::Wrapper(params)
            }
        }
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(e.host.as_str())
        .port(port)
        .tls(tls)
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
mod tests {
    use super::*;

    fn email(host: &str, to: &[&str]) -> RawEmail {
        RawEmail {
            host: host.into(),
            to: to.iter().map(|s| s.to_string()).collect(),
            tls: "plain".into(),
            ..RawEmail::default()
        }
    }

    fn check(w: RawWebhook, e: RawEmail) -> Result<NotifyConfig, ConfigError> {
        validate(&RawNotify::default(), &w, &e)
    }

    #[test]
    fn the_defaults_turn_every_channel_off() {
        let c = check(RawWebhook::default(), RawEmail::default()).expect("defaults");
        assert_eq!(c.cooldown, Duration::from_secs(3600));
        assert!(c.webhook.is_none());
        assert!(c.email.is_none());
        assert_eq!(c.queue, DEFAULT_QUEUE);
        assert_eq!(c.grace, DEFAULT_GRACE);
    }

    #[test]
    fn the_defaults_serialise_as_documented() {
        let toml = toml::to_string(&RawEmail::default()).expect("toml");
        for line in [
            "host = \"\"",
            "port = 0",
            "tls = \"starttls\"",
            "from = \"picket@localhost\"",
            "to = []",
            "timeout = \"30s\"",
        ] {
            assert!(toml.contains(line), "{line} missing from\n{toml}");
        }
        let toml = toml::to_string(&RawWebhook::default()).expect("toml");
        for line in ["url = \"\"", "timeout = \"10s\"", "retries = 5"] {
            assert!(toml.contains(line), "{line} missing from\n{toml}");
        }
        let toml = toml::to_string(&RawNotify::default()).expect("toml");
        assert!(toml.contains("cooldown = \"1h\""), "{toml}");
    }

    #[test]
    fn webhook_urls() {
        let table = [
            ("https://hooks.slack.com/services/T/B/X", true),
            ("http://127.0.0.1:8080/hook", true),
            ("http://[::1]:8080/", true),
            ("ftp://example.com/", false),
            ("hooks.slack.com/services", false),
            ("https://", false),
            ("http://exa mple.com/", false),
        ];
        for (url, ok) in table {
            let w = RawWebhook {
                url: url.into(),
                ..RawWebhook::default()
            };
            let got = check(w, RawEmail::default());
            assert_eq!(got.is_ok(), ok, "{url}: {:?}", got.err());
            if let Err(e) = got {
                assert_eq!(e.key(), Some("webhook.url"));
            }
        }
    }

    #[test]
    fn a_valid_email_section_resolves_ports_and_addresses() {
        let table = [
            ("plain", 0, "25"),
            ("starttls", 0, "587"),
            ("tls", 0, "465"),
            ("plain", 2525, "2525"),
        ];
        for (mode, port, want) in table {
            let e = RawEmail {
                tls: mode.into(),
                port,
                from: "picket <picket@example.com>".into(),
                ..email(
                    "smtp.example.com",
                    &["ops@example.com", "Night Shift <night@example.com>"],
                )
            };
            let c = check(RawWebhook::default(), e).expect(mode);
            let email = c.email.expect("email on");
            assert_eq!(email.server, format!("smtp.example.com:{want} ({mode})"));
            assert_eq!(email.from.email.to_string(), "picket@example.com");
            assert_eq!(email.to.len(), 2);
            assert_eq!(email.to[1].email.to_string(), "night@example.com");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").expect("write");
        let empty = empty.to_string_lossy().to_string();
        let not_pem = dir.path().join("not-pem");
        std::fs::write(&not_pem, "not a certificate\n").expect("write");
        let not_pem = not_pem.to_string_lossy().to_string();

        let table: Vec<(&str, RawWebhook, RawEmail)> = vec![
            (
                "webhook.timeout",
                RawWebhook {
                    url: "http://h/".into(),
                    timeout: HumanDuration(Duration::ZERO),
                    ..RawWebhook::default()
                },
                RawEmail::default(),
            ),
            (
                "webhook.retries",
                RawWebhook {
                    url: "http://h/".into(),
                    retries: 100,
                    ..RawWebhook::default()
                },
                RawEmail::default(),
            ),
            (
                "webhook.backoff",
                RawWebhook {
                    url: "http://h/".into(),
                    backoff: HumanDuration(Duration::ZERO),
                    ..RawWebhook::default()
                },
                RawEmail::default(),
            ),
            (
                "webhook.ca_file",
                RawWebhook {
                    url: "http://h/".into(),
                    ca_file: empty.clone(),
                    ..RawWebhook::default()
                },
                RawEmail::default(),
            ),
            (
                "webhook.ca_file",
                RawWebhook {
                    url: "https://h/".into(),
                    ca_file: empty.clone(),
                    ..RawWebhook::default()
                },
                RawEmail::default(),
            ),
            (
                "webhook.ca_file",
                RawWebhook {
                    url: "https://h/".into(),
                    ca_file: not_pem.clone(),
                    ..RawWebhook::default()
                },
                RawEmail::default(),
            ),
            ("email.host", RawWebhook::default(), email("", &["a@b.c"])),
            (
                "email.host",
                RawWebhook::default(),
                email("smtp:25", &["a@b.c"]),
            ),
            ("email.to", RawWebhook::default(), email("smtp", &[])),
            (
                "email.to",
                RawWebhook::default(),
                email("smtp", &["a@b.c", "not an address"]),
            ),
            (
                "email.from",
                RawWebhook::default(),
                RawEmail {
                    from: "picket".into(),
                    ..email("smtp", &["a@b.c"])
                },
            ),
            (
                "email.tls",
                RawWebhook::default(),
                RawEmail {
                    tls: "ssl".into(),
                    ..email("smtp", &["a@b.c"])
                },
            ),
            (
                "email.password_file",
                RawWebhook::default(),
                RawEmail {
                    username: "u".into(),
                    ..email("smtp", &["a@b.c"])
                },
            ),
            (
                "email.username",
                RawWebhook::default(),
                RawEmail {
                    password_file: "/nonexistent".into(),
                    ..email("smtp", &["a@b.c"])
                },
            ),
            (
                "email.password_file",
                RawWebhook::default(),
                RawEmail {
                    username: "u".into(),
                    password_file: "/nonexistent/secret".into(),
                    ..email("smtp", &["a@b.c"])
                },
            ),
            (
                "email.password_file",
                RawWebhook::default(),
                RawEmail {
                    username: "u".into(),
                    password_file: empty.clone(),
                    ..email("smtp", &["a@b.c"])
                },
            ),
            (
                "email.timeout",
                RawWebhook::default(),
                RawEmail {
                    timeout: HumanDuration(Duration::from_secs(3600)),
                    ..email("smtp", &["a@b.c"])
                },
            ),
            (
                "email.retries",
                RawWebhook::default(),
                RawEmail {
                    retries: 21,
                    ..email("smtp", &["a@b.c"])
                },
            ),
        ];
        for (key, w, e) in table {
            match check(w, e.clone()) {
                Ok(_) => panic!("{key}: {e:?} was accepted"),
                Err(err) => assert_eq!(err.key(), Some(key), "{err}"),
            }
        }
    }
}
