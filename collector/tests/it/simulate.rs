//! The simulated fleet against a real broker: what a subscriber on
//! `picket/v1/+/#` sees from birth to clean stop, in both encodings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use picket_collector::simulate::{
    self, Scenario, Schedule, SimConfig, SimCounts, SimError, SimStats,
};
use picket_config::{RawBroker, broker};
use picket_protocol::{
    DEFAULT_MAX_PAYLOAD, Event, EventBatch, EventKind, Format, OfflineReason, Presence, Sample,
    State, Telemetry, TopicKind, Topics, decode,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::sim_broker::{self, Message};

const INTERVAL: Duration = Duration::from_millis(100);

/// Everything the subscriber received, decoded, per device, in arrival order.
#[derive(Debug, Default)]
struct Seen {
    states: HashMap<String, Vec<State>>,
    samples: HashMap<String, Vec<Sample>>,
    events: HashMap<String, Vec<Event>>,
}

impl Seen {
    fn take(&mut self, msg: Message, format: Format) {
        assert_eq!(
            Format::detect(&msg.payload),
            format,
            "payload on {} in the wrong encoding",
            msg.topic
        );
        let topic = Topics::default().parse(&msg.topic).expect("a picket topic");
        let device = topic.device.to_string();
        match topic.kind {
            TopicKind::State => {
                let s: State = decode(&msg.payload, DEFAULT_MAX_PAYLOAD).expect("state decodes");
                assert_eq!(s.device.as_str(), device);
                self.states.entry(device).or_default().push(s);
            }
            TopicKind::Telemetry => {
                let t: Telemetry =
                    decode(&msg.payload, DEFAULT_MAX_PAYLOAD).expect("telemetry decodes");
                assert_eq!(t.device.as_str(), device);
                assert!(!t.samples.is_empty(), "empty batch from {device}");
                self.samples.entry(device).or_default().extend(t.samples);
            }
            TopicKind::Event => {
                let b: EventBatch =
                    decode(&msg.payload, DEFAULT_MAX_PAYLOAD).expect("events decode");
                assert_eq!(b.device.as_str(), device);
                self.events.entry(device).or_default().extend(b.events);
            }
            other => panic!("the simulator published on {other:?}"),
        }
    }

    fn states(&self, device: &str) -> &[State] {
        self.states.get(device).map_or(&[], Vec::as_slice)
    }

    fn samples(&self, device: &str) -> &[Sample] {
        self.samples.get(device).map_or(&[], Vec::as_slice)
    }

    fn events(&self, device: &str) -> &[Event] {
        self.events.get(device).map_or(&[], Vec::as_slice)
    }

    fn stopped_cleanly(&self, device: &str) -> bool {
        self.states(device).last().is_some_and(|s| {
            s.status == Presence::Offline && s.reason == Some(OfflineReason::CleanStop)
        })
    }
}

/// Read messages until `done` holds; panics naming `what` at the deadline.
async fn until(
    rx: &mut mpsc::UnboundedReceiver<Message>,
    seen: &mut Seen,
    format: Format,
    within: Duration,
    what: &str,
    done: impl Fn(&Seen) -> bool,
) {
    let deadline = Instant::now() + within;
    while !done(seen) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(msg)) => seen.take(msg, format),
            Ok(None) => panic!("subscriber ended while waiting for {what}"),
            Err(_) => panic!("no {what} within {within:?}; seen: {:#?}", counts(seen)),
        }
    }
}

fn counts(seen: &Seen) -> Vec<(String, usize, usize, usize)> {
    let mut devices: Vec<&String> = seen.states.keys().chain(seen.samples.keys()).collect();
    devices.sort();
    devices.dedup();
    devices
        .into_iter()
        .map(|d| {
            (
                d.clone(),
                seen.states(d).len(),
                seen.samples(d).len(),
                seen.events(d).len(),
            )
        })
        .collect()
}

struct Fleet {
    port: u16,
    rx: mpsc::UnboundedReceiver<Message>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), SimError>>,
    stats: Arc<SimStats>,
    names: Vec<String>,
}

