//! picket's collector: watches a fleet of agents over MQTT.

pub mod model;
pub mod simulate;
