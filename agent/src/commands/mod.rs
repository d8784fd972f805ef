//! The command service: remote commands from `{prefix}/v1/{device}/cmd/+`,
//! checked, journaled, run, and answered on `.../reply/{id}`.
//!
//! The uplink owns the MQTT session: it subscribes to the device's command
//! topic on every connection (the session is persistent, so commands sent
//! while the device is offline wait at the broker) and hands each command
//! publish to this task over a bounded channel. Replies go back to the
//! uplink over another bounded channel and are published directly at QoS 1,
//! not through the disk queue: a status is about this moment, and what must
//! survive a crash — "this command was accepted, never run it again" — is in
//! the journal, written before `accepted` is sent.
//!
//! For every command: `rejected` with a reason and nothing done, or
//! `accepted`, then `running` once a slot among `commands.concurrency` is
//! free, then `succeeded` or `failed` (with output; beyond one chunk the
//! earlier chunks come as `running` replies with their `chunk` index).
//!
//! # Layout
//! - [`admit`]: the pure checks and their order ([`admit::Rejection`]).
//! - [`journal`]: the on-disk set of accepted ids.
//! - [`registry`]: **where each command is implemented** — add a command
//!   there (and its [`picket_protocol::Action`] variant).
//! - [`exec`], [`files`], [`sysinfo`], [`config_update`], [`docker`]: what
//!   the commands do; [`output`]: bounding and chunking. `agent.update` is
//!   in [`crate::update`].

pub mod admit;
pub mod config_update;
pub mod docker;
pub mod exec;
pub mod files;
pub mod journal;
pub mod output;
pub mod registry;
pub mod sysinfo;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use picket_protocol::{Command, DeviceId, Reply, ReplyState, VERSION};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::CommandsConfig;
use crate::download::Downloader;
use crate::sensors::SensorConfig;
use crate::sensors::clock::{Clock, SystemClock, unix_ms};
use crate::shutdown::{Shutdown, Trigger};
use crate::views::{Inbound, Link, UplinkStatus};
use admit::{Context, Rejection};
use journal::Journal;

/// How long running commands get to finish when the agent stops, before
/// they are cancelled (their children killed) and reported failed. Part of
/// the agent's stop budget ([`crate::STOP_LIMIT`]), which the uplink's
/// goodbye and the queue's close share.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// What a command came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded(String),
    Failed {
        reason: String,
        output: String,
    },
    /// The final status is sent later (after a restart, by `config.update`).
    Deferred(String),
}

impl Outcome {
    pub fn failed(reason: impl Into<String>) -> Outcome {
        Outcome::Failed {
            reason: reason.into(),
            output: String::new(),
        }
    }
}

/// What handlers share.
#[derive(Debug)]
pub struct Ctx {
    pub cfg: CommandsConfig,
    pub device: DeviceId,
    pub sensors: SensorConfig,
    pub downloader: Downloader,
    /// Asks the agent to stop and start again (onto a new configuration).
    pub restart: Trigger,
    pub peripherals: Peripherals,
    pub update: SelfUpdate,
}

/// What `agent.update` needs: the update directory, and the way to hand
/// over to the launcher once a new version is installed.
#[derive(Debug, Clone)]
pub struct SelfUpdate {
    pub updates: Arc<crate::update::Updates>,
    pub relaunch: Arc<Trigger>,
}

/// What the LED and GPIO commands act on.
#[derive(Clone)]
pub struct Peripherals {
    /// The status LED's identify request (`led.identify`).
    pub identify: crate::led::Identify,
    /// The configured GPIO outputs (`gpio.write`).
    pub gpio: crate::gpio::GpioOutputs,
    /// The Docker engine and scope (`docker.*`).
    pub docker: crate::docker::Handle,
}

impl std::fmt::Debug for Peripherals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peripherals")
            .field("identify", &self.identify)
            .field("gpio_outputs", &self.gpio.names())
            .field("docker", &self.docker)
            .finish()
    }
}

pub struct CommandService {
    ctx: Arc<Ctx>,
    journal: Result<Arc<Mutex<Journal>>, String>,
    clock: SystemClock,
    inbound: mpsc::Receiver<Inbound>,
    replies: mpsc::Sender<Reply>,
    uplink: watch::Receiver<UplinkStatus>,
    stop: Shutdown,
}

