//! The collector under test, a broker, fake devices and an API client.
//!
//! Broker: with `PICKET_TEST_BROKER=mosquitto` a real Mosquitto on a free
//! loopback port (the collector connects to it like in production), else
//! the collector's own embedded broker. Devices reach the broker through a
//! TCP proxy the test can cut, so a "lost connection" is a real one: the
//! broker sees the socket close without DISCONNECT and publishes the will.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use picket_collector::config;
use picket_protocol::{
    DeviceId, Event as PEvent, EventBatch, EventKind, Format, OfflineReason, Presence, Sample,
    State, Telemetry, Thermal, VERSION,
};

/// The value of the first `/metrics` line starting with `line_start`
/// (0 when there is none).
pub fn counter(metrics: &str, line_start: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

pub fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn use_mosquitto() -> bool {
    std::env::var("PICKET_TEST_BROKER").is_ok_and(|v| v == "mosquitto")
}

pub async fn wait_listening(addr: SocketAddr) {
    for _ in 0..400 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {addr}");
}

/// Wait until `f` holds, polling; panic with `what` after `deadline`.
pub async fn until<F: FnMut() -> bool>(deadline: Duration, what: &str, mut f: F) {
    let end = tokio::time::Instant::now() + deadline;
    while !f() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Mosquitto process for this test, killed on drop.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// A Mosquitto when `PICKET_TEST_BROKER=mosquitto`, else none (the
    /// collector then runs its embedded broker).
    pub async fn if_asked() -> Option<Mosquitto> {
        if use_mosquitto() {
            Some(Mosquitto::start().await)
        } else {
            None
        }
    }

    pub async fn start() -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        // The collector's session may hold many messages while it restarts.
        let mut text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\nmax_queued_messages 0\nmax_inflight_messages 200\n",
            dir.path().display()
        );
        // Started as root, Mosquitto switches to the `mosquitto` user,
        // which cannot write into this private directory.
        if unsafe { libc::geteuid() } == 0 {
            text.push_str("user root\n");
        }
        // PICKET_TEST_MOSQUITTO_LOG=FILE keeps the broker's log for a
        // failed run.
        if let Ok(log) = std::env::var("PICKET_TEST_MOSQUITTO_LOG") {
            text.push_str(&format!("log_dest file {log}\nlog_type all\n"));
        }
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let bin = std::env::var("PICKET_TEST_MOSQUITTO").unwrap_or_else(|_| "mosquitto".into());
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (install it, or unset PICKET_TEST_BROKER)");
        wait_listening(([127, 0, 0, 1], port).into()).await;
        Mosquitto {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP forwarder whose connections can all be cut at once, and which
/// can be closed (new connections dropped at once: the network is down).
pub struct Proxy {
    pub port: u16,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
    open: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let list = Arc::clone(&conns);
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let is_open = Arc::clone(&open);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !is_open.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    continue;
                };
                let h = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                list.lock().expect("lock").push(h);
            }
        });
        Proxy {
            port,
            conns,
            accept,
            open,
        }
    }

    /// The network goes down: every connection is cut and new ones are
    /// dropped until [`Proxy::open`].
    pub fn close(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut();
    }

    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drop every connection abruptly (no MQTT DISCONNECT reaches the broker).
    pub fn cut(&self) {
        for h in self.conns.lock().expect("lock").drain(..) {
            h.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The collector running in this test process.
pub struct Collector {
    pub http: SocketAddr,
    /// Where devices and test clients reach the broker.
    pub broker: SocketAddr,
    pub running: picket_collector::Running,
    stop: CancellationToken,
    task: JoinHandle<Result<(), picket_collector::RunError>>,
}

/// Where the collector keeps its data and which broker it uses; `extra`
/// is TOML appended to the generated configuration.
pub struct Setup {
    pub dir: std::path::PathBuf,
    pub external_broker: Option<u16>,
    pub embedded_port: u16,
    pub extra: String,
}

impl Setup {
    /// A fresh setup on `broker` (an external broker's port), else the
    /// collector's embedded broker.
    pub fn new(dir: &std::path::Path, broker: Option<u16>, extra: &str) -> Setup {
        Setup {
            dir: dir.to_path_buf(),
            external_broker: broker,
            embedded_port: free_port(),
            extra: extra.to_string(),
        }
    }

    pub fn config(&self) -> config::Config {
        let broker = match self.external_broker {
            Some(port) => format!("broker.url = \"mqtt://127.0.0.1:{port}\"\n"),
            None => format!("broker.listen = \"127.0.0.1:{}\"\n", self.embedded_port),
        };
        // Dotted keys first: the test's TOML (table headers) follows.
        let text = format!(
            "{broker}http.listen = \"127.0.0.1:0\"\nstorage.path = \"{}\"\n{}",
            self.dir.join("collector.db").display(),
            self.extra,
        );
        let (raw, _) = config::parse(&text, std::path::Path::new("test.toml"), [])
            .unwrap_or_else(|e| panic!("test configuration: {e}\n{text}"));
        config::validate(&raw).unwrap_or_else(|e| panic!("test configuration: {e}\n{text}"))
    }
}

impl Collector {
    pub async fn start(setup: &Setup) -> Collector {
        let config = setup.config();
        let broker = match setup.external_broker {
            Some(port) => SocketAddr::from(([127, 0, 0, 1], port)),
            None => SocketAddr::from(([127, 0, 0, 1], setup.embedded_port)),
        };
        let stop = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(picket_collector::run_with(
            config,
            stop.clone().cancelled_owned(),
            move |r| {
                let _ = tx.send(r);
            },
        ));
        let running = rx.await.expect("the collector starts");
        let c = Collector {
            http: running.http,
            broker,
            running,
            stop,
            task,
        };
        // Ready means listening; wait for the subscriptions too, or a
        // device's first messages could go unseen.
        let mut link = c.running.link.clone();
        tokio::time::timeout(Duration::from_secs(10), link.wait_for(|s| s.subscribed))
            .await
            .expect("the collector connects to its broker")
            .expect("link status");
        c
    }

    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the collector stops within 20 s")
            .expect("collector task")
            .expect("collector run");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// GET `path` with an optional bearer token: (status, JSON or text).
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        request("GET", self.url(path), token).await
    }

    pub async fn text(&self, path: &str) -> (u16, String) {
        let url = self.url(path);
        tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent();
            let mut res = agent.get(&url).call().expect("request");
            let status = res.status().as_u16();
            (status, res.body_mut().read_to_string().expect("body"))
        })
        .await
        .expect("request task")
    }

    /// Wait until the device's API view satisfies `f`.
    pub async fn wait_device(
        &self,
        id: &str,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(&format!("/api/devices/{id}"), None).await;
            if status == 200 && f(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "timed out waiting for {id}: {what}; last answer {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn request(method: &str, url: String, token: Option<&str>) -> (u16, serde_json::Value) {
    let token = token.map(str::to_string);
    let method = method.to_string();
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut res = match method.as_str() {
            "DELETE" => {
                let mut r = agent.delete(&url);
                if let Some(t) = &token {
                    r = r.header("Authorization", &format!("Bearer {t}"));
                }
                r.call()
            }
            _ => {
                let mut r = agent.get(&url);
                if let Some(t) = &token {
                    r = r.header("Authorization", &format!("Bearer {t}"));
                }
                r.call()
            }
        }
        .expect("HTTP request");
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().expect("body");
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    })
    .await
    .expect("request task")
}

