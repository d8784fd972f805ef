//! What the one-row-per-sample layout adds: same-millisecond samples,
//! corrections onto taken times, corrupt bodies, new samples and their
//! merge, and the plans SQLite picks.

use rusqlite::Connection;

use super::*;
use crate::history::{Correction, HistoryError};

#[test]
fn two_samples_stamped_the_same_millisecond_are_both_kept() {
    let mut db = Db::new();
    db.commit(WriteBatch {
        samples: vec![
            sample("pi-1", 1, 5_000, &[("cpu", 1.0), ("temp", 40.0)]),
            // Another sample (a clock stepped back) at the same time.
            sample("pi-1", 9, 5_000, &[("cpu", 2.0)]),
            // The first one again (a redelivery): replaces its own row.
            sample("pi-1", 1, 5_000, &[("cpu", 1.5), ("temp", 41.0)]),
        ],
        ..WriteBatch::default()
    });
    let r = db.reader();
    // Both samples, in seq order.
    assert_eq!(series(&r, "pi-1", "cpu"), [(5_000, 1.5), (5_000, 2.0)]);
    assert_eq!(series(&r, "pi-1", "temp"), [(5_000, 41.0)]);
    let step = r
        .history(&dev("pi-1"), &metric("cpu"), 0, 10_000, Some(10_000), 10)
        .expect("history");
    assert_eq!(
        step.iter().map(|p| (p.value, p.count)).collect::<Vec<_>>(),
        [(1.75, 2)]
    );
}

#[test]
fn a_metric_named_twice_in_a_sample_keeps_its_last_value() {
    let mut db = Db::new();
    let stats = db.commit(WriteBatch {
        samples: vec![sample(
            "pi-1",
            1,
            1_000,
            &[("cpu", 1.0), ("temp", 3.0), ("cpu", 2.0)],
        )],
        ..WriteBatch::default()
    });
    assert_eq!(stats.points, 2);
    assert_eq!(series(&db.reader(), "pi-1", "cpu"), [(1_000, 2.0)]);
}

#[test]
fn a_sample_without_points_is_not_stored() {
    let mut db = Db::new();
    let stats = db.commit(WriteBatch {
        samples: vec![unsynced(sample("pi-1", 1, 1_000, &[]), "b", 5)],
        ..WriteBatch::default()
    });
    assert_eq!(stats.points, 0);
    assert_eq!(db.rows(), (0, 0));
    assert!(db.reopen().snapshot.pending.is_empty());
}

#[test]
fn values_come_back_bit_exact() {
    let mut db = Db::new();
    let values = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        61.25,
        f64::from(0.3f32),
        0.3,
        1_512_345_678.0,
        2f64.powi(53),
        -1e300,
        f64::MIN_POSITIVE,
        f64::INFINITY,
    ];
    db.commit(WriteBatch {
        samples: values
            .iter()
            .enumerate()
            .map(|(i, v)| sample("pi-1", i as u64, i as u64 * 1_000, &[("x", *v)]))
            .collect(),
        ..WriteBatch::default()
    });
    let got: Vec<u64> = series(&db.reader(), "pi-1", "x")
        .into_iter()
        .map(|(_, v)| v.to_bits())
        .collect();
    let want: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
    assert_eq!(got, want);
}

#[test]
fn a_correction_onto_a_taken_time_keeps_both_samples() {
    let mut db = Db::new();
    let offset: i64 = 1_700_000_000_000;
    let at = |mono: u64| (offset + mono as i64) as u64;
    db.commit(WriteBatch {
        samples: vec![
            // Stored synchronised at the time the correction will give
            // the unsynced sample below.
            sample("pi-1", 1, at(2_000), &[("cpu", 1.0), ("temp", 50.0)]),
            // Taken after a reboot, clock not synchronised yet.
            unsynced(sample("pi-1", 5, 10, &[("cpu", 5.0)]), "boot-b", 2_000),
            unsynced(sample("pi-1", 6, 20, &[("cpu", 6.0)]), "boot-b", 3_000),
        ],
        ..WriteBatch::default()
    });
    // The offset is learnt; in the same batch a redelivery of seq 6 was
    // stamped with it already (so its corrected copy exists when the
    // correction runs).
    let stats = db.commit(WriteBatch {
        samples: vec![sample("pi-1", 6, at(3_000), &[("cpu", 6.0)])],
        corrections: vec![Correction {
            device: dev("pi-1"),
            boot: "boot-b".into(),
            offset_ms: offset,
        }],
        ..WriteBatch::default()
    });
    assert_eq!(stats.corrected, 2);
    let r = db.reader();
    assert_eq!(
        series(&r, "pi-1", "cpu"),
        [(at(2_000), 1.0), (at(2_000), 5.0), (at(3_000), 6.0)]
    );
    assert_eq!(series(&r, "pi-1", "temp"), [(at(2_000), 50.0)]);
    assert!(db.reopen().snapshot.pending.is_empty());
}

