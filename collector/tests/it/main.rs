//! The collector's integration tests, against real servers (MQTT brokers,
//! HTTP, SMTP) started by the tests on loopback. `PICKET_TEST_BROKER=
//! mosquitto` runs the broker-facing tests against Mosquitto instead of
//! the embedded broker; `PICKET_TEST_PROMTOOL=1` checks `/metrics` with
//! promtool. The Docker test needs an engine (`PICKET_TEST_DOCKER_SOCKET`,
//! see `.ci/run`) and is ignored without one.

mod alerts;
mod api;
mod commands;
mod dedupe;
mod docker;
// The Docker engine harness is the agent suite's, shared rather than
// copied; this suite needs only the shared engine, not a daemon of its own.
#[allow(dead_code)]
#[path = "../../../agent/tests/it/dockerd.rs"]
mod dockerd;
mod harness;
mod hostile;
mod http_sink;
mod notify;
mod presence;
mod refused;
mod sim_broker;
mod simulate;
mod smtp_sink;
mod update;
