//! The command envelope sent by a collector to one device, and the typed
//! arguments of every command.
//!
//! A command is a variant of [`Action`]: its `name` on the wire and a typed
//! `args` struct, never free-form JSON. Adding a command is adding a variant
//! here (with its [`Action::name`] and [`Action::check`]) and a handler in
//! the agent's command registry.

use serde::{Deserialize, Serialize};

pub use crate::docker::{ContainerArgs, DockerExecArgs, DockerLogsArgs, DockerStatsArgs, StopArgs};
use crate::topic::DeviceId;

/// Payload of `{prefix}/v1/{device}/cmd/{id}` (never retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub v: u16,
    /// Unique per command; also the last topic level.
    pub id: String,
    /// The device this command is for; an agent refuses any other.
    pub device: DeviceId,
    /// `name` and typed `args`.
    #[serde(flatten)]
    pub action: Action,
    /// Unix milliseconds when the command was issued.
    pub issued: u64,
    /// Unix milliseconds after which the command must not run.
    pub expires: u64,
    /// ed25519 signature over the canonical encoding of every other field
    /// (see [`crate::signing`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<Vec<u8>>,
}

/// A command's name and its typed arguments, serialised as `name` and `args`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", content = "args")]
pub enum Action {
    /// Answer `succeeded` with `pong`: proves the path works.
    #[serde(rename = "ping")]
    Ping(NoArgs),
    /// Hardware, OS, kernel, architecture, addresses and current metrics.
    #[serde(rename = "system.info")]
    SystemInfo(NoArgs),
    /// Reboot the device through its configured executor.
    #[serde(rename = "system.reboot")]
    SystemReboot(RebootArgs),
    /// Restart an allowlisted systemd unit.
    #[serde(rename = "service.restart")]
    ServiceRestart(UnitArgs),
    /// The last `lines` lines of an allowlisted unit's journal.
    #[serde(rename = "service.logs")]
    ServiceLogs(LogsArgs),
    /// Download a file over HTTPS into an allowlisted directory.
    #[serde(rename = "file.deploy")]
    FileDeploy(DeployArgs),
    /// Delete a file inside an allowlisted directory.
    #[serde(rename = "file.delete")]
    FileDelete(PathArgs),
    /// Replace the agent's configuration file, with rollback.
    #[serde(rename = "config.update")]
    ConfigUpdate(ConfigArgs),
    /// Blink the status LED's identify pattern (10 Hz) for a while, so a
    /// technician knows which box is meant.
    #[serde(rename = "led.identify")]
    LedIdentify(IdentifyArgs),
    /// Set a GPIO line the device configured as an output.
    #[serde(rename = "gpio.write")]
    GpioWrite(GpioWriteArgs),
    /// Replace the agent's binary with a signed build, health-gated with
    /// automatic rollback.
    #[serde(rename = "agent.update")]
    AgentUpdate(UpdateArgs),
    // Docker: containers in the device's Docker scope only.
    /// The containers in scope: name, id, image, state, health, restarts.
    #[serde(rename = "docker.list")]
    DockerList(NoArgs),
    /// The engine's full description of one container (JSON).
    #[serde(rename = "docker.inspect")]
    DockerInspect(ContainerArgs),
    #[serde(rename = "docker.start")]
    DockerStart(ContainerArgs),
    /// Stop signal, then SIGKILL after `timeout` seconds.
    #[serde(rename = "docker.stop")]
    DockerStop(StopArgs),
    #[serde(rename = "docker.restart")]
    DockerRestart(StopArgs),
    /// The log's last lines; with `follow`, new lines in ordered chunks for
    /// a bounded time and size.
    #[serde(rename = "docker.logs")]
    DockerLogs(DockerLogsArgs),
    /// CPU, memory, network and process counts, once or streamed.
    #[serde(rename = "docker.stats")]
    DockerStats(DockerStatsArgs),
    /// Run a command the device's configuration defines, by name.
    #[serde(rename = "docker.exec")]
    DockerExec(DockerExecArgs),
}

