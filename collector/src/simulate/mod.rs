//! A simulated fleet: N Raspberry Pis publishing realistic telemetry, for
//! demos and load tests.
//!
//! Each device speaks the agent's protocol over its own MQTT connection:
//! birth and Last Will on the state topic, sample batches on telemetry,
//! events on event, QoS 1 throughout. A few devices play scenarios
//! (overheating, a filling SD card, under-voltage, a failed service, a hung
//! agent, a dropped connection) so every alert of the collector shows up.
//!
//! # Layout
//! - [`scenario`]: which device misbehaves how and when, in ticks (pure).
//! - [`device`]: one device's samples and events, deterministic from a
//!   seed (pure).
//! - [`outbox`]: the records a device holds while offline and the batches
//!   they are published in (pure).
//! - `link`: the per-device task owning a rumqttc event loop.
//! - This module: [`SimConfig`], [`run`] and the shared [`SimStats`].
//!
//! Ten thousand devices run in one process on one runtime: the open-file
//! limit is raised to its hard limit, connections are staggered at
//! [`CONNECTS_PER_SECOND`], and each device keeps rumqttc's buffers small.

pub mod cli;
pub mod device;
mod link;
pub mod outbox;
pub mod scenario;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use picket_config::BrokerConfig;
use picket_protocol::{DeviceId, DeviceIdError, Format};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use device::SimDevice;
pub use scenario::{Scenario, Schedule};

use link::{DeviceTask, Timing};

/// New connections per second: a broker (and the simulator's own two
/// cores) would choke on ten thousand TLS handshakes at once.
pub const CONNECTS_PER_SECOND: u32 = 500;

/// Open files the process needs beyond one socket per device.
const SPARE_FILES: u64 = 256;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Host, port, TLS, credentials and topic prefix; its `client_id` is
    /// not used (each device connects as `picket-sim-<device>`) and its
    /// `keep_alive` applies to every device.
    pub broker: BrokerConfig,
    pub devices: usize,
    /// Time between two samples of one device.
    pub interval: Duration,
    pub format: Format,
    /// Same seed, same fleet: models, walks and scenarios.
    pub seed: u64,
    /// Whether some devices play scenarios (off for pure load).
    pub scenarios: bool,
    /// Which devices play which scenarios, when `scenarios` is on.
    pub schedule: Schedule,
    /// Devices are `<prefix>-0001`, `<prefix>-0002`...
    pub id_prefix: String,
}

impl SimConfig {
    /// A demo-like configuration: CBOR, seed 1, scenarios on with the
    /// default schedule, devices named `sim-0001`...
    pub fn new(broker: BrokerConfig, devices: usize, interval: Duration) -> Self {
        SimConfig {
            broker,
            devices,
            interval,
            format: Format::Cbor,
            seed: 1,
            scenarios: true,
            schedule: Schedule::default(),
            id_prefix: "sim".into(),
        }
    }

    pub fn validate(&self) -> Result<(), SimError> {
        if self.devices == 0 {
            return Err(SimError::Invalid("devices must be at least 1".into()));
        }
        if self.interval < Duration::from_millis(10) {
            return Err(SimError::Invalid(format!(
                "interval {:?} is below the 10ms minimum",
                self.interval
            )));
        }
        if self.scenarios {
            self.schedule
                .validate()
                .map_err(|e| SimError::Invalid(format!("scenario schedule: {e}")))?;
        }
        device_id(&self.id_prefix, self.devices - 1)?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulation: {0}")]
    Invalid(String),
    #[error("device id prefix {prefix:?} does not make valid device ids: {source}")]
    Prefix {
        prefix: String,
        source: DeviceIdError,
    },
    #[error(
        "{devices} devices need {needed} open files but the limit is {limit}: raise the hard limit (ulimit -Hn, LimitNOFILE=)"
    )]
    FileLimit {
        devices: usize,
        needed: u64,
        limit: u64,
    },
    #[error("a device task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Fleet-wide counters, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct SimStats {
    devices: AtomicU64,
    connected: AtomicI64,
    published: AtomicU64,
    acked: AtomicU64,
    reconnects: AtomicU64,
    errors: AtomicU64,
    warned: AtomicBool,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounts {
    pub devices: u64,
    /// Devices with a live connection now.
    pub connected: u64,
    /// MQTT publishes written to the network (state, telemetry, events).
    pub published: u64,
    /// PubAcks received.
    pub acked: u64,
    /// Connections after a device's first.
    pub reconnects: u64,
    /// Connection failures, refused publishes, encoding failures.
    pub errors: u64,
}

