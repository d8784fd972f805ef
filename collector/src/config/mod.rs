//! Configuration in two stages: [`RawConfig`] is what the file and the
//! environment say; [`Config`] is the validated form the collector trusts.

pub mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use picket_config::ConfigError;
pub use raw::RawConfig;
pub use validate::validate;

use crate::commands::CommandsConfig;
use crate::fleet::EngineConfig;
use crate::link::LinkConfig;
use crate::notify::NotifyConfig;
use picket_config::embedded_broker::EmbeddedConfig;

/// The commented default configuration printed by `print-default-config`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Where the collector looks for its configuration without `--config`.
pub const DEFAULT_PATH: &str = "/etc/picket/collector.toml";

#[derive(Debug, Clone)]
pub struct Config {
    /// Set when the collector runs its own broker.
    pub embedded: Option<EmbeddedConfig>,
    pub link: LinkConfig,
    pub http_listen: SocketAddr,
    pub api: ApiAuth,
    pub storage_path: PathBuf,
    pub retention: Duration,
    pub durability: crate::history::Durability,
    pub engine: EngineConfig,
    pub notify: NotifyConfig,
    pub commands: CommandsConfig,
}

/// API bearer tokens. With none, the API is read-only and answers
/// loopback clients only.
#[derive(Clone, Default)]
pub struct ApiAuth {
    pub admin: Option<String>,
    pub read: Option<String>,
}

impl std::fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAuth")
            .field("admin", &self.admin.as_ref().map(|_| "(set)"))
            .field("read", &self.read.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl ApiAuth {
    pub fn open(&self) -> bool {
        self.admin.is_none() && self.read.is_none()
    }
}

/// Load the configuration: the file (when `path` is given it must exist;
/// the default path may be absent), then the environment, then validation.
/// Also returns the `PICKET_*` variables that name no key.
pub fn load(
    path: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let loaded = picket_config::load::<RawConfig>(path, DEFAULT_PATH, vars)?;
    Ok((validate(&loaded.raw)?, loaded.unknown))
}

/// Parse TOML text and apply the environment, without validating.
pub fn parse(
    text: &str,
    origin: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(RawConfig, Vec<String>), ConfigError> {
    picket_config::parse(text, origin, vars)
}

#[cfg(test)]
mod tests;
