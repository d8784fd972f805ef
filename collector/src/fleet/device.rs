//! One device as the engine knows it, and what each message does to it.
//!
//! Every handler appends what must be stored to the batch being built and
//! returns nothing else: the engine commits the batch, then acknowledges
//! the messages and publishes the effects.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use picket_protocol::{DeviceId, Event, EventKind, Sample, State};

use crate::history::{Correction, EventRow, SampleRows, Unsynced, WriteBatch};
use crate::model::{MetricNames, Millis, Point, flatten};
use crate::notify::Cooldowns;
use crate::rules::DeviceRules;

use super::presence::Presence;
use super::seq::{Seen, SeqTracker};

/// What survives a collector restart (stored as one JSON value per device).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Persisted {
    pub seq: SeqTracker,
    pub presence: Presence,
    #[serde(default)]
    pub rules: DeviceRules,
    #[serde(default)]
    pub cooldowns: Cooldowns,
    /// Wall/monotonic offsets learnt per boot id (latest last, a few kept).
    #[serde(default)]
    pub offsets: Vec<(String, i64)>,
    /// Boot ids with records stored before their clock was synchronised.
    #[serde(default)]
    pub unsynced_boots: Vec<String>,
    #[serde(default)]
    pub boot: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// Recent remedies per rule, for their rate limit.
    #[serde(default)]
    pub remedies: std::collections::BTreeMap<String, crate::commands::RateLimit>,
}

/// How many boots' clock offsets are remembered per device.
const OFFSETS_KEPT: usize = 4;

#[derive(Debug)]
pub struct Device {
    pub labels: BTreeMap<String, String>,
    pub p: Persisted,
    /// Latest live values, from the latest live sample.
    pub latest: Vec<Point>,
    pub latest_ts: Option<Millis>,
    /// The alert set last published on the retained alert topic.
    pub published: Option<Vec<picket_protocol::Alert>>,
    /// Persisted state changed since the last batch in a way that must be
    /// stored with it (a presence change, an alert, a birth...).
    pub dirty: bool,
    /// The sequence accounting changed since the last batch: journaled.
    pub seq_dirty: bool,
    /// Registry row (labels, model, version, last seen) to write.
    pub seen_dirty: bool,
}

/// What one sample or event record turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Stored,
    Duplicate,
}

impl Device {
    pub fn new(labels: BTreeMap<String, String>, p: Persisted) -> Self {
        Device {
            labels,
            p,
            latest: Vec::new(),
            latest_ts: None,
            published: None,
            dirty: false,
            seq_dirty: false,
            seen_dirty: false,
        }
    }

    /// Account for a record's `seq`; on a gap, the gap is returned.
    fn admit(&mut self, seq: u64) -> (bool, u64) {
        let (seen, gap) = self.p.seq.observe(seq);
        self.seq_dirty = true;
        let missing = gap.map_or(0, |g| g.to - g.from + 1);
        (seen == Seen::New, missing)
    }

    /// Learn the clock offset of `boot` from a synchronised record; if
    /// records of that boot were stored unsynchronised, have them corrected.
    fn learn_offset(
        &mut self,
        id: &DeviceId,
        boot: &str,
        ts: Millis,
        mono: u64,
        batch: &mut WriteBatch,
    ) {
        let offset = ts as i64 - mono as i64;
        if let Some(slot) = self.p.offsets.iter_mut().find(|(b, _)| b == boot) {
            slot.1 = offset;
        } else {
            self.p.offsets.push((boot.to_string(), offset));
            if self.p.offsets.len() > OFFSETS_KEPT {
                self.p.offsets.remove(0);
            }
            self.dirty = true;
        }
        if let Some(pending) = self.p.unsynced_boots.iter().position(|b| b == boot) {
            self.p.unsynced_boots.remove(pending);
            self.dirty = true;
            batch.corrections.push(Correction {
                device: id.clone(),
                boot: boot.to_string(),
                offset_ms: offset,
            });
        }
    }

