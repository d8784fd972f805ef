//! A LED that records each change with the (tokio) time it happened, so a
//! test under paused time can check exact timings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::led::backend::{LedBackend, LedError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    On,
    Off,
    /// Handed back (the agent stopped).
    Released,
}

#[derive(Debug, Clone)]
pub struct SimLed {
    epoch: Instant,
    log: Arc<Mutex<Vec<(Duration, Change)>>>,
}

impl SimLed {
    /// Times are recorded from now.
    pub fn new() -> SimLed {
        SimLed {
            epoch: Instant::now(),
            log: Arc::default(),
        }
    }

    fn push(&self, change: Change) {
        let at = self.epoch.elapsed();
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((at, change));
    }

    /// Every change so far, with its time since [`SimLed::new`].
    pub fn log(&self) -> Vec<(Duration, Change)> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What a person would see in `[from, to)`: the level at `from` as
    /// (0, level), then each change of level, as (ms since `from`, level).
    /// Writes that repeat the current level do not show.
    pub fn levels_ms(&self, from: Duration, to: Duration) -> Vec<(u64, Change)> {
        let mut level = Change::Off;
        let mut out = Vec::new();
        for (t, c) in self.log() {
            if c == Change::Released || t >= to {
                continue;
            }
            if t <= from {
                level = c;
                continue;
            }
            if out.is_empty() {
                out.push((0, level));
            }
            if c != level {
                out.push(((t - from).as_millis() as u64, c));
                level = c;
            }
        }
        if out.is_empty() {
            out.push((0, level));
        }
        out
    }

    /// Whether the LED is lit now.
    pub fn is_on(&self) -> bool {
        self.log()
            .iter()
            .rev()
            .find(|(_, c)| *c != Change::Released)
            .is_some_and(|(_, c)| *c == Change::On)
    }
}

impl Default for SimLed {
    fn default() -> Self {
        SimLed::new()
    }
}

impl LedBackend for SimLed {
    fn set(&mut self, on: bool) -> Result<(), LedError> {
        self.push(if on { Change::On } else { Change::Off });
        Ok(())
    }

    fn release(&mut self) -> Result<(), LedError> {
        self.push(Change::Released);
        Ok(())
    }
}
