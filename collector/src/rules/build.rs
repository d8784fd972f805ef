//! From `[[rules]]` tables to a validated [`RuleSet`]: built-in rules with
//! the user's laid over them by name, every error naming the key the user
//! has to change.

use std::collections::BTreeMap;

use picket_config::{ConfigError, HumanDuration, invalid};

use std::time::Duration;

use picket_protocol::DeviceId;

use super::config::{Amount, RawOverride, RawRemedy, RawRule};
use super::defaults::default_rules;
use super::message::{DEFAULT_TEMPLATE, Template};
use super::select::{Glob, GlobError, Selector};
use super::{Op, Override, Params, Remedy, Rule, RuleSet};
use crate::model::METRICS;

const LEVEL_KEYS: [&str; 3] = ["info", "warning", "critical"];

/// Merge the built-in rules with the user's `[[rules]]` (a user rule named
/// like a built-in one is laid over it key by key) and validate the result.
pub fn build(user: &[RawRule]) -> Result<RuleSet, ConfigError> {
    let defaults = default_rules();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, u) in user.iter().enumerate() {
        let key = format!("rules[{i}].name");
        check_name(&u.name).map_err(|r| invalid(&key, r.to_string()))?;
        if let Some(j) = seen.insert(&u.name, i) {
            return Err(invalid(
                &key,
                format!(
                    "{:?} is already the name of rules[{j}]; rule names must be unique",
                    u.name
                ),
            ));
        }
    }
    let mut rules = Vec::with_capacity(defaults.len() + user.len());
    for d in &defaults {
        let mut stack = vec![(format!("rules.{} (built-in)", d.name), d)];
        if let Some(&i) = seen.get(d.name.as_str()) {
            stack.push((format!("rules[{i}]"), &user[i]));
        }
        rules.push(compile(&stack)?);
    }
    for (i, u) in user.iter().enumerate() {
        if !defaults.iter().any(|d| d.name == u.name) {
            rules.push(compile(&[(format!("rules[{i}]"), u)])?);
        }
    }
    Ok(RuleSet::new(rules))
}

/// A rule `name` that [`check_name`] refuses.
#[derive(Debug, thiserror::Error)]
enum NameError {
    #[error("a rule needs a name")]
    Empty,
    #[error("{0:?} is longer than 64 characters")]
    TooLong(String),
    #[error("{0:?}: use lowercase letters, digits and '_' (e.g. disk_usage)")]
    Characters(String),
}

fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 64 {
        return Err(NameError::TooLong(name.to_string()));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(NameError::Characters(name.to_string()));
    }
    Ok(())
}

/// The topmost value of a key among layers, lowest first, with the key
/// prefix of the layer it came from.
fn pick<'a, T>(
    stack: &'a [(String, &'a RawRule)],
    f: impl Fn(&'a RawRule) -> Option<T>,
) -> Option<(&'a str, T)> {
    stack
        .iter()
        .rev()
        .find_map(|(k, r)| f(r).map(|v| (k.as_str(), v)))
}

/// One rule from its layers: the built-in table (if any), then the user's.
fn compile(stack: &[(String, &RawRule)]) -> Result<Rule, ConfigError> {
    let (top, raw) = match stack.last() {
        Some((k, r)) => (k.as_str(), *r),
        None => return Err(invalid("rules", "empty rule")),
    };
    let name = raw.name.clone();
    let (key, metric) = pick(stack, |r| r.metric.as_deref()).ok_or_else(|| {
        invalid(
            &format!("{top}.metric"),
            missing(&name, "a metric, e.g. temp or disk.pct:*"),
        )
    })?;
    let selector =
        Selector::parse(metric).map_err(|e| invalid(&format!("{key}.metric"), e.to_string()))?;
    let (key, op) = pick(stack, |r| r.op.as_deref())
        .ok_or_else(|| invalid(&format!("{top}.op"), missing(&name, "an op, e.g. \">\"")))?;
    let op = Op::parse(op).map_err(|e| invalid(&format!("{key}.op"), e.to_string()))?;
    let (key, text) = pick(stack, |r| r.message.as_deref()).unwrap_or((top, DEFAULT_TEMPLATE));
    let message =
        Template::parse(text).map_err(|e| invalid(&format!("{key}.message"), e.to_string()))?;
    if message.uses_instance() && !selector.has_instances() {
        return Err(invalid(
            &format!("{key}.message"),
            format!(
                "{{instance}} would always be empty: {} has no instances",
                selector.name()
            ),
        ));
    }

    let layers: Vec<Layer> = stack.iter().map(|(k, r)| Layer::of_rule(k, r)).collect();
    let base = resolve(&layers, op, top)?;
    let overrides = overrides(stack, &layers, op)?;
    let unit = METRICS
        .iter()
        .find(|(n, _, _)| *n == selector.name())
        .map_or("", |(_, unit, _)| *unit);
    let remedy = match pick(stack, |r| r.remedy.as_ref()) {
        Some((key, r)) => Some(remedy(&format!("{key}.remedy"), r)?),
        None => None,
    };
    let window_ms = window_ms(stack, &selector)?;
    Ok(Rule {
        window_ms,
        remedy,
        name,
        selector,
        op,
        unit,
        message,
        base,
        overrides,
    })
}

