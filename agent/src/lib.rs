//! picket-agent: samples a Raspberry Pi, keeps every sample in a durable disk
//! queue, and publishes it over MQTT until the broker acknowledged it.
//!
//! # Layout
//! - [`config`]: TOML + `PICKET_*` environment, validated into [`Config`].
//! - [`sensors`]: one module per data source, read under a configurable host
//!   root; the clock seam.
//! - [`queue`]: the on-disk segment log (store-and-forward), synchronous.
//! - [`views`]: what the tasks publish for each other (the uplink's link
//!   state, the collector's alert set, inbound command publishes).
//! - Long-lived tasks joined by bounded channels, started by [`run`]:
//!   [`sampler`] (sensors → store), [`store`] (owns the queue on a blocking
//!   thread), [`uplink`] (owns the MQTT event loop) and [`commands`] (remote
//!   commands: checks, journal, execution; its `registry` is where a command
//!   is implemented).
//! - [`led`]: the status LED (pure pattern table, the task playing it,
//!   sysfs/GPIO backends) and the `led.identify` handle.
//! - [`gpio`]: GPIO inputs (edges → events, levels → samples) and outputs
//!   for `gpio.write`, through the kernel's character device.
//! - [`docker`]: the Docker watcher (containers in scope → samples, their
//!   changes → events) and the engine client the `docker.*` commands use.
//! - [`status`]: the local status socket and `picket-agent status`;
//!   [`doctor`]: `picket-agent doctor`'s checks.
//! - [`testing`]: simulated hardware (GPIO chip, LED) for tests.
//! - [`systemd`]: readiness and watchdog notifications.
//! - [`shutdown`], [`liveness`]: the stop signal and the watchdog's beacons.
//! - [`update`]: `agent.update`: install, the launcher the entry binary
//!   runs at every start, the trial that commits or rolls back.
//! - [`first_boot`]: the configuration a technician left on the SD card's
//!   boot partition, installed before the configuration is loaded.
//! - Helpers several tasks share, below all of them: [`backoff`]
//!   (reconnection delays), [`durable`] (atomic writes, directory sync),
//!   [`download`] (checked HTTPS downloads).

pub mod backoff;
pub mod commands;
pub mod config;
pub mod docker;
pub mod doctor;
pub mod download;
pub mod durable;
pub mod first_boot;
pub mod gpio;
pub mod led;
pub mod liveness;
pub mod queue;
pub mod sampler;
pub mod sensors;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod systemd;
pub mod testing;
pub mod update;
pub mod uplink;
pub mod views;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use picket_protocol::{EventKind, GpioLevel, Reply};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use config::Config;

