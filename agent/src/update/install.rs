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
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use picket_protocol::UpdateArgs;
use picket_protocol::signing::{self, PublicKey};

use super::disk::{check_executable, copy_executable};
use super::state::Installed;
use super::{Updates, probe};
use crate::download::Downloader;
use crate::durable::sync_dir;

/// One `agent.update` at a time in this process (commands may run side by
/// side; two installs would race on `bin/` and the state).
static INSTALLING: AtomicBool = AtomicBool::new(false);

/// Device checks before the command is accepted. Blocking.
pub fn validate(
    args: &UpdateArgs,
    updates: &Updates,
    key: Option<&PublicKey>,
) -> Result<(), String> {
    if key.is_none() {
        return Err(
            "no commands.public_key_file: the artifact's signature cannot be checked".into(),
        );
    }
    updates
        .load()?
        .admit(crate::VERSION, &args.version, args.allow_downgrade)
        .map_err(|e| e.to_string())
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
) -> Result<String, String> {
    if INSTALLING.swap(true, Ordering::AcqRel) {
        return Err("busy: another agent.update is being installed".into());
    }
    let r = install_once(args, id, updates, downloader, key, running_exe);
    INSTALLING.store(false, Ordering::Release);
    r
}

fn install_once(
    args: &UpdateArgs,
    id: &str,
    updates: &Updates,
    downloader: &Downloader,
    key: Option<&PublicKey>,
    running_exe: &Path,
) -> Result<String, String> {
    // Again at the last moment: another update may have started since.
    validate(args, updates, key)?;
    let key = key.ok_or("no commands.public_key_file")?;
    let digest: [u8; 32] = signing::from_hex(&args.sha256)
        .and_then(|d| d.try_into().ok())
        .ok_or("sha256 must be 64 hexadecimal digits")?;
    let signature =
        signing::from_hex(&args.signature).ok_or("signature must be 128 hexadecimal digits")?;

    let bin = updates.bin_dir();
    fs::create_dir_all(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let safe_id: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(64)
        .collect();
    let tmp = bin.join(format!(".download-{safe_id}.part"));
    remove_temporaries(&bin);
    let max = updates.config().max_bytes;
    let bytes = downloader.fetch(&args.url, &args.sha256, &tmp, max, "update.max_bytes")?;
    let checked = signing::verify_artifact(&digest, &signature, key)
        .map_err(|e| {
            format!("bad signature: the artifact is not signed by the collector's key ({e})")
        })
        .and_then(|()| check_executable(&tmp, running_exe))
        .and_then(|()| {
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("{}: {e}", tmp.display()))
        })
        .and_then(|()| {
            probe::check_version(&tmp, &args.version, probe::PROBE_TIMEOUT)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = checked {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }

    // From here on the device changes.
    let running = crate::VERSION;
    let state = updates.load()?;
    let own = Installed::named(running);
    let backup = if state.installed.iter().any(|i| i.version == running)
        && updates.path_of(&own).is_file()
    {
        None
    } else {
        if let Err(e) = copy_executable(running_exe, &updates.path_of(&own)) {
            let _ = fs::remove_file(&tmp);
            return Err(format!("cannot back up the running binary: {e}"));
        }
        Some(own)
    };
    let to = Installed::named(&args.version);
    let dest = updates.path_of(&to);
    if let Err(e) = fs::rename(&tmp, &dest) {
        let _ = fs::remove_file(&tmp);
        return Err(format!("cannot move the new binary into place: {e}"));
    }
    sync_dir(&bin)?;
    let keep = updates.config().keep;
    let recorded = updates
        .modify(|s| {
            s.admit(running, &args.version, args.allow_downgrade)
                .map_err(|e| e.to_string())?;
            s.install(id, to.clone(), running, backup);
            Ok(s.prune(keep))
        })
        .and_then(|r| r);
    let gone = match recorded {
        Ok(gone) => gone,
        Err(e) => {
            // Not on trial: the device runs as before. The new file is
            // not referenced (unless an earlier install of the same version
            // is), so it goes.
            if !state.installed.iter().any(|i| i.file == to.file) {
                let _ = fs::remove_file(&dest);
            }
            return Err(format!("cannot record the update: {e}"));
        }
    };
    for file in gone {
        let _ = fs::remove_file(bin.join(file));
    }
    Ok(format!(
        "installed {} ({bytes} bytes; sha256, signature, architecture and version checked); \
         restarting onto it",
        args.version
    ))
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
