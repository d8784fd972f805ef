//! The sampler task: reads the sensors every `sampling.interval` and hands
//! the sample, and any events, to the store.

use std::time::Duration;

use picket_protocol::{AgentHealth, EventKind, GpioLevel};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::docker::DockerView;
use crate::liveness::Beacon;
use crate::sensors::Sensors;
use crate::sensors::clock::{Clock, unix_ms};
use crate::shutdown::Shutdown;
use crate::store::{Item, StoreStatus};
use crate::views::UplinkStatus;

/// The sensors and the clock travel together to the blocking thread that
/// reads them, and back.
struct Probe {
    sensors: Sensors,
    clock: Box<dyn Clock>,
}

pub struct Sampler {
    probe: Option<Probe>,
    interval: Duration,
    config_hash: String,
    /// Events to record before the first sample (agent started, queue
    /// recovery findings).
    startup: Vec<EventKind>,
    links: Links,
}

/// The sampler's channels: where its items go, the state it reads and
/// publishes, its stop signal and its watchdog beacon.
pub struct Links {
    pub items: mpsc::Sender<Vec<Item>>,
    pub store: watch::Receiver<StoreStatus>,
    /// How far the broker acknowledged (for the backlog's age).
    pub uplink: watch::Receiver<UplinkStatus>,
    /// Whether the clock was synchronised at the last sample (for the LED
    /// and `status`).
    pub clock_synced: watch::Sender<bool>,
    /// The GPIO inputs' levels, kept by the GPIO task.
    pub gpio: watch::Receiver<Vec<GpioLevel>>,
    /// The Docker watcher's view, when Docker is enabled.
    pub docker: Option<watch::Receiver<DockerView>>,
    pub shutdown: Shutdown,
    pub beacon: Beacon,
}

impl Sampler {
    pub fn new(
        sensors: Sensors,
        clock: Box<dyn Clock>,
        interval: Duration,
        config_hash: String,
        startup: Vec<EventKind>,
        links: Links,
    ) -> Self {
        Sampler {
            probe: Some(Probe { sensors, clock }),
            interval,
            config_hash,
            startup,
            links,
        }
    }

    pub async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.interval);
        // After a stall (suspended VM, slow SD card) take one sample and go
        // on, rather than a burst of catch-up samples with the same data.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = tokio::time::interval(Duration::from_secs(1));
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.links.shutdown.clone();
        let mut dropped_seen = self.links.store.borrow().stats.dropped_total;

        let startup = std::mem::take(&mut self.startup);
        if let (false, Some(probe)) = (startup.is_empty(), self.probe.as_mut()) {
            let stamp = probe.clock.stamp();
            let items = startup.into_iter().map(|k| Item::Event(stamp.event(k)));
            if self.links.items.send(items.collect()).await.is_err() {
                return;
            }
        }

        loop {
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                _ = ticker.tick() => {
                    let Some(items) = self.take_sample(&mut dropped_seen).await else {
                        break;
                    };
                    if self.links.items.send(items).await.is_err() {
                        break;
                    }
                    self.links.beacon.beat();
                }
                _ = beat.tick() => self.links.beacon.beat(),
            }
        }

        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        let stamp = probe.clock.stamp();
        let stopping = vec![Item::Event(stamp.event(EventKind::AgentStopping))];
        // Kept in the queue if the uplink cannot send it before it stops:
        // the next run delivers it.
        let _ = self.links.items.send(stopping).await;
        info!("sampler stopped");
    }

    /// Read every sensor off the async threads: a sensor may block (a slow
    /// `systemctl`, a stuck filesystem), the runtime must not.
    async fn take_sample(&mut self, dropped_seen: &mut u64) -> Option<Vec<Item>> {
        let mut probe = self.probe.take()?;
        let joined = tokio::task::spawn_blocking(move || {
            let stamp = probe.clock.stamp();
            let (sample, events) = probe.sensors.sample(&stamp);
            (probe, stamp, sample, events)
        })
        .await;
        let (probe, stamp, mut sample, events) = match joined {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "sensor thread failed");
                return None;
            }
        };
        self.probe = Some(probe);
        self.links.clock_synced.send_if_modified(|synced| {
            let changed = *synced != stamp.sync;
            *synced = stamp.sync;
            changed
        });
        sample.gpio = self.links.gpio.borrow().clone();
        if let Some(docker) = &self.links.docker {
            // Read with no await between here and the send: on the agent's
            // single-threaded runtime the watcher cannot queue an event in
            // between, so no sample carries a state older than an event
            // queued before it. (`engine` is None before the first attempt
            // to reach the engine: nothing is known yet.)
            let view = docker.borrow();
            sample.docker = view.engine;
            sample.containers = view.containers.clone();
        }

        let status = self.links.store.borrow().clone();
        let mut items: Vec<Item> = events
            .into_iter()
            .map(|k| Item::Event(stamp.event(k)))
            .collect();
        if status.stats.dropped_total > *dropped_seen {
            items.push(Item::Event(stamp.event(EventKind::QueueDropped {
                records: status.stats.dropped_total - *dropped_seen,
                total_dropped: status.stats.dropped_total,
            })));
            *dropped_seen = status.stats.dropped_total;
        }
        sample.agent = Some(AgentHealth {
            version: crate::VERSION.into(),
            config: self.config_hash.clone(),
            queue_records: status.stats.records,
            queue_bytes: status.stats.bytes,
            oldest_unsent_ms: status
                .oldest_unsent_ms(self.links.uplink.borrow().acked_through, unix_ms()),
            dropped: status.stats.dropped_total,
            quarantined: status.stats.quarantined_total,
        });
        items.push(Item::Sample(Box::new(sample)));
        Some(items)
    }
}
