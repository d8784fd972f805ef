//! What a rule looks at: a metric selector (`temp`, `disk.pct:*`) and the
//! `*`/`?` globs used for instances, device ids and label values.

use crate::model::{METRICS, Metric, MetricError};

/// Shared with the agent (its Docker scope): `*` and `?` only.
pub use picket_config::{Glob, GlobError};

/// The metric fed by presence (birth, Last Will, heartbeat timeout) rather
/// than by samples: 1 while the device is offline, 0 while it is online.
pub const OFFLINE: &str = "offline";

/// Which metric a rule looks at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selector {
    name: String,
    /// `None`: the metric without instance; `Some`: instances matching.
    instance: Option<Glob>,
}

/// A rule's `metric` that [`Selector::parse`] refuses.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SelectorError {
    #[error(transparent)]
    Metric(#[from] MetricError),
    #[error("unknown metric {name:?}; known metrics: {known}")]
    Unknown { name: String, known: String },
    #[error(
        "{0} has one value per instance: write {0}:* for all of them \
         or {0}:<instance> (globs * and ? allowed)"
    )]
    NeedsInstance(String),
    #[error("{0} has no instances: write just {0}")]
    NoInstances(String),
    /// The instance pattern's ([`Glob::parse`]'s message).
    #[error(transparent)]
    Glob(#[from] GlobError),
}

impl Selector {
    pub(crate) fn parse(s: &str) -> Result<Selector, SelectorError> {
        let metric = Metric::parse(s)?;
        let name = metric.name();
        let entries: Vec<&str> = METRICS
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, _, doc)| *doc)
            .collect();
        let (bare, per_instance) = if name == OFFLINE {
            (true, false)
        } else if entries.is_empty() {
            let mut known: Vec<&str> = METRICS.iter().map(|(n, _, _)| *n).collect();
            known.dedup();
            known.push(OFFLINE);
            return Err(SelectorError::Unknown {
                name: name.to_string(),
                known: known.join(", "),
            });
        } else {
            (
                entries.iter().any(|d| !d.starts_with("per ")),
                entries.iter().any(|d| d.starts_with("per ")),
            )
        };
        let instance = match metric.instance() {
            None if !bare => {
                return Err(SelectorError::NeedsInstance(name.to_string()));
            }
            Some(_) if !per_instance => {
                return Err(SelectorError::NoInstances(name.to_string()));
            }
            None => None,
            Some(i) => Some(Glob::parse(i).map_err(SelectorError::Glob)?),
        };
        Ok(Selector {
            name: name.to_string(),
            instance,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn has_instances(&self) -> bool {
        self.instance.is_some()
    }

    pub(crate) fn is_presence(&self) -> bool {
        self.name == OFFLINE
    }

    /// The instance `metric` stands for under this selector (`""` for a
    /// metric without instance), or `None` when it is not selected.
    pub(crate) fn select<'m>(&self, metric: &'m Metric) -> Option<&'m str> {
        // `name` or `name:instance`, without splitting: this runs for every
        // rule and every point of every sample.
        let instance = match metric.as_str().strip_prefix(self.name.as_str())? {
            "" => "",
            rest => rest.strip_prefix(':')?,
        };
        self.select_instance(instance).then_some(instance)
    }

    /// Whether a stored instance key (`""` for none) is still selected.
    pub(crate) fn select_instance(&self, instance: &str) -> bool {
        match &self.instance {
            None => instance.is_empty(),
            Some(g) => !instance.is_empty() && g.matches(instance),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        // (selector, Some((metric name, per instance)) or None when refused)
        let table = [
            ("temp", Some(("temp", false))),
            ("temp:cpu-*", Some(("temp", true))),
            ("mem.pct", Some(("mem.pct", false))),
            ("disk.pct:*", Some(("disk.pct", true))),
            ("service:kiosk*", Some(("service", true))),
            ("offline", Some(("offline", false))),
            ("disk.pct", None),
            ("mem.pct:x", None),
            ("offline:x", None),
            ("tmp", None),
            ("disk.pct:[ab]", None),
        ];
        for (s, want) in table {
            let got = Selector::parse(s).ok();
            let got = got.as_ref().map(|sel| (sel.name(), sel.has_instances()));
            assert_eq!(got, want, "{s:?}");
        }
    }

    #[test]
    fn selects_instances() {
        let disks = Selector::parse("disk.pct:/d*").expect("valid");
        let bare = Selector::parse("temp").expect("valid");
        let table = [
            (&disks, "disk.pct:/data", Some("/data")),
            (&disks, "disk.pct:/", None),
            (&disks, "disk.free:/data", None),
            (&bare, "temp", Some("")),
            (&bare, "temp:cpu-thermal", None),
        ];
        for (sel, metric, want) in table {
            let m = Metric::parse(metric).expect("valid metric");
            assert_eq!(sel.select(&m), want, "{metric}");
        }
    }
}