impl CommandService {
    /// Opens the journal (blocking). Without a journal the service still
    /// answers, refusing every command: running one it could not record
    /// might run it twice.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: CommandsConfig,
        device: DeviceId,
        sensors: SensorConfig,
        inbound: mpsc::Receiver<Inbound>,
        replies: mpsc::Sender<Reply>,
        uplink: watch::Receiver<UplinkStatus>,
        restart: Trigger,
        peripherals: Peripherals,
        update: SelfUpdate,
        stop: Shutdown,
    ) -> CommandService {
        let journal = Journal::open(&cfg.state_dir, cfg.journal_entries, unix_ms())
            .map(|j| Arc::new(Mutex::new(j)))
            .map_err(|e| {
                warn!(error = %e, "command journal unavailable: every command will be refused");
                e.to_string()
            });
        let clock = SystemClock::new(&sensors.host_root);
        let downloader =
            Downloader::new(cfg.file_ca_pem.as_deref(), cfg.file_max_bytes, cfg.timeout);
        CommandService {
            ctx: Arc::new(Ctx {
                cfg,
                device,
                sensors,
                downloader,
                restart,
                peripherals,
                update,
            }),
            journal,
            clock,
            inbound,
            replies,
            uplink,
            stop,
        }
    }

    pub async fn run(mut self) {
        let slots = Arc::new(Semaphore::new(self.ctx.cfg.concurrency));
        let mut tasks = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut stop = self.stop.clone();
        if let Some(marker) = config_update::pending(&self.ctx.cfg.state_dir) {
            let settle = settle_update(
                marker,
                Arc::clone(&self.ctx),
                self.uplink.clone(),
                self.replies.clone(),
            );
            // It may wait for the broker for a long time: a stop ends it at
            // once (the next start settles it), not after the grace.
            let mut stop = stop.clone();
            let handle = tasks.spawn(async move {
                tokio::select! {
                    () = stop.wait() => {}
                    () = settle => {}
                }
            });
            running.insert(handle.id(), String::new());
        }
        loop {
            tokio::select! {
                biased;
                () = stop.wait() => break,
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    if let Ok((id, ())) = done {
                        running.remove(&id);
                    }
                }
                msg = self.inbound.recv() => {
                    let Some(msg) = msg else { break };
                    // With the stop too: the checks run on a blocking
                    // thread, and the `accepted` reply waits for room in a
                    // channel the uplink drains only while connected.
                    let admitted = tokio::select! {
                        biased;
                        () = stop.wait() => break,
                        cmd = self.admit(msg) => cmd,
                    };
                    if let Some(cmd) = admitted {
                        let handle = tasks.spawn(execute(
                            cmd.clone(),
                            Arc::clone(&self.ctx),
                            Arc::clone(&slots),
                            self.replies.clone(),
                        ));
                        running.insert(handle.id(), cmd.id);
                    }
                }
            }
        }
        // Let running commands finish briefly, then cancel and say so.
        let _ = tokio::time::timeout(STOP_GRACE, async {
            while let Some(done) = tasks.join_next_with_id().await {
                if let Ok((id, ())) = done {
                    running.remove(&id);
                }
            }
        })
        .await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for id in running.into_values().filter(|id| !id.is_empty()) {
            let r = reply(
                &self.ctx.device,
                &id,
                ReplyState::Failed,
                Some("cancelled: the agent is stopping".into()),
                None,
                None,
            );
            let _ = self.replies.try_send(r);
        }
    }

    /// Check one publish; `accepted` and `Some` when it may run, else a
    /// `rejected` reply and `None`.
    async fn admit(&mut self, msg: Inbound) -> Option<Command> {
        let result = self.check(&msg).await;
        let (state, reason, cmd) = match result {
            Ok((cmd, note)) => (ReplyState::Accepted, note, Some(cmd)),
            Err(r) => {
                warn!(id = %msg.id, reason = %r, "command rejected");
                (ReplyState::Rejected, Some(r.to_string()), None)
            }
        };
        if let Some(c) = &cmd {
            info!(id = %c.id, name = c.action.name(), "command accepted");
        }
        let r = reply(&self.ctx.device, &msg.id, state, reason, None, None);
        let _ = self.replies.send(r).await;
        cmd
    }

    async fn check(&mut self, msg: &Inbound) -> Result<(Command, Option<String>), Rejection> {
        let journal = self.journal.clone().map_err(Rejection::Busy)?;
        let stamp = self.clock.stamp();
        let cfg = &self.ctx.cfg;
        let (cmd, note) = {
            let j = journal
                .lock()
                .map_err(|_| Rejection::Busy("command journal poisoned".into()))?;
            let ctx = Context {
                device: &self.ctx.device,
                key: cfg.public_key.as_ref(),
                allowed: &cfg.allowed,
                now: stamp.ts,
                synced: stamp.sync || cfg.trust_clock,
                floor: j.floor(),
                max_skew_ms: cfg.max_clock_skew.as_millis() as u64,
            };
            let cmd = admit::admit(&msg.id, msg.retained, &msg.payload, &ctx, |id| {
                j.contains(id)
            })?;
            (cmd, admit::clock_note(&ctx))
        };
        let ctx = Arc::clone(&self.ctx);
        let now = stamp.ts;
        let c = cmd.clone();
        // Device checks (paths, a new config) and the fsync of the journal
        // happen on a blocking thread: this runtime also runs the uplink.
        tokio::task::spawn_blocking(move || {
            registry::validate(&c.action, &ctx)
                .map_err(|e| Rejection::InvalidArgs(e.to_string()))?;
            let mut j = journal
                .lock()
                .map_err(|_| Rejection::Busy("command journal poisoned".into()))?;
            j.record(&c.id, c.issued, c.expires, now)
                .map_err(|e| Rejection::Busy(e.to_string()))
        })
        .await
        .map_err(|e| Rejection::Busy(e.to_string()))??;
        Ok((cmd, note))
    }
}

