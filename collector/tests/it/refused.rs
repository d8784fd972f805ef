//! Bad payloads on every topic: the collector keeps serving, counts each
//! under its reason, and `/metrics` stays valid Prometheus text.

use crate::harness::{Collector, Device, Mosquitto, Setup, counter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_counted_and_nothing_stops() {
    let mosquitto = Mosquitto::if_asked().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(
        dir.path(),
        mosquitto.as_ref().map(|m| m.port),
        "[payload]\nmax_size = \"2KiB\"\n",
    );
    let collector = Collector::start(&setup).await;
    let dev = Device::connect(collector.broker, "pi-bad", "s1").await;
    let kinds = ["state", "telemetry", "event", "reply/c1"];
    let wrong_version = br#"{"v": 99, "device": "pi-bad"}"#.to_vec();
    for kind in kinds {
        let topic = format!("picket/v1/pi-bad/{kind}");
        dev.publish(topic.clone(), b"\xff\x00garbage".to_vec(), false)
            .await;
        dev.publish(topic.clone(), wrong_version.clone(), false)
            .await;
        dev.publish(topic.clone(), vec![b'{'; 4096], false).await;
        dev.publish(topic, br#"{"v":1,"device":"someone-else","samples":[],"events":[],"status":"online","session":"x","id":"c1","state":"accepted","ts":1}"#.to_vec(), false).await;
    }
    dev.publish("picket/v1/pi-bad/bogus".into(), b"{}".to_vec(), false)
        .await;
    // A good message after all that is still taken.
    dev.birth().await;
    dev.telemetry(vec![dev.sample(1, 50.0)]).await;
    collector
        .wait_device("pi-bad", "the good sample", |d| d["seq"]["received"] == 1)
        .await;

    let (status, metrics) = collector.text("/metrics").await;
    assert_eq!(status, 200);
    let refused = |reason: &str| {
        counter(
            &metrics,
            &format!("picket_ingest_refused_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refused("malformed"), 4, "{metrics}");
    assert_eq!(refused("wrong_version"), 4, "{metrics}");
    assert_eq!(refused("oversized"), 4, "{metrics}");
    assert_eq!(refused("device_mismatch"), 4, "{metrics}");
    assert_eq!(refused("unknown_topic"), 1, "{metrics}");
    let (status, _) = collector.get("/healthz", None).await;
    assert_eq!(status, 200);
    promtool(&metrics);

    // The session's start and the last commit, as unix times: between the
    // start of this test and now, in that order (the good sample is
    // committed after the collector connected).
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
    };
    let since = counter(&metrics, "picket_broker_connected_since_timestamp_seconds ");
    assert!(
        since + 120 >= unix() && since <= unix(),
        "connected since {since}, now {}\n{metrics}",
        unix()
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let last_commit = loop {
        let (_, metrics) = collector.text("/metrics").await;
        let t = counter(&metrics, "picket_store_last_commit_timestamp_seconds ");
        if t > 0 || tokio::time::Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        last_commit >= since && last_commit <= unix(),
        "last commit {last_commit}, connected since {since}"
    );
    collector.stop().await;
}

/// `promtool check metrics` when `PICKET_TEST_PROMTOOL` names it (or is
/// `1`: from PATH); the check then must run and pass.
fn promtool(metrics: &str) {
    let Ok(bin) = std::env::var("PICKET_TEST_PROMTOOL") else {
        return;
    };
    let bin = if bin == "1" {
        "promtool".to_string()
    } else {
        bin
    };
    use std::io::Write;
    let mut child = std::process::Command::new(&bin)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool refused /metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