    /// The timestamp to store for a record, and whether it still needs
    /// correcting later.
    fn stamp(
        &mut self,
        boot: &str,
        ts: Millis,
        mono: u64,
        sync: bool,
    ) -> (Millis, Option<Unsynced>) {
        if sync {
            return (ts, None);
        }
        if let Some((_, off)) = self.p.offsets.iter().find(|(b, _)| b == boot) {
            return ((mono as i64 + off).max(0) as Millis, None);
        }
        if !self.p.unsynced_boots.iter().any(|b| b == boot) {
            self.p.unsynced_boots.push(boot.to_string());
            self.dirty = true;
        }
        (
            ts,
            Some(Unsynced {
                boot: boot.to_string(),
                mono,
            }),
        )
    }

    /// Store one sample. Returns the record's fate and how many sequence
    /// numbers went missing before it.
    pub fn sample(
        &mut self,
        id: &DeviceId,
        s: &Sample,
        names: &mut MetricNames,
        batch: &mut WriteBatch,
    ) -> (Record, u64) {
        let (new, missing) = self.admit(s.seq);
        if !new {
            return (Record::Duplicate, missing);
        }
        if s.sync {
            self.learn_offset(id, &s.boot, s.ts, s.mono, batch);
        }
        let (ts, unsynced) = self.stamp(&s.boot, s.ts, s.mono, s.sync);
        let points = flatten(s, names);
        if !s.hist && self.latest_ts.is_none_or(|t| ts >= t) {
            // In place: the same boot and the same number of points from
            // one sample to the next, so neither allocates.
            self.latest.clone_from(&points);
            self.latest_ts = Some(ts);
            if self.p.boot.as_deref() != Some(s.boot.as_str()) {
                self.p.boot = Some(s.boot.clone());
            }
        }
        batch.samples.push(SampleRows {
            device: id.clone(),
            seq: s.seq,
            ts,
            points,
            unsynced,
        });
        (Record::Stored, missing)
    }

    /// Store one event, like [`Device::sample`]; also returns the time it
    /// is stored under.
    pub fn event(
        &mut self,
        id: &DeviceId,
        e: &Event,
        batch: &mut WriteBatch,
    ) -> (Record, u64, Millis) {
        let (new, mut missing) = self.admit(e.seq);
        if !new {
            return (Record::Duplicate, missing, e.ts);
        }
        if let EventKind::AgentStarted {
            version,
            seq_skipped,
        } = &e.kind
        {
            if let Some((a, b)) = seq_skipped {
                // The gap this event itself opened may be the skipped
                // numbers: they were never missing, so not counted either.
                missing = missing.saturating_sub(self.p.seq.skip(*a, *b));
            }
            self.p.version = Some(version.clone());
            self.seen_dirty = true;
        }
        if e.sync {
            self.learn_offset(id, &e.boot, e.ts, e.mono, batch);
        }
        let (ts, unsynced) = self.stamp(&e.boot, e.ts, e.mono, e.sync);
        let body = serde_json::to_value(&e.kind).unwrap_or(serde_json::Value::Null);
        let kind = body
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("unknown")
            .to_string();
        batch.events.push(EventRow {
            device: id.clone(),
            seq: e.seq,
            ts,
            kind,
            body,
            unsynced,
        });
        (Record::Stored, missing, ts)
    }

    /// Values a live event brought (a container's new state), laid over the
    /// latest sample's, so the API and later rule evaluations see them;
    /// `gone`: a container whose values no longer exist. A sample taken
    /// before the event no longer replaces them.
    pub fn live(&mut self, points: &[Point], gone: Option<&str>, ts: Millis) {
        if let Some(name) = gone {
            self.latest.retain(|p| {
                !(p.metric.name().starts_with("container.") && p.metric.instance() == Some(name))
            });
        } else {
            for p in points {
                match self.latest.iter_mut().find(|l| l.metric == p.metric) {
                    Some(l) => l.value = p.value,
                    None => self.latest.push(p.clone()),
                }
            }
        }
        self.latest_ts = Some(self.latest_ts.map_or(ts, |t| t.max(ts)));
    }

    /// Registry facts from a birth.
    pub fn birth(&mut self, st: &State) {
        if st.model.is_some() {
            self.p.model = st.model.clone();
        }
        if st.version.is_some() {
            self.p.version = st.version.clone();
        }
        if st.boot.is_some() {
            self.p.boot = st.boot.clone();
        }
        self.seen_dirty = true;
        self.dirty = true;
    }
}
