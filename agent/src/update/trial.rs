//! The update task: on a version that is on trial, commit or fail within
//! `update.trial_window`; on any other version, decide a trial still
//! pending at once (by what runs: see [`State::decide_foreign_trial`]);
//! then send a pending outcome on the command's reply topic once
//! connected. Every state it finds is settled by it while it runs: it
//! sets a damaged state file aside and retries what it cannot write.
//!
//! "Proved itself" means the whole pipeline works: a sample taken by this
//! process went into the disk queue and the broker acknowledged it
//! (PubAck). A version that crashes, hangs (systemd's watchdog kills it),
//! cannot reach the broker, or stops before then is rolled back: the first
//! three by the launcher at the next start, the window by this task.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use picket_protocol::{DeviceId, Reply, ReplyState, VERSION as WIRE};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::Updates;
use super::disk::runs_from;
use super::state::{Foreign, Outcome, Report, State};
use crate::sensors::clock::unix_ms;
use crate::shutdown::{Shutdown, Trigger};
use crate::store::StoreStatus;
use crate::views::{Link, UplinkStatus};

pub struct UpdateTask {
    pub updates: Arc<Updates>,
    pub device: DeviceId,
    pub store: watch::Receiver<StoreStatus>,
    pub uplink: watch::Receiver<UplinkStatus>,
    pub replies: mpsc::Sender<Reply>,
    /// Re-execute the entry binary (the launcher rolls back).
    pub relaunch: Arc<Trigger>,
    pub stop: Shutdown,
    /// When this process started: the window counts from here.
    pub started: Instant,
}

/// The trial's end.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Committed,
    Failed,
    Stopping,
}

/// How long to wait before reading or writing the state again after an
/// error (a full or failing card): a trial or report left undecided would
/// refuse every later update, so this task keeps trying while it runs.
const RETRY: Duration = Duration::from_secs(10);

impl UpdateTask {
    pub async fn run(mut self) {
        let Some(state) = self.load().await else {
            return;
        };
        match &state.trial {
            Some(t) if t.to.version == crate::VERSION => match self.trial().await {
                Verdict::Committed => {}
                Verdict::Failed => {
                    self.relaunch.fire();
                    return;
                }
                Verdict::Stopping => return,
            },
            Some(t) => {
                let trial_file = self.updates.path_of(&t.to);
                match self.decide_foreign(trial_file).await {
                    None => return,
                    Some(Some(Foreign::Failed)) => {
                        self.relaunch.fire();
                        return;
                    }
                    Some(_) => {}
                }
            }
            None => {}
        }
        self.report().await;
    }

