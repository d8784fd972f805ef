//! When an alert change is worth a notification: the cooldown policy.
//!
//! Pure: the engine feeds it the changes of one device's alerts with the
//! time they happened, and persists the state between runs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Millis;

/// What happened to one alert (a rule on one instance) of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The alert became active.
    Fired,
    /// The active alert moved to a higher severity (warning → critical).
    Escalated,
    /// The active alert moved to a lower severity (critical → warning).
    Deescalated,
    /// The alert is no longer active.
    Resolved,
}

/// What a notification announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Firing,
    Resolved,
}

/// Notification memory of one device, keyed by `(rule, instance)` as the
/// engine spells it (e.g. `disk_full:/data`).
///
/// # Policy
/// With `cooldown` the configured `notify.cooldown` (default 1 h):
/// - **fired**: notify, unless a firing notification for this key was sent
///   less than `cooldown` ago;
/// - **escalated** (warning → critical): notify even inside the cooldown,
///   it is news; this restarts the cooldown;
/// - **de-escalated**: never notify (the alert is still active, and less
///   serious than what was announced);
/// - **resolved**: notify only if the firing was announced, so nobody is
///   told that something they never heard of is over.
///
/// An alert that flaps inside the cooldown is therefore silent both ways:
/// fire (sent), resolve (sent), fire again 10 min later (silent), resolve
/// (silent). A clock that steps backwards (a last notification "in the
/// future") does not mute alerts: the cooldown counts as elapsed.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Cooldowns {
    keys: BTreeMap<String, Entry>,
}

#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(default)]
struct Entry {
    /// When a firing notification was last sent for this key.
    sent: Option<Millis>,
    /// Whether the alert currently active was announced, so its
    /// resolution is too.
    announced: bool,
}

impl Cooldowns {
    /// Record `change` of alert `key` at `now` and say whether, and what,
    /// to notify. See the policy above.
    pub fn decide(
        &mut self,
        key: &str,
        change: Change,
        now: Millis,
        cooldown: Duration,
    ) -> Option<Kind> {
        let entry = self.keys.entry(key.to_string()).or_default();
        match change {
            Change::Fired => {
                if entry.in_cooldown(now, cooldown) {
                    entry.announced = false;
                    None
                } else {
                    entry.sent = Some(now);
                    entry.announced = true;
                    Some(Kind::Firing)
                }
            }
            Change::Escalated => {
                entry.sent = Some(now);
                entry.announced = true;
                Some(Kind::Firing)
            }
            Change::Deescalated => None,
            Change::Resolved => {
                if std::mem::take(&mut entry.announced) {
                    Some(Kind::Resolved)
                } else {
                    None
                }
            }
        }
    }

    /// Forget keys that can no longer change a decision: no active
    /// announced alert and the cooldown over. Keeps the persisted state
    /// from growing with every instance that ever alerted.
    pub fn prune(&mut self, now: Millis, cooldown: Duration) {
        self.keys
            .retain(|_, e| e.announced || e.in_cooldown(now, cooldown));
    }

