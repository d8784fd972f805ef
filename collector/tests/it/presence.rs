//! Presence through a real broker: birth, a lost TCP connection (the
//! broker publishes the will), silence, and a stale will.

use crate::harness::{Collector, Device, Mosquitto, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn birth_will_silence_and_stale_will() {
    let mosquitto = Mosquitto::if_asked().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(
        dir.path(),
        mosquitto.as_ref().map(|m| m.port),
        "[presence]\ntimeout = \"2s\"\n",
    );
    let collector = Collector::start(&setup).await;

    // Birth → online.
    let a = Device::connect(collector.broker, "pi-a", "sa1").await;
    a.birth().await;
    a.telemetry(vec![a.sample(1, 50.0)]).await;
    collector
        .wait_device("pi-a", "online", |d| d["status"] == "online")
        .await;

    // TCP dropped without DISCONNECT → the broker's will → offline.
    a.drop_connection();
    let d = collector
        .wait_device("pi-a", "offline after the will", |d| {
            d["status"] == "offline"
        })
        .await;
    assert_eq!(d["reason"], "connection lost");
    assert_eq!(d["presence"]["session"], "sa1");

    // Connected but silent for the 2 s timeout → offline, silent, dated
    // from the last message.
    let b = Device::connect(collector.broker, "pi-b", "sb1").await;
    b.birth().await;
    b.telemetry(vec![b.sample(1, 50.0)]).await;
    let online = collector
        .wait_device("pi-b", "online with its sample", |d| {
            d["status"] == "online" && d["seq"]["received"] == 1
        })
        .await;
    let last_seen = online["last_seen"].as_u64().expect("last_seen");
    let d = collector
        .wait_device("pi-b", "silent", |d| d["reason"] == "silent")
        .await;
    assert_eq!(d["presence"]["since"].as_u64(), Some(last_seen));
    // Talking again: online.
    b.telemetry(vec![b.sample(2, 50.0)]).await;
    collector
        .wait_device("pi-b", "back online", |d| d["status"] == "online")
        .await;

    // A will from an older session, delivered after the reconnect, is
    // ignored (and counted).
    let c1 = Device::connect(collector.broker, "pi-c", "sc1").await;
    c1.birth().await;
    collector
        .wait_device("pi-c", "online", |d| d["presence"]["session"] == "sc1")
        .await;
    let c2 = Device::connect(collector.broker, "pi-c", "sc2").await;
    c2.birth().await;
    collector
        .wait_device("pi-c", "new session", |d| d["presence"]["session"] == "sc2")
        .await;
    c2.will_of("sc1").await;
    c2.telemetry(vec![c2.sample(1, 50.0)]).await;
    let d = collector
        .wait_device("pi-c", "the sample after the stale will", |d| {
            d["seq"]["received"] == 1
        })
        .await;
    assert_eq!(d["status"], "online");
    let (_, metrics) = collector.text("/metrics").await;
    assert!(
        metrics.contains("picket_ingest_stale_wills_total 1"),
        "{metrics}"
    );
    let (_, history) = collector.get("/api/devices/pi-a", None).await;
    let rows = history["presence_history"]
        .as_array()
        .expect("presence history");
    assert!(rows.len() >= 2, "online and offline recorded: {history}");
    drop(c1);
    collector.stop().await;
}
