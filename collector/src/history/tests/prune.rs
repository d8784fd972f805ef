use super::*;
use crate::history::{AlertRow, EventRow, PresenceRow};
use picket_protocol::Severity;

fn fill(db: &mut Db, devices: &[&str], times: std::ops::Range<u64>) {
    let mut batch = WriteBatch::default();
    for d in devices {
        for t in times.clone() {
            let ts = t * 1_000;
            batch
                .samples
                .push(sample(d, t, ts, &[("cpu", t as f64), ("temp", 40.0)]));
            batch.events.push(EventRow {
                device: dev(d),
                seq: 100_000 + t,
                ts,
                kind: "service".into(),
                body: serde_json::json!({}),
                unsynced: None,
            });
            batch.presence.push(PresenceRow {
                device: dev(d),
                ts,
                online: t % 2 == 0,
                reason: None,
                session: None,
            });
            batch.alerts.push(AlertRow {
                device: dev(d),
                rule: "r".into(),
                instance: None,
                severity: Severity::Warning,
                change: "fired".into(),
                value: None,
                message: String::new(),
                ts,
                remedy: None,
            });
        }
    }
    db.commit(batch);
}

#[test]
fn prune_honours_the_cutoff_and_max_rows() {
    let mut db = Db::new();
    // 3 devices x 20 s: per device 20 samples (of 2 points), 20 events,
    // 20 presence rows, 20 alert lines.
    fill(&mut db, &["a", "b", "c"], 0..20);
    let cutoff = 10_000;
    // Older than the cutoff: 3 x (10 samples + 10 events + 10 alerts) and
    // 3 x 10 presence rows (the newest of each device is younger). A budget
    // of 7 stops inside a device's samples: the next call resumes there.
    let old = 3 * (10 + 10 + 10 + 10);
    let mut calls = Vec::new();
    loop {
        let n = db.writer.prune(cutoff, 7).expect("prune");
        assert!(n <= 7, "{n} > max_rows");
        calls.push(n);
        if n < 7 {
            break;
        }
        assert!(calls.len() < 100, "prune does not finish");
    }
    assert_eq!(calls.iter().sum::<usize>(), old, "{calls:?}");
    assert_eq!(db.writer.prune(cutoff, 7).expect("prune"), 0);

    let r = db.reader();
    for d in ["a", "b", "c"] {
        let cpu = series(&r, d, "cpu");
        assert_eq!(cpu.len(), 10);
        assert!(cpu.iter().all(|(ts, _)| *ts >= cutoff), "{cpu:?}");
        assert_eq!(series(&r, d, "temp").len(), 10);
        let events = r.events(&dev(d), 0, 1 << 40, 100).expect("events");
        assert_eq!(events.len(), 10);
        assert_eq!(r.presence(&dev(d), 100).expect("presence").len(), 10);
    }
    let alerts = r.alert_log(None, 0, 1_000).expect("alerts");
    assert_eq!(alerts.len(), 30);
    assert!(alerts.iter().all(|a| a.ts >= cutoff));
}

#[test]
fn prune_keeps_the_last_presence_of_a_device() {
    let mut db = Db::new();
    fill(&mut db, &["a"], 0..5);
    // Everything is older than the cutoff.
    while db.writer.prune(1_000_000, 1_000).expect("prune") == 1_000 {}
    let r = db.reader();
    assert!(series(&r, "a", "cpu").is_empty());
    assert!(r.metrics_of(&dev("a")).expect("metrics").is_empty());
    let presence = r.presence(&dev("a"), 10).expect("presence");
    assert_eq!(presence.iter().map(|p| p.ts).collect::<Vec<_>>(), [4_000]);
    assert_eq!(db.reopen().snapshot.presence.len(), 1);
}

#[test]
fn prune_takes_pending_samples_with_their_rows() {
    let mut db = Db::new();
    db.commit(WriteBatch {
        samples: vec![
            unsynced(sample("a", 1, 10, &[("cpu", 1.0)]), "boot", 1),
            sample("a", 2, 5_000, &[("cpu", 2.0)]),
            unsynced(sample("a", 3, 6_000, &[("cpu", 3.0)]), "boot", 3),
        ],
        ..WriteBatch::default()
    });
    // One row per call: the old unsynced sample, then nothing.
    assert_eq!(db.writer.prune(1_000, 1).expect("prune"), 1);
    assert_eq!(db.writer.prune(1_000, 1).expect("prune"), 0);
    assert_eq!(
        series(&db.reader(), "a", "cpu"),
        [(5_000, 2.0), (6_000, 3.0)]
    );
    // The younger unsynced sample still waits for its correction.
    let mut db = db.reopen();
    assert_eq!(db.snapshot.pending, [(dev("a"), "boot".to_string())]);
    assert_eq!(db.writer.prune(7_000, 10).expect("prune"), 2);
    assert!(db.reopen().snapshot.pending.is_empty());
}

#[test]
fn prune_walks_every_device_in_chunks_across_calls() {
    let mut db = Db::new();
    let devices: Vec<String> = (0..5).map(|i| format!("d{i}")).collect();
    let names: Vec<&str> = devices.iter().map(String::as_str).collect();
    let mut batch = WriteBatch::default();
    for d in &names {
        for t in 0..30u64 {
            batch
                .samples
                .push(sample(d, t, t * 1_000, &[("cpu", t as f64)]));
        }
    }
    db.commit(batch);
    // 5 x 20 samples older than 20 s, 3 a call: 34 calls, each resuming on
    // the device where the previous one stopped.
    let mut total = 0;
    let mut calls = 0;
    loop {
        let n = db.writer.prune(20_000, 3).expect("prune");
        total += n;
        calls += 1;
        if n < 3 {
            break;
        }
        assert!(calls < 100, "prune does not finish");
    }
    assert_eq!((total, calls), (100, 34));
    let r = db.reader();
    for d in &names {
        let s = series(&r, d, "cpu");
        assert_eq!(s.first(), Some(&(20_000, 20.0)), "{d}");
        assert_eq!(s.len(), 10, "{d}");
    }
}

#[test]
fn prune_with_zero_budget_does_nothing() {
    let mut db = Db::new();
    fill(&mut db, &["a"], 0..3);
    assert_eq!(db.writer.prune(1 << 40, 0).expect("prune"), 0);
    assert_eq!(series(&db.reader(), "a", "cpu").len(), 3);
}
