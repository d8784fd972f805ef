//! `config.update`: validate, write atomically, restart onto the new file,
//! and roll back if it cannot reach the broker in time.
//!
//! Across the restart the state lives in `{state_dir}/config-pending.json`
//! (which command, which phase) and `{state_dir}/config.previous` (the old
//! file). The agent that starts on the new file is in the *trial* phase: it
//! reports `succeeded` once connected, or after
//! `commands.config_rollback_after` without a connection restores the old
//! file and restarts again, *rolled back*; the agent on the old file then
//! reports `failed` once connected. The command's id is in the journal
//! before any of this, so the command itself never runs twice.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::durable::{DurableError, sync_dir, write_atomic};

const MARKER: &str = "config-pending.json";
const BACKUP: &str = "config.previous";

/// Why a `config.update` was refused, or its file not written or restored.
#[derive(Debug, thiserror::Error)]
pub enum ConfigUpdateError {
    #[error("the agent knows no configuration file to replace")]
    NoPath,
    #[error(transparent)]
    Parse(ConfigError),
    #[error("the new configuration is invalid: {0}")]
    Invalid(ConfigError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the previous configuration is lost: {0}")]
    Lost(std::io::Error),
    #[error("cannot remove {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Durable(#[from] DurableError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Trial,
    RolledBack,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The command's id, for its final reply.
    pub id: String,
    pub phase: Phase,
    /// There was a configuration file before (else rolling back removes
    /// the new one).
    pub had_previous: bool,
}

/// Check `toml` the way the agent will load it at the restart: the file,
/// then the environment, then validation. Blocking (reads the files the
/// configuration names).
pub fn validate(toml: &str, path: Option<&Path>) -> Result<(), ConfigUpdateError> {
    let path = path.ok_or(ConfigUpdateError::NoPath)?;
    let (raw, _) =
        crate::config::parse(toml, path, std::env::vars()).map_err(ConfigUpdateError::Parse)?;
    crate::config::validate(raw)
        .map(drop)
        .map_err(ConfigUpdateError::Invalid)
}

/// Keep the current file, write the marker, put the new file in place.
/// Blocking.
pub fn apply(toml: &str, path: &Path, state_dir: &Path, id: &str) -> Result<(), ConfigUpdateError> {
    fs::create_dir_all(state_dir).map_err(|source| ConfigUpdateError::Io {
        path: state_dir.to_path_buf(),
        source,
    })?;
    let had_previous = match fs::read(path) {
        Ok(old) => {
            write_atomic(&state_dir.join(BACKUP), &old)?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => {
            return Err(ConfigUpdateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let marker = Marker {
        id: id.to_string(),
        phase: Phase::Trial,
        had_previous,
    };
    write_marker(state_dir, &marker)?;
    if let Err(e) = write_atomic(path, toml.as_bytes()) {
        // Nothing changed: forget the attempt.
        let _ = fs::remove_file(state_dir.join(MARKER));
        return Err(e.into());
    }
    Ok(())
}

/// The pending update, if the agent is in the middle of one.
pub fn pending(state_dir: &Path) -> Option<Marker> {
    let text = fs::read(state_dir.join(MARKER)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Trial failed: put the old file back and remember why. Blocking.
pub fn roll_back(path: &Path, state_dir: &Path, marker: &Marker) -> Result<(), ConfigUpdateError> {
    if marker.had_previous {
        let old = fs::read(state_dir.join(BACKUP)).map_err(ConfigUpdateError::Lost)?;
        write_atomic(path, &old)?;
    } else {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ConfigUpdateError::Remove {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    write_marker(
        state_dir,
        &Marker {
            phase: Phase::RolledBack,
            ..marker.clone()
        },
    )
}

/// The update is settled (reported): forget it. Blocking.
pub fn finish(state_dir: &Path) {
    let _ = fs::remove_file(state_dir.join(MARKER));
    let _ = fs::remove_file(state_dir.join(BACKUP));
    let _ = sync_dir(state_dir);
}

fn write_marker(state_dir: &Path, marker: &Marker) -> Result<(), ConfigUpdateError> {
    let json = serde_json::to_vec(marker)?;
    Ok(write_atomic(&state_dir.join(MARKER), &json)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_then_roll_back_restores_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("agent.toml");
        let state = d.path().join("state");
        fs::write(&cfg, "old").unwrap();
        apply("new", &cfg, &state, "c1").unwrap();
        assert_eq!(fs::read_to_string(&cfg).unwrap(), "new");
        let m = pending(&state).unwrap();
        assert_eq!(
            m,
            Marker {
                id: "c1".into(),
                phase: Phase::Trial,
                had_previous: true
            }
        );
        roll_back(&cfg, &state, &m).unwrap();
        assert_eq!(fs::read_to_string(&cfg).unwrap(), "old");
        assert_eq!(pending(&state).unwrap().phase, Phase::RolledBack);
        finish(&state);
        assert_eq!(pending(&state), None);
    }

    #[test]
    fn roll_back_without_a_previous_file_removes_the_new_one() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("agent.toml");
        apply("new", &cfg, d.path(), "c1").unwrap();
        let m = pending(d.path()).unwrap();
        assert!(!m.had_previous);
        roll_back(&cfg, d.path(), &m).unwrap();
        assert!(!cfg.exists());
    }

    #[test]
    fn validation_uses_the_agent_rules() {
        let p = Path::new("/etc/picket/agent.toml");
        let err = validate("[sampling]\ninterval = \"fast\"\n", Some(p))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sampling.interval"), "{err}");
        let err = validate("[nope]\n", Some(p)).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        assert!(validate("[device]\nid = \"pi-1\"\n", None).is_err());
        validate(
            "[device]\nid = \"pi-1\"\n[sampling]\ninterval = \"5s\"\n",
            Some(p),
        )
        .unwrap();
    }
}
