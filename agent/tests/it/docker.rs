//! Docker end to end: the agent in-process against a real broker and a real
//! Docker engine (see `dockerd.rs`), its samples and events read from the
//! broker, its `docker.*` commands sent over MQTT like a collector's.
//!
//! Ignored without an engine: `.ci/run` starts one and runs them with
//! `--ignored`; without `PICKET_TEST_DOCKER_SOCKET` they fail, never pass.

use std::time::Duration;

use picket_protocol::{
    Action, ContainerArgs, ContainerState, DockerExecArgs, DockerLogsArgs, DockerStatsArgs,
    Engine as EngineState, EventKind, NoArgs, Reply, ReplyState, Sample, StopArgs,
};

use crate::broker::Broker;
use crate::dockerd::{Engine, unique};
use crate::util::{
    Agent, Received, Subscriber, base_env, command, command_replies, config_text, output,
};

const WAIT: Duration = Duration::from_secs(60);

const ALL_DOCKER: &str = "docker.list,docker.inspect,docker.start,docker.stop,docker.restart,\
                          docker.logs,docker.stats,docker.exec";

/// A container that stops at once on SIGTERM (PID 1 has no default
/// signal handlers), so `docker stop` does not wait for its timeout.
const IDLE: &str = "trap 'exit 0' TERM; while :; do sleep 0.2; done";

struct Setup {
    broker: Broker,
    agent: Agent,
    sub: Subscriber,
    device: String,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start(engine: &Engine, label: &str, toml: &str, extra: &[(&str, String)]) -> Setup {
        let broker = Broker::start().await;
        let dir = tempfile::tempdir().unwrap();
        let device = unique("pi-docker");
        let mut env = base_env(&device, &broker.url(), &dir.path().join("q"), "200ms");
        env.extend([
            ("PICKET_DOCKER_ENABLED", "true".to_string()),
            ("PICKET_DOCKER_SOCKET", engine.socket.display().to_string()),
            ("PICKET_DOCKER_LABEL", format!("picket.test={label}")),
            ("PICKET_DOCKER_RETRY_MAX", "1s".to_string()),
            ("PICKET_COMMANDS_ALLOWED", ALL_DOCKER.to_string()),
        ]);
        env.extend(extra.iter().cloned());
        let sub = Subscriber::start(broker.sub_port, &device).await;
        let agent = Agent::start(config_text(toml, &env)).await;
        Setup {
            broker,
            agent,
            sub,
            device,
            _dir: dir,
        }
    }

    async fn send(&self, action: Action) -> Reply {
        command(self.broker.sub_port, &self.device, action).await
    }

    async fn send_all(&self, action: Action) -> Vec<Reply> {
        command_replies(self.broker.sub_port, &self.device, action, WAIT).await
    }

    /// Wait for a sample arriving from now on that satisfies `cond`.
    async fn wait_sample(&self, what: &str, cond: impl Fn(&Sample) -> bool) -> Sample {
        let from = self.sub.snapshot().samples.len();
        self.sub
            .wait_for(WAIT, what, |r: &Received| {
                r.samples[from..].iter().any(&cond)
            })
            .await;
        let r = self.sub.snapshot();
        r.samples[from..].iter().find(|s| cond(s)).cloned().unwrap()
    }

    async fn wait_event(&self, what: &str, cond: impl Fn(&EventKind) -> bool) -> EventKind {
        self.sub
            .wait_for(WAIT, what, |r: &Received| {
                r.events.iter().any(|e| cond(&e.kind))
            })
            .await;
        let r = self.sub.snapshot();
        r.events
            .iter()
            .find(|e| cond(&e.kind))
            .map(|e| e.kind.clone())
            .unwrap()
    }
}

fn has(s: &Sample, name: &str, state: ContainerState) -> bool {
    s.containers
        .iter()
        .any(|c| c.name == name && c.state == state)
}

fn container_event(name: &str, state: ContainerState) -> impl Fn(&EventKind) -> bool + '_ {
    move |k| matches!(k, EventKind::Container { name: n, state: s, .. } if n == name && *s == state)
}

