use std::fs;
use std::path::Path;
use std::time::Duration;

use super::segment::HEADER_LEN;
use super::*;

mod hot;
mod proptests;

const BOOT: &str = "boot-a";

fn cfg(dir: &Path) -> QueueConfig {
    QueueConfig {
        dir: dir.to_owned(),
        segment_bytes: 4096,
        max_bytes: 1 << 20,
        sync_interval: Duration::from_secs(10),
        hot_dir: None,
    }
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

fn rec(seq: u64, len: usize) -> NewRecord {
    NewRecord {
        seq,
        kind: RecordKind::Sample,
        ts_ms: 1_000 + seq,
        payload: payload(seq, len),
    }
}

fn append_n(q: &mut Queue, n: u64, len: usize) -> u64 {
    let start = q.next_seq();
    let batch: Vec<_> = (start..start + n).map(|s| rec(s, len)).collect();
    q.append(&batch).unwrap()
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

fn read_all(q: &mut Queue) -> Vec<Record> {
    q.read(0, usize::MAX, usize::MAX).unwrap()
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, report) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    assert_eq!(report, OpenReport::default());
    assert_eq!(q.next_seq(), 0);
    for _ in 0..10 {
        append_n(&mut q, 10, 200);
    }
    assert!(
        segment_files(dir.path()).len() >= 4,
        "records should span several segments"
    );
    let all = read_all(&mut q);
    assert_eq!(seqs(&all), (0..100).collect::<Vec<_>>());
    for r in &all {
        assert_eq!(
            (r.kind, r.ts_ms, &r.payload),
            (RecordKind::Sample, 1_000 + r.seq, &payload(r.seq, 200))
        );
    }
    let middle = q.read(42, 5, usize::MAX).unwrap();
    assert_eq!(seqs(&middle), vec![42, 43, 44, 45, 46]);
    let s = q.stats();
    assert_eq!(
        (s.records, s.oldest_ts_ms, s.next_seq, s.acked_through),
        (100, Some(1_000), 100, None)
    );
}

#[test]
fn ack_deletes_whole_segments_and_hides_acked_records() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    append_n(&mut q, 100, 200);
    let before = segment_files(dir.path()).len();
    q.ack(49).unwrap();
    let after = segment_files(dir.path()).len();
    assert!(
        after < before,
        "acked segments must go: {before} -> {after}"
    );
    assert_eq!(seqs(&q.read(0, 3, usize::MAX).unwrap()), vec![50, 51, 52]);
    let s = q.stats();
    assert_eq!(
        (s.records, s.oldest_ts_ms, s.acked_through),
        (50, Some(1_050), Some(49))
    );

    q.ack(99).unwrap();
    // Everything acked: only an empty segment named after the next seq is left.
    assert_eq!(segment_files(dir.path()), vec![segment::segment_name(100)]);
    assert_eq!(
        fs::metadata(dir.path().join(segment::segment_name(100)))
            .unwrap()
            .len(),
        0
    );
    assert!(read_all(&mut q).is_empty());
    assert_eq!(q.stats().records, 0);
    assert!(matches!(
        q.ack(100),
        Err(QueueError::AckBeyondNext {
            through: 100,
            next: 100
        })
    ));
    q.ack(10).unwrap(); // stale acks are harmless
    append_n(&mut q, 3, 10);
    assert_eq!(seqs(&read_all(&mut q)), vec![100, 101, 102]);
}

#[test]
fn read_respects_limits_but_returns_at_least_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    append_n(&mut q, 30, 100);
    assert_eq!(q.read(0, 0, usize::MAX).unwrap().len(), 0);
    assert_eq!(seqs(&q.read(0, 100, 250).unwrap()), vec![0, 1]);
    assert_eq!(seqs(&q.read(7, 100, 10).unwrap()), vec![7]);
    assert_eq!(q.read(0, 25, usize::MAX).unwrap().len(), 25);
    assert!(q.read(30, 10, usize::MAX).unwrap().is_empty());
}

#[test]
fn append_rejects_bad_seqs_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    append_n(&mut q, 2, 10);
    let err = q.append(&[rec(2, 10), rec(4, 10)]).unwrap_err();
    assert!(matches!(
        err,
        QueueError::SeqMismatch {
            expected: 3,
            got: 4
        }
    ));
    assert!(matches!(
        q.append(&[rec(5, 10)]),
        Err(QueueError::SeqMismatch {
            expected: 2,
            got: 5
        })
    ));
    assert_eq!(q.next_seq(), 2);
    assert_eq!(read_all(&mut q).len(), 2);
    assert_eq!(q.append(&[]).unwrap(), 0);
}

