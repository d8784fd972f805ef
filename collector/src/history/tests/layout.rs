//! What the one-row-per-sample layout adds: same-millisecond samples,
//! corrections onto taken times, corrupt bodies, and the plans SQLite picks.

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
    let rows: i64 = Connection::open(db.path())
        .expect("sqlite")
        .query_row("SELECT count(*) FROM sample", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 0);
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
    for (body, why) in [
        ("x'80'", "truncated varint"),
        ("x'0500'", "truncated value"),
        ("x'0700'", "unknown value tag"),
        ("x'0000'", "metric ids not ascending"),
        ("'text'", "stored as Text, not a blob"),
    ] {
        conn.execute(
            &format!("UPDATE sample SET body = {body} WHERE ts = 2000"),
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
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        rows.join("; ")
    };
    let history = plan(
        "SELECT ts, body FROM sample WHERE device_id = 1 AND ts >= 5 AND ts < 9 ORDER BY ts, seq",
    );
    assert!(
        history.contains("SEARCH sample USING PRIMARY KEY (device_id=? AND ts>? AND ts<?)"),
        "{history}"
    );
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
