//! `file.deploy` and `file.delete`: confinement to the allowed directories,
//! and a download that replaces nothing unless it is complete and correct.
//!
//! Confinement is checked twice: when the command is admitted (so a path
//! outside is `rejected` with nothing done) and again just before writing
//! (the directory tree may have changed in between).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider, parse_pem};

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

/// Where Debian (Raspberry Pi OS), Fedora and Alpine keep the system's CA
/// bundle, in that order.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Settings for downloads.
#[derive(Clone)]
pub struct Downloader {
    agent: ureq::Agent,
    max_bytes: u64,
    /// Why no download can be verified (no CA certificate found).
    no_roots: Option<String>,
}

impl std::fmt::Debug for Downloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader")
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl Downloader {
    /// `ca_pem`: the roots to trust (`commands.file_ca_file`); without,
    /// the system's CA bundle. Mozilla's list is not built in: it would
    /// add a quarter of a megabyte to a binary that rarely downloads.
    pub fn new(ca_pem: Option<&[u8]>, max_bytes: u64, timeout: Duration) -> Downloader {
        picket_config::tls::install_provider();
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let (pem, origin) = match ca_pem {
            Some(pem) => (Some(pem.to_vec()), "commands.file_ca_file".to_string()),
            None => SYSTEM_BUNDLES
                .iter()
                .find_map(|p| fs::read(p).ok().map(|b| (Some(b), (*p).to_string())))
                .unwrap_or((None, SYSTEM_BUNDLES.join(", "))),
        };
        let certs: Vec<Certificate<'static>> = pem
            .as_deref()
            .map(|pem| {
                parse_pem(pem)
                    .filter_map(|item| match item {
                        Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let no_roots = certs
            .is_empty()
            .then(|| format!("no CA certificate in {origin}: set commands.file_ca_file"));
        let roots = RootCerts::from(certs);
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(provider)
            .root_certs(roots)
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .https_only(true)
            .tls_config(tls)
            .user_agent(format!("picket-agent/{}", crate::VERSION))
            .build()
            .new_agent();
        Downloader {
            agent,
            max_bytes,
            no_roots,
        }
    }

    /// Download `url` to `dest` (already resolved), checking size and
    /// sha256 while streaming. `dest` is replaced only by a complete file
    /// with the right checksum; on any failure the temporary file is
    /// removed and `dest` is as it was. Blocking.
    pub fn deploy(&self, url: &str, sha256: &str, dest: &Path, id: &str) -> Result<String, String> {
        if let Some(why) = &self.no_roots {
            return Err(why.clone());
        }
        let dir = dest.parent().ok_or("destination has no directory")?;
        let name = dest
            .file_name()
            .ok_or("destination has no file name")?
            .to_string_lossy();
        let tmp = dir.join(format!(".{name}.picket-{id}.part"));
        let result = self.download(url, sha256, &tmp, self.max_bytes, "commands.file_max_bytes");
        match result {
            Ok(bytes) => {
                fs::rename(&tmp, dest)
                    .map_err(|e| {
                        let _ = fs::remove_file(&tmp);
                        format!("cannot move the download into place: {e}")
                    })
                    .and_then(|()| sync_dir(dir))?;
                Ok(format!("deployed {bytes} bytes to {}", dest.display()))
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Download `url` into `tmp` (created, must not exist) with at most
    /// `max_bytes` (the limit's configuration key named in errors), checking
    /// the sha256; on any failure `tmp` is removed. Returns the size.
    /// Blocking. (`agent.update` downloads with its own limit.)
    pub fn fetch(
        &self,
        url: &str,
        sha256: &str,
        tmp: &Path,
        max_bytes: u64,
        limit_key: &str,
    ) -> Result<u64, String> {
        if let Some(why) = &self.no_roots {
            return Err(why.clone());
        }
        let r = self.download(url, sha256, tmp, max_bytes, limit_key);
        if r.is_err() {
            let _ = fs::remove_file(tmp);
        }
        r
    }

    fn download(
        &self,
        url: &str,
        sha256: &str,
        tmp: &Path,
        max_bytes: u64,
        limit_key: &str,
    ) -> Result<u64, String> {
        let mut response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| format!("download failed: {e}"))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(format!("download failed: HTTP {status}"));
        }
        if let Some(len) = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > max_bytes
        {
            return Err(format!(
                "the file is {len} bytes, more than {limit_key} ({max_bytes})"
            ));
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let mut body = response.body_mut().as_reader();
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = body
                .read(&mut buf)
                .map_err(|e| format!("download failed: {e}"))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            // Enforced while streaming: a server that lies about or omits
            // its length cannot fill the card.
            if total > max_bytes {
                return Err(format!("the download exceeded {limit_key} ({max_bytes})"));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        }
        let got: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !got.eq_ignore_ascii_case(sha256) {
            return Err(format!("sha256 mismatch: expected {sha256}, got {got}"));
        }
        file.sync_all()
            .map_err(|e| format!("cannot sync {}: {e}", tmp.display()))?;
        Ok(total)
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

/// Make a rename or unlink durable.
pub fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
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
