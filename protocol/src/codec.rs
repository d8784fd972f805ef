//! CBOR and JSON encodings of every message, with the same field names.
//!
//! A decoder accepts both: a payload whose first byte is `{` is JSON (a CBOR
//! map never starts with 0x7B, which is a CBOR text string), anything else is
//! CBOR. Decoding never panics: every failure is a [`DecodeError`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::VERSION;

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
    // The version is checked first so a newer peer gets a clear error rather
    // than a confusing one about a field it renamed. This pass is kept even
    // though it reads the payload twice: it skips every value without
    // allocating, so it also proves each CBOR length header is backed by real
    // bytes before the typed pass, which preallocates up to 1 MiB per
    // collection from those headers (200 MiB from a 2 KB payload without it).
    let v: Versioned = decode_unchecked(payload)?;
    match v.v {
        None => return Err(DecodeError::MissingVersion),
        Some(v) if v > u64::from(VERSION) => return Err(DecodeError::UnsupportedVersion(v)),
        Some(_) => {}
    }
    decode_unchecked(payload)
}

/// serde_json's nesting limit, applied to CBOR too: ciborium's own (256) is
/// deep enough to risk the stack of a small thread. Ours nest five levels.
const MAX_DEPTH: usize = 128;

fn decode_unchecked<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    match Format::detect(payload) {
        Format::Json => Ok(serde_json::from_slice(payload)?),
        Format::Cbor => {
            let mut rest = payload;
            let msg = ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_DEPTH)
                .map_err(cbor_error)?;
            // JSON refuses trailing data; CBOR must too, or two messages
            // glued together would silently decode as the first.
            if !rest.is_empty() {
                return Err(DecodeError::Cbor(format!(
                    "{} bytes after the end of the message",
                    rest.len()
                )));
            }
            Ok(msg)
        }
    }
}

/// ciborium's `Display` is its `Debug`; spell the error out for logs.
fn cbor_error(e: ciborium::de::Error<std::io::Error>) -> DecodeError {
    use ciborium::de::Error;
    DecodeError::Cbor(match e {
        Error::Io(e) => format!("truncated or unreadable: {e}"),
        Error::Syntax(at) => format!("syntax error at byte {at}"),
        Error::Semantic(Some(at), msg) => format!("{msg} (at byte {at})"),
        Error::Semantic(None, msg) => msg,
        Error::RecursionLimitExceeded => format!("nested deeper than {MAX_DEPTH} levels"),
    })
}

#[derive(serde::Deserialize)]
struct Versioned {
    #[serde(default)]
    v: Option<u64>,
}
