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

/// Temp file in the same directory, fsync, rename, fsync the directory:
/// after a crash the file is either old or new, never half of each.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} names no file", path.display()))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.picket-tmp"));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    sync_dir(&dir)
}

/// Make a rename or unlink durable.
pub fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}
