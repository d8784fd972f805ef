//! The single writer: applies a [`WriteBatch`] in one transaction.

// foldhash: the metric dictionary is looked up once a point.
use foldhash::{HashMap, HashMapExt};
use std::time::{Duration, Instant};

use picket_protocol::DeviceId;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::rows::{
    AlertRow, CommitStats, Correction, DeviceRow, EventRow, JournalEntry, PresenceRow, RefusedRow,
    SampleRows, StateRow, WriteBatch,
};
use super::{
    HistoryError, REFUSED_KEEP_BYTES, REFUSED_KEEP_ROWS, body, commands, severity_str, to_i64,
};
use crate::varint;

/// Owns the only read-write connection. Dictionary ids are cached: this is
/// the only process that writes them, so the cache cannot go stale, except
/// when a transaction that created ids rolls back (then it is dropped).
pub struct Writer {
    pub(super) conn: Connection,
    pub(super) devices: HashMap<DeviceId, i64>,
    pub(super) metrics: HashMap<String, u64>,
    /// Where the last [`Writer::prune`] stopped in the `sample` table: the
    /// device to continue from.
    pub(super) prune_cursor: Option<i64>,
    body: Vec<u8>,
    /// Rows in `sample_new`, and when they were last merged into `sample`.
    staged: usize,
    last_merge: Instant,
    merge_failed: bool,
}

/// `sample_new` is merged into `sample` once it holds this many rows, or
/// [`MERGE_EVERY`] after the last merge when it holds any. The bigger the
/// merge, the more samples of a device share one page write; the smaller
/// `sample_new`, the fewer of its index pages a commit touches. 16,384
/// rows is 16 s of a 1,000-device fleet at one sample a second.
const MERGE_ROWS: usize = 16_384;
const MERGE_EVERY: Duration = Duration::from_secs(10);

impl Writer {
    pub(super) fn new(conn: Connection) -> Result<Self, HistoryError> {
        let staged: i64 = conn.query_row("SELECT count(*) FROM sample_new", [], |r| r.get(0))?;
        Ok(Writer {
            conn,
            devices: HashMap::new(),
            metrics: HashMap::new(),
            prune_cursor: None,
            body: Vec::new(),
            staged: usize::try_from(staged).unwrap_or(usize::MAX),
            last_merge: Instant::now(),
            merge_failed: false,
        })
    }

    /// Whether [`Writer::merge`] is due: `sample_new` is big, or has rows
    /// and the last merge is [`MERGE_EVERY`] old.
    ///
    /// After a failed merge only time makes the next one due, so a disk
    /// that refuses is not retried after every commit.
    pub fn merge_due(&self) -> bool {
        self.staged > 0
            && ((self.staged >= MERGE_ROWS && !self.merge_failed)
                || self.last_merge.elapsed() >= MERGE_EVERY)
    }

    /// Whether `sample_new` holds rows.
    pub(super) fn merge_pending(&self) -> bool {
        self.staged > 0
    }

    /// When the next merge falls due without more commits (None: nothing
    /// is staged).
    pub fn merge_deadline(&self) -> Option<Instant> {
        (self.staged > 0).then(|| self.last_merge + MERGE_EVERY)
    }

    /// Move every row of `sample_new` into `sample`, in key order, in one
    /// transaction. Returns the rows moved.
    pub fn merge(&mut self) -> Result<usize, HistoryError> {
        self.last_merge = Instant::now();
        let result = self.merge_inner();
        self.merge_failed = result.is_err();
        result
    }

