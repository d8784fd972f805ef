//! Helpers shared by the per-message unit tests.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::telemetry::*;
use crate::{Container, DEFAULT_MAX_PAYLOAD, DecodeError, Engine, Format, decode, encode};

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

/// A sample with every metric group present, as a Pi 4 reports it.
pub fn full_sample() -> Sample {
    Sample {
        seq: 41_207,
        ts: 1_717_171_717_000,
        mono: 86_400_123,
        boot: "4c1b0f2e-8d3a-4d47-9a53-2b8f1f0c6e11".into(),
        sync: true,
        hist: false,
        cpu: Some(12.5),
        load: Some(Load {
            m1: 0.42,
            m5: 0.31,
            m15: 0.27,
        }),
        mem: Some(Memory {
            total: 3_981_000_704,
            used: 612_343_808,
            avail: 3_201_000_448,
            pct: 15.38,
        }),
        swap: Some(Memory {
            total: 104_853_504,
            used: 0,
            avail: 104_853_504,
            pct: 0.0,
        }),
        uptime: Some(86_400),
        disks: vec![Disk {
            mount: "/".into(),
            fs: "ext4".into(),
            total: 31_166_976_000,
            used: 4_410_000_000,
            free: 25_400_000_000,
            pct: 14.79,
        }],
        net: vec![NetIf {
            name: "eth0".into(),
            rx_bytes: 9_123_456_789,
            tx_bytes: 123_456_789,
            rx_packets: 7_000_001,
            tx_packets: 900_002,
            rx_errors: 0,
            tx_errors: 0,
            rx_dropped: 17,
            tx_dropped: 0,
        }],
        thermal: vec![Thermal {
            zone: "thermal_zone0".into(),
            kind: "cpu-thermal".into(),
            c: 48.686,
        }],
        throttle: Some(Throttle::from_firmware(0x50005)),
        services: vec![Service {
            unit: "nginx.service".into(),
            active: ActiveState::Active,
            sub: "running".into(),
        }],
        gpio: vec![GpioLevel {
            name: "door".into(),
            level: true,
        }],
        docker: Some(Engine::Available),
        containers: vec![Container {
            name: "web".into(),
            id: "0123456789ab".into(),
            image: "nginx:1.27".into(),
            state: crate::ContainerState::Exited,
            health: None,
            restarts: 4,
            started: Some(1_717_171_000_000),
            exit_code: Some(1),
            unexpected: Some(true),
            cpu: None,
            mem: None,
            mem_limit: None,
        }],
        agent: Some(AgentHealth {
            version: "0.1.0".into(),
            config: "cbf29ce484222325".into(),
            queue_records: 3,
            queue_bytes: 2_048,
            oldest_unsent_ms: Some(12_000),
            dropped: 0,
            quarantined: 0,
        }),
    }
}
