//! A device's stored state (the JSON state row the engine restores at
//! start-up), decoded from fuzzer bytes and put to work.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| picket_fuzz::collector::fleet_state(data));
