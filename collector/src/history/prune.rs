//! Retention: deleting what is older than a cutoff, a bounded number of
//! rows at a time so that ingest never waits long behind it.

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::writer::Writer;
use super::{HistoryError, to_i64};
use crate::model::Millis;

impl Writer {
    /// Delete up to `max_rows` rows older than `cutoff` (points, events,
    /// presence changes, alert log lines and the command log) in one transaction, and return
    /// how many went. Fewer than `max_rows` means nothing older than
    /// `cutoff` is left; the caller loops (committing batches in between)
    /// until then.
    ///
    /// The newest presence row of a device is kept however old: it is the
    /// device's last known state, which the engine reads at start-up.
    pub fn prune(&mut self, cutoff: Millis, max_rows: usize) -> Result<usize, HistoryError> {
        if max_rows == 0 {
            return Ok(0);
        }
        let cutoff = to_i64("cutoff", cutoff)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut budget = max_rows;
        for sql in [
            "DELETE FROM event WHERE (device_id, seq) IN
                (SELECT device_id, seq FROM event WHERE ts < ?1 LIMIT ?2)",
            "DELETE FROM presence WHERE id IN
                (SELECT id FROM presence p WHERE ts < ?1 AND id <>
                    (SELECT id FROM presence q WHERE q.device_id = p.device_id
                     ORDER BY ts DESC, id DESC LIMIT 1)
                 LIMIT ?2)",
            "DELETE FROM alert_log WHERE id IN
                (SELECT id FROM alert_log WHERE ts < ?1 LIMIT ?2)",
            "DELETE FROM command WHERE id IN
                (SELECT id FROM command WHERE issued < ?1 LIMIT ?2)",
            "DELETE FROM command_status WHERE id IN
                (SELECT id FROM command_status WHERE received < ?1 LIMIT ?2)",
            // Pending corrections of points that are gone: small table.
            "DELETE FROM unsynced_point WHERE (device_id, boot, metric_id, ts) IN
                (SELECT device_id, boot, metric_id, ts FROM unsynced_point WHERE ts < ?1 LIMIT ?2)",
        ] {
            budget -= tx
                .prepare_cached(sql)?
                .execute(params![cutoff, budget as i64])?;
            if budget == 0 {
                tx.commit()?;
                return Ok(max_rows);
            }
        }
        let (cursor, left) = prune_points(&tx, self.prune_cursor, cutoff, budget)?;
        tx.commit()?;
        self.prune_cursor = cursor;
        Ok(max_rows - left)
    }
}

/// Walk the series from `cursor` and delete their rows older than `cutoff`,
/// `budget` rows at most. Returns where to continue (None: the walk
/// reached the last series) and the unused budget. Each step is an index
/// seek: the next series, then the oldest rows of that series.
fn prune_points(
    tx: &Transaction<'_>,
    cursor: Option<(i64, i64)>,
    cutoff: i64,
    mut budget: usize,
) -> Result<(Option<(i64, i64)>, usize), HistoryError> {
    let mut series = match cursor {
        Some(c) => Some(c),
        None => next_series(tx, None)?,
    };
    while let Some((device, metric)) = series {
        // The `budget`-th oldest row below the cutoff, if there are that
        // many: deleting below it takes exactly `budget` rows.
        let bound: Option<i64> = tx
            .prepare_cached(
                "SELECT ts FROM point WHERE device_id = ?1 AND metric_id = ?2 AND ts < ?3
                 ORDER BY ts LIMIT 1 OFFSET ?4",
            )?
            .query_row(params![device, metric, cutoff, budget as i64], |r| r.get(0))
            .optional()?;
        let deleted = tx
            .prepare_cached(
                "DELETE FROM point WHERE device_id = ?1 AND metric_id = ?2 AND ts < ?3",
            )?
            .execute(params![device, metric, bound.unwrap_or(cutoff)])?;
        budget -= deleted.min(budget);
        if budget == 0 {
            return Ok((Some((device, metric)), 0));
        }
        series = next_series(tx, Some((device, metric)))?;
    }
    Ok((None, budget))
}

fn next_series(
    tx: &Transaction<'_>,
    after: Option<(i64, i64)>,
) -> Result<Option<(i64, i64)>, HistoryError> {
    let pair = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
    let (device, metric) = match after {
        Some(a) => a,
        None => {
            return Ok(tx
                .prepare_cached(
                    "SELECT device_id, metric_id FROM point ORDER BY device_id, metric_id LIMIT 1",
                )?
                .query_row([], pair)
                .optional()?);
        }
    };
    let same_device = tx
        .prepare_cached(
            "SELECT device_id, metric_id FROM point WHERE device_id = ?1 AND metric_id > ?2
             ORDER BY metric_id LIMIT 1",
        )?
        .query_row(params![device, metric], pair)
        .optional()?;
    if same_device.is_some() {
        return Ok(same_device);
    }
    Ok(tx
        .prepare_cached(
            "SELECT device_id, metric_id FROM point WHERE device_id > ?1
             ORDER BY device_id, metric_id LIMIT 1",
        )?
        .query_row([device], pair)
        .optional()?)
}
