//! `picket-collector keygen --out DIR`: a new ed25519 key pair for signing
//! commands. `command.key` (mode 0600) stays with the collector
//! (`commands.private_key_file`); `command.pub` goes to every agent
//! (`commands.public_key_file`).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use picket_protocol::signing;

#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("{0} already exists: refusing to overwrite a key (move it away first)")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Write `command.key` and `command.pub` into `dir` (created if needed);
/// returns their paths.
pub fn keygen(dir: &Path) -> Result<(PathBuf, PathBuf), KeygenError> {
    let private = dir.join("command.key");
    let public = dir.join("command.pub");
    for p in [&private, &public] {
        if p.exists() {
            return Err(KeygenError::Exists(p.clone()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| KeygenError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let key = signing::private_key(rand::random::<[u8; 32]>());
    write(&private, &signing::private_key_text(&key), 0o600)?;
    write(
        &public,
        &signing::public_key_text(&key.verifying_key()),
        0o644,
    )?;
    Ok((private, public))
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), KeygenError> {
    let io = |source| KeygenError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Created with its final mode: the private key is never readable by
    // others, not even for a moment.
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_a_matching_pair_with_private_permissions() {
        let d = tempfile::tempdir().unwrap();
        let (k, p) = keygen(&d.path().join("keys")).unwrap();
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let key = signing::parse_private_key(&std::fs::read_to_string(&k).unwrap()).unwrap();
        let public = signing::parse_public_key(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(key.verifying_key(), public);
        assert!(matches!(
            keygen(&d.path().join("keys")),
            Err(KeygenError::Exists(_))
        ));
    }
}
