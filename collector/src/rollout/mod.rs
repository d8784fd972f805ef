//! Staged rollout of an agent version (`picket-collector update`): the
//! selected devices in batches, each batch sent `agent.update` and waited
//! for until every device in it committed or failed, the rollout stopped
//! as soon as the share of failed devices passes a limit.
//!
//! The first batch is the canary: with `--batch 1` a single device proves
//! the version before any other gets it. A device "committed" when its
//! agent answered `succeeded`, which it does only after the new version
//! had a sample acknowledged by the broker (see the agent's `update`
//! module); `failed` covers a refused artifact, a rollback and no answer
//! within the batch's time.
//!
//! # Layout
//! - this file: [`Selector`], [`plan`] and the [`Rollout`] progress (pure).
//! - [`cli`]: the command-line tool, a client of the collector's API.

pub mod cli;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use picket_protocol::version;
use serde_json::Value;

use crate::rules::{Glob, GlobError};

/// `--devices`: comma-separated terms; `key=value` matches a label (the
/// value may be a glob), anything else is a glob on device ids. A device
/// is selected when it matches one of the id globs (any device if there
/// is none) and every label term.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    ids: Vec<Glob>,
    labels: Vec<(String, Glob)>,
}

/// A `--devices` that [`Selector::parse`] refuses.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    /// A pattern's ([`Glob`]'s message).
    #[error(transparent)]
    Glob(#[from] GlobError),
    #[error("{0:?}: a label term is key=value")]
    Label(String),
    #[error("the selector selects nothing: give device ids, globs or key=value")]
    Empty,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut s = Selector {
            ids: Vec::new(),
            labels: Vec::new(),
        };
        for term in text.split(',').map(str::trim) {
            if term.is_empty() {
                continue;
            }
            match term.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => s.labels.push((
                    k.trim().to_string(),
                    Glob::parse(v.trim()).map_err(SelectorError::Glob)?,
                )),
                Some(_) => return Err(SelectorError::Label(term.to_string())),
                None => s
                    .ids
                    .push(Glob::check_device(term).map_err(SelectorError::Glob)?),
            }
        }
        if s.ids.is_empty() && s.labels.is_empty() {
            return Err(SelectorError::Empty);
        }
        Ok(s)
    }

    pub fn matches(&self, id: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.ids.is_empty() || self.ids.iter().any(|g| g.matches(id)))
            && self
                .labels
                .iter()
                .all(|(k, g)| labels.get(k).is_some_and(|v| g.matches(v)))
    }
}

/// A device as `GET /api/devices` lists it (the fields a rollout needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub online: bool,
    pub version: Option<String>,
}

impl Device {
    /// From one entry of `GET /api/devices`; `None` without an id.
    pub fn from_api(v: &Value) -> Option<Device> {
        let labels = v["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Some(Device {
            id: v["id"].as_str()?.to_string(),
            labels,
            online: v["online"].as_bool().unwrap_or(false),
            version: v["version"].as_str().map(str::to_string),
        })
    }
}

/// Why a selected device is left out of the rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Already runs the target version.
    Already,
    /// Offline: it would hold a batch up until its command expires. Run
    /// the rollout again when it is back (devices already updated are
    /// skipped then).
    Offline,
    /// Runs a newer version and no downgrade was asked for.
    Newer(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub batches: Vec<Vec<String>>,
    pub skipped: Vec<(String, Skip)>,
}

/// The devices to update, in batches of `batch` in id order, and those
/// left out.
pub fn plan(
    devices: &[Device],
    selector: &Selector,
    to: &str,
    allow_downgrade: bool,
    batch: usize,
) -> Plan {
    let mut chosen: Vec<&Device> = devices
        .iter()
        .filter(|d| selector.matches(&d.id, &d.labels))
        .collect();
    chosen.sort_by(|a, b| a.id.cmp(&b.id));
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    for d in chosen {
        let skip = match d.version.as_deref() {
            Some(v) if v == to => Some(Skip::Already),
            Some(v) if !allow_downgrade && version::compare(v, to) == Ordering::Greater => {
                Some(Skip::Newer(v.to_string()))
            }
            _ if !d.online => Some(Skip::Offline),
            _ => None,
        };
        match skip {
            Some(s) => skipped.push((d.id.clone(), s)),
            None => targets.push(d.id.clone()),
        }
    }
    Plan {
        batches: targets
            .chunks(batch.max(1))
            .map(<[String]>::to_vec)
            .collect(),
        skipped,
    }
}

/// What became of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Committed,
    Failed(String),
}

/// The rollout's progress: the outcome of every device so far and
/// whether to go on.
#[derive(Debug, Clone)]
pub struct Rollout {
    plan: Plan,
    /// Failed share (0.0–1.0) above which the rollout stops.
    max_failed: f64,
    next: usize,
    outcomes: BTreeMap<String, Finished>,
    stopped: bool,
}

/// The final count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub committed: usize,
    pub failed: usize,
    pub not_started: usize,
    pub skipped: usize,
    /// Stopped before the last batch because too many failed.
    pub stopped: bool,
}

impl Rollout {
    pub fn new(plan: Plan, max_failed: f64) -> Rollout {
        Rollout {
            plan,
            max_failed,
            next: 0,
            outcomes: BTreeMap::new(),
            stopped: false,
        }
    }

