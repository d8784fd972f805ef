//! The update state (`{update.dir}/state.json`) and every decision taken
//! on it, as pure functions: what the launcher runs, when a trial is over,
//! what is reported, which backups go.
//!
//! The state is read and written by different builds of the agent (the
//! packaged entry binary, installed versions, older and newer ones), so
//! every field but `v` is optional and unknown fields are ignored.

use std::cmp::Ordering;

use picket_protocol::version;
use serde::{Deserialize, Serialize};

/// Format of `state.json`.
pub const STATE_VERSION: u16 = 1;

/// Starts a new version gets, across reboots, before it must have
/// committed. A start on the same boot as a previous one means the
/// previous one ended without committing (crash, watchdog, stop) and rolls
/// back at once; this bounds the case where the box itself keeps
/// restarting during the trial (power cuts, a reboot loop).
pub const MAX_TRIAL_STARTS: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub v: u16,
    /// The entry (packaged) binary's version when a launch last looked: a
    /// different one means the package was upgraded or downgraded.
    #[serde(default)]
    pub entry: Option<String>,
    /// The committed version, when it is not the entry binary itself.
    #[serde(default)]
    pub current: Option<Installed>,
    /// A new version on trial.
    #[serde(default)]
    pub trial: Option<Trial>,
    /// An outcome to report on the command's reply topic, once connected.
    #[serde(default)]
    pub report: Option<Report>,
    /// The binaries in `bin/`, oldest first.
    #[serde(default)]
    pub installed: Vec<Installed>,
}

impl Default for State {
    fn default() -> Self {
        State {
            v: STATE_VERSION,
            entry: None,
            current: None,
            trial: None,
            report: None,
            installed: Vec::new(),
        }
    }
}

/// A binary in `{update.dir}/bin/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub version: String,
    /// File name inside `bin/`.
    pub file: String,
}

impl Installed {
    /// The file name a version is installed under.
    pub fn named(version: &str) -> Installed {
        Installed {
            version: version.to_string(),
            file: format!("picket-agent-{version}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// The `agent.update` command, for the final reply.
    pub id: String,
    pub to: Installed,
    /// The version that installed it.
    pub from: String,
    /// Boot id of each start of the new version.
    #[serde(default)]
    pub starts: Vec<String>,
    /// How the service manager saw the last start end (`post-stop`).
    #[serde(default)]
    pub stopped: Option<String>,
    /// The new version's own verdict: it missed its window.
    #[serde(default)]
    pub failed: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    Committed {
        version: String,
        from: String,
    },
    RolledBack {
        version: String,
        /// The version running after the rollback.
        to: String,
        reason: String,
    },
}

impl Outcome {
    /// The reply's text: output of `succeeded`, reason of `failed`.
    pub fn text(&self) -> String {
        match self {
            Outcome::Committed { version, from } => {
                format!("version {version} committed (previous: {from}, kept as a backup)")
            }
            Outcome::RolledBack { to, reason, .. } => format!("rolled back to {to}: {reason}"),
        }
    }
}

/// What the launcher does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// Run in this process (the entry binary is the version to run).
    Here,
    /// Execute this installed binary.
    Exec(Installed),
}

/// What [`State::decide_foreign_trial`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// This process is the trial's binary under another version: it failed
    /// its trial and hands back to the launcher.
    Failed,
    /// The trial was rolled back to the running version (reported once
    /// connected, like any rollback).
    RolledBack,
}

/// Why an `agent.update` cannot start now, or at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("version {0} is already running")]
    Same(String),
    #[error(
        "version {to} is not newer than the running {running}: set allow_downgrade to install it"
    )]
    Downgrade { to: String, running: String },
    #[error("busy: the update to {0} is still on trial")]
    OnTrial(String),
    #[error("busy: the outcome of update {0} is not reported yet")]
    Unreported(String),
}

