//! The `[[rules]]` tables as written in the collector's configuration file.

use std::collections::BTreeMap;
use std::fmt;

use picket_config::{HumanDuration, parse_size};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One `[[rules]]` table: a threshold on one metric, with up to three
/// severity levels.
///
/// ```toml
/// [[rules]]
/// name = "kiosk_down"
/// metric = "service:kiosk*"
/// op = "=="
/// critical = 0
/// for = "30s"
/// message = "{instance} stopped on {device}"
///
/// [[rules.override]]
/// devices = ["lab-*"]
/// enabled = false
/// ```
///
/// # Built-in rules and yours
/// The collector starts from built-in rules (`temperature`, `disk_usage`,
/// `disk_free`, `memory`, `service_down`, `under_voltage`, `throttled`,
/// `offline`, `container_exited`, `container_unhealthy`,
/// `container_restarts`; see [`default_rules`](super::default_rules)). A table whose `name` is
/// a built-in rule's is laid over it: every key you write replaces the
/// built-in value, every key you leave out keeps it. So
/// `name = "temperature"` with `warning = 70` only lowers the warning
/// level, and `enabled = false` alone turns the rule off. A table with a new
/// name is a new rule and needs at least `metric`, `op` and one threshold.
///
/// # Alerts
/// Each device, rule and metric instance is one alert (`disk_usage` on
/// `/` and on `/data` are two). An alert moves between the levels you set:
/// warning to critical is the same alert escalating, not a second one, and
/// it comes back down the same way before it resolves.
///
/// An instance that stops being reported (a disk unmounted, a service no
/// longer watched) keeps its alert as it was, until it is reported again
/// below the threshold or the rule is turned off or removed.
///
/// While a device is offline its other alerts are held: they neither fire
/// nor resolve and are left out of the device's active alerts, since
/// nothing is known about them; the `offline` alert speaks for the device.
/// Timers (`for`) running when it went offline start over when it is back.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Unique name, lowercase letters, digits and `_`. It names the alert
    /// on the wire (`disk_usage:/data` for an instance).
    pub name: String,
    /// `false` turns the rule off (default `true`). An override can turn
    /// it back on for some devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The metric: a name (`temp`, `mem.pct`), or for metrics with one
    /// value per instance `name:pattern` (`disk.pct:*`, `disk.pct:/data`,
    /// `service:kiosk*`), where `*` matches any characters and `?` one.
    /// `offline` is 1 while the device is offline and 0 while it is online.
    /// The metric names are listed in the reference of the collector's
    /// metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// How the value is compared to the thresholds: `>`, `>=`, `<`, `<=`,
    /// `==` or `!=`. With `>`/`>=` each level's threshold must be above the
    /// one of the level below (`<`/`<=`: below it); with `==`/`!=` each
    /// level is its own condition and the highest one that holds wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// Threshold of the `info` level: a number, a size for byte metrics
    /// (`"2GB"`, `"500MiB"`), or `"off"` to remove a built-in level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Amount>,
    /// Threshold of the `warning` level, written like `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<Amount>,
    /// Threshold of the `critical` level, written like `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<Amount>,
    /// How far back past its threshold the value must go before an active
    /// level ends (default 0), so a value hovering around a threshold does
    /// not flap: with `op = ">"`, `warning = 75` and `hysteresis = 2` the
    /// warning fires above 75 and ends at 73 or below. With `<`/`<=` the
    /// value must rise to threshold + hysteresis. Refused with `==`/`!=`,
    /// where "close to" has no meaning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<Amount>,
    /// How long a level's condition must hold, without a single sample
    /// saying otherwise, before the alert fires at that level (`30s`, `5m`;
    /// default `0s`). Escalating to a higher level waits the same time
    /// above the higher threshold; coming down a level and resolving happen
    /// at the first sample past the hysteresis point. For `offline`, the
    /// time counts from when the device was last heard of.
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_: Option<HumanDuration>,
    /// For counters (`container.restarts:*`): compare how much the metric
    /// grew within this window (`1h`: restarts in the last hour) instead of
    /// its value. A counter that goes down (reset) adds nothing; growth
    /// before the collector first saw the instance is not counted. Not
    /// changed by overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<HumanDuration>,
    /// The alert's text, with placeholders `{value}` and `{threshold}`
    /// (written with the metric's unit: `81.3 °C`, `93.0%`, `1.8 GB`),
    /// `{instance}`, `{device}`, `{metric}`, `{rule}`, `{severity}` and
    /// `{op}`; `{{` and `}}` for literal braces. Default:
    /// `"{rule}: {metric} is {value} ({op} {threshold})"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `[[rules.override]]` tables: different settings for some devices.
    /// The first override that matches a device applies to it; the others
    /// are ignored for that device. Overrides given for a built-in rule
    /// replace its overrides.
    #[serde(rename = "override", default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<RawOverride>,
    /// A command sent to the device when the alert fires (not when it
    /// escalates), e.g. restarting the service the rule watches:
    ///
    /// ```toml
    /// [[rules]]
    /// name = "service_down"
    /// remedy = { command = "service.restart", args = { unit = "{instance}" } }
    /// ```
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<RawRemedy>,
}

