//! `agent.update` end to end with real processes: the agent built by the
//! test as two versions ([`builds`]), version A run under a small
//! systemd-like [`supervisor`] as the entry binary, a broker and a
//! `picket-collector` (the commands tests' stack), artifacts served over
//! HTTPS by the test, signed with the collector's `sign-artifact`.

mod builds;
mod mislabelled;
mod rollout;
mod single;
mod stopping;
mod supervisor;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::commands::file_server::{File, FileServer};
use crate::commands::stack::Stack;
pub use builds::{A, B, Builds, CRASH, builds};
pub use supervisor::Supervisor;

const COLLECTOR: &str = env!("CARGO_BIN_EXE_picket-collector");

/// A broker and collector, the two builds, and an HTTPS server with the
/// artifacts: `/b` (version B), `/b-streamed` (the same, without a
/// length), `/crash` ([`Builds::crash`]: reports version [`CRASH`], exits
/// 1 when run), `/false` (`/bin/false`: an executable that is not an
/// agent), `/script` (a shell script).
pub struct World {
    pub stack: Stack,
    pub builds: &'static Builds,
    pub server: FileServer,
    /// Downloads wait while this is false.
    pub release: tokio::sync::watch::Sender<bool>,
    pub ca_file: PathBuf,
}

pub const SCRIPT: &[u8] = b"#!/bin/sh\nexit 0\n";

impl World {
    pub async fn start(name: &str) -> World {
        let builds = builds().await;
        let b = std::fs::read(&builds.b).expect("read build B");
        let f = std::fs::read("/bin/false").expect("read /bin/false");
        let crash = std::fs::read(&builds.crash).expect("read the crashing build");
        let (release, held) = tokio::sync::watch::channel(true);
        let server = FileServer::start_held(
            HashMap::from([
                (
                    "/b",
                    File {
                        body: b.clone(),
                        length: true,
                    },
                ),
                (
                    "/b-streamed",
                    File {
                        body: b,
                        length: false,
                    },
                ),
                (
                    "/crash",
                    File {
                        body: crash,
                        length: true,
                    },
                ),
                (
                    "/false",
                    File {
                        body: f,
                        length: true,
                    },
                ),
                (
                    "/script",
                    File {
                        body: SCRIPT.to_vec(),
                        length: true,
                    },
                ),
            ]),
            Some(held),
        )
        .await;
        let stack = Stack::start(name, "").await;
        let ca_file = stack.path("download-ca.pem");
        std::fs::write(&ca_file, &server.ca_pem).expect("write the CA");
        World {
            stack,
            builds,
            server,
            release,
            ca_file,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base)
    }

    /// `picket-collector sign-artifact FILE`: (sha256, signature).
    pub fn sign(&self, file: &Path) -> (String, String) {
        let out = std::process::Command::new(COLLECTOR)
            .arg("--config")
            .arg(self.stack.path("collector.toml"))
            .arg("sign-artifact")
            .arg(file)
            .output()
            .expect("run sign-artifact");
        assert!(out.status.success(), "sign-artifact: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        (field("sha256:"), field("signature:"))
    }

    /// The agent environment for device `id` living in `home`, on
    /// `broker` (a URL), plus `extra`.
    pub fn agent_env(
        &self,
        id: &str,
        home: &Path,
        broker: &str,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let p = |s: &str| home.join(s).display().to_string();
        let mut env: Vec<(String, String)> = [
            ("RUST_LOG", "info".to_string()),
            ("PICKET_DEVICE_ID", id.to_string()),
            ("PICKET_BROKER_URL", broker.to_string()),
            ("PICKET_BROKER_KEEP_ALIVE", "5s".into()),
            ("PICKET_UPLINK_BACKOFF_MAX", "1s".into()),
            ("PICKET_SAMPLING_INTERVAL", "300ms".into()),
            ("PICKET_QUEUE_DIR", p("queue")),
            ("PICKET_COMMANDS_STATE_DIR", p("commands")),
            ("PICKET_STATUS_SOCKET", p("agent.sock")),
            ("PICKET_LED_BACKEND", "none".into()),
            ("PICKET_UPDATE_DIR", p("update")),
            ("PICKET_COMMANDS_ALLOWED", "agent.update,ping".into()),
            (
                "PICKET_COMMANDS_PUBLIC_KEY_FILE",
                self.stack.path("keys/command.pub").display().to_string(),
            ),
            (
                "PICKET_COMMANDS_FILE_CA_FILE",
                self.ca_file.display().to_string(),
            ),
            ("PICKET_COMMANDS_TRUST_CLOCK", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    /// Version A under the supervisor, as device `id` (home in the
    /// stack's directory); returns once the collector sees it online.
    pub async fn device(&self, id: &str, broker: &str, extra: &[(&str, &str)]) -> Device {
        let home = self.stack.path(id);
        std::fs::create_dir_all(&home).expect("create the device's home");
        let env = self.agent_env(id, &home, broker, extra);
        let sup = Supervisor::start(&self.builds.a, env, home.join("agent.log"));
        let d = Device {
            id: id.to_string(),
            home,
            sup,
        };
        self.wait_version(&d, A).await;
        d
    }

    /// Send `agent.update` to `device`; the command id.
    pub async fn update(&self, device: &Device, args: Value) -> String {
        let (status, body) = self
            .stack
            .post(
                &format!("/api/devices/{}/commands", device.id),
                json!({"name": "agent.update", "args": args, "ttl": "60s"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("command id").to_string()
    }

    /// Wait for the command's final status (generous: a download, a
    /// restart and a trial window); its API view.
    pub async fn settled(&self, id: &str, device: &Device) -> Value {
        self.stack
            .settled_within(id, Duration::from_secs(120), || device.log())
            .await
    }

    /// Wait until the collector sees `device` online with `version`.
    pub async fn wait_version(&self, device: &Device, version: &str) {
        let end = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = self.stack.get(&format!("/api/devices/{}", device.id)).await;
            if status == 200 && body["online"] == true && body["version"] == version {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "{} never online as {version}: {body}\n{}",
                device.id,
                device.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub struct Device {
    pub id: String,
    pub home: PathBuf,
    pub sup: Supervisor,
}

impl Device {
    pub fn log(&self) -> String {
        format!(
            "--- {} log ---\n{}",
            self.id,
            std::fs::read_to_string(self.home.join("agent.log")).unwrap_or_default()
        )
    }

    pub fn bin(&self, version: &str) -> PathBuf {
        self.home.join(format!("update/bin/picket-agent-{version}"))
    }

    /// `state.json`, or `Null` when there is none.
    pub fn state(&self) -> Value {
        std::fs::read(self.home.join("update/state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// Wait until `state.json` satisfies `f`.
    pub async fn wait_state(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let end = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let s = self.state();
            if f(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "{}: never {what}; state {s}\n{}",
                self.id,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `agent.update` arguments.
pub fn args(url: String, sha256: &str, version: &str, signature: &str) -> Value {
    json!({"url": url, "sha256": sha256, "version": version, "signature": signature})
}

/// The reason of the command's final status.
pub fn final_reason(view: &Value) -> String {
    view["statuses"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(|s| s["reason"].as_str())
        .unwrap_or_default()
        .to_string()
}
