//! `SeqTracker::decode` on the engine's journal values: never panics, and
//! what decodes round-trips and survives every kind of arrival.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| picket_fuzz::collector::seq_tracker(data));
