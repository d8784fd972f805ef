//! Topic names: `{prefix}/v1/{device}/{kind}[/{id}]`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A device id: 1 to 64 characters from `[A-Za-z0-9_.-]`, so it is always a
/// single, wildcard-free MQTT topic level.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("device id is empty")]
    Empty,
    #[error("device id is {0} characters long, the most is 64")]
    TooLong(usize),
    #[error("device id contains {0:?}; allowed are letters, digits, '_', '.' and '-'")]
    BadChar(char),
}

impl DeviceId {
    pub const MAX_LEN: usize = 64;

    pub fn new(id: impl Into<String>) -> Result<Self, DeviceIdError> {
        let id = id.into();
        if id.is_empty() {
            return Err(DeviceIdError::Empty);
        }
        let len = id.chars().count();
        if len > Self::MAX_LEN {
            return Err(DeviceIdError::TooLong(len));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(DeviceIdError::BadChar(c));
        }
        Ok(DeviceId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = DeviceIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        DeviceId::new(s)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> String {
        id.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for DeviceId {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceId::new(s)
    }
}

/// The kind of a device topic, the level after the device id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicKind {
    State,
    Telemetry,
    Event,
    Alert,
    /// `cmd/{id}`
    Cmd(String),
    /// `reply/{id}`
    Reply(String),
}

/// A parsed device topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub device: DeviceId,
    pub kind: TopicKind,
}

/// Builds and parses topics under one prefix (default `picket`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            prefix: "picket".into(),
        }
    }
}

impl Topics {
    /// `prefix` may hold several levels (`site/a/picket`) but no wildcard,
    /// no empty level and no leading or trailing `/`.
    pub fn new(prefix: impl Into<String>) -> Result<Self, TopicError> {
        let prefix = prefix.into();
        if prefix.is_empty() || prefix.split('/').any(str::is_empty) {
            return Err(TopicError::BadPrefix(prefix));
        }
        if prefix.contains(['+', '#', '\0']) {
            return Err(TopicError::BadPrefix(prefix));
        }
        Ok(Topics { prefix })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn device_topic(&self, device: &DeviceId, tail: &str) -> String {
        format!("{}/v1/{}/{}", self.prefix, device, tail)
    }

    pub fn state(&self, device: &DeviceId) -> String {
        self.device_topic(device, "state")
    }
    pub fn telemetry(&self, device: &DeviceId) -> String {
        self.device_topic(device, "telemetry")
    }
    pub fn event(&self, device: &DeviceId) -> String {
        self.device_topic(device, "event")
    }
    pub fn alert(&self, device: &DeviceId) -> String {
        self.device_topic(device, "alert")
    }
    /// Fails when `id` is not a valid single topic level.
    pub fn cmd(&self, device: &DeviceId, id: &str) -> Result<String, TopicError> {
        check_id(id)?;
        Ok(self.device_topic(device, &format!("cmd/{id}")))
    }
    pub fn reply(&self, device: &DeviceId, id: &str) -> Result<String, TopicError> {
        check_id(id)?;
        Ok(self.device_topic(device, &format!("reply/{id}")))
    }

    /// Filter for one device's commands: `{prefix}/v1/{device}/cmd/+`.
    pub fn cmd_filter(&self, device: &DeviceId) -> String {
        self.device_topic(device, "cmd/+")
    }

    /// Filter for one kind across all devices, e.g. `picket/v1/+/telemetry`.
    /// `kind` is the literal last level(s): `state`, `telemetry`, `event`,
    /// `alert`, `cmd/+`, `reply/+`.
    pub fn fleet_filter(&self, kind: &str) -> String {
        format!("{}/v1/+/{}", self.prefix, kind)
    }

    /// Parse a topic under this prefix.
    pub fn parse(&self, topic: &str) -> Result<Topic, TopicError> {
        let bad = || TopicError::Unknown(topic.to_string());
        let rest = topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix("/v1/"))
            .ok_or_else(bad)?;
        let mut levels = rest.split('/');
        let device = levels.next().ok_or_else(bad)?;
        let device = DeviceId::new(device).map_err(|e| TopicError::Device(topic.to_string(), e))?;
        let kind = match (levels.next(), levels.next(), levels.next()) {
            (Some("state"), None, None) => TopicKind::State,
            (Some("telemetry"), None, None) => TopicKind::Telemetry,
            (Some("event"), None, None) => TopicKind::Event,
            (Some("alert"), None, None) => TopicKind::Alert,
            (Some("cmd"), Some(id), None) => {
                check_id(id)?;
                TopicKind::Cmd(id.to_string())
            }
            (Some("reply"), Some(id), None) => {
                check_id(id)?;
                TopicKind::Reply(id.to_string())
            }
            _ => return Err(bad()),
        };
        Ok(Topic { device, kind })
    }
}

