//! The agent reading a Raspberry Pi 4 fixture tree as its host root: what a
//! collector receives carries the decoded values.

use std::path::PathBuf;
use std::time::Duration;

use crate::broker::Broker;
use crate::util::{Agent, Subscriber, base_env, config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pi4_fixture_is_reported_decoded() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pi4");
    let broker = Broker::start().await;
    let sub = Subscriber::start(broker.sub_port, "pi4").await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env("unused", &broker.url(), dir.path(), "50ms");
    // No device id configured: it comes from the fixture's serial number.
    env.retain(|(k, _)| *k != "PICKET_DEVICE_ID");
    env.push(("PICKET_HOST_ROOT", root.display().to_string()));
    let cfg = config(&env);
    assert_eq!(cfg.device.as_str(), "10000000a1b2c3d4");
    let agent = Agent::start(cfg).await;
    sub.wait_for(Duration::from_secs(30), "two samples", |r| {
        r.samples.len() >= 2
    })
    .await;
    agent.stop().await;

    let r = sub.snapshot();
    let s = &r.samples[1];
    let thermal = &s.thermal[0];
    assert_eq!(
        (thermal.zone.as_str(), thermal.kind.as_str()),
        ("thermal_zone0", "cpu-thermal")
    );
    assert!((thermal.c - 48.312).abs() < 1e-3);
    let t = s.throttle.expect("throttle decoded");
    assert_eq!(t.raw, Some(0x50005));
    assert!(t.uv && t.throttled && t.uv_boot && t.throttled_boot);
    assert!(!t.capped && !t.soft_temp && !t.capped_boot && !t.soft_temp_boot);
    assert!(s.net.iter().all(|n| n.name != "lo"));
    let birth = r
        .states
        .iter()
        .find(|st| {
            st.device.as_str() == "10000000a1b2c3d4"
                && st.status == picket_protocol::Presence::Online
        })
        .unwrap_or_else(|| panic!("birth among {:?}", r.states));
    assert_eq!(
        birth.model.as_deref(),
        Some("Raspberry Pi 4 Model B Rev 1.4")
    );
}
