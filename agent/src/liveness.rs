//! Progress beacons for the systemd watchdog: each long-running loop beats
//! at least once a second; the watchdog is only fed while every loop beats.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Beacon {
    epoch: Instant,
    last_ms: Arc<AtomicU64>,
    pub name: &'static str,
}

impl Beacon {
    pub fn new(name: &'static str, epoch: Instant) -> Self {
        Beacon {
            epoch,
            last_ms: Arc::new(AtomicU64::new(0)),
            name,
        }
    }

    pub fn beat(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long ago the loop last made progress.
    pub fn age(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}