/// The rule's overrides (the topmost layer that has any), each resolved
/// over the rule's layers.
fn overrides(
    stack: &[(String, &RawRule)],
    layers: &[Layer],
    op: Op,
) -> Result<Vec<Override>, ConfigError> {
    let mut overrides = Vec::new();
    if let Some((key, list)) = pick(stack, |r| (!r.overrides.is_empty()).then_some(&r.overrides)) {
        for (j, o) in list.iter().enumerate() {
            let key = format!("{key}.override[{j}]");
            if o.devices.is_empty() && o.labels.is_empty() {
                return Err(invalid(
                    &key,
                    "an override needs devices or labels to say which devices it is for",
                ));
            }
            let mut layers = layers.to_vec();
            layers.push(Layer::of_override(&key, o));
            overrides.push(Override {
                devices: o
                    .devices
                    .iter()
                    .map(|d| Glob::check_device(d))
                    .collect::<Result<_, _>>()
                    .map_err(|e| invalid(&format!("{key}.devices"), e))?,
                labels: o
                    .labels
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), Glob::parse(v)?)))
                    .collect::<Result<_, GlobError>>()
                    .map_err(|e| invalid(&format!("{key}.labels"), e))?,
                params: resolve(&layers, op, &key)?,
            });
        }
    }
    Ok(overrides)
}

/// A counter rule's `window`, in milliseconds.
fn window_ms(
    stack: &[(String, &RawRule)],
    selector: &Selector,
) -> Result<Option<u64>, ConfigError> {
    Ok(match pick(stack, |r| r.window) {
        Some((key, w)) => {
            let key = format!("{key}.window");
            if selector.is_presence() {
                return Err(invalid(&key, "offline is not a counter"));
            }
            if w.0 < Duration::from_secs(1) || w.0 > Duration::from_secs(30 * 86_400) {
                return Err(invalid(&key, "must be between 1s and 30d"));
            }
            Some(u64::try_from(w.0.as_millis()).unwrap_or(u64::MAX))
        }
        None => None,
    })
}

fn remedy(key: &str, r: &RawRemedy) -> Result<Remedy, ConfigError> {
    let window = r.window.map_or(Duration::from_secs(3600), |w| w.0);
    if window < Duration::from_secs(1) {
        return Err(invalid(&format!("{key}.window"), "must be at least 1s"));
    }
    let remedy = Remedy {
        command: r.command.clone(),
        args: r.args.clone().unwrap_or_else(|| serde_json::json!({})),
        limit: r.limit.unwrap_or(3),
        window,
        ttl: r.ttl.map(|t| t.0),
    };
    // Placeholders filled with a plausible unit name, then typed: a wrong
    // command or argument is found now, not when the alert fires.
    let probe = DeviceId::new("device").map_err(|e| invalid(key, e.to_string()))?;
    remedy
        .action(&probe, Some("example.service"))
        .map_err(|e| invalid(key, e.to_string()))?;
    Ok(remedy)
}

fn missing(name: &str, what: &str) -> String {
    let builtin: Vec<String> = default_rules().into_iter().map(|r| r.name).collect();
    format!(
        "rule {name:?} needs {what} (no built-in rule has this name; built-in: {})",
        builtin.join(", ")
    )
}

/// The tunable keys of a rule or override table, with the key prefix that
/// names that table in errors.
#[derive(Clone)]
struct Layer<'a> {
    key: &'a str,
    enabled: Option<bool>,
    levels: [Option<&'a Amount>; 3],
    hysteresis: Option<&'a Amount>,
    for_: Option<HumanDuration>,
}