    fn merge_inner(&mut self) -> Result<usize, HistoryError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // REPLACE: a sample redelivered after its first copy was merged
        // replaces that copy, as it would have in one table.
        let moved = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO sample (device_id, ts, seq, boot, mono, body)
                 SELECT device_id, ts, seq, boot, mono, body FROM sample_new
                 ORDER BY device_id, ts, seq",
            )?
            .execute([])?;
        tx.prepare_cached("DELETE FROM sample_new")?.execute([])?;
        tx.commit()?;
        self.staged = 0;
        Ok(moved)
    }

    /// Apply `batch` in one transaction: either all of it is stored, or
    /// nothing is and the error says why. With [`super::Durability::Full`]
    /// it is on disk when this returns.
    pub fn commit(&mut self, batch: &WriteBatch) -> Result<CommitStats, HistoryError> {
        self.commit_all(std::slice::from_ref(batch))
    }

    /// Apply `batches` in order in one transaction, as if each were
    /// committed on its own but with one sync to disk for all of them
    /// (group commit: the store takes every batch that queued while it
    /// was writing the previous one).
    pub fn commit_all(&mut self, batches: &[WriteBatch]) -> Result<CommitStats, HistoryError> {
        let result = self.commit_inner(batches, None);
        if result.is_err() {
            self.devices.clear();
            self.metrics.clear();
        }
        result
    }

    /// Apply `batch` in one transaction, setting aside each row the
    /// database refuses (a value out of its range, a constraint) instead of
    /// failing the whole batch: every other row is stored, and the refused
    /// ones are returned and kept in the quarantine. Only a failure of the
    /// store itself ([`HistoryError::is_store_failure`]) fails it.
    ///
    /// Slower than [`Writer::commit`] (a savepoint a row): for the batch a
    /// commit found one bad row in, not for every batch.
    pub fn commit_salvaging(
        &mut self,
        batch: &WriteBatch,
        now: crate::model::Millis,
    ) -> Result<(CommitStats, Vec<Dropped>), HistoryError> {
        let mut dropped = Vec::new();
        let result = self.commit_inner(std::slice::from_ref(batch), Some((&mut dropped, now)));
        if result.is_err() {
            self.devices.clear();
            self.metrics.clear();
        }
        result.map(|stats| (stats, dropped))
    }

    fn commit_inner(
        &mut self,
        batches: &[WriteBatch],
        salvage: Option<(&mut Vec<Dropped>, crate::model::Millis)>,
    ) -> Result<CommitStats, HistoryError> {
        let Writer {
            conn,
            devices,
            metrics,
            body,
            ..
        } = self;
        // IMMEDIATE takes the write lock up front, so a busy database is
        // reported (after the busy timeout) before any work is done.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ids = Ids {
            tx: &tx,
            devices,
            metrics,
            body,
            salvage,
        };
        let mut stats = CommitStats::default();
        for batch in batches {
            apply(&mut ids, batch, &mut stats)?;
        }
        if let Some((dropped, now)) = ids.salvage.take() {
            // Kept beside the rows that were stored, in the same commit.
            let rows: Vec<RefusedRow> = dropped.iter().map(|d| d.quarantined(now)).collect();
            insert_refused(&mut ids, &rows)?;
        }
        tx.commit()?;
        self.staged = self.staged.saturating_add(stats.samples);
        Ok(stats)
    }
}

/// A row the database refused while salvaging a batch
/// ([`Writer::commit_salvaging`]): what it was and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    pub device: DeviceId,
    /// The row, e.g. `sample seq 12`.
    pub what: String,
    pub error: String,
}

impl Dropped {
    fn quarantined(&self, now: crate::model::Millis) -> RefusedRow {
        RefusedRow {
            ts: now,
            topic: None,
            device: Some(self.device.to_string()),
            reason: "store_refused".into(),
            detail: format!("{}: {}", self.what, self.error),
            size: 0,
            payload: Vec::new(),
        }
    }
}