/// Command ids follow the device id rules (one plain topic level).
fn check_id(id: &str) -> Result<(), TopicError> {
    DeviceId::new(id)
        .map(|_| ())
        .map_err(|e| TopicError::CommandId(id.to_string(), e))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic prefix {0:?} is not a valid topic: empty level, wildcard or NUL")]
    BadPrefix(String),
    #[error("topic {0:?} is not a picket v1 device topic")]
    Unknown(String),
    #[error("topic {0:?}: {1}")]
    Device(String, DeviceIdError),
    #[error("command id {0:?}: {1}")]
    CommandId(String, DeviceIdError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str) -> DeviceId {
        DeviceId::new(id).unwrap()
    }

    #[test]
    fn device_id_validation() {
        let ok = ["a", "pi-kitchen.01", "Z_9", "...", "-", &"x".repeat(64)];
        for id in ok {
            assert_eq!(DeviceId::new(id).unwrap().as_str(), id);
        }
        let bad: [(&str, DeviceIdError); 9] = [
            ("", DeviceIdError::Empty),
            (&"x".repeat(65), DeviceIdError::TooLong(65)),
            ("a+b", DeviceIdError::BadChar('+')),
            ("#", DeviceIdError::BadChar('#')),
            ("a/b", DeviceIdError::BadChar('/')),
            ("a b", DeviceIdError::BadChar(' ')),
            ("pi-ä", DeviceIdError::BadChar('ä')),
            ("a\0", DeviceIdError::BadChar('\0')),
            ("a\n", DeviceIdError::BadChar('\n')),
        ];
        for (id, err) in bad {
            assert_eq!(DeviceId::new(id), Err(err), "{id:?}");
            assert!(id.parse::<DeviceId>().is_err());
        }
    }

    #[test]
    fn device_id_serde_validates() {
        let id: DeviceId = serde_json::from_str(r#""pi-1""#).unwrap();
        assert_eq!(id, dev("pi-1"));
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""pi-1""#);
        assert!(serde_json::from_str::<DeviceId>(r#""pi/1""#).is_err());
        assert!(serde_json::from_str::<DeviceId>(r#""""#).is_err());
    }

    #[test]
    fn prefix_validation() {
        for ok in ["picket", "site/a/picket", "p-1.x"] {
            assert_eq!(Topics::new(ok).unwrap().prefix(), ok);
        }
        for bad in [
            "", "/picket", "picket/", "a//b", "a/+/b", "#", "pi#", "a\0b",
        ] {
            assert_eq!(
                Topics::new(bad),
                Err(TopicError::BadPrefix(bad.into())),
                "{bad:?}"
            );
        }
        assert_eq!(Topics::default().prefix(), "picket");
    }

    #[test]
    fn builders_parse_back() {
        for prefix in ["picket", "site/a/picket"] {
            let t = Topics::new(prefix).unwrap();
            let d = dev("pi-kitchen.01");
            let built = [
                (t.state(&d), TopicKind::State, "state"),
                (t.telemetry(&d), TopicKind::Telemetry, "telemetry"),
                (t.event(&d), TopicKind::Event, "event"),
                (t.alert(&d), TopicKind::Alert, "alert"),
                (
                    t.cmd(&d, "c-1").unwrap(),
                    TopicKind::Cmd("c-1".into()),
                    "cmd/c-1",
                ),
                (
                    t.reply(&d, "c-1").unwrap(),
                    TopicKind::Reply("c-1".into()),
                    "reply/c-1",
                ),
            ];
            for (topic, kind, tail) in built {
                assert_eq!(topic, format!("{prefix}/v1/pi-kitchen.01/{tail}"));
                assert_eq!(
                    t.parse(&topic).unwrap(),
                    Topic {
                        device: d.clone(),
                        kind
                    }
                );
            }
            assert_eq!(t.cmd_filter(&d), format!("{prefix}/v1/pi-kitchen.01/cmd/+"));
            assert_eq!(
                t.fleet_filter("telemetry"),
                format!("{prefix}/v1/+/telemetry")
            );
        }
    }

    #[test]
    fn builders_refuse_bad_command_ids() {
        let t = Topics::default();
        let d = dev("pi");
        for id in ["", "a/b", "+", "#", &"x".repeat(65)] {
            assert!(
                matches!(t.cmd(&d, id), Err(TopicError::CommandId(..))),
                "{id:?}"
            );
            assert!(
                matches!(t.reply(&d, id), Err(TopicError::CommandId(..))),
                "{id:?}"
            );
        }
    }

    #[test]
    fn parse_refuses_foreign_topics() {
        let t = Topics::new("site/picket").unwrap();
        let unknown = [
            "picket/v1/pi/state",
            "site/picket/v2/pi/state",
            "site/picket/v1",
            "site/picket/v1/",
            "site/picketx/v1/pi/state",
            "site/picket/v1/pi",
            "site/picket/v1/pi/",
            "site/picket/v1/pi/status",
            "site/picket/v1/pi/state/extra",
            "site/picket/v1/pi/telemetry/",
            "site/picket/v1/pi/cmd",
            "site/picket/v1/pi/reply",
            "site/picket/v1/pi/cmd/c1/extra",
            "x/site/picket/v1/pi/state",
            "",
        ];
        for topic in unknown {
            assert!(t.parse(topic).is_err(), "{topic:?}");
        }
        assert!(matches!(
            t.parse("site/picket/v1/pi+/state"),
            Err(TopicError::Device(..))
        ));
        assert!(matches!(
            t.parse("site/picket/v1//state"),
            Err(TopicError::Device(..))
        ));
        assert!(matches!(
            t.parse("site/picket/v1/pi/cmd/"),
            Err(TopicError::CommandId(..))
        ));
        assert!(matches!(
            t.parse("site/picket/v1/pi/reply/#"),
            Err(TopicError::CommandId(..))
        ));
    }
}
