//! The `docker.*` commands, through the Docker watcher's engine client
//! (the `docker` feature). Each resolves the reference it was given to
//! one container through the engine, checks that container against the
//! scope (a container outside it is "not found", the same answer as one
//! that does not exist), and then acts on its full id only.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{
    LogsOptions, RestartContainerOptions, StatsOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use picket_protocol::docker::check_container;
use picket_protocol::{DockerExecArgs, DockerLogsArgs, DockerStatsArgs, StopArgs};
use serde::Serialize;
use tokio::time::Instant;

use super::DockerRefusal;
use crate::commands::Outcome;
use crate::commands::output::Sink;
use crate::config::{DockerConfig, ExecSpec};
use crate::docker::Handle;
use crate::docker::engine::{self, Client, REQUEST_TIMEOUT};
use crate::docker::stats::cpu_percent;
use crate::docker::track::{Snapshot, Tracker};

/// A streamed command sends what it has at least this often.
const FLUSH: Duration = Duration::from_millis(500);
/// Room kept for the JSON around `docker.exec`'s output.
const EXEC_ENVELOPE: usize = 256;
/// How long `docker.exec` waits for the engine to record the exit code
/// once the output stream ended.
const EXEC_EXIT_WAIT: Duration = Duration::from_secs(5);

type Result<T> = std::result::Result<T, Outcome>;

/// The watcher's client and Docker's configuration, while Docker is
/// enabled and the engine reachable.
fn connected(h: &Handle) -> Result<(Client, &DockerConfig)> {
    let cfg = h.config().ok_or_else(|| refused(DockerRefusal::Disabled))?;
    let client = h
        .client()
        .ok_or_else(|| refused(DockerRefusal::Unavailable))?;
    Ok((client, cfg))
}

fn refused(why: DockerRefusal) -> Outcome {
    Outcome::failed(why.to_string())
}

fn engine_error(e: &bollard::errors::Error) -> Outcome {
    Outcome::failed(format!("Docker: {}", engine::describe(e)))
}

/// The container `reference` names, if it is in scope.
async fn resolve(client: &Client, cfg: &DockerConfig, reference: &str) -> Result<Snapshot> {
    check_container(reference).map_err(|e| Outcome::failed(e.to_string()))?;
    client
        .look(reference, &cfg.scope)
        .await
        .map_err(|e| engine_error(&e))?
        .ok_or_else(|| refused(DockerRefusal::NotInScope(reference.to_string())))
}

fn json(value: &impl Serialize) -> Outcome {
    match serde_json::to_string_pretty(value) {
        Ok(mut s) => {
            s.push('\n');
            Outcome::Succeeded(s)
        }
        Err(e) => Outcome::failed(format!("cannot encode the answer: {e}")),
    }
}

fn outcome(r: Result<Outcome>) -> Outcome {
    r.unwrap_or_else(|o| o)
}

/// `docker.list`: the containers in scope, as a sample shows them.
pub async fn list(h: &Handle) -> Outcome {
    outcome(
        async {
            let (client, cfg) = connected(h)?;
            let snaps = client
                .list(&cfg.scope)
                .await
                .map_err(|e| engine_error(&e))?;
            let mut tracker = Tracker::default();
            tracker.resync(snaps);
            Ok(json(&tracker.containers()))
        }
        .await,
    )
}

/// `docker.inspect`: the engine's description of the container.
pub async fn inspect(h: &Handle, reference: &str) -> Outcome {
    outcome(
        async {
            let (client, cfg) = connected(h)?;
            let snap = resolve(&client, cfg, reference).await?;
            let full = client
                .inspect(&snap.id)
                .await
                .map_err(|e| engine_error(&e))?;
            Ok(json(&full))
        }
        .await,
    )
}

/// The container's state after an action, as the reply's output.
async fn state_after(client: &Client, cfg: &DockerConfig, snap: &Snapshot) -> Outcome {
    match client.look(&snap.id, &cfg.scope).await {
        Ok(Some(now)) => Outcome::Succeeded(format!("{}: {}\n", now.name, state_name(&now))),
        Ok(None) => Outcome::Succeeded(format!("{}: removed\n", snap.name)),
        Err(e) => engine_error(&e),
    }
}

