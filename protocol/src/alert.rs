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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VERSION;
    use crate::test_util::*;

    fn two_alerts() -> AlertSet {
        AlertSet {
            v: VERSION,
            device: DeviceId::new("pi-kitchen.01").unwrap(),
            ts: 1_717_171_717_000,
            alerts: vec![
                Alert {
                    rule: "temperature_critical".into(),
                    severity: Severity::Critical,
                    since: 1_717_171_000_000,
                    value: Some(82.3),
                    message: "CPU at 82.3 °C".into(),
                },
                Alert {
                    rule: "undervoltage".into(),
                    severity: Severity::Warning,
                    since: 1_717_170_000_000,
                    value: None,
                    message: "under-voltage since boot".into(),
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        round_trip(&two_alerts());
        let clear = AlertSet {
            alerts: vec![],
            ..two_alerts()
        };
        round_trip(&clear);
    }

    #[test]
    fn json_field_names() {
        let v = to_value(&two_alerts());
        assert_eq!(keys(&v), ["alerts", "device", "ts", "v"]);
        assert_eq!(
            keys(&v["alerts"][0]),
            ["message", "rule", "severity", "since", "value"]
        );
        assert_eq!(
            keys(&v["alerts"][1]),
            ["message", "rule", "severity", "since"]
        );
        assert_eq!(v["alerts"][0]["severity"], "critical");
        assert_eq!(v["alerts"][1]["severity"], "warning");
        assert_eq!(serde_json::to_value(Severity::Info).unwrap(), "info");
    }

    #[test]
    fn highest_severity() {
        assert_eq!(two_alerts().highest(), Some(Severity::Critical));
        let clear = AlertSet {
            alerts: vec![],
            ..two_alerts()
        };
        assert_eq!(clear.highest(), None);
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v = to_value(&two_alerts());
        add_unknown(&mut v);
        add_unknown(&mut v["alerts"][0]);
        assert_eq!(decode_value::<AlertSet>(&v).unwrap(), two_alerts());
    }

    #[test]
    fn missing_required_field_is_an_error() {
        for field in ["v", "device", "ts", "alerts"] {
            assert_required(&two_alerts(), field);
        }
        for field in ["rule", "severity", "since", "message"] {
            let mut v = to_value(&two_alerts());
            v["alerts"][0].as_object_mut().unwrap().remove(field);
            assert!(decode_value::<AlertSet>(&v).is_err(), "{field}");
        }
    }
}
