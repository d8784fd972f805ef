//! The collector's integration tests, against real servers (MQTT brokers,
//! HTTP, SMTP) started by the tests on loopback.

mod harness;
mod http_sink;
mod notify;
mod sim_broker;
mod simulate;
mod smtp_sink;
