//! Hostile input and bad days, through real processes (the agent, the
//! collector, the broker): a device's first record, poison on every topic
//! kind, oversized payloads, SIGTERM in every state, and a full disk under
//! the collector's database.
//!
//! The full-disk test mounts a small tmpfs (root only) and needs Mosquitto
//! (`PICKET_TEST_BROKER=mosquitto`): it is ignored otherwise, and `.ci/run`
//! runs it with `--ignored`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::commands::stack::{Proc, Publisher, Stack};
use crate::harness::{counter, free_port, now_ms, until};

const COLLECTOR: &str = env!("CARGO_BIN_EXE_picket-collector");

/// Stored rows of `device` in the database (read-only, beside the
/// collector): each sample's and event's seq, ascending, duplicates kept.
fn stored_seqs(db: &Path, device: &str) -> Vec<u64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the database read-only");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    let mut stmt = conn
        .prepare(
            "SELECT seq FROM (
                 SELECT device_id, seq FROM sample
                 UNION ALL SELECT device_id, seq FROM sample_new
                 UNION ALL SELECT device_id, seq FROM event)
             WHERE device_id = (SELECT id FROM device WHERE name = ?1)
             ORDER BY seq",
        )
        .expect("prepare");
    stmt.query_map([device], |r| r.get::<_, i64>(0))
        .expect("query")
        .map(|r| r.expect("row") as u64)
        .collect()
}

