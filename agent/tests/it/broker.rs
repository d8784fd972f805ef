//! A real MQTT broker for the tests, on a free loopback port: Mosquitto when
//! `PICKET_TEST_BROKER=mosquitto` (started from `mosquitto` on PATH, or
//! `PICKET_TEST_MOSQUITTO=/path`), else rumqttd embedded in the test
//! process. Both can be stopped and restarted on the same port: Mosquitto by
//! stopping the process (it keeps persistent sessions on disk), rumqttd by
//! cutting the TCP path in front of it (it cannot be stopped in-process).

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use picket_config::embedded_broker::{self, EmbeddedConfig};

pub fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

pub fn use_mosquitto() -> bool {
    std::env::var("PICKET_TEST_BROKER").is_ok_and(|v| v == "mosquitto")
}

pub struct Broker {
    /// The port the agent connects to (may be cut).
    pub port: u16,
    /// The port test subscribers connect to.
    pub sub_port: u16,
    backend: Backend,
}

enum Backend {
    Mosquitto {
        child: Option<Child>,
        conf: PathBuf,
        _dir: tempfile::TempDir,
    },
    Embedded {
        target: SocketAddr,
        proxy: Option<Proxy>,
    },
}

/// Username and password every client must present, when set.
pub type Auth = Option<(&'static str, &'static str)>;

impl Broker {
    pub async fn start() -> Broker {
        Broker::start_with(None).await
    }

    pub async fn start_with(auth: Auth) -> Broker {
        Broker::start_configured(auth, "").await
    }

    /// Mosquitto (whatever `PICKET_TEST_BROKER` says) saving its in-memory
    /// database every `secs` seconds, as a production broker does
    /// (`autosave_interval`; Mosquitto's default is 30 minutes).
    pub async fn mosquitto_saving_every(secs: u32) -> Broker {
        Broker::start_configured(None, &format!("autosave_interval {secs}\n")).await
    }

    async fn start_configured(auth: Auth, extra: &str) -> Broker {
        if use_mosquitto() || !extra.is_empty() {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let conf = dir.path().join("mosquitto.conf");
            let access = match auth {
                None => "allow_anonymous true\n".to_string(),
                Some((user, pass)) => {
                    let file = dir.path().join("passwd");
                    let status = Command::new("mosquitto_passwd")
                        .args(["-b", "-c"])
                        .arg(&file)
                        .args([user, pass])
                        .status()
                        .expect("run mosquitto_passwd");
                    assert!(status.success(), "mosquitto_passwd failed");
                    format!("allow_anonymous false\npassword_file {}\n", file.display())
                }
            };
            let text = format!(
                "listener {port} 127.0.0.1\n{access}persistence true\n\
                 persistence_location {}/\nmax_queued_messages 0\nmax_inflight_messages 100\n\
                 log_dest file {}/mosquitto.log\nlog_type all\n{extra}",
                dir.path().display(),
                dir.path().display()
            );
            // Started as root, Mosquitto switches to the `mosquitto` user,
            // which cannot write into this private directory.
            let text = if unsafe { libc::geteuid() } == 0 {
                text + "user root\n"
            } else {
                text
            };
            std::fs::write(&conf, text).expect("write mosquitto.conf");
            let mut b = Broker {
                port,
                sub_port: port,
                backend: Backend::Mosquitto {
                    child: None,
                    conf,
                    _dir: dir,
                },
            };
            b.resume().await;
            b
        } else {
            let (internal, target) = start_rumqttd(auth).await;
            let port = free_port();
            let mut b = Broker {
                port,
                sub_port: internal,
                backend: Backend::Embedded {
                    target,
                    proxy: None,
                },
            };
            b.resume().await;
            b
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The broker becomes unreachable for the agent.
    pub async fn stop(&mut self) {
        match &mut self.backend {
            Backend::Mosquitto { child, .. } => {
                if let Some(mut c) = child.take() {
                    // SIGTERM: Mosquitto saves its persistence file on the way out.
                    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
                    let _ = tokio::task::spawn_blocking(move || c.wait()).await;
                }
            }
            Backend::Embedded { proxy, .. } => {
                if let Some(p) = proxy.take() {
                    p.cut().await;
                }
            }
        }
    }

    /// Mosquitto dies at once (SIGKILL: an OOM kill, a crash), without
    /// saving what changed since its last save.
    pub async fn kill(&mut self) {
        if let Backend::Mosquitto { child, .. } = &mut self.backend
            && let Some(mut c) = child.take()
        {
            let _ = c.kill();
            let _ = tokio::task::spawn_blocking(move || c.wait()).await;
        }
    }

    /// How many times Mosquitto has saved its database (its log says so).
    pub fn saves(&self) -> usize {
        match &self.backend {
            Backend::Mosquitto { _dir, .. } => {
                std::fs::read_to_string(_dir.path().join("mosquitto.log"))
                    .unwrap_or_default()
                    .matches("Saving in-memory database")
                    .count()
            }
            Backend::Embedded { .. } => 0,
        }
    }

    pub async fn resume(&mut self) {
        let port = self.port;
        match &mut self.backend {
            Backend::Mosquitto { child, conf, .. } => {
                let bin =
                    std::env::var("PICKET_TEST_MOSQUITTO").unwrap_or_else(|_| "mosquitto".into());
                let c = Command::new(bin)
                    .arg("-c")
                    .arg(&*conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start mosquitto (install it, or unset PICKET_TEST_BROKER)");
                *child = Some(c);
                wait_listening(([127, 0, 0, 1], port).into()).await;
            }
            Backend::Embedded { target, proxy } => {
                *proxy = Some(Proxy::start(port, *target).await);
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let (Ok(to), Backend::Mosquitto { _dir, .. }) =
            (std::env::var("PICKET_TEST_KEEP_LOG"), &self.backend)
        {
            let _ = std::fs::copy(_dir.path().join("mosquitto.log"), to);
        }
        if let Backend::Mosquitto { child: Some(c), .. } = &mut self.backend {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start the embedded broker (the collector's, `picket_config::embedded_broker`)
/// on a free port; returns the port and address.
///
/// A free port is only free until someone binds it: another test may take
/// it between `free_port` and rumqttd's bind. rumqttd then ends its thread
/// while the port answers for the other test, so the address answering
/// alone would be fooled. A broker that has stopped is retried on another
/// port.
async fn start_rumqttd(auth: Auth) -> (u16, SocketAddr) {
    for _ in 0..10 {
        let internal = free_port();
        let target: SocketAddr = ([127, 0, 0, 1], internal).into();
        let config = EmbeddedConfig {
            listen: target,
            max_payload: 4 << 20,
            max_connections: 100,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        };
        let Ok(mut broker) = embedded_broker::start(&config) else {
            continue;
        };
        // A failed bind ends the thread within milliseconds.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if broker.stopped.try_recv().is_err() {
            // The broker lives as long as the test process; dropping the
            // receiver does not stop it.
            return (internal, target);
        }
    }
    panic!("the embedded broker could not listen on any of 10 free ports");
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("broker did not start listening on {addr}");
}

/// A TCP forwarder whose cut drops the listener and every connection, like
/// a broker that went away.
struct Proxy {
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(port: u16, target: SocketAddr) -> Proxy {
        let mut listener = None;
        for _ in 0..100 {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let listener = listener.expect("re-bind the proxy port");
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let c2 = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c2.lock().await.push(task);
            }
        });
        Proxy { accept, conns }
    }

    async fn cut(self) {
        self.accept.abort();
        let _ = self.accept.await;
        for c in self.conns.lock().await.drain(..) {
            c.abort();
        }
    }
}