/// This build's version: `PICKET_AGENT_VERSION` at build time (a release
/// or test build names itself), else the crate's version. Reported in the
/// birth message, the health of every sample and `agent_started`, and
/// compared by `agent.update`.
pub const VERSION: &str = match option_env!("PICKET_AGENT_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

use crate::commands::CommandService;
use crate::gpio::{GpioBackend, GpioInputs, GpioOutputs};
use crate::led::backend::NoLed;
use crate::led::{Identify, Led, LedSources, Pattern};
use crate::liveness::Beacon;
use crate::queue::{Queue, QueueError};
use crate::sampler::Sampler;
use crate::sensors::Sensors;
use crate::sensors::clock::SystemClock;
use crate::status::{StatusServer, StatusSources};
use crate::store::{Store, StoreStatus};
use crate::uplink::{CommandLink, Identity, Uplink};
use crate::views::{AlertView, Inbound, UplinkStatus};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot open the queue: {0}")]
    Queue(#[from] QueueError),
    #[error("a task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Handles on a running agent's state, for tests and the local status
/// view, and the operations remote commands drive (`led.identify`,
/// `gpio.write`).
#[derive(Debug, Clone)]
pub struct Observers {
    pub store: watch::Receiver<StoreStatus>,
    pub uplink: watch::Receiver<UplinkStatus>,
    /// The collector's retained alert set for this device.
    pub alerts: watch::Receiver<AlertView>,
    /// What the status LED shows.
    pub led: watch::Receiver<Pattern>,
    pub identify: Identify,
    pub gpio_outputs: GpioOutputs,
}

/// The hardware seams [`run_with`] uses.
#[derive(Clone)]
pub struct Hardware {
    pub gpio: Arc<dyn GpioBackend>,
}

impl Hardware {
    /// This machine's GPIO chips.
    pub fn real() -> Hardware {
        Hardware {
            gpio: Arc::new(gpio::cdev::Cdev),
        }
    }
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `shutdown` resolved.
    Stopped,
    /// A command (`config.update`) asks for the agent to start again from
    /// its configuration file; the binary re-executes itself.
    Restart,
    /// `agent.update` installed a version, or this version failed its
    /// trial: the binary re-executes the entry binary, whose launcher
    /// decides what runs.
    Relaunch,
}

/// How long the agent takes at most to stop once asked (systemd's stop,
/// Ctrl-C, a restart onto a new configuration or version): running
/// commands get [`commands::STOP_GRACE`] of it, the uplink's goodbye and
/// the queue's close the rest.
pub const STOP_LIMIT: std::time::Duration = std::time::Duration::from_millis(4500);

/// Run the agent until `shutdown` resolves (or a command asks for a
/// restart), then stop sampling, let running commands finish, let the
/// uplink say goodbye, and close the queue: within [`STOP_LIMIT`]. A
/// caller that owns the runtime should not wait for its blocking threads
/// after this returns (`Runtime::shutdown_background`): one may still be
/// in a download or a DNS lookup that nothing waits for any more.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<Exit, RunError> {
    run_observed(config, shutdown, |_| {}).await
}

/// [`run`], handing the caller watch receivers once everything is started.
pub async fn run_observed(
    config: Config,
    shutdown: impl Future<Output = ()>,
    observe: impl FnOnce(Observers),
) -> Result<Exit, RunError> {
    run_with(config, Hardware::real(), shutdown, observe).await
}

/// [`run_observed`] on the given hardware (tests use simulated GPIO).
pub async fn run_with(
    config: Config,
    hardware: Hardware,
    shutdown: impl Future<Output = ()>,
    observe: impl FnOnce(Observers),
) -> Result<Exit, RunError> {
    let started = Instant::now();
    picket_config::tls::install_provider();
    let identity = identity(&config);
    let (queue, startup) = open_queue(&config, &identity).await?;

    // The stop signals (the commands stop first: `Tasks::stop`), the
    // channels between the tasks, and the state they watch.
    let (trigger, stop) = shutdown::channel();
    let (cmd_trigger, cmd_stop) = shutdown::channel();
    let (restart_tx, mut restart) = shutdown::channel();
    let (relaunch_tx, mut relaunch) = shutdown::channel();
    let (item_tx, item_rx) = mpsc::channel(64);
    let (req_tx, req_rx) = mpsc::channel(uplink::request_capacity(&config.uplink));
    let (reply_tx, reply_rx) = mpsc::channel(8);
    let (cmd_tx, cmd_rx) = mpsc::channel(32);
    let (cmd_reply_tx, cmd_reply_rx) = mpsc::channel(64);
    let (store_tx, store_rx) = watch::channel(StoreStatus::default());
    let (uplink_tx, uplink_rx) = watch::channel(UplinkStatus::connecting(&config.broker.url));
    let (alerts_tx, alerts_rx) = watch::channel(None);
    let (clock_tx, clock_rx) = watch::channel(false);
    let (levels_tx, levels_rx) = watch::channel(Vec::new());
    let (pattern_tx, pattern_rx) = watch::channel(Pattern::Off);
    let watched = Watched {
        store: store_rx,
        uplink: uplink_rx,
        alerts: alerts_rx,
        clock_synced: clock_rx,
        gpio: levels_rx,
        led: pattern_rx,
    };
    let (identify, identify_rx) = Identify::channel();
    let w = Wiring::new(&config, &hardware, watched, stop, started);

    // The tasks, in the order they start.
    let store = start_store(Store::new(queue, item_rx, req_rx, reply_tx, store_tx));
    let cmd_link = CommandLink::new(cmd_tx, cmd_reply_rx);
    let uplink = w.uplink(identity, req_tx, reply_rx, cmd_link, uplink_tx, alerts_tx);
    let (gpio_outputs, gpio) = w.gpio(&item_tx, levels_tx);
    let (docker, docker_view, docker_task) = w.docker(&item_tx);
    let side = CommandSide::new(&config, cmd_reply_tx, relaunch_tx, cmd_stop);
    let peripherals = commands::Peripherals {
        identify: identify.clone(),
        gpio: gpio_outputs.clone(),
        docker,
    };
    let tasks = Tasks {
        led: w.led(identify_rx, pattern_tx),
        status: w.status().await,
        update: w.update(&side),
        commands: w.commands(side, cmd_rx, restart_tx, peripherals).await?,
        sampler: w.sampler(startup, item_tx, clock_tx, docker_view),
        watchdog: w.watchdog(),
        cmd_trigger,
        trigger,
        uplink,
        gpio,
        docker: docker_task,
        store,
    };

    info!(device = %config.device, broker = %config.broker.url,
          queue = %config.queue.dir.display(), "agent running");
    systemd::ready();
    observe(w.watched.observers(identify, gpio_outputs));
    let exit = wait_for_exit(shutdown, &mut restart, &mut relaunch).await;
    tasks.stop().await?;
    info!(elapsed = ?started.elapsed(), "stopped");
    Ok(exit)
}

/// The device's identity, from the configuration and the host.
fn identity(config: &Config) -> Identity {
    let root = &config.sensors.host_root;
    Identity {
        device: config.device.clone(),
        model: sensors::identity::model(root),
        boot: sensors::identity::boot_id(root),
    }
}

/// Open the queue (blocking, off the runtime) and turn what its recovery
/// found into the events recorded before the first sample.
async fn open_queue(
    config: &Config,
    identity: &Identity,
) -> Result<(Queue, Vec<EventKind>), RunError> {
    let queue_cfg = config.queue.clone();
    let boot_for_queue = identity.boot.clone().unwrap_or_default();
    let (queue, report) =
        tokio::task::spawn_blocking(move || Queue::open(queue_cfg, &boot_for_queue)).await??;

    let mut startup = vec![EventKind::AgentStarted {
        version: VERSION.into(),
        seq_skipped: report.seq_skipped,
    }];
    if report.truncated_bytes > 0 {
        warn!(bytes = report.truncated_bytes, "queue: torn tail truncated");
    }
    for q in &report.quarantined {
        warn!(segment = %q.segment, bytes = q.bytes, "queue: corrupt segment quarantined");
        startup.push(EventKind::QueueQuarantined {
            segment: q.segment.clone(),
            bytes: q.bytes,
        });
    }
    if let Some((from, to)) = report.seq_skipped {
        warn!(from, to, "queue: unclean stop; sequence numbers skipped");
    }
    Ok((queue, startup))
}

/// Wait for the stop, a restart or a relaunch, and tell systemd which.
async fn wait_for_exit(
    shutdown: impl Future<Output = ()>,
    restart: &mut shutdown::Shutdown,
    relaunch: &mut shutdown::Shutdown,
) -> Exit {
    let exit = tokio::select! {
        () = shutdown => Exit::Stopped,
        () = restart.wait() => Exit::Restart,
        () = relaunch.wait() => Exit::Relaunch,
    };
    info!(exit = ?exit, "stopping");
    match exit {
        Exit::Stopped => systemd::stopping(),
        Exit::Restart | Exit::Relaunch => systemd::restarting(),
    }
    exit
}

/// The state the tasks watch: one task publishes each, any task reads
/// any of it (cloned freely).
#[derive(Clone)]
struct Watched {
    store: watch::Receiver<StoreStatus>,
    uplink: watch::Receiver<UplinkStatus>,
    alerts: watch::Receiver<AlertView>,
    clock_synced: watch::Receiver<bool>,
    gpio: watch::Receiver<Vec<GpioLevel>>,
    led: watch::Receiver<Pattern>,
}

impl Watched {
    fn observers(self, identify: Identify, gpio_outputs: GpioOutputs) -> Observers {
        Observers {
            store: self.store,
            uplink: self.uplink,
            alerts: self.alerts,
            led: self.led,
            identify,
            gpio_outputs,
        }
    }
}

/// The store owns the queue on a blocking thread.
fn start_store(store: Store) -> JoinHandle<Result<(), QueueError>> {
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || store.run(rt))
}

