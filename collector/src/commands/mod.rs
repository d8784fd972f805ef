//! Commands to devices: building and signing envelopes, remedy rate
//! limits, and the two command-line tools (`keygen`, `send`).
//!
//! A command is recorded in the command log and published by the engine
//! (through the store, like everything it writes): stored first, then
//! published at QoS 1, never retained. The device's persistent session
//! holds it at the broker while the device is offline; the agent refuses it
//! once `expires` has passed. Replies (`{prefix}/v1/+/reply/+`) come in
//! through the link like any other message and are stored as statuses.
//!
//! # Layout
//! - this file: [`Issuer`] (ids, expiry, signature, topic, payload) and
//!   [`RateLimit`] (pure, for rule remedies).
//! - [`keygen`]: `picket-collector keygen`.
//! - [`send`]: `picket-collector send`, a client of the REST API.
//! - [`artifact`]: `picket-collector sign-artifact` (agent binaries for
//!   `agent.update`; the staged rollout is [`crate::rollout`]).

pub mod artifact;
pub mod keygen;
pub mod send;

use std::sync::Arc;
use std::time::Duration;

use picket_protocol::signing::{self, PrivateKey};
use picket_protocol::{Action, Command, DeviceId, Format, Topics, VERSION, encode};
use serde::{Deserialize, Serialize};

use crate::model::Millis;

/// The `[commands]` section, validated.
#[derive(Clone)]
pub struct CommandsConfig {
    pub key: Option<Arc<PrivateKey>>,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
}

impl std::fmt::Debug for CommandsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandsConfig")
            .field("key", &self.key.as_ref().map(|_| "(set)"))
            .field("default_ttl", &self.default_ttl)
            .field("max_ttl", &self.max_ttl)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error("ttl must be between 1s and {max} s")]
    Ttl { max: u64 },
    #[error("{0}")]
    Args(String),
    #[error("cannot encode the command: {0}")]
    Encode(String),
}

/// A command ready to store and publish.
#[derive(Debug, Clone)]
pub struct Issued {
    pub command: Command,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Builds signed envelopes.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub cfg: CommandsConfig,
    pub topics: Topics,
    pub format: Format,
}

impl Issuer {
    pub fn issue(
        &self,
        device: &DeviceId,
        action: Action,
        ttl: Option<Duration>,
        now: Millis,
    ) -> Result<Issued, IssueError> {
        let ttl = ttl.unwrap_or(self.cfg.default_ttl);
        if ttl < Duration::from_secs(1) || ttl > self.cfg.max_ttl {
            return Err(IssueError::Ttl {
                max: self.cfg.max_ttl.as_secs(),
            });
        }
        action
            .check()
            .map_err(|e| IssueError::Args(e.to_string()))?;
        let mut command = Command {
            v: VERSION,
            id: new_id(now),
            device: device.clone(),
            action,
            issued: now,
            expires: now.saturating_add(ttl.as_millis() as u64),
            sig: None,
        };
        if let Some(key) = &self.cfg.key {
            signing::sign(&mut command, key);
        }
        let topic = self
            .topics
            .cmd(device, &command.id)
            .map_err(|e| IssueError::Encode(e.to_string()))?;
        let payload =
            encode(&command, self.format).map_err(|e| IssueError::Encode(e.to_string()))?;
        Ok(Issued {
            command,
            topic,
            payload,
        })
    }
}

/// A command id: one topic level, sortable by time, unique without
/// coordination (48 bits of time, 64 random bits).
pub fn new_id(now: Millis) -> String {
    format!("{now:012x}-{:016x}", rand::random::<u64>())
}

/// `{name, args}` as the API and rules write them, to a typed [`Action`].
/// Missing or `null` args are `{}`.
pub fn action(name: &str, args: Option<serde_json::Value>) -> Result<Action, IssueError> {
    let args = match args {
        None | Some(serde_json::Value::Null) => serde_json::json!({}),
        Some(a) => a,
    };
    if !Action::NAMES.contains(&name) {
        return Err(IssueError::Args(format!(
            "unknown command {name:?}; known: {}",
            Action::NAMES.join(", ")
        )));
    }
    serde_json::from_value(serde_json::json!({ "name": name, "args": args }))
        .map_err(|e| IssueError::Args(format!("arguments of {name}: {e}")))
}

