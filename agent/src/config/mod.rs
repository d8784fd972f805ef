//! Configuration in two stages: [`raw::RawConfig`] is what the file and the
//! environment say; [`Config`] is the validated form the rest of the agent
//! trusts (paths checked, secrets read, units resolved).

mod env;
pub mod raw;
pub mod units;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use picket_protocol::{DeviceId, Format, Topics};

pub use raw::RawConfig;
pub use validate::validate;

use crate::queue::QueueConfig;
use crate::sensors::SensorConfig;

/// The commented default configuration printed by `print-default-config`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Where the agent looks for its configuration without `--config`.
pub const DEFAULT_PATH: &str = "/etc/picket/agent.toml";

/// A configuration the agent cannot run with. The binary exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{key}: {reason} ({origin})")]
    Invalid {
        key: String,
        reason: String,
        origin: String,
    },
}

impl ConfigError {
    /// The offending key, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub device: DeviceId,
    pub broker: BrokerConfig,
    pub sampling_interval: Duration,
    pub format: Format,
    pub queue: QueueConfig,
    pub uplink: UplinkConfig,
    pub sensors: SensorConfig,
    /// 64-bit FNV-1a of the effective configuration, 16 hex digits.
    pub hash: String,
}

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

#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub batch_records: usize,
    pub batch_bytes: usize,
    pub inflight: usize,
    pub backoff_max: Duration,
}

/// Load the configuration: the file (when `path` is given it must exist;
/// the default path may be absent), then the environment, then validation.
pub fn load(
    path: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let (text, origin) = match path {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            p.to_path_buf(),
        ),
        None => match std::fs::read_to_string(DEFAULT_PATH) {
            Ok(text) => (text, PathBuf::from(DEFAULT_PATH)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (String::new(), PathBuf::from(DEFAULT_PATH))
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: DEFAULT_PATH.into(),
                    source,
                });
            }
        },
    };
    let (raw, unknown_env) = parse(&text, &origin, vars)?;
    Ok((validate(raw)?, unknown_env))
}

/// Parse TOML text and apply the environment, without validating.
pub fn parse(
    text: &str,
    origin: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(RawConfig, Vec<String>), ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: origin.to_path_buf(),
        message: e.message().to_string() + &line_of(text, e.span()),
    })?;
    let defaults =
        toml::Table::try_from(RawConfig::default()).map_err(|e| ConfigError::Invalid {
            key: "(defaults)".into(),
            reason: e.to_string(),
            origin: "built-in defaults".into(),
        })?;
    let env = env::apply(&mut table, &defaults, vars)?;
    let raw: RawConfig = serde_path_to_error::deserialize(table).map_err(|e| {
        let key = e.path().to_string();
        let origin = match env.applied.iter().find(|(k, _)| *k == key) {
            Some((_, var)) => format!("environment variable {var}"),
            None => origin.display().to_string(),
        };
        ConfigError::Invalid {
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            reason: e.inner().message().to_string(),
            origin,
        }
    })?;
    Ok((raw, env.unknown))
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].lines().count().max(1);
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

/// FNV-1a, 64 bits: a stable, dependency-free fingerprint of a config.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