/// What starting any task may read: the configuration, the hardware, the
/// host's clock, the watched state, the stop signal and the watchdog's
/// beacons. Each method starts one task.
struct Wiring<'a> {
    config: &'a Config,
    hardware: &'a Hardware,
    clock: SystemClock,
    watched: Watched,
    stop: shutdown::Shutdown,
    started: Instant,
    uplink_beacon: Beacon,
    sampler_beacon: Beacon,
}

impl<'a> Wiring<'a> {
    fn new(
        config: &'a Config,
        hardware: &'a Hardware,
        watched: Watched,
        stop: shutdown::Shutdown,
        started: Instant,
    ) -> Self {
        Wiring {
            config,
            hardware,
            clock: SystemClock::new(&config.sensors.host_root),
            watched,
            stop,
            started,
            uplink_beacon: Beacon::new("uplink", started),
            sampler_beacon: Beacon::new("sampler", started),
        }
    }

    fn uplink(
        &self,
        identity: Identity,
        requests: mpsc::Sender<store::UplinkRequest>,
        replies: mpsc::Receiver<store::ReadReply>,
        commands: CommandLink,
        status: watch::Sender<UplinkStatus>,
        alerts: watch::Sender<AlertView>,
    ) -> JoinHandle<()> {
        let links = uplink::Links {
            requests,
            replies,
            store: self.watched.store.clone(),
            status,
            alerts,
            commands,
            shutdown: self.stop.clone(),
            beacon: self.uplink_beacon.clone(),
        };
        let c = self.config;
        let uplink = Uplink::new(
            c.broker.clone(),
            c.uplink.clone(),
            identity,
            c.format,
            links,
        );
        tokio::spawn(uplink.run())
    }

