//! The Docker watcher task: follows the engine's event stream (state and
//! health changes become events at once), lists the containers in scope
//! on every connection and once a minute (anything the stream missed),
//! reads CPU and memory at `docker.stats_interval`, and publishes the
//! result as a [`DockerView`] the sampler copies into every sample.
//!
//! When the engine cannot be reached the view says `unavailable`, one
//! warning is logged for the outage, a `docker` event records it, and the
//! watcher tries again with exponential backoff up to `docker.retry_max`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use picket_protocol::{Engine, EventKind};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::engine::{self, Client, ContainerEvent, EngineError};
use super::stats::{CpuCounters, cpu_percent};
use super::track::{self, Tracker};
use super::{DockerView, Handle, Shared};
use crate::backoff::Backoff;
use crate::config::DockerConfig;
use crate::sensors::clock::{Clock, unix_ms};
use crate::shutdown::Shutdown;
use crate::store::Item;

/// A full listing this often, besides the event stream.
const RESYNC: Duration = Duration::from_secs(60);

/// Why the engine is unavailable.
#[derive(Debug, thiserror::Error)]
enum Unavailable {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the engine closed its event stream")]
    Closed,
}

pub struct Watcher {
    cfg: DockerConfig,
    items: mpsc::Sender<Vec<Item>>,
    view: watch::Sender<DockerView>,
    client: watch::Sender<Option<Client>>,
    clock: Box<dyn Clock>,
    tracker: Tracker,
    /// Previous CPU counters per container id, for CPU %.
    cpu: HashMap<String, CpuCounters>,
    stop: Shutdown,
}

impl Watcher {
    /// The watcher and the handle the `docker.*` commands use.
    pub fn new(
        cfg: DockerConfig,
        items: mpsc::Sender<Vec<Item>>,
        clock: Box<dyn Clock>,
        stop: Shutdown,
    ) -> (Watcher, Handle, watch::Receiver<DockerView>) {
        let (view_tx, view_rx) = watch::channel(DockerView::default());
        let (client_tx, client_rx) = watch::channel(None);
        let handle = Handle {
            shared: Some(Arc::new(Shared {
                cfg: cfg.clone(),
                view: view_rx.clone(),
                client: client_rx,
            })),
        };
        let watcher = Watcher {
            cfg,
            items,
            view: view_tx,
            client: client_tx,
            clock,
            tracker: Tracker::default(),
            cpu: HashMap::new(),
            stop,
        };
        (watcher, handle, view_rx)
    }

    pub async fn run(mut self) {
        let mut backoff = Backoff::new(self.cfg.retry_max);
        let mut stop = self.stop.clone();
        let mut outage_logged = false;
        loop {
            let attempt = tokio::select! {
                biased;
                () = stop.wait() => break,
                c = Client::connect(&self.cfg.socket) => c,
            };
            let reason = match attempt {
                Ok(client) => {
                    backoff.reset();
                    outage_logged = false;
                    info!(socket = %self.cfg.socket.display(), "Docker engine reachable");
                    // Stopping cancels whatever request is under way: an
                    // engine that hangs must not hold the agent's exit.
                    tokio::select! {
                        biased;
                        () = stop.wait() => break,
                        reason = self.follow(client) => reason,
                    }
                }
                Err(e) => Unavailable::Engine(e),
            };
            self.client.send_replace(None);
            self.tracker.reset();
            self.cpu.clear();
            if !outage_logged {
                warn!(socket = %self.cfg.socket.display(), reason = %reason,
                      "Docker engine unavailable; retrying with backoff");
                outage_logged = true;
            } else {
                debug!(reason = %reason, "Docker engine still unavailable");
            }
            self.set_engine(Engine::Unavailable).await;
            let delay = backoff.next(rand::random::<f64>());
            tokio::select! {
                biased;
                () = stop.wait() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        info!("Docker watcher stopped");
    }

    /// Follow one connection until the engine goes away; why it went.
    async fn follow(&mut self, client: Client) -> Unavailable {
        let since = unix_ms() / 1000;
        let events = client.events(since.saturating_sub(1));
        tokio::pin!(events);
        if let Err(e) = self.resync(&client).await {
            return e.into();
        }
        self.client.send_replace(Some(client.clone()));
        self.set_engine(Engine::Available).await;
        let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + RESYNC, RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stats_every = self.cfg.stats_interval.unwrap_or(Duration::from_secs(3600));
        let mut stats = tokio::time::interval(stats_every);
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                e = events.next() => match e {
                    Some(Ok(e)) => {
                        if let Err(e) = self.on_event(&client, e).await {
                            return e.into();
                        }
                    }
                    Some(Err(e)) => return EngineError(e).into(),
                    None => return Unavailable::Closed,
                },
                _ = resync.tick() => {
                    if let Err(e) = self.resync(&client).await {
                        return e.into();
                    }
                }
                _ = stats.tick(), if self.cfg.stats_interval.is_some() => {
                    self.read_stats(&client).await;
                }
            }
        }
    }