/// Run one accepted command and report it.
async fn execute(cmd: Command, ctx: Arc<Ctx>, slots: Arc<Semaphore>, replies: mpsc::Sender<Reply>) {
    let Ok(_slot) = slots.acquire_owned().await else {
        return;
    };
    let dev = &ctx.device;
    let _ = replies
        .send(reply(dev, &cmd.id, ReplyState::Running, None, None, None))
        .await;
    // Streaming commands write into the sink while they run; the others'
    // output goes through it when they return. Either way the chunks are
    // numbered in order and the last one travels with the final status.
    let mut out = output::Sink::new(
        replies.clone(),
        dev.clone(),
        cmd.id.clone(),
        ctx.cfg.output_max,
    );
    let run = registry::run(&cmd, &ctx, &mut out);
    let outcome = match tokio::time::timeout(ctx.cfg.timeout, run).await {
        Ok(o) => o,
        Err(_) => Outcome::failed(format!(
            "timed out after {} s (commands.timeout)",
            ctx.cfg.timeout.as_secs()
        )),
    };
    let (state, reason, output) = match outcome {
        Outcome::Succeeded(out) => (ReplyState::Succeeded, None, out),
        Outcome::Failed { reason, output } => (ReplyState::Failed, Some(reason), output),
        Outcome::Deferred(note) => {
            let _ = replies
                .send(reply(
                    dev,
                    &cmd.id,
                    ReplyState::Running,
                    Some(note),
                    None,
                    None,
                ))
                .await;
            return;
        }
    };
    match &state {
        ReplyState::Succeeded => info!(id = %cmd.id, name = cmd.action.name(), "command succeeded"),
        _ => warn!(id = %cmd.id, name = cmd.action.name(), reason = ?reason, "command failed"),
    }
    out.write_last(&output).await;
    let (last, chunk) = out.finish();
    let _ = replies
        .send(reply(dev, &cmd.id, state, reason, last, chunk))
        .await;
}

/// Finish a `config.update` begun before the last restart.
async fn settle_update(
    marker: config_update::Marker,
    ctx: Arc<Ctx>,
    mut uplink: watch::Receiver<UplinkStatus>,
    replies: mpsc::Sender<Reply>,
) {
    let connected = |s: &UplinkStatus| matches!(s.link, Link::Connected { .. });
    let state_dir = ctx.cfg.state_dir.clone();
    let dev = &ctx.device;
    match marker.phase {
        config_update::Phase::Trial => {
            let limit = ctx.cfg.rollback_after;
            let up =
                tokio::time::timeout(limit, async { uplink.wait_for(connected).await.is_ok() })
                    .await;
            if up == Ok(true) {
                info!(id = %marker.id, "new configuration connected: keeping it");
                let _ =
                    tokio::task::spawn_blocking(move || config_update::finish(&state_dir)).await;
                let r = reply(
                    dev,
                    &marker.id,
                    ReplyState::Succeeded,
                    None,
                    Some("running on the new configuration".into()),
                    None,
                );
                let _ = replies.send(r).await;
                return;
            }
            if up.is_ok() {
                // The uplink stopped (agent stopping): decide next time.
                return;
            }
            warn!(id = %marker.id, after = ?limit, "new configuration cannot reach the broker: rolling back");
            let Some(path) = ctx.cfg.config_path.clone() else {
                return;
            };
            let m = marker.clone();
            let rolled = tokio::task::spawn_blocking(move || {
                config_update::roll_back(&path, &state_dir, &m)
            })
            .await;
            match rolled {
                Ok(Ok(())) => ctx.restart.fire(),
                Ok(Err(e)) => warn!(error = %e, "rollback failed"),
                Err(e) => warn!(error = %e, "rollback failed"),
            }
        }
        config_update::Phase::RolledBack => {
            let up = uplink.wait_for(connected).await.is_ok();
            if !up {
                return;
            }
            let limit = ctx.cfg.rollback_after.as_secs();
            let _ = tokio::task::spawn_blocking(move || config_update::finish(&state_dir)).await;
            let r = reply(
                dev,
                &marker.id,
                ReplyState::Failed,
                Some(format!(
                    "the new configuration could not reach the broker within {limit} s; \
                     the previous configuration was restored"
                )),
                None,
                None,
            );
            let _ = replies.send(r).await;
        }
    }
}

fn reply(
    device: &DeviceId,
    id: &str,
    state: ReplyState,
    reason: Option<String>,
    output: Option<String>,
    chunk: Option<u32>,
) -> Reply {
    Reply {
        v: VERSION,
        id: id.to_string(),
        device: device.clone(),
        state,
        reason,
        output,
        chunk,
        ts: unix_ms(),
    }
}
