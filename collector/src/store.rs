//! The store thread: commits the engine's batches to SQLite, then passes
//! on what may happen only once they are stored (acknowledging the
//! publishes to the broker, publishing alert sets, notifying), and prunes
//! history older than the retention period between batches.
//!
//! SQLite calls block (a commit can wait on the disk), so they run on their
//! own thread rather than on the runtime the MQTT event loop needs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::counters::{IngestCounters, Refused};
use crate::history::{HistoryError, WriteBatch, Writer};
use crate::model::Millis;
use crate::pipeline::{Commit, Committed, Pace};

/// How often old history is looked for, and how many rows one pruning
/// step deletes before the next batch gets its turn.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_CHUNK: usize = 5_000;

/// At most this many of the engine's batches, or batches holding this many
/// publishes, go into one transaction: bounds a commit's latency and what
/// a crash makes the broker redeliver.
const GROUP_MAX_BATCHES: usize = 16;
const GROUP_MAX_PUBLISHES: usize = 4096;

/// The store thread's parts: the writer, its channels, and what it shares
/// with the engine and the stop.
pub struct Store {
    pub writer: Writer,
    /// The engine's batches, in order.
    pub commits: mpsc::Receiver<Commit>,
    /// What follows each stored group (acknowledgements first).
    pub done: mpsc::Sender<Committed>,
    pub counters: Arc<IngestCounters>,
    pub retention: Duration,
    pub clock: Clock,
    pub pace: Arc<Pace>,
    pub abandon: Abandon,
}

/// Start the store thread; it ends when the engine's channel closes or
/// the stop abandons a commit the database cannot take.
pub fn spawn(store: Store) -> std::io::Result<JoinHandle<()>> {
    let rt = Handle::current();
    std::thread::Builder::new()
        .name("picket-store".into())
        .spawn(move || store.run(&rt))
}

impl Store {
    /// The thread's loop: commit what comes, merge and prune between.
    fn run(mut self, rt: &Handle) {
        let mut prune = Pruning {
            next: Instant::now() + Duration::from_secs(5),
            busy: false,
        };
        loop {
            let wait = if prune.busy {
                Duration::ZERO
            } else {
                let next = self
                    .writer
                    .merge_deadline()
                    .map_or(prune.next, |m| m.min(prune.next));
                next.saturating_duration_since(Instant::now())
            };
            self.pace.set_idle(true);
            let got = rt.block_on(async { tokio::time::timeout(wait, self.commits.recv()).await });
            self.pace.set_idle(false);
            match got {
                Ok(Some(first)) => {
                    let group = self.group(first);
                    let Some(committed) = store(
                        &mut self.writer,
                        group,
                        &self.counters,
                        &self.clock,
                        &self.abandon,
                    ) else {
                        break;
                    };
                    if rt.block_on(self.done.send(committed)).is_err() {
                        warn!("acknowledgements dropped: the MQTT link has stopped");
                    }
                    // After the acknowledgements are on their way: a
                    // merge holds no message back.
                    merge(&mut self.writer);
                }
                Ok(None) => break,
                Err(_) if self.writer.merge_due() => merge(&mut self.writer),
                Err(_) if !prune.busy && Instant::now() < prune.next => {}
                Err(_) => self.prune(&mut prune),
            }
        }
    }

    /// Group commit: whatever queued while the previous transaction was
    /// being written goes into this one, so under load one sync to disk
    /// serves many batches.
    fn group(&mut self, first: Commit) -> Vec<Commit> {
        let mut group = vec![first];
        let mut publishes = group[0].acks.len();
        while group.len() < GROUP_MAX_BATCHES && publishes < GROUP_MAX_PUBLISHES {
            match self.commits.try_recv() {
                Ok(c) => {
                    publishes += c.acks.len();
                    group.push(c);
                }
                Err(_) => break,
            }
        }
        group
    }