fn container(name: &str) -> ContainerArgs {
    ContainerArgs {
        container: name.to_string(),
    }
}

fn stop_args(name: &str) -> StopArgs {
    StopArgs {
        container: name.to_string(),
        timeout: Some(5),
    }
}

fn assert_state(r: &Reply, state: ReplyState) {
    assert_eq!(r.state, state, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine; set PICKET_TEST_DOCKER_SOCKET"]
async fn samples_show_the_scope_and_a_killed_container_is_an_unexpected_exit() {
    let engine = Engine::shared();
    let label = unique("samples");
    let (a, out) = (unique("pk-a"), unique("pk-out"));
    engine
        .run(&a, &[&format!("picket.test={label}")], IDLE)
        .await;
    engine.run(&out, &["picket.test=someone-else"], IDLE).await;
    let t = Setup::start(&engine, &label, "", &[]).await;

    let s = t
        .wait_sample("a sample with the container", |s| {
            has(s, &a, ContainerState::Running)
        })
        .await;
    assert_eq!(s.docker, Some(EngineState::Available));
    assert!(
        s.containers.iter().all(|c| c.name != out),
        "a container outside the scope is invisible: {:?}",
        s.containers
    );
    let c = s.containers.iter().find(|c| c.name == a).unwrap();
    assert_eq!(c.image, engine.image);
    assert!(c.started.is_some() && c.exit_code.is_none(), "{c:?}");
    assert_eq!(c.id.len(), 12);

    // Killed from outside the engine, as a crash or the OOM killer would.
    engine.kill_process(&a).await;
    let e = t
        .wait_event(
            "the exit event",
            container_event(&a, ContainerState::Exited),
        )
        .await;
    match e {
        EventKind::Container {
            unexpected,
            exit_code,
            old_state,
            ..
        } => {
            assert_eq!(unexpected, Some(true));
            assert_eq!(exit_code, Some(137));
            assert_eq!(old_state, Some(ContainerState::Running));
        }
        other => panic!("{other:?}"),
    }
    let s = t
        .wait_sample("a sample with the exit", |s| {
            has(s, &a, ContainerState::Exited)
        })
        .await;
    let c = s.containers.iter().find(|c| c.name == a).unwrap();
    assert_eq!((c.unexpected, c.exit_code), (Some(true), Some(137)));

    // Started again through picket, then stopped through picket: asked
    // for, so not unexpected.
    assert_state(
        &t.send(Action::DockerStart(container(&a))).await,
        ReplyState::Succeeded,
    );
    t.wait_sample("running again", |s| has(s, &a, ContainerState::Running))
        .await;
    assert_state(
        &t.send(Action::DockerStop(stop_args(&a))).await,
        ReplyState::Succeeded,
    );
    t.sub
        .wait_for(WAIT, "an expected exit", |r| {
            r.events
                .iter()
                .filter(|e| container_event(&a, ContainerState::Exited)(&e.kind))
                .any(|e| {
                    matches!(
                        e.kind,
                        EventKind::Container {
                            unexpected: Some(false),
                            ..
                        }
                    )
                })
        })
        .await;

    t.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine; set PICKET_TEST_DOCKER_SOCKET"]
async fn commands_list_inspect_start_stop_restart_real_containers() {
    let engine = Engine::shared();
    let label = unique("cmds");
    let (a, out) = (unique("pk-a"), unique("pk-out"));
    engine
        .run(&a, &[&format!("picket.test={label}")], IDLE)
        .await;
    engine.run(&out, &[], IDLE).await;
    let t = Setup::start(&engine, &label, "", &[]).await;
    t.wait_sample("the container", |s| has(s, &a, ContainerState::Running))
        .await;

    let r = t.send(Action::DockerList(NoArgs {})).await;
    assert_state(&r, ReplyState::Succeeded);
    let list: serde_json::Value = serde_json::from_str(r.output.as_deref().unwrap()).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [a.as_str()], "only the container in scope");
    assert_eq!(list[0]["state"], "running");

    let replies = t.send_all(Action::DockerInspect(container(&a))).await;
    assert_state(replies.last().unwrap(), ReplyState::Succeeded);
    let full: serde_json::Value = serde_json::from_str(&output(&replies)).unwrap();
    assert_eq!(full["Name"], format!("/{a}"));
    assert_eq!(full["Config"]["Labels"]["picket.test"], label);
    assert_eq!(full["HostConfig"]["NetworkMode"], "none");

    let r = t.send(Action::DockerStop(stop_args(&a))).await;
    assert_state(&r, ReplyState::Succeeded);
    assert!(r.output.as_deref().unwrap().contains("exited"), "{r:?}");
    assert_eq!(engine.inspect(&a, "{{.State.Status}}").await, "exited");

    let r = t.send(Action::DockerStart(container(&a))).await;
    assert_state(&r, ReplyState::Succeeded);
    assert_eq!(engine.inspect(&a, "{{.State.Status}}").await, "running");

    let before = engine.inspect(&a, "{{.State.StartedAt}}").await;
    let r = t.send(Action::DockerRestart(stop_args(&a))).await;
    assert_state(&r, ReplyState::Succeeded);
    assert_eq!(engine.inspect(&a, "{{.State.Status}}").await, "running");
    assert_ne!(engine.inspect(&a, "{{.State.StartedAt}}").await, before);

    // Outside the scope: refused, and untouched.
    for action in [
        Action::DockerStop(stop_args(&out)),
        Action::DockerInspect(container(&out)),
        Action::DockerStart(container(&out)),
    ] {
        let r = t.send(action).await;
        assert_state(&r, ReplyState::Rejected);
        assert!(
            r.reason.as_deref().unwrap().contains("no container"),
            "{r:?}"
        );
    }
    assert_eq!(engine.inspect(&out, "{{.State.Status}}").await, "running");

    // Illegal characters: refused by the argument check, before the
    // device checks and before any request to the engine.
    for bad in [
        format!("{a};true"),
        format!("../{a}"),
        format!("{a}/stop?t=0"),
        String::new(),
    ] {
        let r = t.send(Action::DockerStop(stop_args(&bad))).await;
        assert_state(&r, ReplyState::Rejected);
        let reason = r.reason.unwrap();
        assert!(reason.starts_with("invalid arguments"), "{reason}");
        assert!(reason.contains("is not a container name"), "{reason}");
    }
    assert_eq!(engine.inspect(&a, "{{.State.Status}}").await, "running");

    t.agent.stop().await;
}

/// The numbers in `text`'s `line N` lines, in order.
fn line_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            l.rsplit_once("line ")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .collect()
}

fn consecutive(v: &[u64]) -> bool {
    v.windows(2).all(|w| w[1] == w[0] + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine; set PICKET_TEST_DOCKER_SOCKET"]
async fn logs_tail_and_follow_return_the_lines_in_order() {
    let engine = Engine::shared();
    let label = unique("logs");
    let a = unique("pk-logs");
    let script = "i=1; while [ $i -le 20 ]; do echo line $i; i=$((i+1)); done; \
                  while :; do echo line $i; i=$((i+1)); sleep 0.1; done";
    engine
        .run(&a, &[&format!("picket.test={label}")], script)
        .await;
    let t = Setup::start(&engine, &label, "", &[]).await;
    t.wait_sample("the container", |s| has(s, &a, ContainerState::Running))
        .await;
    let logs_since = |tail, since, follow, duration, max_bytes, timestamps| {
        Action::DockerLogs(DockerLogsArgs {
            container: a.clone(),
            tail,
            since,
            timestamps,
            follow,
            duration,
            max_bytes,
        })
    };
    let logs = |tail, follow, duration, max_bytes, timestamps| {
        logs_since(tail, None, follow, duration, max_bytes, timestamps)
    };

    let replies = t.send_all(logs(5, false, None, None, false)).await;
    assert_state(replies.last().unwrap(), ReplyState::Succeeded);
    let n = line_numbers(&output(&replies));
    assert_eq!(n.len(), 5, "{n:?}");
    assert!(consecutive(&n) && n[0] >= 16, "{n:?}");

    // Follow: new lines as they come, in ordered chunks, for 3 s.
    let replies = t.send_all(logs(0, true, Some(3), None, false)).await;
    assert_state(replies.last().unwrap(), ReplyState::Succeeded);
    let streamed = replies
        .iter()
        .filter(|r| r.state == ReplyState::Running && r.output.is_some())
        .count();
    assert!(
        streamed >= 2,
        "sent as it came, not at the end: {replies:?}"
    );
    let n = line_numbers(&output(&replies));
    assert!(n.len() >= 5 && consecutive(&n), "{n:?}");
    assert!(n[0] > 20, "tail 0: only new lines {n:?}");

    // Bounded by bytes: ends long before its 50 s.
    let replies = t.send_all(logs(0, true, Some(50), Some(200), false)).await;
    assert_state(replies.last().unwrap(), ReplyState::Succeeded);
    let text = output(&replies);
    assert!(text.len() <= 200, "{} bytes", text.len());
    assert!(text.contains("[output truncated]"), "{text:?}");
    assert!(consecutive(&line_numbers(&text)));

    // Nothing was written after tomorrow.
    let tomorrow = crate::util::rand_id() / 1_000_000_000 + 86_400;
    let replies = t
        .send_all(logs_since(100, Some(tomorrow), false, None, None, false))
        .await;
    assert_state(replies.last().unwrap(), ReplyState::Succeeded);
    assert_eq!(output(&replies), "");

    let replies = t.send_all(logs(3, false, None, None, true)).await;
    let text = output(&replies);
    assert_eq!(text.lines().count(), 3, "{text:?}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("20") && l.contains("Z line ")),
        "RFC 3339 timestamps: {text:?}"
    );

    t.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine; set PICKET_TEST_DOCKER_SOCKET"]
async fn stats_return_numbers_once_streamed_and_in_samples() {
    let engine = Engine::shared();
    let label = unique("stats");
    let a = unique("pk-stats");
    engine
        .run(&a, &[&format!("picket.test={label}")], IDLE)
        .await;
    let t = Setup::start(
        &engine,
        &label,
        "",
        &[("PICKET_DOCKER_STATS_INTERVAL", "1s".to_string())],
    )
    .await;
    let s = t
        .wait_sample("CPU and memory in a sample", |s| {
            s.containers
                .iter()
                .any(|c| c.name == a && c.cpu.is_some() && c.mem.is_some_and(|m| m > 0))
        })
        .await;
    let c = s.containers.iter().find(|c| c.name == a).unwrap();
    assert!(
        c.cpu.unwrap() >= 0.0 && c.mem_limit.unwrap() >= c.mem.unwrap(),
        "{c:?}"
    );

    let r = t
        .send(Action::DockerStats(DockerStatsArgs {
            container: a.clone(),
            stream: false,
            duration: None,
        }))
        .await;
    assert_state(&r, ReplyState::Succeeded);
    let v: serde_json::Value = serde_json::from_str(r.output.as_deref().unwrap()).unwrap();
    assert_eq!(v["container"], a.as_str());
    assert!(v["cpu"].as_f64().is_some_and(|c| c >= 0.0), "{v}");
    assert!(v["mem"].as_u64().is_some_and(|m| m > 0), "{v}");
    assert!(v["pids"].as_u64().is_some_and(|p| p >= 1), "{v}");

    let replies = t
        .send_all(Action::DockerStats(DockerStatsArgs {
            container: a.clone(),
            stream: true,
            duration: Some(5),
        }))
        .await;
    assert_state(replies.last().unwrap(), ReplyState::Succeeded);
    let text = output(&replies);
    let readings: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(readings.len() >= 2, "{text}");
    assert!(
        readings.iter().all(|v| v["mem"].as_u64().is_some()),
        "{text}"
    );

    t.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine; set PICKET_TEST_DOCKER_SOCKET"]
async fn exec_runs_configured_commands_only() {
    let engine = Engine::shared();
    let label = unique("exec");
    let a = unique("pk-exec");
    engine
        .run(&a, &[&format!("picket.test={label}")], IDLE)
        .await;
    let toml = r#"
[[docker.exec]]
name = "greet"
command = ["sh", "-c", "echo hello from $(hostname); echo oops >&2"]

[[docker.exec]]
name = "fail"
command = ["sh", "-c", "echo partial; exit 3"]

[[docker.exec]]
name = "elsewhere"
command = ["true"]
containers = ["nomatch-*"]
"#;
    let t = Setup::start(&engine, &label, toml, &[]).await;
    t.wait_sample("the container", |s| has(s, &a, ContainerState::Running))
        .await;
    let exec = |command: &str| {
        Action::DockerExec(DockerExecArgs {
            container: a.clone(),
            command: command.to_string(),
        })
    };

    let r = t.send(exec("greet")).await;
    assert_state(&r, ReplyState::Succeeded);
    let v: serde_json::Value = serde_json::from_str(r.output.as_deref().unwrap()).unwrap();
    assert_eq!(v["exit_code"], 0);
    let out = v["output"].as_str().unwrap();
    assert!(
        out.contains("hello from ") && out.contains("oops"),
        "{out:?}"
    );

    let r = t.send(exec("fail")).await;
    assert_state(&r, ReplyState::Failed);
    assert!(r.reason.as_deref().unwrap().contains("code 3"), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(r.output.as_deref().unwrap()).unwrap();
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["output"], "partial\n");

    for (command, reason) in [
        ("rm-everything", "is not a command of this device"),
        ("elsewhere", "may not run in container"),
        ("sh -c id", "is not a command name"),
    ] {
        let r = t.send(exec(command)).await;
        assert_state(&r, ReplyState::Rejected);
        assert!(
            r.reason.as_deref().unwrap().contains(reason),
            "{command}: {r:?}"
        );
    }

    t.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine; set PICKET_TEST_DOCKER_SOCKET"]
async fn an_engine_that_stops_is_reported_unavailable_and_found_again() {
    let mut engine = Engine::own().await;
    let label = unique("outage");
    let a = unique("pk-a");
    engine
        .run(&a, &[&format!("picket.test={label}")], IDLE)
        .await;
    let t = Setup::start(&engine, &label, "", &[]).await;
    t.wait_sample("the container", |s| has(s, &a, ContainerState::Running))
        .await;

    engine.stop().await;
    t.wait_event("engine unavailable", |k| {
        *k == EventKind::Docker {
            engine: EngineState::Unavailable,
        }
    })
    .await;
    let s = t
        .wait_sample("an unavailable sample", |s| {
            s.docker == Some(EngineState::Unavailable)
        })
        .await;
    assert!(s.containers.is_empty(), "{:?}", s.containers);
    let r = t.send(Action::DockerList(NoArgs {})).await;
    assert_state(&r, ReplyState::Rejected);
    assert!(
        r.reason.as_deref().unwrap().contains("unavailable"),
        "{r:?}"
    );
    // The rest of the agent goes on: samples keep coming.
    let count = t.sub.snapshot().samples.len();
    t.sub
        .wait_for(WAIT, "more samples", |r| r.samples.len() > count + 3)
        .await;

    engine.start().await;
    let s = t
        .wait_sample("the engine back, with the container", |s| {
            s.docker == Some(EngineState::Available) && s.containers.iter().any(|c| c.name == a)
        })
        .await;
    assert_eq!(s.containers.len(), 1);
    let r = t.send(Action::DockerList(NoArgs {})).await;
    assert_state(&r, ReplyState::Succeeded);
    let events = t.sub.snapshot().events;
    let engine_events: Vec<EngineState> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Docker { engine } => Some(engine),
            _ => None,
        })
        .collect();
    assert_eq!(
        engine_events,
        [
            EngineState::Available,
            EngineState::Unavailable,
            EngineState::Available
        ]
    );

    t.agent.stop().await;
}