#[test]
fn oversized_record_goes_alone_into_its_own_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    append_n(&mut q, 1, 10);
    append_n(&mut q, 1, 10_000);
    append_n(&mut q, 1, 10);
    assert_eq!(segment_files(dir.path()).len(), 3);
    let all = read_all(&mut q);
    assert_eq!(seqs(&all), vec![0, 1, 2]);
    assert_eq!(all[1].payload, payload(1, 10_000));
}

#[test]
fn cap_drops_oldest_and_persists_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let config = QueueConfig {
        max_bytes: 16 << 10,
        ..cfg(dir.path())
    };
    let (mut q, _) = Queue::open(config.clone(), BOOT).unwrap();
    let mut dropped = 0;
    for _ in 0..40 {
        dropped += append_n(&mut q, 5, 200);
    }
    assert!(dropped > 0);
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|n| fs::metadata(dir.path().join(n)).unwrap().len())
        .sum();
    assert!(on_disk <= 16 << 10, "{on_disk} bytes on disk");
    let kept = seqs(&read_all(&mut q));
    assert_eq!(
        kept,
        (dropped..200).collect::<Vec<_>>(),
        "only the oldest may go"
    );
    assert_eq!(q.stats().dropped_total, dropped);
    assert_eq!(q.stats().records, 200 - dropped);

    // Survives a crash once synced, and a clean restart.
    q.sync().unwrap();
    drop(q);
    let (q, _) = Queue::open(config.clone(), BOOT).unwrap();
    assert_eq!(q.stats().dropped_total, dropped);
    q.close().unwrap();
    let (q, _) = Queue::open(config, "boot-b").unwrap();
    assert_eq!(q.stats().dropped_total, dropped);
}

#[test]
fn seqs_continue_exactly_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    append_n(&mut q, 7, 10);
    q.ack(6).unwrap();
    q.close().unwrap();
    // Even after a reboot the clean close makes the seq exact.
    let (q, report) = Queue::open(cfg(dir.path()), "boot-b").unwrap();
    assert_eq!((q.next_seq(), report.seq_skipped), (7, None));
    assert_eq!(q.stats().acked_through, Some(6));
}

#[test]
fn process_crash_loses_nothing_and_skips_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    append_n(&mut q, 25, 300);
    drop(q); // no sync, no close: the page cache still holds it all
    let (mut q, report) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    assert_eq!((q.next_seq(), report.seq_skipped), (25, None));
    assert_eq!(seqs(&read_all(&mut q)), (0..25).collect::<Vec<_>>());
}

#[test]
fn process_crash_after_everything_was_acked_keeps_the_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    append_n(&mut q, 12, 300);
    q.ack(11).unwrap();
    drop(q);
    let (mut q, report) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    assert_eq!((q.next_seq(), report.seq_skipped), (12, None));
    assert!(read_all(&mut q).is_empty());
}

#[test]
fn catching_up_recycles_the_active_segment_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    for round in 0..5u64 {
        append_n(&mut q, 3, 300);
        q.ack(round * 3 + 2).unwrap();
        let segs: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".seg"))
            .collect();
        assert_eq!(
            segs,
            [format!("{:020}.seg", round * 3 + 3)],
            "one empty segment, renamed"
        );
        assert_eq!(fs::metadata(dir.path().join(&segs[0])).unwrap().len(), 0);
    }
    assert!(read_all(&mut q).is_empty());
}

#[test]
fn a_crash_between_rename_and_truncation_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    append_n(&mut q, 4, 300);
    drop(q);
    // What `recycle_active` leaves if it dies after the rename: a fully
    // acknowledged segment under the next seq's name, not yet emptied.
    let seg = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    fs::rename(&seg, dir.path().join(format!("{:020}.seg", 4))).unwrap();
    let (mut q, report) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    assert!(report.quarantined.is_empty(), "{report:?}");
    assert_eq!((q.next_seq(), report.seq_skipped), (4, None));
    assert!(read_all(&mut q).is_empty());
}

/// Cuts every segment file back to what fdatasync made durable.
fn power_cut(synced: &[(std::path::PathBuf, u64)]) {
    for (path, len) in synced {
        if let Ok(f) = fs::OpenOptions::new().write(true).open(path) {
            f.set_len(*len).unwrap();
        }
    }
}

