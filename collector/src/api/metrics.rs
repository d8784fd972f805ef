//! `/metrics` in the Prometheus text exposition format (0.0.4): fleet
//! gauges, a few key metrics per device, and the collector's own counters.

use std::fmt::Write;
use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use picket_protocol::Severity;

use super::{ApiError, AppState, Peer, Role, ask, authorize};
use crate::counters::{IngestCounters, Refused};
use crate::fleet::query::{DeviceSummary, Query};
use crate::notify::NotifyCounters;

pub async fn metrics(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.auth, &headers, peer.0, Role::Read)?;
    let devices = ask(&state, Query::Devices).await?;
    let alerts = ask(&state, Query::Alerts).await?;
    let severities: Vec<Severity> = alerts.iter().map(|a| a.alert.severity).collect();
    let mut out = Exposition::default();
    fleet(&mut out, &devices, &severities);
    per_device(&mut out, &devices);
    ingest(&mut out, &state.counters);
    let since = state.link.borrow().connected_since;
    out.single(
        "picket_broker_connected",
        "gauge",
        "1 while the collector's MQTT session is up.",
        if since.is_some() { 1.0 } else { 0.0 },
    );
    // Absent while disconnected: a time of 0 would read as 1970.
    if let Some(at) = since.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        out.single(
            "picket_broker_connected_since_timestamp_seconds",
            "gauge",
            "Unix time the current connection to the broker was acknowledged.",
            at.as_secs_f64(),
        );
    }
    notifications(&mut out, &state.notify);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out.text,
    )
        .into_response())
}

/// Builds the text: one `# HELP`/`# TYPE` per family, then its samples.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    /// A family of one sample without labels.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

fn fleet(out: &mut Exposition, devices: &[DeviceSummary], alerts: &[Severity]) {
    let online = devices.iter().filter(|d| d.online).count();
    out.family(
        "picket_devices",
        "gauge",
        "Devices known to the collector, by presence.",
    );
    out.sample("picket_devices", &[("status", "online")], online as f64);
    out.sample(
        "picket_devices",
        &[("status", "offline")],
        (devices.len() - online) as f64,
    );
    out.family(
        "picket_alerts",
        "gauge",
        "Active alerts in the fleet, by severity.",
    );
    for s in [Severity::Info, Severity::Warning, Severity::Critical] {
        let n = alerts.iter().filter(|a| **a == s).count();
        out.sample(
            "picket_alerts",
            &[("severity", severity_label(s))],
            n as f64,
        );
    }
}

fn per_device(out: &mut Exposition, devices: &[DeviceSummary]) {
    out.family(
        "picket_device_online",
        "gauge",
        "1 while the device is online.",
    );
    for d in devices {
        out.sample(
            "picket_device_online",
            &[("device", d.id.as_str())],
            if d.online { 1.0 } else { 0.0 },
        );
    }
    out.family(
        "picket_device_last_seen_seconds",
        "gauge",
        "Unix time when anything last arrived from the device.",
    );
    for d in devices {
        out.sample(
            "picket_device_last_seen_seconds",
            &[("device", d.id.as_str())],
            d.last_seen as f64 / 1000.0,
        );
    }
    out.family(
        "picket_device_alert_severity",
        "gauge",
        "Worst active alert: 0 none, 1 info, 2 warning, 3 critical.",
    );
    for d in devices {
        let v = match d.severity {
            None => 0.0,
            Some(Severity::Info) => 1.0,
            Some(Severity::Warning) => 2.0,
            Some(Severity::Critical) => 3.0,
        };
        out.sample(
            "picket_device_alert_severity",
            &[("device", d.id.as_str())],
            v,
        );
    }
    type Get = fn(&DeviceSummary) -> Option<f64>;
    let keys: [(&str, &str, Get); 4] = [
        (
            "picket_device_temperature_celsius",
            "Hottest thermal zone.",
            |d| d.key_metrics.temp,
        ),
        ("picket_device_cpu_percent", "CPU busy.", |d| {
            d.key_metrics.cpu
        }),
        ("picket_device_memory_percent", "Memory in use.", |d| {
            d.key_metrics.mem
        }),
        (
            "picket_device_disk_percent",
            "Fullest mounted filesystem.",
            |d| d.key_metrics.disk,
        ),
    ];
    for (name, help, get) in keys {
        out.family(name, "gauge", help);
        for d in devices {
            if let Some(v) = get(d) {
                out.sample(name, &[("device", d.id.as_str())], v);
            }
        }
    }
}

