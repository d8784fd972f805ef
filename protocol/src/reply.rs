//! Status updates an agent sends for one command.

use serde::{Deserialize, Serialize};

use crate::topic::DeviceId;

/// Payload of `{prefix}/v1/{device}/reply/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub v: u16,
    /// The command's id.
    pub id: String,
    pub device: DeviceId,
    pub state: ReplyState,
    /// Why a command was rejected or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bounded output; larger output is sent in ordered chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Index of this output chunk, from 0, when output is chunked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u32>,
    /// Unix milliseconds.
    pub ts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyState {
    Accepted,
    Running,
    Succeeded,
    Failed,
    /// Refused before anything ran (expired, duplicate, not allowed...).
    Rejected,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VERSION;
    use crate::test_util::*;

    fn succeeded() -> Reply {
        Reply {
            v: VERSION,
            id: "01HZX3K9Q7".into(),
            device: DeviceId::new("pi-kitchen.01").unwrap(),
            state: ReplyState::Succeeded,
            reason: None,
            output: Some("Jun 01 10:00:00 pi nginx[812]: started\n".into()),
            chunk: Some(0),
            ts: 1_717_171_717_250,
        }
    }

    fn rejected() -> Reply {
        Reply {
            v: VERSION,
            id: "01HZX3K9Q8".into(),
            device: DeviceId::new("pi-kitchen.01").unwrap(),
            state: ReplyState::Rejected,
            reason: Some("expired".into()),
            output: None,
            chunk: None,
            ts: 1_717_171_717_300,
        }
    }

    #[test]
    fn round_trips() {
        round_trip(&succeeded());
        round_trip(&rejected());
    }

    #[test]
    fn json_field_names() {
        let s = to_value(&succeeded());
        assert_eq!(
            keys(&s),
            ["chunk", "device", "id", "output", "state", "ts", "v"]
        );
        assert_eq!(s["state"], "succeeded");
        let r = to_value(&rejected());
        assert_eq!(keys(&r), ["device", "id", "reason", "state", "ts", "v"]);
        let names = [
            (ReplyState::Accepted, "accepted"),
            (ReplyState::Running, "running"),
            (ReplyState::Succeeded, "succeeded"),
            (ReplyState::Failed, "failed"),
            (ReplyState::Rejected, "rejected"),
        ];
        for (state, name) in names {
            assert_eq!(serde_json::to_value(state).unwrap(), name);
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v = to_value(&succeeded());
        add_unknown(&mut v);
        assert_eq!(decode_value::<Reply>(&v).unwrap(), succeeded());
    }

    #[test]
    fn missing_required_field_is_an_error() {
        for field in ["v", "id", "device", "state", "ts"] {
            assert_required(&succeeded(), field);
        }
    }
}