#[test]
fn a_corrupt_body_is_an_error_naming_it() {
    let mut db = Db::new();
    db.commit(WriteBatch {
        samples: vec![
            sample("pi-1", 1, 1_000, &[("cpu", 1.0)]),
            sample("pi-1", 2, 2_000, &[("cpu", 2.0)]),
        ],
        ..WriteBatch::default()
    });
    let r = db.reader();
    let conn = Connection::open(db.path()).expect("sqlite");
    let damage = [
        ("x'80'", "truncated varint"),
        ("x'0500'", "truncated value"),
        ("x'0700'", "unknown value tag"),
        ("x'0000'", "metric ids not ascending"),
        ("'text'", "stored as Text, not a blob"),
    ];
    // In either table: damaged while new, then after the merge.
    for (i, (body, why)) in damage.into_iter().enumerate() {
        let table = if i < 2 { "sample_new" } else { "sample" };
        if i == 2 {
            db.writer.merge().expect("merge");
        }
        conn.execute(
            &format!("UPDATE {table} SET body = {body} WHERE ts = 2000"),
            [],
        )
        .expect("damage");
        let err = r
            .history(&dev("pi-1"), &metric("cpu"), 0, 10_000, None, 10)
            .expect_err("corrupt");
        assert!(
            matches!(
                err,
                HistoryError::Corrupt {
                    what: "sample body",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(why), "{err}");
        let err = r.metrics_of(&dev("pi-1")).expect_err("corrupt");
        assert!(matches!(err, HistoryError::Corrupt { .. }), "{err:?}");
    }
    // The rows before the damaged one read, the writer still writes.
    let r = db.reader();
    let before = r
        .history(&dev("pi-1"), &metric("cpu"), 0, 1_500, None, 10)
        .expect("history");
    assert_eq!(before.len(), 1);
    db.commit(WriteBatch {
        samples: vec![sample("pi-1", 3, 3_000, &[("cpu", 3.0)])],
        ..WriteBatch::default()
    });
}

/// The query plans the layout exists for: a history query and a prune step
/// are range scans of the primary key, a correction uses the partial index.
#[test]
fn queries_use_the_key_and_the_partial_index() {
    let db = Db::new();
    let conn = Connection::open(db.path()).expect("sqlite");
    let plan = |sql: &str| -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        // Parameters left unbound (NULL): the plan does not depend on them.
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next().expect("plan") {
            out.push(r.get::<_, String>(3).expect("plan row"));
        }
        out.join("; ")
    };
    let history = plan(crate::history::reader::HISTORY_SQL);
    assert!(
        history.contains("SEARCH sample USING PRIMARY KEY (device_id=? AND ts>? AND ts<?)"),
        "{history}"
    );
    assert!(
        history.contains(
            "SEARCH sample_new USING INDEX sample_new_key (device_id=? AND ts>? AND ts<?)"
        ),
        "{history}"
    );
    // Both ranges come in key order and are merged: nothing is sorted.
    assert!(history.contains("MERGE (UNION ALL)"), "{history}");
    assert!(!history.contains("TEMP B-TREE"), "{history}");
    let correct = plan("SELECT ts, seq, mono FROM sample WHERE device_id = 1 AND boot = 'b'");
    assert!(
        correct.contains("USING COVERING INDEX sample_unsynced (device_id=? AND boot=?)"),
        "{correct}"
    );
    let pending = plan("SELECT DISTINCT device_id, boot FROM sample WHERE boot IS NOT NULL");
    assert!(
        pending.contains("USING COVERING INDEX sample_unsynced"),
        "{pending}"
    );
    let prune = plan(
        "SELECT device_id, ts, seq FROM sample WHERE device_id = 1 AND ts < 5 ORDER BY ts LIMIT 3",
    );
    assert!(
        prune.contains("SEARCH sample USING PRIMARY KEY (device_id=? AND ts<?)"),
        "{prune}"
    );
}

/// New samples are read, corrected and forgotten like merged ones, and a
/// sample redelivered after its first copy was merged is read once.
#[test]
fn new_samples_read_the_same_before_and_after_the_merge() {
    let mut db = Db::new();
    let first: Vec<_> = (1..=5)
        .map(|i| sample("pi-1", i, i * 1_000, &[("cpu", i as f64)]))
        .collect();
    db.commit(WriteBatch {
        samples: first.clone(),
        ..WriteBatch::default()
    });
    assert_eq!(db.rows(), (0, 5));
    db.writer.merge().expect("merge");
    assert_eq!(db.rows(), (5, 0));
    db.commit(WriteBatch {
        samples: (6..=8)
            .map(|i| sample("pi-1", i, i * 1_000, &[("cpu", i as f64)]))
            .chain([first[2].clone()])
            .chain([unsynced(sample("pi-1", 9, 40, &[("cpu", 9.0)]), "b", 40)])
            .collect(),
        ..WriteBatch::default()
    });
    assert_eq!(db.rows(), (5, 5));
    let read = |db: &Db| {
        let r = db.reader();
        let points: Vec<(u64, f64)> = r
            .history(&dev("pi-1"), &metric("cpu"), 0, 1_000_000, None, 100)
            .expect("history")
            .into_iter()
            .map(|p| (p.ts, p.value))
            .collect();
        (points, r.metrics_of(&dev("pi-1")).expect("metrics"))
    };
    let want: Vec<(u64, f64)> = (1..=8).map(|i| (i * 1_000, i as f64)).collect();
    let mut with_unsynced = vec![(40, 9.0)];
    with_unsynced.extend(&want);
    assert_eq!(read(&db), (with_unsynced.clone(), vec!["cpu".to_string()]));
    // The unsynchronised sample is new, a boot's pending correction.
    let db = db.reopen();
    assert_eq!(db.snapshot.pending, vec![(dev("pi-1"), "b".to_string())]);
    let mut db = db;
    // Its correction finds it among the new samples, and one merged.
    db.writer.merge().expect("merge");
    assert_eq!(db.rows(), (9, 0));
    assert_eq!(read(&db), (with_unsynced, vec!["cpu".to_string()]));
    db.commit(WriteBatch {
        samples: vec![unsynced(sample("pi-1", 10, 50, &[("cpu", 10.0)]), "b", 50)],
        ..WriteBatch::default()
    });
    let stats = db.commit(WriteBatch {
        corrections: vec![Correction {
            device: dev("pi-1"),
            boot: "b".into(),
            offset_ms: 100_000,
        }],
        ..WriteBatch::default()
    });
    assert_eq!(stats.corrected, 2);
    let (points, _) = read(&db);
    assert_eq!(&points[..8], &want[..]);
    assert_eq!(&points[8..], &[(100_040, 9.0), (100_050, 10.0)]);
    // Forgetting the device empties both tables.
    db.commit(WriteBatch {
        samples: vec![sample("pi-1", 11, 11_000, &[("cpu", 1.0)])],
        ..WriteBatch::default()
    });
    assert_eq!(db.rows(), (9, 2));
    db.commit(WriteBatch {
        forget: vec![dev("pi-1")],
        ..WriteBatch::default()
    });
    assert_eq!(db.rows(), (0, 0));
}

/// A merge is due by size at once, by age only after a while, and never
/// with nothing new.
#[test]
fn a_merge_falls_due_only_with_new_samples() {
    let mut db = Db::new();
    assert!(!db.writer.merge_due());
    assert_eq!(db.writer.merge_deadline(), None);
    db.commit(WriteBatch {
        samples: vec![sample("pi-1", 1, 1_000, &[("cpu", 1.0)])],
        ..WriteBatch::default()
    });
    assert!(!db.writer.merge_due(), "one new sample waits for its time");
    assert!(db.writer.merge_deadline().is_some());
    db.commit(WriteBatch {
        samples: (2..=16_384)
            .map(|i| sample("pi-2", i, i * 1_000, &[("cpu", 1.0)]))
            .collect(),
        ..WriteBatch::default()
    });
    assert!(db.writer.merge_due(), "16,384 new samples are due");
    assert_eq!(db.writer.merge().expect("merge"), 16_384);
    assert!(!db.writer.merge_due());
    assert_eq!(db.writer.merge_deadline(), None);
    // A reopened writer counts what an earlier run left new.
    db.commit(WriteBatch {
        samples: vec![sample("pi-1", 2, 2_000, &[("cpu", 1.0)])],
        ..WriteBatch::default()
    });
    let db = db.reopen();
    assert!(db.writer.merge_deadline().is_some());
    assert_eq!(db.rows(), (16_384, 1));
}
