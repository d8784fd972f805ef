//! Remote commands end to end: a real broker, a `picket-collector` and a
//! `picket-agent` process, commands sent through the REST API (or, for the
//! refusals, hand-made envelopes published straight to the broker), and
//! executors that are scripts the test reads back.

mod deploy;
mod file_server;
mod lifecycle;
mod refuse;
mod remedy;
mod run;
pub mod stack;
