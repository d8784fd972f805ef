//! The agent's integration tests: the whole pipeline against a real broker
//! (rumqttd embedded by default; Mosquitto with PICKET_TEST_BROKER=mosquitto),
//! and the binary as a process (exit codes, signals, SIGKILL).

mod auth;
mod broker;
mod doctor;
mod fixture;
mod led;
mod pipeline;
mod process;
mod recovery;
mod tls;
mod util;