    async fn on_event(&mut self, client: &Client, e: ContainerEvent) -> Result<(), EngineError> {
        if !track::worth_inspecting(&e.action) {
            return Ok(());
        }
        let signal = e.attributes.get("signal").map(String::as_str);
        if let Some(intent) = track::intent(&e.action, signal) {
            self.tracker.intent(&e.id, intent);
        }
        let events = if e.action == "destroy" {
            self.cpu.remove(&e.id);
            self.tracker.remove(&e.id).into_iter().collect()
        } else {
            match client.look(&e.id, &self.cfg.scope).await {
                Ok(Some(snap)) => self.tracker.observe(snap).into_iter().collect(),
                // Gone, or not (any more) in scope.
                Ok(None) => self.tracker.remove(&e.id).into_iter().collect(),
                Err(err) if engine::not_found(&err) => Vec::new(),
                Err(err) => return Err(err.into()),
            }
        };
        debug!(container = e.name(), action = %e.action, "engine event");
        self.publish(events).await;
        Ok(())
    }

    async fn resync(&mut self, client: &Client) -> Result<(), EngineError> {
        let snaps = client.list(&self.cfg.scope).await?;
        let events = self.tracker.resync(snaps);
        self.publish(events).await;
        Ok(())
    }

    async fn read_stats(&mut self, client: &Client) {
        for id in self.tracker.running() {
            match client.usage(&id).await {
                Ok(u) => {
                    let cpu = match (u.cpu, self.cpu.get(&id)) {
                        (Some(cur), Some(prev)) => cpu_percent(*prev, cur),
                        _ => None,
                    };
                    if let Some(cur) = u.cpu {
                        self.cpu.insert(id.clone(), cur);
                    }
                    self.tracker.set_usage(&id, cpu, u.mem, u.mem_limit);
                }
                Err(e) => debug!(container = engine::short(&id), error = %engine::describe(&e),
                                 "no stats"),
            }
        }
        let running = self.tracker.running();
        self.cpu.retain(|id, _| running.contains(id));
        self.publish(Vec::new()).await;
    }

    /// Send the events to the store at once, and refresh the view.
    async fn publish(&mut self, events: Vec<EventKind>) {
        let containers = self.tracker.containers();
        self.view.send_if_modified(|v| {
            let changed = v.containers != containers;
            v.containers = containers;
            changed
        });
        if events.is_empty() {
            return;
        }
        let stamp = self.clock.stamp();
        let items = events
            .into_iter()
            .map(|k| Item::Event(stamp.event(k)))
            .collect();
        let _ = self.items.send(items).await;
    }

    async fn set_engine(&mut self, engine: Engine) {
        let changed = self.view.borrow().engine != Some(engine);
        self.view.send_if_modified(|v| {
            let cleared = engine == Engine::Unavailable && !v.containers.is_empty();
            if cleared {
                v.containers.clear();
            }
            v.engine = Some(engine);
            changed || cleared
        });
        if changed {
            let stamp = self.clock.stamp();
            let item = Item::Event(stamp.event(EventKind::Docker { engine }));
            let _ = self.items.send(vec![item]).await;
        }
    }
}
