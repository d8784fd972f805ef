//! Limits a hostile or newer peer runs into: payload size, version, nesting
//! depth, trailing bytes and length headers that promise more than is there.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use picket_protocol::*;
use proptest::prelude::*;
use serde_json::json;

use crate::strategies::*;

/// Counts what the current thread allocates, so a test can check that
/// decoding a small payload stays small whatever its headers claim.
struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with` because the allocator also runs while thread-locals
        // are being torn down.
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size()));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Bytes allocated by this thread while running `f`.
fn allocated_by(f: impl FnOnce()) -> usize {
    let before = ALLOCATED.with(Cell::get);
    f();
    ALLOCATED.with(Cell::get) - before
}

fn cbor(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).unwrap();
    out
}

/// CBOR `{"v": 1, <key>: ` followed by `tail`: a field whose value is
/// whatever the test wants to throw at the decoder.
fn cbor_with_field(key: &str, tail: &[u8]) -> Vec<u8> {
    assert!(key.len() < 24);
    let mut p = vec![0xa2, 0x61, b'v', 0x01, 0x60 | key.len() as u8];
    p.extend_from_slice(key.as_bytes());
    p.extend_from_slice(tail);
    p
}

/// An 8-byte-argument header of `major` claiming 2^60 items or bytes.
fn huge_header(major: u8) -> [u8; 9] {
    let mut h = [0u8; 9];
    h[0] = major << 5 | 27;
    h[1..].copy_from_slice(&(1u64 << 60).to_be_bytes());
    h
}

/// Every message type must refuse `payload`, allocating no more than a small
/// multiple of its size (serde_json keeps a heap stack of open brackets when
/// it skips a value, so deep JSON costs a few bytes per level).
fn refused_cheaply(payload: &[u8]) {
    let max = DEFAULT_MAX_PAYLOAD;
    let budget = 64 * 1024 + 4 * payload.len();
    type Check<'a> = Box<dyn Fn() -> bool + 'a>;
    let checks: [(&str, Check); 6] = [
        ("State", Box::new(|| decode::<State>(payload, max).is_err())),
        (
            "Telemetry",
            Box::new(|| decode::<Telemetry>(payload, max).is_err()),
        ),
        (
            "EventBatch",
            Box::new(|| decode::<EventBatch>(payload, max).is_err()),
        ),
        (
            "Command",
            Box::new(|| decode::<Command>(payload, max).is_err()),
        ),
        ("Reply", Box::new(|| decode::<Reply>(payload, max).is_err())),
        (
            "AlertSet",
            Box::new(|| decode::<AlertSet>(payload, max).is_err()),
        ),
    ];
    for (name, check) in checks {
        let mut refused = false;
        let bytes = allocated_by(|| refused = check());
        assert!(refused, "{name} accepted {payload:02x?}");
        assert!(
            bytes < budget,
            "{name}: {bytes} bytes allocated for {} bytes",
            payload.len()
        );
    }
}

#[test]
fn too_large_is_refused_before_parsing() {
    let msg = Reply {
        v: VERSION,
        id: "c1".into(),
        device: DeviceId::new("pi").unwrap(),
        state: ReplyState::Running,
        reason: None,
        output: Some("x".repeat(100)),
        chunk: None,
        ts: 1,
    };
    for format in [Format::Cbor, Format::Json] {
        let bytes = encode(&msg, format).unwrap();
        let len = bytes.len();
        assert!(decode::<Reply>(&bytes, len).is_ok());
        match decode::<Reply>(&bytes, len - 1) {
            Err(DecodeError::TooLarge { len: l, max }) => assert_eq!((l, max), (len, len - 1)),
            other => panic!("{format:?}: {other:?}"),
        }
    }
    // Garbage over the limit is refused by size, not by content.
    let junk = vec![0xffu8; DEFAULT_MAX_PAYLOAD + 1];
    assert!(matches!(
        decode::<Telemetry>(&junk, DEFAULT_MAX_PAYLOAD),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn empty_payload() {
    assert!(matches!(
        decode::<State>(&[], DEFAULT_MAX_PAYLOAD),
        Err(DecodeError::Empty)
    ));
}

#[test]
fn version_is_checked_before_the_fields() {
    // A newer peer may rename or drop fields: the error names the version.
    for v in [u64::from(VERSION) + 1, 70_000, u64::MAX] {
        let newer = json!({"v": v, "renamed_everything": true});
        for payload in [serde_json::to_vec(&newer).unwrap(), cbor(&newer)] {
            match decode::<State>(&payload, DEFAULT_MAX_PAYLOAD) {
                Err(DecodeError::UnsupportedVersion(got)) => assert_eq!(got, v),
                other => panic!("v={v}: {other:?}"),
            }
        }
    }
    let none = json!({"device": "pi", "status": "online", "session": "0"});
    for payload in [serde_json::to_vec(&none).unwrap(), cbor(&none)] {
        assert!(matches!(
            decode::<State>(&payload, DEFAULT_MAX_PAYLOAD),
            Err(DecodeError::MissingVersion)
        ));
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let msg = State {
        v: VERSION,
        device: DeviceId::new("pi").unwrap(),
        status: Presence::Online,
        session: "0123456789abcdef".into(),
        version: None,
        model: None,
        boot: None,
        ts: None,
        reason: None,
    };
    for format in [Format::Cbor, Format::Json] {
        let mut twice = encode(&msg, format).unwrap();
        twice.extend(encode(&msg, format).unwrap());
        assert!(
            decode::<State>(&twice, DEFAULT_MAX_PAYLOAD).is_err(),
            "{format:?}"
        );
    }
}

#[test]
fn huge_length_headers_do_not_allocate() {
    // Byte string, text string, array and map each claiming 2^60, as an
    // unknown field, and in the fields that are typed byte strings
    // (`sig`), flattened (`args`) or lists (`samples`, `events`).
    for key in ["x", "sig", "args", "samples", "events", "alerts"] {
        for major in [2, 3, 4, 5] {
            let mut tail = huge_header(major).to_vec();
            tail.extend_from_slice(&[0x01, 0x02, 0x03]);
            refused_cheaply(&cbor_with_field(key, &tail));
        }
    }
}

#[test]
fn nested_huge_headers_do_not_allocate() {
    // Each array in a chain of arrays claims 2^60 items: a typed decoder
    // preallocates for each level before it finds the payload is short.
    for key in ["x", "args", "events", "samples"] {
        for major in [4, 5] {
            let mut tail = Vec::new();
            for _ in 0..100 {
                tail.extend_from_slice(&huge_header(major));
                if major == 5 {
                    tail.push(0x00);
                }
            }
            refused_cheaply(&cbor_with_field(key, &tail));
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for depth in [200, 10_000, 100_000] {
        for key in ["x", "args", "events", "samples"] {
            // CBOR: arrays and single-entry maps, complete and well formed.
            let mut arrays = vec![0x81; depth];
            arrays.push(0x00);
            refused_cheaply(&cbor_with_field(key, &arrays));
            let mut maps = [0xa1, 0x00].repeat(depth);
            maps.push(0x00);
            refused_cheaply(&cbor_with_field(key, &maps));
            // CBOR tags wrap a value without a length.
            let mut tags = vec![0xc6; depth];
            tags.push(0x00);
            refused_cheaply(&cbor_with_field(key, &tags));
            // JSON.
            let json = format!(
                r#"{{"v":1,"{key}":{}0{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            refused_cheaply(json.as_bytes());
        }
    }
}

#[test]
fn messages_nested_as_deep_as_ours_decode() {
    // The nesting limit leaves room for our deepest message and a newer
    // peer's unknown field nested well beyond it.
    let mut value = json!(0);
    for _ in 0..100 {
        value = json!([value]);
    }
    let msg = json!({"v": 1, "device": "pi", "status": "online", "session": "0", "x": value});
    for payload in [serde_json::to_vec(&msg).unwrap(), cbor(&msg)] {
        decode::<State>(&payload, DEFAULT_MAX_PAYLOAD).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn newer_version_is_refused(mut msg in telemetry(), bump in 1..=100u16) {
        msg.v = VERSION + bump;
        for format in [Format::Cbor, Format::Json] {
            let bytes = encode(&msg, format).unwrap();
            match decode::<Telemetry>(&bytes, DEFAULT_MAX_PAYLOAD) {
                Err(DecodeError::UnsupportedVersion(v)) => prop_assert_eq!(v, u64::from(msg.v)),
                other => prop_assert!(false, "{:?}: {:?}", format, other),
            }
        }
    }

    #[test]
    fn over_the_limit_is_refused(msg in command(), short in 1..64usize) {
        for format in [Format::Cbor, Format::Json] {
            let bytes = encode(&msg, format).unwrap();
            let max = bytes.len().saturating_sub(short);
            let refused = matches!(
                decode::<Command>(&bytes, max),
                Err(DecodeError::TooLarge { len, max: m }) if len == bytes.len() && m == max
            );
            prop_assert!(refused);
        }
    }
}
