//! The protocol's decoders, as the agent and the collector call them.

use std::fmt::Debug;

use picket_protocol::{
    AlertSet, Command, DEFAULT_MAX_PAYLOAD, EventBatch, Format, Reply, State, Telemetry, decode,
    encode,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decode `data` as every kind of message; for each that decodes, check
/// the round trips.
pub fn decode_all(data: &[u8]) {
    kind::<Telemetry>(data);
    kind::<EventBatch>(data);
    kind::<State>(data);
    kind::<Reply>(data);
    kind::<AlertSet>(data);
    if let Some(cmd) = kind::<Command>(data) {
        // The agent's checks run on whatever decoded.
        let _ = cmd.action.check();
        let _ = cmd.action.name();
    }
}

fn kind<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + Debug,
{
    let msg: T = decode(data, DEFAULT_MAX_PAYLOAD).ok()?;
    round_trip(&msg);
    Some(msg)
}

/// A decoded message encodes, and its CBOR encoding decodes to a message
/// with the same encoding. Compared as bytes, not values: a NaN is never
/// equal to itself, and it is a valid value of a float field.
pub fn round_trip<T>(msg: &T)
where
    T: Serialize + DeserializeOwned + Debug,
{
    let cbor = encode(msg, Format::Cbor).expect("a decoded message encodes as CBOR");
    let back: T = match decode(&cbor, usize::MAX) {
        Ok(back) => back,
        Err(e) => panic!("own CBOR does not decode: {e}\n{msg:?}\n{cbor:02x?}"),
    };
    let again = encode(&back, Format::Cbor).expect("encodes again");
    assert_eq!(cbor, again, "CBOR round trip changed {msg:?} into {back:?}");
    // JSON has no NaN or infinities (serde_json writes null, which the
    // decoder then refuses): only the encoder must hold.
    let _ = encode(msg, Format::Json);
}
