//! `picket-collector sign-artifact FILE`: the SHA-256 of an agent binary
//! and the collector key's signature over it, the two values
//! `agent.update` carries (`update` computes them itself).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use picket_protocol::signing::{self, PrivateKey};
use sha2::{Digest, Sha256};

/// An artifact's digest and signature, as hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub bytes: u64,
    pub sha256: String,
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is empty")]
    Empty(String),
}

/// Hash `path` (streamed) and sign the digest. Blocking.
pub fn sign(path: &Path, key: &PrivateKey) -> Result<Signed, ArtifactError> {
    let err = |source| ArtifactError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut f = File::open(path).map_err(err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    if bytes == 0 {
        return Err(ArtifactError::Empty(path.display().to_string()));
    }
    let digest: [u8; 32] = hasher.finalize().into();
    Ok(Signed {
        bytes,
        sha256: signing::to_hex(&digest),
        signature: signing::to_hex(&signing::sign_artifact(&digest, key)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_verifies_against_the_file_digest() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("agent");
        std::fs::write(&f, b"\x7fELF and the rest").unwrap();
        let key = signing::private_key([9; 32]);
        let s = sign(&f, &key).unwrap();
        assert_eq!(s.bytes, 17);
        assert_eq!(
            s.sha256,
            signing::to_hex(&Sha256::digest(b"\x7fELF and the rest"))
        );
        let digest: [u8; 32] = signing::from_hex(&s.sha256).unwrap().try_into().unwrap();
        let sig = signing::from_hex(&s.signature).unwrap();
        assert_eq!(
            signing::verify_artifact(&digest, &sig, &key.verifying_key()),
            Ok(())
        );
        std::fs::write(&f, b"").unwrap();
        assert!(matches!(sign(&f, &key), Err(ArtifactError::Empty(_))));
        assert!(matches!(
            sign(&d.path().join("missing"), &key),
            Err(ArtifactError::Read { .. })
        ));
    }
}
