//! RawConfig → Config: every check that can fail at start-up fails here,
//! with the key that is wrong and why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use picket_protocol::{DeviceId, Format, Topics};

use super::raw::RawConfig;
use super::{BrokerConfig, Config, ConfigError, UplinkConfig, fnv1a};
use crate::queue::QueueConfig;
use crate::sensors::{SensorConfig, identity};

/// Where a system CA bundle is on Debian and Raspberry Pi OS, used for
/// `mqtts://` when no `broker.ca_file` is set.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
        origin: "configuration".into(),
    }
}

pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let host_root = PathBuf::from(&raw.host.root);
    if !host_root.is_absolute() {
        return Err(invalid("host.root", "must be an absolute path"));
    }

    let device = if raw.device.id.is_empty() {
        identity::default_device_id(&host_root).map_err(|e| {
            invalid(
                "device.id",
                format!("not set, and no default could be found: {e}"),
            )
        })?
    } else {
        DeviceId::new(raw.device.id.clone()).map_err(|e| invalid("device.id", e.to_string()))?
    };

    let broker = broker(&raw, &device)?;

    let sampling_interval = raw.sampling.interval.0;
    if sampling_interval < Duration::from_millis(10) {
        return Err(invalid("sampling.interval", "must be at least 10ms"));
    }
    if sampling_interval > Duration::from_secs(3600) {
        return Err(invalid("sampling.interval", "must be at most 1h"));
    }

    let format: Format = raw
        .payload
        .format
        .parse()
        .map_err(|e: String| invalid("payload.format", e))?;

    let queue = queue(&raw)?;
    let uplink = uplink(&raw)?;

    for unit in &raw.services.watch {
        if unit.is_empty() || unit.starts_with('-') || unit.contains(char::is_whitespace) {
            return Err(invalid(
                "services.watch",
                format!("{unit:?} is not a systemd unit name"),
            ));
        }
    }
    if raw.services.systemctl.is_empty() {
        return Err(invalid("services.systemctl", "must not be empty"));
    }
    let sensors = SensorConfig {
        host_root,
        services: raw.services.watch.clone(),
        systemctl: PathBuf::from(&raw.services.systemctl),
        net_exclude: raw.net.exclude.clone(),
    };

    // The hash covers the effective settings, not the secrets' contents.
    let canonical = toml::to_string(&raw).unwrap_or_default();
    let hash = format!("{:016x}", fnv1a(canonical.as_bytes()));

    Ok(Config {
        device,
        broker,
        sampling_interval,
        format,
        queue,
        uplink,
        sensors,
        hash,
    })
}

fn broker(raw: &RawConfig, device: &DeviceId) -> Result<BrokerConfig, ConfigError> {
    let b = &raw.broker;
    let (tls, host, port) = parse_url(&b.url).map_err(|e| invalid("broker.url", e))?;
    let topics = Topics::new(b.topic_prefix.clone())
        .map_err(|e| invalid("broker.topic_prefix", e.to_string()))?;

    let client_id = if b.client_id.is_empty() {
        format!("picket-{device}")
    } else {
        b.client_id.clone()
    };
    if client_id.len() > 256 {
        return Err(invalid("broker.client_id", "longer than 256 bytes"));
    }

    let credentials = match (b.username.is_empty(), b.password_file.is_empty()) {
        (true, true) => None,
        (true, false) => {
            return Err(invalid(
                "broker.username",
                "must be set when broker.password_file is",
            ));
        }
        (false, true) => Some((b.username.clone(), String::new())),
        (false, false) => {
            let text = read_file("broker.password_file", &b.password_file)?;
            let text = String::from_utf8(text)
                .map_err(|_| invalid("broker.password_file", "is not UTF-8 text"))?;
            let password = text.lines().next().unwrap_or("").to_string();
            Some((b.username.clone(), password))
        }
    };

    let keep_alive = b.keep_alive.0;
    if keep_alive < Duration::from_secs(5) || keep_alive > Duration::from_secs(65535) {
        return Err(invalid(
            "broker.keep_alive",
            "must be between 5s and 65535s",
        ));
    }

    let client_files = match (b.client_cert.is_empty(), b.client_key.is_empty()) {
        (true, true) => None,
        (false, false) => Some((
            read_file("broker.client_cert", &b.client_cert)?,
            read_file("broker.client_key", &b.client_key)?,
        )),
        (false, true) => return Err(invalid("broker.client_key", "must be set with client_cert")),
        (true, false) => return Err(invalid("broker.client_cert", "must be set with client_key")),
    };
    let tls = if tls {
        let ca = if b.ca_file.is_empty() {
            std::fs::read(SYSTEM_CA_BUNDLE).map_err(|e| {
                invalid(
                    "broker.ca_file",
                    format!("mqtts:// needs a CA: not set, and no system bundle at {SYSTEM_CA_BUNDLE} ({e})"),
                )
            })?
        } else {
            read_file("broker.ca_file", &b.ca_file)?
        };
        let client = client_files
            .as_ref()
            .map(|(cert, key)| (cert.as_slice(), key.as_slice()));
        let tls = crate::uplink::tls::client_config(&ca, client)
            .map_err(|e| invalid(e.key(), e.to_string()))?;
        Some(tls)
    } else {
        if client_files.is_some() || !b.ca_file.is_empty() {
            return Err(invalid(
                "broker.url",
                "TLS files are configured but the URL is mqtt://: use mqtts://",
            ));
        }
        None
    };

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

/// `mqtt://host[:port]` or `mqtts://host[:port]`; IPv6 literals in brackets.
pub(crate) fn parse_url(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        return Err(format!("{url:?} must start with mqtt:// or mqtts://"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '@', '?', '#']) {
        return Err(format!(
            "{url:?}: only scheme, host and port are allowed (credentials go in broker.username and broker.password_file)"
        ));
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(url, p)?,
            None if after.is_empty() => default_port,
            None => return Err(format!("{url:?}: unexpected text after ']'")),
        };
        (host.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), parse_port(url, p)?),
            None => (rest.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok((tls, host, port))
}

fn parse_port(url: &str, p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{url:?}: port {p:?} is not in 1-65535")),
        Ok(p) => Ok(p),
    }
}

