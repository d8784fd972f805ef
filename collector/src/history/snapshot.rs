//! What the engine reads at start-up: devices, their state, pending
//! corrections and last presence.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, Row};

use super::rows::{DeviceRecord, JournalEntry, PresenceRow, Snapshot, StateEntry};
use super::{HistoryError, device_id, millis};
use crate::varint;
use picket_protocol::DeviceId;

pub(super) fn read(conn: &Connection) -> Result<Snapshot, HistoryError> {
    Ok(Snapshot {
        devices: devices(conn)?,
        state: state(conn)?,
        pending: pending(conn)?,
        presence: last_presence(conn)?,
        journal: journal(conn)?,
    })
}

/// The journal rows, oldest first, decoded. An entry of a device no longer
/// in the dictionary (forgotten since) is dropped; a row that does not
/// decode is an error: the state it held would be silently lost.
fn journal(conn: &Connection) -> Result<Vec<JournalEntry>, HistoryError> {
    let mut names: HashMap<i64, DeviceId> = HashMap::new();
    {
        let mut stmt = conn.prepare_cached("SELECT id, name FROM device")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            names.insert(r.get(0)?, device_id(r.get(1)?)?);
        }
    }
    let mut stmt = conn.prepare_cached("SELECT id, body FROM state_journal ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let body: Vec<u8> = r.get(1)?;
        let corrupt = |reason: &str| HistoryError::Corrupt {
            what: "state journal",
            reason: format!("row {id}: {reason}"),
        };
        for entry in journal_entries(&body) {
            let (device, value) = entry.map_err(corrupt)?;
            if let Some(device) = i64::try_from(device).ok().and_then(|d| names.get(&d)) {
                out.push(JournalEntry {
                    device: device.clone(),
                    value: value.to_vec(),
                });
            }
        }
    }
    Ok(out)
}

/// The entries of one journal row's body, as `append_journal` writes them
/// (`varint(device id) varint(len) value` each): device id and value, or
/// why the body is not one. Nothing more follows an error. Pure, so the
/// fuzz targets can reach it without a database.
pub fn journal_entries(
    body: &[u8],
) -> impl Iterator<Item = Result<(u64, &[u8]), &'static str>> + '_ {
    let mut at = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || at >= body.len() {
            return None;
        }
        let entry = (|| {
            let device = varint::read(body, &mut at)?;
            let len = varint::read(body, &mut at)?;
            let value = usize::try_from(len)
                .ok()
                .and_then(|len| body.get(at..at.checked_add(len)?))
                .ok_or("entry runs past the end")?;
            at += value.len();
            Ok((device, value))
        })();
        failed = entry.is_err();
        Some(entry)
    })
}

/// Devices with a record (a device only named by data rows has none).
pub(super) fn devices(conn: &Connection) -> Result<Vec<DeviceRecord>, HistoryError> {
    let mut labels: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    {
        let mut stmt = conn.prepare_cached("SELECT device_id, key, value FROM device_label")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            labels
                .entry(r.get(0)?)
                .or_default()
                .insert(r.get(1)?, r.get(2)?);
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, model, version, first_seen, last_seen FROM device
         WHERE first_seen IS NOT NULL ORDER BY name",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        out.push(DeviceRecord {
            device: device_id(r.get(1)?)?,
            labels: labels.remove(&id).unwrap_or_default(),
            model: r.get(2)?,
            version: r.get(3)?,
            first_seen: millis(r.get(4)?)?,
            last_seen: millis(r.get(5)?)?,
        });
    }
    Ok(out)
}

fn state(conn: &Connection) -> Result<BTreeMap<DeviceId, Vec<StateEntry>>, HistoryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT device.name, kind, key, value FROM state
         JOIN device ON device.id = state.device_id
         ORDER BY device.name, kind, key",
    )?;
    let mut rows = stmt.query([])?;
    let mut out: BTreeMap<DeviceId, Vec<StateEntry>> = BTreeMap::new();
    while let Some(r) = rows.next()? {
        out.entry(device_id(r.get(0)?)?)
            .or_default()
            .push(StateEntry {
                kind: r.get(1)?,
                key: r.get(2)?,
                value: r.get(3)?,
            });
    }
    Ok(out)
}

fn pending(conn: &Connection) -> Result<Vec<(DeviceId, String)>, HistoryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT device.name, p.boot FROM
            (SELECT DISTINCT device_id, boot FROM sample WHERE boot IS NOT NULL
             UNION
             SELECT DISTINCT device_id, boot FROM sample_new WHERE boot IS NOT NULL
             UNION
             SELECT DISTINCT device_id, boot FROM event WHERE boot IS NOT NULL) p
         JOIN device ON device.id = p.device_id
         ORDER BY device.name, p.boot",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push((device_id(r.get(0)?)?, r.get(1)?));
    }
    Ok(out)
}

fn last_presence(conn: &Connection) -> Result<BTreeMap<DeviceId, PresenceRow>, HistoryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT device.name, p.ts, p.online, p.reason, p.session
         FROM device JOIN presence p ON p.id =
            (SELECT id FROM presence q WHERE q.device_id = device.id
             ORDER BY ts DESC, id DESC LIMIT 1)",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let device = device_id(r.get(0)?)?;
        out.insert(device.clone(), presence_row_at(device, r, 1)?);
    }
    Ok(out)
}

/// A presence row from `ts, online, reason, session` at columns 0..4.
pub(super) fn presence_row(device: DeviceId, r: &Row<'_>) -> Result<PresenceRow, HistoryError> {
    presence_row_at(device, r, 0)
}

fn presence_row_at(
    device: DeviceId,
    r: &Row<'_>,
    first: usize,
) -> Result<PresenceRow, HistoryError> {
    Ok(PresenceRow {
        device,
        ts: millis(r.get(first)?)?,
        online: r.get(first + 1)?,
        reason: r.get(first + 2)?,
        session: r.get(first + 3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(body: &[u8]) -> Vec<Result<(u64, &[u8]), &'static str>> {
        journal_entries(body).collect()
    }

    #[test]
    fn journal_bodies() {
        assert_eq!(entries(&[]), vec![]);
        assert_eq!(
            entries(&[1, 2, 0xaa, 0xbb, 0x80, 0x01, 0]),
            vec![Ok((1, &[0xaa, 0xbb][..])), Ok((128, &[][..]))]
        );
        // After an error, nothing more: the rest of the row is not trusted.
        let table: [(&[u8], &str); 4] = [
            (&[1], "truncated varint"),
            (&[1, 3, 0xaa], "entry runs past the end"),
            (&[0xff; 11], "varint overflows 64 bits"),
            (
                &[
                    1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                "entry runs past the end",
            ),
        ];
        for (body, reason) in table {
            assert_eq!(entries(body), vec![Err(reason)], "{body:02x?}");
        }
    }
}
