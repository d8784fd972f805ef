//! Configuration in two stages: [`raw::RawConfig`] is what the file and the
//! environment say; [`Config`] is the validated form the rest of the agent
//! trusts (paths checked, secrets read, units resolved).
//!
//! The validated sections' types live here (`sections.rs`; the Docker
//! scope in `docker_scope.rs`), not in the tasks that use them: the
//! configuration is below every task and imports none.

mod docker_scope;
pub mod raw;
mod sections;
mod validate;

use std::path::Path;
use std::time::Duration;

pub use picket_config::{BrokerConfig, ConfigError};
use picket_protocol::{DeviceId, Format};

pub use docker_scope::{Label, Scope};
pub use raw::RawConfig;
pub use sections::{
    Bias, CommandsConfig, DOCKER_SUPPORTED, DockerConfig, ExecSpec, GpioConfig, InputSpec,
    LedConfig, LineRef, OutputSpec, UpdateConfig,
};
pub use validate::{first_boot, led, update, validate};

use crate::queue::QueueConfig;
use crate::sensors::SensorConfig;

/// The commented default configuration printed by `print-default-config`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Where the agent looks for its configuration without `--config`.
pub const DEFAULT_PATH: &str = "/etc/picket/agent.toml";

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
    pub led: LedConfig,
    pub gpio: GpioConfig,
    /// The local status socket (`picket-agent status`); `None`: off.
    pub status_socket: Option<std::path::PathBuf>,
    pub commands: CommandsConfig,
    /// `agent.update`: where binaries go, backups, the trial window.
    pub update: UpdateConfig,
    pub docker: DockerConfig,
    /// The first-boot file installed over the configuration file on start
    /// (`crate::first_boot`); `None`: off.
    pub first_boot: Option<std::path::PathBuf>,
    /// 64-bit FNV-1a of the effective configuration, 16 hex digits.
    pub hash: String,
}

#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub batch_records: usize,
    pub batch_bytes: usize,
    pub inflight: usize,
    pub backoff_max: Duration,
    /// How long acknowledged records stay in the queue, to be sent again if
    /// the broker dies before saving them (uplink/settle.rs).
    pub hold_acked: Duration,
}

/// Load the configuration: the file (when `path` is given it must exist;
/// the default path may be absent), then the environment, then validation.
pub fn load(
    path: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let loaded = picket_config::load::<RawConfig>(path, DEFAULT_PATH, vars)?;
    let mut config = validate(loaded.raw)?;
    // config.update rewrites the file the agent was started with.
    config.commands.config_path = Some(loaded.origin);
    Ok((config, loaded.unknown))
}

/// The LED settings to show "configuration invalid" with, when the whole
/// configuration does not load: the file's `[led]` section if the file
/// parses, else the environment's, else the default.
pub fn led_for_invalid(
    path: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> LedConfig {
    let raw = raw_lenient(path, vars);
    led(&raw).unwrap_or_else(|_| led(&RawConfig::default()).unwrap_or(LedConfig::None))
}

/// The raw settings as far as they can be had when the whole
/// configuration may not load: the file (with the environment) if it
/// parses, else the environment alone, else the defaults. For the parts
/// that must work even then: the LED's "configuration invalid" and the
/// update launcher.
pub fn raw_lenient(
    path: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> RawConfig {
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    match picket_config::load(path, DEFAULT_PATH, vars.clone()) {
        Ok(loaded) => loaded.raw,
        Err(_) => parse("", Path::new("environment"), vars)
            .map(|(raw, _)| raw)
            .unwrap_or_default(),
    }
}

/// One string setting, `section.key`, read as leniently as possible: its
/// `PICKET_<SECTION>_<KEY>` variable, else the file's value as long as the
/// file is TOML, whatever else in it is wrong. For the update launcher,
/// which must find `update.dir` even in a configuration that does not
/// load (one written for a newer version, say).
pub fn lenient_string(
    path: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
    section: &str,
    key: &str,
) -> Option<String> {
    let var = format!("PICKET_{section}_{key}").to_ascii_uppercase();
    if let Some((_, v)) = vars.into_iter().find(|(k, _)| *k == var) {
        return Some(v);
    }
    let (text, _) = picket_config::load_text(path, DEFAULT_PATH).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    table.get(section)?.get(key)?.as_str().map(str::to_string)
}

/// Where to look for a first-boot configuration, before the configuration
/// is loaded: the file's `first_boot.path` if the file parses, else the
/// environment's, else the default. A broken configuration file must not
/// stop a technician's replacement from being installed.
pub fn first_boot_path(
    path: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Option<std::path::PathBuf>, ConfigError> {
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    let raw = match picket_config::load(path, DEFAULT_PATH, vars.clone()) {
        Ok(loaded) => loaded.raw,
        Err(_) => parse("", Path::new("environment"), vars)?.0,
    };
    first_boot(&raw)
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
