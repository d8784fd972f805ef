//! picket's collector: watches a fleet of agents over MQTT.

pub mod history;
pub mod model;