    pub fn batches(&self) -> usize {
        self.plan.batches.len()
    }

    /// The next batch (its index and devices), unless the rollout is over.
    pub fn next_batch(&mut self) -> Option<(usize, Vec<String>)> {
        if self.stopped {
            return None;
        }
        let b = self.plan.batches.get(self.next)?.clone();
        self.next += 1;
        Some((self.next - 1, b))
    }

    pub fn record(&mut self, device: &str, result: Finished) {
        self.outcomes.insert(device.to_string(), result);
    }

    /// After a batch: whether the failed share of the devices tried so far
    /// is above the limit (then the rollout stops).
    pub fn check(&mut self) -> bool {
        let tried = self.outcomes.len();
        let failed = self.failed();
        if tried > 0 && failed as f64 / tried as f64 > self.max_failed {
            self.stopped = true;
        }
        self.stopped
    }

    fn failed(&self) -> usize {
        self.outcomes
            .values()
            .filter(|r| matches!(r, Finished::Failed(_)))
            .count()
    }

    pub fn summary(&self) -> Summary {
        let planned: usize = self.plan.batches.iter().map(Vec::len).sum();
        let failed = self.failed();
        Summary {
            committed: self.outcomes.len() - failed,
            failed,
            not_started: planned - self.outcomes.len(),
            skipped: self.plan.skipped.len(),
            stopped: self.stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str, online: bool, version: &str, labels: &[(&str, &str)]) -> Device {
        Device {
            id: id.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            online,
            version: (!version.is_empty()).then(|| version.to_string()),
        }
    }

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> = [("club".to_string(), "CESSON".to_string())].into();
        let none = BTreeMap::new();
        let table = [
            ("*", "pi-1", &none, true),
            ("pi-*", "pi-1", &none, true),
            ("pi-*", "kiosk-1", &none, false),
            ("kiosk-1,pi-?", "pi-1", &none, true),
            ("club=CESSON", "pi-1", &labels, true),
            ("club=CES*", "pi-1", &labels, true),
            ("club=RENNES", "pi-1", &labels, false),
            ("club=CESSON", "pi-1", &none, false),
            ("pi-*, club=CESSON", "kiosk-1", &labels, false),
        ];
        for (text, id, labels, want) in table {
            let s = Selector::parse(text).unwrap();
            assert_eq!(s.matches(id, labels), want, "{text} {id}");
        }
        for bad in ["", " , ", "=x", "pi/1", "pi-[12]"] {
            assert!(Selector::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plans_skip_what_needs_no_or_cannot_take_the_update() {
        let devices = [
            dev("pi-5", true, "1.0.0", &[]),
            dev("pi-1", true, "1.0.0", &[]),
            dev("pi-2", true, "1.1.0", &[]),
            dev("pi-3", false, "1.0.0", &[]),
            dev("pi-4", true, "2.0.0", &[]),
            dev("pi-6", true, "", &[]),
            dev("other", true, "1.0.0", &[]),
        ];
        let sel = Selector::parse("pi-*").unwrap();
        let p = plan(&devices, &sel, "1.1.0", false, 2);
        assert_eq!(p.batches, [vec!["pi-1", "pi-5"], vec!["pi-6"]]);
        assert_eq!(
            p.skipped,
            [
                ("pi-2".to_string(), Skip::Already),
                ("pi-3".to_string(), Skip::Offline),
                ("pi-4".to_string(), Skip::Newer("2.0.0".into())),
            ]
        );
        let p = plan(&devices, &sel, "1.1.0", true, 10);
        assert_eq!(p.batches, [vec!["pi-1", "pi-4", "pi-5", "pi-6"]]);
    }

    #[test]
    fn a_rollout_stops_when_the_failed_share_passes_the_limit() {
        let ids = |n: usize| (1..=n).map(|i| format!("d{i}")).collect::<Vec<_>>();
        let p = Plan {
            batches: ids(5).chunks(2).map(<[String]>::to_vec).collect(),
            skipped: vec![("d9".into(), Skip::Offline)],
        };
        let mut r = Rollout::new(p.clone(), 0.2);
        let (i, b) = r.next_batch().unwrap();
        assert_eq!(
            (i, b.as_slice()),
            (0, ["d1".to_string(), "d2".into()].as_slice())
        );
        r.record("d1", Finished::Committed);
        r.record("d2", Finished::Committed);
        assert!(!r.check());
        let (_, b) = r.next_batch().unwrap();
        for d in b {
            r.record(&d, Finished::Failed("rolled back".into()));
        }
        assert!(r.check(), "2 of 4 failed: 50% > 20%");
        assert_eq!(r.next_batch(), None);
        assert_eq!(
            r.summary(),
            Summary {
                committed: 2,
                failed: 2,
                not_started: 1,
                skipped: 1,
                stopped: true
            }
        );
        // At the limit, not above: goes on.
        let mut r = Rollout::new(p, 0.5);
        for b in [["d1", "d2"], ["d3", "d4"]] {
            r.next_batch().unwrap();
            r.record(b[0], Finished::Committed);
            r.record(b[1], Finished::Failed("x".into()));
            assert!(!r.check());
        }
        r.next_batch().unwrap();
        r.record("d5", Finished::Committed);
        assert!(!r.check());
        assert_eq!(r.next_batch(), None);
        assert!(!r.summary().stopped);
    }
}
