//! Threshold rules: from a device's metrics and presence to alerts that
//! fire, escalate, come down and resolve.
//!
//! Pure: no I/O, no clock. Evaluation is
//! `(rule state, observation, now) → (rule state, transitions)`, with `now`
//! passed in, so every timing rule (`for`, offline since last heard of) is
//! tested with explicit times and behaves the same after a restart that
//! restores the persisted [`DeviceRules`].
//!
//! # Layout
//! - [`config`]: the `[[rules]]` tables as written ([`RawRule`]), whose
//!   rustdoc is the user's reference; [`defaults`]: the built-in rules.
//! - `build`: merges the built-in rules with the user's and validates them
//!   into a [`RuleSet`].
//! - `select`: metric selectors and the `*`/`?` globs.
//! - `message`: alert message templates and value formatting.
//! - `eval`: the per-device state machine ([`DeviceRules`],
//!   [`RuleSet::evaluate`]).

mod build;
pub mod config;
pub mod defaults;
mod eval;
mod message;
mod select;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use picket_protocol::alert::{Alert, Severity};
use picket_protocol::topic::DeviceId;
use serde::{Deserialize, Serialize};

use crate::model::{Millis, Point};

pub use build::build;
pub use config::{Amount, RawOverride, RawRemedy, RawRule};
pub use defaults::default_rules;
pub use eval::DeviceRules;
pub use select::{Glob, GlobError, OFFLINE};

use message::Template;
use select::Selector;

/// Validated rules, ready to evaluate; built by [`build`].
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Indices of the sample rules by the metric name they select, so a
    /// point is matched against its own rules only.
    by_metric: HashMap<String, Vec<usize>>,
}

impl RuleSet {
    fn new(rules: Vec<Rule>) -> RuleSet {
        let mut by_metric: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            if !r.selector.is_presence() {
                by_metric
                    .entry(r.selector.name().to_string())
                    .or_default()
                    .push(i);
            }
        }
        RuleSet { rules, by_metric }
    }

    /// Rule names in evaluation order (built-in rules first), disabled ones
    /// included.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }

    /// The remedy of rule `name`, if it has one.
    pub fn remedy(&self, name: &str) -> Option<&Remedy> {
        self.rule(name).and_then(|r| r.remedy.as_ref())
    }

    fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

/// The device a rule is evaluated for: overrides match on these.
#[derive(Debug, Clone, Copy)]
pub struct DeviceCtx<'a> {
    pub id: &'a DeviceId,
    pub labels: &'a BTreeMap<String, String>,
}

/// Something the collector learnt about a device.
#[derive(Debug, Clone, Copy)]
pub enum Observation<'a> {
    /// The flattened points of one live sample. History (samples replayed
    /// from an agent's backlog) must not be passed: it would fire alerts
    /// for conditions that are over.
    Sample { points: &'a [Point] },
    /// The device went offline (`online: false`, `since`: when it was last
    /// heard of) or came back (`online: true`, `since` unused). Pass the
    /// return before the first sample after it: samples of an offline
    /// device are ignored. Repeating either is harmless.
    Presence { online: bool, since: Millis },
    /// Time passed: fires the alerts whose `for` ran out. Call it at
    /// [`DeviceRules::next_deadline`].
    Tick,
}

/// A change of one alert, for notifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub rule: String,
    pub instance: Option<String>,
    pub kind: TransitionKind,
    /// The severity after the transition; for [`TransitionKind::Resolved`],
    /// the severity the alert had.
    pub severity: Severity,
    /// The value that caused it (the last one seen, for a timer).
    pub value: f64,
    pub message: String,
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransitionKind {
    Fired,
    Escalated { from: Severity },
    DeEscalated { from: Severity },
    Resolved,
}

/// An alert that is firing, as the device's alert topic shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub rule: String,
    pub instance: Option<String>,
    pub severity: Severity,
    /// When it fired (escalating keeps it).
    pub since: Millis,
    /// Value and message of the last transition (fired, escalated, came
    /// down), so the published alert set changes only when the alert does.
    pub value: f64,
    pub message: String,
}

impl ActiveAlert {
    /// The wire name: the rule, with the instance when there is one
    /// (`disk_usage:/data`).
    pub fn wire_rule(&self) -> String {
        match &self.instance {
            Some(i) => format!("{}:{i}", self.rule),
            None => self.rule.clone(),
        }
    }
}

