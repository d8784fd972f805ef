//! Docker end to end: a real engine (see the agent's `dockerd.rs`), a real
//! broker, a `picket-collector` and a `picket-agent` process. A container's
//! process killed from outside the engine, as a crash or the OOM killer
//! would end it, becomes a state event and a critical alert at once;
//! started again through the API, the alert resolves.
//!
//! The agent binary must have Docker support: `cargo test --workspace`
//! builds it so; `.ci/run` builds it with `--features docker`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::commands::stack::Stack;
use crate::dockerd::{Engine, unique};

const IDLE: &str = "trap 'exit 0' TERM; while :; do sleep 0.2; done";

async fn wait_device(stack: &Stack, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/devices/{}", stack.device);
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = stack.get(&path).await;
        if status == 200 && cond(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}: {body}\nagent log:\n{}",
            stack.log("agent.log")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine; set PICKET_TEST_DOCKER_SOCKET"]
async fn a_killed_container_is_a_critical_alert_and_resolves_when_started() {
    let engine = Engine::shared();
    let label = unique("e2e");
    let name = unique("pk-e2e");
    engine
        .run(&name, &[&format!("picket.test={label}")], IDLE)
        .await;
    let device = unique("pi-docker");
    let mut stack = Stack::start(&device, "").await;
    let socket = engine.socket.display().to_string();
    let label_kv = format!("picket.test={label}");
    stack.agent_env(&[
        ("PICKET_DOCKER_ENABLED", "true"),
        ("PICKET_DOCKER_SOCKET", &socket),
        ("PICKET_DOCKER_LABEL", &label_kv),
        ("PICKET_COMMANDS_ALLOWED", "docker.start,docker.list"),
    ]);
    stack.agent_online().await;
    let up = format!("container.up:{name}");
    wait_device(&stack, "the container running", |d| d["latest"][&up] == 1.0).await;

    engine.kill_process(&name).await;
    let rule = format!("container_exited:{name}");
    let d = wait_device(&stack, "a critical alert", |d| {
        d["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["rule"] == rule.as_str()))
    })
    .await;
    let alert = d["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == rule.as_str())
        .unwrap();
    assert_eq!(alert["severity"], "critical", "{alert}");
    assert_eq!(
        alert["message"],
        format!("container {name} exited unexpectedly")
    );
    let (_, alerts) = stack.get("/api/alerts").await;
    assert!(
        alerts["active"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["device"] == device.as_str() && a["rule"] == rule.as_str()),
        "{alerts}"
    );
    // The event that carried it is in the history.
    let (_, events) = stack
        .get(&format!("/api/devices/{device}/events?from=-1h"))
        .await;
    let container_events: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "container")
        .collect();
    assert!(
        container_events
            .iter()
            .any(|e| e["body"]["state"] == "exited" && e["body"]["unexpected"] == true),
        "{events}"
    );

    let view = stack.run("docker.start", json!({"container": name})).await;
    assert_eq!(view["state"], "succeeded", "{view}");
    wait_device(&stack, "the alert resolved", |d| {
        d["alerts"].as_array().is_some_and(|a| a.is_empty()) && d["latest"][&up] == 1.0
    })
    .await;

    stack.stop_agent();
}
