//! A device's active alerts, published retained by the collector.

use serde::{Deserialize, Serialize};

use crate::topic::DeviceId;

/// Payload of `{prefix}/v1/{device}/alert` (retained): every active alert
/// of the device, highest severity first. An empty list means all clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSet {
    pub v: u16,
    pub device: DeviceId,
    /// Unix milliseconds.
    pub ts: u64,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Rule name, e.g. `temperature_critical`.
    pub rule: String,
    pub severity: Severity,
    /// Unix milliseconds when the alert fired.
    pub since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub message: String,
}

/// Ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl AlertSet {
    /// The highest severity among the active alerts, if any.
    pub fn highest(&self) -> Option<Severity> {
        self.alerts.iter().map(|a| a.severity).max()
    }
}