impl From<&ActiveAlert> for Alert {
    fn from(a: &ActiveAlert) -> Alert {
        Alert {
            rule: a.wire_rule(),
            severity: a.severity,
            since: a.since,
            value: Some(a.value),
            message: a.message.clone(),
        }
    }
}

impl From<ActiveAlert> for Alert {
    fn from(a: ActiveAlert) -> Alert {
        Alert::from(&a)
    }
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    name: String,
    selector: Selector,
    op: Op,
    /// The unit of the metric, for messages.
    unit: &'static str,
    message: Template,
    base: Params,
    overrides: Vec<Override>,
    remedy: Option<Remedy>,
    /// Compare the growth within this window, not the value (counters).
    window_ms: Option<Millis>,
}

/// A validated remedy: the command a firing alert sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Remedy {
    pub command: String,
    pub args: serde_json::Value,
    pub limit: u32,
    pub window: std::time::Duration,
    pub ttl: Option<std::time::Duration>,
}

impl Remedy {
    /// The command for one alert: placeholders filled in, typed.
    pub fn action(
        &self,
        device: &DeviceId,
        instance: Option<&str>,
    ) -> Result<picket_protocol::Action, crate::commands::IssueError> {
        let mut args = self.args.clone();
        fill(&mut args, device.as_str(), instance.unwrap_or(""));
        crate::commands::action(&self.command, Some(args))
    }
}

fn fill(v: &mut serde_json::Value, device: &str, instance: &str) {
    match v {
        serde_json::Value::String(s) => {
            *s = s
                .replace("{instance}", instance)
                .replace("{device}", device);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| fill(x, device, instance)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| fill(x, device, instance)),
        _ => {}
    }
}

impl Rule {
    /// The settings for one device: the first matching override's.
    fn params(&self, ctx: &DeviceCtx) -> &Params {
        self.overrides
            .iter()
            .find(|o| o.matches(ctx))
            .map_or(&self.base, |o| &o.params)
    }
}

/// The settings an override can change, resolved.
#[derive(Debug, Clone, PartialEq)]
struct Params {
    enabled: bool,
    /// Threshold per severity, indexed by [`level`].
    levels: [Option<f64>; 3],
    hysteresis: f64,
    for_ms: Millis,
}

#[derive(Debug, Clone, PartialEq)]
struct Override {
    devices: Vec<Glob>,
    labels: Vec<(String, Glob)>,
    /// The rule's settings with this override's laid over them.
    params: Params,
}

impl Override {
    fn matches(&self, ctx: &DeviceCtx) -> bool {
        (self.devices.is_empty() || self.devices.iter().any(|g| g.matches(ctx.id.as_str())))
            && self
                .labels
                .iter()
                .all(|(k, g)| ctx.labels.get(k).is_some_and(|v| g.matches(v)))
    }
}

/// Severities from lowest to highest; index `i` is [`level`] `i`.
const LEVELS: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

fn level(s: Severity) -> usize {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

/// A rule's `op` that is none of the six.
#[derive(Debug, thiserror::Error)]
#[error("unknown operator {0:?}; use >, >=, <, <=, == or !=")]
struct UnknownOp(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    const ALL: [Op; 6] = [Op::Gt, Op::Ge, Op::Lt, Op::Le, Op::Eq, Op::Ne];

    fn parse(s: &str) -> Result<Op, UnknownOp> {
        Op::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| UnknownOp(s.to_string()))
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// `Some(true)` when a higher value is worse, `Some(false)` when a
    /// lower one is, `None` for (in)equality where levels are unordered.
    fn rising(self) -> Option<bool> {
        match self {
            Op::Gt | Op::Ge => Some(true),
            Op::Lt | Op::Le => Some(false),
            Op::Eq | Op::Ne => None,
        }
    }

    /// Whether `v` is past threshold `t`.
    fn holds(self, v: f64, t: f64) -> bool {
        self.holds_within(v, t, 0.0)
    }

    /// Whether an active level stays active: `v` has not yet gone back past
    /// `t` by `h`.
    fn holds_within(self, v: f64, t: f64, h: f64) -> bool {
        match self {
            Op::Gt => v > t - h,
            Op::Ge => v >= t - h,
            Op::Lt => v < t + h,
            Op::Le => v <= t + h,
            Op::Eq => v == t,
            Op::Ne => v != t,
        }
    }
}
