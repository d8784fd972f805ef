//! Docker containers as a sample reports them, the engine's availability,
//! and the typed arguments of the `docker.*` commands. Events about them
//! are [`crate::EventKind::Container`], [`crate::EventKind::ContainerGone`]
//! and [`crate::EventKind::Docker`].

use serde::{Deserialize, Serialize};

use crate::args::ArgError;

/// Whether the agent can talk to the Docker engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Available,
    /// No socket, connection refused, or the engine stopped answering: the
    /// agent retries with backoff and reports no containers meanwhile.
    Unavailable,
}

/// A container's state as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    /// Anything this version does not know.
    Unknown,
}

impl ContainerState {
    /// Parse Docker's spelling; anything unrecognised is `Unknown`.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "exited" => Self::Exited,
            "dead" => Self::Dead,
            _ => Self::Unknown,
        }
    }

    /// Not running, and not on its way back by itself.
    pub fn is_down(self) -> bool {
        matches!(self, Self::Exited | Self::Dead | Self::Created)
    }
}

/// The result of a container's health check, when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// Docker's spelling; `none` (no health check) and anything else are
    /// `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "starting" => Some(Self::Starting),
            "healthy" => Some(Self::Healthy),
            "unhealthy" => Some(Self::Unhealthy),
            _ => None,
        }
    }
}

/// One watched container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// The container's name, without Docker's leading `/`.
    pub name: String,
    /// The first 12 hexadecimal digits of its id.
    pub id: String,
    /// The image as the container was created from it (`nginx:1.27`).
    pub image: String,
    pub state: ContainerState,
    /// Absent when the container has no health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Restarts by the engine's restart policy (Docker's `RestartCount`).
    pub restarts: u64,
    /// When it last started, unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// The exit code of its last run, while it is not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// While it is down: `true` when it stopped without anyone asking the
    /// engine (its process exited or crashed, the kernel's OOM killer),
    /// `false` when it was stopped through the engine (`docker stop`,
    /// `docker kill`, `docker.stop`). Absent while it runs, and when the
    /// agent did not see it stop and cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unexpected: Option<bool>,
    /// CPU busy share over the last stats interval, % of one CPU times the
    /// number of CPUs (as `docker stats`), when stats are collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f32>,
    /// Memory in use, bytes (page cache excluded, as `docker stats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<u64>,
    /// The container's memory limit, bytes (the host's memory without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<u64>,
}

/// `args` of `docker.inspect` and `docker.start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerArgs {
    /// A container name or id (see [`check_container`]).
    pub container: String,
}

/// `args` of `docker.stop` and `docker.restart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopArgs {
    pub container: String,
    /// Seconds between the stop signal and SIGKILL, at most
    /// [`MAX_STOP_TIMEOUT`]; absent: the container's own (Docker: 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
}

/// `args` of `docker.logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerLogsArgs {
    pub container: String,
    /// Lines from the end of the log, 0 to [`MAX_TAIL`].
    #[serde(default = "default_tail")]
    pub tail: u32,
    /// Only lines written at or after this time, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Prefix each line with the engine's RFC 3339 timestamp.
    #[serde(default)]
    pub timestamps: bool,
    /// Keep streaming new lines, in ordered chunks, for `duration` seconds
    /// or until `max_bytes`.
    #[serde(default)]
    pub follow: bool,
    /// With `follow`: how long, 1 to [`MAX_STREAM_SECS`]; absent: 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// The most output to send; the device's `commands.output_max_bytes`
    /// caps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u32>,
}

fn default_tail() -> u32 {
    100
}

/// `args` of `docker.stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerStatsArgs {
    pub container: String,
    /// Stream a reading a second (the engine's pace), in ordered chunks,
    /// for `duration` seconds; otherwise one reading.
    #[serde(default)]
    pub stream: bool,
    /// With `stream`: how long, 1 to [`MAX_STREAM_SECS`]; absent: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
}

/// `args` of `docker.exec`: a command the device's configuration names;
/// never a command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerExecArgs {
    pub container: String,
    /// The name of a `[[docker.exec]]` entry of the device's configuration.
    pub command: String,
}

pub use crate::args::{MAX_STOP_TIMEOUT, MAX_STREAM_SECS, MAX_TAIL};
/// The longest container reference: Docker sets no limit, ids are 64.
pub const MAX_CONTAINER_LEN: usize = 128;

