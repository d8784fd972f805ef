//! The blink code: which pattern the agent's state calls for, and the exact
//! on/off timings of each pattern. Pure: no I/O, no clock.
//!
//! A technician counts blinks, so every code is a count of short blinks
//! followed by a long pause (easy to count, hard to confuse) or a steady
//! rate far apart from the others (10 Hz, 4 Hz, 1 Hz).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the LED shows, highest priority first (the order of the table in
/// docs/technicians.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// 10 Hz for the requested time.
    Identify,
    /// 4 short blinks, pause.
    ConfigInvalid,
    /// 4 Hz continuous.
    CriticalAlert,
    /// 3 short blinks, pause.
    BrokerRefused,
    /// 2 short blinks, pause.
    NoBroker,
    /// 1 Hz.
    Degraded,
    /// Solid on.
    AllWell,
    /// Off: the agent is not running.
    Off,
}

/// Everything the pattern depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedInputs {
    pub identify: bool,
    pub config_invalid: bool,
    pub critical_alert: bool,
    pub link: LinkView,
    pub clock_synced: bool,
    /// The disk queue dropped records recently (see [`super::DROPPING_FOR`]).
    pub queue_dropping: bool,
}

/// The uplink's state as far as the LED cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkView {
    Connected,
    /// Not connected yet, or the network or broker is unreachable: data is
    /// being buffered.
    Unreachable,
    /// The broker answered and refused us (credentials, TLS, protocol).
    Refused,
}

impl LedInputs {
    /// All well: the state of a healthy, connected agent.
    pub fn healthy() -> LedInputs {
        LedInputs {
            identify: false,
            config_invalid: false,
            critical_alert: false,
            link: LinkView::Connected,
            clock_synced: true,
            queue_dropping: false,
        }
    }

    /// The priority table: the first row that applies wins.
    pub fn pattern(&self) -> Pattern {
        if self.identify {
            Pattern::Identify
        } else if self.config_invalid {
            Pattern::ConfigInvalid
        } else if self.critical_alert {
            Pattern::CriticalAlert
        } else if self.link == LinkView::Refused {
            Pattern::BrokerRefused
        } else if self.link == LinkView::Unreachable {
            Pattern::NoBroker
        } else if !self.clock_synced || self.queue_dropping {
            Pattern::Degraded
        } else {
            Pattern::AllWell
        }
    }
}

/// One stretch of a pattern: the LED `on` or off for `ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub on: bool,
    pub ms: u64,
}

const fn on(ms: u64) -> Step {
    Step { on: true, ms }
}

const fn off(ms: u64) -> Step {
    Step { on: false, ms }
}

/// A short blink of a counted code: 200 ms on, 300 ms off; after the last
/// blink the LED stays off 1500 ms in all, so the groups stand apart.
const BLINK_ON: u64 = 200;
const BLINK_OFF: u64 = 300;
const PAUSE: u64 = 1500;

/// A counted code of `N / 2` blinks.
const fn blinks<const N: usize>() -> [Step; N] {
    let mut steps = [off(BLINK_OFF); N];
    let mut i = 0;
    while i < N {
        steps[i] = on(BLINK_ON);
        i += 2;
    }
    steps[N - 1] = off(PAUSE);
    steps
}

const IDENTIFY: [Step; 2] = [on(50), off(50)];
const FOUR_BLINKS: [Step; 8] = blinks();
const CRITICAL: [Step; 2] = [on(125), off(125)];
const THREE_BLINKS: [Step; 6] = blinks();
const TWO_BLINKS: [Step; 4] = blinks();
const SLOW: [Step; 2] = [on(500), off(500)];
const SOLID: [Step; 1] = [on(0)];
const DARK: [Step; 1] = [off(0)];

