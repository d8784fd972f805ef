//! RawConfig → Config: every check that can fail at start-up fails here,
//! with the key that is wrong and why.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use picket_config::{ConfigError, invalid, read_secret};
use picket_protocol::Format;

use super::raw::RawConfig;
use super::{ApiAuth, Config};
use crate::commands::{CommandsConfig, Issuer};
use crate::fleet::EngineConfig;
use crate::history::Durability;
use crate::link::LinkConfig;
use crate::rules::Glob;
use picket_config::embedded_broker::EmbeddedConfig;
use picket_protocol::signing;

fn socket_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| {
        invalid(
            key,
            format!("{s:?} is not an address:port (e.g. 127.0.0.1:1883 or [::1]:1883)"),
        )
    })
}

pub fn validate(raw: &RawConfig) -> Result<Config, ConfigError> {
    let (max_payload, format) = payload(raw)?;
    let (embedded, link) = broker(raw, max_payload)?;
    let http_listen = socket_addr("http.listen", &raw.http.listen)?;
    let api = api(raw)?;
    let (storage_path, retention, durability) = storage(raw)?;
    let presence_timeout = raw.presence.timeout.0;
    if presence_timeout < Duration::from_secs(1)
        || presence_timeout > Duration::from_secs(7 * 86_400)
    {
        return Err(invalid("presence.timeout", "must be between 1s and 7d"));
    }
    let labels = labels(raw)?;
    let commands = commands(raw)?;
    let rules = crate::rules::build(&raw.rules)?;
    let notify = crate::notify::validate(&raw.notify, &raw.webhook, &raw.email)?;
    let engine = EngineConfig {
        topics: link.broker.topics.clone(),
        max_payload,
        presence_timeout,
        cooldown: notify.cooldown,
        rules: Arc::new(rules),
        labels,
        format,
        issuer: Arc::new(Issuer {
            cfg: commands.clone(),
            topics: link.broker.topics.clone(),
            format,
        }),
    };
    Ok(Config {
        embedded,
        link,
        http_listen,
        api,
        storage_path,
        retention,
        durability,
        engine,
        notify,
        commands,
    })
}

/// `[payload]`: the largest payload accepted and the encoding published.
fn payload(raw: &RawConfig) -> Result<(usize, Format), ConfigError> {
    let max_payload = raw.payload.max_size.0 as usize;
    if !(1024..=256 << 20).contains(&max_payload) {
        return Err(invalid(
            "payload.max_size",
            "must be between 1KiB and 256MiB",
        ));
    }
    let format: Format = raw
        .payload
        .format
        .parse()
        .map_err(|e: String| invalid("payload.format", e))?;
    Ok((max_payload, format))
}

/// `[broker]`: the embedded broker (without `broker.url`) and the link to
/// whichever broker it is.
fn broker(
    raw: &RawConfig,
    max_payload: usize,
) -> Result<(Option<EmbeddedConfig>, LinkConfig), ConfigError> {
    let b = &raw.broker;
    let (embedded, url) = if b.url.is_empty() {
        let listen = socket_addr("broker.listen", &b.listen)?;
        if listen.port() == 0 {
            return Err(invalid(
                "broker.listen",
                "needs a port (the collector connects to it)",
            ));
        }
        if b.max_connections == 0 {
            return Err(invalid("broker.max_connections", "must be at least 1"));
        }
        // Connect over loopback when the broker listens on every address.
        let connect = if listen.ip().is_unspecified() {
            SocketAddr::new(
                match listen.ip() {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                },
                listen.port(),
            )
        } else {
            listen
        };
        let embedded = EmbeddedConfig {
            listen,
            // MQTT framing on top of the largest payload accepted.
            max_payload: max_payload + 64 * 1024,
            max_connections: b.max_connections as usize,
            auth: None,
        };
        (Some(embedded), format!("mqtt://{connect}"))
    } else {
        (None, b.url.clone())
    };
    if embedded.is_some() && !b.ca_file.is_empty() {
        return Err(invalid(
            "broker.ca_file",
            "TLS settings need broker.url (the embedded broker speaks plain MQTT on its listen address)",
        ));
    }
    let broker = picket_config::broker::resolve(&b.shared(&url), "picket-collector")?;
    if b.inflight == 0 {
        return Err(invalid("broker.inflight", "must be at least 1"));
    }
    let link = LinkConfig {
        broker,
        // Whatever its size, a publish is taken off the broker and refused
        // by the decoder (counted, quarantined, acknowledged): a client
        // limit below the broker's would drop the connection on it, and
        // the broker would redeliver it to the session forever.
        max_packet: crate::link::MQTT_MAX_PACKET,
        inflight: b.inflight,
    };
    Ok((embedded, link))
}

