//! System sensors: one module per data source, each read under a configurable
//! host root so the agent can run from a container with the host's `/proc`
//! and `/sys` mounted elsewhere, and so tests can point at a fixture tree.
//!
//! A source the host does not have (no thermal zone, no throttle word, no
//! swap) is absent from the sample, never an error: the collector tells "no
//! sensor" from "zero". Every reader tolerates garbage and returns `None`
//! rather than panicking, because kernel formats drift between versions.
//!
//! # Layout
//! - [`clock`]: the clock seam ([`Stamp`], [`clock::SystemClock`]).
//! - [`identity`]: hardware model, default device id, boot id.
//! - [`cpu`], [`load`], [`memory`], [`disks`], [`net`], [`uptime`]: `/proc`.
//! - [`thermal`], [`throttle`]: `/sys`, Raspberry Pi specifics included.
//! - [`services`]: systemd unit states through `systemctl`.
//! - [`Sensors`]: ties them together and turns state changes into events.

pub mod clock;
pub mod cpu;
pub mod disks;
pub mod identity;
pub mod load;
pub mod memory;
pub mod net;
pub mod services;
pub mod thermal;
pub mod throttle;
pub mod uptime;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use picket_protocol::{EventKind, Sample};
use tracing::{info, warn};

pub use clock::{Clock, Stamp};

/// What to read and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorConfig {
    /// `/` in production; the host's root when the agent runs in a container.
    pub host_root: PathBuf,
    /// systemd units to watch; empty means `systemctl` is never run.
    pub services: Vec<String>,
    /// The `systemctl` binary (a bare name is looked up in `PATH`).
    pub systemctl: PathBuf,
    /// Network interfaces left out of samples.
    pub net_exclude: Vec<String>,
}

impl SensorConfig {
    /// Defaults for everything but the host root.
    pub fn new(host_root: impl Into<PathBuf>) -> Self {
        SensorConfig {
            host_root: host_root.into(),
            services: Vec::new(),
            systemctl: PathBuf::from("systemctl"),
            net_exclude: vec!["lo".to_string()],
        }
    }
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig::new("/")
    }
}

/// Reads every source and keeps what is needed between two samples: the
/// previous CPU counters, throttle word, service states and clock sync.
#[derive(Debug)]
pub struct Sensors {
    cfg: SensorConfig,
    cpu: cpu::CpuMeter,
    throttle: throttle::ThrottleReader,
    services: services::ServiceWatcher,
    synced: Option<bool>,
    reported: Reported,
}

impl Sensors {
    pub fn new(cfg: SensorConfig) -> Sensors {
        let services = services::ServiceWatcher::new(cfg.systemctl.clone(), cfg.services.clone());
        Sensors {
            cfg,
            cpu: cpu::CpuMeter::default(),
            throttle: throttle::ThrottleReader::default(),
            services,
            synced: None,
            reported: Reported::default(),
        }
    }

    /// One reading. `seq` of the returned Sample is 0 (the queue assigns it);
    /// `hist` false; `agent` None (filled by the caller).
    /// The events are changes since the previous call (throttle word changed,
    /// service state changed, clock became synced).
    ///
    /// Blocking: file reads, `statvfs` and `systemctl` (bounded by a
    /// timeout), so async callers run it on a blocking thread.
    pub fn sample(&mut self, stamp: &Stamp) -> (Sample, Vec<EventKind>) {
        let root = self.cfg.host_root.as_path();
        let mut events = Vec::new();

        if self.synced == Some(false) && stamp.sync {
            events.push(EventKind::ClockSynced);
        }
        self.synced = Some(stamp.sync);

        let times = cpu::read(root);
        let cpu = times.and_then(|t| self.cpu.update(t));
        let load = load::read(root);
        let (mem, swap) = match memory::read(root) {
            Some(m) => (Some(m.mem), m.swap),
            None => (None, None),
        };
        let uptime = uptime::read(root);
        let disks = disks::read(root);
        let net = net::read(root, &self.cfg.net_exclude);
        let thermal = thermal::read(root);
        let (throttle, change) = self.throttle.read(root);
        events.extend(change);
        let (services, changes) = self.services.poll();
        events.extend(changes);

        // Missing /proc files mean a wrong host root; missing /sys entries
        // are just hardware this host lacks. Either way, say it once.
        let core = [
            ("/proc/stat", times.is_none()),
            ("/proc/loadavg", load.is_none()),
            ("/proc/meminfo", mem.is_none()),
            ("/proc/uptime", uptime.is_none()),
            ("/proc/net/dev", net.is_none()),
        ];
        for (source, missing) in core {
            if missing && self.reported.first(source) {
                warn!(source, root = %root.display(), "unreadable under host root; omitted from samples");
            }
        }
        let hardware = [
            ("disks", disks.is_empty()),
            ("thermal", thermal.is_empty()),
            ("throttle", throttle.is_none()),
        ];
        for (source, missing) in hardware {
            if missing && self.reported.first(source) {
                info!(source, "not available on this host; omitted from samples");
            }
        }

        let sample = Sample {
            seq: 0,
            ts: stamp.ts,
            mono: stamp.mono,
            boot: stamp.boot.clone(),
            sync: stamp.sync,
            hist: false,
            cpu,
            load,
            mem,
            swap,
            uptime,
            disks,
            net: net.unwrap_or_default(),
            thermal,
            throttle,
            services,
            gpio: Vec::new(),
            docker: None,
            containers: Vec::new(),
            agent: None,
        };
        (sample, events)
    }
}

/// Remembers which conditions were already logged, so a permanently missing
/// source does not fill the journal at every sample.
#[derive(Debug, Default)]
pub(crate) struct Reported(HashSet<&'static str>);

impl Reported {
    /// True the first time `what` is seen.
    pub(crate) fn first(&mut self, what: &'static str) -> bool {
        self.0.insert(what)
    }
}

/// `{root}/{path}` for an absolute path as the host spells it.
pub(crate) fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// A small text file under the root, or None when it is absent or unreadable.
/// Invalid UTF-8 is replaced rather than refused: parsers skip what they do
/// not understand.
pub(crate) fn read_text(root: &Path, path: &str) -> Option<String> {
    read_path(&under(root, path))
}

pub(crate) fn read_path(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// A percentage safe to serialise: JSON cannot carry NaN or infinities.
pub(crate) fn pct(part: f64, whole: f64) -> f32 {
    if !part.is_finite() || !whole.is_finite() || whole <= 0.0 {
        return 0.0;
    }
    ((part / whole) * 100.0).clamp(0.0, 100.0) as f32
}