fn read_file(key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    let p = Path::new(path);
    let data = std::fs::read(p).map_err(|e| invalid(key, format!("cannot read {path}: {e}")))?;
    if data.is_empty() {
        return Err(invalid(key, format!("{path} is empty")));
    }
    Ok(data)
}

fn queue(raw: &RawConfig) -> Result<QueueConfig, ConfigError> {
    let q = &raw.queue;
    if q.dir.is_empty() {
        return Err(invalid("queue.dir", "must not be empty"));
    }
    if q.segment_bytes.0 < 4096 {
        return Err(invalid("queue.segment_bytes", "must be at least 4KiB"));
    }
    if q.max_bytes.0 < 2 * q.segment_bytes.0 {
        return Err(invalid(
            "queue.max_bytes",
            format!(
                "must be at least twice queue.segment_bytes ({})",
                q.segment_bytes
            ),
        ));
    }
    let sync = q.sync_interval.0;
    if sync > Duration::from_secs(300) {
        return Err(invalid(
            "queue.sync_interval",
            "must be at most 5m (it is the most a power cut may lose)",
        ));
    }
    let hot_dir = match q.hot_dir.as_str() {
        "" => None,
        d if !Path::new(d).is_absolute() => {
            return Err(invalid("queue.hot_dir", "must be an absolute path"));
        }
        d if Path::new(d) == Path::new(&q.dir) => {
            return Err(invalid(
                "queue.hot_dir",
                "must differ from queue.dir (it belongs on tmpfs, queue.dir on the SD card)",
            ));
        }
        d => Some(PathBuf::from(d)),
    };
    Ok(QueueConfig {
        dir: PathBuf::from(&q.dir),
        segment_bytes: q.segment_bytes.0,
        max_bytes: q.max_bytes.0,
        sync_interval: sync,
        hot_dir,
    })
}

fn uplink(raw: &RawConfig) -> Result<UplinkConfig, ConfigError> {
    let u = &raw.uplink;
    if !(1..=10_000).contains(&u.batch_records) {
        return Err(invalid(
            "uplink.batch_records",
            "must be between 1 and 10000",
        ));
    }
    if !(1024..=(16 << 20)).contains(&u.batch_bytes.0) {
        return Err(invalid(
            "uplink.batch_bytes",
            "must be between 1KiB and 16MiB",
        ));
    }
    // rumqttc numbers in-flight packets 1..=inflight on its own; keeping
    // ours well under its limit rules out packet id collisions.
    if !(1..=64).contains(&u.inflight) {
        return Err(invalid("uplink.inflight", "must be between 1 and 64"));
    }
    if u.backoff_max.0 < Duration::from_secs(1) {
        return Err(invalid("uplink.backoff_max", "must be at least 1s"));
    }
    Ok(UplinkConfig {
        batch_records: u.batch_records as usize,
        batch_bytes: u.batch_bytes.0 as usize,
        inflight: u.inflight as usize,
        backoff_max: u.backoff_max.0,
    })
}
