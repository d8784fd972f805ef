//! Property and robustness tests of the wire format.

mod garbage;
mod limits;
mod roundtrip;
mod strategies;
