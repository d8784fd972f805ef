//! Scenarios: the trouble a few simulated devices get into, so a demo shows
//! every alert the collector raises.
//!
//! Timing is counted in ticks (one tick per publishing interval), so a demo
//! at a 2 s interval plays each scenario within a few minutes while a fleet
//! at 10 s plays the same story five times slower. Which device plays what,
//! and when, is a pure function of the device's index and the [`Schedule`]:
//! the same fleet always misbehaves the same way.

use std::fmt;
use std::str::FromStr;

/// Something going wrong on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// The CPU zone climbs above 80 °C (the firmware throttles), holds, then
    /// cools below 70 °C.
    Overheat,
    /// `/` fills past 90 % then 95 % with less than 2 GB free, then a
    /// clean-up brings it back.
    DiskFill,
    /// The supply sags: under-voltage and throttling flags on, later off.
    PowerLoss,
    /// `kiosk.service` fails, later restarts.
    ServiceDown,
    /// The agent hangs: it keeps its MQTT connection (pings go on) but
    /// publishes nothing, so only a heartbeat timeout can notice.
    Silent,
    /// The network goes away without a goodbye: the broker publishes the
    /// Last Will; later the device reconnects with a new session and sends
    /// what it sampled meanwhile as history.
    Drop,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Overheat,
        Scenario::DiskFill,
        Scenario::PowerLoss,
        Scenario::ServiceDown,
        Scenario::Silent,
        Scenario::Drop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Overheat => "overheat",
            Scenario::DiskFill => "disk-fill",
            Scenario::PowerLoss => "power-loss",
            Scenario::ServiceDown => "service-down",
            Scenario::Silent => "silent",
            Scenario::Drop => "drop",
        }
    }

    /// Length in ticks at scale 1. Silent outlasts 5 minutes at a 2 s
    /// interval so the default heartbeat timeout fires during a demo.
    fn base_len(self) -> u32 {
        match self {
            Scenario::Overheat => 60,
            Scenario::DiskFill => 60,
            Scenario::PowerLoss => 30,
            Scenario::ServiceDown => 30,
            Scenario::Silent => 180,
            Scenario::Drop => 24,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown scenario {s:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Which devices play scenarios, which ones, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The scenarios in play, in the order they are handed out.
    pub kinds: Vec<Scenario>,
    /// One device in `every` plays scenarios: the `every`-th, the
    /// `2 × every`-th... (`sim-0008`, `sim-0016`... by default).
    pub every: usize,
    /// Ticks before the first scenario device starts its first scenario;
    /// the next ones start 5 ticks apart so they do not all begin together.
    pub start_after: u32,
    /// Quiet ticks between two scenarios of one device.
    pub rest: u32,
    /// Multiplies every scenario's length (1.0: the documented lengths).
    pub scale: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            kinds: Scenario::ALL.to_vec(),
            every: 8,
            start_after: 10,
            rest: 40,
            scale: 1.0,
        }
    }
}

/// Ticks between the starts of two scenario devices' first scenarios.
const STAGGER: u32 = 5;

/// A [`Schedule`] that cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("no scenario kinds listed")]
    NoKinds,
    #[error("every must be at least 1")]
    Every,
    #[error("scale {0} must be a positive number")]
    Scale(f64),
}

impl Schedule {
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.kinds.is_empty() {
            return Err(ScheduleError::NoKinds);
        }
        if self.every == 0 {
            return Err(ScheduleError::Every);
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(ScheduleError::Scale(self.scale));
        }
        Ok(())
    }

    /// Length of `kind` in ticks under this schedule's scale (at least 1).
    pub fn len(&self, kind: Scenario) -> u32 {
        let scaled = (f64::from(kind.base_len()) * self.scale).round();
        // Saturating float-to-int cast: an absurd scale gives a very long
        // scenario, never a panic.
        (scaled as u32).max(1)
    }

    /// What device `index` (0-based) of a fleet of `devices` plays, or
    /// `None` when it behaves.
    ///
    /// Scenario device `k` plays kinds `k`, `k + m`, `k + 2m`... (modulo the
    /// number of kinds) where `m` is the number of scenario devices: with
    /// few scenario devices each plays several kinds in turn, so a 25-device
    /// demo (3 scenario devices) still shows all six within two rounds.
    pub fn plan(&self, index: usize, devices: usize) -> Option<Plan> {
        if self.kinds.is_empty() || self.every == 0 || index % self.every != self.every - 1 {
            return None;
        }
        let n = self.kinds.len();
        let k = index / self.every;
        let m = (devices / self.every).max(1);
        let mut steps: Vec<(Scenario, u32)> = Vec::new();
        for c in 0..n {
            let kind = self.kinds[(k + c * m) % n];
            if steps.iter().any(|(s, _)| *s == kind) {
                break;
            }
            steps.push((kind, self.len(kind)));
        }
        let stagger = u64::from(STAGGER) * (k % n) as u64;
        Some(Plan {
            start: u64::from(self.start_after) + stagger,
            steps,
            rest: self.rest,
        })
    }
}

/// One device's scenarios, played in turn, forever.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    start: u64,
    steps: Vec<(Scenario, u32)>,
    rest: u32,
}

/// Where a device is inside a scenario at some tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    pub kind: Scenario,
    /// Ticks since the scenario began (0 on its first tick).
    pub at: u32,
    /// The scenario's length in ticks.
    pub len: u32,
}

