//! Read-only access, shared by the API and `/metrics` handlers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use picket_protocol::DeviceId;
use std::collections::BTreeSet;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::bucket::Buckets;
use super::rows::{
    AlertRow, DeviceRecord, EventRecord, HistoryPoint, PresenceRow, RefusedRow, Unsynced,
};
use super::snapshot;
use super::{HistoryError, body, device_id, from_i64, millis, parse_severity, schema, to_i64};
use crate::model::{Metric, Millis};

/// Connections kept open between calls. Each call takes one (or opens one)
/// and gives it back, so concurrent calls from `spawn_blocking` never
/// share a connection, and the statements each one prepared stay cached.
const IDLE_CONNECTIONS: usize = 4;

/// A handle on the history for reading, cheap to clone and usable from any
/// thread. The writer must have created the database first.
#[derive(Clone)]
pub struct Reader {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, HistoryError> {
        let conn = schema::open_reader(path)?;
        Ok(Reader {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                idle: Mutex::new(vec![conn]),
            }),
        })
    }

    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, HistoryError>,
    ) -> Result<T, HistoryError> {
        // A panic while holding the lock leaves a Vec of connections, which
        // is still valid.
        let taken = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let conn = match taken {
            Some(c) => c,
            None => schema::open_reader(&self.inner.path)?,
        };
        let result = f(&conn);
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
        result
    }

    /// Points of one metric of one device with `from <= ts < to`, oldest
    /// first. Without `step`: the raw points, at most `limit`. With `step`:
    /// averages over buckets of `step` ms aligned to `from`, at most `limit`
    /// buckets.
    pub fn history(
        &self,
        device: &DeviceId,
        metric: &Metric,
        from: Millis,
        to: Millis,
        step: Option<Millis>,
        limit: usize,
    ) -> Result<Vec<HistoryPoint>, HistoryError> {
        if step == Some(0) {
            return Err(HistoryError::Query("step must be positive"));
        }
        let lo = to_i64("from", from)?;
        let hi = to_i64("to", to)?;
        self.with(|conn| {
            let Some(metric) = metric_id(conn, metric)? else {
                return Ok(Vec::new());
            };
            // The device's samples in the window, each read for one metric:
            // one range scan of the device's rows in each table, merged in
            // time order.
            let mut stmt = conn.prepare_cached(HISTORY_SQL)?;
            let mut rows = stmt.query(params![device.as_str(), lo, hi])?;
            // A sample redelivered after its first copy was merged is in
            // both tables until the next merge: the same sample, once.
            let mut last: Option<(i64, i64)> = None;
            let mut next = move || -> Result<Option<(Millis, f64)>, HistoryError> {
                while let Some(row) = rows.next()? {
                    let key = (row.get(0)?, row.get(1)?);
                    if last.replace(key) == Some(key) {
                        continue;
                    }
                    if let Some(value) = body::find(sample_body(row, 2)?, metric)? {
                        return Ok(Some((millis(key.0)?, value)));
                    }
                }
                Ok(None)
            };
            match step {
                None => {
                    let mut out = Vec::new();
                    while out.len() < limit {
                        let Some((ts, value)) = next()? else { break };
                        out.push(HistoryPoint {
                            ts,
                            value,
                            min: value,
                            max: value,
                            count: 1,
                        });
                    }
                    Ok(out)
                }
                Some(step) => {
                    let mut buckets = Buckets::new(from, step, limit);
                    while let Some((ts, value)) = next()? {
                        if !buckets.push(ts, value) {
                            break;
                        }
                    }
                    Ok(buckets.finish())
                }
            }
        })
    }

    /// The metrics a device has points of, by name. Reads every stored
    /// sample of the device (a metric may appear in one sample only), so
    /// its cost grows with the device's history: for tools and tests, not
    /// for a request path.
    pub fn metrics_of(&self, device: &DeviceId) -> Result<Vec<String>, HistoryError> {
        self.with(|conn| {
            let mut ids = BTreeSet::new();
            {
                let mut stmt = conn.prepare_cached(
                    "SELECT body FROM sample
                     WHERE device_id = (SELECT id FROM device WHERE name = ?1)
                     UNION ALL
                     SELECT body FROM sample_new
                     WHERE device_id = (SELECT id FROM device WHERE name = ?1)",
                )?;
                let mut rows = stmt.query([device.as_str()])?;
                // Consecutive samples of a device mostly carry the same
                // metrics: only a list that changed goes into the set.
                let (mut last, mut current) = (Vec::new(), Vec::new());
                while let Some(row) = rows.next()? {
                    current.clear();
                    for entry in body::Entries::new(sample_body(row, 0)?) {
                        current.push(entry?.0);
                    }
                    if current != last {
                        ids.extend(current.iter().copied());
                        std::mem::swap(&mut current, &mut last);
                    }
                }
            }
            let mut stmt = conn.prepare_cached("SELECT name FROM metric WHERE id = ?1")?;
            let mut names = Vec::with_capacity(ids.len());
            for id in ids {
                let id = to_i64("metric id", id)?;
                if let Some(name) = stmt.query_row([id], |r| r.get(0)).optional()? {
                    names.push(name);
                }
            }
            names.sort();
            Ok(names)
        })
    }

    /// Events of a device with `from <= ts < to`, newest first, at most
    /// `limit`.
    pub fn events(
        &self,
        device: &DeviceId,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> Result<Vec<EventRecord>, HistoryError> {
        let (lo, hi) = (to_i64("from", from)?, to_i64("to", to)?);
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, ts, kind, body, boot, mono FROM event
                 WHERE device_id = (SELECT id FROM device WHERE name = ?1)
                   AND ts >= ?2 AND ts < ?3
                 ORDER BY ts DESC, seq DESC LIMIT ?4",
            )?;
            let mut rows = stmt.query(params![device.as_str(), lo, hi, sql_limit(limit)])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let body: String = r.get(3)?;
                let boot: Option<String> = r.get(4)?;
                let mono: Option<i64> = r.get(5)?;
                out.push(EventRecord {
                    seq: from_i64("event seq", r.get(0)?)?,
                    ts: millis(r.get(1)?)?,
                    kind: r.get(2)?,
                    body: serde_json::from_str(&body).map_err(|e| HistoryError::Corrupt {
                        what: "event body",
                        reason: e.to_string(),
                    })?,
                    unsynced: match (boot, mono) {
                        (Some(boot), Some(mono)) => Some(Unsynced {
                            boot,
                            mono: from_i64("monotonic time", mono)?,
                        }),
                        _ => None,
                    },
                });
            }
            Ok(out)
        })
    }

    /// Presence changes of a device, newest first, at most `limit`.
    pub fn presence(
        &self,
        device: &DeviceId,
        limit: usize,
    ) -> Result<Vec<PresenceRow>, HistoryError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT ts, online, reason, session FROM presence
                 WHERE device_id = (SELECT id FROM device WHERE name = ?1)
                 ORDER BY ts DESC, id DESC LIMIT ?2",
            )?;
            let mut rows = stmt.query(params![device.as_str(), sql_limit(limit)])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(snapshot::presence_row(device.clone(), r)?);
            }
            Ok(out)
        })
    }

    /// The alert log from `from` on, of one device or of all, newest first,
    /// at most `limit` lines.
    pub fn alert_log(
        &self,
        device: Option<&DeviceId>,
        from: Millis,
        limit: usize,
    ) -> Result<Vec<AlertRow>, HistoryError> {
        let lo = to_i64("from", from)?;
        self.with(|conn| {
            // Two statements rather than `?1 IS NULL OR ...`, so each one
            // gets the index that fits it.
            let mut stmt;
            let mut rows = match device {
                Some(d) => {
                    stmt = conn.prepare_cached(
                        "SELECT device.name, rule, instance, severity, change, value, message, ts, remedy
                         FROM alert_log JOIN device ON device.id = alert_log.device_id
                         WHERE alert_log.device_id = (SELECT id FROM device WHERE name = ?1)
                           AND ts >= ?2
                         ORDER BY ts DESC, alert_log.id DESC LIMIT ?3",
                    )?;
                    stmt.query(params![d.as_str(), lo, sql_limit(limit)])?
                }
                None => {
                    stmt = conn.prepare_cached(
                        "SELECT device.name, rule, instance, severity, change, value, message, ts, remedy
                         FROM alert_log JOIN device ON device.id = alert_log.device_id
                         WHERE ts >= ?1
                         ORDER BY ts DESC, alert_log.id DESC LIMIT ?2",
                    )?;
                    stmt.query(params![lo, sql_limit(limit)])?
                }
            };
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let severity: String = r.get(3)?;
                out.push(AlertRow {
                    device: device_id(r.get(0)?)?,
                    rule: r.get(1)?,
                    instance: r.get(2)?,
                    severity: parse_severity(&severity)?,
                    change: r.get(4)?,
                    value: r.get(5)?,
                    message: r.get(6)?,
                    ts: millis(r.get(7)?)?,
                    remedy: r.get(8)?,
                });
            }
            Ok(out)
        })
    }

    /// Every device the engine recorded, by id.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, HistoryError> {
        self.with(snapshot::devices)
    }

    /// The quarantine, newest first, at most `limit` entries.
    pub fn refused(&self, limit: usize) -> Result<Vec<RefusedRow>, HistoryError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT ts, topic, device, reason, detail, size, payload FROM refused
                 ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([sql_limit(limit)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get::<_, i64>(5)?,
                    r.get(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (ts, topic, device, reason, detail, size, payload) = row?;
                out.push(RefusedRow {
                    ts: millis(ts)?,
                    topic,
                    device,
                    reason,
                    detail,
                    size: from_i64("payload size", size)?,
                    payload,
                });
            }
            Ok(out)
        })
    }
}

