//! The database layout, its migrations, and how connections are opened.
//!
//! # Tables
//! - `device` and `metric`: dictionaries, so the big table stores integers.
//!   `device` also holds what the engine learnt about a device;
//!   `device_label` its labels.
//! - `sample`: one row per sample of a device, keyed `(device_id, ts, seq)`
//!   in a `WITHOUT ROWID` table, its points in `body` (metric ids and values,
//!   see `body.rs`). The rows of one device are contiguous in the B-tree and
//!   in time order, so a range query of one device is a single index range
//!   scan whatever the size of the fleet, and a commit of N samples from N
//!   devices touches about N leaf pages (a row per point, keyed by series,
//!   would touch one leaf per point: some 20 times as many).
//!   `seq` in the key keeps two different samples stamped the same
//!   millisecond (a clock stepped back, an unsynchronised clock after a
//!   reboot, a correction landing on a taken time) as two rows, while a
//!   redelivered sample (same `seq`, same time) replaces its row.
//!   `boot` and `mono` are set while the sample's time awaits a correction
//!   (it was stamped by a clock that was not synchronised yet) and NULL
//!   otherwise; a partial index, covering what a correction reads, finds
//!   the rows of a boot to correct (without `mono` in it SQLite prefers
//!   scanning the device's rows by the primary key).
//!   Events keep the same two columns (`boot`, `mono`).
//! - `sample_new`: where commits put samples, in arrival order (a rowid
//!   table, so a commit appends to its last pages), with a small index on
//!   the same key as `sample`'s. The store moves its rows into `sample` in
//!   key order every few seconds or thousands of rows ([`super::Writer::merge`]),
//!   so each device's leaf page of `sample` is written once per merge
//!   instead of once per commit that holds one of its samples. Readers
//!   read both tables in one statement (one snapshot: a row is in one of
//!   them, never both or neither), so the split is invisible to them.
//! - `event`, `presence`, `alert_log`: small append-mostly logs.
//! - `state`: the engine's opaque JSON state, by device, kind and key.
//! - `state_journal`: what changed in a device's state between two
//!   checkpoints of `state`, one row per commit (see
//!   [`super::JournalEntry`]): a commit of N devices' messages writes one
//!   small row here instead of N rows of JSON into `state`.
//! - `refused`: the quarantine, the last [`super::REFUSED_KEEP_ROWS`]
//!   messages refused at ingest (or rows the database refused), each with
//!   the first [`super::REFUSED_KEEP_BYTES`] of its payload.
//! - `command`, `command_status`: the command log — every command sent
//!   (by the API or a rule's remedy) and every status its device replied,
//!   in arrival order (a device's replies arrive in the order it sent
//!   them), unique so a redelivered reply is stored once. `alert_log.remedy` holds
//!   the command a firing alert issued, or why it did not.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::HistoryError;

/// Written into the header (`PRAGMA application_id`) so a database of
/// another program is recognised instead of migrated: "pkt1".
const APPLICATION_ID: i32 = 0x706b_7431;