    /// GPIO inputs send their edges straight to the store, so the events
    /// do not wait for the next sample; the outputs are for `gpio.write`.
    fn gpio(
        &self,
        items: &mpsc::Sender<Vec<store::Item>>,
        levels: watch::Sender<Vec<GpioLevel>>,
    ) -> (GpioOutputs, Option<JoinHandle<()>>) {
        let gpio = self.hardware.gpio.as_ref();
        let (inputs, errors) = GpioInputs::open(
            gpio,
            &self.config.gpio.inputs,
            items.clone(),
            levels,
            Box::new(self.clock.clone()),
            self.stop.clone(),
        );
        let (outputs, out_errors) = GpioOutputs::open(gpio, &self.config.gpio.outputs);
        for e in errors.iter().chain(&out_errors) {
            warn!(error = %e, "GPIO line left out; running without it");
        }
        let task = (!inputs.is_empty()).then(|| tokio::spawn(inputs.run()));
        (outputs, task)
    }

    /// Docker changes go straight to the store too; samples copy the view.
    fn docker(&self, items: &mpsc::Sender<Vec<store::Item>>) -> DockerStart {
        start_docker(self.config, items, &self.clock, &self.stop)
    }

    fn led(
        &self,
        identify: watch::Receiver<Option<tokio::time::Instant>>,
        pattern: watch::Sender<Pattern>,
    ) -> JoinHandle<()> {
        let backend =
            led::open(&self.config.led, self.hardware.gpio.as_ref()).unwrap_or_else(|e| {
                warn!(error = %e, "no status LED; running without it");
                Box::new(NoLed)
            });
        let w = &self.watched;
        let sources = LedSources {
            uplink: Some(w.uplink.clone()),
            store: Some(w.store.clone()),
            alerts: Some(w.alerts.clone()),
            clock_synced: Some(w.clock_synced.clone()),
            identify: Some(identify),
            config_invalid: false,
        };
        tokio::spawn(Led::new(backend, sources, pattern, self.stop.clone()).run())
    }

