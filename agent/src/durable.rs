//! Writes that survive a power cut: a file replaced atomically, a rename or
//! unlink made durable by syncing its directory.
//!
//! Shared by the command service (`config.update`'s file and marker,
//! `file.deploy` and `file.delete`, the reboot slot) and by `agent.update`
//! (`state.json`, the binaries in `bin/`), so it sits below both: neither
//! imports the other for it.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error("{} names no file", path.display())]
    NoFileName { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot sync {}: {source}", dir.display())]
    Sync {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Temp file in the same directory, fsync, rename, fsync the directory:
/// after a crash the file is either old or new, never half of each.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), DurableError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = path
        .file_name()
        .ok_or_else(|| DurableError::NoFileName {
            path: path.to_path_buf(),
        })?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.picket-tmp"));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(DurableError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    sync_dir(&dir)
}

/// Make a rename or unlink durable.
pub fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| DurableError::Sync {
            dir: dir.to_path_buf(),
            source,
        })
}
