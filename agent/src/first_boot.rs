//! First boot: a configuration left on the SD card's FAT boot partition
//! (`/boot/firmware/picket.toml`, written by `image/inject` and editable on
//! any laptop) replaces the agent's configuration file when the agent
//! starts, and is deleted from the boot partition.
//!
//! The file is checked exactly as the agent will load it (TOML, then the
//! `PICKET_*` environment, then validation) before anything moves: an
//! invalid one stays on the boot partition, where the technician can fix
//! it, and the installed configuration is untouched.
//!
//! Order of the move, so that no failure leaves a file that would replace
//! the configuration again at every start (and undo a later
//! `config.update`): the new file is written beside the target (0600,
//! fsynced), the first-boot file is deleted, then the new file is renamed
//! over the target. If the deletion fails nothing changes; if the rename
//! fails the first-boot file is written back.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError};

/// A first-boot file larger than this is refused: a configuration is a few
/// KiB, and the file comes from a partition anyone can write.
pub const MAX_BYTES: u64 = 1 << 20;

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No first-boot file: the usual start.
    Absent,
    /// The file was installed as `target` and deleted from `source`.
    Installed { source: PathBuf, target: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum FirstBootError {
    /// The file does not validate; it was left in place.
    #[error(
        "first-boot configuration {path} is invalid (left in place; fix it and restart): {source}"
    )]
    Invalid { path: PathBuf, source: ConfigError },
    #[error("first-boot configuration {path}: {reason} (left in place)")]
    Refused { path: PathBuf, reason: String },
    #[error("first-boot configuration {path}: cannot {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
}

impl FirstBootError {
    /// Invalid content is a configuration error (exit code 2, like a bad
    /// configuration file); anything else is an operational failure.
    pub fn is_invalid_config(&self) -> bool {
        matches!(
            self,
            FirstBootError::Invalid { .. } | FirstBootError::Refused { .. }
        )
    }
}

/// Install `source` over `target` if `source` exists. `vars` is the
/// environment the agent will load its configuration with.
pub fn install(
    source: &Path,
    target: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Outcome, FirstBootError> {
    let meta = match fs::symlink_metadata(source) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Absent),
        Err(e) => return Err(io(source, "read it", e)),
    };
    if !meta.file_type().is_file() {
        return Err(FirstBootError::Refused {
            path: source.into(),
            reason: "not a regular file".into(),
        });
    }
    let text = read_bounded(source)?;

    let (raw, _unknown) = config::parse(&text, source, vars).map_err(|e| invalid(source, e))?;
    config::validate(raw).map_err(|e| invalid(source, e))?;

    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| io(&dir, "create the directory", e))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "agent.toml".into());
    let temp = dir.join(format!(".{name}.first-boot"));
    write_private(&temp, text.as_bytes()).map_err(|e| io(&temp, "write", e))?;

    if let Err(e) = fs::remove_file(source) {
        let _ = fs::remove_file(&temp);
        return Err(io(source, "delete it", e));
    }
    sync_dir(source);

    if let Err(e) = fs::rename(&temp, target) {
        let _ = fs::remove_file(&temp);
        // Put the technician's file back so the next start tries again.
        let _ = fs::write(source, text.as_bytes());
        sync_dir(source);
        return Err(io(target, "replace the configuration file", e));
    }
    sync_dir(target);
    Ok(Outcome::Installed {
        source: source.into(),
        target: target.into(),
    })
}

fn io(path: &Path, what: &'static str, source: io::Error) -> FirstBootError {
    FirstBootError::Io {
        path: path.into(),
        what,
        source,
    }
}

fn invalid(path: &Path, source: ConfigError) -> FirstBootError {
    FirstBootError::Invalid {
        path: path.into(),
        source,
    }
}

/// The file's text, without the byte-order mark some laptop editors put
/// first (TOML does not allow it). Windows line ends are valid TOML.
fn read_bounded(path: &Path) -> Result<String, FirstBootError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| io(path, "read it", e))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(FirstBootError::Refused {
            path: path.into(),
            reason: format!("larger than {MAX_BYTES} bytes"),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| FirstBootError::Refused {
        path: path.into(),
        reason: "not UTF-8 text (save it as UTF-8)".into(),
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Created with mode 0600 from the start (it may name credentials files
/// and hold a user name), fsynced before it can replace anything.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing temp file keeps its old mode through open(): set it.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Make a rename or deletion durable. Best effort: vfat and some other
/// file systems refuse to fsync a directory.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests;
