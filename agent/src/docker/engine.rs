//! The Docker engine's API over its unix socket, through bollard, reduced
//! to what the agent asks: who is there, in what state, what happened,
//! and how busy.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error;
use bollard::models::{ContainerInspectResponse, ContainerStatsResponse, EventMessage};
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, ListContainersOptions, StatsOptions,
};
use futures_util::{Stream, StreamExt};
use picket_protocol::{ContainerState, Health};

use super::stats::{CpuCounters, mem_used};
use super::time::unix_ms;
use super::track::Snapshot;
use crate::config::Scope;

/// Requests that should answer at once (list, inspect, start) give up
/// after this; `docker.stop` and `docker.restart` add their own timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to the engine. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Client {
    pub docker: Docker,
}

/// An engine event about one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerEvent {
    /// The full id.
    pub id: String,
    pub action: String,
    /// The container's name and labels (the engine adds its labels to the
    /// event's attributes), and `signal`, `exitCode` where they apply.
    pub attributes: HashMap<String, String>,
}

impl ContainerEvent {
    pub fn name(&self) -> &str {
        self.attributes.get("name").map_or("", String::as_str)
    }
}

/// Why the engine could not be used.
pub fn describe(e: &Error) -> String {
    match e {
        Error::SocketNotFoundError(path) => format!("no socket at {path}"),
        Error::RequestTimeoutError => "the engine did not answer in time".into(),
        Error::DockerResponseServerError {
            status_code,
            message,
        } => format!("the engine answered {status_code}: {message}"),
        other => other.to_string(),
    }
}

/// A failed engine request, worded as [`describe`] does.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.0))]
pub struct EngineError(#[from] pub Error);

/// Whether `e` means "no such container" rather than a broken engine.
pub fn not_found(e: &Error) -> bool {
    matches!(
        e,
        Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl Client {
    /// Connect and agree on an API version (the engine's, when older than
    /// bollard's: Debian 12 ships Docker 20.10, API 1.41).
    pub async fn connect(socket: &Path) -> Result<Client, EngineError> {
        let path = socket.to_string_lossy();
        let docker = Docker::connect_with_unix(
            &path,
            REQUEST_TIMEOUT.as_secs(),
            bollard::API_DEFAULT_VERSION,
        )?;
        let docker = docker.negotiate_version().await?;
        Ok(Client { docker })
    }

    /// The engine's event stream for containers, from `since` (unix
    /// seconds; the engine replays what it logged since then, so nothing
    /// happening while the agent lists containers is missed).
    pub fn events(&self, since: u64) -> impl Stream<Item = Result<ContainerEvent, Error>> + use<> {
        let filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
        let options = EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        };
        self.docker
            .events(Some(options))
            .filter_map(|m| async move {
                match m {
                    Ok(m) => container_event(m).map(Ok),
                    Err(e) => Some(Err(e)),
                }
            })
    }

    /// Every container in scope, inspected.
    pub async fn list(&self, scope: &Scope) -> Result<Vec<Snapshot>, Error> {
        let options = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let summaries = self.docker.list_containers(Some(options)).await?;
        let mut out = Vec::new();
        for s in summaries {
            let name = s
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            let labels = s.labels.unwrap_or_default();
            let Some(id) = s.id else { continue };
            if !scope.contains(&name, &labels) {
                continue;
            }
            match self.inspect(&id).await {
                Ok(i) => {
                    if let Some((snap, labels)) = snapshot(&i)
                        && scope.contains(&snap.name, &labels)
                    {
                        out.push(snap);
                    }
                }
                // Removed between the listing and now.
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub async fn inspect(&self, reference: &str) -> Result<ContainerInspectResponse, Error> {
        self.docker
            .inspect_container(reference, None::<InspectContainerOptions>)
            .await
    }

    /// One container in scope as it is now; `None` when it is gone or not
    /// in scope.
    pub async fn look(&self, reference: &str, scope: &Scope) -> Result<Option<Snapshot>, Error> {
        match self.inspect(reference).await {
            Ok(i) => Ok(snapshot(&i)
                .filter(|(s, labels)| scope.contains(&s.name, labels))
                .map(|(s, _)| s)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One stats reading without the engine's one-second wait for a
    /// second reading (the watcher computes CPU % from its own previous
    /// one).
    pub async fn usage(&self, id: &str) -> Result<Usage, Error> {
        let options = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stream = self.docker.stats(id, Some(options));
        match stream.next().await {
            Some(Ok(s)) => Ok(usage(&s)),
            Some(Err(e)) => Err(e),
            None => Err(Error::DockerStreamError {
                error: "no stats returned".into(),
            }),
        }
    }
}

/// CPU counters and memory of one stats reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu: Option<CpuCounters>,
    pub mem: Option<u64>,
    pub mem_limit: Option<u64>,
}

pub fn usage(s: &ContainerStatsResponse) -> Usage {
    let cpu = s.cpu_stats.as_ref().and_then(counters);
    let (mem, mem_limit) = match &s.memory_stats {
        Some(m) => {
            let stats = m.stats.clone().unwrap_or_default();
            (
                m.usage.map(|u| mem_used(u, |k| stats.get(k).copied())),
                m.limit.filter(|&l| l > 0),
            )
        }
        None => (None, None),
    };
    Usage {
        cpu,
        mem,
        mem_limit,
    }
}

/// The previous reading the engine includes in a non-one-shot stats
/// response (`precpu_stats`).
pub fn previous_cpu(s: &ContainerStatsResponse) -> Option<CpuCounters> {
    s.precpu_stats.as_ref().and_then(counters)
}

fn counters(c: &bollard::models::ContainerCpuStats) -> Option<CpuCounters> {
    let usage = c.cpu_usage.as_ref()?;
    let percpu = usage.percpu_usage.as_ref().map_or(0, Vec::len);
    Some(CpuCounters {
        total: usage.total_usage?,
        system: c.system_cpu_usage,
        cpus: c
            .online_cpus
            .filter(|&n| n > 0)
            .unwrap_or(u32::try_from(percpu).unwrap_or(0)),
    })
}

fn container_event(m: EventMessage) -> Option<ContainerEvent> {
    let actor = m.actor?;
    Some(ContainerEvent {
        id: actor.id?,
        action: m.action?,
        attributes: actor.attributes.unwrap_or_default(),
    })
}

/// Our view of an inspection, and the container's labels (for the scope).
pub fn snapshot(i: &ContainerInspectResponse) -> Option<(Snapshot, HashMap<String, String>)> {
    let id = i.id.clone()?;
    let name = i
        .name
        .as_deref()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    let config = i.config.as_ref();
    let labels = config.and_then(|c| c.labels.clone()).unwrap_or_default();
    let image = config
        .and_then(|c| c.image.clone())
        .or_else(|| i.image.clone())
        .unwrap_or_default();
    let st = i.state.as_ref();
    let state = st
        .and_then(|s| s.status)
        .map_or(ContainerState::Unknown, |s| {
            ContainerState::parse(s.as_ref())
        });
    let health = st
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
        .and_then(|h| Health::parse(h.as_ref()));
    Some((
        Snapshot {
            id,
            name,
            image,
            state,
            health,
            restarts: i.restart_count.map_or(0, |n| u64::try_from(n).unwrap_or(0)),
            started: st.and_then(|s| s.started_at.as_deref()).and_then(unix_ms),
            exit_code: st.and_then(|s| s.exit_code),
            oom_killed: st.and_then(|s| s.oom_killed).unwrap_or(false),
        },
        labels,
    ))
}

/// The first 12 digits of an id, as `docker ps` shows it.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