    /// One step of pruning the history past the retention period.
    fn prune(&mut self, p: &mut Pruning) {
        let cutoff = self
            .clock
            .now()
            .saturating_sub(self.retention.as_millis() as Millis);
        match self.writer.prune(cutoff, PRUNE_CHUNK) {
            Ok(n) => {
                p.busy = n == PRUNE_CHUNK;
                if n > 0 {
                    info!(rows = n, "history pruned");
                }
            }
            Err(e) => {
                p.busy = false;
                warn!(error = %e, "pruning history failed");
            }
        }
        if !p.busy {
            p.next = Instant::now() + PRUNE_EVERY;
        }
    }
}

/// Where pruning is: when the next look is due, and whether the last
/// step found a full chunk (more to do: no wait before the next).
struct Pruning {
    next: Instant,
    busy: bool,
}

/// Move new samples into the history table once due. A failure leaves
/// them where they are (readers see them there): tried again later.
fn merge(writer: &mut Writer) {
    if !writer.merge_due() {
        return;
    }
    if let Err(e) = writer.merge() {
        warn!(error = %e, "merging new samples into the history failed; retrying later");
    }
}

/// Commit a group of batches, in order, as one transaction when it can.
///
/// - A failure of the store itself (disk full, I/O error, read-only file
///   system: [`HistoryError::is_store_failure`]) is retried until it
///   passes: the publishes are not acknowledged before, so the broker keeps
///   them and nothing is lost. `/healthz` says why meanwhile, and the
///   retries end when `abandon` is cancelled (the collector stopping):
///   then `None`, nothing acknowledged, all redelivered at the next start.
/// - A row the database refuses is one message's fault: the group is
///   stored batch by batch, and the batch holding the row is stored
///   without it (the row goes to the quarantine), so no message blocks
///   the others.
fn store(
    writer: &mut Writer,
    group: Vec<Commit>,
    counters: &IngestCounters,
    clock: &Clock,
    abandon: &Abandon,
) -> Option<Committed> {
    let (batches, committed) = unpack(group);
    let mut rest: &[WriteBatch] = &batches;
    // Whole group first; one batch at a time once a row was refused.
    let mut whole = true;
    let mut delay = RETRY_FIRST;
    while !rest.is_empty() {
        let attempt = if whole {
            writer.commit_all(rest).map(|_| rest.len())
        } else {
            writer.commit(&rest[0]).map(|_| 1)
        };
        let err = match attempt {
            Ok(n) => {
                rest = &rest[n..];
                recovered(counters, &mut delay);
                continue;
            }
            Err(e) => e,
        };
        if err.is_store_failure() {
            if cannot_store(counters, abandon, &err, &mut delay) {
                warn!("stopping with a commit not stored: the broker redelivers its messages");
                return None;
            }
            continue;
        }
        if whole {
            warn!(error = %err, batches = rest.len(), "a row of this group was refused; storing its batches one by one");
            whole = false;
            continue;
        }
        match writer.commit_salvaging(&rest[0], clock.now()) {
            Ok((_, dropped)) => {
                for d in &dropped {
                    counters.refuse(Refused::StoreRefused);
                    warn!(device = %d.device, row = %d.what, error = %d.error, "row refused by the database: quarantined, the rest of its batch stored");
                }
                rest = &rest[1..];
                recovered(counters, &mut delay);
            }
            Err(e) => {
                // Each row of a message has its own savepoint, so only the
                // store itself fails a salvage (or a bug in what the engine
                // writes unguarded: the journal, a forget): retried like a
                // store failure, shown on /healthz, nothing acknowledged.
                if cannot_store(counters, abandon, &e, &mut delay) {
                    return None;
                }
            }
        }
    }
    IngestCounters::add(&counters.commits, 1);
    counters
        .last_commit_ms
        .store(clock.now(), Ordering::Relaxed);
    Some(committed)
}

/// The group's batches, and what follows their commit, in order.
fn unpack(group: Vec<Commit>) -> (Vec<WriteBatch>, Committed) {
    let mut batches = Vec::with_capacity(group.len());
    let mut committed = Committed::default();
    for c in group {
        batches.push(c.batch);
        committed.acks.extend(c.acks);
        committed.alerts.extend(c.alerts);
        committed.notifications.extend(c.notifications);
        committed.commands.extend(c.commands);
        committed.published.extend(c.published);
    }
    (batches, committed)
}

