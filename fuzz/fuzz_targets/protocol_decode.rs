//! Every message kind an agent or a collector decodes from the broker, from
//! the same bytes: decoding never panics, and what decodes survives a CBOR
//! round trip bit for bit (the collector re-encodes what it stores and
//! forwards).

#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_fuzz::protocol::decode_all;

fuzz_target!(|data: &[u8]| decode_all(data));