fn state_name(s: &Snapshot) -> String {
    let state = serde_json::to_value(s.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match s.exit_code {
        Some(code) if s.state.is_down() => format!("{state} (exit code {code})"),
        _ => state,
    }
}

pub async fn start(h: &Handle, reference: &str) -> Outcome {
    outcome(
        async {
            let (client, cfg) = connected(h)?;
            let snap = resolve(&client, cfg, reference).await?;
            client
                .docker
                .start_container(&snap.id, None)
                .await
                .map_err(|e| engine_error(&e))?;
            Ok(state_after(&client, cfg, &snap).await)
        }
        .await,
    )
}

pub async fn stop(h: &Handle, a: &StopArgs, restart: bool) -> Outcome {
    outcome(
        async {
            let (client, cfg) = connected(h)?;
            let snap = resolve(&client, cfg, &a.container).await?;
            let t = a.timeout.map(|t| i32::try_from(t).unwrap_or(i32::MAX));
            // The engine answers once the container stopped: up to the stop
            // timeout (the container's own, 10 s by default, when none given).
            let wait = Duration::from_secs(u64::from(a.timeout.unwrap_or(60)));
            let docker = client.docker.clone().with_timeout(REQUEST_TIMEOUT + wait);
            let done = if restart {
                let o = RestartContainerOptions { signal: None, t };
                docker.restart_container(&snap.id, Some(o)).await
            } else {
                let o = StopContainerOptions { signal: None, t };
                docker.stop_container(&snap.id, Some(o)).await
            };
            done.map_err(|e| engine_error(&e))?;
            Ok(state_after(&client, cfg, &snap).await)
        }
        .await,
    )
}

/// `docker.logs`: the last lines, or with `follow` the new ones as they
/// come, in ordered chunks, until `duration` or the byte bound.
pub async fn logs(h: &Handle, a: &DockerLogsArgs, out: &mut Sink) -> Outcome {
    outcome(
        async {
            let (client, cfg) = connected(h)?;
            let snap = resolve(&client, cfg, &a.container).await?;
            if let Some(max) = a.max_bytes {
                out.limit(max as usize);
            }
            let options = LogsOptions {
                follow: a.follow,
                stdout: true,
                stderr: true,
                since: a.since.map_or(0, |s| i32::try_from(s).unwrap_or(i32::MAX)),
                until: 0,
                timestamps: a.timestamps,
                tail: a.tail.to_string(),
            };
            let stream = client.docker.logs(&snap.id, Some(options));
            tokio::pin!(stream);
            let secs = a.duration.unwrap_or(60);
            let deadline = Instant::now() + Duration::from_secs(u64::from(secs));
            let mut flush = tokio::time::interval(FLUSH);
            loop {
                tokio::select! {
                    biased;
                    item = stream.next() => match item {
                        Some(Ok(o)) => {
                            if !out.write(&text(&o)).await {
                                break;
                            }
                        }
                        Some(Err(e)) => return Err(engine_error(&e)),
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline), if a.follow => break,
                    _ = flush.tick(), if a.follow => out.flush().await,
                }
            }
            Ok(Outcome::Succeeded(String::new()))
        }
        .await,
    )
}

fn text(o: &LogOutput) -> String {
    String::from_utf8_lossy(o.as_ref()).into_owned()
}

/// One `docker.stats` reading as the reply shows it.
#[derive(Debug, Serialize)]
struct Reading {
    container: String,
    /// The engine's time of the reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    read: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mem: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mem_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    net_rx: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    net_tx: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pids: Option<u64>,
}

fn reading(name: &str, s: &bollard::models::ContainerStatsResponse) -> Reading {
    let u = engine::usage(s);
    let cpu = match (engine::previous_cpu(s), u.cpu) {
        (Some(prev), Some(cur)) => cpu_percent(prev, cur),
        _ => None,
    };
    let net = s.networks.as_ref();
    let sum = |f: fn(&bollard::models::ContainerNetworkStats) -> Option<u64>| {
        net.map(|n| n.values().filter_map(f).sum::<u64>())
    };
    Reading {
        container: name.to_string(),
        read: s.read.as_ref().map(|r| r.to_string()),
        cpu,
        mem: u.mem,
        mem_limit: u.mem_limit,
        net_rx: sum(|n| n.rx_bytes),
        net_tx: sum(|n| n.tx_bytes),
        pids: s.pids_stats.as_ref().and_then(|p| p.current),
    }
}

/// `docker.stats`: one reading (the engine takes a second, to have two
/// to compute CPU % from), or with `stream` one a second, a JSON object
/// a line, until `duration`.
pub async fn stats(h: &Handle, a: &DockerStatsArgs, out: &mut Sink) -> Outcome {
    outcome(
        async {
            let (client, cfg) = connected(h)?;
            let snap = resolve(&client, cfg, &a.container).await?;
            let options = StatsOptions {
                stream: a.stream,
                one_shot: false,
            };
            let stream = client.docker.stats(&snap.id, Some(options));
            tokio::pin!(stream);
            if !a.stream {
                return match stream.next().await {
                    Some(Ok(s)) => Ok(json(&reading(&snap.name, &s))),
                    Some(Err(e)) => Err(engine_error(&e)),
                    None => Err(Outcome::failed("the engine returned no stats")),
                };
            }
            let secs = a.duration.unwrap_or(10);
            let deadline = Instant::now() + Duration::from_secs(u64::from(secs));
            loop {
                tokio::select! {
                    biased;
                    item = stream.next() => match item {
                        Some(Ok(s)) => {
                            let line = serde_json::to_string(&reading(&snap.name, &s))
                                .unwrap_or_default();
                            if !out.write(&format!("{line}\n")).await {
                                break;
                            }
                            out.flush().await;
                        }
                        Some(Err(e)) => return Err(engine_error(&e)),
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            Ok(Outcome::Succeeded(String::new()))
        }
        .await,
    )
}

#[derive(Debug, Serialize)]
struct ExecResult {
    command: String,
    exit_code: Option<i64>,
    output: String,
    truncated: bool,
}

/// `docker.exec`: a command of the device's `[[docker.exec]]`
/// configuration, by name, with its exit code and bounded output.
pub async fn exec(h: &Handle, a: &DockerExecArgs, max: usize) -> Outcome {
    outcome(
        async {
            let (client, cfg) = connected(h)?;
            let snap = resolve(&client, cfg, &a.container).await?;
            let spec = exec_spec(cfg, &a.command, &snap)?;
            let created = client
                .docker
                .create_exec(
                    &snap.id,
                    CreateExecOptions {
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        cmd: Some(spec.argv.clone()),
                        user: spec.user.clone(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| engine_error(&e))?;
            let started = client
                .docker
                .start_exec(&created.id, None)
                .await
                .map_err(|e| engine_error(&e))?;
            let (output, truncated) =
                read_bounded(started, max.saturating_sub(EXEC_ENVELOPE)).await?;
            let exit_code = exit_code(&client, &created.id).await?;
            Ok(exec_reply(ExecResult {
                command: a.command.clone(),
                exit_code,
                output,
                truncated,
            }))
        }
        .await,
    )
}

/// The configured command `name`, if it may run in the container.
fn exec_spec<'c>(cfg: &'c DockerConfig, name: &str, snap: &Snapshot) -> Result<&'c ExecSpec> {
    cfg.exec
        .iter()
        .find(|e| e.name == name)
        .filter(|e| e.allows(&snap.name))
        .ok_or_else(|| {
            Outcome::failed(format!(
                "{name:?} is not a [[docker.exec]] command for container {}",
                snap.name
            ))
        })
}

/// The exec's output, at most `budget` bytes of it, and whether some was
/// cut.
async fn read_bounded(started: StartExecResults, budget: usize) -> Result<(String, bool)> {
    let mut output = String::new();
    let mut truncated = false;
    if let StartExecResults::Attached {
        output: mut stream, ..
    } = started
    {
        // Read to the end even past the bound: a process blocked on a
        // full pipe would never exit.
        while let Some(item) = stream.next().await {
            let chunk = text(&item.map_err(|e| engine_error(&e))?);
            let room = budget.saturating_sub(output.len());
            if chunk.len() <= room {
                output.push_str(&chunk);
            } else {
                let mut cut = room;
                while !chunk.is_char_boundary(cut) {
                    cut -= 1;
                }
                output.push_str(&chunk[..cut]);
                truncated = true;
            }
        }
    }
    Ok((output, truncated))
}

/// Succeeded with exit code 0; the result is the output either way.
fn exec_reply(result: ExecResult) -> Outcome {
    let body = serde_json::to_string_pretty(&result).unwrap_or_default() + "\n";
    match result.exit_code {
        Some(0) => Outcome::Succeeded(body),
        Some(code) => Outcome::Failed {
            reason: format!("{} exited with code {code}", result.command),
            output: body,
        },
        None => Outcome::Failed {
            reason: format!("{}: the engine reported no exit code", result.command),
            output: body,
        },
    }
}

/// The exec's exit code, once the engine has recorded it.
async fn exit_code(client: &Client, exec_id: &str) -> Result<Option<i64>> {
    let deadline = Instant::now() + EXEC_EXIT_WAIT;
    loop {
        let i = client
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| engine_error(&e))?;
        if i.running != Some(true) {
            return Ok(i.exit_code);
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