impl Plan {
    /// The scenarios this device plays, in order.
    pub fn kinds(&self) -> impl Iterator<Item = Scenario> + '_ {
        self.steps.iter().map(|(k, _)| *k)
    }

    /// The tick at which `kind` first begins, if the plan has it.
    pub fn first_start(&self, kind: Scenario) -> Option<u64> {
        let mut t = self.start;
        for (k, len) in &self.steps {
            if *k == kind {
                return Some(t);
            }
            t += u64::from(*len) + u64::from(self.rest);
        }
        None
    }

    /// The scenario running at `tick` (0-based ticks since the device
    /// started), if any.
    pub fn at(&self, tick: u64) -> Option<Phase> {
        let since = tick.checked_sub(self.start)?;
        let cycle: u64 = self
            .steps
            .iter()
            .map(|(_, len)| u64::from(*len) + u64::from(self.rest))
            .sum();
        if cycle == 0 {
            return None;
        }
        let mut t = since % cycle;
        for (kind, len) in &self.steps {
            let len64 = u64::from(*len);
            if t < len64 {
                return Some(Phase {
                    kind: *kind,
                    // t < len, which is a u32.
                    at: t as u32,
                    len: *len,
                });
            }
            t -= len64;
            if t < u64::from(self.rest) {
                return None;
            }
            t -= u64::from(self.rest);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for k in Scenario::ALL {
            assert_eq!(k.name().parse::<Scenario>(), Ok(k));
            assert_eq!(k.to_string(), k.name());
        }
        assert!("meltdown".parse::<Scenario>().is_err());
    }

    #[test]
    fn one_device_in_every_plays() {
        let s = Schedule::default();
        let players: Vec<usize> = (0..25).filter(|i| s.plan(*i, 25).is_some()).collect();
        assert_eq!(players, [7, 15, 23]);
        let off = Schedule {
            kinds: vec![],
            ..Schedule::default()
        };
        assert!(off.plan(7, 25).is_none());
    }

    #[test]
    fn a_small_demo_still_plays_every_kind() {
        let s = Schedule::default();
        let table: [(usize, &[Scenario]); 3] = [
            (7, &[Scenario::Overheat, Scenario::ServiceDown]),
            (15, &[Scenario::DiskFill, Scenario::Silent]),
            (23, &[Scenario::PowerLoss, Scenario::Drop]),
        ];
        for (index, want) in table {
            let plan = s.plan(index, 25).expect("plays");
            assert_eq!(plan.kinds().collect::<Vec<_>>(), want, "device {index}");
        }
        // With six or more scenario devices each plays one kind, all six
        // covered at once.
        let mut seen: Vec<Scenario> = (0..48)
            .filter_map(|i| s.plan(i, 48))
            .flat_map(|p| p.kinds().collect::<Vec<_>>())
            .collect();
        seen.sort_by_key(|k| k.name());
        seen.dedup();
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn every_kind_starts_within_a_few_minutes_at_two_seconds() {
        let s = Schedule::default();
        for k in Scenario::ALL {
            let start = (0..25)
                .filter_map(|i| s.plan(i, 25))
                .filter_map(|p| p.first_start(k))
                .min()
                .expect("some device plays it");
            let seconds = start * 2;
            assert!(seconds <= 5 * 60, "{k} starts after {seconds} s");
        }
    }

    #[test]
    fn phases_follow_the_plan_and_repeat() {
        let s = Schedule {
            kinds: vec![Scenario::PowerLoss, Scenario::Drop],
            every: 1,
            start_after: 3,
            rest: 2,
            scale: 0.1,
        };
        // The only scenario device plays both: PowerLoss (3 ticks), rest 2,
        // Drop (2 ticks), rest 2.
        let plan = s.plan(0, 1).expect("plays");
        let got: Vec<Option<(Scenario, u32)>> = (0..16)
            .map(|t| plan.at(t).map(|p| (p.kind, p.at)))
            .collect();
        let pl = |at| Some((Scenario::PowerLoss, at));
        let dr = |at| Some((Scenario::Drop, at));
        assert_eq!(
            got,
            [
                None,
                None,
                None,
                pl(0),
                pl(1),
                pl(2),
                None,
                None,
                dr(0),
                dr(1),
                None,
                None,
                pl(0),
                pl(1),
                pl(2),
                None
            ]
        );
        assert_eq!(plan.first_start(Scenario::Drop), Some(8));
        assert_eq!(plan.first_start(Scenario::Silent), None);
        // With two scenario devices each plays one kind, the second one
        // STAGGER ticks later.
        assert_eq!(
            s.plan(0, 2).expect("plays").kinds().collect::<Vec<_>>(),
            [Scenario::PowerLoss]
        );
        let other = s.plan(1, 2).expect("plays");
        assert_eq!(other.kinds().collect::<Vec<_>>(), [Scenario::Drop]);
        assert_eq!(other.first_start(Scenario::Drop), Some(3 + 5));
    }

    #[test]
    fn lengths_scale_and_never_vanish() {
        let table = [
            (1.0, Scenario::Silent, 180),
            (0.5, Scenario::Overheat, 30),
            (0.2, Scenario::Drop, 5),
            (0.001, Scenario::Drop, 1),
        ];
        for (scale, kind, want) in table {
            let s = Schedule {
                scale,
                ..Schedule::default()
            };
            assert_eq!(s.len(kind), want, "{kind} at {scale}");
        }
    }

    #[test]
    fn validation() {
        assert!(Schedule::default().validate().is_ok());
        let bad = [
            Schedule {
                kinds: vec![],
                ..Schedule::default()
            },
            Schedule {
                every: 0,
                ..Schedule::default()
            },
            Schedule {
                scale: 0.0,
                ..Schedule::default()
            },
            Schedule {
                scale: f64::NAN,
                ..Schedule::default()
            },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
    }
}
