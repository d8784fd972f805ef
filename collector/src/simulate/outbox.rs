//! Records on their way out: the short queue a simulated agent keeps while
//! its link is down, and the MQTT messages records become.
//!
//! A real agent queues on disk for days; the simulator keeps a few dozen
//! records per device in memory (ten thousand devices share one process)
//! and drops the oldest beyond that, counting them as the agent does.

use std::collections::VecDeque;

use picket_protocol::{
    DeviceId, EncodeError, Event, EventBatch, Format, Sample, Telemetry, Topics, encode,
};

use super::device::{Backlog, Record};
use crate::model::Millis;

/// Records per published batch: keeps a JSON batch well under rumqttd's
/// default 20 KiB payload limit.
pub const MAX_BATCH: usize = 8;

/// Records held while disconnected, oldest dropped first.
#[derive(Debug)]
pub struct Outbox {
    records: VecDeque<(Millis, Record)>,
    cap: usize,
    dropped: u64,
}

impl Outbox {
    pub fn new(cap: usize) -> Self {
        Outbox {
            records: VecDeque::new(),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    pub fn push(&mut self, now: Millis, records: Vec<Record>) {
        for r in records {
            if self.records.len() == self.cap {
                self.records.pop_front();
                self.dropped += 1;
            }
            self.records.push_back((now, r));
        }
    }

    /// Everything held, oldest first; the queue is left empty (and its
    /// memory given back: most devices never need it again).
    pub fn take(&mut self) -> Vec<Record> {
        let out = std::mem::take(&mut self.records);
        out.into_iter().map(|(_, r)| r).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The queue as the agent's health figures report it at `now`.
    pub fn backlog(&self, now: Millis) -> Backlog {
        Backlog {
            records: self.records.len() as u64,
            oldest_ms: self.records.front().map(|(t, _)| now.saturating_sub(*t)),
            dropped: self.dropped,
        }
    }
}

/// Turns one device's records into payloads for its topics.
#[derive(Debug, Clone)]
pub struct Encoder {
    device: DeviceId,
    telemetry: String,
    event: String,
    format: Format,
}

/// Which topic a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Telemetry,
    Event,
}

impl Encoder {
    pub fn new(topics: &Topics, device: DeviceId, format: Format) -> Self {
        Encoder {
            telemetry: topics.telemetry(&device),
            event: topics.event(&device),
            device,
            format,
        }
    }

    pub fn topic(&self, channel: Channel) -> &str {
        match channel {
            Channel::Telemetry => &self.telemetry,
            Channel::Event => &self.event,
        }
    }

    /// Records (ascending by seq) as batches of at most [`MAX_BATCH`], one
    /// per run of the same kind so that each topic stays in seq order.
    /// `hist` marks them as history: sent late, not current state.
    pub fn encode(
        &self,
        records: Vec<Record>,
        hist: bool,
    ) -> Result<Vec<(Channel, Vec<u8>)>, EncodeError> {
        let mut out = Vec::new();
        let mut samples: Vec<Sample> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        for record in records {
            match record {
                Record::Sample(s) => {
                    if !events.is_empty() {
                        out.push(self.events(&mut events)?);
                    }
                    let mut s = *s;
                    s.hist = hist;
                    samples.push(s);
                    if samples.len() == MAX_BATCH {
                        out.push(self.samples(&mut samples)?);
                    }
                }
                Record::Event(mut e) => {
                    if !samples.is_empty() {
                        out.push(self.samples(&mut samples)?);
                    }
                    e.hist = hist;
                    events.push(e);
                    if events.len() == MAX_BATCH {
                        out.push(self.events(&mut events)?);
                    }
                }
            }
        }
        if !samples.is_empty() {
            out.push(self.samples(&mut samples)?);
        }
        if !events.is_empty() {
            out.push(self.events(&mut events)?);
        }
        Ok(out)
    }

    fn samples(&self, samples: &mut Vec<Sample>) -> Result<(Channel, Vec<u8>), EncodeError> {
        let batch = Telemetry::new(self.device.clone(), std::mem::take(samples));
        Ok((Channel::Telemetry, encode(&batch, self.format)?))
    }

    fn events(&self, events: &mut Vec<Event>) -> Result<(Channel, Vec<u8>), EncodeError> {
        let batch = EventBatch::new(self.device.clone(), std::mem::take(events));
        Ok((Channel::Event, encode(&batch, self.format)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_protocol::{DEFAULT_MAX_PAYLOAD, EventKind, decode};

    fn sample(seq: u64) -> Record {
        Record::Sample(Box::new(Sample {
            seq,
            ts: 1_700_000_000_000 + seq,
            mono: seq,
            boot: "b".into(),
            sync: true,
            hist: false,
            cpu: None,
            load: None,
            mem: None,
            swap: None,
            uptime: None,
            disks: vec![],
            net: vec![],
            thermal: vec![],
            throttle: None,
            services: vec![],
            gpio: Vec::new(),
            docker: None,
            containers: Vec::new(),
            agent: None,
        }))
    }

    fn event(seq: u64) -> Record {
        Record::Event(Event {
            seq,
            ts: 1_700_000_000_000 + seq,
            mono: seq,
            boot: "b".into(),
            sync: true,
            hist: false,
            kind: EventKind::ClockSynced,
        })
    }

    #[test]
    fn keeps_the_newest_and_counts_the_dropped() {
        let mut o = Outbox::new(3);
        assert_eq!(o.backlog(5), Backlog::default());
        o.push(10, vec![sample(1), sample(2)]);
        o.push(20, vec![sample(3), sample(4)]);
        assert_eq!(
            o.backlog(30),
            Backlog {
                records: 3,
                oldest_ms: Some(20),
                dropped: 1
            }
        );
        let seqs: Vec<u64> = o.take().iter().map(Record::seq).collect();
        assert_eq!(seqs, [2, 3, 4]);
        assert!(o.is_empty());
        assert_eq!(o.backlog(40).dropped, 1);
    }

    #[test]
    fn batches_runs_of_one_kind_in_order() {
        let device = DeviceId::new("sim-0001").expect("id");
        let enc = Encoder::new(&Topics::default(), device, Format::Json);
        assert_eq!(
            enc.topic(Channel::Telemetry),
            "picket/v1/sim-0001/telemetry"
        );
        assert_eq!(enc.topic(Channel::Event), "picket/v1/sim-0001/event");
        let mut records = vec![event(1), sample(2)];
        records.extend((3..=12).map(sample));
        records.push(event(13));
        records.push(event(14));
        let out = enc.encode(records, true).expect("encodes");
        let mut got = Vec::new();
        for (channel, payload) in &out {
            let seqs: Vec<u64> = match channel {
                Channel::Telemetry => {
                    let t: Telemetry = decode(payload, DEFAULT_MAX_PAYLOAD).expect("telemetry");
                    assert!(t.samples.iter().all(|s| s.hist));
                    t.samples.iter().map(|s| s.seq).collect()
                }
                Channel::Event => {
                    let b: EventBatch = decode(payload, DEFAULT_MAX_PAYLOAD).expect("events");
                    assert!(b.events.iter().all(|e| e.hist));
                    b.events.iter().map(|e| e.seq).collect()
                }
            };
            got.push((*channel, seqs));
        }
        assert_eq!(
            got,
            [
                (Channel::Event, vec![1]),
                (Channel::Telemetry, (2..=9).collect()),
                (Channel::Telemetry, vec![10, 11, 12]),
                (Channel::Event, vec![13, 14]),
            ]
        );
        assert!(enc.encode(vec![], false).expect("empty").is_empty());
    }
}
