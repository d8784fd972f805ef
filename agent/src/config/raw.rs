//! The configuration as written: TOML plus `PICKET_*` environment overrides,
//! before validation. Every key has a default so an empty file is valid.

use serde::{Deserialize, Serialize};

pub use picket_config::RawBroker;
use picket_config::{ByteSize, HumanDuration};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub device: RawDevice,
    pub broker: RawBroker,
    pub sampling: RawSampling,
    pub payload: RawPayload,
    pub queue: RawQueue,
    pub uplink: RawUplink,
    pub host: RawHost,
    pub services: RawServices,
    pub net: RawNet,
    pub led: RawLed,
    pub gpio: RawGpio,
    pub status: RawStatus,
    pub commands: RawCommands,
    pub update: RawUpdate,
    pub docker: RawDocker,
    pub first_boot: RawFirstBoot,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDevice {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSampling {
    pub interval: HumanDuration,
}

impl Default for RawSampling {
    fn default() -> Self {
        RawSampling {
            interval: HumanDuration(Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPayload {
    pub format: String,
}

impl Default for RawPayload {
    fn default() -> Self {
        RawPayload {
            format: "cbor".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawQueue {
    pub dir: String,
    pub max_bytes: ByteSize,
    pub segment_bytes: ByteSize,
    pub sync_interval: HumanDuration,
    pub hot_dir: String,
}

impl Default for RawQueue {
    fn default() -> Self {
        RawQueue {
            dir: "/var/lib/picket/queue".into(),
            max_bytes: ByteSize(64 << 20),
            segment_bytes: ByteSize(1 << 20),
            sync_interval: HumanDuration(Duration::from_secs(10)),
            hot_dir: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUplink {
    pub batch_records: i64,
    pub batch_bytes: ByteSize,
    pub inflight: i64,
    pub backoff_max: HumanDuration,
    pub hold_acked: HumanDuration,
}

impl Default for RawUplink {
    fn default() -> Self {
        RawUplink {
            batch_records: 500,
            batch_bytes: ByteSize(256 << 10),
            inflight: 8,
            backoff_max: HumanDuration(Duration::from_secs(60)),
            hold_acked: HumanDuration(Duration::from_secs(30)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHost {
    pub root: String,
}

impl Default for RawHost {
    fn default() -> Self {
        RawHost { root: "/".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServices {
    pub watch: Vec<String>,
    pub systemctl: String,
}

impl Default for RawServices {
    fn default() -> Self {
        RawServices {
            watch: Vec::new(),
            systemctl: "systemctl".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNet {
    pub exclude: Vec<String>,
}

impl Default for RawNet {
    fn default() -> Self {
        RawNet {
            exclude: vec!["lo".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLed {
    pub backend: String,
    pub sysfs_path: String,
    pub line: String,
    pub active_low: bool,
}

impl Default for RawLed {
    fn default() -> Self {
        RawLed {
            backend: "sysfs".into(),
            sysfs_path: "/sys/class/leds/ACT".into(),
            line: String::new(),
            active_low: false,
        }
    }
}

/// GPIO lines are listed as `[[gpio.input]]` and `[[gpio.output]]` tables
/// in the file (they have no environment variables).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGpio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub input: Vec<RawGpioInput>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<RawGpioOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGpioInput {
    pub name: String,
    pub line: String,
    #[serde(default = "as_is")]
    pub bias: String,
    #[serde(default)]
    pub active_low: bool,
    #[serde(default = "no_debounce")]
    pub debounce: HumanDuration,
}

fn as_is() -> String {
    "as-is".into()
}

fn no_debounce() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGpioOutput {
    pub name: String,
    pub line: String,
    #[serde(default)]
    pub active_low: bool,
    #[serde(default)]
    pub initial: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStatus {
    pub socket: String,
}

impl Default for RawStatus {
    fn default() -> Self {
        RawStatus {
            socket: "/run/picket/agent.sock".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCommands {
    pub allowed: Vec<String>,
    pub public_key_file: String,
    pub state_dir: String,
    pub max_clock_skew: HumanDuration,
    pub trust_clock: bool,
    pub concurrency: i64,
    pub timeout: HumanDuration,
    pub output_max_bytes: ByteSize,
    pub journal_entries: i64,
    pub services: Vec<String>,
    pub systemctl: String,
    pub journalctl: String,
    pub reboot: Vec<String>,
    pub reboot_window: HumanDuration,
    pub file_dirs: Vec<String>,
    pub file_max_bytes: ByteSize,
    pub file_ca_file: String,
    pub config_rollback_after: HumanDuration,
}

impl Default for RawCommands {
    fn default() -> Self {
        RawCommands {
            allowed: vec!["ping".into(), "system.info".into()],
            public_key_file: String::new(),
            state_dir: "/var/lib/picket/commands".into(),
            max_clock_skew: HumanDuration(Duration::from_secs(60)),
            trust_clock: false,
            concurrency: 2,
            timeout: HumanDuration(Duration::from_secs(600)),
            output_max_bytes: ByteSize(64 << 10),
            journal_entries: 10_000,
            services: Vec::new(),
            systemctl: "systemctl".into(),
            journalctl: "journalctl".into(),
            reboot: vec!["systemctl".into(), "reboot".into()],
            reboot_window: HumanDuration(Duration::from_secs(3600)),
            file_dirs: Vec::new(),
            file_max_bytes: ByteSize(1 << 30),
            file_ca_file: String::new(),
            config_rollback_after: HumanDuration(Duration::from_secs(120)),
        }
    }
}

// --- [update]: agent.update ---------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpdate {
    pub dir: String,
    pub keep: i64,
    pub trial_window: HumanDuration,
    pub max_bytes: ByteSize,
}

impl Default for RawUpdate {
    fn default() -> Self {
        RawUpdate {
            dir: "/var/lib/picket/update".into(),
            keep: 3,
            trial_window: HumanDuration(Duration::from_secs(120)),
            max_bytes: ByteSize(64 << 20),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDocker {
    pub enabled: bool,
    pub socket: String,
    pub label: String,
    pub names: Vec<String>,
    pub stats_interval: HumanDuration,
    pub retry_max: HumanDuration,
    /// `[[docker.exec]]` tables (file only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<RawDockerExec>,
}

impl Default for RawDocker {
    fn default() -> Self {
        RawDocker {
            enabled: false,
            socket: "/var/run/docker.sock".into(),
            label: "picket.manage=true".into(),
            names: Vec::new(),
            stats_interval: HumanDuration(Duration::ZERO),
            retry_max: HumanDuration(Duration::from_secs(30)),
            exec: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDockerExec {
    pub name: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub containers: Vec<String>,
    #[serde(default)]
    pub user: String,
}

/// A configuration a technician left on the SD card's FAT boot partition,
/// installed over the configuration file on the agent's first start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFirstBoot {
    pub path: String,
}

impl Default for RawFirstBoot {
    fn default() -> Self {
        RawFirstBoot {
            path: "/boot/firmware/picket.toml".into(),
        }
    }
}
