//! `picket-collector update` over five devices in batches of two, where
//! the second batch fails: its two devices only accept agent binaries of
//! up to 1 MiB (`update.max_bytes`), and version B is larger. The rollout
//! stops after that batch; the fifth device is never sent the update.

use std::process::Command;

use super::{A, B, World};

const COLLECTOR: &str = env!("CARGO_BIN_EXE_picket-collector");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_rollout_stops_when_the_second_batch_fails() {
    let w = World::start("pi-roll-0").await;
    let broker = w.stack.broker_url();
    let mut devices = Vec::new();
    for i in 1..=5 {
        let small = [("PICKET_UPDATE_MAX_BYTES", "1MiB")];
        let extra: &[(&str, &str)] = if i == 3 || i == 4 { &small } else { &[] };
        devices.push(w.device(&format!("pi-roll-{i}"), &broker, extra).await);
    }
    let config = w.stack.path("collector.toml");
    let url = w.url("/b");
    let builds = w.builds;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(COLLECTOR)
            .arg("--config")
            .arg(&config)
            .args(["update", "--to", B, "--artifact"])
            .arg(&builds.b)
            .args(["--url", &url, "--devices", "pi-roll-*", "--batch", "2"])
            .args(["--max-failed", "20", "--ttl", "60s", "--timeout", "120s"])
            .output()
            .expect("run picket-collector update")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("picket-collector update:\n{text}");
    let logs: String = devices.iter().map(|d| d.log()).collect();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stopped rollouts exit 1\n{text}\n{}\n{logs}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "batch 1/3: pi-roll-1, pi-roll-2",
        "  pi-roll-1: committed",
        "  pi-roll-2: committed",
        "batch 2/3: pi-roll-3, pi-roll-4",
        "stopping: 2 of 4 devices failed, more than 20%",
        "rollout of 1.1.0 stopped: 2 committed, 2 failed, 1 not started, 0 skipped",
    ] {
        assert!(
            text.contains(want),
            "{want:?} missing from:\n{text}\n{logs}"
        );
    }
    for d in ["pi-roll-3", "pi-roll-4"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("  {d}: failed")))
            .unwrap_or_else(|| panic!("no failure line for {d}:\n{text}"));
        assert!(
            line.contains("more than update.max_bytes (1048576)"),
            "{line}"
        );
    }
    assert!(!text.contains("batch 3/3"), "{text}");
    assert!(!text.contains("pi-roll-5"), "{text}");

    // The outcome per device, in the API: the command of each device that
    // got one, and the versions.
    for d in &devices[..4] {
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("  {}: sent (command ", d.id)))
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("no command for {}:\n{text}", d.id))
            .to_string();
        let (_, view) = w.stack.get(&format!("/api/commands/{id}")).await;
        let want = if d.id.as_str() <= "pi-roll-2" {
            "succeeded"
        } else {
            "failed"
        };
        assert_eq!(view["state"], want, "{}: {view}", d.id);
        assert_eq!(view["name"], "agent.update");
    }
    for (d, version) in devices.iter().zip([B, B, A, A, A]) {
        w.wait_version(d, version).await;
        assert_eq!(d.sup.starts(), 1, "{}", d.id);
    }
    for d in devices {
        d.sup.stop();
    }
}
