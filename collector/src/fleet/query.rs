//! Read-only views of the live fleet, answered by the engine between two
//! messages (the API asks over a channel: no lock around the fleet).

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::sync::oneshot;

use picket_protocol::{Alert, DeviceId, Severity};

use super::Engine;
use super::presence::Status;
use crate::model::Millis;

pub enum Query {
    Devices(oneshot::Sender<Vec<DeviceSummary>>),
    Device(DeviceId, oneshot::Sender<Option<DeviceDetail>>),
    Alerts(oneshot::Sender<Vec<DeviceAlert>>),
    /// Remove a device and everything stored about it; `false` if unknown.
    Forget(DeviceId, oneshot::Sender<bool>),
    /// Send a command (not a query, but answered the same way: the engine
    /// logs it in its next commit and publishes it after).
    Send {
        device: DeviceId,
        action: picket_protocol::Action,
        ttl: Option<std::time::Duration>,
        reply: oneshot::Sender<Result<super::commands::Sent, crate::commands::IssueError>>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceSummary {
    pub id: DeviceId,
    pub labels: BTreeMap<String, String>,
    pub online: bool,
    /// `online`, `offline` or `unknown`.
    pub status: &'static str,
    /// Why offline: `clean stop`, `connection lost` or `silent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub last_seen: Millis,
    /// The worst severity among the device's active alerts.
    pub severity: Option<Severity>,
    pub model: Option<String>,
    pub version: Option<String>,
    /// Latest live values of the few metrics the fleet views show.
    #[serde(skip)]
    pub key_metrics: KeyMetrics,
}

/// The metrics fleet-wide averages and `/metrics` use per device.
#[derive(Debug, Clone, Default)]
pub struct KeyMetrics {
    pub temp: Option<f64>,
    pub cpu: Option<f64>,
    pub mem: Option<f64>,
    /// The fullest disk, in percent.
    pub disk: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeqCounts {
    /// The highest sequence number received; null before the first.
    pub last: Option<u64>,
    pub received: u64,
    pub duplicates: u64,
    pub missing: u64,
    /// The missing ranges, inclusive (the oldest are forgotten past 1,024).
    pub missing_ranges: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PresenceView {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub since: Millis,
    pub session: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub summary: DeviceSummary,
    pub presence: PresenceView,
    /// Time of the latest live sample.
    pub latest_ts: Option<Millis>,
    pub latest: BTreeMap<String, f64>,
    pub alerts: Vec<Alert>,
    pub seq: SeqCounts,
    pub boot: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceAlert {
    pub device: DeviceId,
    pub labels: BTreeMap<String, String>,
    #[serde(flatten)]
    pub alert: Alert,
}

fn status(s: Status) -> (&'static str, Option<&'static str>) {
    match s {
        Status::Unknown => ("unknown", None),
        Status::Online => ("online", None),
        Status::Offline(c) => ("offline", Some(c.as_str())),
    }
}

impl Engine {
    pub(super) fn answer(&mut self, q: Query) {
        match q {
            Query::Devices(tx) => {
                let mut all: Vec<DeviceSummary> =
                    self.devices.keys().map(|id| self.summary(id)).collect();
                all.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
                let _ = tx.send(all);
            }
            Query::Device(id, tx) => {
                let _ = tx.send(self.detail(&id));
            }
            Query::Alerts(tx) => {
                let mut out = Vec::new();
                for (id, dev) in &self.devices {
                    for a in dev.published.clone().unwrap_or_default() {
                        out.push(DeviceAlert {
                            device: id.clone(),
                            labels: dev.labels.clone(),
                            alert: a,
                        });
                    }
                }
                out.sort_by(|a, b| {
                    b.alert
                        .severity
                        .cmp(&a.alert.severity)
                        .then(a.device.as_str().cmp(b.device.as_str()))
                });
                let _ = tx.send(out);
            }
            Query::Forget(id, tx) => {
                let known = self.devices.remove(&id).is_some();
                if known {
                    if let Some((key, _)) = self.timer_keys.remove(&id) {
                        self.timers.remove(&key);
                    }
                    self.pending.batch.forget.push(id.clone());
                    // Clear the retained alert set so the box's LED stops
                    // showing an alert nobody tracks any more.
                    self.pending
                        .alerts
                        .push((self.cfg.topics.alert(&id), Vec::new()));
                }
                let _ = tx.send(known);
            }
            Query::Send {
                device,
                action,
                ttl,
                reply,
            } => {
                let sent = self.send_command(&device, action, ttl, "api".into());
                let _ = reply.send(sent);
            }
        }
    }

    fn summary(&self, id: &DeviceId) -> DeviceSummary {
        let dev = &self.devices[id];
        let (st, reason) = status(dev.p.presence.status);
        let severity = dev
            .published
            .as_ref()
            .and_then(|a| a.iter().map(|a| a.severity).max());
        let value = |name: &str| {
            dev.latest
                .iter()
                .find(|p| p.metric.as_str() == name)
                .map(|p| p.value)
        };
        let disk = dev
            .latest
            .iter()
            .filter(|p| p.metric.name() == "disk.pct")
            .map(|p| p.value)
            .reduce(f64::max);
        DeviceSummary {
            id: id.clone(),
            labels: dev.labels.clone(),
            online: dev.p.presence.is_online(),
            status: st,
            reason,
            last_seen: dev.p.presence.last_seen,
            severity,
            model: dev.p.model.clone(),
            version: dev.p.version.clone(),
            key_metrics: KeyMetrics {
                temp: value("temp"),
                cpu: value("cpu"),
                mem: value("mem.pct"),
                disk,
            },
        }
    }

    fn detail(&self, id: &DeviceId) -> Option<DeviceDetail> {
        let dev = self.devices.get(id)?;
        let (st, reason) = status(dev.p.presence.status);
        let seq = &dev.p.seq;
        Some(DeviceDetail {
            summary: self.summary(id),
            presence: PresenceView {
                status: st,
                reason,
                since: dev.p.presence.since,
                session: dev.p.presence.session.clone(),
            },
            latest_ts: dev.latest_ts,
            latest: dev
                .latest
                .iter()
                .map(|p| (p.metric.to_string(), p.value))
                .collect(),
            alerts: dev.published.clone().unwrap_or_default(),
            seq: SeqCounts {
                last: (seq.received > 0).then_some(seq.last),
                received: seq.received,
                duplicates: seq.duplicates,
                missing: seq.missing(),
                missing_ranges: seq.missing_ranges().to_vec(),
            },
            boot: dev.p.boot.clone(),
        })
    }
}