    /// The state, once it can be read; `None` when stopping first. A
    /// damaged file is set aside (the launcher does the same at the next
    /// start): an unreadable state must not refuse updates forever.
    async fn load(&self) -> Option<State> {
        let mut stop = self.stop.clone();
        loop {
            let updates = Arc::clone(&self.updates);
            match tokio::task::spawn_blocking(move || updates.load_or_set_aside()).await {
                Ok(Ok((state, damaged))) => {
                    if let Some(e) = damaged {
                        error!(error = %e, "update state set aside: starting from an empty one");
                    }
                    return Some(state);
                }
                Ok(Err(e)) => warn!(error = %e, retry_in = ?RETRY, "update state unreadable"),
                Err(_) => return None,
            }
            tokio::select! {
                () = stop.wait() => return None,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// Change the state with `f` until that is written; `None` when
    /// stopping first.
    async fn record<R: Send + 'static>(
        &self,
        f: impl Fn(&mut State) -> R + Send + Sync + 'static,
    ) -> Option<R> {
        let f = Arc::new(f);
        let mut stop = self.stop.clone();
        loop {
            let (updates, f) = (Arc::clone(&self.updates), Arc::clone(&f));
            match tokio::task::spawn_blocking(move || updates.modify(|s| f(s))).await {
                Ok(Ok(r)) => return Some(r),
                Ok(Err(e)) => warn!(error = %e, retry_in = ?RETRY, "cannot write the update state"),
                Err(_) => return None,
            }
            tokio::select! {
                () = stop.wait() => return None,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// A trial of another version is pending: decide it by what runs.
    /// `None` when stopping first; `Some(None)` when it was decided
    /// meanwhile (by another process on the same directory).
    async fn decide_foreign(&self, trial_file: PathBuf) -> Option<Option<Foreign>> {
        let runs_trial_file = tokio::task::spawn_blocking(move || runs_from(&trial_file))
            .await
            .unwrap_or(false);
        let decided = self
            .record(move |s| s.decide_foreign_trial(crate::VERSION, runs_trial_file))
            .await?;
        match decided {
            Some(Foreign::Failed) => {
                warn!(
                    version = crate::VERSION,
                    "this binary was installed under another version: failing its trial"
                );
            }
            Some(Foreign::RolledBack) => {
                warn!(
                    version = crate::VERSION,
                    "an update's trial was pending for another version: rolled back to this one"
                );
            }
            None => {}
        }
        Some(decided)
    }

    async fn trial(&mut self) -> Verdict {
        let window = self.updates.config().trial_window;
        let deadline = self.started + window;
        info!(version = crate::VERSION, window = ?window, "on trial: commits once a sample is acknowledged by the broker");
        let mut stop = self.stop.clone();
        loop {
            if proved(&self.store.borrow(), &self.uplink.borrow()) {
                return self.settle(true, String::new()).await;
            }
            tokio::select! {
                () = stop.wait() => return Verdict::Stopping,
                () = tokio::time::sleep_until(deadline) => {
                    let reason = missed(&self.uplink.borrow(), window.as_secs());
                    return self.settle(false, reason).await;
                }
                r = self.store.changed() => if r.is_err() { return Verdict::Stopping },
                r = self.uplink.changed() => if r.is_err() { return Verdict::Stopping },
            }
        }
    }

    async fn settle(&self, ok: bool, reason: String) -> Verdict {
        let updates = Arc::clone(&self.updates);
        let keep = updates.config().keep;
        let why = reason.clone();
        let done = tokio::task::spawn_blocking(move || {
            let own = crate::VERSION;
            let r = updates.modify(|s| {
                if ok {
                    (s.commit(own), s.prune(keep))
                } else {
                    (s.fail(own, why), Vec::new())
                }
            });
            if let Ok((_, gone)) = &r {
                for f in gone {
                    let _ = std::fs::remove_file(updates.bin_dir().join(f));
                }
            }
            r.map(|(changed, _)| changed)
        })
        .await;
        match (ok, done) {
            (true, Ok(Ok(true))) => {
                info!(version = crate::VERSION, "update committed");
                Verdict::Committed
            }
            (false, Ok(Ok(_))) => {
                warn!(version = crate::VERSION, %reason, "update trial failed: handing back to the launcher");
                Verdict::Failed
            }
            (_, Ok(Ok(false))) => Verdict::Committed,
            (_, Ok(Err(e))) => {
                // Not recorded: the launcher decides at the next start
                // (this start is on record: it rolls back).
                error!(error = %e, "cannot record the trial's outcome");
                Verdict::Failed
            }
            (_, Err(_)) => Verdict::Stopping,
        }
    }

    /// Send the pending outcome, if any, once connected; then forget it.
    async fn report(&mut self) {
        let Some(state) = self.load().await else {
            return;
        };
        let Some(Report { id, outcome }) = state.report else {
            return;
        };
        let connected = |s: &UplinkStatus| matches!(s.link, Link::Connected { .. });
        let mut stop = self.stop.clone();
        tokio::select! {
            () = stop.wait() => return,
            r = self.uplink.wait_for(connected) => if r.is_err() { return },
        }
        let (state, reason, output) = match &outcome {
            Outcome::Committed { .. } => (ReplyState::Succeeded, None, Some(outcome.text())),
            Outcome::RolledBack { .. } => (ReplyState::Failed, Some(outcome.text()), None),
        };
        let reply = Reply {
            v: WIRE,
            id: id.clone(),
            device: self.device.clone(),
            state,
            reason,
            // A one-chunk output, like any command's (the collector
            // reassembles output from chunks).
            chunk: output.as_ref().map(|_| 0),
            output,
            ts: unix_ms(),
        };
        // The channel is drained only while connected: the stop must not
        // wait for room in it.
        tokio::select! {
            () = stop.wait() => return,
            r = self.replies.send(reply) => if r.is_err() { return },
        }
        info!(%id, outcome = %outcome.text(), "agent.update outcome reported");
        self.record(move |s| s.reported(&id)).await;
    }
}

/// A sample of this process is in the queue and acknowledged.
fn proved(store: &StoreStatus, uplink: &UplinkStatus) -> bool {
    match (store.first_sample, uplink.acked_through) {
        (Some(first), Some(acked)) => acked >= first,
        _ => false,
    }
}

fn missed(uplink: &UplinkStatus, secs: u64) -> String {
    let why = match (&uplink.link, &uplink.last_error) {
        (Link::Connected { .. }, _) => {
            "connected, but no sample was acknowledged (queue or broker stalled)".to_string()
        }
        (_, Some(e)) => format!("broker not reached: {e}"),
        (_, None) => "broker not reached".to_string(),
    };
    format!(
        "{} had no sample acknowledged by the broker within {secs} s ({why})",
        crate::VERSION
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_needs_a_sample_of_this_run_acknowledged() {
        let store = |first| StoreStatus {
            first_sample: first,
            ..StoreStatus::default()
        };
        let uplink = |acked| UplinkStatus {
            acked_through: acked,
            ..UplinkStatus::connecting("mqtt://b")
        };
        let table = [
            (None, None, false),
            (None, Some(100), false),
            (Some(50), None, false),
            (Some(50), Some(49), false),
            (Some(50), Some(50), true),
            (Some(50), Some(70), true),
        ];
        for (first, acked, want) in table {
            assert_eq!(
                proved(&store(first), &uplink(acked)),
                want,
                "{first:?} {acked:?}"
            );
        }
    }

    #[test]
    fn a_missed_window_says_what_the_uplink_saw() {
        let mut u = UplinkStatus::connecting("mqtt://b");
        u.last_error = Some("connection refused".into());
        u.link = Link::Down {
            failure: crate::views::Failure::Unreachable,
            since_ms: 0,
        };
        let r = missed(&u, 120);
        assert!(
            r.ends_with("within 120 s (broker not reached: connection refused)"),
            "{r}"
        );
        u.link = Link::Connected { since_ms: 0 };
        assert!(missed(&u, 5).contains("connected, but no sample"));
    }
}