/// Migration `i` brings the schema from `user_version` `i` to `i + 1`.
/// Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE device (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    first_seen INTEGER,
    last_seen INTEGER,
    model TEXT,
    version TEXT
);
CREATE TABLE device_label (
    device_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (device_id, key)
) WITHOUT ROWID;
CREATE TABLE metric (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE sample (
    device_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    boot TEXT,
    mono INTEGER,
    body BLOB NOT NULL,
    PRIMARY KEY (device_id, ts, seq)
) WITHOUT ROWID;
CREATE INDEX sample_unsynced ON sample (device_id, boot, mono) WHERE boot IS NOT NULL;
CREATE TABLE event (
    device_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    boot TEXT,
    mono INTEGER,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX event_by_device_time ON event (device_id, ts);
CREATE INDEX event_by_time ON event (ts);
CREATE INDEX event_unsynced ON event (device_id, boot) WHERE boot IS NOT NULL;
CREATE TABLE presence (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    online INTEGER NOT NULL,
    reason TEXT,
    session TEXT
);
CREATE INDEX presence_by_device_time ON presence (device_id, ts);
CREATE INDEX presence_by_time ON presence (ts);
CREATE TABLE alert_log (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    rule TEXT NOT NULL,
    instance TEXT,
    severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    change TEXT NOT NULL,
    value REAL,
    message TEXT NOT NULL
);
CREATE INDEX alert_by_device_time ON alert_log (device_id, ts);
CREATE INDEX alert_by_time ON alert_log (ts);
CREATE TABLE state (
    device_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (device_id, kind, key)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE command (
    id TEXT PRIMARY KEY,
    device_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    issued INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX command_by_device_time ON command (device_id, issued);
CREATE INDEX command_by_time ON command (issued);
CREATE TABLE command_status (
    id INTEGER PRIMARY KEY,
    command_id TEXT NOT NULL,
    state TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    received INTEGER NOT NULL,
    device_id INTEGER NOT NULL,
    reason TEXT,
    output TEXT,
    UNIQUE (command_id, state, chunk, ts)
);
CREATE INDEX command_status_by_time ON command_status (received);
ALTER TABLE alert_log ADD COLUMN remedy TEXT;
"#,
    r#"
CREATE TABLE state_journal (
    id INTEGER PRIMARY KEY,
    body BLOB NOT NULL
);
"#,
    r#"
CREATE TABLE sample_new (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    boot TEXT,
    mono INTEGER,
    body BLOB NOT NULL
);
CREATE UNIQUE INDEX sample_new_key ON sample_new (device_id, ts, seq);
"#,
    r#"
CREATE TABLE refused (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    topic TEXT,
    device TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
"#,
];

/// The schema version this build writes and reads.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a connection waits for a lock before failing. Readers never
/// block the writer in WAL mode; this covers checkpoints and a second
/// process opening the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's page cache. The hot part of `sample` is the last leaf page
/// of every device and the interior pages above them: about 4 MiB at 1,000
/// devices. 16 MiB ingested as fast as 64 MiB in `bench/history-query.sh`'s
/// steady state (1,000 devices x 20 metrics), and bounds what the cache can
/// add to the collector's memory.
const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// WAL pages between automatic checkpoints (SQLite's default is 1,000). A
/// device's last leaf page is rewritten by every commit that holds one of
/// its samples; between checkpoints only its last version is copied into
/// the database file, so checkpointing less often writes less. 8,000 pages
/// (32 MiB of WAL at 4 KiB pages) ingested 10 to 35 % more samples a second
/// than the default at 1,000 devices, for a higher commit p99 (the commit
/// that runs the bigger checkpoint).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 8_000;

/// The WAL is truncated back to this size after a checkpoint, so a burst
/// (a fleet replaying its backlog) does not leave a large file behind.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// When a commit is on disk. The collector acknowledges a message to the
/// broker only after the commit that holds it returned, and the broker then
/// forgets the message, so this decides what a power cut of the collector
/// host costs (a crash of the process alone loses nothing either way: the
/// WAL is in the OS page cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous = FULL`: every commit fsyncs the WAL before returning.
    /// A power cut loses nothing that was acknowledged. The default: it
    /// costs one fsync per commit (see `bench/RESULTS.md`), and the
    /// collector commits batches, not single messages.
    #[default]
    Full,
    /// `synchronous = NORMAL`: the WAL is fsynced only at checkpoints. A
    /// power cut keeps the database consistent but may roll back the last
    /// commits, whose messages the broker will not send again: history since
    /// the last checkpoint (about 1,000 pages of changes) is lost.
    Normal,
}

/// Open (creating if needed) the database for writing and bring its schema
/// up to date.
pub(super) fn open_writer(path: &Path, durability: Durability) -> Result<Connection, HistoryError> {
    check_directory(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_error(path, e))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        .map_err(|e| open_error(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(HistoryError::NotHistory {
            path: path.to_path_buf(),
            reason: format!("cannot use write-ahead logging here (journal mode {mode})"),
        });
    }
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    quick_check(&conn, path)?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// Open an existing database read-only, refusing a schema this build does
/// not know.
pub(super) fn open_reader(path: &Path) -> Result<Connection, HistoryError> {
    check_directory(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_error(path, e))?;
    let (app, version) = identity(&conn, path)?;
    if app != APPLICATION_ID || version != VERSION {
        return Err(HistoryError::Schema {
            path: path.to_path_buf(),
            found: version,
            known: VERSION,
        });
    }
    Ok(conn)
}

/// The tables a start reads, and the first commits write: checked at open.
/// The history's big tables (`sample`, `event`, the logs) are not: a check
/// reads every page, 40 MB/s here from a cold cache (`bench/RESULTS.md`),
/// which would hold a start of a 30 GB history for minutes. Damage there
/// surfaces as the error of a query, or of a commit (retried, and shown by
/// `/healthz`, nothing acknowledged meanwhile).
const CHECKED_AT_OPEN: &[&str] = &[
    "device",
    "device_label",
    "metric",
    "state",
    "state_journal",
    "sample_new",
    "refused",
];

/// SQLite's `quick_check` (the B-trees and their pages, without matching
/// indexes to tables) of the schema and of [`CHECKED_AT_OPEN`]: a damaged
/// file is said at start, naming it, instead of failing commits one by one
/// later.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), HistoryError> {
    let damaged = |detail: String| HistoryError::Damaged {
        path: path.to_path_buf(),
        detail,
    };
    let present: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| damaged(e.to_string()))?;
    for table in CHECKED_AT_OPEN {
        if !present.iter().any(|t| t == table) {
            continue;
        }
        let found: Vec<String> = conn
            .prepare(&format!("PRAGMA quick_check({table})"))
            .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| damaged(format!("{table}: {e}")))?;
        match found.as_slice() {
            [ok] if ok == "ok" => {}
            problems => return Err(damaged(format!("{table}: {}", problems.join("; ")))),
        }
    }
    Ok(())
}

fn check_directory(path: &Path) -> Result<(), HistoryError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => return Ok(()),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(HistoryError::NoDirectory {
            path: path.to_path_buf(),
        })
    }
}