/// The database failed to store: count it, show why (on `/healthz`) and
/// wait `delay`, doubled for the next time. True if the stop abandoned
/// the commit meanwhile.
fn cannot_store(
    counters: &IngestCounters,
    abandon: &Abandon,
    err: &HistoryError,
    delay: &mut Duration,
) -> bool {
    IngestCounters::add(&counters.commit_errors, 1);
    error!(error = %err, retry_in = ?*delay, "the database cannot store; nothing is acknowledged until it can");
    counters.set_store_failure(Some(err.to_string()));
    if abandon.wait(*delay) {
        return true;
    }
    *delay = (*delay * 2).min(RETRY_MAX);
    false
}

/// A commit went through: a store failure, if there was one, is over.
fn recovered(counters: &IngestCounters, delay: &mut Duration) {
    if *delay != RETRY_FIRST || counters.store_failure().is_some() {
        info!("the database stores again");
        counters.set_store_failure(None);
        *delay = RETRY_FIRST;
    }
}

/// First and longest wait between attempts at a commit the database failed.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Cancelled when the collector stops for good: the store gives up
/// retrying (what it holds stays unacknowledged) instead of holding the
/// stop up.
#[derive(Clone)]
pub struct Abandon {
    token: CancellationToken,
    rt: Handle,
}

impl Abandon {
    pub fn new(token: CancellationToken) -> Abandon {
        Abandon {
            token,
            rt: Handle::current(),
        }
    }

    /// Wait `delay` on this (non-runtime) thread; true if abandoned first.
    fn wait(&self, delay: Duration) -> bool {
        self.rt.block_on(async {
            tokio::select! {
                _ = self.token.cancelled() => true,
                _ = tokio::time::sleep(delay) => false,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{SampleRows, WriteBatch};
    use crate::model::{Metric, Point};

    fn batch(device: &str, seqs: &[u64]) -> WriteBatch {
        WriteBatch {
            samples: seqs
                .iter()
                .map(|&seq| SampleRows {
                    device: device.parse().expect("device id"),
                    seq,
                    ts: 1_000 + (seq % 1_000),
                    points: vec![Point {
                        metric: Metric::parse("cpu").expect("metric"),
                        value: 1.0,
                    }],
                    unsynced: None,
                })
                .collect(),
            ..WriteBatch::default()
        }
    }

    /// A group whose second batch holds a row the database refuses: every
    /// batch is stored (that one without the row), in order, and what
    /// follows the commit (here the alert sets) is passed on for all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn one_refused_row_does_not_block_its_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.db");
        let (mut writer, _) = crate::history::open(&path).expect("open");
        let group: Vec<Commit> = [
            batch("pi-1", &[0, 1]),
            batch("pi-2", &[0, 1 << 63, 2]),
            batch("pi-3", &[0]),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, b)| Commit {
            batch: b,
            alerts: vec![(format!("alert/{i}"), Vec::new())],
            ..Commit::default()
        })
        .collect();
        let counters = IngestCounters::default();
        let abandon = Abandon::new(CancellationToken::new());
        let committed = tokio::task::spawn_blocking(move || {
            let c = store(&mut writer, group, &counters, &Clock::system(), &abandon);
            (c, counters)
        })
        .await
        .expect("store thread");
        let (committed, counters) = committed;
        let committed = committed.expect("stored");
        let topics: Vec<&str> = committed.alerts.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(topics, ["alert/0", "alert/1", "alert/2"]);
        assert_eq!(counters.refused(Refused::StoreRefused), 1);
        assert_eq!(IngestCounters::get(&counters.commits), 1);
        assert_eq!(counters.store_failure(), None);
        let conn = rusqlite::Connection::open(&path).expect("sqlite");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM sample_new", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 5);
        let refused: String = conn
            .query_row("SELECT detail FROM refused", [], |r| r.get(0))
            .expect("quarantined");
        assert!(refused.contains("9223372036854775808"), "{refused}");
    }
}
