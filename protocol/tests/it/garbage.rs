//! No input makes `decode` panic: random bytes, random "JSON", and valid
//! encodings with bytes flipped, inserted or cut off.

use picket_protocol::*;
use proptest::collection::vec;
use proptest::prelude::*;
use serde::Serialize;

use crate::strategies::*;

/// Decode `payload` as every message type; only the absence of a panic
/// matters, so results are discarded.
fn decode_all(payload: &[u8]) {
    let max = DEFAULT_MAX_PAYLOAD;
    let _ = decode::<State>(payload, max);
    let _ = decode::<Telemetry>(payload, max);
    let _ = decode::<EventBatch>(payload, max);
    let _ = decode::<Command>(payload, max);
    let _ = decode::<Reply>(payload, max);
    let _ = decode::<AlertSet>(payload, max);
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 1..=255u8).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        at.prop_map(|at| Mutation::Remove { at }),
        at.prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match *m {
        Mutation::Flip { at, mask } => bytes[at % n] ^= mask,
        Mutation::Set { at, byte } => bytes[at % n] = byte,
        Mutation::Insert { at, byte } => bytes.insert(at % (n + 1), byte),
        Mutation::Remove { at } => {
            bytes.remove(at % n);
        }
        Mutation::Truncate { at } => bytes.truncate(at % n),
    }
}

fn mutated<T: Serialize>(msg: &T, muts: &[Mutation]) {
    for format in [Format::Cbor, Format::Json] {
        let mut bytes = encode(msg, format).expect("encode");
        for m in muts {
            mutate(&mut bytes, m);
            decode_all(&bytes);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes(bytes in vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn random_bytes_after_brace(bytes in vec(any::<u8>(), 0..512)) {
        let mut payload = vec![b'{'];
        payload.extend(bytes);
        decode_all(&payload);
    }

    /// Text that looks like JSON gets deeper into serde_json than raw bytes.
    #[test]
    fn json_like_text(s in r#"\{("[a-z]{1,4}":[\[\]{}0-9.,"e:-]{0,8},?){0,12}"#) {
        decode_all(s.as_bytes());
    }

    /// Arbitrary CBOR headers, built from major types with short arguments.
    #[test]
    fn cbor_like_bytes(items in vec((0u8..8, 0u8..32, any::<u8>()), 0..64)) {
        let mut payload = vec![0xa2];
        for (major, minor, extra) in items {
            payload.push(major << 5 | minor);
            payload.push(extra);
        }
        decode_all(&payload);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn mutated_state(msg in state(), muts in vec(mutation(), 1..6)) {
        mutated(&msg, &muts);
    }

    #[test]
    fn mutated_telemetry(msg in telemetry(), muts in vec(mutation(), 1..6)) {
        mutated(&msg, &muts);
    }

    #[test]
    fn mutated_event_batch(msg in event_batch(), muts in vec(mutation(), 1..6)) {
        mutated(&msg, &muts);
    }

    #[test]
    fn mutated_command(msg in command(), muts in vec(mutation(), 1..6)) {
        mutated(&msg, &muts);
    }

    #[test]
    fn mutated_reply(msg in reply(), muts in vec(mutation(), 1..6)) {
        mutated(&msg, &muts);
    }

    #[test]
    fn mutated_alert_set(msg in alert_set(), muts in vec(mutation(), 1..6)) {
        mutated(&msg, &muts);
    }
}
