//! The body of a `state_journal` row (`varint(device) varint(len) value`
//! per entry), and the sequence accounting each value holds.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| picket_fuzz::collector::history_journal(data));
