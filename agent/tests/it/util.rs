//! Test harness: a subscriber that records what the broker delivered, and
//! the agent run in-process or as its binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use picket_agent::Observers;
use picket_protocol::{
    Action, DeviceId, Event, EventBatch, Format, Reply, ReplyState, State, Telemetry, Topics,
    VERSION, decode, encode,
};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Everything the subscriber received, in arrival order.
#[derive(Debug, Default, Clone)]
pub struct Received {
    pub samples: Vec<picket_protocol::Sample>,
    pub events: Vec<Event>,
    pub states: Vec<State>,
    /// Every seq (samples and events) in arrival order.
    pub seqs: Vec<u64>,
    pub undecodable: usize,
}

impl Received {
    /// Seqs with duplicates removed, in first-arrival order.
    pub fn first_arrivals(&self) -> Vec<u64> {
        let mut seen = std::collections::HashSet::new();
        self.seqs
            .iter()
            .copied()
            .filter(|s| seen.insert(*s))
            .collect()
    }

    pub fn duplicates(&self) -> usize {
        self.seqs.len() - self.first_arrivals().len()
    }
}

pub struct Subscriber {
    pub received: Arc<Mutex<Received>>,
    task: JoinHandle<()>,
}

impl Subscriber {
    /// Subscribes (QoS 1, persistent session) to every device's telemetry,
    /// event and state topics, and waits for the subscription to be acked.
    pub async fn start(port: u16, name: &str) -> Subscriber {
        Subscriber::start_with(port, name, None).await
    }

    pub async fn start_with(port: u16, name: &str, auth: crate::broker::Auth) -> Subscriber {
        let mut opts = MqttOptions::new(format!("test-sub-{name}"), "127.0.0.1", port);
        if let Some((user, pass)) = auth {
            opts.set_credentials(user, pass);
        }
        opts.set_clean_session(false);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let received: Arc<Mutex<Received>> = Arc::default();
        let r2 = received.clone();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        for t in ["telemetry", "event", "state"] {
                            let _ = client
                                .subscribe(format!("picket/v1/+/{t}"), QoS::AtLeastOnce)
                                .await;
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let mut r = r2.lock().unwrap();
                        record(&mut r, &p.topic, &p.payload);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(20), ready_rx)
            .await
            .expect("subscriber did not connect")
            .expect("subscriber task");
        Subscriber { received, task }
    }

    pub fn snapshot(&self) -> Received {
        self.received.lock().unwrap().clone()
    }

