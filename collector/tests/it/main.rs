//! The collector's integration tests, against real servers (MQTT brokers,
//! HTTP, SMTP) started by the tests on loopback. `PICKET_TEST_BROKER=
//! mosquitto` runs the broker-facing tests against Mosquitto instead of
//! the embedded broker; `PICKET_TEST_PROMTOOL=1` checks `/metrics` with
//! promtool.

mod alerts;
mod api;
mod commands;
mod dedupe;
mod harness;
mod http_sink;
mod notify;
mod presence;
mod refused;
mod sim_broker;
mod simulate;
mod smtp_sink;
mod update;
