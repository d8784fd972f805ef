//! The per-device alert state machine: each (rule, instance) remembers
//! since when each level's condition has held and at which level it fires.
//!
//! Levels are tracked separately so `for` applies to each: an alert can be
//! firing at warning while the critical condition waits out its own `for`.
//! A level fires once its condition held for `for`; an active level stays
//! while the value has not gone back past the hysteresis point, so coming
//! down and resolving are immediate.

use std::collections::BTreeMap;

use picket_protocol::alert::Severity;
use serde::{Deserialize, Serialize};

use super::message::Fill;
use super::{
    ActiveAlert, DeviceCtx, LEVELS, Observation, Params, Rule, RuleSet, Transition, TransitionKind,
    level,
};
use crate::model::{Millis, Point};

/// What the rules remember about one device, to persist between
/// evaluations (it serialises to a few hundred bytes of JSON while alerts
/// are active, `{}`-sized otherwise).
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct DeviceRules {
    #[serde(default)]
    offline: bool,
    /// By rule name, then instance (`""` for a metric without instances).
    /// Only alerts with something going on are kept: firing, or some
    /// level's condition holding and waiting out `for`.
    #[serde(default)]
    alerts: BTreeMap<String, BTreeMap<String, AlertState>>,
    /// For rules with a `window`, by rule then instance: the counter's
    /// changes within the window, after the last one before it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    counters: BTreeMap<String, BTreeMap<String, Vec<(Millis, f64)>>>,
}

/// The most changes a counter keeps: a counter changing faster than this
/// per window is under-counted, never unbounded.
const COUNTER_POINTS: usize = 256;