/// A container reference as Docker accepts it, and nothing an API path
/// or query could read differently: a name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`)
/// or an id (hexadecimal, which the same rule covers).
pub fn check_container(reference: &str) -> Result<(), ArgError> {
    let mut chars = reference.chars();
    let ok = reference.len() <= MAX_CONTAINER_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ArgError::Container(reference.to_string()))
    }
}

/// A `[[docker.exec]]` name: 1 to 64 of `[A-Za-z0-9_.-]`.
pub fn check_exec_name(name: &str) -> Result<(), ArgError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ArgError::ExecName(name.to_string()))
    }
}

fn check_duration(duration: Option<u32>, streaming: bool) -> Result<(), ArgError> {
    match duration {
        Some(_) if !streaming => Err(ArgError::DurationWithoutStream),
        Some(d) if !(1..=MAX_STREAM_SECS).contains(&d) => Err(ArgError::StreamSecs(d)),
        _ => Ok(()),
    }
}

impl StopArgs {
    pub(crate) fn check(&self) -> Result<(), ArgError> {
        check_container(&self.container)?;
        match self.timeout {
            Some(t) if t > MAX_STOP_TIMEOUT => Err(ArgError::StopTimeout(t)),
            _ => Ok(()),
        }
    }
}

impl DockerLogsArgs {
    pub(crate) fn check(&self) -> Result<(), ArgError> {
        check_container(&self.container)?;
        if self.tail > MAX_TAIL {
            return Err(ArgError::Tail(self.tail));
        }
        if self.max_bytes == Some(0) {
            return Err(ArgError::MaxBytes);
        }
        check_duration(self.duration, self.follow)
    }
}

impl DockerStatsArgs {
    pub(crate) fn check(&self) -> Result<(), ArgError> {
        check_container(&self.container)?;
        check_duration(self.duration, self.stream)
    }
}