    /// The local status socket, when configured and it can be bound.
    async fn status(&self) -> Option<JoinHandle<()>> {
        let path = self.config.status_socket.as_ref()?;
        let w = &self.watched;
        let sources = StatusSources {
            device: self.config.device.to_string(),
            uplink: w.uplink.clone(),
            store: w.store.clone(),
            alerts: w.alerts.clone(),
            clock_synced: w.clock_synced.clone(),
            led: w.led.clone(),
            gpio: w.gpio.clone(),
        };
        match StatusServer::bind(path, sources, self.stop.clone()).await {
            Ok(server) => Some(tokio::spawn(server.run())),
            Err(e) => {
                warn!(error = %e, "no status socket; `picket-agent status` will not work");
                None
            }
        }
    }

    /// The trial of a freshly installed version, which commits it or
    /// rolls it back.
    fn update(&self, side: &CommandSide) -> JoinHandle<()> {
        let task = update::trial::UpdateTask {
            updates: Arc::clone(&side.updates),
            device: self.config.device.clone(),
            store: self.watched.store.clone(),
            uplink: self.watched.uplink.clone(),
            replies: side.replies.clone(),
            relaunch: Arc::clone(&side.relaunch),
            stop: side.stop.clone(),
            started: tokio::time::Instant::from_std(self.started),
        };
        tokio::spawn(task.run())
    }

    /// The command service; opening its journal blocks, so it is built
    /// off the runtime.
    async fn commands(
        &self,
        side: CommandSide,
        inbound: mpsc::Receiver<Inbound>,
        restart: shutdown::Trigger,
        peripherals: commands::Peripherals,
    ) -> Result<JoinHandle<()>, RunError> {
        let commands_cfg = self.config.commands.clone();
        let device = self.config.device.clone();
        let sensors_cfg = self.config.sensors.clone();
        let uplink_watch = self.watched.uplink.clone();
        let self_update = commands::SelfUpdate {
            updates: side.updates,
            relaunch: side.relaunch,
        };
        let service = tokio::task::spawn_blocking(move || {
            CommandService::new(
                commands_cfg,
                device,
                sensors_cfg,
                inbound,
                side.replies,
                uplink_watch,
                restart,
                peripherals,
                self_update,
                side.stop,
            )
        })
        .await?;
        Ok(tokio::spawn(service.run()))
    }

    fn sampler(
        &self,
        startup: Vec<EventKind>,
        items: mpsc::Sender<Vec<store::Item>>,
        clock_synced: watch::Sender<bool>,
        docker: Option<watch::Receiver<docker::DockerView>>,
    ) -> JoinHandle<()> {
        let links = sampler::Links {
            items,
            store: self.watched.store.clone(),
            uplink: self.watched.uplink.clone(),
            clock_synced,
            gpio: self.watched.gpio.clone(),
            docker,
            shutdown: self.stop.clone(),
            beacon: self.sampler_beacon.clone(),
        };
        let sampler = Sampler::new(
            Sensors::new(self.config.sensors.clone()),
            Box::new(self.clock.clone()),
            self.config.sampling_interval,
            self.config.hash.clone(),
            startup,
            links,
        );
        tokio::spawn(sampler.run())
    }

    /// Feeds systemd's watchdog while the uplink and the sampler beat.
    fn watchdog(&self) -> JoinHandle<()> {
        let beacons = vec![self.uplink_beacon.clone(), self.sampler_beacon.clone()];
        tokio::spawn(systemd::watchdog(beacons, self.stop.clone()))
    }
}

