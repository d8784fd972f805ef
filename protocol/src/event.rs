//! Events: things that happened at an instant, batched like samples.

use serde::{Deserialize, Serialize};

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
}
