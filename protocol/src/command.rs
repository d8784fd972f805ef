//! The command envelope sent by a collector to one device.

use serde::{Deserialize, Serialize};

use crate::topic::DeviceId;

/// Payload of `{prefix}/v1/{device}/cmd/{id}` (never retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub v: u16,
    /// Unique per command; also the last topic level.
    pub id: String,
    /// The device this command is for; an agent refuses any other.
    pub device: DeviceId,
    /// `name` and typed `args`.
    #[serde(flatten)]
    pub action: Action,
    /// Unix milliseconds when the command was issued.
    pub issued: u64,
    /// Unix milliseconds after which the command must not run.
    pub expires: u64,
    /// ed25519 signature over the canonical encoding of every other field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<Vec<u8>>,
}

/// A command's name and its typed arguments, serialised as `name` and `args`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", content = "args", rename_all = "snake_case")]
pub enum Action {
    /// Answer with `succeeded` and nothing else: proves the path works.
    Ping,
    /// Report version, model, uptime and configuration hash.
    SysInfo,
    /// Reboot the device.
    Reboot,
    /// Restart an allowed systemd unit.
    ServiceRestart { unit: String },
    /// The last `lines` lines of a unit's journal.
    ServiceLogs { unit: String, lines: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VERSION;
    use crate::test_util::*;
    use serde_json::json;

    fn command(action: Action) -> Command {
        Command {
            v: VERSION,
            id: "01HZX3K9Q7".into(),
            device: DeviceId::new("pi-kitchen.01").unwrap(),
            action,
            issued: 1_717_171_717_000,
            expires: 1_717_171_777_000,
            sig: Some((0u8..64).collect()),
        }
    }

    fn every_action() -> Vec<(Action, &'static str)> {
        vec![
            (Action::Ping, "ping"),
            (Action::SysInfo, "sys_info"),
            (Action::Reboot, "reboot"),
            (
                Action::ServiceRestart {
                    unit: "nginx.service".into(),
                },
                "service_restart",
            ),
            (
                Action::ServiceLogs {
                    unit: "nginx.service".into(),
                    lines: 200,
                },
                "service_logs",
            ),
        ]
    }

    #[test]
    fn round_trips() {
        for (action, _) in every_action() {
            round_trip(&command(action));
        }
        round_trip(&Command {
            sig: None,
            ..command(Action::Ping)
        });
    }

    #[test]
    fn json_field_names() {
        for (action, name) in every_action() {
            let has_args = !matches!(action, Action::Ping | Action::SysInfo | Action::Reboot);
            let v = to_value(&command(action));
            let mut want = vec!["device", "expires", "id", "issued", "name", "sig", "v"];
            if has_args {
                want.push("args");
                want.sort_unstable();
            }
            assert_eq!(keys(&v), want, "{name}");
            assert_eq!(v["name"], name);
        }
        let v = to_value(&command(Action::ServiceLogs {
            unit: "nginx.service".into(),
            lines: 200,
        }));
        assert_eq!(v["args"], json!({"unit": "nginx.service", "lines": 200}));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let want = command(Action::ServiceLogs {
            unit: "nginx.service".into(),
            lines: 200,
        });
        let mut v = to_value(&want);
        add_unknown(&mut v);
        add_unknown(&mut v["args"]);
        assert_eq!(decode_value::<Command>(&v).unwrap(), want);
    }

    #[test]
    fn missing_required_field_is_an_error() {
        let cmd = command(Action::ServiceRestart {
            unit: "nginx.service".into(),
        });
        for field in ["v", "id", "device", "name", "args", "issued", "expires"] {
            assert_required(&cmd, field);
        }
        let mut v = to_value(&cmd);
        v["args"].as_object_mut().unwrap().remove("unit");
        assert!(decode_value::<Command>(&v).is_err());
    }

    #[test]
    fn unknown_action_is_an_error() {
        let mut v = to_value(&command(Action::Ping));
        v["name"] = "format_disk".into();
        assert!(decode_value::<Command>(&v).is_err());
    }

    #[test]
    fn sig_is_optional() {
        let mut v = to_value(&command(Action::Reboot));
        v.as_object_mut().unwrap().remove("sig");
        let decoded = decode_value::<Command>(&v).unwrap();
        assert_eq!(decoded.sig, None);
    }
}