/// What the command service and the update trial share: the replies they
/// send, the update state, the relaunch they may ask for, and their stop.
struct CommandSide {
    replies: mpsc::Sender<Reply>,
    updates: Arc<update::Updates>,
    relaunch: Arc<shutdown::Trigger>,
    stop: shutdown::Shutdown,
}

impl CommandSide {
    fn new(
        config: &Config,
        replies: mpsc::Sender<Reply>,
        relaunch: shutdown::Trigger,
        stop: shutdown::Shutdown,
    ) -> Self {
        CommandSide {
            replies,
            updates: Arc::new(update::Updates::new(config.update.clone())),
            relaunch: Arc::new(relaunch),
            stop,
        }
    }
}

/// The agent's long-lived tasks, stopped in dependency order.
struct Tasks {
    /// Stops the command service and the update trial.
    cmd_trigger: shutdown::Trigger,
    commands: JoinHandle<()>,
    update: JoinHandle<()>,
    /// Stops the rest.
    trigger: shutdown::Trigger,
    sampler: JoinHandle<()>,
    uplink: JoinHandle<()>,
    watchdog: JoinHandle<()>,
    led: JoinHandle<()>,
    gpio: Option<JoinHandle<()>>,
    docker: Option<JoinHandle<()>>,
    status: Option<JoinHandle<()>>,
    store: JoinHandle<Result<(), QueueError>>,
}

impl Tasks {
    /// Stop the tasks one after the other, within [`STOP_LIMIT`].
    async fn stop(self) -> Result<(), RunError> {
        // The whole stop is bounded: a task that does not end (a sensor
        // read stuck on a dead mount, a Docker engine that accepts and
        // never answers) must not keep systemd waiting or block a restart.
        // What is left behind is dropped with the runtime; the queue
        // recovers from that like from a power cut.
        // Which task the stop waits for, to name it if it is late.
        let stage = std::sync::Mutex::new("commands");
        let set = |name| {
            if let Ok(mut s) = stage.lock() {
                *s = name;
            }
        };
        let stopping = async move {
            // Commands first, while the uplink still carries their last
            // statuses.
            self.cmd_trigger.fire();
            self.commands.await?;
            set("update");
            self.update.await?;
            self.trigger.fire();
            set("sampler");
            self.sampler.await?;
            set("uplink");
            self.uplink.await?;
            set("watchdog");
            self.watchdog.await?;
            set("led");
            self.led.await?;
            set("gpio");
            if let Some(t) = self.gpio {
                t.await?;
            }
            set("docker");
            if let Some(t) = self.docker {
                t.await?;
            }
            set("status");
            if let Some(t) = self.status {
                t.await?;
            }
            set("store");
            self.store.await??;
            Ok::<(), RunError>(())
        };
        match tokio::time::timeout(STOP_LIMIT, stopping).await {
            Ok(r) => r?,
            Err(_) => {
                let task = stage.lock().map_or("?", |s| *s);
                warn!(task, limit = ?STOP_LIMIT, "a task did not stop in time: leaving it behind");
            }
        }
        Ok(())
    }
}

/// What [`start_docker`] gives: the commands' handle, the view samples
/// copy, and the watcher's task.
type DockerStart = (
    docker::Handle,
    Option<watch::Receiver<docker::DockerView>>,
    Option<JoinHandle<()>>,
);

/// The Docker watcher when `docker.enabled` (which the configuration
/// refuses in a build without the `docker` feature).
#[cfg_attr(not(feature = "docker"), allow(unused_variables))]
fn start_docker(
    config: &Config,
    items: &mpsc::Sender<Vec<store::Item>>,
    clock: &SystemClock,
    stop: &shutdown::Shutdown,
) -> DockerStart {
    #[cfg(feature = "docker")]
    if config.docker.enabled {
        let (watcher, handle, view) = docker::watch::Watcher::new(
            config.docker.clone(),
            items.clone(),
            Box::new(clock.clone()),
            stop.clone(),
        );
        return (handle, Some(view), Some(tokio::spawn(watcher.run())));
    }
    (docker::Handle::disabled(), None, None)
}
