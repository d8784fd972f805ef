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

    /// The launcher could not execute `file`.
    pub fn exec_failed(&mut self, own: &str, file: &str, error: &str) {
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
        let _ = own;
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
mod tests {
    use super::*;

    const A: &str = "1.0.0";
    const B: &str = "1.1.0";

    fn on_trial() -> State {
        let mut s = State::default();
        assert_eq!(s.launch(A, "boot1"), Launch::Here);
        s.install("c1", Installed::named(B), A, Some(Installed::named(A)));
        s
    }

    fn rolled_back_reason(s: &State) -> String {
        match &s.report {
            Some(Report {
                outcome: Outcome::RolledBack { reason, to, .. },
                ..
            }) => {
                assert_eq!(to, A);
                reason.clone()
            }
            other => panic!("not rolled back: {other:?}"),
        }
    }

    #[test]
    fn a_good_update_runs_the_new_version_until_it_commits() {
        let mut s = on_trial();
        assert_eq!(s.launch(A, "boot1"), Launch::Exec(Installed::named(B)));
        assert!(s.commit(B));
        assert_eq!(s.trial, None);
        assert_eq!(s.current, Some(Installed::named(B)));
        assert_eq!(
            s.report.as_ref().map(|r| r.outcome.text()),
            Some("version 1.1.0 committed (previous: 1.0.0, kept as a backup)".into())
        );
        // Every later start of the entry runs the committed version.
        for boot in ["boot1", "boot2"] {
            assert_eq!(s.launch(A, boot), Launch::Exec(Installed::named(B)));
        }
        assert!(s.reported("c1"));
        assert_eq!(s.report, None);
    }

    #[test]
    fn rollback_table() {
        type Step = fn(&mut State);
        let table: Vec<(&str, Step, &str)> = vec![
            (
                "crash, recorded by post-stop",
                |s| {
                    s.launch(A, "boot1");
                    assert!(s.record_stop(
                        "boot1",
                        describe_stop(Some("exit-code"), Some("exited"), Some("1"))
                    ));
                },
                "1.1.0 exited with status 1 before committing",
            ),
            (
                "crash, no post-stop",
                |s| {
                    s.launch(A, "boot1");
                },
                "1.1.0 stopped before committing (crash, watchdog or stop; no exit status was recorded)",
            ),
            (
                "watchdog",
                |s| {
                    s.launch(A, "boot1");
                    s.record_stop(
                        "boot1",
                        describe_stop(Some("watchdog"), Some("killed"), Some("ABRT")),
                    );
                },
                "1.1.0 was killed by the watchdog (no WATCHDOG=1 in time) before committing",
            ),
            (
                "window missed",
                |s| {
                    s.launch(A, "boot1");
                    assert!(s.fail(B, "no acknowledgement".into()));
                    // A stop after its own verdict does not replace it.
                    assert!(!s.record_stop("boot1", "exited with status 0".into()));
                },
                "no acknowledgement",
            ),
            (
                "box restarting during the trial",
                |s| {
                    for b in ["boot1", "boot2", "boot3"] {
                        assert!(matches!(s.launch(A, b), Launch::Exec(_)));
                    }
                },
                "1.1.0 started 3 times (the box restarted during its trial) without committing",
            ),
            (
                "cannot execute",
                |s| {
                    s.launch(A, "boot1");
                    s.exec_failed(A, "picket-agent-1.1.0", "Exec format error");
                },
                "1.1.0 cannot be executed: Exec format error",
            ),
        ];
        for (name, steps, want) in table {
            let mut s = on_trial();
            steps(&mut s);
            // The next start decides, on the same boot as the last one.
            let boot = s.trial.as_ref().and_then(|t| t.starts.last().cloned());
            let boot = if name == "box restarting during the trial" {
                "boot4".to_string()
            } else {
                boot.unwrap_or_else(|| "boot1".into())
            };
            assert_eq!(s.launch(A, &boot), Launch::Here, "{name}");
            assert_eq!(rolled_back_reason(&s), want, "{name}");
            assert_eq!(s.trial, None, "{name}");
            assert_eq!(s.current, None, "{name}: the entry runs again");
            // And it stays that way: no loop.
            assert_eq!(s.launch(A, &boot), Launch::Here, "{name}");
            assert_eq!(s.launch(A, "boot9"), Launch::Here, "{name}");
        }
    }

    #[test]
    fn a_reboot_during_the_trial_gets_another_start() {
        let mut s = on_trial();
        s.launch(A, "boot1");
        assert_eq!(s.launch(A, "boot2"), Launch::Exec(Installed::named(B)));
        assert!(s.commit(B));
    }

    #[test]
    fn rolling_back_from_an_installed_version_goes_to_it() {
        let mut s = on_trial();
        s.launch(A, "b");
        s.commit(B);
        s.reported("c1");
        s.install("c2", Installed::named("1.2.0"), B, None);
        assert_eq!(s.launch(A, "b"), Launch::Exec(Installed::named("1.2.0")));
        assert_eq!(s.launch(A, "b"), Launch::Exec(Installed::named(B)));
        match &s.report.as_ref().unwrap().outcome {
            Outcome::RolledBack { version, to, .. } => {
                assert_eq!((version.as_str(), to.as_str()), ("1.2.0", B));
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn a_committed_version_that_cannot_run_falls_back_to_the_entry() {
        let mut s = on_trial();
        s.launch(A, "b");
        s.commit(B);
        s.exec_failed(A, "picket-agent-1.1.0", "No such file or directory");
        assert_eq!(s.launch(A, "b"), Launch::Here);
    }

    #[test]
    fn a_package_upgrade_takes_over_from_older_installed_versions() {
        let mut s = on_trial();
        s.launch(A, "b");
        s.commit(B);
        // Package 1.0.5: older than the installed 1.1.0, which stays.
        assert_eq!(s.launch("1.0.5", "b"), Launch::Exec(Installed::named(B)));
        // Package 1.2.0: newer, runs itself.
        assert_eq!(s.launch("1.2.0", "b"), Launch::Here);
        assert_eq!(s.current, None);
        // A deliberate downgrade below the entry is honoured while the
        // entry stays the same.
        s.install("c3", Installed::named("1.1.5"), "1.2.0", None);
        s.launch("1.2.0", "b");
        assert!(s.commit("1.1.5"));
        assert_eq!(
            s.launch("1.2.0", "b"),
            Launch::Exec(Installed::named("1.1.5"))
        );
    }

    #[test]
    fn admission() {
        let s = State::default();
        assert_eq!(s.admit(A, B, false), Ok(()));
        assert_eq!(s.admit(A, A, true), Err(Refusal::Same(A.into())));
        assert_eq!(
            s.admit(B, A, false),
            Err(Refusal::Downgrade {
                to: A.into(),
                running: B.into()
            })
        );
        assert_eq!(s.admit(B, A, true), Ok(()));
        assert!(matches!(
            s.admit("1.0", "1.0.0", false),
            Err(Refusal::Downgrade { .. })
        ));
        let t = on_trial();
        assert_eq!(t.admit(A, "2.0.0", false), Err(Refusal::OnTrial(B.into())));
        let mut r = on_trial();
        r.launch(A, "b");
        r.commit(B);
        assert_eq!(
            r.admit(B, "2.0.0", false),
            Err(Refusal::Unreported("c1".into()))
        );
    }

    #[test]
    fn commit_and_fail_only_for_the_version_on_trial() {
        let mut s = on_trial();
        assert!(!s.commit(A));
        assert!(!s.fail(A, "x".into()));
        assert!(s.trial.is_some());
        assert!(!State::default().commit(B));
    }

    #[test]
    fn pruning_keeps_the_most_recent_and_never_the_running_or_trial() {
        let mut s = State::default();
        let versions = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"];
        let mut running = versions[0];
        for (n, v) in versions.iter().enumerate().skip(1) {
            let backup = (n == 1).then(|| Installed::named(running));
            s.install("c", Installed::named(v), running, backup);
            s.launch("1.0.0", "b");
            assert!(s.commit(v));
            s.reported("c");
            running = v;
        }
        let gone = s.prune(2);
        assert_eq!(
            gone,
            [
                "picket-agent-1.0.0",
                "picket-agent-1.1.0",
                "picket-agent-1.2.0"
            ]
        );
        let left: Vec<&str> = s.installed.iter().map(|i| i.version.as_str()).collect();
        assert_eq!(left, ["1.3.0", "1.4.0", "1.5.0"]);
        // On trial: the new one and the current one are pinned.
        s.install("d", Installed::named("1.6.0"), "1.5.0", None);
        let gone = s.prune(1);
        assert_eq!(gone, ["picket-agent-1.3.0"]);
        let left: Vec<&str> = s.installed.iter().map(|i| i.version.as_str()).collect();
        assert_eq!(left, ["1.4.0", "1.5.0", "1.6.0"]);
    }

    #[test]
    fn the_state_file_is_forward_compatible() {
        let mut s = on_trial();
        s.launch(A, "b");
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<State>(&text).unwrap(), s);
        let newer = r#"{"v":1,"entry":"1.0.0","channel":"beta","current":null}"#;
        let parsed: State = serde_json::from_str(newer).unwrap();
        assert_eq!(parsed.entry.as_deref(), Some("1.0.0"));
        assert!(serde_json::from_str::<State>("{\"entry\":\"1\"}").is_err());
    }

    #[test]
    fn stops_as_systemd_reports_them() {
        let table = [
            (
                (Some("exit-code"), Some("exited"), Some("2")),
                "exited with status 2",
            ),
            (
                (Some("signal"), Some("killed"), Some("KILL")),
                "was killed by signal KILL",
            ),
            (
                (Some("core-dump"), Some("dumped"), Some("SEGV")),
                "crashed (signal SEGV, core dumped)",
            ),
            (
                (Some("watchdog"), Some("killed"), Some("ABRT")),
                "was killed by the watchdog (no WATCHDOG=1 in time)",
            ),
            (
                (Some("timeout"), None, None),
                "did not start or stop in time",
            ),
            ((Some("success"), None, None), "stopped (success)"),
            ((None, None, None), "stopped"),
        ];
        for ((r, c, st), want) in table {
            assert_eq!(describe_stop(r, c, st), want);
        }
    }
}
