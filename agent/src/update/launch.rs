//! The launcher: what the entry binary does at every start of `run`,
//! before the configuration is even validated, and the `post-stop` hook.
//!
//! It must work whatever state the rest is in (a configuration only a
//! newer version understands, a damaged state file), so it reads
//! `update.dir` leniently and falls back to running itself: the packaged
//! binary is the one version that is always there.
//!
//! A binary the launcher executes gets `PICKET_ENTRY` (the entry's path)
//! in its environment: it skips the launcher, and re-executes that path
//! when it wants the launcher to decide again (after installing, or after
//! failing its trial).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use super::disk::{read_state, set_aside, state_file, write_state};
use super::state::{Launch, Outcome, describe_stop};

/// Set by the launcher for the binary it executes: the entry's path.
pub const ENTRY_ENV: &str = "PICKET_ENTRY";

/// How many decisions one start may take (an exec that fails leads to
/// another decision, which cannot fail the same way).
const MAX_DECISIONS: usize = 3;

/// `update.dir` and `host.root`, from whatever part of the configuration
/// can be read.
fn settings(config: Option<&Path>) -> (PathBuf, PathBuf) {
    let read = |section, key| {
        crate::config::lenient_string(config, std::env::vars(), section, key)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let dir = read("update", "dir")
        .unwrap_or_else(|| PathBuf::from(crate::config::raw::RawUpdate::default().dir));
    let root = read("host", "root").unwrap_or_else(|| PathBuf::from("/"));
    (dir, root)
}

fn boot_id(root: &Path) -> String {
    // Unknown: every start counts as the same boot, so a failing trial
    // version is rolled back at its first failure (the safe side).
    crate::sensors::identity::boot_id(root).unwrap_or_else(|| "unknown".into())
}

/// The entry binary's path: the launcher's, or this binary's own.
pub fn entry_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ENTRY_ENV) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    // A binary replaced by the package manager while running reads as
    // "/usr/bin/picket-agent (deleted)"; the new file is at the old path.
    let text = exe.to_string_lossy();
    Some(match text.strip_suffix(" (deleted)") {
        Some(p) => PathBuf::from(p),
        None => exe,
    })
}

fn args() -> impl Iterator<Item = OsString> {
    std::env::args_os().skip(1)
}

/// Decide what this start runs; returns when it is this process, else
/// replaces it (same process id: systemd keeps tracking it). Blocking.
pub fn launch(config: Option<&Path>) {
    if std::env::var_os(ENTRY_ENV).is_some() {
        return;
    }
    let (dir, root) = settings(config);
    let path = state_file(&dir);
    let boot = boot_id(&root);
    let own = crate::VERSION;
    for _ in 0..MAX_DECISIONS {
        let mut state = match read_state(&path) {
            Ok(None) => return,
            Ok(Some(s)) => s,
            Err(e) => {
                // Never guess from a damaged file: the packaged binary
                // runs, and the file is kept aside for inspection.
                error!(error = %e, "update state unreadable: running this binary");
                let _ = set_aside(&path);
                return;
            }
        };
        let before = state.clone();
        let decision = state.launch(own, &boot);
        if state != before {
            if let Err(e) = write_state(&path, &state) {
                // Without a record of this start a crashing new version
                // would be started again and again.
                error!(error = %e, "cannot write the update state: running this binary");
                return;
            }
            if state.report != before.report
                && let Some(r) = &state.report
                && let Outcome::RolledBack {
                    version,
                    to,
                    reason,
                } = &r.outcome
            {
                warn!(%version, %to, %reason, "agent update rolled back");
            }
        }
        let installed = match decision {
            Launch::Here => return,
            Launch::Exec(i) => i,
        };
        let file = dir.join("bin").join(&installed.file);
        let entry = entry_path().unwrap_or_else(|| PathBuf::from("/usr/bin/picket-agent"));
        info!(version = %installed.version, file = %file.display(), "starting the installed agent");
        let err = std::process::Command::new(&file)
            .args(args())
            .env(ENTRY_ENV, &entry)
            .exec();
        error!(file = %file.display(), error = %err, "cannot execute the installed agent");
        state.exec_failed(&installed.file, &err.to_string());
        if let Err(e) = write_state(&path, &state) {
            error!(error = %e, "cannot write the update state: running this binary");
            return;
        }
    }
}

/// Start again through the entry binary, so the launcher decides what runs
/// (after `agent.update` installed a version, or a trial failed). Returns
/// only on failure.
pub fn relaunch() -> std::io::Error {
    let Some(entry) = entry_path() else {
        return std::io::Error::other("the entry binary's path is unknown");
    };
    std::process::Command::new(entry)
        .args(args())
        .env_remove(ENTRY_ENV)
        .exec()
}

/// `picket-agent post-stop`, for systemd's `ExecStopPost=`: record how
/// the version on trial ended (`$SERVICE_RESULT`, `$EXIT_CODE`,
/// `$EXIT_STATUS`), so the rollback report says why. Nothing to do
/// outside a trial. Never fails the unit.
pub fn post_stop(config: Option<&Path>) {
    let (dir, root) = settings(config);
    let path = state_file(&dir);
    let var = |k: &str| std::env::var(k).ok();
    let how = describe_stop(
        var("SERVICE_RESULT").as_deref(),
        var("EXIT_CODE").as_deref(),
        var("EXIT_STATUS").as_deref(),
    );
    let Ok(Some(mut state)) = read_state(&path) else {
        return;
    };
    if state.record_stop(&boot_id(&root), how.clone())
        && let Err(e) = write_state(&path, &state)
    {
        eprintln!("picket-agent: cannot record that the agent {how}: {e}");
    }
}
