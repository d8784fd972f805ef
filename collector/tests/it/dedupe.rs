//! Dedupe by sequence number: a batch delivered twice and a gap give exact
//! `duplicates` and `missing`, history holds each record once, and a
//! collector restart neither re-counts nor forgets.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_gaps_survive_a_restart() {
    // The broker must outlive the collector: Mosquitto, or an embedded
    // broker started by the test rather than by the collector.
    let mosquitto = Mosquitto::if_asked().await;
    let port = match &mosquitto {
        Some(m) => m.port,
        None => {
            let port = free_port();
            picket_collector::broker::start(&picket_collector::broker::EmbeddedConfig {
                listen: ([127, 0, 0, 1], port).into(),
                max_payload: 1 << 20,
                max_connections: 100,
            })
            .expect("test broker");
            port
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(dir.path(), Some(port), "");
    let collector = Collector::start(&setup).await;
    let dev = Device::connect(collector.broker, "pi-seq", "s1").await;
    dev.birth().await;
    let batch: Vec<_> = (1..=5).map(|s| dev.sample(s, 50.0 + s as f32)).collect();
    dev.telemetry(batch.clone()).await;
    dev.telemetry(batch).await;
    // 6 and 7 never arrive (yet).
    dev.telemetry(vec![dev.sample(8, 58.0), dev.sample(9, 59.0)])
        .await;
    let s = seq(&collector, 7).await;
    assert_eq!(
        (&s["last"], &s["duplicates"], &s["missing"]),
        (&9.into(), &5.into(), &2.into()),
        "{s}"
    );
    assert_eq!(s["missing_ranges"], serde_json::json!([[6, 7]]));
    assert_eq!(points(&collector, 7).await, 7);

    collector.stop().await;
    let collector = Collector::start(&setup).await;
    let s = seq(&collector, 7).await;
    assert_eq!((&s["duplicates"], &s["missing"]), (&5.into(), &2.into()));
    // A late record fills part of the gap; an old one is a duplicate.
    dev.telemetry(vec![dev.sample(6, 56.0)]).await;
    dev.telemetry(vec![dev.sample(3, 53.0)]).await;
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