#[test]
fn power_loss_never_reuses_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    append_n(&mut q, 10, 300);
    q.sync().unwrap();
    append_n(&mut q, 10, 300);
    let synced = q.synced_lengths();
    drop(q);
    power_cut(&synced);
    let (mut q, report) = Queue::open(cfg(dir.path()), "boot-b").unwrap();
    assert_eq!(
        seqs(&read_all(&mut q)),
        (0..10).collect::<Vec<_>>(),
        "synced records survive"
    );
    let (from, to) = report.seq_skipped.unwrap();
    assert!(from >= 10 && to == q.next_seq(), "{from}..{to}");
    assert!(
        q.next_seq() >= 20,
        "seqs 10..20 were handed out before the cut"
    );
    q.close().unwrap();
}

#[test]
fn lease_is_extended_before_it_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    let first_lease = q.lease;
    for _ in 0..(LEASE_BLOCK / 500 + 1) {
        append_n(&mut q, 500, 0);
        q.ack(q.next_seq() - 1).unwrap();
    }
    assert!(q.next_seq() > first_lease);
    drop(q);
    let (q, report) = Queue::open(cfg(dir.path()), "boot-b").unwrap();
    let (from, to) = report.seq_skipped.unwrap();
    assert!(from == LEASE_BLOCK + 500 && to > from && q.next_seq() == to);
}

#[test]
fn torn_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    append_n(&mut q, 5, 100);
    q.close().unwrap();
    let path = dir.path().join(segment::segment_name(0));
    let mut bytes = fs::read(&path).unwrap();
    let good = bytes.len();
    let mut frame = Vec::new();
    segment::encode_frame(5, RecordKind::Event, 0, &[7; 50], &mut frame);
    bytes.extend_from_slice(&frame[..40]);
    bytes.extend_from_slice(&[0; 100]);
    fs::write(&path, &bytes).unwrap();

    let (mut q, report) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    assert_eq!(report.truncated_bytes, 140);
    assert!(report.quarantined.is_empty());
    assert_eq!(fs::metadata(&path).unwrap().len(), good as u64);
    assert_eq!(seqs(&read_all(&mut q)), vec![0, 1, 2, 3, 4]);
    assert_eq!(q.next_seq(), 5);
}

#[test]
fn corrupt_middle_segment_is_quarantined_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    for _ in 0..3 {
        append_n(&mut q, 10, 300);
        q.close().unwrap();
        q = Queue::open(cfg(dir.path()), BOOT).unwrap().0;
    }
    q.close().unwrap();
    let names = segment_files(dir.path());
    assert_eq!(names.len(), 3);
    let victim = dir.path().join(&names[1]);
    let mut bytes = fs::read(&victim).unwrap();
    bytes[HEADER_LEN as usize + FRAME_HEADER_LEN + 5] ^= 0xff;
    fs::write(&victim, &bytes).unwrap();

    let (mut q, report) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    assert_eq!(
        report.quarantined,
        vec![Quarantined {
            segment: names[1].clone(),
            bytes: bytes.len() as u64
        }]
    );
    assert!(dir.path().join("quarantine").join(&names[1]).exists());
    let expected: Vec<u64> = (0..10).chain(20..30).collect();
    assert_eq!(seqs(&read_all(&mut q)), expected);
    assert_eq!((q.stats().quarantined_total, q.next_seq()), (1, 30));
    q.close().unwrap();
    let (q, report) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    assert!(report.quarantined.is_empty());
    assert_eq!(q.stats().quarantined_total, 1);
}

#[test]
fn garbage_files_and_garbled_meta_do_not_fail_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    append_n(&mut q, 4, 100);
    q.close().unwrap();
    let d = dir.path();
    fs::write(d.join("notes.txt"), b"hello").unwrap();
    fs::write(d.join(segment::segment_name(100)), b"").unwrap();
    fs::write(d.join(segment::segment_name(200)), [0xa5; 1000]).unwrap();
    fs::write(d.join(segment::segment_name(300)), [0u8; 20]).unwrap();
    fs::create_dir(d.join(segment::segment_name(400))).unwrap();
    fs::write(d.join("meta"), b"\x00garbled").unwrap();
    fs::write(d.join("meta.tmp"), b"half").unwrap();

    let (mut q, report) = Queue::open(cfg(d), BOOT).unwrap();
    assert_eq!(seqs(&read_all(&mut q)), vec![0, 1, 2, 3]);
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    assert_eq!(report.truncated_bytes, 20);
    assert!(
        q.next_seq() >= 300,
        "segment names are a floor for the next seq"
    );
    append_n(&mut q, 2, 10);
    q.close().unwrap();
}