/// One batch's rows, in the order its fields promise (a checkpoint drops
/// the journal written before this batch's own entries). Each row goes
/// through [`row`], which sets it aside when salvaging.
fn apply(
    ids: &mut Ids<'_>,
    batch: &WriteBatch,
    stats: &mut CommitStats,
) -> Result<(), HistoryError> {
    for d in &batch.devices {
        row(
            ids,
            &d.device,
            || "device record".into(),
            |ids| upsert_device(ids, d),
        )?;
    }
    for s in &batch.samples {
        let what = || format!("sample seq {}", s.seq);
        if let Some(points) = row(ids, &s.device, what, |ids| insert_sample(ids, s))? {
            stats.points += points;
            stats.samples += usize::from(points > 0);
        }
    }
    for e in &batch.events {
        let what = || format!("event seq {}", e.seq);
        stats.events += row(ids, &e.device, what, |ids| insert_event(ids, e))?.unwrap_or(0);
    }
    for p in &batch.presence {
        row(
            ids,
            &p.device,
            || "presence change".into(),
            |ids| insert_presence(ids, p),
        )?;
    }
    for a in &batch.alerts {
        let what = || format!("alert {} {}", a.rule, a.change);
        row(ids, &a.device, what, |ids| insert_alert(ids, a))?;
    }
    for s in &batch.state {
        row(
            ids,
            &s.device,
            || format!("state {}", s.kind),
            |ids| put_state(ids, s),
        )?;
    }
    if batch.checkpoint {
        ids.tx
            .prepare_cached("DELETE FROM state_journal")?
            .execute([])?;
    }
    if !batch.journal.is_empty() {
        append_journal(ids, &batch.journal)?;
    }
    for c in &batch.commands {
        let what = || format!("command {}", c.id);
        row(ids, &c.device, what, |ids| insert_command(ids, c))?;
    }
    for s in &batch.statuses {
        let what = || format!("command status {}", s.command);
        row(ids, &s.device, what, |ids| insert_status(ids, s))?;
    }
    for c in &batch.corrections {
        let what = || format!("time correction of boot {}", c.boot);
        stats.corrected += row(ids, &c.device, what, |ids| correct(ids, c))?.unwrap_or(0);
    }
    for d in &batch.forget {
        stats.forgotten += forget(ids, d)?;
    }
    if !batch.refused.is_empty() {
        insert_refused(ids, &batch.refused)?;
    }
    Ok(())
}

/// Write one row. When salvaging, the row gets a savepoint: if the
/// database refuses what it holds, it is rolled back alone and recorded
/// as dropped (`None`); a failure of the store itself is returned as ever.
fn row<T>(
    ids: &mut Ids<'_>,
    device: &DeviceId,
    what: impl FnOnce() -> String,
    write: impl FnOnce(&mut Ids<'_>) -> Result<T, HistoryError>,
) -> Result<Option<T>, HistoryError> {
    if ids.salvage.is_none() {
        return write(ids).map(Some);
    }
    ids.tx.execute_batch("SAVEPOINT picket_row")?;
    match write(ids) {
        Ok(v) => {
            ids.tx.execute_batch("RELEASE picket_row")?;
            Ok(Some(v))
        }
        Err(e) if e.is_store_failure() => Err(e),
        Err(e) => {
            ids.tx
                .execute_batch("ROLLBACK TO picket_row; RELEASE picket_row")?;
            // Ids the rolled-back row created are gone again.
            ids.devices.clear();
            ids.metrics.clear();
            if let Some((dropped, _)) = ids.salvage.as_mut() {
                dropped.push(Dropped {
                    device: device.clone(),
                    what: what(),
                    error: e.to_string(),
                });
            }
            Ok(None)
        }
    }
}

/// Append to the quarantine and keep only its newest rows.
fn insert_refused(ids: &mut Ids<'_>, rows: &[RefusedRow]) -> Result<(), HistoryError> {
    let mut insert = ids.tx.prepare_cached(
        "INSERT INTO refused (ts, topic, device, reason, detail, size, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for r in rows {
        let kept = &r.payload[..r.payload.len().min(REFUSED_KEEP_BYTES)];
        insert.execute(params![
            to_i64("refusal time", r.ts)?,
            r.topic,
            r.device,
            r.reason,
            r.detail,
            to_i64("payload size", r.size)?,
            kept
        ])?;
    }
    ids.tx
        .prepare_cached("DELETE FROM refused WHERE id <= (SELECT max(id) FROM refused) - ?1")?
        .execute([REFUSED_KEEP_ROWS as i64])?;
    Ok(())
}

/// Dictionary lookups inside a transaction, and a buffer for encoding
/// sample bodies.
pub(super) struct Ids<'a> {
    pub(super) tx: &'a Transaction<'a>,
    devices: &'a mut HashMap<DeviceId, i64>,
    metrics: &'a mut HashMap<String, u64>,
    body: &'a mut Vec<u8>,
    /// Salvaging: the rows set aside so far, and the time to quarantine
    /// them under.
    salvage: Option<(&'a mut Vec<Dropped>, crate::model::Millis)>,
}

impl Ids<'_> {
    pub(super) fn device(&mut self, device: &DeviceId) -> Result<i64, HistoryError> {
        if let Some(&id) = self.devices.get(device) {
            return Ok(id);
        }
        let id = dictionary(self.tx, "device", device.as_str())?;
        self.devices.insert(device.clone(), id);
        Ok(id)
    }

    fn known_device(&mut self, device: &DeviceId) -> Result<Option<i64>, HistoryError> {
        if let Some(&id) = self.devices.get(device) {
            return Ok(Some(id));
        }
        Ok(self
            .tx
            .prepare_cached("SELECT id FROM device WHERE name = ?1")?
            .query_row([device.as_str()], |r| r.get(0))
            .optional()?)
    }

    fn metric(&mut self, name: &str) -> Result<u64, HistoryError> {
        if let Some(&id) = self.metrics.get(name) {
            return Ok(id);
        }
        let id = dictionary(self.tx, "metric", name)?;
        let id = u64::try_from(id).map_err(|_| HistoryError::Corrupt {
            what: "metric id",
            reason: format!("negative id {id}"),
        })?;
        self.metrics.insert(name.to_string(), id);
        Ok(id)
    }
}

