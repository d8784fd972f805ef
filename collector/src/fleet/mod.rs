//! The fleet engine: one task that owns every device's state.
//!
//! It receives each MQTT publish from the link task, decodes it, dedupes
//! records by sequence number, tracks presence, evaluates the rules, and
//! builds a [`Commit`]: what to store, which publishes to acknowledge once
//! stored, which retained alert sets to publish and which notifications to
//! send. The store thread commits it to SQLite and only then are the
//! publishes acknowledged to the broker, so a message the broker considers
//! delivered is always stored, whatever happens to this process.
//!
//! # Layout
//! - [`seq`]: per-device sequence accounting (pure).
//! - [`presence`]: online/offline state machine (pure).
//! - [`device`]: one device's state and what each record does to it.
//! - [`ingest`]: topic and payload decoding, refusal counters.
//! - [`query`]: read-only views the API asks for (and the command it sends).
//! - [`commands`]: sending commands (API, rule remedies), storing replies.

pub mod commands;
pub mod device;
mod ingest;
pub mod presence;
pub mod query;
pub mod seq;

use std::collections::BTreeMap;

// foldhash (seeded per process, as std's SipHash is) rather than SipHash:
// these maps are looked up several times a message by device id.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::time::{DelayQueue, delay_queue};
use tracing::{debug, info, warn};

use picket_protocol::{AlertSet, DeviceId, Format, Topics, VERSION};

use crate::commands::Issuer;
use crate::history::{AlertRow, DeviceRow, JournalEntry, PresenceRow, Snapshot, StateRow};
use crate::model::{MetricNames, Millis};
use crate::notify::{Change as NotifyChange, Notification};
use crate::pipeline::{Commit, Delivery};
use crate::rules::{DeviceCtx, Glob, Observation, RuleSet, Transition, TransitionKind};

use crate::clock::Clock;
use crate::counters::IngestCounters;
use device::{Device, Persisted};
use presence::{Input, Outcome};
use query::Query;
use seq::SeqTracker;

/// The engine's settings, from the validated configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub topics: Topics,
    pub max_payload: usize,
    pub presence_timeout: Duration,
    pub cooldown: Duration,
    pub rules: Arc<RuleSet>,
    /// Labels by device-id glob, first match wins.
    pub labels: Vec<(Glob, BTreeMap<String, String>)>,
    /// Encoding of the retained alert sets the engine publishes.
    pub format: Format,
    /// Builds the commands the API and rule remedies send.
    pub issuer: Arc<Issuer>,
}

/// Publishes handled per turn of the loop at most, so timers and API
/// queries are served between turns.
const MAX_BATCH: usize = 512;

/// Publishes gathered while the store is busy beyond which the engine
/// hands them over anyway (and waits for room): bounds a commit's size,
/// its latency and what a crash makes the broker redeliver.
const MAX_PENDING: usize = 8192;

/// The kind under which each device's [`Persisted`] state is stored.
const STATE_KIND: &str = "engine";

/// How often every device touched since the last checkpoint has its whole
/// [`Persisted`] state written. Between checkpoints a commit journals only
/// the sequence accounting of the devices it touched (a few bytes each)
/// and the whole state of those with a change that must not wait (presence,
/// alerts, births); a crash then loses no sequence accounting, and at most
/// this much of what else changes quietly with every message (last seen,
/// a rule condition starting to hold, which waits out its `for` again).
const CHECKPOINT_EVERY: Millis = 10_000;