#[test]
fn empty_and_missing_state_opens_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/queue");
    let (q, report) = Queue::open(cfg(&nested), "").unwrap();
    assert_eq!((q.next_seq(), report), (0, OpenReport::default()));
    assert!(q.sync_deadline().is_none());
}

#[test]
fn sync_is_skipped_when_everything_is_acked() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    assert!(q.sync_deadline().is_none());
    let before = Instant::now();
    append_n(&mut q, 3, 100);
    let deadline = q.sync_deadline().unwrap();
    assert!(
        deadline >= before + Duration::from_secs(10)
            && deadline <= Instant::now() + Duration::from_secs(10)
    );
    q.ack(2).unwrap();
    assert!(
        q.sync_deadline().is_none(),
        "nothing left that needs the disk"
    );
    q.sync().unwrap();
    assert_eq!(q.fdatasync_count(), 0);

    append_n(&mut q, 3, 100);
    q.ack(4).unwrap(); // seq 5 still unacked
    q.sync().unwrap();
    assert_eq!(q.fdatasync_count(), 1);
    assert!(q.sync_deadline().is_none());
    q.sync().unwrap();
    assert_eq!(q.fdatasync_count(), 1, "nothing new to sync");
}

#[test]
fn acked_cursor_survives_a_crash_once_synced() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    append_n(&mut q, 10, 100);
    q.ack(4).unwrap();
    q.sync().unwrap();
    drop(q);
    let (mut q, _) = Queue::open(cfg(dir.path()), BOOT).unwrap();
    assert_eq!(seqs(&read_all(&mut q)), (5..10).collect::<Vec<_>>());
    assert_eq!(q.stats().acked_through, Some(4));
}

/// Bytes this thread made the disk write: pages charged when they went
/// clean to dirty, less the ones truncated or unlinked before writeback.
fn disk_write_bytes() -> Option<i64> {
    let io = fs::read_to_string("/proc/thread-self/io").ok()?;
    let field = |name: &str| -> Option<i64> {
        io.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    Some(field("write_bytes:")? - field("cancelled_write_bytes:")?)
}

/// Whether the write-amplification tests can measure. Without the kernel's
/// per-thread I/O accounting they would measure nothing and pass, so its
/// absence fails them unless it is waived explicitly.
pub(super) fn io_accounting_available() -> bool {
    if disk_write_bytes().is_some() {
        return true;
    }
    assert!(
        std::env::var_os("PICKET_TEST_NO_IO_ACCOUNTING").is_some(),
        "/proc/thread-self/io is unavailable: set PICKET_TEST_NO_IO_ACCOUNTING=1 \
         to run without the write-amplification tests"
    );
    false
}

/// The SD-card targets, with time compressed: one ~600-byte record per
/// simulated second, a sync every 10 of them (the default interval).
#[test]
fn write_amplification_within_targets() {
    if !io_accounting_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = QueueConfig {
        segment_bytes: 1 << 20,
        ..cfg(dir.path())
    };
    let (mut q, _) = Queue::open(config, BOOT).unwrap();
    let n = 600;

    let start = disk_write_bytes().unwrap();
    for i in 0..n {
        append_n(&mut q, 1, 600);
        if i % 10 == 9 {
            q.sync().unwrap();
        }
    }
    let broker_down = (disk_write_bytes().unwrap() - start) as f64 / (n * 600) as f64;
    assert!(broker_down <= 3.0, "broker down: {broker_down:.2}x");
    // Every byte synced reached a disk: a figure under 1x means the temp
    // dir is not on one (tmpfs), and the connected figure below proves nothing.
    assert!(
        broker_down >= 1.0,
        "broker down: {broker_down:.2}x: is the temp dir on tmpfs?"
    );
    q.ack(q.next_seq() - 1).unwrap();

    let start = disk_write_bytes().unwrap();
    for i in 0..n {
        append_n(&mut q, 1, 600);
        q.ack(q.next_seq() - 1).unwrap();
        if i % 10 == 9 {
            q.sync().unwrap();
        }
    }
    let connected = (disk_write_bytes().unwrap() - start) as f64 / (n * 600) as f64;
    assert!(connected <= 0.05, "connected: {connected:.3}x");
    eprintln!("write amplification: broker down {broker_down:.2}x, connected {connected:.3}x");
}
