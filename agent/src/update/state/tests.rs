//! The update state machine's decisions, step by step.

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
                s.exec_failed("picket-agent-1.1.0", "Exec format error");
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
    s.exec_failed("picket-agent-1.1.0", "No such file or directory");
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

#[test]
fn a_trial_of_another_version_is_decided_by_what_runs() {
    // (running version, runs from the trial's file, expected decision,
    // the rollback report's reason once the launcher has decided)
    let table = [
        (
            "1.1.9",
            true,
            Foreign::Failed,
            "the binary installed as 1.1.0 reports version 1.1.9",
        ),
        (
            A,
            false,
            Foreign::RolledBack,
            "1.0.0 is running instead of 1.1.0 (the new version did not take over)",
        ),
    ];
    for (own, runs_trial_file, want, reason) in table {
        let mut s = on_trial();
        s.launch(A, "boot1");
        assert_eq!(
            s.decide_foreign_trial(own, runs_trial_file),
            Some(want),
            "{own}"
        );
        if want == Foreign::Failed {
            // The binary hands back to the launcher, which rolls back.
            assert!(s.trial.is_some());
            assert_eq!(s.launch(A, "boot1"), Launch::Here);
        }
        assert_eq!(s.trial, None, "{own}: never left pending");
        match &s.report {
            Some(Report {
                id,
                outcome:
                    Outcome::RolledBack {
                        version, reason: r, ..
                    },
            }) => {
                assert_eq!((id.as_str(), version.as_str()), ("c1", B));
                assert_eq!(r, reason);
            }
            other => panic!("{own}: {other:?}"),
        }
        // Once reported, the next update is admitted.
        assert!(s.reported("c1"));
        assert_eq!(s.admit(A, "1.2.0", false), Ok(()));
    }
}

#[test]
fn the_trial_version_itself_is_not_foreign() {
    let mut s = on_trial();
    s.launch(A, "boot1");
    assert_eq!(s.decide_foreign_trial(B, true), None);
    assert_eq!(s.decide_foreign_trial(B, false), None);
    assert!(s.trial.is_some());
    assert_eq!(State::default().decide_foreign_trial(A, false), None);
}

#[test]
fn a_failure_already_recorded_is_kept() {
    let mut s = on_trial();
    s.launch(A, "boot1");
    assert!(s.fail(B, "no acknowledgement".into()));
    assert_eq!(s.decide_foreign_trial("9.9.9", true), Some(Foreign::Failed));
    assert_eq!(s.launch(A, "boot1"), Launch::Here);
    assert_eq!(rolled_back_reason(&s), "no acknowledgement");
}

/// Every state `state.json` can hold, and who takes it back to one where
/// an update is admitted, without anyone's help: no state refuses updates
/// for longer than a trial window and a connection.
#[test]
fn no_state_refuses_updates_forever() {
    type Settle = fn(&mut State);
    let table: Vec<(&str, State, Settle)> = vec![
        ("empty", State::default(), |_| {}),
        (
            "committed, reported",
            {
                let mut s = on_trial();
                s.launch(A, "b");
                s.commit(B);
                s.reported("c1");
                s
            },
            |_| {},
        ),
        (
            "on trial, not started: the launcher starts it, its window fails it",
            on_trial(),
            |s| {
                assert!(matches!(s.launch(A, "b"), Launch::Exec(_)));
                assert!(s.fail(B, "window".into()));
                s.launch(A, "b");
            },
        ),
        (
            "on trial, not started: the launcher starts it, it commits",
            on_trial(),
            |s| {
                assert!(matches!(s.launch(A, "b"), Launch::Exec(_)));
                assert!(s.commit(B));
            },
        ),
        (
            "on trial, started, crashed: the next launch rolls back",
            {
                let mut s = on_trial();
                s.launch(A, "b");
                s
            },
            |s| {
                s.launch(A, "b");
            },
        ),
        (
            "on trial, running another version: decided at once",
            {
                let mut s = on_trial();
                s.launch(A, "b");
                s
            },
            |s| {
                s.decide_foreign_trial(A, false);
            },
        ),
        (
            "on trial, mislabelled binary running: fails, launcher rolls back",
            {
                let mut s = on_trial();
                s.launch(A, "b");
                s
            },
            |s| {
                s.decide_foreign_trial("1.0.7", true);
                s.launch(A, "b");
            },
        ),
        (
            "failed, not yet rolled back",
            {
                let mut s = on_trial();
                s.launch(A, "b");
                s.fail(B, "window".into());
                s
            },
            |s| {
                s.launch(A, "b");
            },
        ),
        (
            "committed version's binary gone",
            {
                let mut s = on_trial();
                s.launch(A, "b");
                s.commit(B);
                s.reported("c1");
                s.exec_failed("picket-agent-1.1.0", "No such file or directory");
                s
            },
            |_| {},
        ),
    ];
    for (name, mut s, settle) in table {
        settle(&mut s);
        // Whatever outcome there is goes out once connected.
        if let Some(id) = s.report.as_ref().map(|r| r.id.clone()) {
            assert!(s.reported(&id), "{name}");
        }
        assert_eq!(s.trial, None, "{name}");
        let running = match &s.current {
            Some(c) => c.version.clone(),
            None => A.to_string(),
        };
        assert_eq!(s.admit(&running, "9.0.0", false), Ok(()), "{name}");
    }
}
