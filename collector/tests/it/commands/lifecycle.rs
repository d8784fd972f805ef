//! Commands across the agent's life: duplicates before and after SIGKILL,
//! a device offline within and beyond the ttl, timeouts and shutdown, and
//! config.update with and without rollback.

use picket_protocol::{Action, Format, UnitArgs, encode};
use serde_json::json;

use super::stack::{Publisher, Stack, reason, states};

fn restart() -> Action {
    Action::ServiceRestart(UnitArgs {
        unit: "kiosk.service".into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_envelope_runs_once_even_across_sigkill() {
    let mut s = Stack::start("pi-dup", "").await;
    s.agent_env(&[
        ("PICKET_COMMANDS_ALLOWED", "service.restart"),
        ("PICKET_COMMANDS_SERVICES", "kiosk.service"),
    ]);
    s.agent_online().await;
    let publisher = Publisher::connect(s.broker).await;
    let c = s.envelope(restart(), |_| {});
    let payload = encode(&c, Format::Cbor).unwrap();
    let topic = s.cmd_topic(&c.id);
    publisher.publish(&topic, payload.clone(), false).await;
    publisher.publish(&topic, payload.clone(), false).await;
    let want_two = |v: &serde_json::Value| states(v).iter().filter(|s| *s == "rejected").count();
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let view = loop {
        let (_, v) = s.get(&format!("/api/commands/{}", c.id)).await;
        if v["statuses"].is_array()
            && want_two(&v) == 1
            && states(&v).contains(&"succeeded".to_string())
        {
            break v;
        }
        assert!(tokio::time::Instant::now() < end, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    };
    assert!(reason(&view, "rejected").starts_with("duplicate"), "{view}");
    assert_eq!(s.calls("systemctl").len(), 1);

    // SIGKILL, restart, same envelope again: still a duplicate.
    s.kill_agent();
    s.agent_online().await;
    publisher.publish(&topic, payload, false).await;
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, v) = s.get(&format!("/api/commands/{}", c.id)).await;
        if want_two(&v) == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < end, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    assert_eq!(s.calls("systemctl").len(), 1, "ran again after SIGKILL");
    s.stop_agent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_runs_a_command_within_its_ttl_and_refuses_it_after() {
    let mut s = Stack::start("pi-away", "").await;
    s.agent_env(&[
        ("PICKET_COMMANDS_ALLOWED", "service.restart"),
        ("PICKET_COMMANDS_SERVICES", "kiosk.service"),
    ]);
    // Online once, so the broker holds a persistent session with the
    // command subscription.
    s.agent_online().await;
    s.stop_agent();

    let within = s
        .send("service.restart", json!({"unit": "kiosk.service"}), "5m")
        .await;
    let (_, v) = s.get(&format!("/api/commands/{within}")).await;
    assert_eq!(v["statuses"], json!([]), "nothing can answer yet: {v}");
    s.agent_online().await;
    let v = s.settled(&within).await;
    assert_eq!(states(&v), ["accepted", "running", "succeeded"], "{v}");
    assert_eq!(s.calls("systemctl").len(), 1);
    s.stop_agent();

    let short = s
        .send("service.restart", json!({"unit": "kiosk.service"}), "1s")
        .await;
    let (_, v) = s.get(&format!("/api/commands/{short}")).await;
    let expires = v["expires"].as_u64().unwrap();
    while crate::harness::now_ms() <= expires + 200 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    s.agent_online().await;
    let v = s.settled(&short).await;
    assert_eq!(states(&v), ["rejected"], "{v}");
    assert!(reason(&v, "rejected").starts_with("expired"), "{v}");
    assert_eq!(s.calls("systemctl").len(), 1, "the expired command ran");
    s.stop_agent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_shutdown_end_running_commands_with_a_reason() {
    let mut s = Stack::start("pi-slow", "").await;
    let slow = s.path("slow");
    std::fs::write(&slow, "#!/bin/sh\nsleep 120\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let slow = slow.display().to_string();
    let env = |timeout| {
        vec![
            ("PICKET_COMMANDS_ALLOWED", "service.restart,ping"),
            ("PICKET_COMMANDS_SERVICES", "kiosk.service"),
            ("PICKET_COMMANDS_SYSTEMCTL", slow.as_str()),
            ("PICKET_COMMANDS_TIMEOUT", timeout),
            ("PICKET_COMMANDS_CONCURRENCY", "1"),
        ]
    };
    s.agent_env(&env("2s"));
    s.agent_online().await;
    let timed = s
        .run("service.restart", json!({"unit": "kiosk.service"}))
        .await;
    assert_eq!(timed["state"], "failed", "{timed}");
    assert!(reason(&timed, "failed").contains("timed out"), "{timed}");
    s.stop_agent();
    s.agent_env(&env("10m"));
    s.agent_online().await;

    // Concurrency 1: a ping waits (accepted) behind a slow command, and
    // both end when the agent stops.
    let first = s
        .send("service.restart", json!({"unit": "kiosk.service"}), "60s")
        .await;
    let second = s.send("ping", json!({}), "60s").await;
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, a) = s.get(&format!("/api/commands/{first}")).await;
        let (_, b) = s.get(&format!("/api/commands/{second}")).await;
        if states(&a).contains(&"running".to_string()) && states(&b) == ["accepted"] {
            break;
        }
        assert!(tokio::time::Instant::now() < end, "{a}\n{b}");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    s.stop_agent();
    for id in [&first, &second] {
        let v = s.settled(id).await;
        assert_eq!(v["state"], "failed", "{v}");
        assert!(reason(&v, "failed").contains("stopping"), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_update_keeps_a_working_config_and_rolls_back_a_broken_one() {
    let mut s = Stack::start("pi-config", "").await;
    let cfg = s.path("agent.toml");
    let original = format!(
        "[broker]\nurl = \"{}\"\n[commands]\nallowed = [\"config.update\", \"ping\"]\n",
        s.broker_url()
    );
    std::fs::write(&cfg, &original).unwrap();
    s.agent_config = Some(cfg.clone());
    s.agent_env(&[("PICKET_COMMANDS_CONFIG_ROLLBACK_AFTER", "5s")]);
    s.agent_online().await;
    let pid = s.agent.as_ref().unwrap().0.id();

    // Invalid: refused before anything is written.
    let bad = s
        .run(
            "config.update",
            json!({"toml": format!("{original}[uplink]\ninflight = 1000\n")}),
        )
        .await;
    assert_eq!(bad["state"], "rejected", "{bad}");
    assert!(
        reason(&bad, "rejected").contains("uplink.inflight"),
        "{bad}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), original);

    // A working change: the agent restarts onto it and says so.
    let good_text = format!("{original}[sampling]\ninterval = \"1s\"\n");
    let good = s.run("config.update", json!({"toml": good_text})).await;
    assert_eq!(good["state"], "succeeded", "{good}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), good_text);
    assert_eq!(
        s.agent.as_ref().unwrap().0.id(),
        pid,
        "restarted in place (exec), same process"
    );
    let ping = s.run("ping", json!({})).await;
    assert_eq!(
        ping["state"], "succeeded",
        "commands work after the restart"
    );

    // A broker nobody listens on: rolled back, reported failed.
    let dead = crate::harness::free_port();
    let broken = good_text.replace(&s.broker_url(), &format!("mqtt://127.0.0.1:{dead}"));
    let r = s.run("config.update", json!({"toml": broken})).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        reason(&r, "failed").contains("previous configuration was restored"),
        "{r}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), good_text);
    let ping = s.run("ping", json!({})).await;
    assert_eq!(ping["state"], "succeeded");
    s.stop_agent();
}
