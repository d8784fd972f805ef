//! ed25519 signatures of commands.
//!
//! The signature covers a canonical encoding of every field but `sig`: a
//! CBOR array `["picket-cmd", v, id, device, {name, args}, issued, expires]`
//! built from the *typed* command. The collector and the agent build it the
//! same way whatever the envelope's wire encoding (CBOR or JSON) and whatever
//! unknown fields it carried, so a signature made over CBOR verifies on a
//! JSON envelope and no field the agent acts on is outside the signature.
//! Verification uses `verify_strict`, which refuses the malleable and
//! small-order forms plain `verify` lets through.
//!
//! Agent artifacts (`agent.update`) are signed with the same key over
//! their SHA-256: see [`sign_artifact`].
//!
//! Keys are files of 64 hex digits: the 32-byte seed (`command.key`) and the
//! 32-byte public key (`command.pub`).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Serialize;

use crate::command::{Action, Command};
use crate::topic::DeviceId;

pub use ed25519_dalek::{SigningKey as PrivateKey, VerifyingKey as PublicKey};

/// Why a command's signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the command is not signed")]
    Missing,
    #[error("the signature is {0} bytes long, not 64")]
    Length(usize),
    #[error("the signature does not match the command and the device's key")]
    Mismatch,
}

/// Why a key file's text is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("expected 64 hexadecimal digits (32 bytes)")]
    Format,
    #[error("not a valid ed25519 public key")]
    Invalid,
}

/// Domain separation: these bytes can never be mistaken for anything else
/// a picket key might sign.
const DOMAIN: &str = "picket-cmd";

#[derive(Serialize)]
struct Canonical<'a>(
    &'static str,
    u16,
    &'a str,
    &'a DeviceId,
    &'a Action,
    u64,
    u64,
);

/// The bytes the signature covers.
pub fn canonical(cmd: &Command) -> Vec<u8> {
    let c = Canonical(
        DOMAIN,
        cmd.v,
        &cmd.id,
        &cmd.device,
        &cmd.action,
        cmd.issued,
        cmd.expires,
    );
    let mut out = Vec::with_capacity(128);
    // Writing typed structs to a Vec cannot fail: no maps with non-string
    // keys, no I/O error from a Vec.
    ciborium::ser::into_writer(&c, &mut out).unwrap_or_default();
    out
}

/// Sign `cmd` in place (replacing any signature).
pub fn sign(cmd: &mut Command, key: &SigningKey) {
    let sig = key.sign(&canonical(cmd));
    cmd.sig = Some(sig.to_bytes().to_vec());
}

/// Check `cmd`'s signature with `verify_strict`.
pub fn verify(cmd: &Command, key: &VerifyingKey) -> Result<(), SignatureError> {
    let bytes = cmd.sig.as_deref().ok_or(SignatureError::Missing)?;
    let arr: [u8; 64] = bytes
        .try_into()
        .map_err(|_| SignatureError::Length(bytes.len()))?;
    let sig = Signature::from_bytes(&arr);
    key.verify_strict(&canonical(cmd), &sig)
        .map_err(|_| SignatureError::Mismatch)
}

// --- agent artifacts (agent.update) -------------------------------------

/// Domain separation for artifacts: a command's canonical encoding starts
/// with a CBOR array header (0x87), this with `p`, so neither signature
/// can stand for the other.
const ARTIFACT_DOMAIN: &[u8] = b"picket-artifact-v1\0";

/// The bytes an artifact's signature covers: the domain, then the
/// artifact's SHA-256. Signing the digest signs the content: the agent
/// checks the downloaded bytes against the digest first.
pub fn artifact_message(sha256: &[u8; 32]) -> Vec<u8> {
    [ARTIFACT_DOMAIN, sha256.as_slice()].concat()
}

/// Sign an artifact by its SHA-256 (`picket-collector sign-artifact`).
pub fn sign_artifact(sha256: &[u8; 32], key: &SigningKey) -> [u8; 64] {
    key.sign(&artifact_message(sha256)).to_bytes()
}

/// Check an artifact's signature with `verify_strict`.
pub fn verify_artifact(
    sha256: &[u8; 32],
    signature: &[u8],
    key: &VerifyingKey,
) -> Result<(), SignatureError> {
    let arr: [u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureError::Length(signature.len()))?;
    key.verify_strict(&artifact_message(sha256), &Signature::from_bytes(&arr))
        .map_err(|_| SignatureError::Mismatch)
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    hex(bytes)
}

/// Bytes from hex text (either case); `None` if it is not an even number
/// of hex digits.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

// --- end agent artifacts -------------------------------------------------

/// A private key from 32 random bytes.
pub fn private_key(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

/// The text of a `command.key` file.
pub fn private_key_text(key: &SigningKey) -> String {
    format!("{}\n", hex(key.as_bytes()))
}

/// The text of a `command.pub` file.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("{}\n", hex(key.as_bytes()))
}

pub fn parse_private_key(text: &str) -> Result<SigningKey, KeyError> {
    Ok(SigningKey::from_bytes(&unhex32(text)?))
}

pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_bytes(&unhex32(text)?).map_err(|_| KeyError::Invalid)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(text: &str) -> Result<[u8; 32], KeyError> {
    let t = text.trim();
    if t.len() != 64 || !t.is_ascii() {
        return Err(KeyError::Format);
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| KeyError::Format)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{LogsArgs, NoArgs, UnitArgs};
    use crate::{DEFAULT_MAX_PAYLOAD, Format, VERSION, decode, encode};

    fn key(n: u8) -> SigningKey {
        private_key([n; 32])
    }

    fn cmd() -> Command {
        Command {
            v: VERSION,
            id: "c1".into(),
            device: DeviceId::new("pi-1").unwrap(),
            action: Action::ServiceRestart(UnitArgs {
                unit: "kiosk.service".into(),
            }),
            issued: 1_000,
            expires: 61_000,
            sig: None,
        }
    }

    fn signed() -> Command {
        let mut c = cmd();
        sign(&mut c, &key(1));
        c
    }

    #[test]
    fn a_signed_command_verifies_in_both_encodings() {
        let c = signed();
        assert_eq!(verify(&c, &key(1).verifying_key()), Ok(()));
        for format in [Format::Cbor, Format::Json] {
            let back: Command = decode(&encode(&c, format).unwrap(), DEFAULT_MAX_PAYLOAD).unwrap();
            assert_eq!(verify(&back, &key(1).verifying_key()), Ok(()), "{format:?}");
        }
    }

    #[test]
    fn every_field_is_covered() {
        let pk = key(1).verifying_key();
        type Edit = Box<dyn Fn(&mut Command)>;
        let edits: Vec<(&str, Edit)> = vec![
            ("v", Box::new(|c| c.v += 1)),
            ("id", Box::new(|c| c.id.push('x'))),
            (
                "device",
                Box::new(|c| c.device = DeviceId::new("pi-2").unwrap()),
            ),
            (
                "name",
                Box::new(|c| {
                    c.action = Action::ServiceLogs(LogsArgs {
                        unit: "kiosk.service".into(),
                        lines: 1,
                    })
                }),
            ),
            (
                "args",
                Box::new(|c| {
                    c.action = Action::ServiceRestart(UnitArgs {
                        unit: "ssh.service".into(),
                    })
                }),
            ),
            ("issued", Box::new(|c| c.issued += 1)),
            ("expires", Box::new(|c| c.expires += 1)),
        ];
        for (field, edit) in edits {
            let mut c = signed();
            edit(&mut c);
            assert_eq!(verify(&c, &pk), Err(SignatureError::Mismatch), "{field}");
        }
    }

    #[test]
    fn refusals() {
        let pk = key(1).verifying_key();
        let table: Vec<(Command, SignatureError)> = vec![
            (cmd(), SignatureError::Missing),
            (
                Command {
                    sig: Some(vec![0; 63]),
                    ..signed()
                },
                SignatureError::Length(63),
            ),
            (
                Command {
                    sig: Some(vec![0; 64]),
                    ..signed()
                },
                SignatureError::Mismatch,
            ),
            (
                {
                    let mut c = cmd();
                    sign(&mut c, &key(2));
                    c
                },
                SignatureError::Mismatch,
            ),
        ];
        for (c, want) in table {
            assert_eq!(verify(&c, &pk), Err(want));
        }
    }

    #[test]
    fn canonical_encoding_is_stable() {
        let mut c = Command {
            action: Action::Ping(NoArgs {}),
            ..cmd()
        };
        // Pinned: a change here breaks every deployed agent's signatures.
        let want = "87 6a 7069636b65742d636d64 01 62 6331 64 70692d31 \
                    a2 646e616d65 6470696e67 6461726773 a0 \
                    1903e8 19ee48";
        let hex: String = canonical(&c).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want.replace(' ', ""));
        c.sig = Some(vec![1; 64]);
        assert_eq!(
            canonical(&c).len(),
            want.replace(' ', "").len() / 2,
            "sig excluded"
        );
    }

    #[test]
    fn artifact_signatures() {
        let digest = [7u8; 32];
        let sig = sign_artifact(&digest, &key(1));
        let pk = key(1).verifying_key();
        assert_eq!(verify_artifact(&digest, &sig, &pk), Ok(()));
        let mut other = digest;
        other[31] ^= 1;
        assert_eq!(
            verify_artifact(&other, &sig, &pk),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_artifact(&digest, &sig, &key(2).verifying_key()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_artifact(&digest, &sig[..63], &pk),
            Err(SignatureError::Length(63))
        );
        // A command signature is never an artifact signature.
        let mut c = cmd();
        sign(&mut c, &key(1));
        let cmd_sig = c.sig.unwrap();
        assert_eq!(
            verify_artifact(&digest, &cmd_sig, &pk),
            Err(SignatureError::Mismatch)
        );
        // Pinned: a change here breaks every signed artifact.
        assert_eq!(
            to_hex(&artifact_message(&[0xab; 32])),
            format!("{}00{}", to_hex(b"picket-artifact-v1"), "ab".repeat(32))
        );
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(from_hex("00ff7A"), Some(vec![0, 255, 0x7a]));
        assert_eq!(to_hex(&[0, 255, 0x7a]), "00ff7a");
        for bad in ["0", "zz", "0g", "é1"] {
            assert_eq!(from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn key_files_round_trip() {
        let k = key(7);
        let back = parse_private_key(&private_key_text(&k)).unwrap();
        assert_eq!(back.as_bytes(), k.as_bytes());
        let pk = parse_public_key(&public_key_text(&k.verifying_key())).unwrap();
        assert_eq!(pk, k.verifying_key());
        for bad in ["", "abc", &"g".repeat(64), &"ab".repeat(33)] {
            assert_eq!(parse_public_key(bad), Err(KeyError::Format), "{bad:?}");
        }
    }
}