fn insert_command(ids: &mut Ids<'_>, c: &commands::CommandRow) -> Result<(), HistoryError> {
    let device = ids.device(&c.device)?;
    ids.tx
        .prepare_cached(
            "INSERT OR IGNORE INTO command (id, device_id, name, args, issued, expires, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            c.id,
            device,
            c.name,
            c.args.to_string(),
            to_i64("issue time", c.issued)?,
            to_i64("expiry", c.expires)?,
            c.source
        ])?;
    Ok(())
}

fn insert_status(ids: &mut Ids<'_>, s: &commands::StatusRow) -> Result<(), HistoryError> {
    let device = ids.device(&s.device)?;
    // Redelivered replies (QoS 1) carry the same state, chunk and time.
    ids.tx
        .prepare_cached(
            "INSERT OR IGNORE INTO command_status
                (command_id, state, chunk, ts, received, device_id, reason, output)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            s.command,
            commands::state_str(s.state),
            s.chunk.map_or(-1, i64::from),
            to_i64("status time", s.ts)?,
            to_i64("receive time", s.received)?,
            device,
            s.reason,
            s.output
        ])?;
    Ok(())
}

fn dictionary(tx: &Transaction<'_>, table: &str, name: &str) -> Result<i64, HistoryError> {
    let found: Option<i64> = tx
        .prepare_cached(&format!("SELECT id FROM {table} WHERE name = ?1"))?
        .query_row([name], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    tx.prepare_cached(&format!("INSERT INTO {table} (name) VALUES (?1)"))?
        .execute([name])?;
    Ok(tx.last_insert_rowid())
}

fn upsert_device(ids: &mut Ids<'_>, d: &DeviceRow) -> Result<(), HistoryError> {
    let id = ids.device(&d.device)?;
    let seen = to_i64("seen", d.seen)?;
    ids.tx
        .prepare_cached(
            "UPDATE device SET
                first_seen = coalesce(first_seen, ?2),
                last_seen = max(coalesce(last_seen, ?2), ?2),
                model = coalesce(?3, model),
                version = coalesce(?4, version)
             WHERE id = ?1",
        )?
        .execute(params![id, seen, d.model, d.version])?;
    if !d.labels.is_empty() {
        ids.tx
            .prepare_cached("DELETE FROM device_label WHERE device_id = ?1")?
            .execute([id])?;
        let mut insert = ids.tx.prepare_cached(
            "INSERT INTO device_label (device_id, key, value) VALUES (?1, ?2, ?3)",
        )?;
        for (k, v) in &d.labels {
            insert.execute(params![id, k, v])?;
        }
    }
    Ok(())
}

fn insert_sample(ids: &mut Ids<'_>, s: &SampleRows) -> Result<usize, HistoryError> {
    if s.points.is_empty() {
        // Nothing to store, and nothing a correction would move.
        return Ok(0);
    }
    let device = ids.device(&s.device)?;
    let ts = to_i64("sample time", s.ts)?;
    let seq = to_i64("sample seq", s.seq)?;
    let (boot, mono) = match &s.unsynced {
        Some(u) => (
            Some(u.boot.as_str()),
            Some(to_i64("monotonic time", u.mono)?),
        ),
        None => (None, None),
    };
    let mut points = Vec::with_capacity(s.points.len());
    for p in &s.points {
        points.push((ids.metric(p.metric.as_str())?, p.value));
    }
    // A metric named twice in one sample keeps its last value, as a second
    // write of the same point always did: stable sort, then keep the last
    // of each run.
    points.sort_by_key(|&(id, _)| id);
    points.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            *earlier = *later;
            true
        } else {
            false
        }
    });
    ids.body.clear();
    body::encode(&points, ids.body).map_err(|e| HistoryError::OutOfRange {
        what: "metric id",
        value: e.to_string(),
    })?;
    // REPLACE: a redelivered sample (same device, time and seq) rewrites
    // its row instead of adding one (a copy already merged into `sample`
    // is replaced by the merge).
    ids.tx
        .prepare_cached(
            "INSERT OR REPLACE INTO sample_new (device_id, ts, seq, boot, mono, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![device, ts, seq, boot, mono, &ids.body[..]])?;
    Ok(points.len())
}