impl SimStats {
    pub fn snapshot(&self) -> SimCounts {
        SimCounts {
            devices: self.devices.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed).max(0) as u64,
            published: self.published.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// One line for a periodic progress report.
    pub fn summary(&self) -> String {
        let c = self.snapshot();
        format!(
            "devices {} connected {} published {} acked {} reconnects {} errors {}",
            c.devices, c.connected, c.published, c.acked, c.reconnects, c.errors
        )
    }

    fn connected(&self, delta: i64) {
        self.connected.fetch_add(delta, Ordering::Relaxed);
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Count an error. Only the first one of the fleet is a warning: when a
    /// broker goes away, ten thousand identical lines help nobody; the
    /// summary carries the count.
    fn error(&self, device: &DeviceId, what: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.warned.swap(true, Ordering::Relaxed) {
            debug!(device = %device, error = what, "simulated device");
        } else {
            warn!(device = %device, error = what, "simulated device (further errors are counted, logged at debug)");
        }
    }
}

/// Run the fleet until `shutdown` completes, then stop every device
/// cleanly (retained `offline`, `clean_stop`) and return.
pub async fn run(
    config: SimConfig,
    stats: Arc<SimStats>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimError> {
    config.validate()?;
    prepare_process(&config)?;
    stats
        .devices
        .store(config.devices as u64, Ordering::Relaxed);
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let players = start_devices(&config, &stats, &cancel, &mut tasks)?;
    info!(devices = config.devices, interval = ?config.interval, broker = %config.broker.url, "simulated fleet started");
    log_players(&players);

    // A device task only ends on cancellation, so one ending early
    // panicked: stop the rest rather than run a partial fleet.
    let mut failure = None;
    tokio::select! {
        () = shutdown => {}
        Some(res) = tasks.join_next() => failure = res.err(),
    }
    cancel.cancel();
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res {
            failure.get_or_insert(e);
        }
    }
    info!(summary = %stats.summary(), "simulated fleet stopped");
    match failure {
        Some(e) => Err(SimError::Task(e)),
        None => Ok(()),
    }
}

/// What the process needs for the fleet: enough open files (one socket
/// a device) and, for TLS, the crypto provider.
fn prepare_process(config: &SimConfig) -> Result<(), SimError> {
    let needed = config.devices as u64 + SPARE_FILES;
    match raise_file_limit() {
        Ok(limit) if limit < needed => {
            return Err(SimError::FileLimit {
                devices: config.devices,
                needed,
                limit,
            });
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot read the open-file limit"),
    }
    if config.broker.tls.is_some() {
        picket_config::tls::install_provider();
    }
    Ok(())
}

/// Spawn a task for each device into `tasks`. Returns the devices that
/// play scenarios, as `<id> <scenario>,...`.
fn start_devices(
    config: &SimConfig,
    stats: &Arc<SimStats>,
    cancel: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<Vec<String>, SimError> {
    let n = config.devices;
    let start = tokio::time::Instant::now();
    let now = unix_ms();
    let schedule = config.scenarios.then_some(&config.schedule);
    let mut players = Vec::new();
    for index in 0..n {
        let id = device_id(&config.id_prefix, index)?;
        let plan = schedule.and_then(|s| s.plan(index, n));
        if let Some(p) = &plan {
            let kinds: Vec<&str> = p.kinds().map(Scenario::name).collect();
            debug!(device = %id, scenarios = %kinds.join(","), "scenario device");
            players.push(format!("{id} {}", kinds.join(",")));
        }
        let device = SimDevice::new(id, index, config.seed, plan, now);
        let timing = Timing {
            connect_at: start + connect_delay(index),
            phase: phase(index, n, config.interval),
            interval: config.interval,
        };
        let task = DeviceTask::new(&config.broker, config.format, device, timing, stats.clone());
        tasks.spawn(task.run(cancel.clone()));
    }
    Ok(players)
}

/// The scenario devices, the first dozen by name.
fn log_players(players: &[String]) {
    if players.is_empty() {
        return;
    }
    let shown = players.len().min(12);
    let more = players.len() - shown;
    let tail = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    info!(
        count = players.len(),
        "scenario devices: {}{tail}",
        players[..shown].join("; ")
    );
}

/// `<prefix>-0001` for index 0: numbered from 1 like people count boxes.
pub fn device_id(prefix: &str, index: usize) -> Result<DeviceId, SimError> {
    DeviceId::new(format!("{prefix}-{:04}", index + 1)).map_err(|source| SimError::Prefix {
        prefix: prefix.to_string(),
        source,
    })
}

fn connect_delay(index: usize) -> Duration {
    Duration::from_secs(index as u64) / CONNECTS_PER_SECOND
}

/// Offsets spread evenly over the interval. Added to the staggered connect
/// times this gives each device its own millisecond when there are as many
/// devices as milliseconds in the interval.
fn phase(index: usize, devices: usize, interval: Duration) -> Duration {
    interval.mul_f64(index as f64 / devices.max(1) as f64)
}

/// Raise the soft open-file limit to the hard one (one socket per device);
/// returns the limit now in force.
fn raise_file_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // An unlimited hard limit cannot be the soft one (the kernel caps open
    // files at fs.nr_open, 1 Mi by default).
    let target = lim.rlim_max.min(1 << 20);
    if lim.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    // rlim_t is u64 on Linux but not on every target.
    #[allow(clippy::useless_conversion)]
    Ok(u64::try_from(lim.rlim_cur).unwrap_or(u64::MAX))
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
