//! `file.deploy` and `file.delete`: confinement to the allowed directories.
//! The download that replaces nothing unless it is complete and correct is
//! [`crate::download`].
//!
//! Confinement is checked twice: when the command is admitted (so a path
//! outside is `rejected` with nothing done) and again just before writing
//! (the directory tree may have changed in between).

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::durable::{DurableError, sync_dir};

/// Why a path may not be written or deleted.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("no directory is allowed on this device (commands.file_dirs is empty)")]
    NoDirs,
    #[error("{0:?} contains `..`")]
    ParentDir(String),
    #[error("{} is outside the allowed directories ({allowed})", path.display())]
    Outside { path: PathBuf, allowed: String },
    #[error("{0:?} names no file")]
    NoFileName(String),
    #[error("{0:?} has no directory")]
    NoDirectory(String),
    #[error("allowed directory {}: {source}", dir.display())]
    AllowedDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("directory {}: {source}", dir.display())]
    Directory {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{} leads outside {} through a symbolic link", parent.display(), dir.display())]
    Escapes { parent: PathBuf, dir: PathBuf },
    #[error("{} is a symbolic link", .0.display())]
    Symlink(PathBuf),
    #[error("{} is a directory", .0.display())]
    IsDirectory(PathBuf),
    #[error("{}: {source}", path.display())]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a regular file", .0.display())]
    NotRegular(PathBuf),
    #[error("cannot delete {}: {source}", path.display())]
    Delete {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Durable(#[from] DurableError),
}

/// Where `path` (absolute, or relative to the first allowed directory) may
/// be written: the real path, with the parent's symlinks resolved, inside
/// one of `dirs`. The file itself must not be a symlink or a directory.
pub fn resolve(path: &str, dirs: &[PathBuf]) -> Result<PathBuf, FileError> {
    let first = dirs.first().ok_or(FileError::NoDirs)?;
    let raw = Path::new(path);
    let joined = if raw.is_absolute() {
        raw.to_path_buf()
    } else {
        first.join(raw)
    };
    // Lexical: `..` is refused outright, `.` dropped.
    let mut clean = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => return Err(FileError::ParentDir(path.to_string())),
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    let dir = dirs
        .iter()
        .find(|d| clean.starts_with(d) && clean != **d)
        .ok_or_else(|| FileError::Outside {
            path: clean.clone(),
            allowed: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let name = clean
        .file_name()
        .ok_or_else(|| FileError::NoFileName(path.to_string()))?;
    let parent = clean
        .parent()
        .ok_or_else(|| FileError::NoDirectory(path.to_string()))?;
    let real_dir = fs::canonicalize(dir).map_err(|source| FileError::AllowedDir {
        dir: dir.clone(),
        source,
    })?;
    let real_parent = fs::canonicalize(parent).map_err(|source| FileError::Directory {
        dir: parent.to_path_buf(),
        source,
    })?;
    if !real_parent.starts_with(&real_dir) {
        return Err(FileError::Escapes {
            parent: parent.to_path_buf(),
            dir: dir.clone(),
        });
    }
    let target = real_parent.join(name);
    match fs::symlink_metadata(&target) {
        Ok(m) if m.file_type().is_symlink() => Err(FileError::Symlink(target)),
        Ok(m) if m.is_dir() => Err(FileError::IsDirectory(target)),
        _ => Ok(target),
    }
}

/// Delete a resolved path: a regular file only. Blocking.
pub fn delete(path: &Path) -> Result<String, FileError> {
    let meta = fs::symlink_metadata(path).map_err(|source| FileError::Stat {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(FileError::NotRegular(path.to_path_buf()));
    }
    fs::remove_file(path).map_err(|source| FileError::Delete {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(format!("deleted {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn confinement_table() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("videos");
        let other = root.path().join("etc");
        fs::create_dir_all(allowed.join("sub")).unwrap();
        fs::create_dir_all(&other).unwrap();
        symlink(&other, allowed.join("escape")).unwrap();
        symlink(other.join("passwd"), allowed.join("link.mp4")).unwrap();
        fs::write(other.join("passwd"), "x").unwrap();
        let dirs = vec![allowed.clone()];
        let real = fs::canonicalize(&allowed).unwrap();
        let a = |p: &str| p.replace("{A}", allowed.to_str().unwrap());
        let ok: Vec<(String, PathBuf)> = vec![
            (a("a.mp4"), real.join("a.mp4")),
            (a("./sub/b.mp4"), real.join("sub/b.mp4")),
            (a("{A}/c.mp4"), real.join("c.mp4")),
            (a("{A}/sub/./d.mp4"), real.join("sub/d.mp4")),
        ];
        for (p, want) in ok {
            assert_eq!(resolve(&p, &dirs).unwrap(), want, "{p}");
        }
        let refused = [
            ("../etc/passwd", "`..`"),
            ("{A}/../etc/passwd", "`..`"),
            ("/etc/passwd", "outside"),
            ("{A}", "outside"),
            ("escape/passwd", "symbolic link"),
            ("link.mp4", "symbolic link"),
            ("sub", "directory"),
            ("missing/x.mp4", "missing"),
        ];
        for (p, why) in refused {
            let err = resolve(&a(p), &dirs).expect_err(p).to_string();
            assert!(err.contains(why), "{p}: {err}");
        }
        assert!(
            resolve("a", &[])
                .unwrap_err()
                .to_string()
                .contains("file_dirs")
        );
    }

    #[test]
    fn delete_only_regular_files() {
        let root = tempfile::tempdir().unwrap();
        let f = root.path().join("f");
        fs::write(&f, "x").unwrap();
        assert!(delete(&f).is_ok());
        assert!(!f.exists());
        assert!(delete(&f).is_err());
        assert!(
            delete(root.path())
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
    }
}
