//! Fleet-wide views: `/api/stats` (the fleet at a glance), `/api/alerts`
//! and the ingest quarantine, `/api/ingest/refused`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use picket_protocol::{DeviceId, Severity};

use super::params;
use super::{ApiError, Call, Role, ask, blocking};
use crate::fleet::query::{DeviceSummary, Query};

#[derive(Debug, Serialize, PartialEq)]
pub struct Stats {
    pub total_devices: usize,
    pub online_devices: usize,
    pub offline_devices: usize,
    /// Devices whose worst active alert is a warning / critical.
    pub warning_devices: usize,
    pub critical_devices: usize,
    pub total_alerts: usize,
    pub critical_alerts: usize,
    pub warning_alerts: usize,
    pub info_alerts: usize,
    /// Averages over online devices that report the metric.
    pub averages: Averages,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Averages {
    pub temperature: Option<f64>,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub disk: Option<f64>,
}

pub fn stats_of(devices: &[DeviceSummary], alerts: &[Severity]) -> Stats {
    let online: Vec<&DeviceSummary> = devices.iter().filter(|d| d.online).collect();
    let avg = |f: fn(&DeviceSummary) -> Option<f64>| {
        let v: Vec<f64> = online.iter().filter_map(|d| f(d)).collect();
        (!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64 * 10.0).round() / 10.0)
    };
    let count = |s: Severity| alerts.iter().filter(|a| **a == s).count();
    Stats {
        total_devices: devices.len(),
        online_devices: online.len(),
        offline_devices: devices.len() - online.len(),
        warning_devices: devices
            .iter()
            .filter(|d| d.severity == Some(Severity::Warning))
            .count(),
        critical_devices: devices
            .iter()
            .filter(|d| d.severity == Some(Severity::Critical))
            .count(),
        total_alerts: alerts.len(),
        critical_alerts: count(Severity::Critical),
        warning_alerts: count(Severity::Warning),
        info_alerts: count(Severity::Info),
        averages: Averages {
            temperature: avg(|d| d.key_metrics.temp),
            cpu: avg(|d| d.key_metrics.cpu),
            memory: avg(|d| d.key_metrics.mem),
            disk: avg(|d| d.key_metrics.disk),
        },
    }
}

pub async fn stats(call: Call) -> Result<Response, ApiError> {
    call.read(&[])?;
    let devices = ask(&call.state, Query::Devices).await?;
    let alerts = ask(&call.state, Query::Alerts).await?;
    let severities: Vec<Severity> = alerts.iter().map(|a| a.alert.severity).collect();
    Ok(Json(stats_of(&devices, &severities)).into_response())
}

/// `?state=active|resolved|all&device=&limit=`: active alerts come from
/// the live fleet; resolved ones from the alert log.
pub async fn alerts(call: Call) -> Result<Response, ApiError> {
    call.read(&["state", "device", "limit"])?;
    let which = call.params.get("state").map_or("active", String::as_str);
    if !matches!(which, "active" | "resolved" | "all" | "log") {
        return Err(ApiError::bad_request(format!(
            "state={which:?}: expected active, resolved, all or log"
        )));
    }
    let device = match call.params.get("device") {
        Some(d) => Some(
            DeviceId::new(d.as_str())
                .map_err(|e| ApiError::bad_request(format!("device {d:?}: {e}")))?,
        ),
        None => None,
    };
    let limit = params::limit(&call.params, 500, 10_000)?;
    if which == "log" {
        // Every change, newest first, with the remedy a firing sent.
        let reader = call.state.history.clone();
        let log = blocking(move || reader.alert_log(device.as_ref(), 0, limit)).await?;
        return Ok(Json(json!({ "log": log })).into_response());
    }
    let mut active = Vec::new();
    if which != "resolved" {
        active = ask(&call.state, Query::Alerts).await?;
        if let Some(d) = &device {
            active.retain(|a| &a.device == d);
        }
        active.truncate(limit);
    }
    let mut resolved = Vec::new();
    if which != "active" {
        let reader = call.state.history.clone();
        let dev = device.clone();
        let log = blocking(move || reader.alert_log(dev.as_ref(), 0, limit * 4)).await?;
        resolved = log
            .into_iter()
            .filter(|a| a.change == "resolved")
            .take(limit)
            .collect();
    }
    Ok(Json(json!({ "active": active, "resolved": resolved })).into_response())
}

/// Admin: `GET /api/ingest/refused?limit=`, the quarantine, newest first:
/// each refused message's topic, reason, time, size and the first 4 KiB
/// of its payload (as text when it is UTF-8, always as hex).
pub async fn refused(call: Call) -> Result<Response, ApiError> {
    call.allow(Role::Admin, &["limit"])?;
    let limit = params::limit(&call.params, 100, crate::history::REFUSED_KEEP_ROWS)?;
    let reader = call.state.history.clone();
    let rows = blocking(move || reader.refused(limit)).await?;
    let refused: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|r| {
            let text = std::str::from_utf8(&r.payload).ok().map(str::to_owned);
            let hex: String = r.payload.iter().map(|b| format!("{b:02x}")).collect();
            json!({
                "ts": r.ts,
                "topic": r.topic,
                "device": r.device,
                "reason": r.reason,
                "detail": r.detail,
                "size": r.size,
                "payload_text": text,
                "payload_hex": hex,
            })
        })
        .collect();
    Ok(Json(json!({ "refused": refused })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::query::KeyMetrics;
    use std::collections::BTreeMap;

    fn dev(id: &str, online: bool, sev: Option<Severity>, temp: Option<f64>) -> DeviceSummary {
        DeviceSummary {
            id: DeviceId::new(id).unwrap(),
            labels: BTreeMap::new(),
            online,
            status: if online { "online" } else { "offline" },
            reason: None,
            last_seen: 0,
            severity: sev,
            model: None,
            version: None,
            key_metrics: KeyMetrics {
                temp,
                cpu: Some(10.0),
                mem: None,
                disk: Some(50.0),
            },
        }
    }

    #[test]
    fn stats_like_the_fleet_view() {
        let devices = [
            dev("a", true, None, Some(50.0)),
            dev("b", true, Some(Severity::Critical), Some(81.0)),
            dev("c", false, Some(Severity::Warning), Some(99.0)),
        ];
        let alerts = [Severity::Critical, Severity::Warning, Severity::Warning];
        let s = stats_of(&devices, &alerts);
        assert_eq!(
            (s.total_devices, s.online_devices, s.offline_devices),
            (3, 2, 1)
        );
        assert_eq!((s.warning_devices, s.critical_devices), (1, 1));
        assert_eq!(
            (
                s.total_alerts,
                s.critical_alerts,
                s.warning_alerts,
                s.info_alerts
            ),
            (3, 1, 2, 0)
        );
        // the offline device's stale 99 °C is not averaged
        assert_eq!(s.averages.temperature, Some(65.5));
        assert_eq!(s.averages.memory, None);
        assert_eq!(s.averages.disk, Some(50.0));
    }
}
