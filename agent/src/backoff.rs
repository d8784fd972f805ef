//! Reconnection delays: exponential from 1 s, each drawn between half and
//! all of its ceiling ("equal jitter"), so a fleet that lost its broker at
//! the same moment does not reconnect in lockstep while no delay falls
//! near zero.
//!
//! The uplink (to the broker) and the Docker watcher (to the engine) both
//! reconnect with it, so it sits below both tasks.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max,
            attempt: 0,
        }
    }

    /// The ceiling for the next delay: base × 2^attempt, capped.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(16)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The next delay: uniform in [ceiling/2, ceiling], given `unit` drawn
    /// uniformly from [0, 1). Half the ceiling is kept as a floor so a
    /// refused broker is not hammered.
    pub fn next(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let unit = unit.clamp(0.0, 1.0);
        ceiling.div_f64(2.0) + ceiling.div_f64(2.0).mul_f64(unit)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(60));
        let ceilings: Vec<u64> = (0..9)
            .map(|_| {
                let c = b.ceiling().as_secs();
                b.next(0.5);
                c
            })
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_half_to_full_ceiling() {
        let mut b = Backoff::new(Duration::from_secs(60));
        for _ in 0..10 {
            b.next(0.0);
        }
        let mut lo = b.clone();
        let mut hi = b.clone();
        assert_eq!(lo.next(0.0), Duration::from_secs(30));
        assert_eq!(
            hi.next(0.999_999),
            Duration::from_secs(60).mul_f64(0.999_999_5)
        );
        assert_eq!(
            b.next(7.0),
            Duration::from_secs(60),
            "out-of-range unit is clamped"
        );
    }
}
