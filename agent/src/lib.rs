//! picket-agent: samples a Raspberry Pi, keeps every sample in a durable disk
//! queue, and publishes it over MQTT until the broker acknowledged it.
//!
//! # Layout
//! - [`config`]: TOML + `PICKET_*` environment, validated into [`config::Config`].
//! - [`sensors`]: one module per data source, read under a configurable host root.
//! - [`queue`]: the on-disk segment log (store-and-forward).
//! - [`uplink`]: the task that owns the MQTT event loop.

pub mod queue;
pub mod sensors;
