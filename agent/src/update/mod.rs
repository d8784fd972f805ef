//! Self-update (`agent.update`) with a health-gated trial and automatic
//! rollback, without A/B partitions.
//!
//! The packaged binary (`/usr/bin/picket-agent`, the *entry*) stays what
//! systemd starts. New versions are installed under `update.dir`:
//!
//! ```text
//! {update.dir}/state.json          what runs, what is on trial, what to report
//! {update.dir}/bin/picket-agent-V  installed versions and backups
//! ```
//!
//! 1. `agent.update` (on the running version): download with a size limit,
//!    check the SHA-256 and the collector's signature, check it is an
//!    executable for this machine and that, run with `--version`, it
//!    reports the version it was sent as ([`probe`]) — all before
//!    anything changes; copy the
//!    running binary to `bin/` (the backup), rename the new one into
//!    `bin/`, record the trial in `state.json` (atomically: the commit
//!    point of the install), then re-execute the entry binary.
//! 2. The entry binary, at every start, before anything else
//!    ([`launch`]): reads `state.json` and either runs itself, executes
//!    the committed version, starts the version on trial (recording the
//!    start first), or — when the trial version already started on this
//!    boot without committing, said it failed, or started
//!    [`state::MAX_TRIAL_STARTS`] times — rolls back: forgets the trial and
//!    keeps a report. So the rollback never depends on the new binary
//!    doing anything right.
//! 3. The version on trial ([`trial`]) commits once a sample it took was
//!    written to its queue and acknowledged by the broker, within
//!    `update.trial_window`; if the window passes first it records its
//!    failure and re-executes the entry, which rolls back.
//! 4. Whichever version runs next reports the outcome on the command's
//!    reply topic once connected: `succeeded`, or `failed` with
//!    "rolled back to V: reason".
//!
//! Nothing stays pending: only a trial's own version commits or fails it,
//! so any other version that finds a trial pending (its binary reports
//! another version than it was installed as, or it never took over)
//! decides it at once by what runs ([`state::State::decide_foreign_trial`]);
//! a damaged state file is set aside; a state that cannot be written is
//! retried. Otherwise a pending trial or report would refuse every later
//! update.
//!
//! Broker unreachable during the trial: the new version has not proved
//! itself, so it is rolled back like any other failure when the window
//! passes. The version rolled back to is committed and is never tried
//! again, nothing re-installs by itself, and the report waits until the
//! broker is reachable: a box without network runs its previous version
//! and buffers, it does not loop.
//!
//! # Layout
//! - [`state`]: the state file and every decision on it (pure).
//! - [`disk`]: reading and writing the state, the files in `bin/`, the
//!   executable check.
//! - [`install`]: the `agent.update` command's work; [`probe`]: asking the
//!   downloaded binary its version.
//! - [`launch`]: the launcher and the `post-stop` hook.
//! - [`trial`]: the task that commits or fails a trial and sends reports.

pub mod disk;
pub mod install;
pub mod launch;
pub mod probe;
pub mod state;
pub mod trial;

pub use disk::Updates;
