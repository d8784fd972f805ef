//! Dedupe by sequence number: a batch delivered twice and a gap give exact
//! `duplicates` and `missing`, history holds each record once, and a
//! collector restart neither re-counts nor forgets — also when the process
//! is killed (SIGKILL) between two checkpoints of its state.

use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::{Collector, Device, Mosquitto, Setup, free_port};

async fn seq(c: &Collector, want_received: u64) -> serde_json::Value {
    let d = c
        .wait_device("pi-seq", "records counted", |d| {
            d["seq"]["received"] == want_received
        })
        .await;
    d["seq"].clone()
}

/// The stored history of `temp` once it holds `want` points (the live
/// view the API answers from runs one commit ahead of SQLite); the count
/// found when waiting gives up.
async fn points(c: &Collector, want: usize) -> usize {
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, h) = c
            .get("/api/devices/pi-seq/history?metric=temp&from=-1h", None)
            .await;
        assert_eq!(status, 200, "{h}");
        let n = h["points"].as_array().map_or(0, Vec::len);
        if n == want || tokio::time::Instant::now() > end {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A broker that outlives the collector: Mosquitto, or an embedded broker
/// started by the test rather than by the collector.
async fn broker() -> (Option<Mosquitto>, u16) {
    let mosquitto = Mosquitto::if_asked().await;
    let port = match &mosquitto {
        Some(m) => m.port,
        None => {
            let port = free_port();
            picket_collector::broker::start(&picket_collector::broker::EmbeddedConfig {
                listen: ([127, 0, 0, 1], port).into(),
                max_payload: 1 << 20,
                max_connections: 100,
                auth: None,
            })
            .expect("test broker");
            port
        }
    };
    (mosquitto, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_gaps_survive_a_restart() {
    let (_mosquitto, port) = broker().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(dir.path(), Some(port), "");
    let collector = Collector::start(&setup).await;
    let dev = Device::connect(collector.broker, "pi-seq", "s1").await;
    dev.birth().await;
    let batch: Vec<_> = (0..=4).map(|s| dev.sample(s, 50.0 + s as f32)).collect();
    dev.telemetry(batch.clone()).await;
    dev.telemetry(batch).await;
    // 5 and 6 never arrive (yet).
    dev.telemetry(vec![dev.sample(7, 57.0), dev.sample(8, 58.0)])
        .await;
    let s = seq(&collector, 7).await;
    assert_eq!(
        (&s["last"], &s["duplicates"], &s["missing"]),
        (&8.into(), &5.into(), &2.into()),
        "{s}"
    );
    assert_eq!(s["missing_ranges"], serde_json::json!([[5, 6]]));
    assert_eq!(points(&collector, 7).await, 7);

    collector.stop().await;
    let collector = Collector::start(&setup).await;
    let s = seq(&collector, 7).await;
    assert_eq!((&s["duplicates"], &s["missing"]), (&5.into(), &2.into()));
    // A late record fills part of the gap; an old one is a duplicate.
    dev.telemetry(vec![dev.sample(5, 55.0)]).await;
    dev.telemetry(vec![dev.sample(2, 52.0)]).await;
    let s = collector
        .wait_device("pi-seq", "the duplicate counted", |d| {
            d["seq"]["duplicates"] == 6
        })
        .await["seq"]
        .clone();
    assert_eq!(
        (&s["received"], &s["missing"]),
        (&8.into(), &1.into()),
        "{s}"
    );
    assert_eq!(points(&collector, 8).await, 8);
    collector.stop().await;
}

/// The collector binary on the same database and broker, killed at will.
struct Killable {
    child: std::process::Child,
    http: SocketAddr,
}

impl Killable {
    async fn start(dir: &std::path::Path, broker: u16) -> Killable {
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let config = dir.join("killable.toml");
        std::fs::write(
            &config,
            format!(
                "broker.url = \"mqtt://127.0.0.1:{broker}\"\nhttp.listen = \"{http}\"\n\
                 storage.path = \"{}\"\n",
                dir.join("collector.db").display()
            ),
        )
        .expect("config");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_picket-collector"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("collector process");
        let k = Killable { child, http };
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while k.get("/healthz").await.0 != 200 {
            assert!(tokio::time::Instant::now() < end, "collector not healthy");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        k
    }

    /// GET `path`; status 0 while nothing listens yet.
    async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let url = format!("http://{}{path}", self.http);
        tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .new_agent();
            match agent.get(&url).call() {
                Ok(mut res) => {
                    let text = res.body_mut().read_to_string().unwrap_or_default();
                    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
                    (res.status().as_u16(), json)
                }
                Err(_) => (0, serde_json::Value::Null),
            }
        })
        .await
        .expect("request task")
    }

    /// Wait until the device's `seq` satisfies `f` and its `temp` history
    /// holds `points` (so what the API shows is committed), then return it.
    async fn committed(
        &self,
        points: usize,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, d) = self.get("/api/devices/pi-seq").await;
            let (_, h) = self
                .get("/api/devices/pi-seq/history?metric=temp&from=-1h")
                .await;
            let n = h["points"].as_array().map_or(0, Vec::len);
            if f(&d["seq"]) && n == points {
                return d["seq"].clone();
            }
            assert!(
                tokio::time::Instant::now() < end,
                "timed out: seq {} with {n} points",
                d["seq"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_accounting_survives_a_sigkill() {
    let (_mosquitto, port) = broker().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The collector's persistent session exists before the process runs,
    // so nothing the device sends while it starts is lost.
    let setup = Setup::new(dir.path(), Some(port), "");
    Collector::start(&setup).await.stop().await;
    let collector = Killable::start(dir.path(), port).await;
    let dev = Device::connect(([127, 0, 0, 1], port).into(), "pi-seq", "s1").await;
    dev.birth().await;
    dev.telemetry((0..=2).map(|s| dev.sample(s, 50.0)).collect())
        .await;
    collector.committed(3, |s| s["received"] == 3).await;
    // After the first commit: a duplicate, a gap (3 and 4 never arrive).
    dev.telemetry(vec![dev.sample(1, 51.0), dev.sample(5, 55.0)])
        .await;
    let before = collector
        .committed(4, |s| s["received"] == 4 && s["duplicates"] == 1)
        .await;
    assert_eq!(
        (&before["last"], &before["missing"]),
        (&5.into(), &2.into()),
        "{before}"
    );
    drop(collector); // SIGKILL

    let collector = Collector::start(&setup).await;
    let s = collector
        .wait_device("pi-seq", "the state before the kill", |d| {
            d["seq"]["last"] == 5
        })
        .await["seq"]
        .clone();
    assert_eq!(s, before, "restored exactly");
    dev.telemetry(vec![dev.sample(4, 54.0), dev.sample(5, 55.0)])
        .await;
    let s = collector
        .wait_device("pi-seq", "the late record and the duplicate", |d| {
            d["seq"]["received"] == 5
        })
        .await["seq"]
        .clone();
    assert_eq!(
        (&s["duplicates"], &s["missing"]),
        (&2.into(), &1.into()),
        "{s}"
    );
    collector.stop().await;
}
