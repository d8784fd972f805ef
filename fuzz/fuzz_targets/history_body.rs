//! A sample row's `body` (the points of one sample) from fuzzer bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| picket_fuzz::collector::history_body(data));
