//! The `picket-agent` binary as a process: configuration errors, signals,
//! and SIGKILL in the middle of a stream.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::util::{Subscriber, gaps};

pub const BIN: &str = env!("CARGO_BIN_EXE_picket-agent");

pub fn agent_cmd(device: &str, broker: &str, queue: &Path, interval: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PICKET_DEVICE_ID", device)
        .env("PICKET_BROKER_URL", broker)
        .env("PICKET_QUEUE_DIR", queue)
        .env(
            "PICKET_COMMANDS_STATE_DIR",
            format!("{}.commands", queue.display()),
        )
        .env("PICKET_SAMPLING_INTERVAL", interval)
        .env("PICKET_UPLINK_BACKOFF_MAX", "2s")
        .env("PICKET_LED_BACKEND", "none")
        .env("PICKET_STATUS_SOCKET", queue.with_extension("sock"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A child process that is killed if the test panics before it ends: a
/// failing test must not leave an agent running behind it.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// SIGTERM, then the exit status within 10 s (None: still running).
async fn terminate(mut child: KillOnDrop) -> Option<std::process::ExitStatus> {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(10)))
        .await
        .unwrap()
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn invalid_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("PICKET_SAMPLING_INTERVAL", "fast", "sampling.interval"),
        ("PICKET_BROKER_URL", "http://x", "broker.url"),
        ("PICKET_QUEUE_MAX_BYTES", "lots", "queue.max_bytes"),
        ("PICKET_DEVICE_ID", "a/b", "device.id"),
    ];
    for (var, value, key) in cases {
        let mut cmd = agent_cmd("pi-cfg", "mqtt://127.0.0.1:1", dir.path(), "1s");
        cmd.env(var, value);
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(
            stderr.contains(key),
            "{var}={value}: stderr names {key}: {stderr}"
        );
    }
    // A config file with an unknown key, given explicitly.
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "[queue]\ndirr = \"/x\"\n").unwrap();
    let out = agent_cmd("pi-cfg", "mqtt://127.0.0.1:1", dir.path(), "1s")
        .env("PICKET_CONFIG", &file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dirr"));
    // A missing explicit file.
    let out = agent_cmd("pi-cfg", "mqtt://127.0.0.1:1", dir.path(), "1s")
        .args(["--config", "/nonexistent/agent.toml", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn print_default_config_is_the_commented_default() {
    let out = Command::new(BIN)
        .arg("print-default-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        picket_agent::config::DEFAULT_TOML
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_within_five_seconds() {
    let broker = Broker::start().await;
    let sub = Subscriber::start(broker.sub_port, "sigterm").await;
    let dir = tempfile::tempdir().unwrap();
    let child = agent_cmd("pi-term", &broker.url(), dir.path(), "50ms")
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    sub.wait_for(Duration::from_secs(30), "samples", |r| r.samples.len() >= 5)
        .await;
    let t = Instant::now();
    let status = terminate(child).await.expect("agent exited");
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
    sub.wait_for(Duration::from_secs(10), "the clean-stop state", |r| {
        r.states.iter().any(|s| {
            s.device.as_str() == "pi-term"
                && s.reason == Some(picket_protocol::OfflineReason::CleanStop)
        })
    })
    .await;
}

/// SIGKILL the agent several times mid-stream, restarting it on the same
/// queue: the union of what arrived has no gap. Duplicates are allowed (a
/// batch sent but not yet acknowledged is sent again) and counted; a seq is
/// never reused for a different record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing() {
    let broker = Broker::start().await;
    let sub = Subscriber::start(broker.sub_port, "sigkill").await;
    let dir = tempfile::tempdir().unwrap();
    let spawn = || {
        agent_cmd("pi-kill", &broker.url(), dir.path(), "10ms")
            .spawn()
            .map(KillOnDrop)
            .unwrap()
    };
    for round in 0..4u64 {
        let mut child = spawn();
        let target = (round + 1) * 150;
        sub.wait_for(Duration::from_secs(60), "progress", |r| {
            r.samples.len() as u64 >= target
        })
        .await;
        // Kill at a point that varies between rounds.
        tokio::time::sleep(Duration::from_millis(37 * round)).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let child = spawn();
    let before = sub.snapshot().seqs.iter().copied().max().unwrap();
    sub.wait_for(Duration::from_secs(60), "recovery", |r| {
        r.seqs.iter().any(|&s| s > before + 100)
    })
    .await;
    let status = terminate(child).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0));

    let r = sub.snapshot();
    assert_eq!(r.undecodable, 0);
    assert_eq!(
        gaps(r.seqs.iter().copied()),
        Vec::<u64>::new(),
        "no record lost"
    );
    // The same seq always carries the same record.
    let mut by_seq = std::collections::HashMap::new();
    for s in &r.samples {
        if let Some(prev) = by_seq.insert(s.seq, (s.ts, s.mono)) {
            assert_eq!(prev, (s.ts, s.mono), "seq {} reused", s.seq);
        }
    }
    let starts = r
        .events
        .iter()
        .filter(|e| matches!(e.kind, picket_protocol::EventKind::AgentStarted { .. }))
        .map(|e| e.seq)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(starts.len(), 5, "five starts recorded");
    eprintln!(
        "sigkill: {} records received, {} duplicates",
        r.seqs.len(),
        r.duplicates()
    );
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): READY once running,
/// watchdog pings at half the period while the loops make progress,
/// STOPPING on the way out.
#[test]
fn notifies_systemd_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // No broker: readiness and liveness must not depend on the network.
    let port = crate::broker::free_port();
    let mut child = agent_cmd(
        "pi-notify",
        &format!("mqtt://127.0.0.1:{port}"),
        &dir.path().join("q"),
        "100ms",
    )
    .env("NOTIFY_SOCKET", &sock_path)
    .env("WATCHDOG_USEC", "400000")
    .spawn()
    .map(KillOnDrop)
    .unwrap();

    let mut buf = [0u8; 256];
    let mut recv = || {
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).trim().to_string()
    };
    assert_eq!(recv(), "READY=1");
    for _ in 0..5 {
        assert_eq!(recv(), "WATCHDOG=1");
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    loop {
        let msg = recv();
        if msg == "STOPPING=1" {
            break;
        }
        assert_eq!(msg, "WATCHDOG=1");
    }
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exited");
    assert_eq!(status.code(), Some(0));
}

/// First boot: the configuration a technician left on the boot partition
/// is what the agent runs with (its device id and broker), it is installed
/// over the configuration file with mode 0600, and it is gone from the
/// boot partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_boot_file_becomes_the_configuration() {
    use std::os::unix::fs::PermissionsExt;
    let broker = Broker::start().await;
    let sub = Subscriber::start(broker.sub_port, "first-boot").await;
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot/firmware");
    std::fs::create_dir_all(&boot).unwrap();
    let first = boot.join("picket.toml");
    let text = format!(
        "[device]\nid = \"pi-first-boot\"\n[broker]\nurl = \"{}\"\n",
        broker.url()
    );
    std::fs::write(&first, &text).unwrap();
    let config = dir.path().join("etc/picket/agent.toml");

    let child = agent_cmd(
        "unused",
        "mqtt://127.0.0.1:1",
        &dir.path().join("q"),
        "100ms",
    )
    .env_remove("PICKET_DEVICE_ID")
    .env_remove("PICKET_BROKER_URL")
    .env("PICKET_FIRST_BOOT_PATH", &first)
    .args(["--config".as_ref(), config.as_os_str(), "run".as_ref()])
    .spawn()
    .map(KillOnDrop)
    .unwrap();
    sub.wait_for(Duration::from_secs(30), "a sample of pi-first-boot", |r| {
        r.states
            .iter()
            .any(|s| s.device.as_str() == "pi-first-boot")
            && !r.samples.is_empty()
    })
    .await;
    assert!(!first.exists(), "deleted from the boot partition");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "{mode:o}");

    let status = terminate(child).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

/// An invalid first-boot file stops the agent with exit code 2 naming the
/// file and the key, and stays on the boot partition to be fixed; the
/// installed configuration is untouched.
#[test]
fn an_invalid_first_boot_file_exits_2_and_stays() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("picket.toml");
    // (A key the test's environment does not set: the environment wins.)
    std::fs::write(&first, "[payload]\nformat = \"xml\"\n").unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "# installed\n").unwrap();
    let mut child = agent_cmd("pi-cfg", "mqtt://127.0.0.1:1", &dir.path().join("q"), "1s")
        .env("PICKET_FIRST_BOOT_PATH", &first)
        .args(["--config".as_ref(), config.as_os_str(), "run".as_ref()])
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    // An agent that wrongly starts must fail the test, not hang it.
    let status = wait_exit(&mut child, Duration::from_secs(60)).expect("the agent exits");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("payload.format"), "{stderr}");
    assert!(stderr.contains("picket.toml"), "{stderr}");
    assert!(first.exists());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# installed\n");
}
