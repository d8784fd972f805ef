//! Retention: deleting what is older than a cutoff, a bounded number of
//! rows at a time so that ingest never waits long behind it.

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::writer::Writer;
use super::{HistoryError, to_i64};
use crate::model::Millis;

impl Writer {
    /// Delete up to `max_rows` rows older than `cutoff` (samples, events,
    /// presence changes, alert log lines and the command log) in one
    /// transaction, and return how many went. Fewer than `max_rows` means nothing older than
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
        // Old rows may be among the new ones (a backlog replayed late):
        // pruning goes by `sample` alone, so they move there first.
        if self.merge_pending() {
            self.merge()?;
        }
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
        ] {
            budget -= tx
                .prepare_cached(sql)?
                .execute(params![cutoff, budget as i64])?;
            if budget == 0 {
                tx.commit()?;
                return Ok(max_rows);
            }
        }
        let (cursor, left) = prune_samples(&tx, self.prune_cursor, cutoff, budget)?;
        tx.commit()?;
        self.prune_cursor = cursor;
        Ok(max_rows - left)
    }
}

/// Walk the devices from `cursor` and delete their samples older than
/// `cutoff`, `budget` rows at most. Returns where to continue (None: the
/// walk reached the last device) and the unused budget. Each step is an
/// index seek: the next device, then the oldest rows of that device. A
/// sample still waiting for a correction goes by its uncorrected time, like
/// any other.
fn prune_samples(
    tx: &Transaction<'_>,
    cursor: Option<i64>,
    cutoff: i64,
    mut budget: usize,
) -> Result<(Option<i64>, usize), HistoryError> {
    let mut device = match cursor {
        Some(c) => Some(c),
        None => next_device(tx, None)?,
    };
    while let Some(d) = device {
        let deleted = tx
            .prepare_cached(
                "DELETE FROM sample WHERE (device_id, ts, seq) IN
                    (SELECT device_id, ts, seq FROM sample WHERE device_id = ?1 AND ts < ?2
                     ORDER BY ts LIMIT ?3)",
            )?
            .execute(params![d, cutoff, budget as i64])?;
        budget -= deleted.min(budget);
        if budget == 0 {
            return Ok((Some(d), 0));
        }
        device = next_device(tx, Some(d))?;
    }
    Ok((None, budget))
}

fn next_device(tx: &Transaction<'_>, after: Option<i64>) -> Result<Option<i64>, HistoryError> {
    Ok(tx
        .prepare_cached(
            "SELECT device_id FROM sample WHERE device_id > ?1 ORDER BY device_id LIMIT 1",
        )?
        .query_row([after.unwrap_or(i64::MIN)], |r| r.get(0))
        .optional()?)
}