impl Pattern {
    /// One period of the pattern, repeated for as long as it is shown. A
    /// steady pattern is one step of zero length: set it and wait.
    pub fn steps(self) -> &'static [Step] {
        match self {
            Pattern::Identify => &IDENTIFY,
            Pattern::ConfigInvalid => &FOUR_BLINKS,
            Pattern::CriticalAlert => &CRITICAL,
            Pattern::BrokerRefused => &THREE_BLINKS,
            Pattern::NoBroker => &TWO_BLINKS,
            Pattern::Degraded => &SLOW,
            Pattern::AllWell => &SOLID,
            Pattern::Off => &DARK,
        }
    }

    pub fn is_steady(self) -> bool {
        self.steps().len() == 1
    }

    /// One period's length (zero for a steady pattern).
    pub fn period(self) -> Duration {
        Duration::from_millis(self.steps().iter().map(|s| s.ms).sum())
    }

    /// How the LED looks, in words.
    pub fn looks(self) -> &'static str {
        match self {
            Pattern::Identify => "fast flicker (10 per second)",
            Pattern::ConfigInvalid => "4 short blinks, pause",
            Pattern::CriticalAlert => "rapid blinking (4 per second)",
            Pattern::BrokerRefused => "3 short blinks, pause",
            Pattern::NoBroker => "2 short blinks, pause",
            Pattern::Degraded => "slow blink (once a second)",
            Pattern::AllWell => "solid on",
            Pattern::Off => "off",
        }
    }

    /// What it means, in words.
    pub fn meaning(self) -> &'static str {
        match self {
            Pattern::Identify => "identify: someone asked this box to show itself",
            Pattern::ConfigInvalid => "the configuration is invalid: the agent cannot run",
            Pattern::CriticalAlert => "a critical alert is active on this box",
            Pattern::BrokerRefused => "the broker refused the agent (credentials or TLS)",
            Pattern::NoBroker => "no network or broker unreachable: data is being buffered",
            Pattern::Degraded => {
                "connected, but the clock is not synchronised or the queue is dropping data"
            }
            Pattern::AllWell => "all well: connected, clock synchronised, no critical alert",
            Pattern::Off => "the agent is not running",
        }
    }

    /// What a technician should do about it.
    pub fn action(self) -> &'static str {
        match self {
            Pattern::Identify => "nothing: it stops by itself",
            Pattern::ConfigInvalid => {
                "run `picket-agent check-config`, fix the key it names, restart the agent"
            }
            Pattern::CriticalAlert => {
                "check the alert with `picket-agent status` (or the collector's `/api/alerts`)"
            }
            Pattern::BrokerRefused => {
                "run `picket-agent doctor`: check broker.username, the password file, the CA and client certificates"
            }
            Pattern::NoBroker => {
                "check the network cable or Wi-Fi, then `picket-agent doctor` (DNS, TCP); nothing is lost meanwhile"
            }
            Pattern::Degraded => {
                "run `picket-agent status`: check NTP reachability (clock) or free disk space (queue)"
            }
            Pattern::AllWell => "nothing",
            Pattern::Off => "check power, then `systemctl status picket-agent`",
        }
    }

    /// Every pattern, in priority order.
    pub const ALL: [Pattern; 8] = [
        Pattern::Identify,
        Pattern::ConfigInvalid,
        Pattern::CriticalAlert,
        Pattern::BrokerRefused,
        Pattern::NoBroker,
        Pattern::Degraded,
        Pattern::AllWell,
        Pattern::Off,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The priority table row by row: each input alone, and each input
    /// together with every input of lower priority (it still wins).
    #[test]
    fn priority_table() {
        let h = LedInputs::healthy();
        let rows: [(LedInputs, Pattern); 9] = [
            (
                LedInputs {
                    identify: true,
                    config_invalid: true,
                    critical_alert: true,
                    link: LinkView::Refused,
                    clock_synced: false,
                    queue_dropping: true,
                },
                Pattern::Identify,
            ),
            (
                LedInputs {
                    config_invalid: true,
                    critical_alert: true,
                    link: LinkView::Refused,
                    clock_synced: false,
                    ..h
                },
                Pattern::ConfigInvalid,
            ),
            (
                LedInputs {
                    critical_alert: true,
                    link: LinkView::Refused,
                    clock_synced: false,
                    queue_dropping: true,
                    ..h
                },
                Pattern::CriticalAlert,
            ),
            (
                LedInputs {
                    link: LinkView::Refused,
                    clock_synced: false,
                    queue_dropping: true,
                    ..h
                },
                Pattern::BrokerRefused,
            ),
            (
                LedInputs {
                    link: LinkView::Unreachable,
                    clock_synced: false,
                    queue_dropping: true,
                    ..h
                },
                Pattern::NoBroker,
            ),
            (
                LedInputs {
                    clock_synced: false,
                    ..h
                },
                Pattern::Degraded,
            ),
            (
                LedInputs {
                    queue_dropping: true,
                    ..h
                },
                Pattern::Degraded,
            ),
            (h, Pattern::AllWell),
            (
                LedInputs {
                    identify: true,
                    ..h
                },
                Pattern::Identify,
            ),
        ];
        for (inputs, want) in rows {
            assert_eq!(inputs.pattern(), want, "{inputs:?}");
        }
    }

    #[test]
    fn exact_timings() {
        let ms =
            |p: Pattern| -> Vec<(bool, u64)> { p.steps().iter().map(|s| (s.on, s.ms)).collect() };
        assert_eq!(ms(Pattern::Identify), [(true, 50), (false, 50)]);
        assert_eq!(ms(Pattern::CriticalAlert), [(true, 125), (false, 125)]);
        assert_eq!(ms(Pattern::Degraded), [(true, 500), (false, 500)]);
        assert_eq!(
            ms(Pattern::NoBroker),
            [(true, 200), (false, 300), (true, 200), (false, 1500)]
        );
        assert_eq!(ms(Pattern::AllWell), [(true, 0)]);
        assert_eq!(ms(Pattern::Off), [(false, 0)]);
        let blinks = |p: Pattern| p.steps().iter().filter(|s| s.on).count();
        assert_eq!(blinks(Pattern::NoBroker), 2);
        assert_eq!(blinks(Pattern::BrokerRefused), 3);
        assert_eq!(blinks(Pattern::ConfigInvalid), 4);
        assert_eq!(Pattern::NoBroker.period(), Duration::from_millis(2200));
        assert_eq!(Pattern::BrokerRefused.period(), Duration::from_millis(2700));
        assert_eq!(Pattern::ConfigInvalid.period(), Duration::from_millis(3200));
        for p in Pattern::ALL {
            let steps = p.steps();
            // Blinking patterns alternate and start lit, so a change of
            // pattern is visible at once.
            if !p.is_steady() {
                assert!(steps[0].on, "{p:?}");
                assert!(steps.windows(2).all(|w| w[0].on != w[1].on), "{p:?}");
                assert!(steps.iter().all(|s| s.ms > 0), "{p:?}");
            }
        }
    }

    #[test]
    fn every_pattern_has_words_and_a_distinct_look() {
        let mut looks = std::collections::HashSet::new();
        for p in Pattern::ALL {
            assert!(!p.meaning().is_empty() && !p.action().is_empty());
            assert!(looks.insert(p.looks()), "{p:?}");
        }
        let json = serde_json::to_string(&Pattern::NoBroker).unwrap();
        assert_eq!(json, "\"no_broker\"");
    }
}
