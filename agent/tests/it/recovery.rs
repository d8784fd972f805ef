//! A queue directory damaged while the agent was stopped (torn tail, corrupt
//! segment): the agent starts anyway, reports the quarantine, and delivers
//! every record of the other segments.

use std::path::{Path, PathBuf};
use std::time::Duration;

use picket_protocol::EventKind;

use crate::broker::Broker;
use crate::util::{Agent, Subscriber, base_env, config};

fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut segs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let base = p
                .file_name()?
                .to_str()?
                .strip_suffix(".seg")?
                .parse()
                .ok()?;
            Some((base, p))
        })
        .collect();
    segs.sort();
    segs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_queue_is_recovered_and_the_rest_delivered() {
    let mut broker = Broker::start().await;
    let sub = Subscriber::start(broker.sub_port, "recovery").await;
    broker.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env("pi-recover", &broker.url(), dir.path(), "10ms");
    env.push(("PICKET_QUEUE_SEGMENT_BYTES", "4KiB".into()));

    // Fill several segments while the broker is away, then stop cleanly.
    let agent = Agent::start(config(&env)).await;
    agent
        .wait_store(Duration::from_secs(60), "five segments", |_| {
            segments(dir.path())
                .iter()
                .filter(|(_, p)| p.metadata().map_or(0, |m| m.len()) > 0)
                .count()
                >= 6
        })
        .await;
    agent.stop().await;
    let segs: Vec<_> = segments(dir.path())
        .into_iter()
        .filter(|(_, p)| p.metadata().unwrap().len() > 100)
        .collect();
    assert!(segs.len() >= 5, "{segs:?}");

    // Corrupt a record in the middle of the second segment...
    let (bad_base, bad_path) = segs[1].clone();
    let bad_end = segs[2].0;
    let mut bytes = std::fs::read(&bad_path).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8] {
        *b ^= 0xA5;
    }
    std::fs::write(&bad_path, bytes).unwrap();
    // ...and tear the tail of the last one, as a power cut mid-write would.
    let (_, last_path) = segs.last().unwrap().clone();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last_path)
        .unwrap();
    std::io::Write::write_all(&mut f, &[0x00, 0x00, 0x01, 0x20, 0xde, 0xad, 0xbe]).unwrap();
    drop(f);

    broker.resume().await;
    let agent = Agent::start(config(&env)).await;
    let quarantined = dir.path().join("quarantine");
    sub.wait_for(Duration::from_secs(60), "the quarantine event", |r| {
        r.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::QueueQuarantined { .. }))
    })
    .await;
    let restart_seq = agent.appended_through().unwrap();
    sub.wait_for(Duration::from_secs(60), "the backlog", |r| {
        r.seqs.iter().any(|&s| s >= restart_seq)
    })
    .await;
    let stats = agent.observers.store.borrow().stats.clone();
    agent.stop().await;

    assert!(
        quarantined.is_dir(),
        "corrupt segment set aside, not deleted"
    );
    assert_eq!(stats.quarantined_total, 1);
    let r = sub.snapshot();
    let got: std::collections::BTreeSet<u64> = r.seqs.iter().copied().collect();
    let expected_missing: Vec<u64> = (bad_base..bad_end).collect();
    let missing: Vec<u64> = (0..=restart_seq).filter(|s| !got.contains(s)).collect();
    assert_eq!(
        missing, expected_missing,
        "only the quarantined segment's records are missing"
    );
}