    /// Wait until `cond` holds for what was received, or panic after `limit`.
    pub async fn wait_for(&self, limit: Duration, what: &str, cond: impl Fn(&Received) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if cond(&self.received.lock().unwrap()) {
                return;
            }
            if Instant::now() > deadline {
                let r = self.snapshot();
                panic!(
                    "timed out waiting for {what}: {} samples, {} events, last seqs {:?}",
                    r.samples.len(),
                    r.events.len(),
                    r.seqs.iter().rev().take(5).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(r: &mut Received, topic: &str, payload: &[u8]) {
    let max = 16 << 20;
    if topic.ends_with("/telemetry") {
        match decode::<Telemetry>(payload, max) {
            Ok(t) => {
                for s in t.samples {
                    r.seqs.push(s.seq);
                    r.samples.push(s);
                }
            }
            Err(_) => r.undecodable += 1,
        }
    } else if topic.ends_with("/event") {
        match decode::<EventBatch>(payload, max) {
            Ok(b) => {
                for e in b.events {
                    r.seqs.push(e.seq);
                    r.events.push(e);
                }
            }
            Err(_) => r.undecodable += 1,
        }
    } else if topic.ends_with("/state") {
        match decode::<State>(payload, max) {
            Ok(s) => r.states.push(s),
            Err(_) => r.undecodable += 1,
        }
    }
}

/// Configuration through the same path as the binary: TOML defaults plus
/// `PICKET_*` variables.
pub fn config(env: &[(&str, String)]) -> picket_agent::Config {
    config_text("", env)
}

/// [`config`] with a configuration file's text (for tables that have no
/// environment variables).
pub fn config_text(text: &str, env: &[(&str, String)]) -> picket_agent::Config {
    let vars: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let (raw, unknown) = picket_agent::config::parse(text, Path::new("test"), vars).expect("parse");
    assert!(unknown.is_empty(), "unknown variables {unknown:?}");
    picket_agent::config::validate(raw).expect("valid config")
}

/// The variables every test sets: device, broker, queue, fast sampling.
pub fn base_env(
    device: &str,
    broker_url: &str,
    queue: &Path,
    interval: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("PICKET_DEVICE_ID", device.to_string()),
        ("PICKET_BROKER_URL", broker_url.to_string()),
        ("PICKET_QUEUE_DIR", queue.display().to_string()),
        (
            "PICKET_COMMANDS_STATE_DIR",
            format!("{}.commands", queue.display()),
        ),
        ("PICKET_SAMPLING_INTERVAL", interval.to_string()),
        ("PICKET_BROKER_KEEP_ALIVE", "5s".to_string()),
        ("PICKET_UPLINK_BACKOFF_MAX", "2s".to_string()),
        // Never the machine's own LED or the system-wide socket: tests run
        // in parallel.
        ("PICKET_LED_BACKEND", "none".to_string()),
        (
            "PICKET_STATUS_SOCKET",
            queue.with_extension("sock").display().to_string(),
        ),
    ]
}

/// The agent running in this process.
pub struct Agent {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<picket_agent::Exit, picket_agent::RunError>>>,
    pub observers: Observers,
}

impl Agent {
    pub async fn start(config: picket_agent::Config) -> Agent {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (obs_tx, obs_rx) = oneshot::channel();
        let task = tokio::spawn(picket_agent::run_observed(
            config,
            async move {
                let _ = stop_rx.await;
            },
            move |o| {
                let _ = obs_tx.send(o);
            },
        ));
        let observers = tokio::time::timeout(Duration::from_secs(20), obs_rx)
            .await
            .expect("agent did not start")
            .expect("agent failed to start");
        Agent {
            stop: Some(stop_tx),
            task: Some(task),
            observers,
        }
    }

    /// Stop cleanly and return how long it took.
    pub async fn stop(mut self) -> Duration {
        let t = Instant::now();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("agent did not stop within 10 s")
                .expect("agent task panicked")
                .expect("agent returned an error");
        }
        t.elapsed()
    }

    /// Wait until the uplink reports the link down, and return that state.
    pub async fn link_down(&self, limit: Duration) -> picket_agent::views::Link {
        let mut status = self.observers.uplink.clone();
        tokio::time::timeout(
            limit,
            status.wait_for(|s| matches!(s.link, picket_agent::views::Link::Down { .. })),
        )
        .await
        .expect("the link goes down")
        .expect("the agent is running")
        .link
        .clone()
    }

    pub fn appended_through(&self) -> Option<u64> {
        self.observers.store.borrow().appended_through
    }

    pub async fn wait_store(
        &self,
        limit: Duration,
        what: &str,
        cond: impl Fn(&picket_agent::store::StoreStatus) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        while !cond(&self.observers.store.borrow()) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Seqs must form one contiguous range: returns the missing ones.
pub fn gaps(seqs: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let set: BTreeMap<u64, ()> = seqs.into_iter().map(|s| (s, ())).collect();
    let (Some((&lo, _)), Some((&hi, _))) = (set.first_key_value(), set.last_key_value()) else {
        return vec![];
    };
    (lo..=hi).filter(|s| !set.contains_key(s)).collect()
}

pub fn is_strictly_increasing(v: &[u64]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

/// Nanoseconds since the epoch: unique enough for ids and names in tests.
pub fn rand_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Send `action` to `device` as a collector would (unsigned: test agents
/// have no public key configured) and return the command's final reply.
pub async fn command(port: u16, device: &str, action: Action) -> Reply {
    let replies = command_replies(port, device, action, Duration::from_secs(30)).await;
    replies.last().cloned().expect("a final reply")
}

/// Send `action` and return every reply up to and including the final one,
/// in arrival order.
pub async fn command_replies(
    port: u16,
    device: &str,
    action: Action,
    limit: Duration,
) -> Vec<Reply> {
    let final_state = |r: &Reply| {
        matches!(
            r.state,
            ReplyState::Succeeded | ReplyState::Failed | ReplyState::Rejected
        )
    };
    let watch = CommandWatch::send(port, device, action).await;
    watch.wait_for(limit, "a final reply", final_state).await;
    let mut replies = watch.replies();
    if let Some(end) = replies.iter().position(final_state) {
        replies.truncate(end + 1);
    }
    replies
}

/// A command's whole output: its chunks in index order, each index once.
pub fn output(replies: &[Reply]) -> String {
    let mut chunks: BTreeMap<u32, &str> = BTreeMap::new();
    for r in replies {
        if let (Some(i), Some(o)) = (r.chunk, r.output.as_deref()) {
            assert!(chunks.insert(i, o).is_none(), "chunk {i} sent twice");
        }
    }
    let n = chunks.len() as u32;
    assert!(
        chunks.keys().copied().eq(0..n),
        "chunks are not 0..{n}: {:?}",
        chunks.keys().collect::<Vec<_>>()
    );
    chunks.into_values().collect()
}

/// A command sent as a collector would (see [`command_replies`]), its
/// replies collected as they come while the test does something else.
pub struct CommandWatch {
    replies: Arc<Mutex<Vec<Reply>>>,
    task: JoinHandle<()>,
}

impl CommandWatch {
    /// Subscribe to the reply topic, send `action` to `device` once
    /// subscribed, and keep collecting replies.
    pub async fn send(port: u16, device: &str, action: Action) -> CommandWatch {
        let id = format!("t{}", rand_id());
        let now = rand_id() / 1_000_000;
        let cmd = picket_protocol::Command {
            v: VERSION,
            id: id.clone(),
            device: DeviceId::new(device).unwrap(),
            action,
            issued: now,
            expires: now + 60_000,
            sig: None,
        };
        CommandWatch::start(port, device, &id, Some(cmd)).await
    }

    /// Collect the replies to command `id` (sent by someone else, or
    /// before a restart); returns once subscribed.
    pub async fn replies_to(port: u16, device: &str, id: &str) -> CommandWatch {
        CommandWatch::start(port, device, id, None).await
    }

    async fn start(
        port: u16,
        device: &str,
        id: &str,
        mut cmd: Option<picket_protocol::Command>,
    ) -> CommandWatch {
        let device = DeviceId::new(device).unwrap();
        let topics = Topics::default();
        let id = id.to_string();
        let mut opts = MqttOptions::new(format!("test-watch-{}", rand_id()), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 10);
        client
            .subscribe(topics.reply(&device, &id).unwrap(), QoS::AtLeastOnce)
            .await
            .unwrap();
        let replies: Arc<Mutex<Vec<Reply>>> = Arc::default();
        let r2 = Arc::clone(&replies);
        let (subscribed, on_suback) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut subscribed = Some(subscribed);
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                        let Some(cmd) = cmd.take() else { continue };
                        let payload = encode(&cmd, Format::Json).unwrap();
                        client
                            .publish(
                                topics.cmd(&device, &id).unwrap(),
                                QoS::AtLeastOnce,
                                false,
                                payload,
                            )
                            .await
                            .unwrap();
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let r: Reply = decode(&p.payload, 16 << 20).unwrap();
                        r2.lock().unwrap().push(r);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(20), on_suback)
            .await
            .expect("subscribed to the replies")
            .expect("the reply watcher runs");
        CommandWatch { replies, task }
    }

    pub fn replies(&self) -> Vec<Reply> {
        self.replies.lock().unwrap().clone()
    }

    /// Wait until a reply satisfies `cond` and return it, or panic after
    /// `limit`.
    pub async fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        cond: impl Fn(&Reply) -> bool,
    ) -> Reply {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(r) = self.replies.lock().unwrap().iter().find(|r| cond(r)) {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; replies {:?}",
                self.replies()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for CommandWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