fn metric_id(conn: &Connection, metric: &Metric) -> Result<Option<u64>, HistoryError> {
    let id: Option<i64> = conn
        .prepare_cached("SELECT id FROM metric WHERE name = ?1")?
        .query_row([metric.as_str()], |r| r.get(0))
        .optional()?;
    id.map(|id| from_i64("metric id", id)).transpose()
}

/// The `body` column of a sample row, which must be a blob.
/// A device's samples in a time window, from both sample tables, in time
/// order (see `schema.rs`).
pub(super) const HISTORY_SQL: &str = "SELECT ts, seq, body FROM sample
     WHERE device_id = (SELECT id FROM device WHERE name = ?1)
       AND ts >= ?2 AND ts < ?3
     UNION ALL
     SELECT ts, seq, body FROM sample_new
     WHERE device_id = (SELECT id FROM device WHERE name = ?1)
       AND ts >= ?2 AND ts < ?3
     ORDER BY ts, seq";

fn sample_body<'r>(row: &'r Row<'_>, column: usize) -> Result<&'r [u8], HistoryError> {
    match row.get_ref(column)? {
        ValueRef::Blob(b) => Ok(b),
        other => Err(HistoryError::Corrupt {
            what: "sample body",
            reason: format!("stored as {}, not a blob", other.data_type()),
        }),
    }
}

/// SQLite's LIMIT takes an i64; a larger `usize` means "no limit".
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
