//! The engine's wall clock, in unix milliseconds, driven by tokio's clock
//! so tests with paused time see it move exactly as timers fire.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::model::Millis;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: Millis,
    at: Instant,
}

impl Clock {
    pub fn system() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis);
        Clock::starting_at(wall)
    }

    pub fn starting_at(wall: Millis) -> Self {
        Clock {
            wall,
            at: Instant::now(),
        }
    }

    pub fn now(&self) -> Millis {
        self.wall + self.at.elapsed().as_millis() as Millis
    }

    /// The tokio instant at which the wall clock reads `t`.
    pub fn instant_at(&self, t: Millis) -> Instant {
        self.at + std::time::Duration::from_millis(t.saturating_sub(self.wall))
    }
}