/// Record a counter's `value` at `now` and return how much it grew within
/// `window`: the sum of its rises since the last change before the
/// window (a fall, a reset, adds nothing).
pub(super) fn increase(
    hist: &mut Vec<(Millis, f64)>,
    value: f64,
    now: Millis,
    window: Millis,
) -> f64 {
    if hist.last().is_none_or(|&(_, v)| v != value) {
        hist.push((now, value));
    }
    let start = now.saturating_sub(window);
    let first_inside = hist
        .iter()
        .position(|&(t, _)| t > start)
        .unwrap_or(hist.len());
    if first_inside > 1 {
        hist.drain(..first_inside - 1);
    }
    if hist.len() > COUNTER_POINTS {
        hist.drain(..hist.len() - COUNTER_POINTS);
    }
    hist.windows(2).map(|w| (w[1].1 - w[0].1).max(0.0)).sum()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct AlertState {
    /// The last value seen.
    value: f64,
    /// Per level (info, warning, critical): since when its condition,
    /// without hysteresis, has held.
    #[serde(default)]
    held: [Option<Millis>; 3],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    firing: Option<Firing>,
    /// When a level above the firing one will have held for `for`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due: Option<Millis>,
    /// Fed by presence (the `offline` metric): never held while offline.
    #[serde(default)]
    presence: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Firing {
    severity: Severity,
    since: Millis,
    value: f64,
    message: String,
}

impl AlertState {
    fn is_idle(&self) -> bool {
        self.firing.is_none() && self.held.iter().all(Option::is_none)
    }
}

impl DeviceRules {
    /// Whether the last presence observation said the device is offline.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Nothing to remember: online, no alert active or pending, no
    /// counter followed.
    pub fn is_empty(&self) -> bool {
        !self.offline && self.alerts.is_empty() && self.counters.is_empty()
    }

    /// The earliest time a pending `for` runs out: evaluate a
    /// [`Observation::Tick`] then.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.states()
            .filter(|(_, _, st)| !self.held_back(st))
            .filter_map(|(_, _, st)| st.due)
            .min()
    }

    /// The firing alerts, highest severity first, then oldest first. While
    /// the device is offline only the alerts on presence are shown.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let mut out: Vec<ActiveAlert> = self
            .states()
            .filter(|(_, _, st)| !self.held_back(st))
            .filter_map(|(rule, instance, st)| {
                let f = st.firing.as_ref()?;
                Some(ActiveAlert {
                    rule: rule.to_string(),
                    instance: (!instance.is_empty()).then(|| instance.to_string()),
                    severity: f.severity,
                    since: f.since,
                    value: f.value,
                    message: f.message.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.since.cmp(&b.since))
                .then_with(|| a.rule.cmp(&b.rule))
                .then_with(|| a.instance.cmp(&b.instance))
        });
        out
    }

    /// Forget, without a transition, alerts of rules that no longer exist,
    /// are disabled for this device, or no longer select the instance; and
    /// recompute pending deadlines under the rules' current `for`. Call it
    /// when the configuration is reloaded ([`RuleSet::evaluate`] also does).
    pub fn retain_rules(&mut self, rules: &RuleSet, ctx: &DeviceCtx) {
        self.counters.retain(|name, instances| {
            let Some(rule) = rules.rule(name).filter(|r| r.window_ms.is_some()) else {
                return false;
            };
            instances.retain(|instance, _| rule.selector.select_instance(instance));
            !instances.is_empty()
        });
        self.alerts.retain(|name, instances| {
            let Some(rule) = rules.rule(name) else {
                return false;
            };
            let p = rule.params(ctx);
            if !p.enabled {
                return false;
            }
            instances.retain(|instance, st| {
                st.presence = rule.selector.is_presence();
                st.due = due(p, st);
                rule.selector.select_instance(instance)
            });
            !instances.is_empty()
        });
    }

    /// Alerts held back while the device is offline: nothing is known
    /// about them until it is back.
    fn held_back(&self, st: &AlertState) -> bool {
        self.offline && !st.presence
    }

    fn states(&self) -> impl Iterator<Item = (&str, &str, &AlertState)> {
        self.alerts.iter().flat_map(|(rule, instances)| {
            instances
                .iter()
                .map(move |(instance, st)| (rule.as_str(), instance.as_str(), st))
        })
    }

    fn prune(&mut self) {
        self.alerts.retain(|_, instances| {
            instances.retain(|_, st| !st.is_idle());
            !instances.is_empty()
        });
    }
}

impl RuleSet {
    /// Apply one observation of one device at time `now`: updates `state`
    /// and returns the alerts' transitions, in rule order.
    pub fn evaluate(
        &self,
        ctx: &DeviceCtx,
        state: &mut DeviceRules,
        obs: &Observation,
        now: Millis,
    ) -> Vec<Transition> {
        state.retain_rules(self, ctx);
        match *obs {
            Observation::Sample { points } => self.on_sample(ctx, state, points, now),
            Observation::Presence { online, since } => {
                self.on_presence(ctx, state, online, since, now)
            }
            Observation::Tick => self.on_tick(ctx, state, now),
        }
    }

    /// A sample's points, each through the rules on its metric.
    fn on_sample(
        &self,
        ctx: &DeviceCtx,
        state: &mut DeviceRules,
        points: &[Point],
        now: Millis,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        if state.offline {
            return out;
        }
        let mut params = None;
        for (i, j) in self.rule_point_pairs(points) {
            let rule = &self.rules[i];
            let p = match params {
                Some((at, p)) if at == i => p,
                _ => {
                    let p = rule.params(ctx);
                    params = Some((i, p));
                    p
                }
            };
            if !p.enabled {
                continue;
            }
            let point = &points[j];
            if let Some(instance) = rule.selector.select(&point.metric) {
                let value = match rule.window_ms {
                    Some(window) => {
                        let hist = state
                            .counters
                            .entry(rule.name.clone())
                            .or_default()
                            .entry(instance.to_string())
                            .or_default();
                        increase(hist, point.value, now, window)
                    }
                    None => point.value,
                };
                let seen = Seen { value, at: now };
                out.extend(observe(state, rule, p, ctx, instance, seen, now));
            }
        }
        out
    }

    /// (rule, point) index pairs whose names agree, in the order of a
    /// loop over the rules then the points: one lookup a point rather
    /// than a comparison a rule and a point.
    fn rule_point_pairs(&self, points: &[Point]) -> Vec<(usize, usize)> {
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for (j, point) in points.iter().enumerate() {
            if let Some(rules) = self.by_metric.get(point.metric.name()) {
                pairs.extend(rules.iter().map(|&i| (i, j)));
            }
        }
        pairs.sort_unstable();
        pairs
    }

    /// The device came or went: through the rules on presence.
    fn on_presence(
        &self,
        ctx: &DeviceCtx,
        state: &mut DeviceRules,
        online: bool,
        since: Millis,
        now: Millis,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        if !online && !state.offline {
            // Nothing will be heard of these conditions while the
            // device is away: their `for` cannot be said to hold.
            for instances in state.alerts.values_mut() {
                for st in instances.values_mut().filter(|st| !st.presence) {
                    st.held = [None; 3];
                    st.due = None;
                }
            }
            state.prune();
        }
        state.offline = !online;
        // Offline since it was last heard of, not since the
        // timeout noticed it: `for` counts from then.
        let seen = if online {
            Seen {
                value: 0.0,
                at: now,
            }
        } else {
            Seen {
                value: 1.0,
                at: since,
            }
        };
        for rule in self.rules.iter().filter(|r| r.selector.is_presence()) {
            let p = rule.params(ctx);
            if p.enabled {
                out.extend(observe(state, rule, p, ctx, "", seen, now));
            }
        }
        out
    }

    /// Time passed: the alerts whose `for` ran out.
    fn on_tick(&self, ctx: &DeviceCtx, state: &mut DeviceRules, now: Millis) -> Vec<Transition> {
        let mut out = Vec::new();
        let offline = state.offline;
        for rule in &self.rules {
            let Some(instances) = state.alerts.get_mut(&rule.name) else {
                continue;
            };
            let p = rule.params(ctx);
            for (instance, st) in instances.iter_mut() {
                let held_back = offline && !st.presence;
                if !held_back && st.due.is_some_and(|d| d <= now) {
                    out.extend(step(rule, p, ctx, instance, st, now));
                }
            }
        }
        state.prune();
        out
    }
}

/// A value and since when it is known to hold.
#[derive(Clone, Copy)]
struct Seen {
    value: f64,
    at: Millis,
}

fn observe(
    state: &mut DeviceRules,
    rule: &Rule,
    p: &Params,
    ctx: &DeviceCtx,
    instance: &str,
    seen: Seen,
    now: Millis,
) -> Option<Transition> {
    let holds = p
        .levels
        .map(|t| t.is_some_and(|t| rule.op.holds(seen.value, t)));
    let known = state
        .alerts
        .get(&rule.name)
        .is_some_and(|m| m.contains_key(instance));
    // Healthy instances are not stored: the state stays as small as the
    // number of things going wrong.
    if !known && !holds.contains(&true) {
        return None;
    }
    let instances = state.alerts.entry(rule.name.clone()).or_default();
    let st = instances
        .entry(instance.to_string())
        .or_insert_with(|| AlertState {
            value: seen.value,
            held: [None; 3],
            firing: None,
            due: None,
            presence: rule.selector.is_presence(),
        });
    st.value = seen.value;
    for (held, holds) in st.held.iter_mut().zip(holds) {
        *held = if holds { held.or(Some(seen.at)) } else { None };
    }
    let transition = step(rule, p, ctx, instance, st, now);
    if st.is_idle() {
        instances.remove(instance);
        if instances.is_empty() {
            state.alerts.remove(&rule.name);
        }
    }
    transition
}

/// Move one alert to the level its state calls for at `now`.
fn step(
    rule: &Rule,
    p: &Params,
    ctx: &DeviceCtx,
    instance: &str,
    st: &mut AlertState,
    now: Millis,
) -> Option<Transition> {
    let firing = st.firing.as_ref().map(|f| f.severity);
    let mut target = None;
    for (i, sev) in LEVELS.into_iter().enumerate() {
        let Some(t) = p.levels[i] else { continue };
        let ready = st.held[i].is_some_and(|since| since.saturating_add(p.for_ms) <= now);
        let kept =
            firing.is_some_and(|f| sev <= f) && rule.op.holds_within(st.value, t, p.hysteresis);
        if ready || kept {
            target = Some(sev);
        }
    }
    let kind = match (firing, target) {
        (None, None) => None,
        (None, Some(_)) => Some(TransitionKind::Fired),
        (Some(from), Some(to)) if to > from => Some(TransitionKind::Escalated { from }),
        (Some(from), Some(to)) if to < from => Some(TransitionKind::DeEscalated { from }),
        (Some(_), Some(_)) => None,
        (Some(_), None) => Some(TransitionKind::Resolved),
    };
    let transition = match (kind, target.or(firing)) {
        (Some(kind), Some(severity)) => {
            let message = render(rule, p, ctx, instance, severity, st.value);
            st.firing = target.map(|severity| Firing {
                severity,
                since: st.firing.as_ref().map_or(now, |f| f.since),
                value: st.value,
                message: message.clone(),
            });
            Some(Transition {
                rule: rule.name.clone(),
                instance: (!instance.is_empty()).then(|| instance.to_string()),
                kind,
                severity,
                value: st.value,
                message,
                at: now,
            })
        }
        _ => None,
    };
    st.due = due(p, st);
    transition
}

/// When the next level above the firing one will have held for `for`.
fn due(p: &Params, st: &AlertState) -> Option<Millis> {
    let firing = st.firing.as_ref().map(|f| f.severity);
    LEVELS
        .into_iter()
        .filter(|sev| firing.is_none_or(|f| *sev > f))
        .filter(|sev| p.levels[level(*sev)].is_some())
        .filter_map(|sev| st.held[level(sev)])
        .map(|since| since.saturating_add(p.for_ms))
        .min()
}

fn render(
    rule: &Rule,
    p: &Params,
    ctx: &DeviceCtx,
    instance: &str,
    severity: Severity,
    value: f64,
) -> String {
    let metric = if instance.is_empty() {
        rule.selector.name().to_string()
    } else {
        format!("{}:{instance}", rule.selector.name())
    };
    rule.message.render(&Fill {
        value,
        threshold: p.levels[level(severity)],
        unit: rule.unit,
        instance,
        device: ctx.id.as_str(),
        metric: &metric,
        rule: &rule.name,
        severity,
        op: rule.op.as_str(),
    })
}
