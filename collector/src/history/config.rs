//! The `[history]` section of the collector's configuration.

use std::path::PathBuf;
use std::time::Duration;

use picket_config::{ConfigError, HumanDuration, invalid};
use serde::{Deserialize, Serialize};

use super::Durability;

/// `[history]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHistory {
    /// The SQLite database file; its directory must exist.
    pub path: String,
    /// How long points, events, presence changes and alert log lines are
    /// kept. A point takes about 28 bytes on disk: 1,000 devices with 20
    /// metrics every 10 s write about 4.8 GB a day (`bench/RESULTS.md`).
    pub retention: HumanDuration,
    /// Rows deleted per pruning transaction; ingest waits at most that long.
    pub prune_batch: usize,
    /// `full`: a commit is on disk before the messages it holds are
    /// acknowledged to the broker. `normal`: faster, but a power cut of the
    /// collector host can lose the last acknowledged commits.
    pub synchronous: String,
}

impl Default for RawHistory {
    fn default() -> Self {
        RawHistory {
            path: "/var/lib/picket/history.db".into(),
            retention: HumanDuration(Duration::from_secs(7 * 86_400)),
            prune_batch: 5_000,
            synchronous: "full".into(),
        }
    }
}

/// `[history]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    pub path: PathBuf,
    pub retention: Duration,
    pub prune_batch: usize,
    pub durability: Durability,
}

impl RawHistory {
    pub fn validate(&self) -> Result<HistoryConfig, ConfigError> {
        if self.path.is_empty() {
            return Err(invalid("history.path", "must not be empty"));
        }
        if self.retention.0 < Duration::from_secs(3_600) {
            return Err(invalid("history.retention", "must be at least 1h"));
        }
        if !(100..=1_000_000).contains(&self.prune_batch) {
            return Err(invalid(
                "history.prune_batch",
                "must be between 100 and 1000000",
            ));
        }
        let durability = match self.synchronous.as_str() {
            "full" => Durability::Full,
            "normal" => Durability::Normal,
            other => {
                return Err(invalid(
                    "history.synchronous",
                    format!("{other:?} is neither \"full\" nor \"normal\""),
                ));
            }
        };
        Ok(HistoryConfig {
            path: PathBuf::from(&self.path),
            retention: self.retention.0,
            prune_batch: self.prune_batch,
            durability,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = RawHistory::default().validate().expect("defaults");
        assert_eq!(c.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(c.durability, Durability::Full);
        assert_eq!(c.prune_batch, 5_000);
    }

    #[test]
    fn refuses_bad_values() {
        type Change = fn(&mut RawHistory);
        let table: [(Change, &str); 5] = [
            (|r| r.path.clear(), "history.path"),
            (
                |r| r.retention = HumanDuration(Duration::from_secs(60)),
                "history.retention",
            ),
            (|r| r.prune_batch = 0, "history.prune_batch"),
            (|r| r.prune_batch = 10_000_000, "history.prune_batch"),
            (|r| r.synchronous = "off".into(), "history.synchronous"),
        ];
        for (change, key) in table {
            let mut raw = RawHistory::default();
            change(&mut raw);
            let err = raw.validate().expect_err(key);
            assert_eq!(err.key(), Some(key));
        }
    }

    #[test]
    fn reads_toml() {
        let raw: RawHistory =
            toml::from_str("path = \"/tmp/h.db\"\nretention = \"7d\"\nsynchronous = \"normal\"")
                .expect("toml");
        let c = raw.validate().expect("valid");
        assert_eq!(c.path, PathBuf::from("/tmp/h.db"));
        assert_eq!(c.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(c.durability, Durability::Normal);
        assert_eq!(c.prune_batch, 5_000);
    }
}