/// At most `limit` remedies per `window` for one (device, rule): the times
/// of the recent ones, persisted with the device's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    recent: Vec<Millis>,
}

impl RateLimit {
    /// Take a slot at `now` if one is free.
    pub fn allow(&mut self, now: Millis, limit: u32, window: Duration) -> bool {
        let window = window.as_millis() as Millis;
        self.recent.retain(|t| now < t.saturating_add(window));
        if self.recent.len() >= limit as usize {
            return false;
        }
        self.recent.push(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_protocol::{DEFAULT_MAX_PAYLOAD, NoArgs, UnitArgs, decode};

    fn issuer(key: Option<PrivateKey>) -> Issuer {
        Issuer {
            cfg: CommandsConfig {
                key: key.map(Arc::new),
                default_ttl: Duration::from_secs(300),
                max_ttl: Duration::from_secs(86_400),
            },
            topics: Topics::default(),
            format: Format::Cbor,
        }
    }

    #[test]
    fn issued_commands_are_signed_and_expire() {
        let key = signing::private_key([3; 32]);
        let dev = DeviceId::new("pi-1").unwrap();
        let i = issuer(Some(key.clone()))
            .issue(&dev, Action::Ping(NoArgs {}), None, 1_000)
            .unwrap();
        assert_eq!(i.command.expires, 301_000);
        assert_eq!(i.topic, format!("picket/v1/pi-1/cmd/{}", i.command.id));
        let back: Command = decode(&i.payload, DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(signing::verify(&back, &key.verifying_key()), Ok(()));
        let unsigned = issuer(None)
            .issue(&dev, Action::Ping(NoArgs {}), None, 1_000)
            .unwrap();
        assert_eq!(unsigned.command.sig, None);
        let bad_ttl = issuer(None).issue(&dev, Action::Ping(NoArgs {}), Some(Duration::ZERO), 0);
        assert!(matches!(bad_ttl, Err(IssueError::Ttl { .. })));
        let bad_args = issuer(None).issue(
            &dev,
            Action::ServiceRestart(UnitArgs { unit: "-x".into() }),
            None,
            0,
        );
        assert!(matches!(bad_args, Err(IssueError::Args(_))));
    }

    #[test]
    fn ids_are_topic_levels_and_distinct() {
        let a = new_id(1_700_000_000_000);
        let b = new_id(1_700_000_000_000);
        assert_ne!(a, b);
        assert!(
            Topics::default()
                .cmd(&DeviceId::new("d").unwrap(), &a)
                .is_ok()
        );
    }

    #[test]
    fn actions_from_api_bodies() {
        assert_eq!(action("ping", None).unwrap(), Action::Ping(NoArgs {}));
        assert_eq!(
            action(
                "service.restart",
                Some(serde_json::json!({"unit": "k.service"}))
            )
            .unwrap(),
            Action::ServiceRestart(UnitArgs {
                unit: "k.service".into()
            })
        );
        assert!(
            action("format_disk", None)
                .unwrap_err()
                .to_string()
                .contains("unknown")
        );
        assert!(
            action("service.restart", None)
                .unwrap_err()
                .to_string()
                .contains("unit")
        );
    }

    #[test]
    fn rate_limit_table() {
        let w = Duration::from_secs(3600);
        let mut r = RateLimit::default();
        let steps: [(Millis, bool); 6] = [
            (0, true),
            (1_000, true),
            (2_000, true),
            (3_000, false),
            (3_600_000, true),
            (3_600_500, false),
        ];
        for (now, want) in steps {
            assert_eq!(r.allow(now, 3, w), want, "at {now}");
        }
        assert!(!RateLimit::default().allow(0, 0, w));
    }
}
