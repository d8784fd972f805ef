//! The store task: owns the disk [`Queue`] on a blocking thread so that no
//! fsync ever stalls the MQTT event loop, and assigns sequence numbers.
//!
//! Samples and events come in from the sampler; acknowledgements and read
//! requests from the uplink. After every change the store publishes a
//! [`StoreStatus`] on a watch channel (the uplink learns that records were
//! appended; the sampler reports queue health).

use picket_protocol::{Event, Format, Sample, encode};
use tokio::sync::{mpsc, watch};
use tracing::{error, warn};

use crate::queue::{NewRecord, Queue, QueueError, QueueStats, Record, RecordKind};

/// Something to append; the store sets its `seq`.
#[derive(Debug)]
pub enum Item {
    Sample(Box<Sample>),
    Event(Event),
}

/// Requests from the uplink.
#[derive(Debug)]
pub enum UplinkRequest {
    /// The broker acknowledged every record up to `through`.
    Ack { through: u64 },
    /// Read records from `from` on; answered on the read channel with the
    /// same `epoch` so stale answers (from before a reconnect) are dropped.
    Read {
        from: u64,
        max_records: usize,
        max_bytes: usize,
        epoch: u64,
    },
}

#[derive(Debug)]
pub struct ReadReply {
    pub epoch: u64,
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStatus {
    /// The highest seq appended so far (by this or an earlier run).
    pub appended_through: Option<u64>,
    pub stats: QueueStats,
    /// The last I/O error, if the disk is misbehaving.
    pub last_error: Option<String>,
    /// The seq of the first sample this process wrote to the queue (an
    /// update on trial commits once the broker acknowledged it).
    pub first_sample: Option<u64>,
}

impl StoreStatus {
    /// Age at `now` of the oldest record not yet sent, given how far the
    /// broker acknowledged. Records it acknowledged stay queued until the
    /// acknowledgement settles (`uplink.hold_acked`): while it has
    /// everything, nothing is unsent; else the oldest queued record's age,
    /// at most `hold_acked` more than the oldest unsent one's.
    pub fn oldest_unsent_ms(&self, broker_acked: Option<u64>, now: u64) -> Option<u64> {
        let unsent = self
            .appended_through
            .is_some_and(|a| broker_acked.is_none_or(|k| k < a));
        let oldest = self.stats.oldest_ts_ms.filter(|_| unsent)?;
        Some(now.saturating_sub(oldest))
    }
}

/// How long to wait before retrying a sync that failed.
const SYNC_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Store {
    queue: Queue,
    items: mpsc::Receiver<Vec<Item>>,
    requests: mpsc::Receiver<UplinkRequest>,
    replies: mpsc::Sender<ReadReply>,
    status: watch::Sender<StoreStatus>,
    last_error: Option<String>,
    first_sample: Option<u64>,
    /// After a failed sync the queue's deadline stays in the past: without a
    /// pause the store would retry in a tight loop on a failing card.
    retry_sync_at: Option<std::time::Instant>,
}

impl Store {
    pub fn new(
        queue: Queue,
        items: mpsc::Receiver<Vec<Item>>,
        requests: mpsc::Receiver<UplinkRequest>,
        replies: mpsc::Sender<ReadReply>,
        status: watch::Sender<StoreStatus>,
    ) -> Self {
        let store = Store {
            queue,
            items,
            requests,
            replies,
            status,
            last_error: None,
            first_sample: None,
            retry_sync_at: None,
        };
        store.publish_status();
        store
    }

    /// Run until both the sampler and the uplink have hung up, then close
    /// the queue (final sync, exact next seq persisted). Blocking: call from
    /// `spawn_blocking`.
    pub fn run(mut self, rt: tokio::runtime::Handle) -> Result<(), QueueError> {
        let mut items_open = true;
        let mut requests_open = true;
        while items_open || requests_open {
            let deadline = match (self.queue.sync_deadline(), self.retry_sync_at) {
                (Some(d), Some(r)) => Some(d.max(r)),
                (d, _) => d,
            };
            let next = rt.block_on(async {
                let sleep = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    // Acks first: they may make the coming sync unnecessary.
                    biased;
                    r = self.requests.recv(), if requests_open => Next::Request(r),
                    i = self.items.recv(), if items_open => Next::Items(i),
                    () = sleep => Next::SyncDue,
                }
            });
            match next {
                Next::Request(None) => requests_open = false,
                Next::Items(None) => items_open = false,
                Next::Request(Some(r)) => self.handle(r),
                Next::Items(Some(items)) => self.append(items),
                Next::SyncDue => {
                    let r = self.queue.sync();
                    self.retry_sync_at = r.is_err().then(|| std::time::Instant::now() + SYNC_RETRY);
                    self.note(r);
                }
            }
            self.publish_status();
        }
        self.queue.close()
    }

