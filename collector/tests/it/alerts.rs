//! End to end: a device overheats → one critical alert, one webhook, one
//! e-mail, the retained alert topic set; it cools → resolved; it flaps
//! inside the cooldown → silence.

use std::time::Duration;

use crate::harness::{Collector, Device, Mosquitto, Setup, Watcher};
use crate::http_sink::HttpSink;
use crate::smtp_sink::SmtpSink;

/// Samples at `temp` every 100 ms for `ms` milliseconds, from `seq`.
async fn hold(dev: &Device, seq: &mut u64, temp: f32, ms: u64) {
    let end = tokio::time::Instant::now() + Duration::from_millis(ms);
    while tokio::time::Instant::now() < end {
        *seq += 1;
        dev.telemetry(vec![dev.sample(*seq, temp)]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn retained_alert(w: &Watcher, device: &str) -> Option<Vec<u8>> {
    let topic = format!("picket/v1/{device}/alert");
    w.messages()
        .into_iter()
        .rev()
        .find(|(t, _, _)| *t == topic)
        .map(|(_, p, _)| p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overheat_alerts_once_resolves_and_flaps_silently() {
    let mosquitto = Mosquitto::if_asked().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = HttpSink::start(&[]).await;
    let smtp = SmtpSink::start(Some(("picket", "s3cret")), "PLAIN LOGIN").await;
    let secret = dir.path().join("smtp-password");
    std::fs::write(&secret, "s3cret\n").expect("write secret");
    let extra = format!(
        "[webhook]\nurl = \"{}\"\n\
         [email]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\nusername = \"picket\"\n\
         password_file = \"{}\"\nfrom = \"picket@example.org\"\nto = [\"ops@example.org\"]\n\
         [[labels]]\ndevices = \"club-*\"\nlabels = {{ club = \"CESSON\" }}\n\
         [[rules]]\nname = \"temperature\"\nfor = \"1s\"\n",
        hook.url,
        smtp.port,
        secret.display()
    );
    let setup = Setup::new(dir.path(), mosquitto.as_ref().map(|m| m.port), &extra);
    let collector = Collector::start(&setup).await;
    let watcher = Watcher::start(collector.broker, "picket/v1/+/alert").await;

    let dev = Device::connect(collector.broker, "club-cesson-01", "s1").await;
    dev.birth().await;
    let mut seq = 0;
    hold(&dev, &mut seq, 60.0, 300).await;
    // Above 80 °C for longer than `for` (1 s): critical.
    hold(&dev, &mut seq, 85.0, 1_800).await;
    let hooks = hook.wait_for(1, Duration::from_secs(10)).await;
    let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
    let h = &hooks[0].json;
    assert_eq!(h["device"], "club-cesson-01");
    assert_eq!(h["labels"]["club"], "CESSON");
    assert_eq!(h["alert"]["rule"], "temperature");
    assert_eq!(h["alert"]["severity"], "critical");
    assert_eq!(h["alert"]["state"], "firing");
    assert_eq!(h["alert"]["value"], 85.0);
    assert!(
        h["text"]
            .as_str()
            .is_some_and(|t| t.contains("[picket CRITICAL] club-cesson-01"))
    );
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("[picket CRITICAL] club-cesson-01 - temperature")
    );
    assert_eq!(mails[0].rcpt, ["ops@example.org"]);
    let (_, alerts) = collector.get("/api/alerts", None).await;
    assert_eq!(alerts["active"][0]["rule"], "temperature");
    assert_eq!(alerts["active"][0]["severity"], "critical");
    crate::harness::until(Duration::from_secs(5), "the retained alert set", || {
        retained_alert(&watcher, "club-cesson-01").is_some_and(|p| !p.is_empty())
    })
    .await;
    let set: picket_protocol::AlertSet = picket_protocol::decode(
        &retained_alert(&watcher, "club-cesson-01").expect("alert set"),
        1 << 20,
    )
    .expect("decodable alert set");
    assert_eq!(set.alerts.len(), 1);
    assert_eq!(set.alerts[0].severity, picket_protocol::Severity::Critical);

    // Below the clear point (80 − 2 hysteresis, and under the warning):
    // resolved, once, on both channels; the retained set is cleared.
    hold(&dev, &mut seq, 60.0, 300).await;
    let hooks = hook.wait_for(2, Duration::from_secs(10)).await;
    let mails = smtp.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(hooks[1].json["alert"]["state"], "resolved");
    assert_eq!(
        mails[1].header("Subject").as_deref(),
        Some("[picket RESOLVED] club-cesson-01 - temperature")
    );
    crate::harness::until(Duration::from_secs(5), "the alert topic cleared", || {
        retained_alert(&watcher, "club-cesson-01").is_some_and(|p| p.is_empty())
    })
    .await;

    // Flapping inside the 1 h cooldown: the alert fires and clears again,
    // but nobody is notified a second time.
    hold(&dev, &mut seq, 85.0, 1_500).await;
    collector
        .wait_device("club-cesson-01", "the alert back", |d| {
            d["alerts"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    hold(&dev, &mut seq, 60.0, 300).await;
    collector
        .wait_device("club-cesson-01", "the alert cleared", |d| {
            d["alerts"].as_array().is_some_and(|a| a.is_empty())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hook.received().len(),
        2,
        "no notification inside the cooldown"
    );
    assert_eq!(smtp.mails().len(), 2, "no e-mail inside the cooldown");
    // The alert log is in SQLite, one commit behind the live view.
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    let resolved = loop {
        let (_, log) = collector.get("/api/alerts?state=resolved", None).await;
        let n = log["resolved"].as_array().map_or(0, Vec::len);
        if n >= 2 || tokio::time::Instant::now() > end {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(resolved, 2);
    collector.stop().await;
}
