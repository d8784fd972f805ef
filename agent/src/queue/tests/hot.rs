//! The hot spool: records wait on tmpfs and reach the SD log only if still
//! unacknowledged at the sync deadline.

use std::path::PathBuf;

use super::*;

struct Dirs {
    sd: tempfile::TempDir,
    hot: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Self {
        Dirs {
            sd: tempfile::tempdir().unwrap(),
            hot: tempfile::tempdir().unwrap(),
        }
    }

    fn cfg(&self) -> QueueConfig {
        QueueConfig {
            hot_dir: Some(self.hot.path().to_owned()),
            ..cfg(self.sd.path())
        }
    }

    fn open(&self, boot: &str) -> (Queue, OpenReport) {
        Queue::open(self.cfg(), boot).unwrap()
    }

    /// Bytes in the segment files on the SD card.
    fn sd_bytes(&self) -> u64 {
        segment_files(self.sd.path())
            .iter()
            .map(|n| fs::metadata(self.sd.path().join(n)).unwrap().len())
            .sum()
    }

    fn spool_files(&self) -> Vec<PathBuf> {
        segment_files(self.hot.path())
            .iter()
            .map(|n| self.hot.path().join(n))
            .collect()
    }

    /// What a reboot leaves of a tmpfs.
    fn lose_tmpfs(&self) {
        for p in self.spool_files() {
            fs::remove_file(p).unwrap();
        }
    }
}

#[test]
fn records_acked_before_the_deadline_never_reach_the_sd_card() {
    let d = Dirs::new();
    let (mut q, _) = d.open(BOOT);
    for _ in 0..20 {
        append_n(&mut q, 3, 600);
        let partly = q.next_seq() - 2;
        q.ack(partly).unwrap();
        assert_eq!(q.stats().records, 1);
        q.ack(q.next_seq() - 1).unwrap();
        q.sync().unwrap();
    }
    assert_eq!(q.fdatasync_count(), 0);
    assert_eq!(d.sd_bytes(), 0, "acked records were written to the SD card");
    assert_eq!(q.next_seq(), 60);

    // Only the record still unacked at the deadline moves, once.
    append_n(&mut q, 3, 600);
    q.ack(61).unwrap();
    q.sync().unwrap();
    assert_eq!(q.fdatasync_count(), 1);
    let one = HEADER_LEN + segment::frame_len(600) as u64;
    assert_eq!(d.sd_bytes(), one);
    assert_eq!(segment_files(d.sd.path()), [segment::segment_name(62)]);
    assert_eq!(seqs(&read_all(&mut q)), [62]);
    q.sync().unwrap();
    assert_eq!(q.fdatasync_count(), 1, "nothing new to sync");
    // Once acked, it leaves the SD card too.
    q.ack(62).unwrap();
    assert_eq!(d.sd_bytes(), 0);
    q.close().unwrap();
}

#[test]
fn synced_unacked_records_survive_a_power_cut() {
    let d = Dirs::new();
    let (mut q, _) = d.open(BOOT);
    append_n(&mut q, 10, 300);
    q.ack(3).unwrap();
    q.sync().unwrap();
    append_n(&mut q, 5, 300); // only in the spool: lost with the tmpfs
    let synced = q.synced_lengths();
    drop(q);
    d.lose_tmpfs();
    power_cut(&synced);
    let (mut q, report) = d.open("boot-b");
    assert_eq!(seqs(&read_all(&mut q)), (4..10).collect::<Vec<_>>());
    let (from, to) = report.seq_skipped.unwrap();
    assert!(from >= 10 && to == q.next_seq() && to >= 15, "{from}..{to}");
    append_n(&mut q, 2, 10);
    q.close().unwrap();
}