    fn handle(&mut self, req: UplinkRequest) {
        match req {
            UplinkRequest::Ack { through } => {
                let r = self.queue.ack(through);
                self.note(r);
            }
            UplinkRequest::Read {
                from,
                max_records,
                max_bytes,
                epoch,
            } => {
                let records = match self.queue.read(from, max_records, max_bytes) {
                    Ok(r) => r,
                    Err(e) => {
                        self.note::<()>(Err(e));
                        Vec::new()
                    }
                };
                // The uplink always drains replies; a closed channel means it
                // has stopped, and then nobody needs the answer.
                let _ = self.replies.blocking_send(ReadReply { epoch, records });
            }
        }
    }

    fn append(&mut self, items: Vec<Item>) {
        let mut seq = self.queue.next_seq();
        let mut records = Vec::with_capacity(items.len());
        let mut first_sample = None;
        for item in items {
            let (kind, ts, payload) = match item {
                Item::Sample(mut s) => {
                    s.seq = seq;
                    (RecordKind::Sample, s.ts, encode(&s, Format::Cbor))
                }
                Item::Event(mut e) => {
                    e.seq = seq;
                    (RecordKind::Event, e.ts, encode(&e, Format::Cbor))
                }
            };
            match payload {
                Ok(payload) => {
                    if kind == RecordKind::Sample {
                        first_sample = first_sample.or(Some(seq));
                    }
                    records.push(NewRecord {
                        seq,
                        kind,
                        ts_ms: ts,
                        payload,
                    });
                    seq += 1;
                }
                Err(e) => error!(error = %e, "cannot encode a record; it is skipped"),
            }
        }
        match self.queue.append(&records) {
            Ok(dropped) => {
                if dropped > 0 {
                    warn!(
                        dropped,
                        total = self.queue.stats().dropped_total,
                        "queue full: oldest records dropped"
                    );
                }
                self.last_error = None;
                self.first_sample = self.first_sample.or(first_sample);
            }
            Err(e) => self.note::<()>(Err(e)),
        }
    }

    fn note<T>(&mut self, r: Result<T, QueueError>) {
        if let Err(e) = r {
            let msg = e.to_string();
            if self.last_error.as_deref() != Some(msg.as_str()) {
                error!(error = %msg, "disk queue error");
            }
            self.last_error = Some(msg);
        }
    }

    fn publish_status(&self) {
        let stats = self.queue.stats();
        let next = self.queue.next_seq();
        let status = StoreStatus {
            appended_through: next.checked_sub(1),
            stats,
            last_error: self.last_error.clone(),
            first_sample: self.first_sample,
        };
        self.status.send_if_modified(|old| {
            if *old == status {
                false
            } else {
                *old = status;
                true
            }
        });
    }
}

enum Next {
    Request(Option<UplinkRequest>),
    Items(Option<Vec<Item>>),
    SyncDue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_age_leaves_out_what_the_broker_has() {
        let status = |appended, oldest| StoreStatus {
            appended_through: appended,
            stats: QueueStats {
                oldest_ts_ms: oldest,
                ..QueueStats::default()
            },
            ..StoreStatus::default()
        };
        // (appended through, oldest record's ts, broker acked, age at 10 s)
        let table = [
            (None, None, None, None),
            (Some(5), Some(4_000), None, Some(6_000)),
            (Some(5), Some(4_000), Some(4), Some(6_000)),
            // All acknowledged, held until it settles: nothing unsent.
            (Some(5), Some(4_000), Some(5), None),
            (Some(5), Some(4_000), Some(9), None),
            (Some(5), None, Some(2), None),
            (Some(5), Some(12_000), Some(2), Some(0)),
        ];
        for (appended, oldest, acked, want) in table {
            assert_eq!(
                status(appended, oldest).oldest_unsent_ms(acked, 10_000),
                want,
                "{appended:?} {oldest:?} {acked:?}"
            );
        }
    }
}
