//! Sensors → disk queue → MQTT, end to end against a real broker.

use std::time::Duration;

use picket_protocol::EventKind;

use crate::broker::Broker;
use crate::util::{Agent, Subscriber, base_env, config, gaps, is_strictly_increasing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_samples_arrive_in_order_exactly_once() {
    let broker = Broker::start().await;
    let sub = Subscriber::start(broker.sub_port, "thousand").await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&base_env(
        "pi-thousand",
        &broker.url(),
        dir.path(),
        "10ms",
    )))
    .await;

    sub.wait_for(Duration::from_secs(120), "1000 samples", |r| {
        r.samples.len() >= 1000
    })
    .await;
    agent.stop().await;
    let r = sub.snapshot();
    assert_eq!(r.undecodable, 0);
    assert!(
        is_strictly_increasing(&r.seqs),
        "arrival order is seq order, no duplicate"
    );
    assert_eq!(gaps(r.seqs.iter().copied()), Vec::<u64>::new());
    // Only what was sampled before the first connection came up is history:
    // a prefix of the stream (its length depends on how long the connection
    // took, which a loaded machine stretches), followed by live samples only.
    let flags: Vec<bool> = r.samples.iter().map(|s| s.hist).collect();
    let first_live = flags.iter().position(|h| !h).expect("live samples");
    let late_hist: Vec<u64> = r.samples[first_live..]
        .iter()
        .filter(|s| s.hist)
        .map(|s| s.seq)
        .collect();
    assert!(
        late_hist.is_empty(),
        "a live stream is not history: {late_hist:?} after live seq {}",
        r.samples[first_live].seq
    );
    assert!(
        matches!(
            r.events.first().map(|e| &e.kind),
            Some(EventKind::AgentStarted { .. })
        ),
        "the first record is the start event"
    );
    let birth = r
        .states
        .iter()
        .find(|s| {
            s.device.as_str() == "pi-thousand" && s.status == picket_protocol::Presence::Online
        })
        .expect("a birth message");
    assert_eq!(birth.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_nothing_and_the_backlog_is_history() {
    let mut broker = Broker::start().await;
    let sub = Subscriber::start(broker.sub_port, "outage").await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env("pi-outage", &broker.url(), dir.path(), "20ms");
    env.push(("PICKET_PAYLOAD_FORMAT", "json".into()));
    let agent = Agent::start(config(&env)).await;

    sub.wait_for(Duration::from_secs(30), "live samples", |r| {
        r.samples.len() >= 20
    })
    .await;
    broker.stop().await;
    let at_stop = agent.appended_through().unwrap();
    // Keep sampling while the broker is away: at least 50 more records.
    agent
        .wait_store(Duration::from_secs(30), "backlog to build", |s| {
            s.appended_through.unwrap_or(0) >= at_stop + 50
        })
        .await;
    let during = agent.appended_through().unwrap();
    broker.resume().await;

    // Live samples again: the reconnection happened (after a back-off
    // during which sampling went on, into the backlog).
    sub.wait_for(
        Duration::from_secs(60),
        "live samples after the backlog",
        |r| r.samples.iter().any(|s| s.seq > during && !s.hist),
    )
    .await;
    agent.stop().await;

    let r = sub.snapshot();
    assert_eq!(r.undecodable, 0);
    let first = r.first_arrivals();
    assert!(
        is_strictly_increasing(&first),
        "in order (duplicates aside)"
    );
    assert_eq!(
        gaps(first.iter().copied()),
        Vec::<u64>::new(),
        "nothing lost"
    );
    // Everything sampled while the broker was down came as history...
    let backlog: Vec<_> = r
        .samples
        .iter()
        .filter(|s| s.seq > at_stop + 5 && s.seq <= during)
        .collect();
    assert!(backlog.len() >= 40, "backlog delivered: {}", backlog.len());
    assert!(backlog.iter().all(|s| s.hist), "backlog marked hist");
    // ...and once live, the stream stays live.
    let first_live = r
        .samples
        .iter()
        .filter(|s| !s.hist && s.seq > during)
        .map(|s| s.seq)
        .min();
    assert!(
        r.samples
            .iter()
            .filter(|s| Some(s.seq) > first_live)
            .all(|s| !s.hist)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_oldest_and_says_so() {
    let mut broker = Broker::start().await;
    let sub = Subscriber::start(broker.sub_port, "cap").await;
    broker.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env("pi-cap", &broker.url(), dir.path(), "10ms");
    env.push(("PICKET_QUEUE_MAX_BYTES", "64KiB".into()));
    env.push(("PICKET_QUEUE_SEGMENT_BYTES", "8KiB".into()));
    let agent = Agent::start(config(&env)).await;
    agent
        .wait_store(Duration::from_secs(60), "records dropped", |s| {
            s.stats.dropped_total >= 50
        })
        .await;
    let stats = agent.observers.store.borrow().stats.clone();
    assert!(
        stats.bytes <= 64 << 10,
        "queue within its cap: {} bytes",
        stats.bytes
    );

    broker.resume().await;
    // The queue keeps dropping until the agent's next reconnection attempt,
    // so "newest" here means what is sampled once it is connected again.
    let newest = agent.appended_through().unwrap();
    sub.wait_for(Duration::from_secs(60), "records after reconnecting", |r| {
        r.seqs.iter().any(|&s| s > newest + 50)
    })
    .await;
    sub.wait_for(Duration::from_secs(30), "a dropped event", |r| {
        r.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::QueueDropped { .. }))
    })
    .await;
    agent.stop().await;

    let r = sub.snapshot();
    let first = r.first_arrivals();
    assert!(
        first[0] >= 50,
        "the oldest records were dropped; first kept {}",
        first[0]
    );
    let reported = r
        .samples
        .iter()
        .filter_map(|s| s.agent.as_ref())
        .map(|a| a.dropped)
        .max()
        .unwrap();
    assert!(reported >= 50, "agent health reports the drops: {reported}");
    // What was kept arrives without holes from the first kept record on.
    assert_eq!(gaps(first.iter().copied()), Vec::<u64>::new());
}
