//! The command envelope sent by a collector to one device.

use serde::{Deserialize, Serialize};

use crate::topic::DeviceId;

/// Payload of `{prefix}/v1/{device}/cmd/{id}` (never retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub v: u16,
    /// Unique per command; also the last topic level.
    pub id: String,
    /// The device this command is for; an agent refuses any other.
    pub device: DeviceId,
    /// `name` and typed `args`.
    #[serde(flatten)]
    pub action: Action,
    /// Unix milliseconds when the command was issued.
    pub issued: u64,
    /// Unix milliseconds after which the command must not run.
    pub expires: u64,
    /// ed25519 signature over the canonical encoding of every other field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<Vec<u8>>,
}

/// A command's name and its typed arguments, serialised as `name` and `args`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", content = "args", rename_all = "snake_case")]
pub enum Action {
    /// Answer with `succeeded` and nothing else: proves the path works.
    Ping,
    /// Report version, model, uptime and configuration hash.
    SysInfo,
    /// Reboot the device.
    Reboot,
    /// Restart an allowed systemd unit.
    ServiceRestart { unit: String },
    /// The last `lines` lines of a unit's journal.
    ServiceLogs { unit: String, lines: u32 },
}