impl State {
    /// Decide what the entry binary (version `own`, started on boot
    /// `boot`) runs; the state is updated in place and must be written
    /// before acting on the decision.
    pub fn launch(&mut self, own: &str, boot: &str) -> Launch {
        match self.entry.as_deref() {
            Some(e) if e == own => {}
            Some(_) => {
                // The package changed the entry binary: the newer of it
                // and the remotely installed version runs. A pending
                // trial is not affected.
                self.entry = Some(own.to_string());
                if self
                    .current
                    .as_ref()
                    .is_some_and(|c| version::compare(&c.version, own) != Ordering::Greater)
                {
                    self.current = None;
                }
            }
            None => self.entry = Some(own.to_string()),
        }
        if let Some(t) = &mut self.trial {
            let verdict = if let Some(why) = &t.failed {
                Some(why.clone())
            } else if t.starts.iter().any(|b| b == boot) {
                Some(match &t.stopped {
                    Some(how) => format!("{} {how} before committing", t.to.version),
                    None => format!(
                        "{} stopped before committing (crash, watchdog or stop; \
                         no exit status was recorded)",
                        t.to.version
                    ),
                })
            } else if t.starts.len() >= MAX_TRIAL_STARTS {
                Some(format!(
                    "{} started {} times (the box restarted during its trial) without committing",
                    t.to.version,
                    t.starts.len()
                ))
            } else {
                None
            };
            match verdict {
                None => {
                    t.starts.push(boot.to_string());
                    t.stopped = None;
                    return Launch::Exec(t.to.clone());
                }
                Some(reason) => self.roll_back(own, reason),
            }
        }
        match &self.current {
            Some(c) if c.version != own => Launch::Exec(c.clone()),
            _ => Launch::Here,
        }
    }

    /// A trial is pending, but this process runs `own`, another version.
    /// The trial is decided by what runs, at once: left pending, it would
    /// never be decided (only its own version commits or fails it) and
    /// would refuse every later update. `runs_trial_file`: this process
    /// was started from the trial's binary, which reports another version
    /// than it was installed as: the trial fails, and the launcher rolls
    /// back at the next start. Otherwise the trial's binary is not what
    /// runs (it never took over): the trial is rolled back to what runs.
    /// `None` when there is no trial of another version.
    pub fn decide_foreign_trial(&mut self, own: &str, runs_trial_file: bool) -> Option<Foreign> {
        let t = self.trial.as_mut().filter(|t| t.to.version != own)?;
        if runs_trial_file {
            if t.failed.is_none() {
                t.failed = Some(format!(
                    "the binary installed as {} reports version {own}",
                    t.to.version
                ));
            }
            return Some(Foreign::Failed);
        }
        let t = self.trial.take()?;
        let reason = format!(
            "{own} is running instead of {} (the new version did not take over)",
            t.to.version
        );
        self.report = Some(Report {
            id: t.id,
            outcome: Outcome::RolledBack {
                version: t.to.version,
                to: own.to_string(),
                reason,
            },
        });
        Some(Foreign::RolledBack)
    }

    /// The launcher could not execute `file`.
    pub fn exec_failed(&mut self, file: &str, error: &str) {
        if let Some(t) = &mut self.trial
            && t.to.file == file
        {
            t.failed = Some(format!("{} cannot be executed: {error}", t.to.version));
            return;
        }
        if self.current.as_ref().is_some_and(|c| c.file == file) {
            // The committed version is gone or broken: the entry binary
            // is what is left.
            self.current = None;
        }
    }

    fn roll_back(&mut self, own: &str, reason: String) {
        if let Some(t) = self.trial.take() {
            let to = self
                .current
                .as_ref()
                .map_or_else(|| own.to_string(), |c| c.version.clone());
            self.report = Some(Report {
                id: t.id,
                outcome: Outcome::RolledBack {
                    version: t.to.version,
                    to,
                    reason,
                },
            });
        }
    }

