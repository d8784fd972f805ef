//! The configuration as written: TOML plus `PICKET_*` environment
//! overrides, before validation. Every key has a default: an empty file
//! runs the collector with its embedded broker on loopback.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use picket_config::{ByteSize, HumanDuration, RawBroker as SharedBroker};

use crate::notify::{RawEmail, RawNotify, RawWebhook};
use crate::rules::RawRule;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub broker: RawBroker,
    pub payload: RawPayload,
    pub http: RawHttp,
    pub api: RawApi,
    pub storage: RawStorage,
    pub presence: RawPresence,
    pub notify: RawNotify,
    pub webhook: RawWebhook,
    pub email: RawEmail,
    pub commands: RawCommands,
    pub labels: Vec<RawLabels>,
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCommands {
    pub private_key_file: String,
    pub default_ttl: HumanDuration,
    pub max_ttl: HumanDuration,
}

impl Default for RawCommands {
    fn default() -> Self {
        RawCommands {
            private_key_file: String::new(),
            default_ttl: HumanDuration(Duration::from_secs(300)),
            max_ttl: HumanDuration(Duration::from_secs(7 * 86_400)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBroker {
    pub url: String,
    pub listen: String,
    pub max_connections: u32,
    pub client_id: String,
    pub username: String,
    pub password_file: String,
    pub ca_file: String,
    pub client_cert: String,
    pub client_key: String,
    pub keep_alive: HumanDuration,
    pub topic_prefix: String,
    pub inflight: u16,
}

impl Default for RawBroker {
    fn default() -> Self {
        RawBroker {
            url: String::new(),
            listen: "127.0.0.1:1883".into(),
            max_connections: 20_000,
            client_id: "picket-collector".into(),
            username: String::new(),
            password_file: String::new(),
            ca_file: String::new(),
            client_cert: String::new(),
            client_key: String::new(),
            keep_alive: HumanDuration(Duration::from_secs(30)),
            topic_prefix: "picket".into(),
            inflight: 100,
        }
    }
}

impl RawBroker {
    /// The fields every MQTT client of picket shares, for validation.
    pub fn shared(&self, url: &str) -> SharedBroker {
        SharedBroker {
            url: url.to_string(),
            client_id: self.client_id.clone(),
            username: self.username.clone(),
            password_file: self.password_file.clone(),
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            keep_alive: self.keep_alive,
            topic_prefix: self.topic_prefix.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPayload {
    pub format: String,
    pub max_size: ByteSize,
}

impl Default for RawPayload {
    fn default() -> Self {
        RawPayload {
            format: "cbor".into(),
            max_size: ByteSize(1 << 20),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    pub listen: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApi {
    pub admin_token: String,
    pub read_token: String,
    pub admin_token_file: String,
    pub read_token_file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStorage {
    pub path: String,
    pub retention: HumanDuration,
    pub synchronous: String,
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage {
            path: "/var/lib/picket/collector.db".into(),
            retention: HumanDuration(Duration::from_secs(30 * 86_400)),
            synchronous: "full".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPresence {
    pub timeout: HumanDuration,
}

impl Default for RawPresence {
    fn default() -> Self {
        RawPresence {
            timeout: HumanDuration(Duration::from_secs(300)),
        }
    }
}

/// Labels given to the devices whose id matches `devices` (a glob).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLabels {
    pub devices: String,
    pub labels: BTreeMap<String, String>,
}
