//! Tests on real SQLite files in temporary directories.

mod layout;
mod open;
mod prune;
mod read;
mod write;

use std::path::PathBuf;

use picket_protocol::DeviceId;
use tempfile::TempDir;

use super::{Reader, SampleRows, Snapshot, Unsynced, WriteBatch, Writer, open};
use crate::model::{Metric, Millis, Point};

/// A fresh database in a temporary directory (kept alive by the returned
/// `TempDir`).
struct Db {
    dir: TempDir,
    writer: Writer,
    snapshot: Snapshot,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, snapshot) = open(&dir.path().join("history.db")).expect("open");
        Db {
            dir,
            writer,
            snapshot,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("history.db")
    }

    fn reader(&self) -> Reader {
        Reader::open(&self.path()).expect("reader")
    }

    fn commit(&mut self, batch: WriteBatch) -> super::CommitStats {
        self.writer.commit(&batch).expect("commit")
    }

    /// Rows in `sample` and in `sample_new`.
    fn rows(&self) -> (i64, i64) {
        let conn = rusqlite::Connection::open(self.path()).expect("sqlite");
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .expect("count")
        };
        (count("sample"), count("sample_new"))
    }

    /// Close the writer and open the file again.
    fn reopen(self) -> Db {
        let Db { dir, writer, .. } = self;
        drop(writer);
        let (writer, snapshot) = open(&dir.path().join("history.db")).expect("reopen");
        Db {
            dir,
            writer,
            snapshot,
        }
    }
}

fn dev(name: &str) -> DeviceId {
    DeviceId::new(name).expect("device id")
}

fn metric(name: &str) -> Metric {
    Metric::parse(name).expect("metric")
}

fn sample(device: &str, seq: u64, ts: Millis, points: &[(&str, f64)]) -> SampleRows {
    SampleRows {
        device: dev(device),
        seq,
        ts,
        points: points
            .iter()
            .map(|(m, v)| Point {
                metric: metric(m),
                value: *v,
            })
            .collect(),
        unsynced: None,
    }
}

fn unsynced(mut s: SampleRows, boot: &str, mono: u64) -> SampleRows {
    s.unsynced = Some(Unsynced {
        boot: boot.into(),
        mono,
    });
    s
}

/// Raw `(ts, value)` of one series over all time.
fn series(r: &Reader, device: &str, m: &str) -> Vec<(Millis, f64)> {
    r.history(
        &dev(device),
        &metric(m),
        0,
        i64::MAX as u64,
        None,
        usize::MAX,
    )
    .expect("history")
    .into_iter()
    .map(|p| (p.ts, p.value))
    .collect()
}