/// `args` of commands that take none: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoArgs {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootArgs {
    /// Seconds to wait before rebooting (at most [`MAX_REBOOT_DELAY`]).
    #[serde(default)]
    pub delay: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitArgs {
    /// A systemd unit name, e.g. `kiosk.service`.
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsArgs {
    pub unit: String,
    /// Lines from the end of the journal, 1 to [`MAX_LOG_LINES`].
    #[serde(default = "default_lines")]
    pub lines: u32,
}

fn default_lines() -> u32 {
    100
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployArgs {
    /// `https://` URL to download.
    pub url: String,
    /// Expected SHA-256 of the content, 64 hex digits.
    pub sha256: String,
    /// Destination: absolute, or relative to the device's first allowed
    /// directory.
    pub dest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathArgs {
    /// Absolute, or relative to the device's first allowed directory.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigArgs {
    /// The complete new configuration file (TOML).
    pub toml: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifyArgs {
    /// How long, in seconds: 1 to [`MAX_IDENTIFY_SECS`]; absent: 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpioWriteArgs {
    /// The output's name in the device's `[[gpio.output]]` configuration.
    pub name: String,
    /// 0 (inactive) or 1 (active; the device applies its `active_low`).
    pub level: u8,
}

// --- agent.update -------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateArgs {
    /// `https://` URL of the new agent binary.
    pub url: String,
    /// Its SHA-256, 64 hex digits.
    pub sha256: String,
    /// The version the binary reports (see [`crate::version`]).
    pub version: String,
    /// ed25519 signature of the artifact by the collector's key, 128 hex
    /// digits (see [`crate::signing::sign_artifact`]).
    pub signature: String,
    /// Allow a version older than (or equal in order to) the running one.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_downgrade: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

// --- end agent.update ---------------------------------------------------

pub use crate::args::{
    ArgError, MAX_CONFIG_BYTES, MAX_IDENTIFY_SECS, MAX_LOG_LINES, MAX_PATH_LEN, MAX_REBOOT_DELAY,
};

impl Action {
    /// The name on the wire, also the name allowlists use.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Ping(_) => "ping",
            Action::SystemInfo(_) => "system.info",
            Action::SystemReboot(_) => "system.reboot",
            Action::ServiceRestart(_) => "service.restart",
            Action::ServiceLogs(_) => "service.logs",
            Action::FileDeploy(_) => "file.deploy",
            Action::FileDelete(_) => "file.delete",
            Action::ConfigUpdate(_) => "config.update",
            Action::LedIdentify(_) => "led.identify",
            Action::GpioWrite(_) => "gpio.write",
            Action::AgentUpdate(_) => "agent.update",
            Action::DockerList(_) => "docker.list",
            Action::DockerInspect(_) => "docker.inspect",
            Action::DockerStart(_) => "docker.start",
            Action::DockerStop(_) => "docker.stop",
            Action::DockerRestart(_) => "docker.restart",
            Action::DockerLogs(_) => "docker.logs",
            Action::DockerStats(_) => "docker.stats",
            Action::DockerExec(_) => "docker.exec",
        }
    }

    /// Every command name this build knows.
    pub const NAMES: &'static [&'static str] = &[
        "ping",
        "system.info",
        "system.reboot",
        "service.restart",
        "service.logs",
        "file.deploy",
        "file.delete",
        "config.update",
        "led.identify",
        "gpio.write",
        "agent.update",
        "docker.list",
        "docker.inspect",
        "docker.start",
        "docker.stop",
        "docker.restart",
        "docker.logs",
        "docker.stats",
        "docker.exec",
    ];

    /// Checks that hold on any device (the agent adds its allowlists).
    pub fn check(&self) -> Result<(), ArgError> {
        match self {
            Action::Ping(_) | Action::SystemInfo(_) => Ok(()),
            Action::SystemReboot(a) if a.delay > MAX_REBOOT_DELAY => Err(ArgError::Delay(a.delay)),
            Action::SystemReboot(_) => Ok(()),
            Action::ServiceRestart(a) => check_unit(&a.unit),
            Action::ServiceLogs(a) => {
                check_unit(&a.unit)?;
                if !(1..=MAX_LOG_LINES).contains(&a.lines) {
                    return Err(ArgError::Lines(a.lines));
                }
                Ok(())
            }
            Action::FileDeploy(a) => {
                check_url(&a.url)?;
                check_sha256(&a.sha256)?;
                check_path(&a.dest)
            }
            Action::FileDelete(a) => check_path(&a.path),
            Action::ConfigUpdate(a) => {
                if a.toml.trim().is_empty() || a.toml.len() > MAX_CONFIG_BYTES {
                    return Err(ArgError::ConfigSize);
                }
                Ok(())
            }
            Action::LedIdentify(a) => match a.secs {
                Some(s) if !(1..=MAX_IDENTIFY_SECS).contains(&s) => Err(ArgError::IdentifySecs(s)),
                _ => Ok(()),
            },
            Action::GpioWrite(a) => {
                let name_ok = (1..=64).contains(&a.name.len())
                    && a.name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                if !name_ok {
                    return Err(ArgError::OutputName(a.name.clone()));
                }
                if a.level > 1 {
                    return Err(ArgError::Level(a.level));
                }
                Ok(())
            }
            Action::AgentUpdate(a) => {
                check_url(&a.url)?;
                check_sha256(&a.sha256)?;
                if !crate::version::is_valid(&a.version) {
                    return Err(ArgError::Version(a.version.clone()));
                }
                if a.signature.len() != 128 || !a.signature.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ArgError::Signature);
                }
                Ok(())
            }
            Action::DockerList(_) => Ok(()),
            Action::DockerInspect(a) | Action::DockerStart(a) => {
                crate::docker::check_container(&a.container)
            }
            Action::DockerStop(a) | Action::DockerRestart(a) => a.check(),
            Action::DockerLogs(a) => a.check(),
            Action::DockerStats(a) => a.check(),
            Action::DockerExec(a) => a.check(),
        }
    }
}

