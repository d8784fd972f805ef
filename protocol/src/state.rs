//! Presence: the retained birth message and the Last Will.

use serde::{Deserialize, Serialize};

use crate::topic::DeviceId;

/// Payload of `{prefix}/v1/{device}/state` (retained).
///
/// The agent publishes `online` on every connection and registers an
/// `offline` Last Will with the same `session`, so a collector can ignore a
/// will that belongs to an older connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub v: u16,
    pub device: DeviceId,
    pub status: Presence,
    /// Random id of this MQTT connection (16 hex digits).
    pub session: String,
    /// Agent version (birth and clean stop only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Hardware model, e.g. `Raspberry Pi 4 Model B Rev 1.4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
    /// Unix milliseconds when the message was built. A will is built at
    /// connect time, so its `ts` is the connection time, not the loss time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
    /// Why the device is offline (offline only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<OfflineReason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Online,
    Offline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineReason {
    /// The agent stopped on purpose and said so before disconnecting.
    CleanStop,
    /// The broker published the Last Will: the connection was lost.
    ConnectionLost,
}
