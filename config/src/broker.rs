//! The `[broker]` section: how an MQTT client of picket reaches its broker.

use std::sync::Arc;
use std::time::Duration;

use picket_protocol::Topics;
use serde::{Deserialize, Serialize};

use crate::units::HumanDuration;
use crate::{ConfigError, invalid, read_file, read_secret};

/// Where a system CA bundle is on Debian and Raspberry Pi OS, used for
/// `mqtts://` when no `broker.ca_file` is set.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The broker settings as written. The agent uses this as its `[broker]`
/// section; the collector, whose section has more keys and another default
/// URL, converts its own into this and calls [`resolve`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBroker {
    pub url: String,
    pub client_id: String,
    pub username: String,
    pub password_file: String,
    pub ca_file: String,
    pub client_cert: String,
    pub client_key: String,
    pub keep_alive: HumanDuration,
    pub topic_prefix: String,
}

impl Default for RawBroker {
    fn default() -> Self {
        RawBroker {
            url: "mqtt://localhost:1883".into(),
            client_id: String::new(),
            username: String::new(),
            password_file: String::new(),
            ca_file: String::new(),
            client_cert: String::new(),
            client_key: String::new(),
            keep_alive: HumanDuration(Duration::from_secs(30)),
            topic_prefix: "picket".into(),
        }
    }
}

/// The validated broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// As configured, for messages (never contains the password).
    pub url: String,
    pub host: String,
    pub port: u16,
    /// Built at validation time from the PEM files, so a missing or
    /// unreadable file is a config error at start-up rather than a
    /// connection failure later.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    pub keep_alive: Duration,
    pub topics: Topics,
}

/// Validate `b`; `default_client_id` is used when `client_id` is empty.
pub fn resolve(b: &RawBroker, default_client_id: &str) -> Result<BrokerConfig, ConfigError> {
    let (tls, host, port) = parse_url(&b.url).map_err(|e| invalid("broker.url", e.to_string()))?;
    let topics = Topics::new(b.topic_prefix.clone())
        .map_err(|e| invalid("broker.topic_prefix", e.to_string()))?;

    let client_id = if b.client_id.is_empty() {
        default_client_id.to_string()
    } else {
        b.client_id.clone()
    };
    if client_id.len() > 256 {
        return Err(invalid("broker.client_id", "longer than 256 bytes"));
    }
    let credentials = credentials(b)?;

    let keep_alive = b.keep_alive.0;
    if keep_alive < Duration::from_secs(5) || keep_alive > Duration::from_secs(65535) {
        return Err(invalid(
            "broker.keep_alive",
            "must be between 5s and 65535s",
        ));
    }
    let tls = tls_config(b, tls)?;

    Ok(BrokerConfig {
        url: b.url.clone(),
        host,
        port,
        tls,
        client_id,
        credentials,
        keep_alive,
        topics,
    })
}

/// A user name with the password from its file; a user name alone has an
/// empty password.
fn credentials(b: &RawBroker) -> Result<Option<(String, String)>, ConfigError> {
    match (b.username.is_empty(), b.password_file.is_empty()) {
        (true, true) => Ok(None),
        (true, false) => Err(invalid(
            "broker.username",
            "must be set when broker.password_file is",
        )),
        (false, true) => Ok(Some((b.username.clone(), String::new()))),
        (false, false) => Ok(Some((
            b.username.clone(),
            read_secret("broker.password_file", &b.password_file)?,
        ))),
    }
}

/// The TLS configuration for an `mqtts://` URL (`tls`) from the CA and the
/// client certificate files; TLS files with an `mqtt://` URL are an error.
fn tls_config(b: &RawBroker, tls: bool) -> Result<Option<Arc<rustls::ClientConfig>>, ConfigError> {
    let client_files = match (b.client_cert.is_empty(), b.client_key.is_empty()) {
        (true, true) => None,
        (false, false) => Some((
            read_file("broker.client_cert", &b.client_cert)?,
            read_file("broker.client_key", &b.client_key)?,
        )),
        (false, true) => return Err(invalid("broker.client_key", "must be set with client_cert")),
        (true, false) => return Err(invalid("broker.client_cert", "must be set with client_key")),
    };
    if !tls {
        if client_files.is_some() || !b.ca_file.is_empty() {
            return Err(invalid(
                "broker.url",
                "TLS files are configured but the URL is mqtt://: use mqtts://",
            ));
        }
        return Ok(None);
    }
    let ca = if b.ca_file.is_empty() {
        std::fs::read(SYSTEM_CA_BUNDLE).map_err(|e| {
            invalid(
                "broker.ca_file",
                format!(
                    "mqtts:// needs a CA: not set, and no system bundle at {SYSTEM_CA_BUNDLE} ({e})"
                ),
            )
        })?
    } else {
        read_file("broker.ca_file", &b.ca_file)?
    };
    let client = client_files
        .as_ref()
        .map(|(cert, key)| (cert.as_slice(), key.as_slice()));
    let tls =
        crate::tls::client_config(&ca, client).map_err(|e| invalid(e.key(), e.to_string()))?;
    Ok(Some(tls))
}

/// A `broker.url` that [`parse_url`] refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UrlError {
    #[error("{0:?} must start with mqtt:// or mqtts://")]
    Scheme(String),
    #[error(
        "{0:?}: only scheme, host and port are allowed (credentials go in broker.username and broker.password_file)"
    )]
    Extra(String),
    #[error("{0:?}: unclosed '['")]
    Unclosed(String),
    #[error("{0:?}: unexpected text after ']'")]
    AfterBracket(String),
    #[error("{url:?}: port {port:?} is not in 1-65535")]
    Port { url: String, port: String },
    #[error("{0:?} has no host")]
    NoHost(String),
}

/// `mqtt://host[:port]` or `mqtts://host[:port]`; IPv6 literals in brackets.
pub fn parse_url(url: &str) -> Result<(bool, String, u16), UrlError> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        return Err(UrlError::Scheme(url.to_string()));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '@', '?', '#']) {
        return Err(UrlError::Extra(url.to_string()));
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| UrlError::Unclosed(url.to_string()))?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(url, p)?,
            None if after.is_empty() => default_port,
            None => return Err(UrlError::AfterBracket(url.to_string())),
        };
        (host.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), parse_port(url, p)?),
            None => (rest.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost(url.to_string()));
    }
    Ok((tls, host, port))
}

fn parse_port(url: &str, p: &str) -> Result<u16, UrlError> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::Port {
            url: url.to_string(),
            port: p.to_string(),
        }),
        Ok(p) => Ok(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let table = [
            ("mqtt://h", Ok((false, "h", 1883))),
            ("mqtts://h", Ok((true, "h", 8883))),
            ("mqtt://h:1", Ok((false, "h", 1))),
            ("mqtt://[::1]:1884", Ok((false, "::1", 1884))),
            ("mqtt://[::1]", Ok((false, "::1", 1883))),
            ("mqtt://h/", Ok((false, "h", 1883))),
            ("tcp://h", Err(())),
            ("mqtt://", Err(())),
            ("mqtt://u:p@h", Err(())),
            ("mqtt://h:99999", Err(())),
            ("mqtt://[::1", Err(())),
        ];
        for (url, want) in table {
            let got = parse_url(url);
            let got = got
                .as_ref()
                .map(|(t, h, p)| (*t, h.as_str(), *p))
                .map_err(|_| ());
            assert_eq!(got, want, "{url}");
        }
    }
}