    /// Whether `agent.update` to `to` may start on a device running
    /// `running`.
    pub fn admit(&self, running: &str, to: &str, allow_downgrade: bool) -> Result<(), Refusal> {
        if let Some(t) = &self.trial {
            return Err(Refusal::OnTrial(t.to.version.clone()));
        }
        if let Some(r) = &self.report {
            return Err(Refusal::Unreported(r.id.clone()));
        }
        if to == running {
            return Err(Refusal::Same(to.to_string()));
        }
        if !allow_downgrade && version::compare(to, running) != Ordering::Greater {
            return Err(Refusal::Downgrade {
                to: to.to_string(),
                running: running.to_string(),
            });
        }
        Ok(())
    }

    /// A new binary is in `bin/` (and, if the running one was not, its
    /// backup): put it on trial.
    pub fn install(&mut self, id: &str, to: Installed, running: &str, backup: Option<Installed>) {
        for i in backup.into_iter().chain([to.clone()]) {
            self.installed.retain(|x| x.version != i.version);
            self.installed.push(i);
        }
        self.trial = Some(Trial {
            id: id.to_string(),
            to,
            from: running.to_string(),
            starts: Vec::new(),
            stopped: None,
            failed: None,
        });
    }

    /// The trial version `own` proved itself: it is the current version
    /// now. False if `own` is not on trial.
    pub fn commit(&mut self, own: &str) -> bool {
        match self.trial.take() {
            Some(t) if t.to.version == own => {
                self.report = Some(Report {
                    id: t.id,
                    outcome: Outcome::Committed {
                        version: own.to_string(),
                        from: t.from,
                    },
                });
                self.current = Some(t.to);
                true
            }
            other => {
                self.trial = other;
                false
            }
        }
    }

    /// The trial version `own` failed by its own judgement; the launcher
    /// rolls back at the next start. False if `own` is not on trial.
    pub fn fail(&mut self, own: &str, reason: String) -> bool {
        match &mut self.trial {
            Some(t) if t.to.version == own => {
                t.failed = Some(reason);
                true
            }
            _ => false,
        }
    }

    /// The service manager says how the last start (on `boot`) ended.
    pub fn record_stop(&mut self, boot: &str, how: String) -> bool {
        match &mut self.trial {
            Some(t) if t.starts.last().is_some_and(|b| b == boot) && t.failed.is_none() => {
                t.stopped = Some(how);
                true
            }
            _ => false,
        }
    }

    /// The report was sent: forget it (if it is still the one sent).
    pub fn reported(&mut self, id: &str) -> bool {
        if self.report.as_ref().is_some_and(|r| r.id == id) {
            self.report = None;
            return true;
        }
        false
    }

    /// Forget all but the `keep` most recent binaries besides the current
    /// one and one on trial; returns the files to delete.
    pub fn prune(&mut self, keep: usize) -> Vec<String> {
        let pinned = |i: &Installed| {
            self.current.as_ref().is_some_and(|c| c.file == i.file)
                || self.trial.as_ref().is_some_and(|t| t.to.file == i.file)
        };
        let spare = self.installed.iter().filter(|i| !pinned(i)).count();
        let mut drop = spare.saturating_sub(keep);
        let mut gone = Vec::new();
        let mut kept = Vec::new();
        for i in std::mem::take(&mut self.installed) {
            if drop > 0 && !pinned(&i) {
                drop -= 1;
                gone.push(i.file);
            } else {
                kept.push(i);
            }
        }
        self.installed = kept;
        gone
    }
}

/// How a stop reads, from what systemd passes to `ExecStopPost=`
/// (`$SERVICE_RESULT`, `$EXIT_CODE`, `$EXIT_STATUS`).
pub fn describe_stop(result: Option<&str>, code: Option<&str>, status: Option<&str>) -> String {
    let status = status.unwrap_or("?");
    match (result, code) {
        (Some("watchdog"), _) => "was killed by the watchdog (no WATCHDOG=1 in time)".into(),
        (_, Some("exited")) => format!("exited with status {status}"),
        (_, Some("killed")) => format!("was killed by signal {status}"),
        (_, Some("dumped")) => format!("crashed (signal {status}, core dumped)"),
        (Some("timeout"), _) => "did not start or stop in time".into(),
        (Some(r), _) => format!("stopped ({r})"),
        (None, _) => "stopped".into(),
    }
}

#[cfg(test)]
mod tests;
