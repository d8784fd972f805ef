//! The update state (`state.json`) decoded from fuzzer bytes, and every
//! decision the launcher and the trial take on it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| picket_fuzz::agent_files::update_state(data));
