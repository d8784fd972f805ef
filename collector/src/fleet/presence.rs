//! Presence of one device: online, offline and why — a pure state machine.
//!
//! - A birth (`state` = online) makes the device online under that session.
//! - A Last Will (`state` = offline) makes it offline *only* if it carries
//!   the live session id: a will from an older connection, delivered after
//!   the device reconnected (or, with some brokers, just before the birth of
//!   the same connection), is stale and ignored.
//! - Any message proves the device is alive; silence for the heartbeat
//!   timeout makes it offline as `silent`, dated from when it was last heard.
//!
//! Times are the collector's clock when a message arrived, never the
//! device's (a Pi without RTC may be hours off before NTP).

use serde::{Deserialize, Serialize};

use picket_protocol::OfflineReason;

use crate::model::Millis;

/// Why a device is offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The agent said goodbye before disconnecting.
    CleanStop,
    /// The broker published the agent's Last Will.
    ConnectionLost,
    /// Nothing arrived for the heartbeat timeout.
    Silent,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::CleanStop => "clean stop",
            Cause::ConnectionLost => "connection lost",
            Cause::Silent => "silent",
        }
    }
}

impl From<OfflineReason> for Cause {
    fn from(r: OfflineReason) -> Self {
        match r {
            OfflineReason::CleanStop => Cause::CleanStop,
            OfflineReason::ConnectionLost => Cause::ConnectionLost,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "cause")]
pub enum Status {
    Unknown,
    Online,
    Offline(Cause),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub status: Status,
    /// Session id of the live (or last) connection.
    pub session: Option<String>,
    /// When `status` began: for `silent`, when the device was last heard.
    pub since: Millis,
    /// When anything last arrived from the device.
    pub last_seen: Millis,
}

impl Default for Presence {
    fn default() -> Self {
        Presence {
            status: Status::Unknown,
            session: None,
            since: 0,
            last_seen: 0,
        }
    }
}

pub enum Input<'a> {
    Birth {
        session: &'a str,
    },
    Will {
        session: &'a str,
        reason: OfflineReason,
    },
    /// Telemetry, events, replies: proof of life.
    Message,
    /// The timer fired; `timeout` is the heartbeat timeout.
    Tick {
        timeout: Millis,
    },
}

/// A presence change worth recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub online: bool,
    pub cause: Option<Cause>,
    pub session: Option<String>,
    /// When the new status began (for `silent`, the last time heard).
    pub since: Millis,
}

/// What an input did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Changed(Change),
    Unchanged,
    /// A Last Will that does not belong to the live session.
    StaleWill,
}

impl Presence {
    pub fn is_online(&self) -> bool {
        self.status == Status::Online
    }

    /// When the device goes silent if nothing arrives, while online.
    pub fn deadline(&self, timeout: Millis) -> Option<Millis> {
        self.is_online()
            .then(|| self.last_seen.saturating_add(timeout))
    }

    pub fn apply(&mut self, input: Input<'_>, now: Millis) -> Outcome {
        match input {
            Input::Birth { session } => {
                self.last_seen = self.last_seen.max(now);
                let same = self.session.as_deref() == Some(session);
                if self.is_online() && same {
                    return Outcome::Unchanged;
                }
                self.session = Some(session.to_string());
                self.online(now)
            }
            Input::Will { session, reason } => {
                let live = self.session.as_deref();
                let accept = match self.status {
                    // A will of the live connection.
                    Status::Online => live == Some(session),
                    // A collector that never saw this device learns its
                    // state from the retained will.
                    Status::Unknown => live.is_none() || live == Some(session),
                    Status::Offline(_) => false,
                };
                if !accept {
                    return if live == Some(session) {
                        Outcome::Unchanged
                    } else {
                        Outcome::StaleWill
                    };
                }
                self.session = Some(session.to_string());
                self.offline(reason.into(), now)
            }
            Input::Message => {
                self.last_seen = self.last_seen.max(now);
                match self.status {
                    Status::Online => Outcome::Unchanged,
                    // Talking again: whatever we thought, it is online.
                    Status::Unknown | Status::Offline(_) => self.online(now),
                }
            }
            Input::Tick { timeout } => match self.deadline(timeout) {
                Some(d) if now >= d => {
                    let since = self.last_seen;
                    self.offline(Cause::Silent, since)
                }
                _ => Outcome::Unchanged,
            },
        }
    }

