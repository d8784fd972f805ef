//! From an MQTT publish to records: topic, decoding, refusals.
//!
//! A bad message is counted under its reason, logged at a limited rate,
//! kept in the quarantine (`refused` table, bounded) and acknowledged like
//! any other (redelivering it would not make it better); it never stops
//! the engine. A message that decodes is range-checked before anything is
//! taken from it, so what reaches the store fits it.

use rumqttc::Publish;

use crate::pipeline::{Ack, Delivery};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use picket_protocol::{
    DecodeError, DeviceId, EventBatch, OfflineReason, Presence as Status, Reply, State, Telemetry,
    TopicKind,
};

use super::device::Record;
use super::presence::Input;
use super::{Engine, Millis};
use crate::counters::{IngestCounters, Refused};
use crate::history::{REFUSED_KEEP_BYTES, RefusedRow};
use crate::model::event_points;
use crate::rules::Observation;

/// At most one warning per reason per this many milliseconds.
const WARN_EVERY: Millis = 10_000;

/// Rate limit for refusal warnings: the first of each reason is logged,
/// then one per period with the number suppressed meanwhile.
#[derive(Debug, Default)]
pub struct WarnLimit {
    last: [Millis; Refused::ALL.len()],
    suppressed: [u64; Refused::ALL.len()],
}

impl WarnLimit {
    fn warn(&mut self, why: Refused, now: Millis, topic: &str, detail: &str) {
        let i = why as usize;
        if self.last[i] != 0 && now < self.last[i] + WARN_EVERY {
            self.suppressed[i] += 1;
            return;
        }
        let suppressed = std::mem::take(&mut self.suppressed[i]);
        self.last[i] = now.max(1);
        warn!(
            reason = why.label(),
            topic, suppressed, "message refused: {detail}"
        );
    }
}

fn classify(e: &DecodeError) -> Refused {
    match e {
        DecodeError::TooLarge { .. } => Refused::Oversized,
        DecodeError::UnsupportedVersion(_) | DecodeError::MissingVersion => Refused::WrongVersion,
        _ => Refused::Malformed,
    }
}

impl Engine {
    /// Handle one publish; it is acknowledged once this batch is stored.
    pub(super) fn handle(&mut self, delivery: Delivery) {
        IngestCounters::add(&self.counters.messages, 1);
        let now = self.clock.now();
        self.ingest(&delivery.publish, now);
        self.pending.acks.push(Ack::of(&delivery));
    }

    /// Count, log (rate-limited) and quarantine a refused message; it is
    /// acknowledged with its batch like any other.
    fn refuse(
        &mut self,
        why: Refused,
        now: Millis,
        p: &Publish,
        device: Option<&DeviceId>,
        detail: &str,
    ) {
        self.counters.refuse(why);
        self.warn_limit.warn(why, now, &p.topic, detail);
        let kept = p.payload.len().min(REFUSED_KEEP_BYTES);
        self.pending.batch.refused.push(RefusedRow {
            ts: now,
            topic: Some(p.topic.clone()),
            device: device.map(ToString::to_string),
            reason: why.label().into(),
            detail: detail.into(),
            size: p.payload.len() as u64,
            payload: p.payload[..kept].to_vec(),
        });
    }

    /// Decode the payload and check its values: what passes can be stored
    /// whole (see [`picket_protocol::check`]).
    fn decode<T: DeserializeOwned + Serialize>(
        &mut self,
        p: &Publish,
        device: &DeviceId,
        now: Millis,
    ) -> Option<T> {
        let refused = match picket_protocol::decode::<T>(&p.payload, self.cfg.max_payload) {
            Ok(m) => match picket_protocol::check(&m) {
                Ok(()) => return Some(m),
                Err(e) => (Refused::Invalid, e.to_string()),
            },
            Err(e) => (classify(&e), e.to_string()),
        };
        self.refuse(refused.0, now, p, Some(device), &refused.1);
        None
    }

    /// The payload must speak of the device its topic names.
    fn check_device(
        &mut self,
        topic: &DeviceId,
        payload: &DeviceId,
        p: &Publish,
        now: Millis,
    ) -> bool {
        if topic == payload {
            return true;
        }
        let detail = format!("payload is from device {payload}, topic names {topic}");
        self.refuse(Refused::DeviceMismatch, now, p, Some(topic), &detail);
        false
    }

