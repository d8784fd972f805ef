//! The status LED: a technician's only window into the box.
//!
//! [`pattern`] is the pure part (the priority table and exact timings);
//! [`Led`] is the task that follows the agent's state and plays the pattern
//! on a [`backend::LedBackend`]; [`Identify`] is the handle through which
//! the `led.identify` command asks the LED to show itself for a while.
//!
//! # Configuration (`[led]`)
//! - `backend`: `sysfs` (default: the board's ACT LED), `gpio` or `none`.
//! - `sysfs_path`: the LED class directory, default `/sys/class/leds/ACT`.
//! - `line`: the GPIO line for `gpio` (`GPIO26` or `gpiochip0:26`);
//!   `active_low`: the LED lights when the line is low.

pub mod backend;
pub mod pattern;

use std::sync::Arc;
use std::time::Duration;

use picket_protocol::Severity;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use crate::config::LedConfig;
use crate::shutdown::Shutdown;
use crate::store::StoreStatus;
use crate::views::{AlertView, Failure, Link, UplinkStatus};
use backend::LedBackend;
pub use pattern::{LedInputs, LinkView, Pattern};

/// Open the configured LED.
pub fn open(
    cfg: &LedConfig,
    gpio: &dyn crate::gpio::GpioBackend,
) -> Result<Box<dyn LedBackend>, backend::LedError> {
    Ok(match cfg {
        LedConfig::None => Box::new(backend::NoLed),
        LedConfig::Sysfs(path) => Box::new(backend::SysfsLed::open(path)?),
        LedConfig::Gpio { line, active_low } => {
            Box::new(backend::GpioLed::open(gpio, line.clone(), *active_low)?)
        }
    })
}

/// After a drop the LED says "dropping" this long: a technician arriving
/// later still learns that data was lost recently.
pub const DROPPING_FOR: Duration = Duration::from_secs(5 * 60);

/// `led.identify` without a duration.
pub const IDENTIFY_DEFAULT: Duration = Duration::from_secs(30);
/// The longest `led.identify` may last: a forgotten request must not hide
/// the real state for long.
pub const IDENTIFY_MAX: Duration =
    Duration::from_secs(picket_protocol::command::MAX_IDENTIFY_SECS as u64);
pub const IDENTIFY_MIN: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    #[error("identify duration must be between 1 s and 600 s, not {0} s")]
    Duration(u64),
    #[error("the LED task is not running")]
    Stopped,
}

/// Ask the LED to show the identify pattern. Cloned into whoever needs it
/// (the command handler); the LED task holds the receiving end.
#[derive(Debug, Clone)]
pub struct Identify {
    until: Arc<watch::Sender<Option<Instant>>>,
}

impl Identify {
    pub fn channel() -> (Identify, watch::Receiver<Option<Instant>>) {
        let (tx, rx) = watch::channel(None);
        (
            Identify {
                until: Arc::new(tx),
            },
            rx,
        )
    }

    /// The duration from the command's `secs` argument: 30 s when absent,
    /// refused outside 1–600 s.
    pub fn duration(secs: Option<u64>) -> Result<Duration, IdentifyError> {
        let Some(secs) = secs else {
            return Ok(IDENTIFY_DEFAULT);
        };
        let d = Duration::from_secs(secs);
        if !(IDENTIFY_MIN..=IDENTIFY_MAX).contains(&d) {
            return Err(IdentifyError::Duration(secs));
        }
        Ok(d)
    }

    /// Show the identify pattern for `duration` from now (replacing any
    /// earlier request). Returns when it will end.
    pub fn start(&self, duration: Duration) -> Result<Instant, IdentifyError> {
        if !(IDENTIFY_MIN..=IDENTIFY_MAX).contains(&duration) {
            return Err(IdentifyError::Duration(duration.as_secs()));
        }
        if self.until.is_closed() {
            return Err(IdentifyError::Stopped);
        }
        let until = Instant::now() + duration;
        self.until.send_replace(Some(until));
        Ok(until)
    }

    /// End an identify request early.
    pub fn cancel(&self) {
        self.until.send_replace(None);
    }
}

/// Where the LED task reads the agent's state. A `None` source is taken
/// as healthy (the agent without a config has no uplink to ask).
pub struct LedSources {
    pub uplink: Option<watch::Receiver<UplinkStatus>>,
    pub store: Option<watch::Receiver<StoreStatus>>,
    pub alerts: Option<watch::Receiver<AlertView>>,
    pub clock_synced: Option<watch::Receiver<bool>>,
    pub identify: Option<watch::Receiver<Option<Instant>>>,
    pub config_invalid: bool,
}

impl LedSources {
    /// Nothing to read but that the configuration does not load: the LED
    /// an agent shows before it exits with code 2.
    pub fn config_invalid() -> Self {
        LedSources {
            uplink: None,
            store: None,
            alerts: None,
            clock_synced: None,
            identify: None,
            config_invalid: true,
        }
    }
}