impl DockerExecArgs {
    pub(crate) fn check(&self) -> Result<(), ArgError> {
        check_container(&self.container)?;
        check_exec_name(&self.command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;

    fn running() -> Container {
        Container {
            name: "web".into(),
            id: "0123456789ab".into(),
            image: "nginx:1.27".into(),
            state: ContainerState::Running,
            health: Some(Health::Healthy),
            restarts: 2,
            started: Some(1_717_171_000_000),
            exit_code: None,
            unexpected: None,
            cpu: Some(3.5),
            mem: Some(12_345_678),
            mem_limit: Some(1 << 30),
        }
    }

    fn crashed() -> Container {
        Container {
            state: ContainerState::Exited,
            health: None,
            exit_code: Some(137),
            unexpected: Some(true),
            cpu: None,
            mem: None,
            mem_limit: None,
            ..running()
        }
    }

    /// Sub-structures travel inside a versioned message.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Wrapped {
        v: u16,
        c: Container,
    }

    fn wrap(c: Container) -> Wrapped {
        Wrapped {
            v: crate::VERSION,
            c,
        }
    }

    #[test]
    fn round_trips() {
        round_trip(&wrap(running()));
        round_trip(&wrap(crashed()));
    }

    #[test]
    fn json_field_names() {
        assert_eq!(
            keys(&serde_json::to_value(running()).unwrap()),
            [
                "cpu",
                "health",
                "id",
                "image",
                "mem",
                "mem_limit",
                "name",
                "restarts",
                "started",
                "state"
            ]
        );
        let v = serde_json::to_value(crashed()).unwrap();
        assert_eq!(v["state"], "exited");
        assert_eq!(v["unexpected"], true);
        assert_eq!(v["exit_code"], 137);
        assert_eq!(
            serde_json::to_value(Engine::Unavailable).unwrap(),
            "unavailable"
        );
        assert_eq!(
            serde_json::to_value(Health::Unhealthy).unwrap(),
            "unhealthy"
        );
    }

    #[test]
    fn docker_spellings() {
        let states = [
            ("created", ContainerState::Created),
            ("running", ContainerState::Running),
            ("paused", ContainerState::Paused),
            ("restarting", ContainerState::Restarting),
            ("removing", ContainerState::Removing),
            ("exited", ContainerState::Exited),
            ("dead", ContainerState::Dead),
            ("", ContainerState::Unknown),
            ("frozen", ContainerState::Unknown),
        ];
        for (s, want) in states {
            assert_eq!(ContainerState::parse(s), want, "{s}");
        }
        assert_eq!(Health::parse("healthy"), Some(Health::Healthy));
        assert_eq!(Health::parse("unhealthy"), Some(Health::Unhealthy));
        assert_eq!(Health::parse("starting"), Some(Health::Starting));
        assert_eq!(Health::parse("none"), None);
        assert_eq!(Health::parse(""), None);
    }

    #[test]
    fn unknown_fields_are_ignored_and_required_ones_required() {
        let mut v = to_value(&wrap(crashed()));
        add_unknown(&mut v["c"]);
        assert_eq!(decode_value::<Wrapped>(&v).unwrap(), wrap(crashed()));
        for field in ["name", "id", "image", "state", "restarts"] {
            let mut v = to_value(&wrap(crashed()));
            v["c"].as_object_mut().unwrap().remove(field);
            assert!(decode_value::<Wrapped>(&v).is_err(), "{field}");
        }
    }

    #[test]
    fn container_references() {
        let table = [
            ("web", true),
            ("w", true),
            ("web-1.blue_2", true),
            ("0123456789ab", true),
            (&*"a".repeat(64), true),
            (&*"a".repeat(MAX_CONTAINER_LEN), true),
            (&*"a".repeat(MAX_CONTAINER_LEN + 1), false),
            ("", false),
            ("-web", false),
            ("_web", false),
            (".web", false),
            ("/web", false),
            ("web/../../images", false),
            ("web?all=1", false),
            ("web name", false),
            ("web\n", false),
            ("wéb", false),
            ("web;rm", false),
            ("web%2f", false),
        ];
        for (reference, ok) in table {
            assert_eq!(check_container(reference).is_ok(), ok, "{reference:?}");
        }
        assert_eq!(
            check_container("a b"),
            Err(ArgError::Container("a b".into()))
        );
    }

    #[test]
    fn argument_checks() {
        let logs = |tail, follow, duration, max_bytes| DockerLogsArgs {
            container: "web".into(),
            tail,
            since: None,
            timestamps: false,
            follow,
            duration,
            max_bytes,
        };
        let stats = |stream, duration| DockerStatsArgs {
            container: "web".into(),
            stream,
            duration,
        };
        let stop = |timeout| StopArgs {
            container: "web".into(),
            timeout,
        };
        let exec = |container: &str, command: &str| DockerExecArgs {
            container: container.into(),
            command: command.into(),
        };
        assert_eq!(logs(100, false, None, None).check(), Ok(()));
        assert_eq!(logs(0, true, Some(1), Some(1)).check(), Ok(()));
        assert_eq!(
            logs(MAX_TAIL, true, Some(MAX_STREAM_SECS), None).check(),
            Ok(())
        );
        assert_eq!(
            logs(MAX_TAIL + 1, false, None, None).check(),
            Err(ArgError::Tail(MAX_TAIL + 1))
        );
        assert_eq!(
            logs(10, false, Some(5), None).check(),
            Err(ArgError::DurationWithoutStream)
        );
        assert_eq!(
            logs(10, true, Some(0), None).check(),
            Err(ArgError::StreamSecs(0))
        );
        assert_eq!(
            logs(10, true, Some(MAX_STREAM_SECS + 1), None).check(),
            Err(ArgError::StreamSecs(MAX_STREAM_SECS + 1))
        );
        assert_eq!(
            logs(10, false, None, Some(0)).check(),
            Err(ArgError::MaxBytes)
        );
        assert_eq!(stats(false, None).check(), Ok(()));
        assert_eq!(stats(true, Some(30)).check(), Ok(()));
        assert_eq!(
            stats(false, Some(30)).check(),
            Err(ArgError::DurationWithoutStream)
        );
        assert_eq!(stop(None).check(), Ok(()));
        assert_eq!(stop(Some(0)).check(), Ok(()));
        assert_eq!(stop(Some(MAX_STOP_TIMEOUT)).check(), Ok(()));
        assert_eq!(
            stop(Some(MAX_STOP_TIMEOUT + 1)).check(),
            Err(ArgError::StopTimeout(MAX_STOP_TIMEOUT + 1))
        );
        assert_eq!(exec("web", "reload-nginx").check(), Ok(()));
        assert_eq!(
            exec("web", "nginx -s reload").check(),
            Err(ArgError::ExecName("nginx -s reload".into()))
        );
        assert_eq!(
            exec("web", "").check(),
            Err(ArgError::ExecName(String::new()))
        );
        assert_eq!(
            exec("../web", "reload").check(),
            Err(ArgError::Container("../web".into()))
        );
    }
}