fn notifications(out: &mut Exposition, n: &NotifyCounters) {
    use std::sync::atomic::Ordering::Relaxed;
    out.family(
        "picket_notifications_total",
        "counter",
        "Notifications by channel and outcome (dropped: the channel's queue was full).",
    );
    for (channel, c) in n.channels() {
        for (result, v) in [
            ("sent", &c.sent),
            ("failed", &c.failed),
            ("dropped", &c.dropped),
        ] {
            out.sample(
                "picket_notifications_total",
                &[("channel", channel), ("result", result)],
                v.load(Relaxed) as f64,
            );
        }
    }
    out.family(
        "picket_notification_retries_total",
        "counter",
        "Delivery attempts after the first, by channel.",
    );
    for (channel, c) in n.channels() {
        out.sample(
            "picket_notification_retries_total",
            &[("channel", channel)],
            c.retries.load(Relaxed) as f64,
        );
    }
}

fn ingest(out: &mut Exposition, c: &IngestCounters) {
    let get = IngestCounters::get;
    out.family(
        "picket_ingest_messages_total",
        "counter",
        "MQTT messages received, by topic kind.",
    );
    for (kind, n) in [
        ("state", get(&c.state_messages)),
        ("telemetry", get(&c.telemetry_messages)),
        ("event", get(&c.event_messages)),
        ("reply", get(&c.reply_messages)),
    ] {
        out.sample("picket_ingest_messages_total", &[("kind", kind)], n as f64);
    }
    out.family(
        "picket_ingest_refused_total",
        "counter",
        "Messages refused, by reason (acknowledged, kept in the quarantine: GET /api/ingest/refused).",
    );
    for why in Refused::ALL {
        out.sample(
            "picket_ingest_refused_total",
            &[("reason", why.label())],
            c.refused(why) as f64,
        );
    }
    out.single(
        "picket_store_failing",
        "gauge",
        "1 while the database cannot store (disk full, I/O error, read-only): nothing is acknowledged meanwhile.",
        f64::from(u8::from(c.store_failure().is_some())),
    );
    for (name, help, v) in totals(c) {
        out.single(name, "counter", help, v as f64);
    }
    out.single(
        "picket_ingest_lag_seconds",
        "gauge",
        "Delay between the latest live sample's timestamp and its arrival.",
        get(&c.lag_ms) as f64 / 1000.0,
    );
    out.single(
        "picket_store_last_commit_timestamp_seconds",
        "gauge",
        "Unix time the last commit to SQLite returned (0: none since start).",
        get(&c.last_commit_ms) as f64 / 1000.0,
    );
}

/// The counters of records and commits: name, help, value.
fn totals(c: &IngestCounters) -> [(&'static str, &'static str, u64); 6] {
    let get = IngestCounters::get;
    [
        (
            "picket_ingest_records_total",
            "Samples and events stored, each once.",
            get(&c.samples) + get(&c.events),
        ),
        (
            "picket_ingest_duplicate_records_total",
            "Records delivered again and dropped.",
            get(&c.duplicates),
        ),
        (
            "picket_ingest_missing_records_total",
            "Sequence numbers found missing when a gap opened.",
            get(&c.gap_records),
        ),
        (
            "picket_ingest_stale_wills_total",
            "Last Wills ignored because they belonged to an older session.",
            get(&c.stale_wills),
        ),
        (
            "picket_store_commits_total",
            "Batches committed to SQLite.",
            get(&c.commits),
        ),
        (
            "picket_store_commit_errors_total",
            "Failed commits (retried; their messages stay unacknowledged).",
            get(&c.commit_errors),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "Things.");
        e.sample("x_total", &[("k", "a\"b\\c\nd")], 3.0);
        e.sample("x_total", &[], 0.5);
        assert_eq!(
            e.text,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{k=\"a\\\"b\\\\c\\nd\"} 3\nx_total 0.5\n"
        );
    }
}
