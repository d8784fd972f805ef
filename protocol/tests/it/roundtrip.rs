//! Every message survives encode → decode unchanged in both formats.

use std::fmt::Debug;

use picket_protocol::*;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::strategies::{self as strat, f32_finite, f64_finite};

fn check<T>(msg: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    for format in [Format::Cbor, Format::Json] {
        let bytes = encode(msg, format).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(Format::detect(&bytes), format);
        let back: T = decode(&bytes, DEFAULT_MAX_PAYLOAD)
            .map_err(|e| TestCaseError::fail(format!("{format:?}: {e}")))?;
        prop_assert_eq!(&back, msg, "{:?}", format);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn state(msg in strat::state()) { check(&msg)?; }

    #[test]
    fn telemetry(msg in strat::telemetry()) { check(&msg)?; }

    #[test]
    fn event_batch(msg in strat::event_batch()) { check(&msg)?; }

    #[test]
    fn command(msg in strat::command()) { check(&msg)?; }

    #[test]
    fn reply(msg in strat::reply()) { check(&msg)?; }

    #[test]
    fn alert_set(msg in strat::alert_set()) { check(&msg)?; }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Samples carry f32 readings; JSON parses them through f64, which must
    /// still land on the same f32.
    #[test]
    fn f32_through_json_is_exact(x in f32_finite()) {
        let back: f32 = serde_json::from_slice(&serde_json::to_vec(&x).unwrap()).unwrap();
        prop_assert_eq!(back.to_bits(), x.to_bits());
    }

    /// An alert's `value` is f64: JSON must give back the same bits.
    #[test]
    fn f64_through_json_is_exact(x in f64_finite()) {
        let back: f64 = serde_json::from_slice(&serde_json::to_vec(&x).unwrap()).unwrap();
        prop_assert_eq!(back.to_bits(), x.to_bits());
    }
}