async fn start(devices: usize, format: Format, schedule: Schedule) -> Fleet {
    let port = sim_broker::start().await;
    let rx = sim_broker::subscribe(port, "test-watcher", "picket/v1/+/#").await;
    let raw = RawBroker {
        url: format!("mqtt://127.0.0.1:{port}"),
        ..RawBroker::default()
    };
    let broker = broker::resolve(&raw, "unused").expect("broker config");
    let config = SimConfig {
        format,
        seed: 11,
        schedule,
        ..SimConfig::new(broker, devices, INTERVAL)
    };
    let stats = Arc::new(SimStats::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(simulate::run(config, stats.clone(), async {
        let _ = stopped.await;
    }));
    let names = (0..devices)
        .map(|i| simulate::device_id("sim", i).expect("id").to_string())
        .collect();
    Fleet {
        port,
        rx,
        stop,
        task,
        stats,
        names,
    }
}

/// Stop the fleet and wait for every device's clean stop.
async fn stop(mut fleet: Fleet, seen: &mut Seen, format: Format) -> (Fleet, SimCounts) {
    let (stop, _) = oneshot::channel();
    let trigger = std::mem::replace(&mut fleet.stop, stop);
    trigger.send(()).expect("fleet running");
    let task = std::mem::replace(&mut fleet.task, tokio::spawn(async { Ok(()) }));
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("run returns after shutdown")
        .expect("run did not panic")
        .expect("run succeeded");
    let names = fleet.names.clone();
    until(
        &mut fleet.rx,
        seen,
        format,
        Duration::from_secs(10),
        "clean stop from every device",
        |s| names.iter().all(|d| s.stopped_cleanly(d)),
    )
    .await;
    let counts = fleet.stats.snapshot();
    (fleet, counts)
}

/// Per device: samples and events each strictly rising in seq, never
/// sharing one; AgentStarted first and AgentStopping last.
fn check_sequences(seen: &Seen, device: &str) {
    let samples: Vec<u64> = seen.samples(device).iter().map(|s| s.seq).collect();
    assert!(
        samples.windows(2).all(|w| w[0] < w[1]),
        "{device}: sample seqs {samples:?}"
    );
    let events = seen.events(device);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "{device}: event seqs {seqs:?}"
    );
    assert!(
        seqs.iter().all(|s| !samples.contains(s)),
        "{device}: shared seq"
    );
    assert!(
        matches!(
            events.first().map(|e| &e.kind),
            Some(EventKind::AgentStarted { .. })
        ),
        "{device}: first event {:?}",
        events.first()
    );
    assert!(
        matches!(
            events.last().map(|e| &e.kind),
            Some(EventKind::AgentStopping)
        ),
        "{device}: last event {:?}",
        events.last()
    );
    assert!(
        samples.first() > seqs.first(),
        "{device}: started before sampling"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cbor_fleet_births_telemetry_drop_will_and_clean_stop() {
    let format = Format::Cbor;
    // sim-0010 and sim-0020 drop their connection from tick 3 for 5 ticks.
    let schedule = Schedule {
        kinds: vec![Scenario::Drop],
        every: 10,
        start_after: 3,
        rest: 10_000,
        scale: 0.2,
    };
    let mut fleet = start(20, format, schedule).await;
    let mut seen = Seen::default();
    let names = fleet.names.clone();
    let droppers = ["sim-0010", "sim-0020"];
    until(
        &mut fleet.rx,
        &mut seen,
        format,
        Duration::from_secs(20),
        "births, telemetry, wills and rebirths",
        |s| {
            names.iter().all(|d| {
                s.samples(d).len() >= 5
                    && s.states(d)
                        .first()
                        .is_some_and(|b| b.status == Presence::Online)
            }) && droppers
                .iter()
                .all(|d| s.states(d).len() >= 3 && s.samples(d).iter().any(|x| x.hist))
        },
    )
    .await;
    let (fleet, counts) = stop(fleet, &mut seen, format).await;

    for d in &names {
        check_sequences(&seen, d);
        let states = seen.states(d);
        let birth = &states[0];
        assert_eq!(
            birth
                .model
                .as_deref()
                .map(|m| m.starts_with("Raspberry Pi")),
            Some(true)
        );
        assert!(birth.boot.is_some() && birth.version.is_some() && birth.ts.is_some());
        assert_eq!(birth.session.len(), 16);
        assert!(birth.session.chars().all(|c| c.is_ascii_hexdigit()));
        if droppers.contains(&d.as_str()) {
            let shape: Vec<(Presence, Option<OfflineReason>)> =
                states.iter().map(|s| (s.status, s.reason)).collect();
            assert_eq!(
                shape,
                [
                    (Presence::Online, None),
                    (Presence::Offline, Some(OfflineReason::ConnectionLost)),
                    (Presence::Online, None),
                    (Presence::Offline, Some(OfflineReason::CleanStop)),
                ],
                "{d}"
            );
            // The will carries the session it was registered with; the
            // reconnection is a new one.
            assert_eq!(states[1].session, states[0].session, "{d}");
            assert_ne!(states[2].session, states[0].session, "{d}");
            assert_eq!(states[3].session, states[2].session, "{d}");
            // What was sampled while cut off arrives, marked as history.
            let hist: Vec<u64> = seen
                .samples(d)
                .iter()
                .filter(|s| s.hist)
                .map(|s| s.seq)
                .collect();
            assert!(hist.len() >= 3, "{d}: history {hist:?}");
        } else {
            assert_eq!(states.len(), 2, "{d}: {states:?}");
            assert_eq!(states[1].session, birth.session);
            assert!(seen.samples(d).iter().all(|s| !s.hist), "{d}");
        }
    }
    assert_eq!(counts.devices, 20);
    assert_eq!(counts.connected, 0);
    assert_eq!(counts.reconnects, 2);
    assert_eq!(counts.errors, 0);
    assert!(counts.acked > 0 && counts.acked <= counts.published);
    let delivered: usize = names
        .iter()
        .map(|d| seen.states(d).len() - usize::from(droppers.contains(&d.as_str())))
        .sum::<usize>();
    assert!(counts.published as usize >= delivered, "{counts:?}");

    // The clean stop is retained: a late subscriber learns every device is
    // offline on purpose.
    let mut late = sim_broker::subscribe(fleet.port, "late-watcher", "picket/v1/+/state").await;
    let mut retained = Seen::default();
    until(
        &mut late,
        &mut retained,
        format,
        Duration::from_secs(10),
        "retained clean stops",
        |s| names.iter().all(|d| s.stopped_cleanly(d)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_fleet_decodes_and_a_silent_device_keeps_its_connection() {
    let format = Format::Json;
    // sim-0010 goes quiet from tick 3 for 9 ticks.
    let schedule = Schedule {
        kinds: vec![Scenario::Silent],
        every: 10,
        start_after: 3,
        rest: 10_000,
        scale: 0.05,
    };
    let mut fleet = start(10, format, schedule).await;
    let mut seen = Seen::default();
    let names = fleet.names.clone();
    let silent = "sim-0010";
    until(
        &mut fleet.rx,
        &mut seen,
        format,
        Duration::from_secs(20),
        "telemetry from every device, past the silence",
        |s| names.iter().all(|d| s.samples(d).len() >= 5) && s.samples(silent).len() >= 8,
    )
    .await;
    // Silent is not gone: no will while it was quiet.
    assert_eq!(seen.states(silent).len(), 1, "{:?}", seen.states(silent));
    let (_fleet, counts) = stop(fleet, &mut seen, format).await;

    let ts: Vec<u64> = seen.samples(silent).iter().map(|s| s.ts).collect();
    let longest = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        longest >= 800,
        "{silent}: longest gap {longest} ms in {ts:?}"
    );
    for d in &names {
        check_sequences(&seen, d);
        assert_eq!(seen.states(d).len(), 2, "{d}");
        let s = seen.samples(d).last().expect("samples");
        // The metric groups the collector flattens are all there.
        assert!(s.cpu.is_some() && s.mem.is_some() && s.agent.is_some());
        assert_eq!(s.disks.len(), 2);
        assert_eq!(s.services.len(), 3);
    }
    assert_eq!(counts.reconnects, 0);
    assert_eq!(counts.errors, 0);
    assert_eq!(counts.connected, 0);
}

#[tokio::test]
async fn more_devices_than_open_files_is_refused() {
    let raw = RawBroker {
        url: format!("mqtt://127.0.0.1:{}", crate::harness::free_port()),
        ..RawBroker::default()
    };
    let broker = broker::resolve(&raw, "unused").expect("broker config");
    let config = SimConfig::new(broker, 2_000_000, INTERVAL);
    let err = simulate::run(
        config,
        Arc::new(SimStats::default()),
        std::future::pending(),
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(
            err,
            SimError::FileLimit {
                devices: 2_000_000,
                ..
            }
        ),
        "{err}"
    );
}
