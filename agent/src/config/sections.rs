//! The validated sections the tasks are built from (`[led]`, `[gpio]`,
//! `[commands]`, `[update]`, `[docker]`): plain data with their parsers,
//! kept in the configuration so that it imports no task, and every task
//! reads its section from below.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use picket_config::Glob;
use picket_protocol::signing::PublicKey;

use super::docker_scope::Scope;

/// The validated `[led]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedConfig {
    None,
    Sysfs(PathBuf),
    Gpio { line: LineRef, active_low: bool },
}

/// Why a line or a bias is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SectionError {
    #[error("empty line: write a line name (GPIO17) or chip:offset (gpiochip0:17)")]
    EmptyLine,
    #[error("{0:?}: the chip is missing before ':'")]
    NoChip(String),
    #[error("{0:?} is not a bias: write pull-up, pull-down, none or as-is")]
    Bias(String),
}

/// A line as configured: by name (`GPIO17`: names follow the board, while
/// chip numbers move between kernels on a Pi 5) or by chip and offset
/// (`gpiochip0:17`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LineRef {
    Name(String),
    Offset { chip: String, offset: u32 },
}

impl LineRef {
    /// `chip:offset` when the part after the last `:` is a number, else a
    /// line name.
    pub fn parse(s: &str) -> Result<LineRef, SectionError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SectionError::EmptyLine);
        }
        if let Some((chip, offset)) = s.rsplit_once(':')
            && let Ok(offset) = offset.parse::<u32>()
        {
            if chip.is_empty() {
                return Err(SectionError::NoChip(s.to_string()));
            }
            return Ok(LineRef::Offset {
                chip: chip.to_string(),
                offset,
            });
        }
        Ok(LineRef::Name(s.to_string()))
    }
}

impl fmt::Display for LineRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineRef::Name(n) => f.write_str(n),
            LineRef::Offset { chip, offset } => write!(f, "{chip}:{offset}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    /// Leave the bias as the device tree or firmware set it.
    AsIs,
    PullUp,
    PullDown,
    /// No pull: the line floats unless driven.
    Disabled,
}

impl Bias {
    pub fn parse(s: &str) -> Result<Bias, SectionError> {
        match s {
            "as-is" => Ok(Bias::AsIs),
            "pull-up" => Ok(Bias::PullUp),
            "pull-down" => Ok(Bias::PullDown),
            "none" => Ok(Bias::Disabled),
            other => Err(SectionError::Bias(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// The name reported in samples and events.
    pub name: String,
    pub line: LineRef,
    pub bias: Bias,
    pub active_low: bool,
    /// Zero: no debouncing.
    pub debounce: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    /// The name the `gpio.write` command uses.
    pub name: String,
    pub line: LineRef,
    pub active_low: bool,
    /// The logical level set when the line is requested.
    pub initial: bool,
}

/// The validated `[gpio]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpioConfig {
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<OutputSpec>,
}

/// The `[commands]` section, validated.
#[derive(Debug, Clone)]
pub struct CommandsConfig {
    pub allowed: Vec<String>,
    pub public_key: Option<PublicKey>,
    pub state_dir: PathBuf,
    pub max_clock_skew: Duration,
    /// Treat the clock as synchronised (an RTC keeps it right).
    pub trust_clock: bool,
    pub concurrency: usize,
    pub timeout: Duration,
    pub output_max: usize,
    pub journal_entries: usize,
    pub services: Vec<String>,
    pub systemctl: PathBuf,
    pub journalctl: PathBuf,
    pub reboot: Vec<String>,
    pub reboot_window: Duration,
    pub file_dirs: Vec<PathBuf>,
    pub file_max_bytes: u64,
    pub file_ca_pem: Option<Vec<u8>>,
    pub rollback_after: Duration,
    /// The file the agent was started from (`config.update` replaces it).
    pub config_path: Option<PathBuf>,
}

/// The `[update]` section, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateConfig {
    pub dir: PathBuf,
    /// Backups kept besides the running version.
    pub keep: usize,
    pub trial_window: Duration,
    pub max_bytes: u64,
}

/// Whether this build can talk to a Docker engine.
pub const DOCKER_SUPPORTED: bool = cfg!(feature = "docker");

/// The validated `[docker]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerConfig {
    pub enabled: bool,
    /// The engine's unix socket.
    pub socket: PathBuf,
    pub scope: Scope,
    /// CPU and memory of each running container this often; `None`: off.
    pub stats_interval: Option<Duration>,
    /// The longest wait between two attempts to reach the engine.
    pub retry_max: Duration,
    /// The commands `docker.exec` may run, by name.
    pub exec: Vec<ExecSpec>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            enabled: false,
            socket: PathBuf::from("/var/run/docker.sock"),
            scope: Scope::default(),
            stats_interval: None,
            retry_max: Duration::from_secs(30),
            exec: Vec::new(),
        }
    }
}

/// A `[[docker.exec]]` entry: a fixed argument vector run inside a
/// container, never through a shell.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecSpec {
    pub name: String,
    pub argv: Vec<String>,
    /// Containers (in scope) it may run in; empty: any in scope.
    pub containers: Vec<Glob>,
    /// The user inside the container; `None`: the container's.
    pub user: Option<String>,
}

impl ExecSpec {
    pub fn allows(&self, container: &str) -> bool {
        self.containers.is_empty() || self.containers.iter().any(|g| g.matches(container))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_references() {
        let table: &[(&str, Result<LineRef, ()>)] = &[
            ("GPIO17", Ok(LineRef::Name("GPIO17".into()))),
            (
                "gpiochip0:17",
                Ok(LineRef::Offset {
                    chip: "gpiochip0".into(),
                    offset: 17,
                }),
            ),
            (
                "/dev/gpiochip4:3",
                Ok(LineRef::Offset {
                    chip: "/dev/gpiochip4".into(),
                    offset: 3,
                }),
            ),
            // Not a number after ':': a name (names may hold ':').
            ("PIN:A", Ok(LineRef::Name("PIN:A".into()))),
            (":3", Err(())),
            ("", Err(())),
            ("  ", Err(())),
        ];
        for (text, want) in table {
            assert_eq!(&LineRef::parse(text).map_err(|_| ()), want, "{text:?}");
        }
        assert_eq!(
            LineRef::parse("gpiochip0:17").unwrap().to_string(),
            "gpiochip0:17"
        );
        assert_eq!(Bias::parse("pull-up"), Ok(Bias::PullUp));
        assert_eq!(Bias::parse("none"), Ok(Bias::Disabled));
        assert!(
            Bias::parse("up")
                .unwrap_err()
                .to_string()
                .contains("pull-up")
        );
    }
}
