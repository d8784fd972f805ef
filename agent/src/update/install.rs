//! The `agent.update` command: everything that can refuse the artifact
//! happens before anything changes on the device.
//!
//! Order: admission (version, nothing pending) → download into `bin/` under
//! a temporary name with `update.max_bytes` enforced while streaming and the
//! SHA-256 computed on the way → the collector's signature over that digest
//! → an executable for this machine → run with `--version`, it reports the
//! version the command names ([`super::probe`]) → (now things change) the running
//! binary's backup → the new binary renamed into place → the trial recorded
//! in `state.json`, the commit point → older backups pruned. A failure
//! before the state is written leaves the device as it was (a stray file in
//! `bin/` at worst, removed with the temporary download).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use picket_protocol::UpdateArgs;
use picket_protocol::signing::{self, PublicKey, SignatureError};

use super::Updates;
use super::disk::{DiskError, ExecutableError, check_executable, copy_executable};
use super::probe::{self, ProbeError};
use super::state::{Installed, Refusal, State};
use crate::download::{DownloadError, Downloader, Limit};
use crate::durable::{DurableError, sync_dir};

/// One `agent.update` at a time in this process (commands may run side by
/// side; two installs would race on `bin/` and the state).
static INSTALLING: AtomicBool = AtomicBool::new(false);

/// Why an `agent.update` was refused or did not install.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("no commands.public_key_file: the artifact's signature cannot be checked")]
    NoKey,
    #[error("busy: another agent.update is being installed")]
    Busy,
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("sha256 must be 64 hexadecimal digits")]
    Digest,
    #[error("signature must be 128 hexadecimal digits")]
    SignatureHex,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error("bad signature: the artifact is not signed by the collector's key ({0})")]
    Signature(SignatureError),
    #[error(transparent)]
    Executable(#[from] ExecutableError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("cannot back up the running binary: {0}")]
    Backup(DiskError),
    #[error("cannot move the new binary into place: {0}")]
    Move(std::io::Error),
    #[error(transparent)]
    Durable(#[from] DurableError),
    #[error("cannot record the update: {0}")]
    Record(Box<InstallError>),
}

/// Device checks before the command is accepted. Blocking.
pub fn validate(
    args: &UpdateArgs,
    updates: &Updates,
    key: Option<&PublicKey>,
) -> Result<(), InstallError> {
    admit(args, updates, key).map(drop)
}

/// [`validate`], handing back the key it found.
fn admit<'k>(
    args: &UpdateArgs,
    updates: &Updates,
    key: Option<&'k PublicKey>,
) -> Result<&'k PublicKey, InstallError> {
    let key = key.ok_or(InstallError::NoKey)?;
    updates
        .load()?
        .admit(crate::VERSION, &args.version, args.allow_downgrade)?;
    Ok(key)
}

/// Download, check, back up, install and put on trial. On success the
/// caller re-executes the entry binary. Blocking.
pub fn install(
    args: &UpdateArgs,
    id: &str,
    updates: &Updates,
    downloader: &Downloader,
    key: Option<&PublicKey>,
    running_exe: &Path,
) -> Result<String, InstallError> {
    let _busy = Busy::take()?;
    // Again at the last moment: another update may have started since.
    let key = admit(args, updates, key)?;
    let proof = Proof::parse(args)?;
    let bin = updates.bin_dir();
    fs::create_dir_all(&bin).map_err(|source| InstallError::Io {
        path: bin.clone(),
        source,
    })?;
    let tmp = bin.join(format!(".download-{}.part", safe_id(id)));
    remove_temporaries(&bin);
    let limit = Limit {
        max_bytes: updates.config().max_bytes,
        key: "update.max_bytes",
    };
    let bytes = downloader.fetch(&args.url, &args.sha256, &tmp, limit)?;
    if let Err(e) = check_download(&tmp, args, &proof, key, running_exe) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // From here on the device changes.
    put_on_trial(args, id, updates, &tmp, running_exe)?;
    Ok(format!(
        "installed {} ({bytes} bytes; sha256, signature, architecture and version checked); \
         restarting onto it",
        args.version
    ))
}

/// Holds [`INSTALLING`] while an install runs.
struct Busy;

