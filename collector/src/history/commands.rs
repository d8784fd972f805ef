//! The command log: commands sent and the statuses their devices replied.

use picket_protocol::{DeviceId, ReplyState};
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use super::reader::Reader;
use super::{HistoryError, device_id, millis};
use crate::model::Millis;

/// A command as sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandRow {
    pub id: String,
    pub device: DeviceId,
    pub name: String,
    /// The typed arguments, as JSON.
    pub args: serde_json::Value,
    pub issued: Millis,
    pub expires: Millis,
    /// `api`, or `rule:<name>` for a remedy.
    pub source: String,
}

/// One status a device replied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusRow {
    #[serde(skip)]
    pub command: String,
    #[serde(skip)]
    pub device: DeviceId,
    pub state: ReplyState,
    /// The device's time of the status.
    pub ts: Millis,
    /// When the collector received it.
    pub received: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u32>,
}

/// A command with everything its device said about it, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandLog {
    /// `None` when statuses arrived for a command this collector did not
    /// send (another collector, a hand-made envelope).
    #[serde(flatten)]
    pub command: Option<CommandRow>,
    pub statuses: Vec<StatusRow>,
}

pub fn state_str(s: ReplyState) -> &'static str {
    match s {
        ReplyState::Accepted => "accepted",
        ReplyState::Running => "running",
        ReplyState::Succeeded => "succeeded",
        ReplyState::Failed => "failed",
        ReplyState::Rejected => "rejected",
    }
}

fn parse_state(s: &str) -> Result<ReplyState, HistoryError> {
    Ok(match s {
        "accepted" => ReplyState::Accepted,
        "running" => ReplyState::Running,
        "succeeded" => ReplyState::Succeeded,
        "failed" => ReplyState::Failed,
        "rejected" => ReplyState::Rejected,
        other => {
            return Err(HistoryError::Corrupt {
                what: "command state",
                reason: format!("{other:?}"),
            });
        }
    })
}

impl Reader {
    /// One command and its statuses (in arrival order), or
    /// `None` if nothing is known of it.
    pub fn command(&self, id: &str) -> Result<Option<CommandLog>, HistoryError> {
        let id = id.to_string();
        self.with(move |conn| read_command(conn, &id))
    }
}

fn read_command(conn: &Connection, id: &str) -> Result<Option<CommandLog>, HistoryError> {
    let command = conn
        .prepare_cached(
            "SELECT device.name, command.name, args, issued, expires, source
             FROM command JOIN device ON device.id = command.device_id
             WHERE command.id = ?1",
        )?
        .query_row([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .optional()?;
    let command = match command {
        Some((device, name, args, issued, expires, source)) => Some(CommandRow {
            id: id.to_string(),
            device: device_id(device)?,
            name,
            args: serde_json::from_str(&args).map_err(|e| HistoryError::Corrupt {
                what: "command arguments",
                reason: e.to_string(),
            })?,
            issued: millis(issued)?,
            expires: millis(expires)?,
            source,
        }),
        None => None,
    };
    let mut stmt = conn.prepare_cached(
        "SELECT device.name, state, chunk, ts, received, reason, output
         FROM command_status JOIN device ON device.id = command_status.device_id
         WHERE command_id = ?1
         ORDER BY command_status.id",
    )?;
    let mut rows = stmt.query([id])?;
    let mut statuses = Vec::new();
    while let Some(r) = rows.next()? {
        let state: String = r.get(1)?;
        let chunk: i64 = r.get(2)?;
        statuses.push(StatusRow {
            command: id.to_string(),
            device: device_id(r.get(0)?)?,
            state: parse_state(&state)?,
            chunk: u32::try_from(chunk).ok(),
            ts: millis(r.get(3)?)?,
            received: millis(r.get(4)?)?,
            reason: r.get(5)?,
            output: r.get(6)?,
        });
    }
    if command.is_none() && statuses.is_empty() {
        return Ok(None);
    }
    Ok(Some(CommandLog { command, statuses }))
}
