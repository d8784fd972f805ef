//! CBOR and JSON encodings of every message, with the same field names.
//!
//! A decoder accepts both: a payload whose first byte is `{` is JSON (a CBOR
//! map never starts with 0x7B, which is a CBOR text string), anything else is
//! CBOR. Decoding never panics: every failure is a [`DecodeError`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{VERSION, cbor};

/// Which encoding to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Cbor,
    Json,
}

impl Format {
    /// The format a payload is written in, from its first byte.
    pub fn detect(payload: &[u8]) -> Format {
        match payload.first() {
            Some(b'{') => Format::Json,
            _ => Format::Cbor,
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cbor" => Ok(Format::Cbor),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "unknown payload format {other:?}: expected cbor or json"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("CBOR encoding failed: {0}")]
    Cbor(String),
    #[error("JSON encoding failed: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("payload is empty")]
    Empty,
    #[error("invalid CBOR: {0}")]
    Cbor(String),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("message version v={0} is newer than this build understands (v={VERSION})")]
    UnsupportedVersion(u64),
    #[error("message has no version field `v`")]
    MissingVersion,
}

pub fn encode<T: Serialize>(msg: &T, format: Format) -> Result<Vec<u8>, EncodeError> {
    match format {
        Format::Cbor => {
            let mut out = Vec::with_capacity(256);
            ciborium::ser::into_writer(msg, &mut out)
                .map_err(|e| EncodeError::Cbor(e.to_string()))?;
            Ok(out)
        }
        Format::Json => Ok(serde_json::to_vec(msg)?),
    }
}

/// Decode a message in either format, refusing payloads over `max` bytes and
/// messages from a newer protocol version.
pub fn decode<T: DeserializeOwned>(payload: &[u8], max: usize) -> Result<T, DecodeError> {
    if payload.len() > max {
        return Err(DecodeError::TooLarge {
            len: payload.len(),
            max,
        });
    }
    if payload.is_empty() {
        return Err(DecodeError::Empty);
    }
    match Format::detect(payload) {
        Format::Json => {
            // The version is checked first so a newer peer gets a clear
            // error rather than a confusing one about a field it renamed.
            let v: Versioned = serde_json::from_slice(payload)?;
            check_version(v.v)?;
            Ok(serde_json::from_slice(payload)?)
        }
        Format::Cbor => {
            // The version first, as for JSON: from the message's first
            // bytes when it starts with `v` (cheap), else from a scan of the
            // whole item that also proves it well formed.
            let v = match cbor::leading_v(payload) {
                Some(v) => Some(v),
                None => cbor::scan(payload).map_err(|e| DecodeError::Cbor(e.into()))?,
            };
            check_version(v)?;
            cbor::from_slice(payload).map_err(|e| DecodeError::Cbor(e.into()))
        }
    }
}

fn check_version(v: Option<u64>) -> Result<(), DecodeError> {
    match v {
        None => Err(DecodeError::MissingVersion),
        Some(v) if v > u64::from(VERSION) => Err(DecodeError::UnsupportedVersion(v)),
        Some(_) => Ok(()),
    }
}

#[derive(serde::Deserialize)]
struct Versioned {
    #[serde(default)]
    v: Option<u64>,
}