impl Busy {
    fn take() -> Result<Busy, InstallError> {
        if INSTALLING.swap(true, Ordering::AcqRel) {
            return Err(InstallError::Busy);
        }
        Ok(Busy)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        INSTALLING.store(false, Ordering::Release);
    }
}

/// The command's digest and the collector's signature over it, decoded.
struct Proof {
    digest: [u8; 32],
    signature: Vec<u8>,
}

impl Proof {
    fn parse(args: &UpdateArgs) -> Result<Proof, InstallError> {
        let digest = signing::from_hex(&args.sha256)
            .and_then(|d| d.try_into().ok())
            .ok_or(InstallError::Digest)?;
        let signature = signing::from_hex(&args.signature).ok_or(InstallError::SignatureHex)?;
        Ok(Proof { digest, signature })
    }
}

/// The id as a file name part: ASCII letters and digits, at most 64.
fn safe_id(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(64)
        .collect()
}

/// Everything that can refuse the downloaded file `tmp` (its sha256 was
/// checked while downloading): the signature, the machine, the version it
/// reports. Leaves it executable.
fn check_download(
    tmp: &Path,
    args: &UpdateArgs,
    proof: &Proof,
    key: &PublicKey,
    running_exe: &Path,
) -> Result<(), InstallError> {
    signing::verify_artifact(&proof.digest, &proof.signature, key)
        .map_err(InstallError::Signature)?;
    check_executable(tmp, running_exe)?;
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o755)).map_err(|source| {
        InstallError::Io {
            path: tmp.to_path_buf(),
            source,
        }
    })?;
    Ok(probe::check_version(
        tmp,
        &args.version,
        probe::PROBE_TIMEOUT,
    )?)
}

/// Back up the running binary, move `tmp` into place, record the trial
/// (the commit point) and prune old backups.
fn put_on_trial(
    args: &UpdateArgs,
    id: &str,
    updates: &Updates,
    tmp: &Path,
    running_exe: &Path,
) -> Result<(), InstallError> {
    let running = crate::VERSION;
    let state = updates.load()?;
    let (backup, to) = match move_in(&state, args, updates, tmp, running_exe) {
        Ok(moved) => moved,
        Err(e) => {
            let _ = fs::remove_file(tmp);
            return Err(e);
        }
    };
    let bin = updates.bin_dir();
    sync_dir(&bin)?;
    let keep = updates.config().keep;
    let recorded = updates
        .modify(|s| {
            s.admit(running, &args.version, args.allow_downgrade)?;
            s.install(id, to.clone(), running, backup);
            Ok(s.prune(keep))
        })
        .map_err(InstallError::from)
        .and_then(|r| r);
    let gone = match recorded {
        Ok(gone) => gone,
        Err(e) => {
            // Not on trial: the device runs as before. The new file is
            // not referenced (unless an earlier install of the same version
            // is), so it goes.
            if !state.installed.iter().any(|i| i.file == to.file) {
                let _ = fs::remove_file(updates.path_of(&to));
            }
            return Err(InstallError::Record(Box::new(e)));
        }
    };
    for file in gone {
        let _ = fs::remove_file(bin.join(file));
    }
    Ok(())
}

/// Copy the running binary to `bin/` unless it is there already (the
/// backup, if one was made) and rename `tmp` to the new version's file.
fn move_in(
    state: &State,
    args: &UpdateArgs,
    updates: &Updates,
    tmp: &Path,
    running_exe: &Path,
) -> Result<(Option<Installed>, Installed), InstallError> {
    let running = crate::VERSION;
    let own = Installed::named(running);
    let backup = if state.installed.iter().any(|i| i.version == running)
        && updates.path_of(&own).is_file()
    {
        None
    } else {
        copy_executable(running_exe, &updates.path_of(&own)).map_err(InstallError::Backup)?;
        Some(own)
    };
    let to = Installed::named(&args.version);
    fs::rename(tmp, updates.path_of(&to)).map_err(InstallError::Move)?;
    Ok((backup, to))
}

/// Temporary files a power cut or a crash left in `bin/` (downloads and
/// copies in progress start with a dot). Only one install runs at a time.
fn remove_temporaries(bin: &Path) {
    let Ok(entries) = fs::read_dir(bin) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with('.') {
            let _ = fs::remove_file(e.path());
        }
    }
}
