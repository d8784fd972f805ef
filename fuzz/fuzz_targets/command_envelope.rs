//! The agent's path for a command envelope from the broker: decode, the
//! signature check and every admission check (`commands::admit`); then the
//! signature's own promise: whatever decodes, once signed, verifies after
//! a trip through either wire encoding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_fuzz::command::envelope;

fuzz_target!(|data: &[u8]| envelope(data));
