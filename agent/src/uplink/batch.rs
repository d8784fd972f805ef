//! Records from the disk queue → MQTT publications.
//!
//! Records are stored as CBOR samples or events. A read of consecutive
//! records becomes one publication per run of the same kind (telemetry or
//! event topic), each a batch ascending by seq, encoded in the configured
//! format. Records from before the current connection are marked `hist`:
//! they are history, and a collector must not take them for current state.

use picket_protocol::{DeviceId, Event, EventBatch, Format, Sample, Telemetry, Topics, encode};
use serde::de::DeserializeOwned;
use tracing::error;

use crate::queue::{Record, RecordKind};

/// One MQTT message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub topic: String,
    pub payload: Vec<u8>,
    /// The seq range it carries: acknowledging it acknowledges these.
    pub first: u64,
    pub last: u64,
    pub records: usize,
}

/// Builds publications for one device.
#[derive(Debug, Clone)]
pub struct Batcher {
    pub device: DeviceId,
    pub telemetry_topic: String,
    pub event_topic: String,
    pub format: Format,
}

impl Batcher {
    pub fn new(topics: &Topics, device: DeviceId, format: Format) -> Self {
        Batcher {
            telemetry_topic: topics.telemetry(&device),
            event_topic: topics.event(&device),
            device,
            format,
        }
    }

    /// `live_from`: records with a lower seq were appended before the
    /// current connection came up and are sent as history.
    pub fn build(&self, records: Vec<Record>, live_from: u64) -> Vec<Publication> {
        let mut out = Vec::new();
        let mut samples: Vec<Sample> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        let mut first = None;
        let mut last = 0;
        for record in records {
            let kind = record.kind;
            // A change of kind closes the current batch: order is by seq,
            // across both topics.
            let switch = match kind {
                RecordKind::Sample => !events.is_empty(),
                RecordKind::Event => !samples.is_empty(),
            };
            if switch {
                self.flush(&mut out, &mut samples, &mut events, &mut first, last);
            }
            let hist = record.seq < live_from;
            match kind {
                RecordKind::Sample => match stored::<Sample>(&record.payload) {
                    Ok(mut s) => {
                        s.hist = hist;
                        samples.push(s);
                    }
                    Err(e) => {
                        error!(seq = record.seq, error = %e, "stored sample unreadable; skipped");
                        continue;
                    }
                },
                RecordKind::Event => match stored::<Event>(&record.payload) {
                    Ok(mut ev) => {
                        ev.hist = hist;
                        events.push(ev);
                    }
                    Err(e) => {
                        error!(seq = record.seq, error = %e, "stored event unreadable; skipped");
                        continue;
                    }
                },
            }
            first.get_or_insert(record.seq);
            last = record.seq;
        }
        self.flush(&mut out, &mut samples, &mut events, &mut first, last);
        out
    }

    fn flush(
        &self,
        out: &mut Vec<Publication>,
        samples: &mut Vec<Sample>,
        events: &mut Vec<Event>,
        first: &mut Option<u64>,
        last: u64,
    ) {
        let Some(first) = first.take() else {
            return;
        };
        let (topic, records, payload) = if !samples.is_empty() {
            let n = samples.len();
            let msg = Telemetry::new(self.device.clone(), std::mem::take(samples));
            (&self.telemetry_topic, n, encode(&msg, self.format))
        } else {
            let n = events.len();
            let msg = EventBatch::new(self.device.clone(), std::mem::take(events));
            (&self.event_topic, n, encode(&msg, self.format))
        };
        match payload {
            Ok(payload) => out.push(Publication {
                topic: topic.clone(),
                payload,
                first,
                last,
                records,
            }),
            Err(e) => error!(first, last, error = %e, "cannot encode a batch; skipped"),
        }
    }
}

/// A queue record is one CBOR sample or event as the store wrote it: not a
/// wire message (no `v`), and already CRC-checked by the queue.
fn stored<T: DeserializeOwned>(payload: &[u8]) -> Result<T, picket_protocol::CborError> {
    picket_protocol::from_cbor(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_protocol::EventKind;
    use picket_protocol::decode;

    fn sample(seq: u64) -> Sample {
        Sample {
            seq,
            ts: 1_700_000_000_000 + seq,
            mono: seq,
            boot: "b".into(),
            sync: true,
            hist: false,
            cpu: Some(1.5),
            load: None,
            mem: None,
            swap: None,
            uptime: Some(5),
            disks: vec![],
            net: vec![],
            thermal: vec![],
            throttle: None,
            services: vec![],
            gpio: Vec::new(),
            docker: None,
            containers: Vec::new(),
            agent: None,
        }
    }

    fn rec_sample(seq: u64) -> Record {
        Record {
            seq,
            kind: RecordKind::Sample,
            ts_ms: 0,
            payload: encode(&sample(seq), Format::Cbor).unwrap(),
        }
    }

    fn rec_event(seq: u64) -> Record {
        let e = Event {
            seq,
            ts: 1,
            mono: 1,
            boot: "b".into(),
            sync: true,
            hist: false,
            kind: EventKind::ClockSynced,
        };
        Record {
            seq,
            kind: RecordKind::Event,
            ts_ms: 0,
            payload: encode(&e, Format::Cbor).unwrap(),
        }
    }

    fn batcher(format: Format) -> Batcher {
        Batcher::new(&Topics::default(), DeviceId::new("pi-1").unwrap(), format)
    }

    #[test]
    fn runs_of_one_kind_become_one_publication_each() {
        let recs = vec![rec_sample(1), rec_sample(2), rec_event(3), rec_sample(4)];
        let pubs = batcher(Format::Json).build(recs, 0);
        let shape: Vec<_> = pubs
            .iter()
            .map(|p| (p.topic.as_str(), p.first, p.last, p.records))
            .collect();
        assert_eq!(
            shape,
            [
                ("picket/v1/pi-1/telemetry", 1, 2, 2),
                ("picket/v1/pi-1/event", 3, 3, 1),
                ("picket/v1/pi-1/telemetry", 4, 4, 1),
            ]
        );
        let t: Telemetry = decode(&pubs[0].payload, usize::MAX).unwrap();
        assert_eq!(t.samples.iter().map(|s| s.seq).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn records_before_the_connection_are_history() {
        let recs = (10..14).map(rec_sample).collect();
        let pubs = batcher(Format::Cbor).build(recs, 12);
        let t: Telemetry = decode(&pubs[0].payload, usize::MAX).unwrap();
        let hist: Vec<_> = t.samples.iter().map(|s| (s.seq, s.hist)).collect();
        assert_eq!(hist, [(10, true), (11, true), (12, false), (13, false)]);
    }

    #[test]
    fn unreadable_record_is_skipped_not_fatal() {
        let mut bad = rec_sample(2);
        bad.payload = vec![0xff, 0x00];
        let pubs = batcher(Format::Cbor).build(vec![rec_sample(1), bad, rec_sample(3)], 0);
        assert_eq!(pubs.len(), 1);
        assert_eq!((pubs[0].first, pubs[0].last, pubs[0].records), (1, 3, 2));
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert!(batcher(Format::Cbor).build(vec![], 0).is_empty());
    }
}