/// A device as the collector sees one: an MQTT client publishing crafted
/// picket messages, with a Last Will, through a cuttable proxy.
pub struct Device {
    pub id: DeviceId,
    pub session: String,
    pub client: AsyncClient,
    pub proxy: Proxy,
    poll: JoinHandle<()>,
    topics: picket_protocol::Topics,
    pub format: Format,
    pub boot: String,
}

impl Device {
    pub async fn connect(broker: SocketAddr, id: &str, session: &str) -> Device {
        let proxy = Proxy::start(broker).await;
        let id = DeviceId::new(id).expect("device id");
        let topics = picket_protocol::Topics::default();
        let will = State {
            v: VERSION,
            device: id.clone(),
            status: Presence::Offline,
            session: session.into(),
            version: None,
            model: None,
            boot: None,
            ts: Some(now_ms()),
            reason: Some(OfflineReason::ConnectionLost),
        };
        let mut opts = MqttOptions::new(format!("dev-{id}-{session}"), "127.0.0.1", proxy.port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(4 << 20, 4 << 20);
        opts.set_last_will(LastWill::new(
            topics.state(&id),
            picket_protocol::encode(&will, Format::Json).expect("encode will"),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, eventloop) = AsyncClient::new(opts, 100);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let poll = tokio::spawn(drive(eventloop, tx));
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("device connects")
            .expect("connack");
        Device {
            id,
            session: session.into(),
            client,
            proxy,
            poll,
            topics,
            format: Format::Json,
            boot: "b0a1c2d3-0000-4000-8000-000000000001".into(),
        }
    }

    pub async fn publish(&self, topic: String, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .expect("publish");
    }

    pub async fn birth(&self) {
        let st = State {
            v: VERSION,
            device: self.id.clone(),
            status: Presence::Online,
            session: self.session.clone(),
            version: Some("0.1.0".into()),
            model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
            boot: Some(self.boot.clone()),
            ts: Some(now_ms()),
            reason: None,
        };
        let payload = picket_protocol::encode(&st, self.format).expect("encode");
        self.publish(self.topics.state(&self.id), payload, true)
            .await;
    }

    /// A will of session `session` published by hand (a stale one).
    pub async fn will_of(&self, session: &str) {
        let st = State {
            v: VERSION,
            device: self.id.clone(),
            status: Presence::Offline,
            session: session.into(),
            version: None,
            model: None,
            boot: None,
            ts: Some(now_ms()),
            reason: Some(OfflineReason::ConnectionLost),
        };
        let payload = picket_protocol::encode(&st, self.format).expect("encode");
        self.publish(self.topics.state(&self.id), payload, true)
            .await;
    }

    pub fn sample(&self, seq: u64, temp: f32) -> Sample {
        sample(seq, temp, &self.boot)
    }

    pub async fn telemetry(&self, samples: Vec<Sample>) {
        let t = Telemetry {
            v: VERSION,
            device: self.id.clone(),
            samples,
        };
        let payload = picket_protocol::encode(&t, self.format).expect("encode");
        self.publish(self.topics.telemetry(&self.id), payload, false)
            .await;
    }

    pub async fn event(&self, seq: u64, kind: EventKind) {
        let b = EventBatch {
            v: VERSION,
            device: self.id.clone(),
            events: vec![PEvent {
                seq,
                ts: now_ms(),
                mono: 1_000 + seq,
                boot: self.boot.clone(),
                sync: true,
                hist: false,
                kind,
            }],
        };
        let payload = picket_protocol::encode(&b, self.format).expect("encode");
        self.publish(self.topics.event(&self.id), payload, false)
            .await;
    }

    /// Lose the connection without a goodbye.
    pub fn drop_connection(self) {
        self.poll.abort();
        self.proxy.cut();
    }
}

async fn drive(mut eventloop: EventLoop, connected: tokio::sync::oneshot::Sender<()>) {
    let mut connected = Some(connected);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Some(tx) = connected.take() {
                    let _ = tx.send(());
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// A live, clock-synchronised sample with one thermal zone at `temp`.
pub fn sample(seq: u64, temp: f32, boot: &str) -> Sample {
    Sample {
        seq,
        // Distinct times for samples built in the same millisecond: history
        // keeps one value per metric and millisecond.
        ts: now_ms() + seq,
        mono: 1_000 + seq,
        boot: boot.into(),
        sync: true,
        hist: false,
        cpu: Some(20.0),
        load: None,
        mem: None,
        swap: None,
        uptime: Some(100),
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
    }
}

/// `(topic, payload, retained)` as received.
pub type Received = Vec<(String, Vec<u8>, bool)>;

/// A plain subscriber recording what arrives on `filter`.
pub struct Watcher {
    pub got: Arc<Mutex<Received>>,
    task: JoinHandle<()>,
}

impl Watcher {
    pub async fn start(broker: SocketAddr, filter: &str) -> Watcher {
        let mut opts =
            MqttOptions::new(format!("watch-{}", free_port()), "127.0.0.1", broker.port());
        opts.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 10);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let got: Arc<Mutex<Received>> = Arc::default();
        let sink = Arc::clone(&got);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _client = client;
            let mut tx = Some(tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock().expect("lock").push((
                            p.topic.clone(),
                            p.payload.to_vec(),
                            p.retain,
                        ));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("watcher subscribed")
            .expect("suback");
        Watcher { got, task }
    }

    pub fn messages(&self) -> Received {
        self.got.lock().expect("lock").clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