fn check_url(url: &str) -> Result<(), ArgError> {
    if url.starts_with("https://") && url.len() <= MAX_PATH_LEN {
        Ok(())
    } else {
        Err(ArgError::Url)
    }
}

fn check_sha256(sha: &str) -> Result<(), ArgError> {
    if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ArgError::Sha256)
    }
}

/// A unit name systemctl and journalctl take as a name, never as an
/// option: no leading `-`, no whitespace, no path separator.
fn check_unit(unit: &str) -> Result<(), ArgError> {
    let ok = !unit.is_empty()
        && unit.len() <= 256
        && !unit.starts_with('-')
        && unit
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':' | '\\'));
    if ok {
        Ok(())
    } else {
        Err(ArgError::Unit(unit.to_string()))
    }
}

/// Lexical checks only; the agent resolves the path against its allowed
/// directories and symlinks.
fn check_path(path: &str) -> Result<(), ArgError> {
    let ok = !path.is_empty()
        && path.len() <= MAX_PATH_LEN
        && !path.contains('\0')
        && !path.split('/').any(|c| c == "..");
    if ok {
        Ok(())
    } else {
        Err(ArgError::Path(path.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VERSION;
    use crate::test_util::*;
    use serde_json::json;

    fn command(action: Action) -> Command {
        Command {
            v: VERSION,
            id: "01HZX3K9Q7".into(),
            device: DeviceId::new("pi-kitchen.01").unwrap(),
            action,
            issued: 1_717_171_717_000,
            expires: 1_717_171_777_000,
            sig: Some((0u8..64).collect()),
        }
    }

    fn sha() -> String {
        "ab".repeat(32)
    }

    fn every_action() -> Vec<(Action, &'static str)> {
        vec![
            (Action::Ping(NoArgs {}), "ping"),
            (Action::SystemInfo(NoArgs {}), "system.info"),
            (
                Action::SystemReboot(RebootArgs { delay: 5 }),
                "system.reboot",
            ),
            (
                Action::ServiceRestart(UnitArgs {
                    unit: "nginx.service".into(),
                }),
                "service.restart",
            ),
            (
                Action::ServiceLogs(LogsArgs {
                    unit: "nginx.service".into(),
                    lines: 200,
                }),
                "service.logs",
            ),
            (
                Action::FileDeploy(DeployArgs {
                    url: "https://cdn.example/v.mp4".into(),
                    sha256: sha(),
                    dest: "videos/v.mp4".into(),
                }),
                "file.deploy",
            ),
            (
                Action::FileDelete(PathArgs {
                    path: "videos/v.mp4".into(),
                }),
                "file.delete",
            ),
            (
                Action::ConfigUpdate(ConfigArgs {
                    toml: "[sampling]\ninterval = \"5s\"\n".into(),
                }),
                "config.update",
            ),
            (
                Action::LedIdentify(IdentifyArgs { secs: Some(60) }),
                "led.identify",
            ),
            (
                Action::GpioWrite(GpioWriteArgs {
                    name: "relay".into(),
                    level: 1,
                }),
                "gpio.write",
            ),
            (Action::AgentUpdate(update_args()), "agent.update"),
            (Action::DockerList(NoArgs {}), "docker.list"),
            (
                Action::DockerInspect(ContainerArgs {
                    container: "web".into(),
                }),
                "docker.inspect",
            ),
            (
                Action::DockerStart(ContainerArgs {
                    container: "web".into(),
                }),
                "docker.start",
            ),
            (
                Action::DockerStop(StopArgs {
                    container: "web".into(),
                    timeout: Some(5),
                }),
                "docker.stop",
            ),
            (
                Action::DockerRestart(StopArgs {
                    container: "web".into(),
                    timeout: None,
                }),
                "docker.restart",
            ),
            (
                Action::DockerLogs(DockerLogsArgs {
                    container: "web".into(),
                    tail: 50,
                    since: Some(1_717_171_717),
                    timestamps: true,
                    follow: true,
                    duration: Some(30),
                    max_bytes: Some(65_536),
                }),
                "docker.logs",
            ),
            (
                Action::DockerStats(DockerStatsArgs {
                    container: "web".into(),
                    stream: true,
                    duration: Some(5),
                }),
                "docker.stats",
            ),
            (
                Action::DockerExec(DockerExecArgs {
                    container: "web".into(),
                    command: "reload".into(),
                }),
                "docker.exec",
            ),
        ]
    }

    fn update_args() -> UpdateArgs {
        UpdateArgs {
            url: "https://cdn.example/picket-agent-0.2.0".into(),
            sha256: sha(),
            version: "0.2.0".into(),
            signature: "cd".repeat(64),
            allow_downgrade: false,
        }
    }

    #[test]
    fn round_trips() {
        for (action, _) in every_action() {
            round_trip(&command(action));
        }
        round_trip(&Command {
            sig: None,
            ..command(Action::Ping(NoArgs {}))
        });
    }

    #[test]
    fn json_field_names_and_command_names() {
        let all = every_action();
        assert_eq!(all.len(), Action::NAMES.len());
        for (action, name) in all {
            assert_eq!(action.name(), name);
            assert!(Action::NAMES.contains(&name));
            let v = to_value(&command(action));
            assert_eq!(
                keys(&v),
                [
                    "args", "device", "expires", "id", "issued", "name", "sig", "v"
                ],
                "{name}"
            );
            assert_eq!(v["name"], name);
        }
        let v = to_value(&command(Action::ServiceLogs(LogsArgs {
            unit: "nginx.service".into(),
            lines: 200,
        })));
        assert_eq!(v["args"], json!({"unit": "nginx.service", "lines": 200}));
        assert_eq!(
            to_value(&command(Action::Ping(NoArgs {})))["args"],
            json!({})
        );
    }

    #[test]
    fn defaults_fill_optional_args() {
        let mut v = to_value(&command(Action::SystemReboot(RebootArgs { delay: 5 })));
        v["args"] = json!({});
        let c = decode_value::<Command>(&v).unwrap();
        assert_eq!(c.action, Action::SystemReboot(RebootArgs { delay: 0 }));
        v["name"] = "service.logs".into();
        v["args"] = json!({"unit": "a.service"});
        let c = decode_value::<Command>(&v).unwrap();
        assert_eq!(
            c.action,
            Action::ServiceLogs(LogsArgs {
                unit: "a.service".into(),
                lines: 100
            })
        );
    }

    #[test]
    fn docker_defaults_and_seed_shapes() {
        // The shapes the earlier Docker agent's backend sends.
        let mut v = to_value(&command(Action::Ping(NoArgs {})));
        v["name"] = "docker.logs".into();
        v["args"] = json!({"container": "webapp-container", "tail": 100, "follow": true});
        let c = decode_value::<Command>(&v).unwrap();
        assert_eq!(
            c.action,
            Action::DockerLogs(DockerLogsArgs {
                container: "webapp-container".into(),
                tail: 100,
                since: None,
                timestamps: false,
                follow: true,
                duration: None,
                max_bytes: None,
            })
        );
        v["args"] = json!({"container": "web"});
        let c = decode_value::<Command>(&v).unwrap();
        let Action::DockerLogs(a) = c.action else {
            panic!("{:?}", c.action)
        };
        assert_eq!((a.tail, a.follow, a.timestamps), (100, false, false));
        v["name"] = "docker.list".into();
        v["args"] = json!({});
        assert_eq!(
            decode_value::<Command>(&v).unwrap().action,
            Action::DockerList(NoArgs {})
        );
        v["name"] = "docker.exec".into();
        v["args"] = json!({"container": "web", "cmd": ["sh", "-c", "id"]});
        assert!(
            decode_value::<Command>(&v).is_err(),
            "a command line is not an exec argument"
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let want = command(Action::ServiceLogs(LogsArgs {
            unit: "nginx.service".into(),
            lines: 200,
        }));
        let mut v = to_value(&want);
        add_unknown(&mut v);
        add_unknown(&mut v["args"]);
        assert_eq!(decode_value::<Command>(&v).unwrap(), want);
    }

    #[test]
    fn missing_required_field_is_an_error() {
        let cmd = command(Action::ServiceRestart(UnitArgs {
            unit: "nginx.service".into(),
        }));
        for field in ["v", "id", "device", "name", "args", "issued", "expires"] {
            assert_required(&cmd, field);
        }
        let mut v = to_value(&cmd);
        v["args"].as_object_mut().unwrap().remove("unit");
        assert!(decode_value::<Command>(&v).is_err());
    }

    #[test]
    fn wrongly_typed_args_are_an_error() {
        let mut v = to_value(&command(Action::ServiceLogs(LogsArgs {
            unit: "a.service".into(),
            lines: 1,
        })));
        v["args"]["lines"] = "many".into();
        assert!(decode_value::<Command>(&v).is_err());
        v["args"] = "unit=a.service".into();
        assert!(decode_value::<Command>(&v).is_err());
    }

    #[test]
    fn unknown_action_is_an_error() {
        let mut v = to_value(&command(Action::Ping(NoArgs {})));
        v["name"] = "format_disk".into();
        assert!(decode_value::<Command>(&v).is_err());
    }

    #[test]
    fn allow_downgrade_is_optional_and_omitted_when_false() {
        let v = to_value(&command(Action::AgentUpdate(update_args())));
        assert_eq!(keys(&v["args"]), ["sha256", "signature", "url", "version"]);
        let c = decode_value::<Command>(&v).unwrap();
        assert_eq!(c.action, Action::AgentUpdate(update_args()));
        let mut args = update_args();
        args.allow_downgrade = true;
        let v = to_value(&command(Action::AgentUpdate(args)));
        assert_eq!(v["args"]["allow_downgrade"], true);
    }

    #[test]
    fn sig_is_optional() {
        let mut v = to_value(&command(Action::SystemReboot(RebootArgs::default())));
        v.as_object_mut().unwrap().remove("sig");
        let decoded = decode_value::<Command>(&v).unwrap();
        assert_eq!(decoded.sig, None);
    }

    #[test]
    fn argument_checks() {
        let unit = |u: &str| Action::ServiceRestart(UnitArgs { unit: u.into() });
        let logs = |lines| {
            Action::ServiceLogs(LogsArgs {
                unit: "a.service".into(),
                lines,
            })
        };
        let deploy = |url: &str, sha: &str, dest: &str| {
            Action::FileDeploy(DeployArgs {
                url: url.into(),
                sha256: sha.into(),
                dest: dest.into(),
            })
        };
        let del = |p: &str| Action::FileDelete(PathArgs { path: p.into() });
        let identify = |secs| Action::LedIdentify(IdentifyArgs { secs });
        let write = |name: &str, level| {
            Action::GpioWrite(GpioWriteArgs {
                name: name.into(),
                level,
            })
        };
        let update = |edit: fn(&mut UpdateArgs)| {
            let mut a = update_args();
            edit(&mut a);
            Action::AgentUpdate(a)
        };
        let table: Vec<(Action, Result<(), ArgError>)> = vec![
            (update(|_| {}), Ok(())),
            (update(|a| a.allow_downgrade = true), Ok(())),
            (update(|a| a.url = "http://h/x".into()), Err(ArgError::Url)),
            (update(|a| a.sha256 = "ab".into()), Err(ArgError::Sha256)),
            (
                update(|a| a.version = "../x".into()),
                Err(ArgError::Version("../x".into())),
            ),
            (
                update(|a| a.signature = "zz".repeat(64)),
                Err(ArgError::Signature),
            ),
            (
                update(|a| a.signature = "ab".repeat(63)),
                Err(ArgError::Signature),
            ),
            (unit("kiosk.service"), Ok(())),
            (unit("getty@tty1.service"), Ok(())),
            (unit("--force"), Err(ArgError::Unit("--force".into()))),
            (unit("a b"), Err(ArgError::Unit("a b".into()))),
            (unit("../x"), Err(ArgError::Unit("../x".into()))),
            (unit(""), Err(ArgError::Unit("".into()))),
            (logs(1), Ok(())),
            (logs(MAX_LOG_LINES), Ok(())),
            (logs(0), Err(ArgError::Lines(0))),
            (
                logs(MAX_LOG_LINES + 1),
                Err(ArgError::Lines(MAX_LOG_LINES + 1)),
            ),
            (
                Action::SystemReboot(RebootArgs { delay: 3601 }),
                Err(ArgError::Delay(3601)),
            ),
            (deploy("https://h/x", &sha(), "v/x.mp4"), Ok(())),
            (deploy("http://h/x", &sha(), "v/x"), Err(ArgError::Url)),
            (deploy("https://h/x", "abc", "v/x"), Err(ArgError::Sha256)),
            (
                deploy("https://h/x", &"zz".repeat(32), "v/x"),
                Err(ArgError::Sha256),
            ),
            (
                deploy("https://h/x", &sha(), "../etc/passwd"),
                Err(ArgError::Path("../etc/passwd".into())),
            ),
            (
                del("/srv/videos/a/../../etc"),
                Err(ArgError::Path("/srv/videos/a/../../etc".into())),
            ),
            (del("/srv/videos/a.mp4"), Ok(())),
            (del(""), Err(ArgError::Path("".into()))),
            (
                Action::ConfigUpdate(ConfigArgs { toml: " \n".into() }),
                Err(ArgError::ConfigSize),
            ),
            (identify(None), Ok(())),
            (identify(Some(1)), Ok(())),
            (identify(Some(MAX_IDENTIFY_SECS)), Ok(())),
            (identify(Some(0)), Err(ArgError::IdentifySecs(0))),
            (identify(Some(601)), Err(ArgError::IdentifySecs(601))),
            (write("relay", 0), Ok(())),
            (write("relay-2.b_c", 1), Ok(())),
            (write("relay", 2), Err(ArgError::Level(2))),
            (write("", 1), Err(ArgError::OutputName("".into()))),
            (write("a b", 1), Err(ArgError::OutputName("a b".into()))),
            (
                write(&"x".repeat(65), 1),
                Err(ArgError::OutputName("x".repeat(65))),
            ),
        ];
        for (action, want) in table {
            assert_eq!(action.check(), want, "{action:?}");
        }
    }
}