    fn online(&mut self, now: Millis) -> Outcome {
        self.status = Status::Online;
        self.since = now;
        Outcome::Changed(Change {
            online: true,
            cause: None,
            session: self.session.clone(),
            since: now,
        })
    }

    fn offline(&mut self, cause: Cause, since: Millis) -> Outcome {
        self.status = Status::Offline(cause);
        self.since = since;
        Outcome::Changed(Change {
            online: false,
            cause: Some(cause),
            session: self.session.clone(),
            since,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OfflineReason::*;

    const T: Millis = 300_000;

    fn birth(s: &str) -> Input<'_> {
        Input::Birth { session: s }
    }
    fn will(s: &str) -> Input<'_> {
        Input::Will {
            session: s,
            reason: ConnectionLost,
        }
    }

    /// (now, input) → (status after, outcome kind) for each step.
    #[test]
    fn table() {
        #[derive(Debug, PartialEq)]
        enum O {
            On,
            Off(Cause),
            Same,
            Stale,
        }
        let kind = |o: Outcome| match o {
            Outcome::Changed(c) if c.online => O::On,
            Outcome::Changed(c) => O::Off(c.cause.expect("cause")),
            Outcome::Unchanged => O::Same,
            Outcome::StaleWill => O::Stale,
        };
        type Step<'a> = (Millis, Input<'a>, O);
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "birth then will of the same session",
                vec![
                    (0, birth("a"), O::On),
                    (10, will("a"), O::Off(Cause::ConnectionLost)),
                ],
            ),
            (
                "stale will after a reconnect is ignored",
                vec![
                    (0, birth("a"), O::On),
                    (5, birth("b"), O::On),
                    (6, will("a"), O::Stale),
                    (7, Input::Message, O::Same),
                ],
            ),
            (
                "will of the next session arriving before its birth is ignored",
                vec![
                    (0, birth("a"), O::On),
                    (5, will("b"), O::Stale),
                    (6, birth("b"), O::On),
                    (7, will("b"), O::Off(Cause::ConnectionLost)),
                ],
            ),
            (
                "clean stop",
                vec![
                    (0, birth("a"), O::On),
                    (
                        9,
                        Input::Will {
                            session: "a",
                            reason: CleanStop,
                        },
                        O::Off(Cause::CleanStop),
                    ),
                ],
            ),
            (
                "unknown device learns from a retained will",
                vec![(0, will("a"), O::Off(Cause::ConnectionLost))],
            ),
            (
                "silent at the deadline, not before",
                vec![
                    (0, birth("a"), O::On),
                    (100, Input::Message, O::Same),
                    (100 + T - 1, Input::Tick { timeout: T }, O::Same),
                    (100 + T, Input::Tick { timeout: T }, O::Off(Cause::Silent)),
                    (100 + T + 1, Input::Tick { timeout: T }, O::Same),
                ],
            ),
            (
                "a silent device that talks again is online",
                vec![
                    (0, birth("a"), O::On),
                    (T, Input::Tick { timeout: T }, O::Off(Cause::Silent)),
                    (T + 5, Input::Message, O::On),
                ],
            ),
            (
                "same birth twice (retained, redelivered) changes nothing",
                vec![(0, birth("a"), O::On), (1, birth("a"), O::Same)],
            ),
        ];
        for (name, steps) in cases {
            let mut p = Presence::default();
            for (i, (now, input, want)) in steps.into_iter().enumerate() {
                assert_eq!(kind(p.apply(input, now)), want, "{name}: step {i}");
            }
        }
    }

    #[test]
    fn silent_is_dated_from_the_last_message() {
        let mut p = Presence::default();
        p.apply(birth("a"), 1_000);
        p.apply(Input::Message, 2_000);
        match p.apply(Input::Tick { timeout: T }, 2_000 + T) {
            Outcome::Changed(c) => assert_eq!((c.online, c.since), (false, 2_000)),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.since, 2_000);
        assert_eq!(p.deadline(T), None);
    }

    #[test]
    fn deadline_follows_the_last_message() {
        let mut p = Presence::default();
        assert_eq!(p.deadline(T), None);
        p.apply(birth("a"), 1_000);
        assert_eq!(p.deadline(T), Some(1_000 + T));
        p.apply(Input::Message, 4_000);
        assert_eq!(p.deadline(T), Some(4_000 + T));
    }
}
