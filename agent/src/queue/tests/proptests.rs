//! Random operation sequences against a model, with crash points: a process
//! crash (drop without close, same boot, the hot spool's tmpfs kept) and a
//! power cut (drop, then every segment cut back to a random length no shorter
//! than what fdatasync made durable, the tmpfs emptied, new boot). Each
//! sequence runs without and with a hot spool.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::super::*;

#[derive(Debug, Clone)]
enum Op {
    Append { n: u8, len: u16 },
    Ack { pick: u8 },
    Sync,
    Read { from: u8, max: u8 },
    Close { reboot: bool },
    ProcessCrash,
    PowerCut { cuts: Vec<u8> },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..8, 0u16..700).prop_map(|(n, len)| Op::Append { n, len }),
        3 => any::<u8>().prop_map(|pick| Op::Ack { pick }),
        2 => Just(Op::Sync),
        1 => (any::<u8>(), 1u8..20).prop_map(|(from, max)| Op::Read { from, max }),
        1 => any::<bool>().prop_map(|reboot| Op::Close { reboot }),
        1 => Just(Op::ProcessCrash),
        1 => proptest::collection::vec(any::<u8>(), 1..6).prop_map(|cuts| Op::PowerCut { cuts }),
    ]
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as usize).wrapping_mul(131).wrapping_add(i) as u8)
        .collect()
}

fn kind(seq: u64) -> RecordKind {
    if seq % 3 == 0 {
        RecordKind::Event
    } else {
        RecordKind::Sample
    }
}

/// What the queue must hold, kept exact between crashes.
#[derive(Default)]
struct Model {
    /// Payload length of every record ever appended, by seq.
    appended: BTreeMap<u64, usize>,
    /// Unacked, undropped seqs in order.
    live: VecDeque<u64>,
    /// Live seqs that reached the disk.
    synced: BTreeSet<u64>,
    next: u64,
    boot: u32,
}

impl Model {
    fn check_intact(&self, records: &[Record]) {
        for w in records.windows(2) {
            assert!(
                w[0].seq < w[1].seq,
                "out of order: {} then {}",
                w[0].seq,
                w[1].seq
            );
        }
        for r in records {
            let len = self.appended.get(&r.seq).copied();
            assert_eq!(
                len,
                Some(r.payload.len()),
                "seq {} was never appended with this size",
                r.seq
            );
            assert_eq!((r.kind, r.ts_ms), (kind(r.seq), r.seq * 7));
            assert_eq!(
                r.payload,
                payload(r.seq, r.payload.len()),
                "seq {} damaged",
                r.seq
            );
        }
    }

    fn check_exact(&self, q: &mut Queue) {
        let all = q.read(0, usize::MAX, usize::MAX).unwrap();
        self.check_intact(&all);
        let got: Vec<u64> = all.iter().map(|r| r.seq).collect();
        assert_eq!(got, Vec::from(self.live.clone()));
        assert_eq!(q.stats().records, self.live.len() as u64);
    }

    /// After a crash the queue's view wins, once checked: nothing synced and
    /// unacked is missing, nothing is damaged, no seq can come back.
    fn adopt(&mut self, q: &mut Queue, report: &OpenReport) {
        assert!(
            q.next_seq() >= self.next,
            "seq {} would be reused (next was {})",
            q.next_seq(),
            self.next
        );
        if let Some((from, to)) = report.seq_skipped {
            assert!(from < to && to == q.next_seq());
        }
        let all = q.read(0, usize::MAX, usize::MAX).unwrap();
        self.check_intact(&all);
        let got: BTreeSet<u64> = all.iter().map(|r| r.seq).collect();
        let missing: Vec<_> = self.synced.difference(&got).collect();
        assert!(missing.is_empty(), "synced records lost: {missing:?}");
        self.live = all.iter().map(|r| r.seq).collect();
        self.synced = got;
        self.next = q.next_seq();
    }
}

fn cut_back(synced: &[(std::path::PathBuf, u64)], cuts: &[u8]) {
    for (i, (path, synced_len)) in synced.iter().enumerate() {
        let Ok(f) = fs::OpenOptions::new().write(true).open(path) else {
            continue;
        };
        let len = f.metadata().unwrap().len();
        let keep = synced_len + (len - synced_len) * u64::from(cuts[i % cuts.len()]) / 255;
        f.set_len(keep).unwrap();
    }
}

