//! The engine with paused time: no broker, no database; publishes go in
//! through its channel, commits come out of the other.

use std::time::Duration;

use rumqttc::{Publish, QoS};
use tokio::sync::{mpsc, oneshot};

use picket_protocol::{
    DeviceId, Format, OfflineReason, Presence, Sample, State, Telemetry, Thermal, Topics, VERSION,
};

use super::query::{DeviceDetail, Query};
use super::*;

const T0: Millis = 1_800_000_000_000;

struct Harness {
    inbound: mpsc::Sender<crate::pipeline::Delivery>,
    counters: Arc<IngestCounters>,
    queries: mpsc::Sender<Query>,
    commits: mpsc::Receiver<Commit>,
    stop: tokio_util::sync::CancellationToken,
}

fn start() -> Harness {
    start_with(&[])
}

fn start_with(rules: &[crate::rules::RawRule]) -> Harness {
    start_from(rules, Snapshot::default())
}

fn start_from(rules: &[crate::rules::RawRule], snapshot: Snapshot) -> Harness {
    start_full(rules, snapshot, None)
}

fn start_full(
    rules: &[crate::rules::RawRule],
    snapshot: Snapshot,
    pace: Option<Arc<crate::pipeline::Pace>>,
) -> Harness {
    let cfg = EngineConfig {
        topics: Topics::default(),
        max_payload: 1 << 20,
        presence_timeout: Duration::from_secs(300),
        cooldown: Duration::from_secs(3600),
        rules: Arc::new(crate::rules::build(rules).expect("rules")),
        labels: Vec::new(),
        format: Format::Json,
        issuer: Arc::new(crate::commands::Issuer {
            cfg: crate::commands::CommandsConfig {
                key: Some(Arc::new(picket_protocol::signing::private_key([5; 32]))),
                default_ttl: Duration::from_secs(300),
                max_ttl: Duration::from_secs(3600),
            },
            topics: Topics::default(),
            format: Format::Json,
        }),
    };
    let (inbound, inbound_rx) = mpsc::channel(16);
    let (queries, queries_rx) = mpsc::channel(4);
    let (commit_tx, commits) = mpsc::channel(64);
    let counters = Arc::new(IngestCounters::default());
    let engine = Engine::new(
        cfg,
        snapshot,
        Clock::starting_at(T0),
        Arc::clone(&counters),
        inbound_rx,
        queries_rx,
        commit_tx,
    );
    let engine = match pace {
        Some(pace) => engine.paced_by(pace),
        None => engine,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(engine.run(stop.clone().cancelled_owned()));
    Harness {
        inbound,
        counters,
        queries,
        commits,
        stop,
    }
}

fn dev() -> DeviceId {
    DeviceId::new("pi-1").expect("id")
}

fn publish<T: serde::Serialize>(topic: String, msg: &T) -> Publish {
    let payload = picket_protocol::encode(msg, Format::Json).expect("encode");
    Publish::new(topic, QoS::AtLeastOnce, payload)
}

fn state(status: Presence, session: &str) -> Publish {
    let st = State {
        v: VERSION,
        device: dev(),
        status,
        session: session.into(),
        version: None,
        model: None,
        boot: None,
        ts: None,
        reason: (status == Presence::Offline).then_some(OfflineReason::ConnectionLost),
    };
    publish(Topics::default().state(&dev()), &st)
}

fn telemetry(seq: u64, temp: f32) -> Publish {
    let sample = Sample {
        seq,
        ts: T0 + seq,
        mono: seq,
        boot: "b".into(),
        sync: true,
        hist: false,
        cpu: None,
        load: None,
        mem: None,
        swap: None,
        uptime: None,
        disks: vec![],
        net: vec![],
        thermal: vec![Thermal {
            zone: "thermal_zone0".into(),
            kind: "cpu-thermal".into(),
            c: temp,
        }],
        throttle: None,
        services: vec![],
        gpio: Vec::new(),
        docker: None,
        containers: Vec::new(),
        agent: None,
    };
    let t = Telemetry {
        v: VERSION,
        device: dev(),
        samples: vec![sample],
    };
    publish(Topics::default().telemetry(&dev()), &t)
}

impl Harness {
    /// Hand `p` to the engine as the link would.
    async fn send(&self, publish: Publish) {
        let d = crate::pipeline::Delivery { conn: 1, publish };
        self.inbound.send(d).await.expect("engine alive");
    }

    async fn detail(&self) -> DeviceDetail {
        let (tx, rx) = oneshot::channel();
        self.queries
            .send(Query::Device(dev(), tx))
            .await
            .expect("engine alive");
        rx.await.expect("answer").expect("device known")
    }

    /// Every commit handed to the store so far.
    fn drain(&mut self) -> Vec<Commit> {
        std::iter::from_fn(|| self.commits.try_recv().ok()).collect()
    }

    /// Every retained alert payload committed so far.
    fn alert_sets(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(c) = self.commits.try_recv() {
            out.extend(c.alerts.into_iter().map(|(_, p)| p));
        }
        out
    }
}

/// While the store writes a commit, the engine gathers what arrives and
/// hands it all over once the store is idle again: one commit, not one per
/// turn of its loop.
#[tokio::test(start_paused = true)]
async fn work_gathers_while_the_store_is_busy_and_goes_over_when_it_is_idle() {
    let pace = Arc::new(crate::pipeline::Pace::default());
    let mut h = start_full(&[], Snapshot::default(), Some(Arc::clone(&pace)));
    for seq in 1..=10 {
        h.send(telemetry(seq, 40.0)).await;
        // A query answered is a turn of the loop finished.
        assert_eq!(h.detail().await.seq.last, Some(seq));
    }
    assert!(
        h.drain().is_empty(),
        "nothing goes over while the store is busy"
    );
    pace.set_idle(true);
    let commit = tokio::time::timeout(Duration::from_secs(1), h.commits.recv())
        .await
        .expect("a commit once the store is idle")
        .expect("engine alive");
    assert_eq!(commit.acks.len(), 10);
    assert_eq!(commit.batch.samples.len(), 10);
    // Idle, the store gets each turn's work at once.
    h.send(telemetry(11, 40.0)).await;
    let commit = tokio::time::timeout(Duration::from_secs(1), h.commits.recv())
        .await
        .expect("a commit at once")
        .expect("engine alive");
    assert_eq!(commit.acks.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn sequence_accounting_is_journaled_between_checkpoints_and_restored_from_both() {
    let mut h = start();
    h.send(state(Presence::Online, "s1")).await;
    h.send(telemetry(0, 50.0)).await;
    h.detail().await;
    // A new device is written whole at once.
    let first = h.drain();
    let whole: Vec<&StateRow> = first.iter().flat_map(|c| &c.batch.state).collect();
    assert_eq!(whole.len(), 1, "{first:?}");

    // Between checkpoints a sample costs a journal entry, no JSON.
    h.send(telemetry(1, 50.0)).await;
    h.detail().await;
    let quiet = h.drain();
    assert!(
        quiet.iter().all(|c| c.batch.state.is_empty()
            && !c.batch.checkpoint
            && !c.batch.journal.is_empty())
    );
    // A change that must not wait (a new session's birth) writes the whole
    // row, and journals it too: replayed over the rows, an older entry must
    // never be the device's last.
    h.send(state(Presence::Online, "s2")).await;
    h.send(telemetry(3, 50.0)).await;
    h.detail().await;
    let with_birth = h.drain();
    let rows: Vec<&Commit> = with_birth
        .iter()
        .filter(|c| !c.batch.state.is_empty())
        .collect();
    assert!(!rows.is_empty(), "{with_birth:?}");
    assert!(rows.iter().all(|c| c.batch.journal.len() == 1), "{rows:?}");
    let stale = rows[0].batch.state[0].clone();
    let journal: Vec<JournalEntry> = quiet
        .into_iter()
        .chain(with_birth)
        .flat_map(|c| c.batch.journal)
        .collect();
    let last = SeqTracker::decode(&journal.last().expect("journaled").value).expect("decodes");
    assert_eq!(
        (last.last, last.received, last.missing_ranges()),
        (3, 3, &[(2, 2)][..])
    );

    // A quiet fleet still gets its checkpoint: whole rows, no journal.
    tokio::time::sleep(Duration::from_millis(CHECKPOINT_EVERY + 100)).await;
    h.detail().await;
    let checkpoint = h.drain();
    assert_eq!(checkpoint.len(), 1, "{checkpoint:?}");
    assert!(checkpoint[0].batch.checkpoint && checkpoint[0].batch.journal.is_empty());
    let row = &checkpoint[0].batch.state[0];
    let p: Persisted = serde_json::from_str(row.value.as_deref().expect("a value")).expect("JSON");
    assert_eq!(p.seq, last);
    h.stop.cancel();

    // After a crash between checkpoints: the stale row plus the journal.
    let mut snapshot = Snapshot::default();
    snapshot.state.insert(
        dev(),
        vec![crate::history::StateEntry {
            kind: stale.kind,
            key: stale.key,
            value: stale.value.expect("a value"),
        }],
    );
    snapshot.journal = journal;
    let h = start_from(&[], snapshot);
    let d = h.detail().await;
    assert_eq!((d.seq.last, d.seq.received), (Some(3), 3));
    assert_eq!(d.seq.missing_ranges, vec![(2, 2)]);
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn numbers_an_agent_declares_skipped_are_neither_missing_nor_counted() {
    let h = start();
    let started = picket_protocol::EventBatch {
        v: VERSION,
        device: dev(),
        events: vec![picket_protocol::Event {
            seq: 5_000,
            ts: T0,
            mono: 0,
            boot: "b".into(),
            sync: true,
            hist: false,
            kind: picket_protocol::EventKind::AgentStarted {
                version: "0.1.0".into(),
                seq_skipped: Some((0, 5_000)),
            },
        }],
    };
    h.send(publish(Topics::default().event(&dev()), &started))
        .await;
    // A real gap after it still counts.
    h.send(telemetry(5_003, 50.0)).await;
    let d = h.detail().await;
    assert_eq!((d.seq.last, d.seq.received), (Some(5_003), 2));
    assert_eq!(d.seq.missing_ranges, vec![(5_001, 5_002)]);
    assert_eq!(IngestCounters::get(&h.counters.gap_records), 2);
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_silent_device_goes_offline_at_the_timeout_give_or_take_a_second() {
    let h = start();
    h.send(state(Presence::Online, "s1")).await;
    h.send(telemetry(1, 50.0)).await;
    assert_eq!(h.detail().await.presence.status, "online");
    tokio::time::sleep(Duration::from_millis(300_000 - 1_000)).await;
    assert_eq!(h.detail().await.presence.status, "online", "1 s early");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let d = h.detail().await;
    assert_eq!(
        (d.presence.status, d.presence.reason),
        ("offline", Some("silent"))
    );
    assert_eq!(d.presence.since, T0, "dated from the last message");
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn going_offline_withdraws_the_suppressed_alerts_from_the_retained_set() {
    let mut h = start();
    h.send(state(Presence::Online, "s1")).await;
    // 85 °C held past the temperature rule's 1 minute: critical.
    for seq in 1..=8 {
        h.send(telemetry(seq, 85.0)).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    assert_eq!(h.detail().await.alerts.len(), 1);
    let sets = h.alert_sets();
    assert!(
        sets.last().is_some_and(|p| !p.is_empty()),
        "alert published"
    );
    // The will: offline; the offline alert waits 5 minutes, the
    // temperature alert is suppressed, so the retained set is cleared.
    h.send(state(Presence::Offline, "s1")).await;
    assert!(h.detail().await.alerts.is_empty());
    let sets = h.alert_sets();
    assert_eq!(sets.last().map(Vec::len), Some(0), "retained set cleared");
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_firing_alert_sends_its_remedy_within_the_rate_limit() {
    use crate::rules::{Amount, RawRemedy, RawRule};
    let rule = RawRule {
        name: "hot".into(),
        metric: Some("temp".into()),
        op: Some(">".into()),
        critical: Some(Amount::Number(80.0)),
        remedy: Some(RawRemedy {
            command: "service.restart".into(),
            args: Some(serde_json::json!({"unit": "fan-{device}.service"})),
            limit: Some(2),
            ..RawRemedy::default()
        }),
        ..RawRule::default()
    };
    let mut h = start_with(&[rule]);
    h.send(state(Presence::Online, "s1")).await;
    // Fire, resolve, three times over.
    for (seq, temp) in [(1, 90.0), (2, 50.0), (3, 91.0), (4, 50.0), (5, 92.0)] {
        h.send(telemetry(seq, temp)).await;
    }
    let mut remedies = Vec::new();
    let mut published = Vec::new();
    let mut commands = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while remedies.len() < 3 {
            let c = h.commits.recv().await.expect("commit");
            remedies.extend(
                c.batch
                    .alerts
                    .iter()
                    .filter(|a| a.rule == "hot" && a.change == "fired")
                    .map(|a| a.remedy.clone().expect("remedy recorded")),
            );
            commands.extend(c.batch.commands);
            published.extend(c.commands);
        }
    })
    .await
    .expect("three firings");
    assert_eq!(commands.len(), 2, "{remedies:?}");
    assert_eq!(published.len(), 2);
    assert_eq!(remedies[0], commands[0].id);
    assert_eq!(remedies[1], commands[1].id);
    assert!(remedies[2].starts_with("rate_limited"), "{}", remedies[2]);
    assert_eq!(commands[0].source, "rule:hot");
    assert_eq!(
        commands[0].args,
        serde_json::json!({"unit": "fan-pi-1.service"})
    );
    let (topic, payload) = &published[0];
    assert_eq!(topic, &format!("picket/v1/pi-1/cmd/{}", commands[0].id));
    let cmd: picket_protocol::Command =
        picket_protocol::decode(payload, 1 << 20).expect("a command");
    let key = picket_protocol::signing::private_key([5; 32]).verifying_key();
    assert_eq!(picket_protocol::signing::verify(&cmd, &key), Ok(()));
    h.stop.cancel();
}

fn container_event(seq: u64, hist: bool, kind: picket_protocol::EventKind) -> Publish {
    let batch = picket_protocol::EventBatch {
        v: VERSION,
        device: dev(),
        events: vec![picket_protocol::Event {
            seq,
            ts: T0 + seq,
            mono: seq,
            boot: "b".into(),
            sync: true,
            hist,
            kind,
        }],
    };
    publish(Topics::default().event(&dev()), &batch)
}

fn exited(unexpected: bool) -> picket_protocol::EventKind {
    picket_protocol::EventKind::Container {
        name: "web".into(),
        state: picket_protocol::ContainerState::Exited,
        health: None,
        restarts: 0,
        exit_code: Some(137),
        unexpected: Some(unexpected),
        old_state: Some(picket_protocol::ContainerState::Running),
        old_health: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_container_event_alerts_at_once_and_a_removal_resolves() {
    let mut h = start();
    h.send(state(Presence::Online, "s1")).await;
    h.send(telemetry(1, 50.0)).await;
    // History does not alert; a stop on request does not either.
    h.send(container_event(2, true, exited(true))).await;
    h.send(container_event(3, false, exited(false))).await;
    assert!(h.detail().await.alerts.is_empty());
    h.send(container_event(4, false, exited(true))).await;
    let d = h.detail().await;
    let rules: Vec<&str> = d.alerts.iter().map(|a| a.rule.as_str()).collect();
    assert_eq!(rules, ["container_exited:web"], "{:?}", d.alerts);
    assert_eq!(d.alerts[0].severity, picket_protocol::Severity::Critical);
    assert!(h.alert_sets().last().is_some_and(|p| !p.is_empty()));
    // A sample taken before the event (sent after it) does not undo it.
    let mut t: Telemetry =
        picket_protocol::decode(&telemetry(6, 50.0).payload, 1 << 20).expect("telemetry");
    t.samples[0].ts = T0 + 3;
    t.samples[0].containers = vec![picket_protocol::Container {
        name: "web".into(),
        id: "0123456789ab".into(),
        image: "nginx".into(),
        state: picket_protocol::ContainerState::Running,
        health: None,
        restarts: 0,
        started: None,
        exit_code: None,
        unexpected: None,
        cpu: None,
        mem: None,
        mem_limit: None,
    }];
    h.send(publish(Topics::default().telemetry(&dev()), &t))
        .await;
    assert_eq!(h.detail().await.alerts.len(), 1);
    h.send(container_event(
        5,
        false,
        picket_protocol::EventKind::ContainerGone { name: "web".into() },
    ))
    .await;
    assert!(h.detail().await.alerts.is_empty());
    assert_eq!(h.alert_sets().last().map(Vec::len), Some(0));
    h.stop.cancel();
}
