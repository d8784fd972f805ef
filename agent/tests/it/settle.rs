//! A broker killed before it saved what it acknowledged: the agent keeps
//! acknowledged records for `uplink.hold_acked` and sends them again, so
//! nothing is lost; with the hold off, the same kill loses records (which
//! shows the test can see a loss). Mosquitto only (rumqttd keeps nothing
//! across a restart): run with
//! `cargo test -p picket-agent --test it settle -- --ignored`.

use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::util::{Agent, Subscriber, base_env, config, gaps};

/// Seqs the subscriber got, after one broker SIGKILL one second after a
/// save (so two seconds before the next): with `hold` as the agent's
/// `uplink.hold_acked`.
async fn through_a_broker_kill(device: &str, hold: &str) -> (Vec<u64>, u64) {
    // Saves when more than 2 s have passed since the last: every 3 s.
    let mut broker = Broker::mosquitto_saving_every(2).await;
    // The collector's part: a persistent session, away while the agent
    // publishes, so its messages wait in the broker (and in its saves).
    drop(Subscriber::start(broker.sub_port, device).await);
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(device, &broker.url(), dir.path(), "100ms");
    env.push(("PICKET_UPLINK_HOLD_ACKED", hold.into()));
    let agent = Agent::start(config(&env)).await;

    // Two saves with the agent publishing, then one second more.
    let saves = broker.saves();
    let deadline = Instant::now() + Duration::from_secs(30);
    while broker.saves() < saves + 2 {
        assert!(Instant::now() < deadline, "Mosquitto never saved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = agent.observers.uplink.borrow().acked_through;
    broker.kill().await;
    assert!(before.is_some(), "the broker acknowledged records");
    broker.resume().await;

    // Everything taken by now must arrive, first try or sent again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let last = agent.appended_through().expect("records appended");
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent
        .observers
        .uplink
        .borrow()
        .acked_through
        .is_none_or(|a| a < last)
    {
        assert!(Instant::now() < deadline, "the agent never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.stop().await;
    let sub = Subscriber::start(broker.sub_port, device).await;
    sub.wait_for(Duration::from_secs(10), "the last record", |r| {
        r.seqs.contains(&last)
    })
    .await;
    (sub.snapshot().first_arrivals(), last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Mosquitto: cargo test -p picket-agent --test it settle -- --ignored"]
async fn a_broker_killed_before_saving_loses_nothing_with_the_hold() {
    let (seqs, last) = through_a_broker_kill("pi-settle-hold", "10s").await;
    let mut all = seqs.clone();
    all.sort_unstable();
    assert_eq!(all.first(), Some(&0), "from the first record");
    assert_eq!(gaps(all.iter().copied()), Vec::<u64>::new(), "nothing lost");
    assert!(all.last() >= Some(&last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Mosquitto: cargo test -p picket-agent --test it settle -- --ignored"]
async fn without_the_hold_the_same_kill_loses_what_the_broker_had_not_saved() {
    let (seqs, _) = through_a_broker_kill("pi-settle-trust", "0s").await;
    let mut all = seqs.clone();
    all.sort_unstable();
    let lost = gaps(all.iter().copied());
    // About a second of records at 10 a second.
    assert!(
        lost.len() >= 3,
        "Mosquitto kept what it had not saved? lost {lost:?}"
    );
}
