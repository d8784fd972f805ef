//! `file.deploy` and `file.delete`: confinement to the allowed directories.
//! The download that replaces nothing unless it is complete and correct is
//! [`crate::download`].
//!
//! Confinement is checked twice: when the command is admitted (so a path
//! outside is `rejected` with nothing done) and again just before writing
//! (the directory tree may have changed in between).

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::durable::sync_dir;

/// Where `path` (absolute, or relative to the first allowed directory) may
/// be written: the real path, with the parent's symlinks resolved, inside
/// one of `dirs`. The file itself must not be a symlink or a directory.
pub fn resolve(path: &str, dirs: &[PathBuf]) -> Result<PathBuf, String> {
    let first = dirs
        .first()
        .ok_or("no directory is allowed on this device (commands.file_dirs is empty)")?;
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
            Component::ParentDir => return Err(format!("{path:?} contains `..`")),
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    let dir = dirs
        .iter()
        .find(|d| clean.starts_with(d) && clean != **d)
        .ok_or_else(|| {
            format!(
                "{} is outside the allowed directories ({})",
                clean.display(),
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let name = clean
        .file_name()
        .ok_or_else(|| format!("{path:?} names no file"))?;
    let parent = clean
        .parent()
        .ok_or_else(|| format!("{path:?} has no directory"))?;
    let real_dir =
        fs::canonicalize(dir).map_err(|e| format!("allowed directory {}: {e}", dir.display()))?;
    let real_parent =
        fs::canonicalize(parent).map_err(|e| format!("directory {}: {e}", parent.display()))?;
    if !real_parent.starts_with(&real_dir) {
        return Err(format!(
            "{} leads outside {} through a symbolic link",
            parent.display(),
            dir.display()
        ));
    }
    let target = real_parent.join(name);
    match fs::symlink_metadata(&target) {
        Ok(m) if m.file_type().is_symlink() => {
            Err(format!("{} is a symbolic link", target.display()))
        }
        Ok(m) if m.is_dir() => Err(format!("{} is a directory", target.display())),
        _ => Ok(target),
    }
}

/// Delete a resolved path: a regular file only. Blocking.
pub fn delete(path: &Path) -> Result<String, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    fs::remove_file(path).map_err(|e| format!("cannot delete {}: {e}", path.display()))?;
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
            assert_eq!(resolve(&p, &dirs), Ok(want), "{p}");
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
            let err = resolve(&a(p), &dirs).expect_err(p);
            assert!(err.contains(why), "{p}: {err}");
        }
        assert!(resolve("a", &[]).unwrap_err().contains("file_dirs"));
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
                .contains("not a regular file")
        );
    }
}
