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