async fn metrics(stack: &Stack) -> String {
    let (status, body) = stack.get("/metrics").await;
    assert_eq!(status, 200);
    body.as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_agents_first_record_is_stored() {
    let mut stack = Stack::start("pi-fresh", "").await;
    stack.agent_online().await;
    let db = stack.path("collector.db");
    // A few records in: the first (seq 0, the agent's start) among them.
    until(Duration::from_secs(30), "three records stored", || {
        stored_seqs(&db, "pi-fresh").len() >= 3
    })
    .await;
    let seqs = stored_seqs(&db, "pi-fresh");
    assert_eq!(seqs[0], 0, "the first record is stored: {seqs:?}");
    let (_, events) = stack.get("/api/devices/pi-fresh/events?from=-1h").await;
    let first = &events["events"][0];
    assert_eq!(
        (&first["kind"], &first["seq"]),
        (&json!("agent_started"), &json!(0)),
        "{events}"
    );
    let (_, dev) = stack.get("/api/devices/pi-fresh").await;
    assert_eq!(
        (&dev["seq"]["duplicates"], &dev["seq"]["missing"]),
        (&json!(0), &json!(0)),
        "{dev}"
    );
    // Exact across an agent restart: nothing missing, nothing stored
    // twice. The agent sends again what the broker acknowledged in its
    // last `uplink.hold_acked` (it may not be saved yet): those count as
    // duplicates, at most as many as were stored before the stop.
    stack.stop_agent();
    stack.agent_online().await;
    let before = stored_seqs(&db, "pi-fresh").len();
    until(Duration::from_secs(30), "records after the restart", || {
        stored_seqs(&db, "pi-fresh").len() >= before + 3
    })
    .await;
    let seqs = stored_seqs(&db, "pi-fresh");
    let mut unique = seqs.clone();
    unique.dedup();
    assert_eq!(unique, seqs, "a record stored twice");
    let (_, dev) = stack.get("/api/devices/pi-fresh").await;
    assert_eq!(dev["seq"]["received"], json!(seqs.len()), "{dev}");
    assert_eq!(dev["seq"]["missing"], json!(0), "{dev}");
    let duplicates = dev["seq"]["duplicates"].as_u64().expect("a count");
    assert!(duplicates <= before as u64, "{dev}");
}

/// Each kind of poison a client can publish, as `(topic kind, payload,
/// refusal reason)`. `big` is the oversized payload's size.
fn poisons(device: &str, big: usize) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let huge = 1u64 << 63;
    let now = now_ms();
    let nan_sample = {
        let mut s = crate::harness::sample(1, 50.0, "b");
        s.cpu = Some(f32::NAN);
        picket_protocol::encode(
            &picket_protocol::Telemetry {
                v: picket_protocol::VERSION,
                device: device.parse().expect("device id"),
                samples: vec![s],
            },
            picket_protocol::Format::Cbor,
        )
        .expect("encode")
    };
    let j = |v: Value| serde_json::to_vec(&v).expect("json");
    vec![
        (
            "telemetry",
            j(json!({"v": 1, "device": device, "samples": [
                {"seq": huge, "ts": now, "mono": 1, "boot": "b", "sync": true}]})),
            "invalid",
        ),
        (
            "telemetry",
            j(json!({"v": 1, "device": device, "samples": [
                {"seq": 7, "ts": now, "mono": huge, "boot": "b", "sync": true}]})),
            "invalid",
        ),
        ("telemetry", nan_sample, "invalid"),
        ("telemetry", vec![b'x'; big], "oversized"),
        (
            "event",
            j(json!({"v": 1, "device": device, "events": [
                {"seq": 3, "ts": huge, "mono": 1, "boot": "b", "sync": true, "kind": "agent_stopping"}]})),
            "invalid",
        ),
        ("event", b"\xff\x00 not a message".to_vec(), "malformed"),
        (
            "state",
            j(json!({"v": 1, "device": device, "status": "online",
                "session": "s".repeat(100_000), "version": "1.0.0"})),
            "invalid",
        ),
        (
            "reply/c1",
            j(json!({"v": 1, "device": device, "id": "c1", "state": "accepted", "ts": huge})),
            "invalid",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_on_every_topic_kind_does_not_stop_a_healthy_device() {
    let mut stack = Stack::start("pi-good", "").await;
    stack.agent_online().await;
    let db = stack.path("collector.db");
    // 2 MiB through Mosquitto; the embedded broker itself refuses more
    // than the collector's limit + 64 KiB, so just over the limit there.
    let big = if std::env::var("PICKET_TEST_BROKER").as_deref() == Ok("mosquitto") {
        2 << 20
    } else {
        (1 << 20) + 1_000
    };
    let hostile = Publisher::connect(stack.broker).await;
    let mut sent = 0;
    // On the healthy device's own topics and on another device's.
    for device in ["pi-good", "pi-evil"] {
        for (kind, payload, _) in poisons(device, big) {
            hostile
                .publish_acked(&format!("picket/v1/{device}/{kind}"), payload)
                .await;
            sent += 1;
        }
    }
    // From the last PUBACK on, the healthy device's new samples are
    // stored within 2 s.
    let before = stored_seqs(&db, "pi-good").len();
    let start = Instant::now();
    until(
        Duration::from_secs(2),
        "a sample of pi-good stored after the poison",
        || stored_seqs(&db, "pi-good").len() > before,
    )
    .await;
    let took = start.elapsed();
    eprintln!("pi-good stored again {took:?} after {sent} poison messages");

    // Every one refused under its reason, counted, and quarantined.
    let want = |reason: &str| {
        2 * poisons("x", 1)
            .iter()
            .filter(|(_, _, r)| *r == reason)
            .count() as u64
    };
    let mut text = String::new();
    for _ in 0..200 {
        text = metrics(&stack).await;
        if counter(&text, "picket_ingest_refused_total{reason=\"invalid\"}") >= want("invalid") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for reason in ["invalid", "oversized", "malformed"] {
        assert_eq!(
            counter(
                &text,
                &format!("picket_ingest_refused_total{{reason=\"{reason}\"}}")
            ),
            want(reason),
            "{reason}\n{text}"
        );
    }
    let (status, q) = stack.get("/api/ingest/refused?limit=1000").await;
    assert_eq!(status, 200, "{q}");
    let refused = q["refused"].as_array().expect("a list");
    assert_eq!(refused.len() as u64, sent, "{q}");
    let oversized: Vec<&Value> = refused
        .iter()
        .filter(|r| r["reason"] == "oversized")
        .collect();
    assert_eq!(oversized.len(), 2);
    for r in oversized {
        assert_eq!(r["size"], json!(big));
        assert_eq!(r["payload_hex"].as_str().map(str::len), Some(2 * 4096));
    }
    let seq_refusal = refused
        .iter()
        .find(|r| r["topic"] == "picket/v1/pi-good/telemetry" && r["reason"] == "invalid")
        .expect("the seq 2^63 refusal");
    assert!(
        seq_refusal["detail"]
            .as_str()
            .is_some_and(|d| d.contains("samples[0]")),
        "{seq_refusal}"
    );
    // Nothing of it reached the healthy device's accounting.
    let (_, dev) = stack.get("/api/devices/pi-good").await;
    assert_eq!(dev["seq"]["duplicates"], json!(0), "{dev}");
    assert_eq!(dev["seq"]["missing"], json!(0), "{dev}");
    let (status, health) = stack.get("/healthz").await;
    assert_eq!(status, 200, "{health}");

    // Acknowledged: a restarted collector is not fed the poison again.
    let (took, exit) = stack.terminate_collector();
    assert!(exit.success(), "{exit}");
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    stack.start_collector().await;
    let before = stored_seqs(&db, "pi-good").len();
    until(
        Duration::from_secs(30),
        "pi-good stored after the restart",
        || stored_seqs(&db, "pi-good").len() > before,
    )
    .await;
    let text = metrics(&stack).await;
    for reason in ["invalid", "oversized", "malformed"] {
        assert_eq!(
            counter(
                &text,
                &format!("picket_ingest_refused_total{{reason=\"{reason}\"}}")
            ),
            0,
            "{reason} redelivered\n{text}"
        );
    }
}

/// The collector binary with `config`, its stderr into `log`.
fn spawn_collector(dir: &Path, config: &str) -> (Proc, PathBuf) {
    let path = dir.join("collector.toml");
    std::fs::write(&path, config).expect("config");
    let log = dir.join("collector.log");
    let child = Command::new(COLLECTOR)
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info,rumqttd=off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("collector process");
    (Proc(child), log)
}

/// SIGTERM the collector; how long it took to exit (cleanly).
fn terminate(collector: Proc) -> Duration {
    let (took, status) = collector.terminate();
    assert!(status.success(), "exit {status}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_collector_promptly_with_the_broker_unreachable_or_the_api_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // Nothing listens on the broker's port: the link retries with backoff.
    let config = format!(
        "broker.url = \"mqtt://127.0.0.1:{}\"\nhttp.listen = \"{http}\"\n\
         storage.path = \"{}\"\napi.read_token = \"a-read-token-of-some-length\"\n",
        free_port(),
        dir.path().join("collector.db").display()
    );
    let (child, log) = spawn_collector(dir.path(), &config);
    crate::harness::wait_listening(http).await;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    until(
        Duration::from_secs(20),
        "a failed connection logged",
        || read_log().contains("MQTT connection failed"),
    )
    .await;
    let took = terminate(child);
    assert!(
        took < Duration::from_secs(5),
        "broker unreachable: stop took {took:?}"
    );
    eprintln!("broker unreachable: stopped in {took:?}");

    // API busy: clients that opened requests and never finish them, and
    // others waiting in line.
    let (child, _) = spawn_collector(dir.path(), &config);
    crate::harness::wait_listening(http).await;
    let mut open = Vec::new();
    for _ in 0..50 {
        let mut s = std::net::TcpStream::connect(http).expect("connect");
        s.write_all(b"GET /api/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bea")
            .expect("half a request");
        open.push(s);
    }
    let took = terminate(child);
    assert!(
        took < Duration::from_secs(5),
        "API busy: stop took {took:?}"
    );
    eprintln!("API busy: stopped in {took:?}");
}

/// A tmpfs of `size` mounted on `at`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "mount tmpfs (needs root): {out:?}");
        Tmpfs(at.to_path_buf())
    }

    /// Fill what is left with `filler`.
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        // The last partial chunk too: not a byte left.
        while f.write_all(&chunk[..512]).is_ok() {}
        while f.write_all(&chunk[..1]).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// What the agent assigned (0 to the last stored seq, every one) against
/// the database: nothing missing, nothing twice.
fn reconcile(db: &Path, device: &str) -> (usize, u64) {
    let seqs = stored_seqs(db, device);
    let last = *seqs.last().expect("records stored");
    let want: Vec<u64> = (0..=last).collect();
    assert_eq!(
        seqs, want,
        "stored seqs of {device} are not 0..={last} once each"
    );
    (seqs.len(), last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "mounts a tmpfs (root) and needs PICKET_TEST_BROKER=mosquitto; .ci/run runs it"]
async fn a_full_disk_stops_acknowledging_and_ingest_resumes_with_nothing_lost() {
    assert_eq!(
        std::env::var("PICKET_TEST_BROKER").as_deref(),
        Ok("mosquitto"),
        "the broker must outlive the collector's restart: run with PICKET_TEST_BROKER=mosquitto"
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let fs = Tmpfs::mount(&scratch.path().join("db"), "16m");
    let db = fs.0.join("collector.db");
    let mut stack = Stack::start_with("pi-disk", "", Some(db.clone())).await;
    stack.agent_online().await;
    until(Duration::from_secs(30), "records stored", || {
        stored_seqs(&db, "pi-disk").len() >= 3
    })
    .await;

    // The disk fills: commits fail, /healthz says why, nothing is
    // acknowledged (the broker keeps the messages for the session).
    let filler = fs.fill();
    let health = stack.health(503, Duration::from_secs(30)).await;
    assert_eq!(health["status"], "database failing", "{health}");
    assert!(
        health["store_error"]
            .as_str()
            .is_some_and(|e| e.contains("full")),
        "{health}"
    );
    let failing = counter(&metrics(&stack).await, "picket_store_failing ");
    assert_eq!(failing, 1);
    // Records arrive that cannot be stored meanwhile.
    let stored = *stored_seqs(&db, "pi-disk").last().expect("stored");
    for _ in 0..600 {
        let (_, dev) = stack.get("/api/devices/pi-disk").await;
        if dev["seq"]["last"].as_u64().is_some_and(|l| l > stored + 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        *stored_seqs(&db, "pi-disk").last().expect("stored"),
        stored,
        "stored while the disk is full"
    );

    // Space returns: ingest resumes by itself.
    std::fs::remove_file(&filler).expect("free the space");
    stack.health(200, Duration::from_secs(30)).await;

    // SIGTERM while the database cannot store: prompt, and what it held
    // arrives again after the restart.
    let filler = fs.fill();
    stack.health(503, Duration::from_secs(30)).await;
    let (took, exit) = stack.terminate_collector();
    eprintln!("disk full: stopped in {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "stop with the disk full took {took:?}"
    );
    assert!(exit.success(), "{exit}");
    std::fs::remove_file(&filler).expect("free the space");
    stack.start_collector().await;

    // The agent stops (its last records sent); everything it assigned is
    // stored exactly once.
    stack.stop_agent();
    let mut last_seen = None;
    until(Duration::from_secs(60), "every record stored", || {
        let seqs = stored_seqs(&db, "pi-disk");
        let complete = seqs.last().is_some_and(|&l| seqs.len() as u64 == l + 1);
        let settled = last_seen == Some(seqs.len());
        last_seen = Some(seqs.len());
        complete && settled
    })
    .await;
    let (n, last) = reconcile(&db, "pi-disk");
    let (_, dev) = stack.get("/api/devices/pi-disk").await;
    assert_eq!(dev["seq"]["missing"], json!(0), "{dev}");
    assert_eq!(dev["seq"]["received"], json!(n), "{dev}");
    eprintln!("pi-disk: {n} records, seqs 0..={last}, none lost or doubled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_collector_promptly_with_a_webhook_that_never_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A webhook server that takes the connection and never answers: the
    // delivery waits for its 30 s timeout, the notifier's grace is 5 s.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hook_addr = hook.local_addr().expect("address");
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    std::thread::spawn({
        let accepted = std::sync::Arc::clone(&accepted);
        move || {
            for s in hook.incoming().flatten() {
                accepted.lock().expect("lock").push(s);
            }
        }
    });
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let broker: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = format!(
        "broker.listen = \"{broker}\"\nhttp.listen = \"{http}\"\nstorage.path = \"{}\"\n\
         [webhook]\nurl = \"http://{hook_addr}/hook\"\ntimeout = \"30s\"\n\
         [[rules]]\nname = \"temperature\"\nfor = \"1s\"\n",
        dir.path().join("collector.db").display()
    );
    let (child, _) = spawn_collector(dir.path(), &config);
    crate::harness::wait_listening(http).await;
    crate::harness::wait_listening(broker).await;
    let dev = crate::harness::Device::connect(broker, "pi-hot", "s1").await;
    dev.birth().await;
    let mut seq = 0;
    let start = Instant::now();
    while accepted.lock().expect("lock").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "no webhook call");
        dev.telemetry(vec![dev.sample(seq, 90.0)]).await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = terminate(child);
    eprintln!("webhook hanging: stopped in {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "webhook hanging: stop took {took:?}"
    );
}