    fn ingest(&mut self, p: &Publish, now: Millis) {
        let topic = match self.cfg.topics.parse(&p.topic) {
            Ok(t) => t,
            Err(e) => {
                self.refuse(Refused::UnknownTopic, now, p, None, &e.to_string());
                return;
            }
        };
        let id = topic.device;
        match topic.kind {
            TopicKind::State => {
                // An empty retained publish clears the retained state (an
                // operator removing a decommissioned box): nothing to do.
                if p.payload.is_empty() {
                    return;
                }
                IngestCounters::add(&self.counters.state_messages, 1);
                let Some(st) = self.decode::<State>(p, &id, now) else {
                    return;
                };
                if !self.check_device(&id, &st.device, p, now) {
                    return;
                }
                self.on_state(&id, &st, now);
            }
            TopicKind::Telemetry => {
                IngestCounters::add(&self.counters.telemetry_messages, 1);
                let Some(t) = self.decode::<Telemetry>(p, &id, now) else {
                    return;
                };
                if !self.check_device(&id, &t.device, p, now) {
                    return;
                }
                self.alive(&id, now);
                self.on_telemetry(&id, &t, now);
            }
            TopicKind::Event => {
                IngestCounters::add(&self.counters.event_messages, 1);
                let Some(b) = self.decode::<EventBatch>(p, &id, now) else {
                    return;
                };
                if !self.check_device(&id, &b.device, p, now) {
                    return;
                }
                self.alive(&id, now);
                self.on_events(&id, &b, now);
            }
            TopicKind::Reply(_) => {
                IngestCounters::add(&self.counters.reply_messages, 1);
                let Some(r) = self.decode::<Reply>(p, &id, now) else {
                    return;
                };
                if !self.check_device(&id, &r.device, p, now) {
                    return;
                }
                self.alive(&id, now);
                self.on_reply(&id, &r, now);
            }
            // Our own retained alert sets come back through the wildcard
            // subscription: not news.
            TopicKind::Alert => {}
            TopicKind::Cmd(_) => {
                self.refuse(
                    Refused::UnknownTopic,
                    now,
                    p,
                    Some(&id),
                    "commands are not ingested",
                );
            }
        }
        self.reschedule(&id);
    }

    fn alive(&mut self, id: &DeviceId, now: Millis) {
        let outcome = self.device(id).p.presence.apply(Input::Message, now);
        self.presence_outcome(id, outcome, now);
    }

    fn on_state(&mut self, id: &DeviceId, st: &State, now: Millis) {
        let outcome = match st.status {
            Status::Online => {
                self.device(id).birth(st);
                self.device(id).p.presence.apply(
                    Input::Birth {
                        session: &st.session,
                    },
                    now,
                )
            }
            Status::Offline => {
                let reason = st.reason.unwrap_or(OfflineReason::ConnectionLost);
                self.device(id).p.presence.apply(
                    Input::Will {
                        session: &st.session,
                        reason,
                    },
                    now,
                )
            }
        };
        self.presence_outcome(id, outcome, now);
    }

    fn on_telemetry(&mut self, id: &DeviceId, t: &Telemetry, now: Millis) {
        let mut live = None;
        for s in &t.samples {
            self.device(id);
            let dev = self.devices.get_mut(id).expect("created above");
            let (record, missing) = dev.sample(id, s, &mut self.names, &mut self.pending.batch);
            self.account(record, missing);
            if record == Record::Stored {
                IngestCounters::add(&self.counters.samples, 1);
                if !s.hist {
                    live = Some(s);
                }
            }
        }
        // Rules see the newest live sample only: history (`hist`) must
        // never fire or clear an alert as if it were current.
        if let Some(s) = live {
            if s.sync {
                self.counters.lag_ms.store(
                    now.saturating_sub(s.ts),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            // Lent to the rules and put back (evaluating reads the rule
            // state, never the live values): no copy per message.
            let points = std::mem::take(&mut self.device(id).latest);
            self.evaluate(id, &Observation::Sample { points: &points }, now);
            self.device(id).latest = points;
        }
    }

    fn on_events(&mut self, id: &DeviceId, b: &EventBatch, now: Millis) {
        for e in &b.events {
            self.device(id);
            let dev = self.devices.get_mut(id).expect("created above");
            let (record, missing, ts) = dev.event(id, e, &mut self.pending.batch);
            if record == Record::Stored {
                IngestCounters::add(&self.counters.events, 1);
            }
            self.account(record, missing);
            // A container's change reaches the rules at once (a critical
            // alert for a crash need not wait for the next sample); history
            // never does, like samples.
            if record == Record::Stored && !e.hist {
                let (points, gone) = event_points(&e.kind);
                if !points.is_empty() {
                    self.device(id).live(&points, gone, ts);
                    self.evaluate(id, &Observation::Sample { points: &points }, now);
                }
            }
        }
    }

    fn account(&mut self, record: Record, missing: u64) {
        if record == Record::Duplicate {
            IngestCounters::add(&self.counters.duplicates, 1);
        }
        if missing > 0 {
            IngestCounters::add(&self.counters.gap_records, missing);
        }
    }
}
