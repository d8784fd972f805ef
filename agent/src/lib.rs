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

use picket_protocol::EventKind;
use tokio::sync::{mpsc, watch};
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
use crate::views::{AlertView, UplinkStatus};

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
    let root = config.sensors.host_root.clone();
    let clock = SystemClock::new(&root);
    let boot = sensors::identity::boot_id(&root);
    let model = sensors::identity::model(&root);

    let queue_cfg = config.queue.clone();
    let boot_for_queue = boot.clone().unwrap_or_default();
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

    let (trigger, stop) = shutdown::channel();
    let (item_tx, item_rx) = mpsc::channel(64);
    let (req_tx, req_rx) = mpsc::channel(uplink::request_capacity(&config.uplink));
    let (reply_tx, reply_rx) = mpsc::channel(8);
    let (store_tx, store_rx) = watch::channel(StoreStatus::default());
    let (uplink_tx, uplink_rx) = watch::channel(UplinkStatus::connecting(&config.broker.url));
    let (alerts_tx, alerts_rx) = watch::channel(None);
    let (clock_tx, clock_rx) = watch::channel(false);
    let (levels_tx, levels_rx) = watch::channel(Vec::new());
    let (pattern_tx, pattern_rx) = watch::channel(Pattern::Off);
    let (identify, identify_rx) = Identify::channel();

    let store = Store::new(queue, item_rx, req_rx, reply_tx, store_tx);
    let rt = tokio::runtime::Handle::current();
    let store_task = tokio::task::spawn_blocking(move || store.run(rt));

    let (cmd_tx, cmd_rx) = mpsc::channel(32);
    let (cmd_reply_tx, cmd_reply_rx) = mpsc::channel(64);
    let (cmd_trigger, cmd_stop) = shutdown::channel();
    let (restart_trigger, mut restart) = shutdown::channel();
    let (relaunch_trigger, mut relaunch) = shutdown::channel();
    let relaunch_trigger = Arc::new(relaunch_trigger);
    let updates = Arc::new(update::Updates::new(config.update.clone()));

    let uplink_beacon = Beacon::new("uplink", started);
    let sampler_beacon = Beacon::new("sampler", started);
    let uplink = Uplink::new(
        config.broker.clone(),
        config.uplink.clone(),
        Identity {
            device: config.device.clone(),
            model,
            boot,
        },
        config.format,
        req_tx,
        reply_rx,
        store_rx.clone(),
        uplink_tx,
        alerts_tx,
        stop.clone(),
        uplink_beacon.clone(),
        CommandLink {
            inbound: cmd_tx,
            replies: cmd_reply_rx,
        },
    );
    let uplink_task = tokio::spawn(uplink.run());

    // GPIO inputs send their edges straight to the store, so the events
    // do not wait for the next sample.
    let (inputs, errors) = GpioInputs::open(
        hardware.gpio.as_ref(),
        &config.gpio.inputs,
        item_tx.clone(),
        levels_tx,
        Box::new(clock.clone()),
        stop.clone(),
    );
    let (gpio_outputs, out_errors) =
        GpioOutputs::open(hardware.gpio.as_ref(), &config.gpio.outputs);
    for e in errors.iter().chain(&out_errors) {
        warn!(error = %e, "GPIO line left out; running without it");
    }
    let gpio_task = (!inputs.is_empty()).then(|| tokio::spawn(inputs.run()));

    // Docker changes go straight to the store too; samples copy the view.
    let (docker, docker_view, docker_task) = start_docker(&config, &item_tx, &clock, &stop);

    let led_backend = led::open(&config.led, hardware.gpio.as_ref()).unwrap_or_else(|e| {
        warn!(error = %e, "no status LED; running without it");
        Box::new(NoLed)
    });
    let led = Led::new(
        led_backend,
        LedSources {
            uplink: Some(uplink_rx.clone()),
            store: Some(store_rx.clone()),
            alerts: Some(alerts_rx.clone()),
            clock_synced: Some(clock_rx.clone()),
            identify: Some(identify_rx),
            config_invalid: false,
        },
        pattern_tx,
        stop.clone(),
    );
    let led_task = tokio::spawn(led.run());

    let status_task = match &config.status_socket {
        Some(path) => {
            let sources = StatusSources {
                device: config.device.to_string(),
                uplink: uplink_rx.clone(),
                store: store_rx.clone(),
                alerts: alerts_rx.clone(),
                clock_synced: clock_rx.clone(),
                led: pattern_rx.clone(),
                gpio: levels_rx.clone(),
            };
            match StatusServer::bind(path, sources, stop.clone()).await {
                Ok(server) => Some(tokio::spawn(server.run())),
                Err(e) => {
                    warn!(error = %e, "no status socket; `picket-agent status` will not work");
                    None
                }
            }
        }
        None => None,
    };
    let commands_cfg = config.commands.clone();
    let device = config.device.clone();
    let sensors_cfg = config.sensors.clone();
    let uplink_watch = uplink_rx.clone();
    let peripherals = commands::Peripherals {
        identify: identify.clone(),
        gpio: gpio_outputs.clone(),
        docker,
    };
    let self_update = commands::SelfUpdate {
        updates: Arc::clone(&updates),
        relaunch: Arc::clone(&relaunch_trigger),
    };
    let update_task = tokio::spawn(
        update::trial::UpdateTask {
            updates,
            device: config.device.clone(),
            store: store_rx.clone(),
            uplink: uplink_rx.clone(),
            replies: cmd_reply_tx.clone(),
            relaunch: Arc::clone(&relaunch_trigger),
            stop: cmd_stop.clone(),
            started: tokio::time::Instant::from_std(started),
        }
        .run(),
    );
    let service = tokio::task::spawn_blocking(move || {
        CommandService::new(
            commands_cfg,
            device,
            sensors_cfg,
            cmd_rx,
            cmd_reply_tx,
            uplink_watch,
            restart_trigger,
            peripherals,
            self_update,
            cmd_stop,
        )
    })
    .await?;
    let commands_task = tokio::spawn(service.run());

    let sampler = Sampler::new(
        Sensors::new(config.sensors.clone()),
        Box::new(clock),
        config.sampling_interval,
        item_tx,
        store_rx.clone(),
        uplink_rx.clone(),
        config.hash.clone(),
        startup,
        clock_tx,
        levels_rx,
        docker_view,
        stop.clone(),
        sampler_beacon.clone(),
    );
    let sampler_task = tokio::spawn(sampler.run());
    let watchdog_task = tokio::spawn(systemd::watchdog(
        vec![uplink_beacon, sampler_beacon],
        stop.clone(),
    ));

    info!(device = %config.device, broker = %config.broker.url,
          queue = %config.queue.dir.display(), "agent running");
    systemd::ready();
    observe(Observers {
        store: store_rx,
        uplink: uplink_rx,
        alerts: alerts_rx,
        led: pattern_rx,
        identify,
        gpio_outputs,
    });

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
    // The whole stop is bounded: a task that does not end (a sensor read
    // stuck on a dead mount, a Docker engine that accepts and never
    // answers) must not keep systemd waiting or block a restart. What is
    // left behind is dropped with the runtime; the queue recovers from that
    // like from a power cut.
    // Which task the stop waits for, to name it if it is late.
    let stage = std::sync::Mutex::new("commands");
    let set = |name| {
        if let Ok(mut s) = stage.lock() {
            *s = name;
        }
    };
    let stopping = async {
        // Commands first, while the uplink still carries their last
        // statuses.
        cmd_trigger.fire();
        commands_task.await?;
        set("update");
        update_task.await?;
        trigger.fire();
        set("sampler");
        sampler_task.await?;
        set("uplink");
        uplink_task.await?;
        set("watchdog");
        watchdog_task.await?;
        set("led");
        led_task.await?;
        set("gpio");
        if let Some(t) = gpio_task {
            t.await?;
        }
        set("docker");
        if let Some(t) = docker_task {
            t.await?;
        }
        set("status");
        if let Some(t) = status_task {
            t.await?;
        }
        set("store");
        store_task.await??;
        Ok::<(), RunError>(())
    };
    match tokio::time::timeout(STOP_LIMIT, stopping).await {
        Ok(r) => r?,
        Err(_) => {
            let task = stage.lock().map_or("?", |s| *s);
            warn!(task, limit = ?STOP_LIMIT, "a task did not stop in time: leaving it behind");
        }
    }
    info!(elapsed = ?started.elapsed(), "stopped");
    Ok(exit)
}

/// What [`start_docker`] gives: the commands' handle, the view samples
/// copy, and the watcher's task.
type DockerStart = (
    docker::Handle,
    Option<watch::Receiver<docker::DockerView>>,
    Option<tokio::task::JoinHandle<()>>,
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