/// What a reboot does to tmpfs.
fn empty_dir(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
}

fn run(ops: Vec<Op>, with_hot: bool) {
    let dir = tempfile::tempdir().unwrap();
    let hot = tempfile::tempdir().unwrap();
    let cfg = QueueConfig {
        dir: dir.path().to_owned(),
        segment_bytes: 4096,
        max_bytes: 12 << 10,
        sync_interval: Duration::from_secs(10),
        hot_dir: with_hot.then(|| hot.path().to_owned()),
    };
    let open = |boot: u32| Queue::open(cfg.clone(), &format!("boot-{boot}")).unwrap();
    let mut m = Model::default();
    let (mut q, _) = open(m.boot);
    for op in ops {
        match op {
            Op::Append { n, len } => {
                let batch: Vec<_> = (m.next..m.next + u64::from(n))
                    .map(|seq| NewRecord {
                        seq,
                        kind: kind(seq),
                        ts_ms: seq * 7,
                        payload: payload(seq, len.into()),
                    })
                    .collect();
                let dropped = q.append(&batch).unwrap();
                for _ in 0..dropped {
                    let seq = m.live.pop_front().unwrap();
                    m.synced.remove(&seq);
                }
                for r in &batch {
                    let reused = m.appended.insert(r.seq, r.payload.len()).is_some();
                    assert!(!reused, "seq {} handed out twice", r.seq);
                    m.live.push_back(r.seq);
                }
                m.next += u64::from(n);
                assert!(q.sync_deadline().is_some());
            }
            Op::Ack { pick } => {
                if let Some(&through) = m.live.get(usize::from(pick) % m.live.len().max(1)) {
                    q.ack(through).unwrap();
                    while m.live.front().is_some_and(|&s| s <= through) {
                        m.live.pop_front();
                    }
                    m.synced.retain(|&s| s > through);
                }
            }
            Op::Sync => {
                q.sync().unwrap();
                m.synced = m.live.iter().copied().collect();
            }
            Op::Read { from, max } => {
                let from = m.next.saturating_sub(u64::from(from));
                let got = q.read(from, max.into(), usize::MAX).unwrap();
                let want: Vec<u64> = m
                    .live
                    .iter()
                    .copied()
                    .filter(|&s| s >= from)
                    .take(max.into())
                    .collect();
                assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), want);
            }
            Op::Close { reboot } => {
                q.close().unwrap();
                m.boot += u32::from(reboot);
                if reboot {
                    empty_dir(hot.path());
                }
                let (nq, report) = open(m.boot);
                q = nq;
                assert_eq!(
                    (q.next_seq(), &report.seq_skipped),
                    (m.next, &None),
                    "close must make seqs exact"
                );
                m.synced = m.live.iter().copied().collect();
            }
            Op::ProcessCrash => {
                drop(q);
                let (nq, report) = open(m.boot);
                q = nq;
                assert_eq!(report.seq_skipped, None);
                // The page cache survived: even unsynced records are there.
                m.synced = m.live.iter().copied().collect();
                m.adopt(&mut q, &report);
            }
            Op::PowerCut { cuts } => {
                let synced = q.synced_lengths();
                drop(q);
                cut_back(&synced, &cuts);
                empty_dir(hot.path());
                m.boot += 1;
                let (nq, report) = open(m.boot);
                q = nq;
                m.adopt(&mut q, &report);
            }
        }
        m.check_exact(&mut q);
        assert_eq!(q.next_seq(), m.next);
        assert_quarantine_empty(dir.path());
    }
}

/// Crashes only ever tear tails: nothing the queue wrote is ever corrupt.
fn assert_quarantine_empty(dir: &Path) {
    assert!(
        !dir.join("quarantine").exists(),
        "a crash point produced a quarantined segment"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_with_crash_points(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops, false);
    }

    #[test]
    fn random_operations_with_crash_points_and_a_hot_spool(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        run(ops, true);
    }
}
