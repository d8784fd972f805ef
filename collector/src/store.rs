//! The store thread: commits the engine's batches to SQLite, then passes
//! on what may happen only once they are stored (acknowledging the
//! publishes to the broker, publishing alert sets, notifying), and prunes
//! history older than the retention period between batches.
//!
//! SQLite calls block (a commit can wait on the disk), so they run on their
//! own thread rather than on the runtime the MQTT event loop needs.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::Publish;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::fleet::Commit;
use crate::fleet::clock::Clock;
use crate::fleet::counters::IngestCounters;
use crate::history::Writer;
use crate::model::Millis;
use crate::notify::Notification;

/// What follows a stored batch.
#[derive(Debug, Default)]
pub struct Committed {
    pub acks: Vec<Publish>,
    pub alerts: Vec<(String, Vec<u8>)>,
    pub notifications: Vec<Notification>,
    pub commands: Vec<(String, Vec<u8>)>,
    pub published: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// How often old history is looked for, and how many rows one pruning
/// step deletes before the next batch gets its turn.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_CHUNK: usize = 5_000;

pub fn spawn(
    mut writer: Writer,
    mut commits: mpsc::Receiver<Commit>,
    done: mpsc::Sender<Committed>,
    counters: Arc<IngestCounters>,
    retention: Duration,
    clock: Clock,
) -> std::io::Result<JoinHandle<()>> {
    let rt = Handle::current();
    std::thread::Builder::new()
        .name("picket-store".into())
        .spawn(move || {
            let mut next_prune = Instant::now() + Duration::from_secs(5);
            let mut pruning = false;
            loop {
                let wait = if pruning {
                    Duration::ZERO
                } else {
                    next_prune.saturating_duration_since(Instant::now())
                };
                let got = rt.block_on(async { tokio::time::timeout(wait, commits.recv()).await });
                match got {
                    Ok(Some(commit)) => {
                        let committed = store(&mut writer, commit, &counters);
                        if rt.block_on(done.send(committed)).is_err() {
                            warn!("acknowledgements dropped: the MQTT link has stopped");
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        let cutoff = clock.now().saturating_sub(retention.as_millis() as Millis);
                        match writer.prune(cutoff, PRUNE_CHUNK) {
                            Ok(n) => {
                                pruning = n == PRUNE_CHUNK;
                                if n > 0 {
                                    info!(rows = n, "history pruned");
                                }
                            }
                            Err(e) => {
                                pruning = false;
                                warn!(error = %e, "pruning history failed");
                            }
                        }
                        if !pruning {
                            next_prune = Instant::now() + PRUNE_EVERY;
                        }
                    }
                }
            }
        })
}

/// Commit one batch, retrying until it is stored: the publishes in it are
/// not acknowledged before, so while the disk refuses (full, read-only)
/// the broker keeps them and nothing is lost.
fn store(writer: &mut Writer, commit: Commit, counters: &IngestCounters) -> Committed {
    let mut delay = Duration::from_millis(100);
    loop {
        match writer.commit(&commit.batch) {
            Ok(_) => {
                IngestCounters::add(&counters.commits, 1);
                return Committed {
                    acks: commit.acks,
                    alerts: commit.alerts,
                    notifications: commit.notifications,
                    commands: commit.commands,
                    published: commit.published,
                };
            }
            Err(e) => {
                IngestCounters::add(&counters.commit_errors, 1);
                error!(error = %e, retry_in = ?delay, "storing a batch failed; its messages stay unacknowledged");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
