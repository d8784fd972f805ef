//! A broker, a `picket-collector` process and a `picket-agent` process,
//! wired for commands: a key pair from `picket-collector keygen`, executors
//! that are scripts logging their arguments, a watched service whose state
//! the test sets.
//!
//! The agent binary is the workspace's: `cargo test --workspace` builds it
//! next to the collector's (a missing binary fails the test, it does not
//! skip it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::harness::{Mosquitto, free_port, wait_listening};

pub const TOKEN: &str = "admin-token-for-the-command-tests";
const COLLECTOR: &str = env!("CARGO_BIN_EXE_picket-collector");

fn agent_bin() -> PathBuf {
    let p = Path::new(COLLECTOR).with_file_name("picket-agent");
    assert!(
        p.exists(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// A child process killed (SIGKILL) if still running when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Proc {
    /// SIGTERM, then wait for the exit (20 s at most); how long it took,
    /// and the exit status.
    pub fn terminate(mut self) -> (Duration, std::process::ExitStatus) {
        let start = std::time::Instant::now();
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.0.try_wait() {
                return (start.elapsed(), status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("process {} did not stop on SIGTERM", self.0.id());
    }

    pub fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub http: SocketAddr,
    pub broker: u16,
    pub device: String,
    /// Killed with the stack.
    collector: Option<Proc>,
    collector_config: PathBuf,
    pub agent: Option<Proc>,
    _mosquitto: Option<Mosquitto>,
    /// Extra agent environment, kept for restarts.
    agent_env: Vec<(String, String)>,
    /// `--config` for the agent, if any.
    pub agent_config: Option<PathBuf>,
}

/// Shell scripts standing in for systemctl, journalctl and reboot: each
/// logs its arguments, one line per call, into `calls/<name>`.
fn scripts(dir: &Path) {
    let calls = dir.join("calls");
    std::fs::create_dir_all(&calls).unwrap();
    let state = dir.join("service-state");
    std::fs::write(&state, "active\n").unwrap();
    let systemctl = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = show ]; then\n\
           s=$(cat {state})\n\
           for u in \"$@\"; do case \"$u\" in -*|show) ;; *) \
             printf 'Id=%s\\nLoadState=loaded\\nActiveState=%s\\nSubState=x\\n\\n' \"$u\" \"$s\";; esac; done\n\
           exit 0\n\
         fi\n\
         echo \"$@\" >> {calls}/systemctl\n\
         [ \"$1\" = restart ] && echo active > {state}\n\
         exit 0\n",
        state = state.display(),
        calls = calls.display()
    );
    let journalctl = format!(
        "#!/bin/sh\necho \"$@\" >> {calls}/journalctl\n\
         i=0; while [ $i -lt 3 ]; do i=$((i+1)); echo \"line $i of the kiosk journal\"; done\n",
        calls = calls.display()
    );
    let reboot = format!(
        "#!/bin/sh\necho \"$@\" >> {calls}/reboot\n",
        calls = calls.display()
    );
    for (name, text) in [
        ("systemctl", systemctl),
        ("journalctl", journalctl),
        ("reboot", reboot),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

impl Stack {
    /// Broker (Mosquitto when asked, else the collector's embedded one)
    /// and the collector; the agent is started by [`Stack::start_agent`].
    pub async fn start(device: &str, collector_extra: &str) -> Stack {
        Stack::start_with(device, collector_extra, None).await
    }

    /// [`Stack::start`] with the collector's database at `db` (default:
    /// `collector.db` in the stack's directory).
    pub async fn start_with(device: &str, collector_extra: &str, db: Option<PathBuf>) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let db = db.unwrap_or_else(|| dir.path().join("collector.db"));
        scripts(dir.path());
        std::fs::create_dir_all(dir.path().join("files")).unwrap();
        let keys = dir.path().join("keys");
        let out = Command::new(COLLECTOR)
            .args(["keygen", "--out"])
            .arg(&keys)
            .output()
            .unwrap();
        assert!(out.status.success(), "keygen: {out:?}");
        let mosquitto = Mosquitto::if_asked().await;
        let (broker_cfg, broker) = match &mosquitto {
            Some(m) => (format!("url = \"mqtt://127.0.0.1:{}\"", m.port), m.port),
            None => {
                let p = free_port();
                (format!("listen = \"127.0.0.1:{p}\""), p)
            }
        };
        let http_port = free_port();
        let config = format!(
            "[broker]\n{broker_cfg}\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\
             [api]\nadmin_token = \"{TOKEN}\"\n[storage]\npath = \"{db}\"\n\
             [commands]\nprivate_key_file = \"{key}\"\n{collector_extra}",
            db = db.display(),
            key = keys.join("command.key").display(),
        );
        let path = dir.path().join("collector.toml");
        std::fs::write(&path, config).unwrap();
        let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
        let mut stack = Stack {
            dir,
            http,
            broker,
            device: device.to_string(),
            collector: None,
            collector_config: path,
            agent: None,
            _mosquitto: mosquitto,
            agent_env: Vec::new(),
            agent_config: None,
        };
        stack.start_collector().await;
        stack
    }

    /// Start the collector process (again) and wait until it is healthy.
    pub async fn start_collector(&mut self) {
        assert!(self.collector.is_none(), "collector already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("collector.log"))
            .unwrap();
        let child = Command::new(COLLECTOR)
            .arg("--config")
            .arg(&self.collector_config)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,rumqttd=off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.collector = Some(Proc(child));
        wait_listening(self.http).await;
        wait_listening(([127, 0, 0, 1], self.broker).into()).await;
        self.health(200, Duration::from_secs(10)).await;
    }

    /// Wait until `/healthz` answers `code` and return its body; panics
    /// with the collector's log after `patience`.
    pub async fn health(&self, code: u16, patience: Duration) -> Value {
        let end = tokio::time::Instant::now() + patience;
        loop {
            let (status, body) = self.get("/healthz").await;
            if status == code {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "/healthz never answered {code} (last {status} {body}):\n{}",
                self.log("collector.log")
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGTERM the collector; how long it took to exit, and its status.
    pub fn terminate_collector(&mut self) -> (Duration, std::process::ExitStatus) {
        self.collector
            .take()
            .expect("collector running")
            .terminate()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Lines the executor script `name` logged.
    pub fn calls(&self, name: &str) -> Vec<String> {
        self.log(&format!("calls/{name}"))
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn set_service(&self, state: &str) {
        std::fs::write(self.path("service-state"), format!("{state}\n")).unwrap();
    }

    /// Environment for the agent beyond the basics, kept for restarts.
    pub fn agent_env(&mut self, env: &[(&str, &str)]) {
        self.agent_env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    pub fn start_agent(&mut self) {
        assert!(self.agent.is_none(), "agent already running");
        let d = self.dir.path();
        let mut cmd = Command::new(agent_bin());
        if let Some(c) = &self.agent_config {
            cmd.arg("--config").arg(c);
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("PICKET_DEVICE_ID", &self.device)
            .env("PICKET_BROKER_KEEP_ALIVE", "5s")
            .env("PICKET_BROKER_KEEP_ALIVE", "5s")
            .env("PICKET_UPLINK_BACKOFF_MAX", "1s")
            .env("PICKET_QUEUE_DIR", d.join("queue"))
            .env("PICKET_SAMPLING_INTERVAL", "300ms")
            .env("PICKET_COMMANDS_STATE_DIR", d.join("agent-state"))
            .env(
                "PICKET_COMMANDS_PUBLIC_KEY_FILE",
                d.join("keys/command.pub"),
            )
            .env("PICKET_COMMANDS_SYSTEMCTL", d.join("systemctl"))
            .env("PICKET_COMMANDS_JOURNALCTL", d.join("journalctl"))
            .env("PICKET_COMMANDS_REBOOT", d.join("reboot"))
            .env("PICKET_SERVICES_SYSTEMCTL", d.join("systemctl"))
            .env("PICKET_COMMANDS_FILE_DIRS", d.join("files"))
            // Test machines often run without NTP discipline; their clock
            // is right nonetheless (the unsynchronised rule is unit-tested).
            .env("PICKET_COMMANDS_TRUST_CLOCK", "true");
        // With a configuration file the broker is the file's (so that
        // config.update can change it); else the environment's.
        if self.agent_config.is_none() {
            cmd.env("PICKET_BROKER_URL", self.broker_url());
        }
        for (k, v) in &self.agent_env {
            cmd.env(k, v);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("agent.log"))
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(Proc(child));
    }

    /// Start the agent and wait until the collector sees it online.
    pub async fn agent_online(&mut self) {
        self.start_agent();
        self.wait_online().await;
    }

    pub async fn wait_online(&self) {
        let path = format!("/api/devices/{}", self.device);
        for _ in 0..1000 {
            let (status, body) = self.get(&path).await;
            if status == 200 && body["online"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        panic!(
            "{} never online.\nagent log:\n{}",
            self.device,
            self.log("agent.log")
        );
    }

    pub fn stop_agent(&mut self) {
        if let Some(a) = self.agent.take() {
            a.terminate();
        }
    }

    pub fn kill_agent(&mut self) {
        if let Some(a) = self.agent.take() {
            a.kill();
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        http("GET", format!("http://{}{path}", self.http), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        http("POST", format!("http://{}{path}", self.http), Some(body)).await
    }

    /// Send through the API; returns the command id.
    pub async fn send(&self, name: &str, args: Value, ttl: &str) -> String {
        let (status, body) = self
            .post(
                &format!("/api/devices/{}/commands", self.device),
                json!({"name": name, "args": args, "ttl": ttl}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Wait until command `id` has a final status; returns the command's
    /// API view.
    pub async fn settled(&self, id: &str) -> Value {
        self.settled_within(id, Duration::from_secs(60), || {
            format!("agent log:\n{}", self.log("agent.log"))
        })
        .await
    }

    /// [`Stack::settled`] with its own patience and what to show on
    /// failure (`log`).
    pub async fn settled_within(
        &self,
        id: &str,
        patience: Duration,
        log: impl Fn() -> String,
    ) -> Value {
        let end = tokio::time::Instant::now() + patience;
        loop {
            let (status, body) = self.get(&format!("/api/commands/{id}")).await;
            if status == 200
                && matches!(
                    body["state"].as_str(),
                    Some("succeeded" | "failed" | "rejected")
                )
            {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "command {id} not settled: {status} {body}\n{}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// Send and wait; the command's API view.
    pub async fn run(&self, name: &str, args: Value) -> Value {
        let id = self.send(name, args, "60s").await;
        self.settled(&id).await
    }

    /// The signing key `keygen` made, for hand-made envelopes.
    pub fn key(&self) -> picket_protocol::signing::PrivateKey {
        let text = std::fs::read_to_string(self.path("keys/command.key")).unwrap();
        picket_protocol::signing::parse_private_key(&text).unwrap()
    }

    /// A signed envelope for this device, valid for a minute, with a
    /// fresh id; `edit` may change anything (the signature is made after).
    pub fn envelope(
        &self,
        action: picket_protocol::Action,
        edit: impl FnOnce(&mut picket_protocol::Command),
    ) -> picket_protocol::Command {
        let now = crate::harness::now_ms();
        let mut c = picket_protocol::Command {
            v: picket_protocol::VERSION,
            id: format!("t{:016x}", rand::random::<u64>()),
            device: picket_protocol::DeviceId::new(self.device.clone()).unwrap(),
            action,
            issued: now,
            expires: now + 60_000,
            sig: None,
        };
        edit(&mut c);
        picket_protocol::signing::sign(&mut c, &self.key());
        c
    }

    pub fn broker_url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.broker)
    }

    pub fn cmd_topic(&self, id: &str) -> String {
        format!("picket/v1/{}/cmd/{id}", self.device)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", self.log("agent.log"));
            eprintln!("--- collector log ---\n{}", self.log("collector.log"));
        }
    }
}

/// The states of a command's statuses, in order.
pub fn states(view: &Value) -> Vec<String> {
    view["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap().to_string())
        .collect()
}

/// The reason of the first status in `state`.
pub fn reason(view: &Value, state: &str) -> String {
    view["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["state"] == state)
        .and_then(|s| s["reason"].as_str())
        .unwrap_or_default()
        .to_string()
}

async fn http(method: &str, url: String, body: Option<Value>) -> (u16, Value) {
    let method = method.to_string();
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        let auth = format!("Bearer {TOKEN}");
        let res = match (method.as_str(), body) {
            ("POST", Some(b)) => agent
                .post(&url)
                .header("authorization", &auth)
                .send_json(&b),
            _ => agent.get(&url).header("authorization", &auth).call(),
        };
        match res {
            Ok(mut r) => {
                let status = r.status().as_u16();
                let text = r.body_mut().read_to_string().unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            // The collector not listening yet (start-up) reads as 0.
            Err(_) => (0, Value::Null),
        }
    })
    .await
    .unwrap()
}

/// A plain MQTT client publishing hand-made envelopes (of any size: also
/// hostile ones), QoS 1.
pub struct Publisher {
    client: AsyncClient,
    /// PUBACKs received so far.
    acks: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    pub async fn connect(port: u16) -> Publisher {
        let mut opts = MqttOptions::new(
            format!("test-pub-{}", rand::random::<u32>()),
            "127.0.0.1",
            port,
        );
        opts.set_keep_alive(Duration::from_secs(5));
        // rumqttc's default limit is 10 KiB.
        opts.set_max_packet_size(8 << 20, 8 << 20);
        let (client, mut el) = AsyncClient::new(opts, 64);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (acked, acks) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            let mut tx = Some(tx);
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(t) = tx.take() {
                            let _ = t.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => acked.send_modify(|n| *n += 1),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("test publisher connects")
            .unwrap();
        Publisher { client, acks, task }
    }

    pub async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
    }

    /// [`Publisher::publish`], not retained, and wait for the broker's
    /// PUBACK (one publish at a time).
    pub async fn publish_acked(&self, topic: &str, payload: Vec<u8>) {
        let mut acks = self.acks.clone();
        let before = *acks.borrow_and_update();
        self.publish(topic, payload, false).await;
        tokio::time::timeout(Duration::from_secs(20), acks.wait_for(|&n| n > before))
            .await
            .unwrap_or_else(|_| panic!("no PUBACK for {topic}"))
            .expect("the publisher runs");
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