fn open_error(path: &Path, source: rusqlite::Error) -> HistoryError {
    match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => HistoryError::NotADatabase {
            path: path.to_path_buf(),
        },
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => HistoryError::Damaged {
            path: path.to_path_buf(),
            detail: source.to_string(),
        },
        _ => HistoryError::Open {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn identity(conn: &Connection, path: &Path) -> Result<(i32, i64), HistoryError> {
    let app: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| open_error(path, e))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| open_error(path, e))?;
    Ok((app, version))
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), HistoryError> {
    let (app, version) = identity(conn, path)?;
    if app == 0 && version == 0 {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(HistoryError::NotHistory {
                path: path.to_path_buf(),
                reason: "it is an SQLite database of another program".into(),
            });
        }
    } else if app != APPLICATION_ID {
        return Err(HistoryError::NotHistory {
            path: path.to_path_buf(),
            reason: format!("it belongs to another program (application id {app:#x})"),
        });
    }
    if !(0..=VERSION).contains(&version) {
        return Err(HistoryError::Schema {
            path: path.to_path_buf(),
            found: version,
            known: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = i as i64 + 1;
        // The version moves with the tables in one transaction: a crash
        // mid-migration leaves the previous version, not half of the next.
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;\n{sql}\nPRAGMA application_id = {APPLICATION_ID};\n\
             PRAGMA user_version = {next};\nCOMMIT;"
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
    }
    Ok(())
}
