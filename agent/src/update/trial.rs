//! The update task: on a version that is on trial, commit or fail within
//! `update.trial_window`; on any version, send a pending outcome on the
//! command's reply topic once connected.
//!
//! "Proved itself" means the whole pipeline works: a sample taken by this
//! process went into the disk queue and the broker acknowledged it
//! (PubAck). A version that crashes, hangs (systemd's watchdog kills it),
//! cannot reach the broker, or stops before then is rolled back: the first
//! three by the launcher at the next start, the window by this task.

use std::sync::Arc;

use picket_protocol::{DeviceId, Reply, ReplyState, VERSION as WIRE};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::Updates;
use super::state::{Outcome, Report};
use crate::shutdown::{Shutdown, Trigger};
use crate::store::StoreStatus;
use crate::uplink::{Link, UplinkStatus, unix_ms};

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

impl UpdateTask {
    pub async fn run(mut self) {
        let updates = Arc::clone(&self.updates);
        let state = match tokio::task::spawn_blocking(move || updates.load()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(error = %e, "update state unreadable");
                return;
            }
            Err(_) => return,
        };
        if state
            .trial
            .as_ref()
            .is_some_and(|t| t.to.version == crate::VERSION)
        {
            match self.trial().await {
                Verdict::Committed => {}
                Verdict::Failed => {
                    self.relaunch.fire();
                    return;
                }
                Verdict::Stopping => return,
            }
        }
        self.report().await;
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
        let updates = Arc::clone(&self.updates);
        let Ok(Ok(state)) = tokio::task::spawn_blocking(move || updates.load()).await else {
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
        if self.replies.send(reply).await.is_err() {
            return;
        }
        info!(%id, outcome = %outcome.text(), "agent.update outcome reported");
        let updates = Arc::clone(&self.updates);
        let _ = tokio::task::spawn_blocking(move || updates.modify(|s| s.reported(&id))).await;
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
            failure: crate::uplink::Failure::Unreachable,
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
