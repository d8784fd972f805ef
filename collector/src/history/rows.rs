//! What goes into the history ([`WriteBatch`] and its rows) and what comes
//! out of it (query results and the start-up [`Snapshot`]).

use std::collections::BTreeMap;

use picket_protocol::{DeviceId, Severity};

use crate::model::{Millis, Point};

/// Everything one commit writes, in one transaction. The engine fills the
/// vectors from the messages it handled since the last commit and
/// acknowledges those messages once [`super::Writer::commit`] returned.
///
/// Within a commit, rows are applied in the order of the fields below:
/// corrections see the unsynced rows of the same batch, and `forget` comes
/// last, so a device forgotten in a batch leaves nothing behind even if the
/// batch also carried data for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub devices: Vec<DeviceRow>,
    pub samples: Vec<SampleRows>,
    pub events: Vec<EventRow>,
    pub presence: Vec<PresenceRow>,
    pub alerts: Vec<AlertRow>,
    pub state: Vec<StateRow>,
    /// Appended as one `state_journal` row.
    pub journal: Vec<JournalEntry>,
    /// Every journal row written before this commit is superseded by the
    /// `state` rows of this commit (the engine wrote them all): deleted.
    pub checkpoint: bool,
    pub corrections: Vec<Correction>,
    pub commands: Vec<super::CommandRow>,
    pub statuses: Vec<super::StatusRow>,
    pub forget: Vec<DeviceId>,
    /// Messages (or rows) refused, kept in the bounded quarantine.
    pub refused: Vec<RefusedRow>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.samples.is_empty()
            && self.events.is_empty()
            && self.presence.is_empty()
            && self.alerts.is_empty()
            && self.state.is_empty()
            && self.journal.is_empty()
            && !self.checkpoint
            && self.corrections.is_empty()
            && self.commands.is_empty()
            && self.statuses.is_empty()
            && self.forget.is_empty()
            && self.refused.is_empty()
    }
}

/// A message the collector refused (or a row the database refused), as
/// kept in the quarantine and listed by `GET /api/ingest/refused`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefusedRow {
    /// When it was refused, unix milliseconds.
    pub ts: Millis,
    /// The MQTT topic it came on (None for a row the database refused).
    pub topic: Option<String>,
    /// The device it names, when known.
    pub device: Option<String>,
    /// The refusal's counter label (`malformed`, `invalid`, ...).
    pub reason: String,
    /// What was wrong, in words.
    pub detail: String,
    /// The payload's size in bytes.
    pub size: u64,
    /// Its first [`super::REFUSED_KEEP_BYTES`] bytes.
    #[serde(skip)]
    pub payload: Vec<u8>,
}

/// Where a sample or event taken before the device's clock was synchronised
/// sits on the device's monotonic clock, so its time can be corrected later.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unsynced {
    pub boot: String,
    /// Milliseconds since that boot.
    pub mono: u64,
}

/// One sample, flattened. Stored as one row under `(device, ts, seq)`; a
/// sample without points is not stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRows {
    pub device: DeviceId,
    pub seq: u64,
    pub ts: Millis,
    pub points: Vec<Point>,
    pub unsynced: Option<Unsynced>,
}

/// One event. `kind` is the wire name of the event kind (`throttle`,
/// `service`, ...) and `body` its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub device: DeviceId,
    pub seq: u64,
    pub ts: Millis,
    pub kind: String,
    pub body: serde_json::Value,
    pub unsynced: Option<Unsynced>,
}

/// The device's clock became synchronised during `boot`: every row of that
/// boot stored as unsynced moves to `mono + offset_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    pub device: DeviceId,
    pub boot: String,
    pub offset_ms: i64,
}

/// A presence change: online from a birth message, offline from a Last Will
/// or a heartbeat timeout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PresenceRow {
    pub device: DeviceId,
    pub ts: Millis,
    pub online: bool,
    pub reason: Option<String>,
    pub session: Option<String>,
}

/// One line of the alert log. `change` is `fired`, `escalated`,
/// `deescalated` or `resolved`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertRow {
    pub device: DeviceId,
    pub rule: String,
    pub instance: Option<String>,
    pub severity: Severity,
    pub change: String,
    pub value: Option<f64>,
    pub message: String,
    pub ts: Millis,
    /// For `fired`: the id of the command the rule's remedy issued, or why
    /// none was (`rate_limited: ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

/// What the engine learnt about a device: upserted. `first_seen` is set
/// once, `last_seen` only moves forward, and model, version and labels are
/// replaced only when given (`Some`, non-empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub device: DeviceId,
    pub labels: BTreeMap<String, String>,
    pub model: Option<String>,
    pub version: Option<String>,
    pub seen: Millis,
}

/// Opaque state the engine persists (JSON text, by `kind` and `key`);
/// `value: None` deletes the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub device: DeviceId,
    pub kind: String,
    pub key: String,
    pub value: Option<String>,
}

/// A piece of a device's state that changes with nearly every message
/// (the engine's sequence accounting), journaled per commit instead of
/// rewriting the device's `state` row; opaque bytes, replayed in commit
/// order on top of the `state` rows at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub device: DeviceId,
    pub value: Vec<u8>,
}

/// What one commit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Points inserted or replaced.
    pub points: usize,
    /// Samples (rows) inserted or replaced.
    pub samples: usize,
    /// Events inserted or replaced.
    pub events: usize,
    /// Samples and events whose time a correction rewrote.
    pub corrected: usize,
    /// Rows deleted because their device was forgotten.
    pub forgotten: usize,
}

/// One point of a history query. Raw: `value == min == max`, `count == 1`.
/// Bucketed: the average, extremes and number of the raw points in
/// `[ts, ts + step)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct HistoryPoint {
    pub ts: Millis,
    pub value: f64,
    pub min: f64,
    pub max: f64,
    pub count: u32,
}

/// A stored event. `unsynced` is still set when no correction reached it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRecord {
    pub seq: u64,
    pub ts: Millis,
    pub kind: String,
    pub body: serde_json::Value,
    pub unsynced: Option<Unsynced>,
}

/// A stored device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceRecord {
    pub device: DeviceId,
    pub labels: BTreeMap<String, String>,
    pub model: Option<String>,
    pub version: Option<String>,
    pub first_seen: Millis,
    pub last_seen: Millis,
}

/// One persisted state entry of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub kind: String,
    pub key: String,
    pub value: String,
}

/// What the engine needs at start-up, read when the history is opened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// By device id.
    pub devices: Vec<DeviceRecord>,
    /// By kind, then key.
    pub state: BTreeMap<DeviceId, Vec<StateEntry>>,
    /// `(device, boot)` pairs with rows still waiting for a correction.
    pub pending: Vec<(DeviceId, String)>,
    /// The latest presence row of every device that has one.
    pub presence: BTreeMap<DeviceId, PresenceRow>,
    /// The journal since the last checkpoint, oldest first: each entry is
    /// newer than the device's `state` rows.
    pub journal: Vec<JournalEntry>,
}
