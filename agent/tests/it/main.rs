//! The agent's integration tests: the whole pipeline against a real broker
//! (rumqttd embedded by default; Mosquitto with PICKET_TEST_BROKER=mosquitto),
//! and the binary as a process (exit codes, signals, SIGKILL); Docker
//! against a real engine (ignored unless one is given, see `dockerd.rs`).

mod auth;
mod broker;
mod docker;
mod dockerd;
mod doctor;
mod fixture;
mod led;
mod pipeline;
mod process;
mod recovery;
mod settle;
mod stop;
mod tls;
mod update_state;
mod util;
