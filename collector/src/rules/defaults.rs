//! The built-in rules: what operators of the earlier fleets were told
//! about, with the same thresholds.

use std::time::Duration;

use picket_config::HumanDuration;

use super::config::{Amount, RawRule};

/// The built-in rules, in the order their alerts are evaluated.
///
/// | name | metric | level |
/// |---|---|---|
/// | `temperature` | `temp` (hottest zone) | > 75 warning, > 80 critical; hysteresis 2, for 1m |
/// | `disk_usage` | `disk.pct:*` | > 90 warning, > 95 critical; hysteresis 1 |
/// | `disk_free` | `disk.free:/` (root filesystem) | < 2 GB warning |
/// | `memory` | `mem.pct` | > 90 warning, for 5m |
/// | `service_down` | `service:*` | == 0 (not active) critical, for 30s |
/// | `under_voltage` | `throttle.uv` | == 1 critical |
/// | `throttled` | `throttle.throttled` | == 1 warning |
/// | `offline` | `offline` | == 1 critical, for 5m |
/// | `container_exited` | `container.exited:*` | == 1 (stopped without being asked) critical |
/// | `container_unhealthy` | `container.unhealthy:*` | == 1 critical |
/// | `container_restarts` | `container.restarts:*` | > 3 within 1h warning |
///
/// The container rules need no `for`: the engine's own health check
/// already retries before it says unhealthy, and an exit is a fact.
pub fn default_rules() -> Vec<RawRule> {
    let secs = |s: u64| Some(HumanDuration(Duration::from_secs(s)));
    let num = |n: f64| Some(Amount::Number(n));
    let rule = |name: &str, metric: &str, op: &str, message: &str| RawRule {
        name: name.into(),
        metric: Some(metric.into()),
        op: Some(op.into()),
        message: Some(message.into()),
        ..RawRule::default()
    };
    vec![
        RawRule {
            warning: num(75.0),
            critical: num(80.0),
            hysteresis: num(2.0),
            for_: secs(60),
            ..rule("temperature", "temp", ">", "temperature {value}")
        },
        RawRule {
            warning: num(90.0),
            critical: num(95.0),
            hysteresis: num(1.0),
            ..rule(
                "disk_usage",
                "disk.pct:*",
                ">",
                "disk {instance} {value} full",
            )
        },
        RawRule {
            warning: Some(Amount::Size("2GB".into())),
            ..rule(
                "disk_free",
                // The root filesystem only: a Pi's 512 MB boot partition
                // is always under 2 GB free. Override for data mounts.
                "disk.free:/",
                "<",
                "disk {instance}: only {value} free",
            )
        },
        RawRule {
            warning: num(90.0),
            for_: secs(300),
            ..rule("memory", "mem.pct", ">", "memory {value} in use")
        },
        RawRule {
            critical: num(0.0),
            for_: secs(30),
            ..rule(
                "service_down",
                "service:*",
                "==",
                "service {instance} is not running",
            )
        },
        RawRule {
            critical: num(1.0),
            ..rule(
                "under_voltage",
                "throttle.uv",
                "==",
                "under-voltage: the power supply is too weak",
            )
        },
        RawRule {
            warning: num(1.0),
            ..rule(
                "throttled",
                "throttle.throttled",
                "==",
                "CPU throttled by the firmware",
            )
        },
        RawRule {
            critical: num(1.0),
            for_: secs(300),
            ..rule("offline", "offline", "==", "{device} is offline")
        },
        RawRule {
            critical: num(1.0),
            ..rule(
                "container_exited",
                "container.exited:*",
                "==",
                "container {instance} exited unexpectedly",
            )
        },
        RawRule {
            critical: num(1.0),
            ..rule(
                "container_unhealthy",
                "container.unhealthy:*",
                "==",
                "container {instance} is unhealthy",
            )
        },
        RawRule {
            warning: num(3.0),
            window: secs(3600),
            ..rule(
                "container_restarts",
                "container.restarts:*",
                ">",
                "container {instance} restarted {value} times within an hour",
            )
        },
    ]
}
