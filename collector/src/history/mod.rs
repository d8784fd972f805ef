//! SQLite storage of everything the collector keeps: samples, events,
//! presence changes, the alert log, device records and the engine's state.
//!
//! Synchronous on purpose, like the agent's queue: one [`Writer`] lives on a
//! dedicated thread (it commits a [`WriteBatch`], then the engine
//! acknowledges the MQTT messages the batch came from), and [`Reader`]s are
//! used from async code through `spawn_blocking`. The database is in WAL
//! mode, so readers never wait for the writer nor the writer for them.
//!
//! # Layout
//! - [`open`]: creates or migrates the schema and returns the writer with
//!   the [`Snapshot`] the engine starts from.
//! - `schema`: tables, migrations (`PRAGMA user_version`), connection
//!   settings and the [`Durability`] choice.
//! - `writer`: [`Writer::commit`]; `prune`: [`Writer::prune`] (retention).
//! - `reader`: [`Reader`], a small pool of read-only connections.
//! - `body`: the encoding of a sample's points in its row, pure.
//! - `bucket`: averaging raw points into fixed steps, pure.
//! - `rows`: the row types going in and out.

mod body;
mod bucket;
mod commands;
mod prune;
mod reader;
mod rows;
mod schema;
mod snapshot;
mod writer;

use std::path::{Path, PathBuf};

use picket_protocol::Severity;

pub use commands::{CommandLog, CommandRow, StatusRow, state_str};
pub use reader::Reader;
pub use rows::{
    AlertRow, CommitStats, Correction, DeviceRecord, DeviceRow, EventRecord, EventRow,
    HistoryPoint, JournalEntry, PresenceRow, RefusedRow, SampleRows, Snapshot, StateEntry,
    StateRow, Unsynced, WriteBatch,
};
pub use schema::{Durability, VERSION as SCHEMA_VERSION};
pub use writer::{Dropped, Writer};

/// The quarantine keeps this many refused messages, the newest.
pub const REFUSED_KEEP_ROWS: usize = 1_000;
/// And this much of each one's payload.
pub const REFUSED_KEEP_BYTES: usize = 4 * 1024;

/// The history's byte encodings that are read back from the database, for
/// the fuzz targets in `fuzz/` (which cannot reach private modules): not
/// an API, nothing else uses it.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::body::{BodyError, Entries, MAX_ID, encode, find};
    pub use super::snapshot::journal_entries;
    pub use crate::varint::{put as put_varint, read as read_varint};
}

use crate::model::Millis;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot open the history database {path}: its directory does not exist")]
    NoDirectory { path: PathBuf },
    #[error("cannot open the history database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "{path} is not an SQLite database (damaged, or another file): restore it from a \
         backup, or move it aside to start a new history; it is never replaced"
    )]
    NotADatabase { path: PathBuf },
    #[error(
        "{path} is damaged ({detail}): restore it from a backup, or move it aside to start \
         a new history; it is never replaced"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error("{path} is not a picket history database: {reason}")]
    NotHistory { path: PathBuf, reason: String },
    #[error(
        "{path} has history schema version {found}, this build knows up to {known} \
         (a newer collector wrote it, or the writer has not created it yet)"
    )]
    Schema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{what} {value} is out of range")]
    OutOfRange { what: &'static str, value: String },
    #[error("invalid query: {0}")]
    Query(&'static str),
    #[error("the history holds an invalid {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl HistoryError {
    /// Whether the database itself failed (disk full, I/O error, read-only
    /// file system, locked, damaged...), as opposed to refusing what one
    /// row holds. The first stops acknowledging until the cause is gone;
    /// the second is one message's fault, and only that message is set aside.
    pub fn is_store_failure(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            HistoryError::Sqlite(e) => match e.sqlite_error_code() {
                Some(TooBig | ConstraintViolation | TypeMismatch | ParameterOutOfRange) => false,
                Some(_) => true,
                // rusqlite's own refusals (a value it cannot bind or
                // read): about the row, not the database.
                None => false,
            },
            HistoryError::OutOfRange { .. } | HistoryError::Query(_) => false,
            HistoryError::Corrupt { .. } => false,
            _ => true,
        }
    }
}

impl From<body::BodyError> for HistoryError {
    fn from(e: body::BodyError) -> Self {
        HistoryError::Corrupt {
            what: "sample body",
            reason: format!("{} at byte {}", e.reason, e.at),
        }
    }
}

/// Open the history at `path` for writing (creating the file and migrating
/// its schema as needed) with [`Durability::Full`], and read what the engine
/// needs to start.
pub fn open(path: &Path) -> Result<(Writer, Snapshot), HistoryError> {
    open_with(path, Durability::default())
}

/// [`open`] with a chosen durability.
pub fn open_with(path: &Path, durability: Durability) -> Result<(Writer, Snapshot), HistoryError> {
    let conn = schema::open_writer(path, durability)?;
    let snapshot = snapshot::read(&conn)?;
    Ok((Writer::new(conn)?, snapshot))
}

/// SQLite integers are signed: times and counters past `i64::MAX` (which no
/// real clock reaches) are refused rather than wrapped.
fn to_i64(what: &'static str, v: u64) -> Result<i64, HistoryError> {
    i64::try_from(v).map_err(|_| HistoryError::OutOfRange {
        what,
        value: v.to_string(),
    })
}

fn from_i64(what: &'static str, v: i64) -> Result<u64, HistoryError> {
    u64::try_from(v).map_err(|_| HistoryError::Corrupt {
        what,
        reason: format!("negative value {v}"),
    })
}

fn millis(v: i64) -> Result<Millis, HistoryError> {
    from_i64("timestamp", v)
}

fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

fn parse_severity(s: &str) -> Result<Severity, HistoryError> {
    match s {
        "info" => Ok(Severity::Info),
        "warning" => Ok(Severity::Warning),
        "critical" => Ok(Severity::Critical),
        other => Err(HistoryError::Corrupt {
            what: "severity",
            reason: format!("{other:?}"),
        }),
    }
}

fn device_id(name: String) -> Result<picket_protocol::DeviceId, HistoryError> {
    picket_protocol::DeviceId::new(name).map_err(|e| HistoryError::Corrupt {
        what: "device id",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
