//! The agent's queue opened on a directory built from fuzzer bytes (torn,
//! corrupt, misnamed and recycled segments, a hot spool, a meta file; the
//! layout is in `src/queue.rs`): it never fails on content, truncates and
//! quarantines, then keeps every record through appends, acks and a
//! reopen that finds nothing to repair.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| picket_fuzz::queue::run(data));
