//! Username and password (the password read from a file): accepted when
//! right, a "refused" failure when wrong.

use std::time::Duration;

use picket_agent::views::{Failure, Link};

use crate::broker::Broker;
use crate::util::{Agent, Subscriber, base_env, config};

const AUTH: crate::broker::Auth = Some(("pi-user", "s3cret pass"));

fn env_with_password(
    broker: &Broker,
    dir: &std::path::Path,
    password: &str,
) -> Vec<(&'static str, String)> {
    let file = dir.join("password");
    // A trailing newline, as an editor leaves it, is not part of the password.
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let mut env = base_env("pi-auth", &broker.url(), &dir.join("q"), "50ms");
    env.push(("PICKET_BROKER_USERNAME", "pi-user".into()));
    env.push(("PICKET_BROKER_PASSWORD_FILE", file.display().to_string()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_password_from_a_file_is_accepted() {
    let broker = Broker::start_with(AUTH).await;
    let sub = Subscriber::start_with(broker.sub_port, "auth", AUTH).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&env_with_password(
        &broker,
        dir.path(),
        "s3cret pass",
    )))
    .await;
    sub.wait_for(Duration::from_secs(30), "samples", |r| r.samples.len() >= 3)
        .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_refusal() {
    let broker = Broker::start_with(AUTH).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&env_with_password(&broker, dir.path(), "guess"))).await;
    let link = agent.link_down(Duration::from_secs(30)).await;
    let err = agent.observers.uplink.borrow().last_error.clone();
    // Mosquitto answers CONNACK "not authorised"; rumqttd 0.20 closes the
    // connection without a CONNACK, which a client can only see as the
    // broker hanging up.
    let want = if crate::broker::use_mosquitto() {
        Failure::Refused
    } else {
        Failure::Protocol
    };
    assert!(
        matches!(link, Link::Down { failure, .. } if failure == want),
        "{link:?} {err:?}"
    );
    assert!(
        agent.observers.store.borrow().stats.acked_through.is_none(),
        "nothing delivered"
    );
    agent.stop().await;
}
