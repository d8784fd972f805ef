//! Helpers shared by the per-message unit tests.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{DEFAULT_MAX_PAYLOAD, DecodeError, Format, decode, encode};

/// Encode and decode `msg` in both formats and check nothing was lost.
pub fn round_trip<T>(msg: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    for format in [Format::Cbor, Format::Json] {
        let bytes = encode(msg, format).expect("encode");
        assert_eq!(
            Format::detect(&bytes),
            format,
            "{format:?} detected wrongly"
        );
        let back: T = decode(&bytes, DEFAULT_MAX_PAYLOAD).expect("decode");
        assert_eq!(&back, msg, "{format:?} round trip");
    }
}

/// The message as a JSON value, to inspect or edit field by field.
pub fn to_value<T: Serialize>(msg: &T) -> Value {
    serde_json::from_slice(&encode(msg, Format::Json).expect("encode")).expect("valid JSON")
}

/// The sorted field names of a JSON object.
pub fn keys(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// Decode an edited message from both encodings of `value`; both must agree.
pub fn decode_value<T>(value: &Value) -> Result<T, DecodeError>
where
    T: DeserializeOwned + PartialEq + Debug,
{
    let json = decode::<T>(
        &serde_json::to_vec(value).expect("JSON"),
        DEFAULT_MAX_PAYLOAD,
    );
    let mut cbor_bytes = Vec::new();
    ciborium::ser::into_writer(value, &mut cbor_bytes).expect("CBOR");
    let cbor = decode::<T>(&cbor_bytes, DEFAULT_MAX_PAYLOAD);
    match (&json, &cbor) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "JSON and CBOR decode differently"),
        (Err(_), Err(_)) => {}
        _ => panic!("JSON gave {json:?} but CBOR gave {cbor:?}"),
    }
    json
}

/// Add an unknown field to an object, as a newer peer might.
pub fn add_unknown(v: &mut Value) {
    v.as_object_mut().expect("an object").insert(
        "zz_future".into(),
        serde_json::json!({"nested": [1, 2.5, "x", null, {"deep": true}]}),
    );
}

/// Remove a field that must be present and check decoding fails cleanly.
pub fn assert_required<T>(msg: &T, field: &str)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let mut v = to_value(msg);
    assert!(
        v.as_object_mut()
            .expect("an object")
            .remove(field)
            .is_some(),
        "{field} not in the encoding"
    );
    let err = decode_value::<T>(&v).expect_err(field);
    assert!(
        matches!(
            err,
            DecodeError::Json(_) | DecodeError::Cbor(_) | DecodeError::MissingVersion
        ),
        "{field}: {err:?}"
    );
}
