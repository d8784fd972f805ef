use std::collections::BTreeMap;

use picket_protocol::Severity;
use serde_json::json;

use super::*;
use crate::history::{
    AlertRow, Correction, DeviceRecord, DeviceRow, EventRecord, EventRow, JournalEntry,
    PresenceRow, StateEntry, StateRow,
};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn event(device: &str, seq: u64, ts: Millis, kind: &str) -> EventRow {
    EventRow {
        device: dev(device),
        seq,
        ts,
        kind: kind.into(),
        body: json!({"seq": seq, "kind": kind}),
        unsynced: None,
    }
}

fn alert(device: &str, ts: Millis, change: &str) -> AlertRow {
    AlertRow {
        device: dev(device),
        rule: "temperature".into(),
        instance: Some("cpu-thermal".into()),
        severity: Severity::Critical,
        change: change.into(),
        value: Some(81.5),
        message: "CPU at 81.5 °C".into(),
        ts,
        remedy: None,
    }
}

#[test]
fn every_kind_of_row_round_trips() {
    let mut db = Db::new();
    let stats = db.commit(WriteBatch {
        devices: vec![DeviceRow {
            device: dev("pi-1"),
            labels: labels(&[("site", "club-a"), ("room", "hall")]),
            model: Some("Raspberry Pi 4 Model B".into()),
            version: Some("0.1.0".into()),
            seen: 1_000,
        }],
        samples: vec![sample(
            "pi-1",
            1,
            1_000,
            &[("temp", 61.5), ("disk.pct:/", 40.0)],
        )],
        events: vec![event("pi-1", 2, 1_500, "throttle")],
        presence: vec![PresenceRow {
            device: dev("pi-1"),
            ts: 900,
            online: true,
            reason: None,
            session: Some("s-1".into()),
        }],
        alerts: vec![alert("pi-1", 1_600, "fired")],
        state: vec![StateRow {
            device: dev("pi-1"),
            kind: "seq".into(),
            key: "".into(),
            value: Some(r#"{"next":3}"#.into()),
        }],
        ..WriteBatch::default()
    });
    assert_eq!((stats.points, stats.events), (2, 1));

    let r = db.reader();
    assert_eq!(series(&r, "pi-1", "temp"), [(1_000, 61.5)]);
    assert_eq!(series(&r, "pi-1", "disk.pct:/"), [(1_000, 40.0)]);
    assert_eq!(
        r.metrics_of(&dev("pi-1")).expect("metrics"),
        ["disk.pct:/", "temp"]
    );
    assert_eq!(
        r.events(&dev("pi-1"), 0, 10_000, 10).expect("events"),
        [EventRecord {
            seq: 2,
            ts: 1_500,
            kind: "throttle".into(),
            body: json!({"seq": 2, "kind": "throttle"}),
            unsynced: None,
        }]
    );
    assert_eq!(
        r.presence(&dev("pi-1"), 10).expect("presence"),
        [PresenceRow {
            device: dev("pi-1"),
            ts: 900,
            online: true,
            reason: None,
            session: Some("s-1".into()),
        }]
    );
    assert_eq!(
        r.alert_log(Some(&dev("pi-1")), 0, 10).expect("alerts"),
        [alert("pi-1", 1_600, "fired")]
    );
    let record = DeviceRecord {
        device: dev("pi-1"),
        labels: labels(&[("site", "club-a"), ("room", "hall")]),
        model: Some("Raspberry Pi 4 Model B".into()),
        version: Some("0.1.0".into()),
        first_seen: 1_000,
        last_seen: 1_000,
    };
    assert_eq!(r.devices().expect("devices"), std::slice::from_ref(&record));

    let db = db.reopen();
    assert_eq!(db.snapshot.devices, [record]);
    assert_eq!(
        db.snapshot.state.get(&dev("pi-1")).map(Vec::as_slice),
        Some(
            &[StateEntry {
                kind: "seq".into(),
                key: "".into(),
                value: r#"{"next":3}"#.into(),
            }][..]
        )
    );
    assert_eq!(
        db.snapshot.presence.get(&dev("pi-1")).map(|p| p.ts),
        Some(900)
    );
    assert!(db.snapshot.pending.is_empty());
}

#[test]
fn the_same_point_twice_is_stored_once() {
    let mut db = Db::new();
    let s = sample("pi-1", 7, 10_000, &[("cpu", 12.0), ("temp", 50.0)]);
    let e = event("pi-1", 8, 10_000, "service");
    for _ in 0..3 {
        db.commit(WriteBatch {
            samples: vec![s.clone(), s.clone()],
            events: vec![e.clone()],
            ..WriteBatch::default()
        });
    }
    let r = db.reader();
    assert_eq!(series(&r, "pi-1", "cpu"), [(10_000, 12.0)]);
    assert_eq!(series(&r, "pi-1", "temp"), [(10_000, 50.0)]);
    assert_eq!(
        r.events(&dev("pi-1"), 0, 20_000, 10).expect("events").len(),
        1
    );
    // A second write of the same key replaces the value.
    db.commit(WriteBatch {
        samples: vec![sample("pi-1", 7, 10_000, &[("cpu", 13.0)])],
        ..WriteBatch::default()
    });
    assert_eq!(series(&r, "pi-1", "cpu"), [(10_000, 13.0)]);
}

#[test]
fn device_upsert_keeps_first_seen_and_moves_last_seen_forward() {
    let mut db = Db::new();
    let row = |seen, model: Option<&str>, l: &[(&str, &str)]| DeviceRow {
        device: dev("pi-1"),
        labels: labels(l),
        model: model.map(str::to_string),
        version: None,
        seen,
    };
    db.commit(WriteBatch {
        devices: vec![row(5_000, Some("Pi 4"), &[("site", "a")])],
        ..WriteBatch::default()
    });
    db.commit(WriteBatch {
        devices: vec![row(9_000, None, &[]), row(7_000, None, &[])],
        ..WriteBatch::default()
    });
    db.commit(WriteBatch {
        devices: vec![row(1_000, Some("Pi 5"), &[("site", "b"), ("k", "v")])],
        ..WriteBatch::default()
    });
    let got = db.reader().devices().expect("devices");
    assert_eq!(
        got,
        [DeviceRecord {
            device: dev("pi-1"),
            labels: labels(&[("site", "b"), ("k", "v")]),
            model: Some("Pi 5".into()),
            version: None,
            first_seen: 5_000,
            last_seen: 9_000,
        }]
    );
}

#[test]
fn correction_rewrites_exactly_the_unsynced_rows_of_that_boot() {
    let mut db = Db::new();
    let offset: i64 = 1_700_000_000_000;
    let mut unsynced_event = event("pi-1", 3, 30, "throttle");
    unsynced_event.unsynced = Some(Unsynced {
        boot: "boot-a".into(),
        mono: 3_000,
    });
    let mut other_boot_event = event("pi-1", 4, 40, "throttle");
    other_boot_event.unsynced = Some(Unsynced {
        boot: "boot-b".into(),
        mono: 4_000,
    });
    db.commit(WriteBatch {
        samples: vec![
            // Boot A, clock unsynced: wall times are wrong (near 1970).
            unsynced(
                sample("pi-1", 1, 10, &[("cpu", 1.0), ("temp", 40.0)]),
                "boot-a",
                1_000,
            ),
            unsynced(sample("pi-1", 2, 20, &[("cpu", 2.0)]), "boot-a", 2_000),
            // Boot B of the same device: not corrected.
            unsynced(sample("pi-1", 5, 50, &[("cpu", 5.0)]), "boot-b", 5_000),
            // Another device, same boot id: not corrected.
            unsynced(sample("pi-2", 1, 10, &[("cpu", 9.0)]), "boot-a", 1_000),
            // Synced sample of the same device: untouched.
            sample("pi-1", 6, offset as u64 + 60_000, &[("cpu", 6.0)]),
        ],
        events: vec![unsynced_event, other_boot_event],
        ..WriteBatch::default()
    });
    assert_eq!(
        db.reopen_snapshot_pending(),
        [
            (dev("pi-1"), "boot-a".to_string()),
            (dev("pi-1"), "boot-b".to_string()),
            (dev("pi-2"), "boot-a".to_string()),
        ]
    );
    let stats = db.commit(WriteBatch {
        corrections: vec![Correction {
            device: dev("pi-1"),
            boot: "boot-a".into(),
            offset_ms: offset,
        }],
        ..WriteBatch::default()
    });
    // 2 samples and 1 event of boot A.
    assert_eq!(stats.corrected, 3);
    let r = db.reader();
    let at = |mono: i64| (offset + mono) as u64;
    assert_eq!(
        series(&r, "pi-1", "cpu"),
        [
            (50, 5.0),
            (at(1_000), 1.0),
            (at(2_000), 2.0),
            (at(60_000), 6.0)
        ]
    );
    assert_eq!(series(&r, "pi-1", "temp"), [(at(1_000), 40.0)]);
    assert_eq!(series(&r, "pi-2", "cpu"), [(10, 9.0)]);
    let events = r
        .events(&dev("pi-1"), 0, u64::MAX >> 1, 10)
        .expect("events");
    let got: Vec<(u64, Millis, bool)> = events
        .iter()
        .map(|e| (e.seq, e.ts, e.unsynced.is_some()))
        .collect();
    assert_eq!(got, [(3, at(3_000), false), (4, 40, true)]);

    // Boot A is no longer pending; a second correction changes nothing.
    let db = db.reopen();
    assert_eq!(
        db.snapshot.pending,
        [
            (dev("pi-1"), "boot-b".to_string()),
            (dev("pi-2"), "boot-a".to_string()),
        ]
    );
    let mut db = db;
    let stats = db.commit(WriteBatch {
        corrections: vec![Correction {
            device: dev("pi-1"),
            boot: "boot-a".into(),
            offset_ms: offset + 5,
        }],
        ..WriteBatch::default()
    });
    assert_eq!(stats.corrected, 0);
}

#[test]
fn correction_moves_points_onto_times_other_pending_points_leave() {
    let mut db = Db::new();
    // The unsynced clock runs 10 s behind: the sample at mono 1 s moves to
    // the old wall time of the sample at mono 2 s, and so on.
    let samples = (1..=4)
        .map(|i| {
            unsynced(
                sample("pi-1", i, i * 10_000, &[("cpu", i as f64)]),
                "b",
                i * 10_000,
            )
        })
        .collect();
    db.commit(WriteBatch {
        samples,
        ..WriteBatch::default()
    });
    db.commit(WriteBatch {
        corrections: vec![Correction {
            device: dev("pi-1"),
            boot: "b".into(),
            offset_ms: 10_000,
        }],
        ..WriteBatch::default()
    });
    assert_eq!(
        series(&db.reader(), "pi-1", "cpu"),
        [(20_000, 1.0), (30_000, 2.0), (40_000, 3.0), (50_000, 4.0)]
    );
}

#[test]
fn state_put_and_delete_survive_reopening() {
    let mut db = Db::new();
    let put = |device: &str, kind: &str, key: &str, value: Option<&str>| StateRow {
        device: dev(device),
        kind: kind.into(),
        key: key.into(),
        value: value.map(str::to_string),
    };
    db.commit(WriteBatch {
        state: vec![
            put("pi-1", "rule", "temperature", Some("{\"a\":1}")),
            put("pi-1", "rule", "disk", Some("{\"b\":2}")),
            put("pi-1", "cooldown", "temperature", Some("123")),
            put("pi-2", "seq", "", Some("{\"next\":9}")),
        ],
        ..WriteBatch::default()
    });
    db.commit(WriteBatch {
        state: vec![
            put("pi-1", "rule", "disk", None),
            put("pi-1", "rule", "temperature", Some("{\"a\":2}")),
            // Deleting what does not exist is not an error.
            put("pi-3", "rule", "x", None),
        ],
        ..WriteBatch::default()
    });
    let db = db.reopen();
    let entry = |kind: &str, key: &str, value: &str| StateEntry {
        kind: kind.into(),
        key: key.into(),
        value: value.into(),
    };
    let want: BTreeMap<_, _> = [
        (
            dev("pi-1"),
            vec![
                entry("cooldown", "temperature", "123"),
                entry("rule", "temperature", "{\"a\":2}"),
            ],
        ),
        (dev("pi-2"), vec![entry("seq", "", "{\"next\":9}")]),
    ]
    .into();
    assert_eq!(db.snapshot.state, want);
    // Only state: no device record was written.
    assert!(db.snapshot.devices.is_empty());
}

fn entry(device: &str, value: &[u8]) -> JournalEntry {
    JournalEntry {
        device: dev(device),
        value: value.to_vec(),
    }
}

#[test]
fn the_journal_is_replayed_in_commit_order_until_a_checkpoint() {
    let mut db = Db::new();
    db.commit(WriteBatch {
        journal: vec![entry("pi-1", b"a1"), entry("pi-2", b"")],
        ..WriteBatch::default()
    });
    db.commit(WriteBatch {
        journal: vec![entry("pi-1", &[0xff; 200]), entry("pi-3", b"c1")],
        ..WriteBatch::default()
    });
    // pi-3 is forgotten: its entries no longer mean anything.
    db.commit(WriteBatch {
        forget: vec![dev("pi-3")],
        ..WriteBatch::default()
    });
    let mut db = db.reopen();
    assert_eq!(
        db.snapshot.journal,
        [
            entry("pi-1", b"a1"),
            entry("pi-2", b""),
            entry("pi-1", &[0xff; 200])
        ]
    );
    // A checkpoint drops every row before it, not the entries it carries.
    db.commit(WriteBatch {
        checkpoint: true,
        journal: vec![entry("pi-2", b"b2")],
        ..WriteBatch::default()
    });
    let db = db.reopen();
    assert_eq!(db.snapshot.journal, [entry("pi-2", b"b2")]);
}

/// Batches committed together (the store's group commit) leave what they
/// would have left one by one: in order, a checkpoint dropping only the
/// journal before its own batch, and all or nothing.
#[test]
fn a_group_of_batches_commits_as_if_one_after_the_other() {
    let mut db = Db::new();
    let stats = db
        .writer
        .commit_all(&[
            WriteBatch {
                journal: vec![entry("pi-1", b"old")],
                samples: vec![sample("pi-1", 1, 1_000, &[("cpu", 1.0)])],
                ..WriteBatch::default()
            },
            WriteBatch {
                checkpoint: true,
                journal: vec![entry("pi-1", b"new")],
                samples: vec![sample("pi-1", 2, 2_000, &[("cpu", 2.0)])],
                ..WriteBatch::default()
            },
            WriteBatch {
                journal: vec![entry("pi-2", b"later")],
                ..WriteBatch::default()
            },
        ])
        .expect("group");
    assert_eq!((stats.samples, stats.points), (2, 2));
    let mut db = db.reopen();
    assert_eq!(
        db.snapshot.journal,
        [entry("pi-1", b"new"), entry("pi-2", b"later")]
    );
    // One bad batch and none of the group is stored.
    let bad = sample("pi-1", 3, u64::MAX, &[("cpu", 3.0)]);
    db.writer
        .commit_all(&[
            WriteBatch {
                samples: vec![sample("pi-1", 4, 4_000, &[("cpu", 4.0)])],
                ..WriteBatch::default()
            },
            WriteBatch {
                samples: vec![bad],
                ..WriteBatch::default()
            },
        ])
        .expect_err("a time past i64 is refused");
    assert_eq!(
        series(&db.reader(), "pi-1", "cpu"),
        [(1_000, 1.0), (2_000, 2.0)]
    );
}

#[test]
fn a_journal_row_that_does_not_decode_is_an_error_not_lost_state() {
    let mut db = Db::new();
    db.commit(WriteBatch {
        journal: vec![JournalEntry {
            device: dev("pi-1"),
            value: b"ok".to_vec(),
        }],
        ..WriteBatch::default()
    });
    let path = db.path();
    drop(db.writer);
    let conn = rusqlite::Connection::open(&path).expect("open");
    // Device 1, an entry of 9 bytes with 2 there.
    conn.execute("UPDATE state_journal SET body = x'010961'", [])
        .expect("corrupt it");
    drop(conn);
    let err = open(&path).err().expect("refused");
    assert!(err.to_string().contains("state journal"), "{err}");
}

#[test]
fn forget_removes_every_row_of_that_device_only() {
    let mut db = Db::new();
    let everything = |d: &str| WriteBatch {
        devices: vec![DeviceRow {
            device: dev(d),
            labels: labels(&[("site", "x")]),
            model: Some("Pi".into()),
            version: None,
            seen: 1,
        }],
        samples: vec![
            sample(d, 1, 1_000, &[("cpu", 1.0), ("temp", 2.0)]),
            unsynced(sample(d, 2, 2_000, &[("cpu", 1.0)]), "b", 7),
        ],
        events: vec![event(d, 3, 3_000, "service")],
        presence: vec![PresenceRow {
            device: dev(d),
            ts: 4_000,
            online: false,
            reason: Some("will".into()),
            session: None,
        }],
        alerts: vec![alert(d, 5_000, "fired")],
        state: vec![StateRow {
            device: dev(d),
            kind: "k".into(),
            key: "".into(),
            value: Some("1".into()),
        }],
        ..WriteBatch::default()
    };
    db.commit(everything("pi-1"));
    db.commit(everything("pi-2"));
    let stats = db.commit(WriteBatch {
        forget: vec![dev("pi-1"), dev("never-seen")],
        ..WriteBatch::default()
    });
    // 2 samples, 1 event, 1 presence, 1 alert, 1 state, 1 label, 1 device.
    assert_eq!(stats.forgotten, 8);

    let r = db.reader();
    assert!(series(&r, "pi-1", "cpu").is_empty());
    assert!(r.metrics_of(&dev("pi-1")).expect("metrics").is_empty());
    assert!(
        r.events(&dev("pi-1"), 0, 10_000, 10)
            .expect("events")
            .is_empty()
    );
    assert!(r.presence(&dev("pi-1"), 10).expect("presence").is_empty());
    assert_eq!(
        r.alert_log(None, 0, 10).expect("alerts"),
        [alert("pi-2", 5_000, "fired")]
    );
    let devices: Vec<_> = r
        .devices()
        .expect("devices")
        .into_iter()
        .map(|d| d.device)
        .collect();
    assert_eq!(devices, [dev("pi-2")]);

    assert_eq!(series(&r, "pi-2", "cpu"), [(1_000, 1.0), (2_000, 1.0)]);
    assert_eq!(
        r.events(&dev("pi-2"), 0, 10_000, 10).expect("events").len(),
        1
    );
    let db = db.reopen();
    assert_eq!(db.snapshot.pending, [(dev("pi-2"), "b".to_string())]);
    assert_eq!(db.snapshot.state.keys().collect::<Vec<_>>(), [&dev("pi-2")]);
    assert_eq!(
        db.snapshot.presence.keys().collect::<Vec<_>>(),
        [&dev("pi-2")]
    );

    // The device can come back afterwards, from nothing.
    let mut db = db;
    db.commit(WriteBatch {
        samples: vec![sample("pi-1", 1, 9_000, &[("cpu", 3.0)])],
        ..WriteBatch::default()
    });
    assert_eq!(series(&db.reader(), "pi-1", "cpu"), [(9_000, 3.0)]);
}

#[test]
fn a_failed_commit_stores_nothing() {
    let mut db = Db::new();
    let batch = WriteBatch {
        samples: vec![sample("pi-1", 1, 1_000, &[("cpu", 1.0)])],
        // Past i64::MAX: refused, after the sample was written.
        events: vec![event("pi-1", 2, u64::MAX, "service")],
        ..WriteBatch::default()
    };
    let err = db.writer.commit(&batch).expect_err("out of range");
    assert!(err.to_string().contains("event time"), "{err}");
    assert!(series(&db.reader(), "pi-1", "cpu").is_empty());
    // The writer is still usable, and its id caches did not keep the
    // rolled-back device.
    db.commit(WriteBatch {
        samples: vec![sample("pi-1", 1, 1_000, &[("cpu", 1.0)])],
        ..WriteBatch::default()
    });
    assert_eq!(series(&db.reader(), "pi-1", "cpu"), [(1_000, 1.0)]);
}

impl Db {
    /// The pending pairs as a restart would see them.
    fn reopen_snapshot_pending(&self) -> Vec<(picket_protocol::DeviceId, String)> {
        open(&self.path()).expect("open").1.pending
    }
}

#[test]
fn a_row_the_database_refuses_is_set_aside_and_the_rest_of_its_batch_stored() {
    let mut db = Db::new();
    let batch = WriteBatch {
        samples: vec![
            sample("pi-1", 1, 1_000, &[("cpu", 1.0)]),
            // A seq SQLite cannot hold (the decoder refuses it first; this
            // is the store's own line of defence).
            sample("pi-1", 1 << 63, 2_000, &[("cpu", 2.0)]),
            sample("pi-2", 1, 1_000, &[("cpu", 3.0)]),
        ],
        events: vec![event("pi-1", 2, 1_500, "clock_synced")],
        ..WriteBatch::default()
    };
    let err = db.writer.commit(&batch).expect_err("one row out of range");
    assert!(!err.is_store_failure(), "{err}");
    assert_eq!(db.rows(), (0, 0), "all or nothing");

    let (stats, dropped) = db.writer.commit_salvaging(&batch, 9_000).expect("salvaged");
    assert_eq!((stats.samples, stats.events), (2, 1));
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].device, dev("pi-1"));
    assert_eq!(dropped[0].what, format!("sample seq {}", 1u64 << 63));
    assert!(dropped[0].error.contains("out of range"), "{dropped:?}");
    assert_eq!(db.rows(), (0, 2));
    let refused = db.reader().refused(10).expect("quarantine");
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (
            refused[0].ts,
            refused[0].reason.as_str(),
            refused[0].device.as_deref()
        ),
        (9_000, "store_refused", Some("pi-1"))
    );
    // The dictionaries are right after the rolled-back row: later commits
    // land on the right devices.
    db.commit(WriteBatch {
        samples: vec![sample("pi-3", 1, 1_000, &[("temp", 4.0)])],
        ..WriteBatch::default()
    });
    let r = db.reader();
    assert_eq!(series(&r, "pi-3", "temp"), [(1_000, 4.0)]);
    assert_eq!(series(&r, "pi-2", "cpu"), [(1_000, 3.0)]);
}

#[test]
fn the_quarantine_keeps_its_newest_rows() {
    let mut db = Db::new();
    let row = |i: usize| crate::history::RefusedRow {
        ts: i as Millis,
        topic: Some("picket/v1/x/telemetry".into()),
        device: Some("x".into()),
        reason: "malformed".into(),
        detail: format!("refusal {i}"),
        size: 10_000,
        payload: vec![b'x'; 10_000],
    };
    let total = crate::history::REFUSED_KEEP_ROWS + 7;
    for chunk in (0..total).collect::<Vec<_>>().chunks(100) {
        db.commit(WriteBatch {
            refused: chunk.iter().map(|&i| row(i)).collect(),
            ..WriteBatch::default()
        });
    }
    let kept = db.reader().refused(usize::MAX).expect("quarantine");
    assert_eq!(kept.len(), crate::history::REFUSED_KEEP_ROWS);
    assert_eq!(
        kept[0].detail,
        format!("refusal {}", total - 1),
        "newest first"
    );
    assert_eq!(kept.last().map(|r| r.ts), Some(7));
    assert!(
        kept.iter()
            .all(|r| r.payload.len() == crate::history::REFUSED_KEEP_BYTES && r.size == 10_000)
    );
}
