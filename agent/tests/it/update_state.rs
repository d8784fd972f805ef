//! The update state an agent finds when it starts (in-process, so without
//! the launcher in front): a trial still pending for another version is
//! decided at once and its outcome reported; a damaged state file is set
//! aside. Left as they were, either would refuse every later update.

use std::path::Path;
use std::time::{Duration, Instant};

use picket_protocol::ReplyState;

use crate::broker::Broker;
use crate::util::{Agent, CommandWatch, base_env, config};

async fn wait_until(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state(dir: &Path) -> serde_json::Value {
    std::fs::read(dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_pending_for_another_version_is_rolled_back_and_reported() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let update = dir.path().join("update");
    std::fs::create_dir_all(&update).unwrap();
    let own = picket_agent::VERSION;
    // What an update to 9.9.9 leaves when 9.9.9 never takes over (the
    // launcher could not record its start, or this binary was started
    // directly).
    std::fs::write(
        update.join("state.json"),
        serde_json::json!({
            "v": 1,
            "trial": {
                "id": "c-stale",
                "to": {"version": "9.9.9", "file": "picket-agent-9.9.9"},
                "from": own,
                "starts": []
            }
        })
        .to_string(),
    )
    .unwrap();
    let device = "pi-stale-trial";
    let watch = CommandWatch::replies_to(broker.sub_port, device, "c-stale").await;
    let mut env = base_env(device, &broker.url(), &dir.path().join("q"), "100ms");
    env.push(("PICKET_UPDATE_DIR", update.display().to_string()));
    let agent = Agent::start(config(&env)).await;

    let reply = watch
        .wait_for(Duration::from_secs(30), "the outcome", |r| {
            r.state != ReplyState::Running
        })
        .await;
    assert_eq!(reply.state, ReplyState::Failed, "{reply:?}");
    assert_eq!(
        reply.reason.as_deref(),
        Some(
            format!(
                "rolled back to {own}: {own} is running instead of 9.9.9 \
                 (the new version did not take over)"
            )
            .as_str()
        )
    );
    wait_until(Duration::from_secs(10), "the report forgotten", || {
        let s = state(&update);
        s["trial"].is_null() && s["report"].is_null()
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_file_is_set_aside() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let update = dir.path().join("update");
    std::fs::create_dir_all(&update).unwrap();
    std::fs::write(update.join("state.json"), "{\"v\":1,\"trial\":").unwrap();
    let mut env = base_env("pi-damaged", &broker.url(), &dir.path().join("q"), "100ms");
    env.push(("PICKET_UPDATE_DIR", update.display().to_string()));
    let agent = Agent::start(config(&env)).await;
    wait_until(Duration::from_secs(10), "the file set aside", || {
        update.join("state.json.damaged").exists()
    })
    .await;
    assert!(!update.join("state.json").exists());
    assert_eq!(
        std::fs::read_to_string(update.join("state.json.damaged")).unwrap(),
        "{\"v\":1,\"trial\":"
    );
    agent.stop().await;
}
