//! Every command's success path through the API, and `send --wait`.

use serde_json::json;

use super::stack::{Stack, reason, states};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_succeeds_through_its_executor() {
    let mut s = Stack::start("pi-run", "").await;
    s.agent_env(&[
        (
            "PICKET_COMMANDS_ALLOWED",
            "ping,system.info,system.reboot,service.restart,service.logs",
        ),
        ("PICKET_COMMANDS_SERVICES", "kiosk.service"),
    ]);
    s.agent_online().await;

    let ping = s.run("ping", json!({})).await;
    assert_eq!(ping["state"], "succeeded", "{ping}");
    assert_eq!(states(&ping), ["accepted", "running", "succeeded"]);
    assert_eq!(ping["output"], "pong");
    assert_eq!(ping["source"], "api");

    let info = s.run("system.info", json!({})).await;
    assert_eq!(info["state"], "succeeded", "{info}");
    let report: serde_json::Value =
        serde_json::from_str(info["output"].as_str().unwrap()).expect("system.info is JSON");
    assert_eq!(report["device"], "pi-run");
    assert_eq!(report["arch"], std::env::consts::ARCH);
    assert!(report["kernel"].is_string(), "{report}");
    assert!(report["metrics"]["mem"].is_object(), "{report}");

    let restart = s
        .run("service.restart", json!({"unit": "kiosk.service"}))
        .await;
    assert_eq!(restart["state"], "succeeded", "{restart}");
    assert_eq!(s.calls("systemctl"), ["restart -- kiosk.service"]);

    let logs = s
        .run("service.logs", json!({"unit": "kiosk.service", "lines": 3}))
        .await;
    assert_eq!(logs["state"], "succeeded", "{logs}");
    assert_eq!(
        s.calls("journalctl"),
        ["--unit=kiosk.service --lines=3 --no-pager --output=short-iso --quiet"]
    );
    assert_eq!(
        logs["output"],
        "line 1 of the kiosk journal\nline 2 of the kiosk journal\nline 3 of the kiosk journal\n"
    );

    let reboot = s.run("system.reboot", json!({"delay": 0})).await;
    assert_eq!(reboot["state"], "succeeded", "{reboot}");
    assert_eq!(s.calls("reboot").len(), 1);
    // At most one per window: the second fails and does not run.
    let again = s.run("system.reboot", json!({})).await;
    assert_eq!(again["state"], "failed", "{again}");
    assert!(reason(&again, "failed").contains("at most one"), "{again}");
    assert_eq!(s.calls("reboot").len(), 1);

    s.stop_agent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_comes_in_ordered_chunks() {
    let mut s = Stack::start("pi-chunks", "").await;
    // A journal of 4,000 lines: more than one 8 KiB chunk, less than the
    // 64 KiB bound.
    let script = "#!/bin/sh\ni=0; while [ $i -lt 4000 ]; do i=$((i+1)); echo \"line $i\"; done\n";
    let big = s.path("bigjournal");
    std::fs::write(&big, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o755)).unwrap();
    let big = big.display().to_string();
    s.agent_env(&[
        ("PICKET_COMMANDS_ALLOWED", "service.logs"),
        ("PICKET_COMMANDS_SERVICES", "kiosk.service"),
        ("PICKET_COMMANDS_JOURNALCTL", &big),
    ]);
    s.agent_online().await;
    let logs = s
        .run(
            "service.logs",
            json!({"unit": "kiosk.service", "lines": 4000}),
        )
        .await;
    assert_eq!(logs["state"], "succeeded");
    let want: String = (1..=4000).map(|i| format!("line {i}\n")).collect();
    assert_eq!(logs["output"].as_str().unwrap(), want);
    let chunks: Vec<u64> = logs["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["chunk"].as_u64())
        .collect();
    assert!(chunks.len() >= 3, "{chunks:?}");
    assert_eq!(chunks, (0..chunks.len() as u64).collect::<Vec<_>>());
    s.stop_agent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_prints_every_status() {
    let mut s = Stack::start("pi-send", "").await;
    s.agent_online().await;
    let cfg = s.path("collector.toml");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_picket-collector"))
            .arg("--config")
            .arg(cfg)
            .args(["send", "pi-send", "ping", "--ttl", "30s", "--wait"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("command ") && lines[0].ends_with("sent to pi-send"),
        "{text}"
    );
    let tail: Vec<&str> = lines[1..]
        .iter()
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .map_or(*l, |w| w.trim_end_matches(':'))
        })
        .collect();
    assert_eq!(tail, ["accepted", "running", "succeeded", "pong"], "{text}");

    // A refused command: exit code 1, the reason printed.
    let cfg = s.path("collector.toml");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_picket-collector"))
            .arg("--config")
            .arg(cfg)
            .args(["send", "pi-send", "system.reboot", "--wait"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("rejected: not allowed: system.reboot"),
        "{text}"
    );
    s.stop_agent();
}