#[test]
fn a_process_crash_loses_nothing_from_log_or_spool() {
    let d = Dirs::new();
    let (mut q, _) = d.open(BOOT);
    append_n(&mut q, 10, 300);
    q.ack(2).unwrap();
    q.sync().unwrap();
    append_n(&mut q, 5, 300); // spool only
    drop(q);
    let (mut q, report) = d.open(BOOT);
    assert_eq!((q.next_seq(), report.seq_skipped), (15, None));
    assert_eq!(seqs(&read_all(&mut q)), (3..15).collect::<Vec<_>>());
    // Recovery moved the spool to the log and made it durable.
    assert!(q.fdatasync_count() >= 1);
    assert!(
        d.spool_files()
            .iter()
            .all(|p| fs::metadata(p).unwrap().len() == 0)
    );

    // A crash with nothing but the spool, then a power cut: the move on
    // open made the spool's records durable.
    append_n(&mut q, 4, 100);
    drop(q);
    let (q, _) = d.open(BOOT);
    let synced = q.synced_lengths();
    drop(q);
    d.lose_tmpfs();
    power_cut(&synced);
    let (mut q, _) = d.open("boot-b");
    assert_eq!(seqs(&read_all(&mut q)), (3..19).collect::<Vec<_>>());
}

#[test]
fn a_crash_after_everything_was_acked_keeps_the_seq() {
    let d = Dirs::new();
    let (mut q, _) = d.open(BOOT);
    append_n(&mut q, 7, 100);
    q.ack(6).unwrap();
    drop(q);
    let (mut q, report) = d.open(BOOT);
    assert_eq!((q.next_seq(), report.seq_skipped), (7, None));
    assert!(read_all(&mut q).is_empty());
    assert_eq!(d.sd_bytes(), 0);

    // Same boot but the tmpfs is gone (e.g. the runtime directory was
    // removed): the seqs in it cannot be proven unused.
    append_n(&mut q, 3, 100);
    drop(q);
    d.lose_tmpfs();
    let (q, report) = d.open(BOOT);
    assert!(report.seq_skipped.is_some() && q.next_seq() > 10);
}

#[test]
fn a_torn_spool_tail_is_truncated() {
    let d = Dirs::new();
    let (mut q, _) = d.open(BOOT);
    append_n(&mut q, 5, 100);
    drop(q);
    let [spool] = d.spool_files().try_into().unwrap();
    let mut bytes = fs::read(&spool).unwrap();
    let mut frame = Vec::new();
    segment::encode_frame(5, RecordKind::Event, 0, &[7; 50], &mut frame);
    bytes.extend_from_slice(&frame[..40]);
    fs::write(&spool, &bytes).unwrap();

    let (mut q, report) = d.open(BOOT);
    assert_eq!(report.truncated_bytes, 40);
    assert!(report.quarantined.is_empty());
    assert_eq!(seqs(&read_all(&mut q)), [0, 1, 2, 3, 4]);
    assert_eq!(q.next_seq(), 5);
}

#[test]
fn a_corrupt_spool_is_quarantined() {
    let d = Dirs::new();
    let (mut q, _) = d.open(BOOT);
    append_n(&mut q, 5, 100);
    drop(q);
    let [spool] = d.spool_files().try_into().unwrap();
    let mut bytes = fs::read(&spool).unwrap();
    bytes[HEADER_LEN as usize + FRAME_HEADER_LEN + 5] ^= 0xff;
    fs::write(&spool, &bytes).unwrap();

    let (mut q, report) = d.open(BOOT);
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    let name = spool.file_name().unwrap();
    assert!(d.sd.path().join("quarantine").join(name).exists());
    assert!(read_all(&mut q).is_empty());
    assert_eq!(q.stats().quarantined_total, 1);
}