fn insert_event(ids: &mut Ids<'_>, e: &EventRow) -> Result<usize, HistoryError> {
    let device = ids.device(&e.device)?;
    let (boot, mono) = match &e.unsynced {
        Some(u) => (
            Some(u.boot.as_str()),
            Some(to_i64("monotonic time", u.mono)?),
        ),
        None => (None, None),
    };
    Ok(ids
        .tx
        .prepare_cached(
            "INSERT OR REPLACE INTO event (device_id, seq, ts, kind, body, boot, mono)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            device,
            to_i64("event seq", e.seq)?,
            to_i64("event time", e.ts)?,
            e.kind,
            e.body.to_string(),
            boot,
            mono
        ])?)
}

fn insert_presence(ids: &mut Ids<'_>, p: &PresenceRow) -> Result<(), HistoryError> {
    let device = ids.device(&p.device)?;
    ids.tx
        .prepare_cached(
            "INSERT INTO presence (device_id, ts, online, reason, session)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            device,
            to_i64("presence time", p.ts)?,
            p.online,
            p.reason,
            p.session
        ])?;
    Ok(())
}

fn insert_alert(ids: &mut Ids<'_>, a: &AlertRow) -> Result<(), HistoryError> {
    let device = ids.device(&a.device)?;
    ids.tx
        .prepare_cached(
            "INSERT INTO alert_log (device_id, ts, rule, instance, severity, change, value, message, remedy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            device,
            to_i64("alert time", a.ts)?,
            a.rule,
            a.instance,
            severity_str(a.severity),
            a.change,
            a.value,
            a.message,
            a.remedy
        ])?;
    Ok(())
}

fn put_state(ids: &mut Ids<'_>, s: &StateRow) -> Result<(), HistoryError> {
    match &s.value {
        Some(value) => {
            let device = ids.device(&s.device)?;
            ids.tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO state (device_id, kind, key, value)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![device, s.kind, s.key, value])?;
        }
        None => {
            if let Some(device) = ids.known_device(&s.device)? {
                ids.tx
                    .prepare_cached(
                        "DELETE FROM state WHERE device_id = ?1 AND kind = ?2 AND key = ?3",
                    )?
                    .execute(params![device, s.kind, s.key])?;
            }
        }
    }
    Ok(())
}