pub fn link_view(link: &Link) -> LinkView {
    match link {
        Link::Connected { .. } => LinkView::Connected,
        Link::Connecting
        | Link::Down {
            failure: Failure::Unreachable,
            ..
        } => LinkView::Unreachable,
        // TLS and protocol failures come from a broker that answered: the
        // fix is on our side (certificates, credentials), not the network.
        Link::Down { .. } => LinkView::Refused,
    }
}

pub struct Led {
    backend: Box<dyn LedBackend>,
    sources: LedSources,
    pattern: watch::Sender<Pattern>,
    shutdown: Shutdown,
    dropped_seen: Option<u64>,
    last_drop: Option<Instant>,
    /// The last identify deadline read: it holds even if every
    /// [`Identify`] handle is gone.
    identify_until: Option<Instant>,
    /// What the LED shows now, so a pattern starting lit on a lit LED
    /// writes nothing (`None`: unknown, after a failed write).
    lit: Option<bool>,
    /// Log a failing LED once, not at every blink.
    failing: bool,
}

impl Led {
    pub fn new(
        backend: Box<dyn LedBackend>,
        sources: LedSources,
        pattern: watch::Sender<Pattern>,
        shutdown: Shutdown,
    ) -> Led {
        Led {
            backend,
            sources,
            pattern,
            shutdown,
            dropped_seen: None,
            last_drop: None,
            identify_until: None,
            lit: None,
            failing: false,
        }
    }

    fn inputs(&mut self, now: Instant) -> LedInputs {
        if let Some(rx) = &self.sources.identify {
            self.identify_until = *rx.borrow();
        }
        let s = &self.sources;
        if let Some(store) = &s.store {
            let dropped = store.borrow().stats.dropped_total;
            if self.dropped_seen.is_some_and(|seen| dropped > seen) {
                self.last_drop = Some(now);
            }
            self.dropped_seen = Some(dropped);
        }
        LedInputs {
            identify: self.identify_until.is_some_and(|until| now < until),
            config_invalid: s.config_invalid,
            critical_alert: s.alerts.as_ref().is_some_and(|a| {
                a.borrow()
                    .as_ref()
                    .is_some_and(|set| set.highest() == Some(Severity::Critical))
            }),
            link: s
                .uplink
                .as_ref()
                .map_or(LinkView::Connected, |u| link_view(&u.borrow().link)),
            clock_synced: s.clock_synced.as_ref().is_none_or(|c| *c.borrow()),
            queue_dropping: self.last_drop.is_some_and(|t| now < t + DROPPING_FOR),
        }
    }

    /// When the inputs change by themselves (identify ends, "dropping"
    /// expires), if ever.
    fn expiry(&self, now: Instant) -> Option<Instant> {
        let identify = self.identify_until.filter(|&t| t > now);
        let dropping = self
            .last_drop
            .map(|t| t + DROPPING_FOR)
            .filter(|&t| t > now);
        match (identify, dropping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn set(&mut self, on: bool) {
        if self.lit == Some(on) {
            return;
        }
        match self.backend.set(on) {
            Ok(()) => {
                self.lit = Some(on);
                self.failing = false;
            }
            Err(e) => {
                self.lit = None;
                if !self.failing {
                    warn!(error = %e, "cannot drive the status LED");
                }
                self.failing = true;
            }
        }
    }

    pub async fn run(mut self) {
        let mut shutdown = self.shutdown.clone();
        let mut current: Option<Pattern> = None;
        let mut step = 0usize;
        let mut step_end: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let wanted = self.inputs(now).pattern();
            if current != Some(wanted) {
                // A new pattern starts from its first step at once.
                current = Some(wanted);
                step = 0;
                let first = wanted.steps()[0];
                self.set(first.on);
                step_end = (!wanted.is_steady()).then(|| now + Duration::from_millis(first.ms));
                self.pattern.send_replace(wanted);
            }
            let wake = match (step_end, self.expiry(now)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                () = sleep_until(wake) => {
                    if let (Some(p), Some(end)) = (current, step_end)
                        && Instant::now() >= end
                    {
                        let steps = p.steps();
                        step = (step + 1) % steps.len();
                        self.set(steps[step].on);
                        // From the planned end, not from now: no drift.
                        step_end = Some(end + Duration::from_millis(steps[step].ms));
                    }
                }
                () = changed(&mut self.sources.uplink) => {}
                () = changed(&mut self.sources.store) => {}
                () = changed(&mut self.sources.alerts) => {}
                () = changed(&mut self.sources.clock_synced) => {}
                () = changed(&mut self.sources.identify) => {}
            }
        }
        self.set(false);
        self.pattern.send_replace(Pattern::Off);
        if let Err(e) = self.backend.release() {
            warn!(error = %e, "cannot give the status LED back");
        }
    }
}

async fn changed<T>(rx: &mut Option<watch::Receiver<T>>) {
    match rx {
        Some(r) => {
            if r.changed().await.is_err() {
                *rx = None;
            }
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