#[test]
fn read_spans_log_and_spool_in_order_without_duplicates() {
    let d = Dirs::new();
    let (mut q, _) = d.open(BOOT);
    append_n(&mut q, 10, 300);
    q.ack(3).unwrap();
    q.sync().unwrap(); // 4..10 in the log
    append_n(&mut q, 5, 300); // 10..15 in the spool
    assert_eq!(seqs(&read_all(&mut q)), (4..15).collect::<Vec<_>>());
    assert_eq!(seqs(&q.read(8, 4, usize::MAX).unwrap()), [8, 9, 10, 11]);
    assert_eq!(seqs(&q.read(12, 10, usize::MAX).unwrap()), [12, 13, 14]);
    assert_eq!(seqs(&q.read(9, 10, 700).unwrap()), [9, 10]);
    let s = q.stats();
    assert_eq!((s.records, s.oldest_ts_ms), (11, Some(1_004)));

    // A crash after the move to the log but before the spool was emptied
    // leaves the records in both: each is delivered once.
    let [spool] = d.spool_files().try_into().unwrap();
    let kept = fs::read(&spool).unwrap();
    q.sync().unwrap();
    drop(q);
    d.lose_tmpfs();
    fs::write(&spool, kept).unwrap();
    let (mut q, report) = d.open(BOOT);
    assert_eq!((q.next_seq(), report.seq_skipped), (15, None));
    assert_eq!(seqs(&read_all(&mut q)), (4..15).collect::<Vec<_>>());
    assert_eq!(q.stats().records, 11);
}

#[test]
fn the_cap_counts_the_spool_and_drops_the_oldest_first() {
    let d = Dirs::new();
    let config = QueueConfig {
        max_bytes: 16 << 10,
        ..d.cfg()
    };
    let (mut q, _) = Queue::open(config, BOOT).unwrap();
    let mut dropped = 0;
    for i in 0..40 {
        dropped += append_n(&mut q, 5, 200);
        if i % 3 == 2 {
            q.sync().unwrap();
        }
        let spool: u64 = d
            .spool_files()
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert!(spool <= 4096, "the spool outgrew a segment: {spool}");
        assert!(d.sd_bytes() + spool <= 16 << 10, "over the cap");
    }
    assert!(dropped > 0);
    assert_eq!(
        seqs(&read_all(&mut q)),
        (dropped..200).collect::<Vec<_>>(),
        "only the oldest may go"
    );
    assert_eq!(q.stats().dropped_total, dropped);
}

/// `write_amplification_within_targets` with the spool on tmpfs: nothing at
/// all reaches the disk while every record is acked before its deadline.
#[test]
fn write_amplification_with_a_hot_spool() {
    if !io_accounting_available() {
        return;
    }
    assert!(
        dev_shm_is_tmpfs(),
        "/dev/shm must be a tmpfs for the hot spool test"
    );
    let sd = tempfile::tempdir().unwrap();
    let hot = tempfile::tempdir_in("/dev/shm").unwrap();
    let config = QueueConfig {
        segment_bytes: 1 << 20,
        hot_dir: Some(hot.path().to_owned()),
        ..cfg(sd.path())
    };
    let (mut q, _) = Queue::open(config, BOOT).unwrap();
    let n = 600;

    let start = disk_write_bytes().unwrap();
    for i in 0..n {
        append_n(&mut q, 1, 600);
        q.ack(q.next_seq() - 1).unwrap();
        if i % 10 == 9 {
            q.sync().unwrap();
        }
    }
    let connected = disk_write_bytes().unwrap() - start;
    assert_eq!(
        connected, 0,
        "connected: {connected} bytes reached the disk"
    );

    let start = disk_write_bytes().unwrap();
    for i in 0..n {
        append_n(&mut q, 1, 600);
        if i % 10 == 9 {
            q.sync().unwrap();
        }
    }
    let broker_down = (disk_write_bytes().unwrap() - start) as f64 / (n * 600) as f64;
    assert!(broker_down <= 3.0, "broker down: {broker_down:.2}x");
    // The log is on a real disk (so "connected: 0" above means something).
    assert!(
        broker_down >= 1.0,
        "broker down: {broker_down:.2}x: is the temp dir on tmpfs?"
    );
    assert_eq!(seqs(&read_all(&mut q)).len(), n);
    eprintln!("write amplification, hot spool: broker down {broker_down:.2}x, connected 0");
}

fn dev_shm_is_tmpfs() -> bool {
    fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.get(1) == Some(&"/dev/shm") && f.get(2) == Some(&"tmpfs")
        })
    })
}