impl<'a> Layer<'a> {
    fn of_rule(key: &'a str, r: &'a RawRule) -> Self {
        Layer {
            key,
            enabled: r.enabled,
            levels: [r.info.as_ref(), r.warning.as_ref(), r.critical.as_ref()],
            hysteresis: r.hysteresis.as_ref(),
            for_: r.for_,
        }
    }

    fn of_override(key: &'a str, o: &'a RawOverride) -> Self {
        Layer {
            key,
            enabled: o.enabled,
            levels: [o.info.as_ref(), o.warning.as_ref(), o.critical.as_ref()],
            hysteresis: o.hysteresis.as_ref(),
            for_: o.for_,
        }
    }
}

/// The settings the layers add up to; `top` names the topmost table for
/// errors about what is missing altogether.
fn resolve(layers: &[Layer], op: Op, top: &str) -> Result<Params, ConfigError> {
    let enabled = layers.iter().rev().find_map(|l| l.enabled).unwrap_or(true);
    let for_ms = layers
        .iter()
        .rev()
        .find_map(|l| l.for_)
        .map_or(0, |d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX));

    // Per level: the value, the key it came from and the depth of its
    // layer (for blaming the right key when two levels disagree).
    let mut levels = [None; 3];
    let mut from: [(String, usize); 3] = Default::default();
    for (i, slot) in levels.iter_mut().enumerate() {
        let found = layers
            .iter()
            .enumerate()
            .rev()
            .find_map(|(depth, l)| l.levels[i].map(|a| (depth, l.key, a)));
        if let Some((depth, key, amount)) = found {
            let key = format!("{key}.{}", LEVEL_KEYS[i]);
            *slot = amount.resolve().map_err(|e| invalid(&key, e.to_string()))?;
            from[i] = (key, depth);
        }
    }
    if levels.iter().all(Option::is_none) {
        return Err(invalid(
            top,
            "no threshold: set at least one of info, warning or critical \
             (to turn a rule off, write enabled = false)",
        ));
    }
    if let Some(rising) = op.rising() {
        check_order(&levels, &from, rising, op)?;
    }

    let hysteresis = match layers
        .iter()
        .rev()
        .find_map(|l| l.hysteresis.map(|h| (l.key, h)))
    {
        None => 0.0,
        Some((key, amount)) => {
            let key = format!("{key}.hysteresis");
            match amount.resolve().map_err(|e| invalid(&key, e.to_string()))? {
                None => return Err(invalid(&key, "cannot be \"off\"; write 0 for none")),
                Some(h) if h < 0.0 => {
                    return Err(invalid(&key, format!("{h} is negative; write 0 or more")));
                }
                Some(h) if h > 0.0 && op.rising().is_none() => {
                    return Err(invalid(
                        &key,
                        format!("has no meaning with {}; remove it or write 0", op.as_str()),
                    ));
                }
                Some(h) => h,
            }
        }
    };
    Ok(Params {
        enabled,
        levels,
        hysteresis,
        for_ms,
    })
}

/// A higher severity must be further past: with `>`, critical above
/// warning above info. When the two levels come from different tables, the
/// error names the one laid over the other: that is the value just written.
fn check_order(
    levels: &[Option<f64>; 3],
    from: &[(String, usize); 3],
    rising: bool,
    op: Op,
) -> Result<(), ConfigError> {
    let set: Vec<(usize, f64)> = (0..3).filter_map(|i| levels[i].map(|v| (i, v))).collect();
    for pair in set.windows(2) {
        let ((lo, a), (hi, b)) = (pair[0], pair[1]);
        if (rising && b > a) || (!rising && b < a) {
            continue;
        }
        let (above, below) = if rising {
            ("above", "below")
        } else {
            ("below", "above")
        };
        let origin = |key: &str| {
            if key.starts_with("rules[") {
                format!("set in {key}")
            } else {
                "built in".to_string()
            }
        };
        let (key, reason) = if from[hi].1 >= from[lo].1 {
            let other = format!("{a}, {}", origin(&from[lo].0));
            (
                &from[hi].0,
                format!("{b} must be {above} {} ({other})", LEVEL_KEYS[lo]),
            )
        } else {
            let other = format!("{b}, {}", origin(&from[hi].0));
            (
                &from[lo].0,
                format!("{a} must be {below} {} ({other})", LEVEL_KEYS[hi]),
            )
        };
        return Err(invalid(
            key,
            format!(
                "{reason}: with {}, a higher severity needs a threshold further {above}",
                op.as_str()
            ),
        ));
    }
    Ok(())
}