/// One journal row for the commit: `varint(device id) varint(len) value`
/// per entry, in the engine's order.
fn append_journal(ids: &mut Ids<'_>, entries: &[JournalEntry]) -> Result<(), HistoryError> {
    let mut body = std::mem::take(ids.body);
    body.clear();
    for e in entries {
        let device = ids.device(&e.device)?;
        varint::put(&mut body, device as u64);
        varint::put(&mut body, e.value.len() as u64);
        body.extend_from_slice(&e.value);
    }
    let result = ids
        .tx
        .prepare_cached("INSERT INTO state_journal (body) VALUES (?1)")
        .and_then(|mut stmt| stmt.execute([&body[..]]));
    *ids.body = body;
    result?;
    Ok(())
}

/// Corrected time of a row taken `mono` ms after boot. Saturates at 0 (an
/// offset that would put a row before 1970 is nonsense from the device, and
/// refusing it would make every retry of the batch fail too).
fn corrected(mono: i64, offset_ms: i64) -> i64 {
    mono.saturating_add(offset_ms).max(0)
}

fn correct(ids: &mut Ids<'_>, c: &Correction) -> Result<usize, HistoryError> {
    let Some(device) = ids.known_device(&c.device)? else {
        return Ok(0);
    };
    // `seq` is in the key, so a corrected row never lands on another
    // sample's row, whatever times the pending rows move between; the only
    // row it can meet is its own copy, written corrected by a redelivery
    // after the offset was learnt: the same sample, so REPLACE. (A copy in
    // the other table is replaced when `sample_new` is merged.)
    let mut moved = 0;
    for (select, update) in [
        (
            "SELECT ts, seq, mono FROM sample WHERE device_id = ?1 AND boot = ?2",
            "UPDATE OR REPLACE sample SET ts = ?4, boot = NULL, mono = NULL
             WHERE device_id = ?1 AND ts = ?2 AND seq = ?3",
        ),
        (
            "SELECT ts, seq, mono FROM sample_new WHERE device_id = ?1 AND boot = ?2",
            "UPDATE OR REPLACE sample_new SET ts = ?4, boot = NULL, mono = NULL
             WHERE device_id = ?1 AND ts = ?2 AND seq = ?3",
        ),
    ] {
        let pending: Vec<(i64, i64, i64)> = ids
            .tx
            .prepare_cached(select)?
            .query_map(params![device, c.boot], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut update = ids.tx.prepare_cached(update)?;
        for (ts, seq, mono) in &pending {
            update.execute(params![device, ts, seq, corrected(*mono, c.offset_ms)])?;
        }
        moved += pending.len();
    }
    let events = ids
        .tx
        .prepare_cached(
            "UPDATE event SET ts = max(0, mono + ?3), boot = NULL, mono = NULL
             WHERE device_id = ?1 AND boot = ?2",
        )?
        .execute(params![device, c.boot, c.offset_ms])?;
    Ok(moved + events)
}

fn forget(ids: &mut Ids<'_>, device: &DeviceId) -> Result<usize, HistoryError> {
    let Some(id) = ids.known_device(device)? else {
        return Ok(0);
    };
    let mut deleted = 0;
    for table in [
        "sample",
        "sample_new",
        "event",
        "presence",
        "alert_log",
        "state",
        "device_label",
        "command",
        "command_status",
    ] {
        deleted += ids
            .tx
            .prepare_cached(&format!("DELETE FROM {table} WHERE device_id = ?1"))?
            .execute([id])?;
    }
    deleted += ids
        .tx
        .prepare_cached("DELETE FROM device WHERE id = ?1")?
        .execute([id])?;
    ids.devices.remove(device);
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::corrected;

    #[test]
    fn corrected_times() {
        let table = [
            (5_000, 1_700_000_000_000, 1_700_000_005_000),
            (5_000, -1_000, 4_000),
            (5_000, -9_000, 0),
            (i64::MAX, 1, i64::MAX),
        ];
        for (mono, offset, want) in table {
            assert_eq!(corrected(mono, offset), want, "{mono} + {offset}");
        }
    }
}
