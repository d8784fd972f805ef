//! Events: things that happened at an instant, batched like samples.

use serde::{Deserialize, Serialize};

use crate::docker::{ContainerState, Engine, Health};
use crate::telemetry::{ActiveState, Throttle};
use crate::topic::DeviceId;

/// Payload of `{prefix}/v1/{device}/event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    pub v: u16,
    pub device: DeviceId,
    /// Ascending by `seq`.
    pub events: Vec<Event>,
}

impl EventBatch {
    /// A batch of `device`'s events at this [`VERSION`](crate::VERSION).
    pub fn new(device: DeviceId, events: Vec<Event>) -> Self {
        EventBatch {
            v: crate::VERSION,
            device,
            events,
        }
    }
}

/// One event, stamped exactly like a [`crate::Sample`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Shares the device's sequence space with samples.
    pub seq: u64,
    pub ts: u64,
    pub mono: u64,
    pub boot: String,
    pub sync: bool,
    #[serde(default)]
    pub hist: bool,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Serialised with a `kind` field naming the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The agent started. `seq_skipped` is the half-open range of sequence
    /// numbers that were reserved before an unclean stop (power cut) and
    /// never used: a collector must not count them as lost.
    AgentStarted {
        version: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq_skipped: Option<(u64, u64)>,
    },
    /// The agent is stopping cleanly.
    AgentStopping,
    /// The kernel clock became NTP-synchronised: `ts` and `mono` of this
    /// event give the offset to correct earlier samples of the same boot.
    ClockSynced,
    /// The throttle/power flags changed.
    Throttle {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<Throttle>,
        new: Throttle,
    },
    /// A watched systemd unit changed state.
    Service {
        unit: String,
        active: ActiveState,
        sub: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_active: Option<ActiveState>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_sub: Option<String>,
    },
    /// The disk queue found a corrupt segment at start-up and set it aside.
    QueueQuarantined { segment: String, bytes: u64 },
    /// The disk queue dropped its oldest records to stay under its cap.
    QueueDropped { records: u64, total_dropped: u64 },
    /// A configured GPIO input changed level (one event per edge, sent at
    /// once rather than with the next sample).
    Gpio {
        /// The name given in the agent's configuration.
        name: String,
        /// The logical level after the edge (after `active_low`).
        level: bool,
        /// The kernel's timestamp of the edge, CLOCK_MONOTONIC nanoseconds:
        /// exact spacing between edges, unlike `ts` (when the agent saw it).
        edge_ns: u64,
    },
    /// A watched Docker container changed state or health, as the engine's
    /// event stream told (sent at once).
    Container {
        name: String,
        state: ContainerState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        health: Option<Health>,
        restarts: u64,
        /// While it is down: the exit code of its last run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
        /// While it is down: stopped without being asked (see
        /// [`crate::Container::unexpected`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unexpected: Option<bool>,
        /// Absent when the container was not known before (created, or
        /// newly in scope).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_state: Option<ContainerState>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_health: Option<Health>,
    },
    /// A watched container was removed, or left the agent's scope.
    ContainerGone { name: String },
    /// The Docker engine became reachable, or stopped being so.
    Docker { engine: Engine },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VERSION;
    use crate::test_util::*;
    use serde_json::json;

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            ts: 1_717_171_717_000 + seq,
            mono: 86_400_000 + seq,
            boot: "4c1b0f2e-8d3a-4d47-9a53-2b8f1f0c6e11".into(),
            sync: true,
            hist: false,
            kind,
        }
    }

    /// One event of every kind, in the order the enum declares them.
    fn every_kind() -> Vec<(EventKind, &'static str)> {
        vec![
            (
                EventKind::AgentStarted {
                    version: "0.1.0".into(),
                    seq_skipped: Some((41_000, 41_200)),
                },
                "agent_started",
            ),
            (EventKind::AgentStopping, "agent_stopping"),
            (EventKind::ClockSynced, "clock_synced"),
            (
                EventKind::Throttle {
                    old: Some(Throttle::from_firmware(0)),
                    new: Throttle::from_firmware(0x50005),
                },
                "throttle",
            ),
            (
                EventKind::Service {
                    unit: "nginx.service".into(),
                    active: ActiveState::Failed,
                    sub: "failed".into(),
                    old_active: Some(ActiveState::Active),
                    old_sub: Some("running".into()),
                },
                "service",
            ),
            (
                EventKind::QueueQuarantined {
                    segment: "00000042.seg".into(),
                    bytes: 65_536,
                },
                "queue_quarantined",
            ),
            (
                EventKind::QueueDropped {
                    records: 100,
                    total_dropped: 1_200,
                },
                "queue_dropped",
            ),
            (
                EventKind::Gpio {
                    name: "door".into(),
                    level: false,
                    edge_ns: 12_345_678_901,
                },
                "gpio",
            ),
            (
                EventKind::Container {
                    name: "web".into(),
                    state: ContainerState::Exited,
                    health: Some(Health::Unhealthy),
                    restarts: 3,
                    exit_code: Some(137),
                    unexpected: Some(true),
                    old_state: Some(ContainerState::Running),
                    old_health: Some(Health::Healthy),
                },
                "container",
            ),
            (
                EventKind::ContainerGone { name: "web".into() },
                "container_gone",
            ),
            (
                EventKind::Docker {
                    engine: Engine::Unavailable,
                },
                "docker",
            ),
        ]
    }

    fn batch() -> EventBatch {
        EventBatch {
            v: VERSION,
            device: DeviceId::new("pi-kitchen.01").unwrap(),
            events: every_kind()
                .into_iter()
                .enumerate()
                .map(|(i, (kind, _))| event(i as u64 + 1, kind))
                .collect(),
        }
    }

    #[test]
    fn round_trips() {
        round_trip(&batch());
        let minimal = EventBatch {
            events: vec![
                event(
                    1,
                    EventKind::AgentStarted {
                        version: "0.1.0".into(),
                        seq_skipped: None,
                    },
                ),
                event(
                    2,
                    EventKind::Throttle {
                        old: None,
                        new: Throttle::from_firmware(1),
                    },
                ),
            ],
            ..batch()
        };
        round_trip(&minimal);
    }

    #[test]
    fn json_field_names() {
        let v = to_value(&batch());
        assert_eq!(keys(&v), ["device", "events", "v"]);
        let stamp = ["boot", "hist", "kind", "mono", "seq", "sync", "ts"];
        let extra: [&[&str]; 11] = [
            &["seq_skipped", "version"],
            &[],
            &[],
            &["new", "old"],
            &["active", "old_active", "old_sub", "sub", "unit"],
            &["bytes", "segment"],
            &["records", "total_dropped"],
            &["edge_ns", "level", "name"],
            &[
                "exit_code",
                "health",
                "name",
                "old_health",
                "old_state",
                "restarts",
                "state",
                "unexpected",
            ],
            &["name"],
            &["engine"],
        ];
        for (i, (_, name)) in every_kind().iter().enumerate() {
            let e = &v["events"][i];
            assert_eq!(e["kind"], *name);
            let mut want: Vec<&str> = stamp.iter().chain(extra[i]).copied().collect();
            want.sort_unstable();
            assert_eq!(keys(e), want, "{name}");
        }
        assert_eq!(v["events"][0]["seq_skipped"], json!([41_000, 41_200]));
        assert_eq!(v["events"][4]["active"], "failed");
        assert_eq!(v["events"][8]["state"], "exited");
        assert_eq!(v["events"][10]["engine"], "unavailable");
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v = to_value(&batch());
        add_unknown(&mut v);
        for e in v["events"].as_array_mut().unwrap() {
            add_unknown(e);
        }
        add_unknown(&mut v["events"][3]["new"]);
        assert_eq!(decode_value::<EventBatch>(&v).unwrap(), batch());
    }

    #[test]
    fn hist_defaults_to_false() {
        let mut b = batch();
        b.events[0].hist = true;
        let mut v = to_value(&b);
        v["events"][0].as_object_mut().unwrap().remove("hist");
        assert_eq!(decode_value::<EventBatch>(&v).unwrap(), batch());
    }

    #[test]
    fn missing_required_field_is_an_error() {
        for field in ["v", "device", "events"] {
            assert_required(&batch(), field);
        }
        for field in ["seq", "ts", "mono", "boot", "sync", "kind"] {
            let mut v = to_value(&batch());
            v["events"][0].as_object_mut().unwrap().remove(field);
            assert!(decode_value::<EventBatch>(&v).is_err(), "{field}");
        }
        for (i, field) in [
            (0, "version"),
            (3, "new"),
            (4, "unit"),
            (6, "records"),
            (7, "edge_ns"),
            (8, "state"),
            (9, "name"),
            (10, "engine"),
        ] {
            let mut v = to_value(&batch());
            v["events"][i].as_object_mut().unwrap().remove(field);
            assert!(decode_value::<EventBatch>(&v).is_err(), "{field}");
        }
    }

    #[test]
    fn unknown_kind_is_an_error() {
        let mut v = to_value(&batch());
        v["events"][1]["kind"] = "meteor_strike".into();
        assert!(decode_value::<EventBatch>(&v).is_err());
    }
}
