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

impl State {
    /// The Last Will registered for connection `session`, built at connect
    /// time `ts` (the agent's and the simulator's).
    pub fn will(device: DeviceId, session: &str, ts: u64) -> State {
        State {
            v: crate::VERSION,
            device,
            status: Presence::Offline,
            session: session.to_string(),
            version: None,
            model: None,
            boot: None,
            ts: Some(ts),
            reason: Some(OfflineReason::ConnectionLost),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VERSION;
    use crate::test_util::*;

    fn birth() -> State {
        State {
            v: VERSION,
            device: DeviceId::new("pi-kitchen.01").unwrap(),
            status: Presence::Online,
            session: "3f9a0c11d2e4b705".into(),
            version: Some("0.1.0".into()),
            model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
            boot: Some("4c1b0f2e-8d3a-4d47-9a53-2b8f1f0c6e11".into()),
            ts: Some(1_717_171_717_000),
            reason: None,
        }
    }

    fn will() -> State {
        State::will(
            DeviceId::new("pi-kitchen.01").unwrap(),
            "3f9a0c11d2e4b705",
            1_717_171_717_000,
        )
    }

    #[test]
    fn round_trips() {
        round_trip(&birth());
        round_trip(&will());
    }

    #[test]
    fn json_field_names() {
        let b = to_value(&birth());
        assert_eq!(
            keys(&b),
            [
                "boot", "device", "model", "session", "status", "ts", "v", "version"
            ]
        );
        assert_eq!(b["status"], "online");
        let w = to_value(&will());
        assert_eq!(
            keys(&w),
            ["device", "reason", "session", "status", "ts", "v"]
        );
        assert_eq!(w["status"], "offline");
        assert_eq!(w["reason"], "connection_lost");
        let mut clean = will();
        clean.reason = Some(OfflineReason::CleanStop);
        assert_eq!(to_value(&clean)["reason"], "clean_stop");
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v = to_value(&birth());
        add_unknown(&mut v);
        assert_eq!(decode_value::<State>(&v).unwrap(), birth());
    }

    #[test]
    fn missing_required_field_is_an_error() {
        for field in ["v", "device", "status", "session"] {
            assert_required(&birth(), field);
        }
    }

    #[test]
    fn unknown_status_is_an_error() {
        let mut v = to_value(&birth());
        v["status"] = "sleeping".into();
        assert!(decode_value::<State>(&v).is_err());
    }
}
