//! Configuration plumbing shared by the agent and the collector, so both
//! read their files the same way and fail the same way.
//!
//! # Layout
//! - [`load`] ([`load_text`] then [`parse`]): read the TOML file, apply the
//!   `PICKET_<SECTION>_<KEY>` environment overrides ([`env`]) and
//!   deserialise into a binary's raw config, naming the key and where its
//!   value came from when it is wrong.
//! - [`units`]: durations (`10s`) and sizes (`64MiB`) as people write them.
//! - [`glob`]: `*`/`?` patterns over names (device ids, container names).
//! - [`broker`]: the `[broker]` section every MQTT client of picket has
//!   (URL, credentials, TLS) and its validation; [`tls`] builds the rustls
//!   client configuration.
//! - [`shutdown`]: the stop signal (SIGTERM, Ctrl-C) both binaries run
//!   until.
//!
//! Each binary keeps the two stages of its own config: a raw struct with
//! defaults (what the file says) and a validated struct (what the code
//! trusts).

pub mod broker;
#[cfg(feature = "embedded-broker")]
pub mod embedded_broker;
mod env;
pub mod glob;
pub mod shutdown;
pub mod tls;
pub mod units;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use broker::{BrokerConfig, RawBroker};
pub use glob::{Glob, GlobError};
pub use units::{ByteSize, HumanDuration, UnitError, parse_duration, parse_size};

/// A configuration a binary cannot run with. Binaries exit with code 2.
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

/// An invalid value found while validating (after deserialisation): the
/// reason is any message or error, shown as its text.
pub fn invalid(key: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.to_string(),
        origin: "configuration".into(),
    }
}

/// Read the configuration file: when `path` is given it must exist; the
/// binary's `default_path` may be absent (an empty file: all defaults).
/// Returns the text and the path it is reported under.
pub fn load_text(
    path: Option<&Path>,
    default_path: &str,
) -> Result<(String, PathBuf), ConfigError> {
    match path {
        Some(p) => Ok((
            std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            p.to_path_buf(),
        )),
        None => match std::fs::read_to_string(default_path) {
            Ok(text) => Ok((text, PathBuf::from(default_path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok((String::new(), PathBuf::from(default_path)))
            }
            Err(source) => Err(ConfigError::Read {
                path: default_path.into(),
                source,
            }),
        },
    }
}

/// A binary's raw configuration as read, before validation.
#[derive(Debug)]
pub struct Loaded<R> {
    pub raw: R,
    /// The path the file is reported under (see [`load_text`]).
    pub origin: PathBuf,
    /// The `PICKET_*` variables that name no key.
    pub unknown: Vec<String>,
}

/// Read the configuration file ([`load_text`]) and apply the environment
/// ([`parse`]), without validating.
pub fn load<R>(
    path: Option<&Path>,
    default_path: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded<R>, ConfigError>
where
    R: Default + Serialize + DeserializeOwned,
{
    let (text, origin) = load_text(path, default_path)?;
    let (raw, unknown) = parse(&text, &origin, vars)?;
    Ok(Loaded {
        raw,
        origin,
        unknown,
    })
}

/// Parse TOML text and apply the environment, without validating. `R`'s
/// `Default` lists the known keys and their types for the environment
/// overrides. Returns the raw config and the `PICKET_*` variables that
/// name no key (for a warning: a typo should not go unnoticed).
pub fn parse<R>(
    text: &str,
    origin: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(R, Vec<String>), ConfigError>
where
    R: Default + Serialize + DeserializeOwned,
{
    let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: origin.to_path_buf(),
        message: e.message().to_string() + &line_of(text, e.span()),
    })?;
    let defaults = toml::Table::try_from(R::default()).map_err(|e| ConfigError::Invalid {
        key: "(defaults)".into(),
        reason: e.to_string(),
        origin: "built-in defaults".into(),
    })?;
    let env = env::apply(&mut table, &defaults, vars)?;
    let raw: R = serde_path_to_error::deserialize(table).map_err(|e| {
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

/// Read a file named by config key `key`; an empty file is an error (a
/// secret or certificate file is never meant to be empty).
pub fn read_file(key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    let data = std::fs::read(Path::new(path))
        .map_err(|e| invalid(key, format!("cannot read {path}: {e}")))?;
    if data.is_empty() {
        return Err(invalid(key, format!("{path} is empty")));
    }
    Ok(data)
}

/// Read the first line of a secret file (password, token).
pub fn read_secret(key: &str, path: &str) -> Result<String, ConfigError> {
    let text = String::from_utf8(read_file(key, path)?)
        .map_err(|_| invalid(key, format!("{path} is not UTF-8 text")))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// FNV-1a, 64 bits: a stable, dependency-free fingerprint of a config.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
