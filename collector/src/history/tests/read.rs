use picket_protocol::Severity;

use super::*;
use crate::history::{AlertRow, HistoryError, HistoryPoint, PresenceRow};

const MIN: Millis = 60_000;

#[test]
fn history_bucketing_averages_with_min_max_and_count() {
    let mut db = Db::new();
    let t0: Millis = 1_700_000_000_000;
    // One point every 10 s for 10 minutes: 0, 1, 2, ... 59.
    let samples = (0..60)
        .map(|i| sample("pi-1", i, t0 + i * 10_000, &[("temp", i as f64)]))
        .collect();
    db.commit(WriteBatch {
        samples,
        ..WriteBatch::default()
    });
    let r = db.reader();
    let d = dev("pi-1");
    let m = metric("temp");

    let five = r
        .history(&d, &m, t0, t0 + 10 * MIN, Some(5 * MIN), 100)
        .expect("history");
    assert_eq!(
        five,
        [
            // 0..=29: average 14.5.
            HistoryPoint {
                ts: t0,
                value: 14.5,
                min: 0.0,
                max: 29.0,
                count: 30
            },
            HistoryPoint {
                ts: t0 + 5 * MIN,
                value: 44.5,
                min: 30.0,
                max: 59.0,
                count: 30
            },
        ]
    );

    // Aligned to `from`, and `from`/`to` bound the raw points first:
    // [t0 + 25 s, t0 + 85 s) holds values 3..=8.
    let shifted = r
        .history(&d, &m, t0 + 25_000, t0 + 85_000, Some(30_000), 100)
        .expect("history");
    let got: Vec<(Millis, f64, f64, f64, u32)> = shifted
        .iter()
        .map(|p| (p.ts - t0, p.value, p.min, p.max, p.count))
        .collect();
    assert_eq!(
        got,
        [(25_000, 4.0, 3.0, 5.0, 3), (55_000, 7.0, 6.0, 8.0, 3)]
    );

    // Raw: value == min == max, count 1, half-open range, limit.
    let raw = r
        .history(&d, &m, t0 + 10_000, t0 + 40_000, None, 100)
        .expect("history");
    assert_eq!(
        raw.iter().map(|p| (p.ts - t0, p.value)).collect::<Vec<_>>(),
        [(10_000, 1.0), (20_000, 2.0), (30_000, 3.0)]
    );
    assert!(
        raw.iter()
            .all(|p| p.min == p.value && p.max == p.value && p.count == 1)
    );
    assert_eq!(
        r.history(&d, &m, t0, t0 + 10 * MIN, None, 7)
            .expect("h")
            .len(),
        7
    );
    assert_eq!(
        r.history(&d, &m, t0, t0 + 10 * MIN, Some(MIN), 3)
            .expect("h")
            .len(),
        3
    );

    // Unknown device or metric: nothing, not an error.
    assert!(
        r.history(&dev("pi-9"), &m, 0, u64::MAX >> 1, None, 10)
            .expect("h")
            .is_empty()
    );
    assert!(
        r.history(&d, &metric("cpu"), 0, u64::MAX >> 1, None, 10)
            .expect("h")
            .is_empty()
    );
    assert!(matches!(
        r.history(&d, &m, t0, t0 + MIN, Some(0), 10),
        Err(HistoryError::Query(_))
    ));
}

#[test]
fn series_do_not_mix() {
    let mut db = Db::new();
    db.commit(WriteBatch {
        samples: vec![
            sample(
                "pi-1",
                1,
                1_000,
                &[("temp", 1.0), ("temp:cpu-thermal", 2.0)],
            ),
            sample("pi-2", 1, 1_000, &[("temp", 3.0)]),
            sample("pi-1", 2, 2_000, &[("temp", 4.0)]),
        ],
        ..WriteBatch::default()
    });
    let r = db.reader();
    assert_eq!(series(&r, "pi-1", "temp"), [(1_000, 1.0), (2_000, 4.0)]);
    assert_eq!(series(&r, "pi-1", "temp:cpu-thermal"), [(1_000, 2.0)]);
    assert_eq!(series(&r, "pi-2", "temp"), [(1_000, 3.0)]);
    assert_eq!(r.metrics_of(&dev("pi-2")).expect("m"), ["temp"]);
    assert!(r.metrics_of(&dev("nobody")).expect("m").is_empty());
}