    /// Number of keys remembered.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Entry {
    fn in_cooldown(&self, now: Millis, cooldown: Duration) -> bool {
        let cooldown = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX);
        match self.sent {
            Some(sent) if sent <= now => now - sent < cooldown,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;
    const HOUR: Duration = Duration::from_secs(3600);
    const T0: Millis = 1_700_000_000_000;

    use Change::*;
    const FIRING: Option<Kind> = Some(Kind::Firing);
    const RESOLVED: Option<Kind> = Some(Kind::Resolved);

    /// Each case: a sequence of (minutes after T0, key, change, expected).
    fn run(steps: &[(u64, &str, Change, Option<Kind>)]) {
        let mut c = Cooldowns::default();
        for (i, (min, key, change, want)) in steps.iter().enumerate() {
            let got = c.decide(key, *change, T0 + min * MIN, HOUR);
            assert_eq!(got, *want, "step {i}: {change:?} of {key} at +{min} min");
        }
    }

    #[test]
    fn fire_and_resolve_are_both_announced() {
        run(&[(0, "temp", Fired, FIRING), (5, "temp", Resolved, RESOLVED)]);
    }

    #[test]
    fn a_flap_inside_the_cooldown_is_silent_both_ways() {
        run(&[
            (0, "temp", Fired, FIRING),
            (5, "temp", Resolved, RESOLVED),
            (10, "temp", Fired, None),
            (15, "temp", Resolved, None),
            (59, "temp", Fired, None),
            (59, "temp", Resolved, None),
        ]);
    }

    #[test]
    fn the_cooldown_ends_exactly_after_its_length() {
        run(&[
            (0, "temp", Fired, FIRING),
            (1, "temp", Resolved, RESOLVED),
            (60, "temp", Fired, FIRING),
            (61, "temp", Resolved, RESOLVED),
        ]);
        // One millisecond short of the hour is still inside.
        let mut c = Cooldowns::default();
        assert_eq!(c.decide("k", Fired, T0, HOUR), FIRING);
        assert_eq!(c.decide("k", Resolved, T0 + 1, HOUR), RESOLVED);
        assert_eq!(c.decide("k", Fired, T0 + 60 * MIN - 1, HOUR), None);
    }

    #[test]
    fn the_cooldown_counts_from_the_last_firing_sent_not_the_last_fire() {
        run(&[
            (0, "temp", Fired, FIRING),
            (10, "temp", Resolved, RESOLVED),
            (50, "temp", Fired, None),
            (55, "temp", Resolved, None),
            (61, "temp", Fired, FIRING),
        ]);
    }

    #[test]
    fn escalation_is_news_even_inside_the_cooldown() {
        run(&[
            (0, "temp", Fired, FIRING),
            (2, "temp", Escalated, FIRING),
            (3, "temp", Deescalated, None),
            (4, "temp", Escalated, FIRING),
            (30, "temp", Resolved, RESOLVED),
            // The escalation at +4 restarted the cooldown.
            (63, "temp", Fired, None),
            (64, "temp", Resolved, None),
            (65, "temp", Fired, FIRING),
        ]);
    }

    #[test]
    fn an_escalated_silent_alert_is_announced_and_so_is_its_end() {
        run(&[
            (0, "temp", Fired, FIRING),
            (1, "temp", Resolved, RESOLVED),
            (10, "temp", Fired, None),
            (11, "temp", Escalated, FIRING),
            (12, "temp", Resolved, RESOLVED),
        ]);
    }

    #[test]
    fn de_escalation_never_notifies() {
        run(&[
            (0, "temp", Fired, FIRING),
            (1, "temp", Deescalated, None),
            (2, "temp", Resolved, RESOLVED),
            (3, "temp", Deescalated, None),
        ]);
    }

    #[test]
    fn a_resolution_without_a_firing_is_silent() {
        run(&[(0, "temp", Resolved, None), (1, "temp", Resolved, None)]);
    }

    #[test]
    fn a_repeated_resolution_is_sent_once() {
        run(&[
            (0, "temp", Fired, FIRING),
            (1, "temp", Resolved, RESOLVED),
            (2, "temp", Resolved, None),
        ]);
    }

    #[test]
    fn keys_are_independent() {
        run(&[
            (0, "disk_full:/", Fired, FIRING),
            (1, "disk_full:/data", Fired, FIRING),
            (2, "disk_full:/", Resolved, RESOLVED),
            (3, "disk_full:/", Fired, None),
            (4, "disk_full:/data", Resolved, RESOLVED),
        ]);
    }

    #[test]
    fn a_zero_cooldown_announces_every_change() {
        let mut c = Cooldowns::default();
        for i in 0..3 {
            assert_eq!(c.decide("k", Fired, T0 + i, Duration::ZERO), FIRING);
            assert_eq!(c.decide("k", Resolved, T0 + i, Duration::ZERO), RESOLVED);
        }
    }

    #[test]
    fn a_clock_stepped_backwards_does_not_mute_alerts() {
        let mut c = Cooldowns::default();
        assert_eq!(c.decide("k", Fired, T0, HOUR), FIRING);
        assert_eq!(c.decide("k", Resolved, T0, HOUR), RESOLVED);
        assert_eq!(c.decide("k", Fired, T0 - 24 * 60 * MIN, HOUR), FIRING);
    }

    #[test]
    fn prune_forgets_only_what_cannot_matter() {
        let mut c = Cooldowns::default();
        c.decide("active", Fired, T0, HOUR);
        c.decide("recent", Fired, T0, HOUR);
        c.decide("recent", Resolved, T0 + MIN, HOUR);
        c.decide("old", Fired, T0 - 2 * 60 * MIN, HOUR);
        c.decide("old", Resolved, T0 - 90 * MIN, HOUR);
        c.decide("never", Resolved, T0, HOUR);
        c.prune(T0 + 2 * MIN, HOUR);
        assert_eq!(c.len(), 2);
        // Pruning kept what the next decisions depend on.
        assert_eq!(c.decide("recent", Fired, T0 + 3 * MIN, HOUR), None);
        assert_eq!(c.decide("active", Resolved, T0 + 3 * MIN, HOUR), RESOLVED);
        assert_eq!(c.decide("old", Fired, T0 + 3 * MIN, HOUR), FIRING);
    }

    #[test]
    fn round_trips_through_json() {
        let mut c = Cooldowns::default();
        c.decide("temp", Fired, T0, HOUR);
        c.decide("disk_full:/", Fired, T0, HOUR);
        c.decide("disk_full:/", Resolved, T0 + MIN, HOUR);
        let json = serde_json::to_string(&c).expect("encode");
        let back: Cooldowns = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, c);
        // The restored state decides like the original.
        assert_eq!(
            back.clone().decide("temp", Resolved, T0 + 2 * MIN, HOUR),
            RESOLVED
        );
        assert_eq!(
            back.clone()
                .decide("disk_full:/", Fired, T0 + 2 * MIN, HOUR),
            None
        );
        // An older or empty document is not an error.
        assert_eq!(
            serde_json::from_str::<Cooldowns>("{}").expect("empty"),
            Cooldowns::default()
        );
    }
}