/// A rule's `remedy` table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemedy {
    /// The command's name (`service.restart`, `system.reboot`, ...).
    pub command: String,
    /// Its arguments; in strings `{instance}` is the alert's metric
    /// instance (the unit of `service:*`) and `{device}` the device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// At most this many commands per device and rule per `window`
    /// (default 3); a firing beyond it is logged as rate limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<HumanDuration>,
    /// How long the command may wait for an offline device (default the
    /// collector's `commands.default_ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<HumanDuration>,
}

/// One `[[rules.override]]` table: for the devices it matches, the keys it
/// sets replace the rule's.
///
/// ```toml
/// [[rules.override]]
/// labels = { site = "attic-*" }
/// warning = 80
/// critical = 85
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    /// Device id patterns (`*`, `?`); the override matches a device whose
    /// id matches any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Labels the device must all have, the values being patterns
    /// (`{ site = "club-*", role = "kiosk" }`).
    ///
    /// With both `devices` and `labels`, a device must match both; at least
    /// one of them is required.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Replaces the rule's `enabled` for these devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Replaces the rule's `info` threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Amount>,
    /// Replaces the rule's `warning` threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<Amount>,
    /// Replaces the rule's `critical` threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<Amount>,
    /// Replaces the rule's `hysteresis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<Amount>,
    /// Replaces the rule's `for`.
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_: Option<HumanDuration>,
}

/// A threshold or hysteresis as written: a number, a size (`"2GB"`), or
/// `"off"` (thresholds only: removes that level).
#[derive(Debug, Clone, PartialEq)]
pub enum Amount {
    Number(f64),
    /// A size as written, already known to parse.
    Size(String),
    Off,
}

/// An [`Amount`] that stands for no number.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AmountError {
    #[error("{0} is not a usable number")]
    NotFinite(f64),
    #[error(transparent)]
    Size(#[from] picket_config::UnitError),
}

impl Amount {
    /// The number this amount stands for; `None` for `"off"`.
    pub(crate) fn resolve(&self) -> Result<Option<f64>, AmountError> {
        match self {
            Amount::Number(n) if n.is_finite() => Ok(Some(*n)),
            Amount::Number(n) => Err(AmountError::NotFinite(*n)),
            Amount::Size(s) => Ok(Some(parse_size(s)? as f64)),
            Amount::Off => Ok(None),
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // Whole numbers print as TOML integers (`75`, not `75.0`), the
            // way people write them.
            Amount::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => s.serialize_i64(*n as i64),
            Amount::Number(n) => s.serialize_f64(*n),
            Amount::Size(text) => s.serialize_str(text),
            Amount::Off => s.serialize_str("off"),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AmountVisitor)
    }
}

struct AmountVisitor;

impl Visitor<'_> for AmountVisitor {
    type Value = Amount;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a size such as \"2GB\", or \"off\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
        Ok(Amount::Number(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
        Ok(Amount::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
        Ok(Amount::Number(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
        if v == "off" {
            return Ok(Amount::Off);
        }
        parse_size(v)
            .map(|_| Amount::Size(v.to_string()))
            .map_err(|e| E::custom(format!("{e}; or write a plain number, or \"off\"")))
    }
}
