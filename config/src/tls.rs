//! TLS for `mqtts://`: a rustls client configuration built from the PEM
//! files named in the config.
//!
//! rumqttc is built without a crypto provider (`use-rustls-no-provider`):
//! when more than one provider is linked rustls cannot pick one and panics,
//! so the agent installs ring explicitly, once, before any TLS is used.

use std::sync::{Arc, Once};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no PEM certificate could be read from the CA file{0}")]
    NoCa(String),
    #[error("the client certificate file holds no PEM certificate{0}")]
    NoClientCert(String),
    #[error("the client key file holds no PEM private key: {0}")]
    BadKey(String),
    #[error("rustls refused the configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    /// The configuration key a user has to fix.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::NoCa(_) => "broker.ca_file",
            TlsError::NoClientCert(_) => "broker.client_cert",
            TlsError::BadKey(_) | TlsError::Rustls(_) => "broker.client_key",
        }
    }
}

/// Install ring as the process-wide rustls provider (idempotent).
pub fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first: that one is used,
        // which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client configuration trusting the PEM CA bundle `ca`, presenting the
/// PEM `(certificate chain, private key)` when given.
pub fn client_config(
    ca: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> Result<Arc<ClientConfig>, TlsError> {
    install_provider();
    let mut roots = RootCertStore::empty();
    let mut bad = 0usize;
    for cert in CertificateDer::pem_slice_iter(ca) {
        match cert {
            Ok(c) => {
                if roots.add(c).is_err() {
                    bad += 1;
                }
            }
            Err(_) => bad += 1,
        }
    }
    if roots.is_empty() {
        let detail = if bad > 0 {
            format!(" ({bad} unreadable)")
        } else {
            String::new()
        };
        return Err(TlsError::NoCa(detail));
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                .filter_map(Result::ok)
                .collect();
            if chain.is_empty() {
                return Err(TlsError::NoClientCert(String::new()));
            }
            let key =
                PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::BadKey(e.to_string()))?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}