pub struct Engine {
    cfg: EngineConfig,
    devices: HashMap<DeviceId, Device>,
    /// Devices handled since the last flush: the only ones whose state may
    /// need writing (a fleet of 10,000 is not scanned per batch).
    touched: HashSet<DeviceId>,
    /// Devices flushed since the last checkpoint: written whole at the next.
    unchecked: HashSet<DeviceId>,
    last_checkpoint: Millis,
    timers: DelayQueue<DeviceId>,
    /// Each device's timer and the deadline it is armed for.
    timer_keys: HashMap<DeviceId, (delay_queue::Key, Millis)>,
    clock: Clock,
    counters: Arc<IngestCounters>,
    inbound: mpsc::Receiver<Delivery>,
    queries: mpsc::Receiver<Query>,
    commits: mpsc::Sender<Commit>,
    pending: Commit,
    warn_limit: ingest::WarnLimit,
    names: MetricNames,
    /// The store's pace (None: hand every turn's work over at once).
    pace: Option<Arc<crate::pipeline::Pace>>,
    /// Cancelled when a stop gives up on the store: a hand-over waiting
    /// for room in its queue is dropped (unacknowledged, redelivered).
    abandon: tokio_util::sync::CancellationToken,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: EngineConfig,
        snapshot: Snapshot,
        clock: Clock,
        counters: Arc<IngestCounters>,
        inbound: mpsc::Receiver<Delivery>,
        queries: mpsc::Receiver<Query>,
        commits: mpsc::Sender<Commit>,
    ) -> Self {
        let mut engine = Engine {
            cfg,
            devices: HashMap::new(),
            touched: HashSet::new(),
            unchecked: HashSet::new(),
            last_checkpoint: 0,
            timers: DelayQueue::new(),
            timer_keys: HashMap::new(),
            clock,
            counters,
            inbound,
            queries,
            commits,
            pending: Commit::default(),
            warn_limit: ingest::WarnLimit::default(),
            names: MetricNames::default(),
            pace: None,
            abandon: tokio_util::sync::CancellationToken::new(),
        };
        engine.restore(snapshot);
        engine
    }

    fn restore(&mut self, snapshot: Snapshot) {
        let mut restored = 0usize;
        // The journal is newer than the state rows: its last entry for a
        // device is that device's sequence accounting.
        let mut journaled: HashMap<DeviceId, SeqTracker> = HashMap::new();
        for entry in snapshot.journal {
            match SeqTracker::decode(&entry.value) {
                Some(t) => {
                    journaled.insert(entry.device, t);
                }
                None => {
                    warn!(device = %entry.device, "journaled sequence accounting unreadable: skipped")
                }
            }
        }
        let mut state = snapshot.state;
        for id in journaled.keys() {
            state.entry(id.clone()).or_default();
        }
        for (id, entries) in state {
            let stored = entries.into_iter().find(|e| e.kind == STATE_KIND);
            let mut p: Persisted = match stored.map(|e| serde_json::from_str(&e.value)) {
                Some(Ok(p)) => p,
                Some(Err(e)) => {
                    warn!(device = %id, error = %e, "stored state unreadable: starting this device afresh");
                    Persisted::default()
                }
                None if journaled.contains_key(&id) => Persisted::default(),
                None => continue,
            };
            if let Some(seq) = journaled.remove(&id) {
                p.seq = seq;
            }
            let labels = self.labels_for(&id);
            let mut dev = Device::new(labels, p);
            // Re-assert the retained alert set: a broker restarted without
            // persistence would otherwise leave the box's LED wrong.
            let active: Vec<picket_protocol::Alert> =
                dev.p.rules.active().into_iter().map(Into::into).collect();
            if !active.is_empty() {
                let payload = self.alert_payload(&id, active.clone(), self.clock.now());
                self.pending
                    .alerts
                    .push((self.cfg.topics.alert(&id), payload));
            }
            dev.published = Some(active);
            self.devices.insert(id, dev);
            restored += 1;
        }
        let ids: Vec<DeviceId> = self.devices.keys().cloned().collect();
        for id in ids {
            self.reschedule(&id);
        }
        info!(devices = restored, "fleet state restored");
    }

    /// Hand work to the store when it is ready for it rather than after
    /// every turn (see [`crate::pipeline::Pace`]).
    pub fn paced_by(mut self, pace: Arc<crate::pipeline::Pace>) -> Self {
        self.pace = Some(pace);
        self
    }

    /// Give up handing work over once `abandon` is cancelled (see
    /// [`Engine::flush`]).
    pub fn abandoned_by(mut self, abandon: tokio_util::sync::CancellationToken) -> Self {
        self.abandon = abandon;
        self
    }

    /// Whether what is pending goes to the store now.
    fn hand_over(&self) -> bool {
        !self.pending.is_empty()
            && match &self.pace {
                None => true,
                Some(pace) => pace.idle() || self.pending.acks.len() >= MAX_PENDING,
            }
    }

    fn labels_for(&self, id: &DeviceId) -> BTreeMap<String, String> {
        self.cfg
            .labels
            .iter()
            .find(|(glob, _)| glob.matches(id.as_str()))
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }

    /// Run until `shutdown`, then store what was received and return.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        // A fleet gone quiet still gets its checkpoint.
        let mut checkpoints = tokio::time::interval(Duration::from_millis(CHECKPOINT_EVERY));
        checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                msg = self.inbound.recv() => {
                    let Some(msg) = msg else { break };
                    self.handle(msg);
                    let mut n = 1;
                    while n < MAX_BATCH {
                        match self.inbound.try_recv() {
                            Ok(msg) => self.handle(msg),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                }
                Some(expired) = std::future::poll_fn(|cx| self.timers.poll_expired(cx)) => {
                    let id = expired.into_inner();
                    self.timer_keys.remove(&id);
                    self.tick(&id);
                }
                q = self.queries.recv() => {
                    if let Some(q) = q {
                        self.answer(q);
                    }
                }
                _ = checkpoints.tick(), if !self.unchecked.is_empty() => {
                    self.flush(false).await;
                }
                // The store is done with its commit: hand over what gathered.
                _ = async {
                    match &self.pace {
                        Some(pace) => pace.became_idle().await,
                        None => std::future::pending().await,
                    }
                }, if !self.pending.is_empty() => {}
            }
            if self.hand_over() {
                self.flush(false).await;
            }
        }
        // Whatever was handled is stored (and then acknowledged); messages
        // still in the channel were never acknowledged: the broker keeps
        // them for our persistent session.
        self.flush(true).await;
    }

    /// Hand what was handled to the store. A checkpoint (due, or `last`
    /// at shutdown) writes the whole state of every device flushed since
    /// the previous one and drops the journal those rows supersede.
    async fn flush(&mut self, last: bool) {
        let mut whole = Vec::new();
        let mut journal = Vec::new();
        for id in self.touched.drain() {
            let Some(dev) = self.devices.get_mut(&id) else {
                continue;
            };
            if dev.dirty {
                whole.push(id.clone());
            }
            // Also with a whole row: at start-up the journal is replayed over
            // the rows, so an older entry must never be a device's last.
            if dev.dirty || dev.seq_dirty {
                let mut value = Vec::with_capacity(16);
                dev.p.seq.encode(&mut value);
                journal.push(JournalEntry {
                    device: id.clone(),
                    value,
                });
            }
            dev.dirty = false;
            dev.seq_dirty = false;
            if dev.seen_dirty {
                dev.seen_dirty = false;
                self.pending.batch.devices.push(DeviceRow {
                    device: id.clone(),
                    labels: dev.labels.clone(),
                    model: dev.p.model.clone(),
                    version: dev.p.version.clone(),
                    seen: dev.p.presence.last_seen,
                });
            }
            self.unchecked.insert(id);
        }
        let now = self.clock.now();
        // Forgetting a device frees its dictionary id, which SQLite may hand
        // to the next new device: no older journal row may outlive that.
        let due = last
            || now >= self.last_checkpoint + CHECKPOINT_EVERY
            || !self.pending.batch.forget.is_empty();
        if due && (!self.unchecked.is_empty() || !self.pending.batch.forget.is_empty()) {
            whole = self.unchecked.drain().collect();
            self.pending.batch.checkpoint = true;
            self.last_checkpoint = now;
        } else {
            self.pending.batch.journal = journal;
        }
        for id in whole {
            let Some(dev) = self.devices.get(&id) else {
                continue;
            };
            self.pending.batch.state.push(StateRow {
                device: id,
                kind: STATE_KIND.into(),
                key: String::new(),
                value: serde_json::to_string(&dev.p).ok(),
            });
        }
        let commit = std::mem::take(&mut self.pending);
        if commit.is_empty() {
            return;
        }
        // The store's queue is full while the database cannot write: the
        // engine waits (the broker's in-flight window then holds the rest
        // back), unless the collector is stopping and gave up on it.
        tokio::select! {
            sent = self.commits.send(commit) => if sent.is_err() {
                warn!("the store has stopped: nothing more can be stored");
            },
            _ = self.abandon.cancelled() => {
                warn!("stopping: work not stored is left to the broker's redelivery");
            }
        }
    }

    /// The device, created on first sight, and marked for the next flush.
    fn device(&mut self, id: &DeviceId) -> &mut Device {
        if !self.touched.contains(id) {
            self.touched.insert(id.clone());
        }
        if !self.devices.contains_key(id) {
            let labels = self.labels_for(id);
            let mut dev = Device::new(labels, Persisted::default());
            dev.seen_dirty = true;
            dev.dirty = true;
            info!(device = %id, "new device");
            self.devices.insert(id.clone(), dev);
        }
        self.devices.get_mut(id).expect("inserted above")
    }

    /// Re-arm the device's timer at its earliest deadline.
    fn reschedule(&mut self, id: &DeviceId) {
        let timeout = self.cfg.presence_timeout.as_millis() as Millis;
        let Some(dev) = self.devices.get(id) else {
            return;
        };
        let deadline = [
            dev.p.presence.deadline(timeout),
            dev.p.rules.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        match (deadline, self.timer_keys.get_mut(id)) {
            // Armed no later than needed: it fires early, finds nothing due
            // and re-arms. Every message moves the presence deadline later,
            // and a timer wheel update a message is what this saves.
            (Some(d), Some((_, at))) if *at <= d => {}
            (Some(d), Some((key, at))) => {
                self.timers.reset_at(key, self.clock.instant_at(d));
                *at = d;
            }
            (Some(d), None) => {
                let key = self.timers.insert_at(id.clone(), self.clock.instant_at(d));
                self.timer_keys.insert(id.clone(), (key, d));
            }
            (None, Some(_)) => {
                if let Some((key, _)) = self.timer_keys.remove(id) {
                    self.timers.remove(&key);
                }
            }
            (None, None) => {}
        }
    }

    fn tick(&mut self, id: &DeviceId) {
        let now = self.clock.now();
        let timeout = self.cfg.presence_timeout.as_millis() as Millis;
        let outcome = self
            .device(id)
            .p
            .presence
            .apply(Input::Tick { timeout }, now);
        self.presence_outcome(id, outcome, now);
        self.evaluate(id, &Observation::Tick, now);
        self.reschedule(id);
    }

    /// Record a presence outcome and feed it to the rules.
    fn presence_outcome(&mut self, id: &DeviceId, outcome: Outcome, now: Millis) {
        match outcome {
            Outcome::Changed(c) => {
                let dev = self.device(id);
                dev.dirty = true;
                dev.seen_dirty = true;
                match c.cause {
                    Some(cause) => info!(device = %id, reason = cause.as_str(), "offline"),
                    None => info!(device = %id, "online"),
                }
                self.pending.batch.presence.push(PresenceRow {
                    device: id.clone(),
                    ts: c.since,
                    online: c.online,
                    reason: c.cause.map(|r| r.as_str().to_string()),
                    session: c.session.clone(),
                });
                let obs = Observation::Presence {
                    online: c.online,
                    since: c.since,
                };
                self.evaluate(id, &obs, now);
            }
            Outcome::Unchanged => {}
            Outcome::StaleWill => {
                IngestCounters::add(&self.counters.stale_wills, 1);
                debug!(device = %id, "stale Last Will ignored");
            }
        }
    }

    /// Evaluate the rules on `obs`; record transitions, decide notifications
    /// and republish the device's alert set when it changed.
    fn evaluate(&mut self, id: &DeviceId, obs: &Observation<'_>, now: Millis) {
        let rules = Arc::clone(&self.cfg.rules);
        let cooldown = self.cfg.cooldown;
        let dev = self.device(id);
        let ctx = DeviceCtx {
            id,
            labels: &dev.labels,
        };
        let transitions = rules.evaluate(&ctx, &mut dev.p.rules, obs, now);
        // A presence change can change the active set without a transition
        // (other alerts suppressed while offline, back when online).
        let presence = matches!(obs, Observation::Presence { .. });
        if transitions.is_empty() && dev.published.is_some() && !presence {
            return;
        }
        dev.dirty = true;
        let mut notes = Vec::new();
        let mut rows = Vec::new();
        let fired: Vec<(String, Option<String>)> = transitions
            .iter()
            .filter(|t| t.kind == TransitionKind::Fired)
            .map(|t| (t.rule.clone(), t.instance.clone()))
            .collect();
        for t in &transitions {
            rows.push(alert_row(id, t));
            let key = alert_key(t);
            let change = match t.kind {
                TransitionKind::Fired => NotifyChange::Fired,
                TransitionKind::Escalated { .. } => NotifyChange::Escalated,
                TransitionKind::DeEscalated { .. } => NotifyChange::Deescalated,
                TransitionKind::Resolved => NotifyChange::Resolved,
            };
            if let Some(state) = dev.p.cooldowns.decide(&key, change, now, cooldown) {
                notes.push(Notification {
                    device: id.clone(),
                    labels: dev.labels.clone(),
                    rule: t.rule.clone(),
                    instance: t.instance.clone(),
                    severity: t.severity,
                    state,
                    value: Some(t.value),
                    message: t.message.clone(),
                    ts: t.at,
                });
            }
            match t.kind {
                TransitionKind::Resolved => {
                    info!(device = %id, rule = %key, "alert resolved")
                }
                _ => {
                    warn!(device = %id, rule = %key, severity = ?t.severity, message = %t.message, "alert")
                }
            }
        }
        let active: Vec<picket_protocol::Alert> =
            dev.p.rules.active().into_iter().map(Into::into).collect();
        let changed = dev.published.as_ref() != Some(&active);
        if changed {
            dev.published = Some(active.clone());
        }
        // Remedies after the rule state is settled: a remedy that could not
        // be sent is recorded with the alert, never retried blindly.
        for ((rule, instance), row) in fired
            .iter()
            .zip(rows.iter_mut().filter(|r| r.change == "fired"))
        {
            row.remedy = self.remedy(id, rule, instance.as_deref(), now);
        }
        self.pending.batch.alerts.extend(rows);
        self.pending.notifications.extend(notes);
        if changed {
            let payload = self.alert_payload(id, active, now);
            self.pending
                .alerts
                .push((self.cfg.topics.alert(id), payload));
        }
    }

    /// The retained alert set's payload; empty (which clears the retained
    /// message) when there is no active alert.
    fn alert_payload(
        &self,
        id: &DeviceId,
        alerts: Vec<picket_protocol::Alert>,
        now: Millis,
    ) -> Vec<u8> {
        if alerts.is_empty() {
            return Vec::new();
        }
        let set = AlertSet {
            v: VERSION,
            device: id.clone(),
            ts: now,
            alerts,
        };
        picket_protocol::encode(&set, self.cfg.format).unwrap_or_default()
    }
}

/// The alert's identity within its device: rule, or `rule:instance`.
fn alert_key(t: &Transition) -> String {
    match &t.instance {
        Some(i) => format!("{}:{i}", t.rule),
        None => t.rule.clone(),
    }
}

fn alert_row(id: &DeviceId, t: &Transition) -> AlertRow {
    let change = match t.kind {
        TransitionKind::Fired => "fired",
        TransitionKind::Escalated { .. } => "escalated",
        TransitionKind::DeEscalated { .. } => "deescalated",
        TransitionKind::Resolved => "resolved",
    };
    AlertRow {
        device: id.clone(),
        rule: t.rule.clone(),
        instance: t.instance.clone(),
        severity: t.severity,
        change: change.into(),
        value: Some(t.value),
        message: t.message.clone(),
        ts: t.at,
        remedy: None,
    }
}

#[cfg(test)]
mod tests;