/// `[api]`: the bearer tokens, each given inline or in a file.
fn api(raw: &RawConfig) -> Result<ApiAuth, ConfigError> {
    let a = &raw.api;
    let api = ApiAuth {
        admin: token(
            "api.admin_token",
            &a.admin_token,
            "api.admin_token_file",
            &a.admin_token_file,
        )?,
        read: token(
            "api.read_token",
            &a.read_token,
            "api.read_token_file",
            &a.read_token_file,
        )?,
    };
    if api.admin.is_some() && api.admin == api.read {
        return Err(invalid(
            "api.read_token",
            "must differ from api.admin_token",
        ));
    }
    Ok(api)
}

fn token(
    key: &str,
    value: &str,
    file_key: &str,
    file: &str,
) -> Result<Option<String>, ConfigError> {
    let t = match (value.is_empty(), file.is_empty()) {
        (true, true) => return Ok(None),
        (false, true) => value.to_string(),
        (true, false) => read_secret(file_key, file)?,
        (false, false) => {
            return Err(invalid(
                key,
                format!("set either {key} or {file_key}, not both"),
            ));
        }
    };
    if t.len() < 16 {
        return Err(invalid(
            key,
            "must be at least 16 characters (it is a password)",
        ));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            key,
            "must not contain spaces or control characters",
        ));
    }
    Ok(Some(t))
}

/// `[storage]`: where the history is, how long it is kept, how it syncs.
fn storage(raw: &RawConfig) -> Result<(PathBuf, Duration, Durability), ConfigError> {
    if raw.storage.path.is_empty() {
        return Err(invalid("storage.path", "must not be empty"));
    }
    let retention = raw.storage.retention.0;
    if retention < Duration::from_secs(3600) {
        return Err(invalid("storage.retention", "must be at least 1h"));
    }
    let durability = match raw.storage.synchronous.as_str() {
        "full" => Durability::Full,
        "normal" => Durability::Normal,
        other => {
            return Err(invalid(
                "storage.synchronous",
                format!("{other:?} is neither \"full\" nor \"normal\""),
            ));
        }
    };
    Ok((PathBuf::from(&raw.storage.path), retention, durability))
}

/// Labels by device-id glob, first match wins.
type DeviceLabels = Vec<(Glob, BTreeMap<String, String>)>;

/// `[[labels]]`.
fn labels(raw: &RawConfig) -> Result<DeviceLabels, ConfigError> {
    let mut labels = Vec::new();
    for (i, l) in raw.labels.iter().enumerate() {
        let glob = Glob::check_device(&l.devices)
            .map_err(|e| invalid(&format!("labels[{i}].devices"), e))?;
        for k in l.labels.keys() {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid(
                    &format!("labels[{i}].labels"),
                    format!("{k:?} is not a label name (letters, digits, _)"),
                ));
            }
        }
        labels.push((glob, l.labels.clone()));
    }
    Ok(labels)
}

fn commands(raw: &RawConfig) -> Result<CommandsConfig, ConfigError> {
    let c = &raw.commands;
    let key = match c.private_key_file.as_str() {
        "" => None,
        path => {
            let text = read_secret("commands.private_key_file", path)?;
            let key = signing::parse_private_key(&text)
                .map_err(|e| invalid("commands.private_key_file", format!("{path}: {e}")))?;
            Some(Arc::new(key))
        }
    };
    if c.max_ttl.0 < Duration::from_secs(1) {
        return Err(invalid("commands.max_ttl", "must be at least 1s"));
    }
    if c.default_ttl.0 < Duration::from_secs(1) || c.default_ttl.0 > c.max_ttl.0 {
        return Err(invalid(
            "commands.default_ttl",
            format!("must be between 1s and commands.max_ttl ({})", c.max_ttl),
        ));
    }
    Ok(CommandsConfig {
        key,
        default_ttl: c.default_ttl.0,
        max_ttl: c.max_ttl.0,
    })
}