#[test]
fn logs_are_newest_first_within_range_and_limit() {
    let mut db = Db::new();
    let presence = |d: &str, ts, online| PresenceRow {
        device: dev(d),
        ts,
        online,
        reason: (!online).then(|| "heartbeat".to_string()),
        session: Some(format!("s-{ts}")),
    };
    let alert = |d: &str, ts, change: &str, severity| AlertRow {
        device: dev(d),
        rule: "disk".into(),
        instance: None,
        severity,
        change: change.into(),
        value: None,
        message: format!("{change} at {ts}"),
        ts,
        remedy: None,
    };
    let events = (1..=5)
        .map(|i| crate::history::EventRow {
            device: dev("pi-1"),
            seq: i,
            ts: i * 100,
            kind: "service".into(),
            body: serde_json::json!({"i": i}),
            unsynced: None,
        })
        .collect();
    db.commit(WriteBatch {
        events,
        presence: vec![
            presence("pi-1", 10, true),
            presence("pi-1", 30, false),
            presence("pi-1", 20, true),
            presence("pi-2", 15, true),
        ],
        alerts: vec![
            alert("pi-1", 100, "fired", Severity::Warning),
            alert("pi-2", 150, "fired", Severity::Info),
            alert("pi-1", 200, "escalated", Severity::Critical),
            alert("pi-1", 300, "resolved", Severity::Critical),
        ],
        ..WriteBatch::default()
    });
    let r = db.reader();
    let seqs: Vec<u64> = r
        .events(&dev("pi-1"), 200, 500, 10)
        .expect("events")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [4, 3, 2]);
    assert_eq!(r.events(&dev("pi-1"), 0, 1_000, 2).expect("e").len(), 2);

    let ts: Vec<Millis> = r
        .presence(&dev("pi-1"), 10)
        .expect("p")
        .iter()
        .map(|p| p.ts)
        .collect();
    assert_eq!(ts, [30, 20, 10]);
    assert_eq!(
        r.presence(&dev("pi-1"), 1).expect("p"),
        [presence("pi-1", 30, false)]
    );

    let all: Vec<(String, Millis)> = r
        .alert_log(None, 150, 10)
        .expect("alerts")
        .into_iter()
        .map(|a| (a.device.to_string(), a.ts))
        .collect();
    assert_eq!(
        all,
        [
            ("pi-1".into(), 300),
            ("pi-1".into(), 200),
            ("pi-2".into(), 150)
        ]
    );
    let one = r.alert_log(Some(&dev("pi-1")), 0, 2).expect("alerts");
    assert_eq!(
        one,
        [
            alert("pi-1", 300, "resolved", Severity::Critical),
            alert("pi-1", 200, "escalated", Severity::Critical)
        ]
    );

    let db = db.reopen();
    assert_eq!(
        db.snapshot.presence.get(&dev("pi-1")),
        Some(&presence("pi-1", 30, false))
    );
    assert_eq!(
        db.snapshot.presence.get(&dev("pi-2")),
        Some(&presence("pi-2", 15, true))
    );
}

#[test]
fn readers_see_commits_and_work_from_many_threads() {
    let mut db = Db::new();
    let r = db.reader();
    assert!(series(&r, "pi-1", "cpu").is_empty());
    db.commit(WriteBatch {
        samples: (0..100)
            .map(|i| sample("pi-1", i, i * 1_000, &[("cpu", i as f64)]))
            .collect(),
        ..WriteBatch::default()
    });
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let r = r.clone();
            std::thread::spawn(move || series(&r, "pi-1", "cpu").len())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread"), 100);
    }
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Reader>();
    send::<crate::history::Writer>();
}
