//! The agent's command journal opened on a file of fuzzer bytes: never
//! fails on content, compacts to a fixed point, and keeps what it records
//! across restarts and torn appends.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| picket_fuzz::agent_files::journal(data));
