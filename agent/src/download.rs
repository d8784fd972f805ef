//! HTTPS downloads that check what they fetch: size bounded while
//! streaming, SHA-256 computed on the way, written to a temporary file that
//! replaces nothing unless it is complete and correct.
//!
//! One [`Downloader`] serves `file.deploy` (the command service) and
//! `agent.update` (which fetches with its own limit), so it sits below
//! both: neither imports the other for it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider, parse_pem};

use crate::durable::{DurableError, sync_dir};

/// Where Debian (Raspberry Pi OS), Fedora and Alpine keep the system's CA
/// bundle, in that order.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why a download did not replace its destination.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("no CA certificate in {origin}: set commands.file_ca_file")]
    NoRoots { origin: String },
    #[error("destination has no directory")]
    NoDirectory,
    #[error("destination has no file name")]
    NoFileName,
    #[error("cannot move the download into place: {0}")]
    Move(std::io::Error),
    #[error(transparent)]
    Durable(#[from] DurableError),
    #[error("download failed: {0}")]
    Request(Box<ureq::Error>),
    #[error("download failed: HTTP {0}")]
    Status(u16),
    #[error("the file is {len} bytes, more than {limit}")]
    TooLarge { len: u64, limit: Limit },
    #[error("the download exceeded {limit}")]
    Exceeded { limit: Limit },
    #[error("download failed: {0}")]
    Read(std::io::Error),
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sha256 mismatch: expected {expected}, got {got}")]
    Mismatch { expected: String, got: String },
    #[error("cannot sync {}: {source}", path.display())]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The most bytes one download may bring, and the configuration key that
/// sets it (named in errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max_bytes: u64,
    pub key: &'static str,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.key, self.max_bytes)
    }
}

/// Settings for downloads.
#[derive(Clone)]
pub struct Downloader {
    agent: ureq::Agent,
    max_bytes: u64,
    /// Where no CA certificate was found, so that no download can be
    /// verified.
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
        let no_roots = certs.is_empty().then_some(origin);
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
    pub fn deploy(
        &self,
        url: &str,
        sha256: &str,
        dest: &Path,
        id: &str,
    ) -> Result<String, DownloadError> {
        self.roots()?;
        let dir = dest.parent().ok_or(DownloadError::NoDirectory)?;
        let name = dest
            .file_name()
            .ok_or(DownloadError::NoFileName)?
            .to_string_lossy();
        let tmp = dir.join(format!(".{name}.picket-{id}.part"));
        let limit = Limit {
            max_bytes: self.max_bytes,
            key: "commands.file_max_bytes",
        };
        let bytes = self.fetch(url, sha256, &tmp, limit)?;
        if let Err(e) = fs::rename(&tmp, dest) {
            let _ = fs::remove_file(&tmp);
            return Err(DownloadError::Move(e));
        }
        sync_dir(dir)?;
        Ok(format!("deployed {bytes} bytes to {}", dest.display()))
    }

    /// Refuse before anything is written when no download can be verified.
    fn roots(&self) -> Result<(), DownloadError> {
        match &self.no_roots {
            Some(origin) => Err(DownloadError::NoRoots {
                origin: origin.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Download `url` into `tmp` (created, must not exist) with at most
    /// `limit` bytes, checking the sha256; on any failure `tmp` is removed.
    /// Returns the size. Blocking. (`agent.update` downloads with its own
    /// limit.)
    pub fn fetch(
        &self,
        url: &str,
        sha256: &str,
        tmp: &Path,
        limit: Limit,
    ) -> Result<u64, DownloadError> {
        self.roots()?;
        let fetched = self.get(url, limit).and_then(|mut response| {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(tmp)
                .map_err(|source| DownloadError::Create {
                    path: tmp.to_path_buf(),
                    source,
                })?;
            let body = response.body_mut().as_reader();
            save(body, file, tmp, sha256, limit)
        });
        fetched.inspect_err(|_| {
            let _ = fs::remove_file(tmp);
        })
    }

    /// The answer to `GET url`, unless it is no success or announces more
    /// than `limit`.
    fn get(
        &self,
        url: &str,
        limit: Limit,
    ) -> Result<ureq::http::Response<ureq::Body>, DownloadError> {
        let response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| DownloadError::Request(Box::new(e)))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(DownloadError::Status(status));
        }
        if let Some(len) = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > limit.max_bytes
        {
            return Err(DownloadError::TooLarge { len, limit });
        }
        Ok(response)
    }
}

/// Stream `body` into `file` (at `tmp`, named in errors), at most `limit`
/// bytes, and check its sha256; the file is synced. Returns the size.
fn save(
    mut body: impl Read,
    mut file: File,
    tmp: &Path,
    sha256: &str,
    limit: Limit,
) -> Result<u64, DownloadError> {
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body.read(&mut buf).map_err(DownloadError::Read)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        // Enforced while streaming: a server that lies about or omits
        // its length cannot fill the card.
        if total > limit.max_bytes {
            return Err(DownloadError::Exceeded { limit });
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|source| DownloadError::Write {
                path: tmp.to_path_buf(),
                source,
            })?;
    }
    let got: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !got.eq_ignore_ascii_case(sha256) {
        return Err(DownloadError::Mismatch {
            expected: sha256.to_string(),
            got,
        });
    }
    file.sync_all().map_err(|source| DownloadError::Sync {
        path: tmp.to_path_buf(),
        source,
    })?;
    Ok(total)
}
