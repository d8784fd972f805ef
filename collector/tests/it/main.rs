//! The collector's integration tests, against real brokers on loopback.

mod sim_broker;
mod simulate;
