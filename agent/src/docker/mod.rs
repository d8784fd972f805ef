//! Docker on the device: the containers in scope in every sample, their
//! state and health changes as events at once, and the `docker.*`
//! commands, through the engine's API on its unix socket (bollard).
//!
//! The engine is a seam the agent cannot count on: absent, refused or
//! restarted, it makes samples say `docker: unavailable` (one warning per
//! outage), and the watcher retries with backoff while everything else
//! runs on.
//!
//! # Layout
//! - [`crate::config::Scope`]: which containers picket may see and manage
//!   (name globs, a label); [`track`]: what is known about them and which
//!   changes are events (pure); [`stats`]: CPU % and memory as
//!   `docker stats` computes them (pure); [`time`]: the engine's
//!   timestamps.
//! - `engine`: the bollard client: connect, list, inspect, events, stats.
//! - `watch`: the task following the engine (event stream, periodic
//!   listing and stats), publishing [`DockerView`] and sending events.
//! - [`commands`]: the `docker.*` commands, called from the command
//!   registry.
//!
//! The last three need the `docker` cargo feature (on by default); without
//! it, `docker.enabled = true` is a configuration error and the commands
//! are refused.

pub mod stats;
pub mod time;
pub mod track;

#[cfg(feature = "docker")]
mod cmd;
#[cfg(feature = "docker")]
pub mod engine;
#[cfg(not(feature = "docker"))]
mod unsupported;
#[cfg(feature = "docker")]
pub mod watch;

/// The `docker.*` commands, as the command registry calls them.
pub mod commands {
    #[cfg(feature = "docker")]
    pub use super::cmd::*;
    #[cfg(not(feature = "docker"))]
    pub use super::unsupported::*;
}

use std::sync::Arc;

use picket_protocol::{Container, Engine};

use crate::config::{DOCKER_SUPPORTED, DockerConfig};

/// What the agent currently knows of Docker, for samples and commands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DockerView {
    /// `None` until the first attempt to reach the engine.
    pub engine: Option<Engine>,
    /// The containers in scope, by name.
    pub containers: Vec<Container>,
}

/// What the `docker.*` commands need: the configuration, the current view
/// and, while the engine is reachable, the watcher's client.
#[derive(Clone, Default)]
pub struct Handle {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    cfg: DockerConfig,
    view: tokio::sync::watch::Receiver<DockerView>,
    #[cfg(feature = "docker")]
    client: tokio::sync::watch::Receiver<Option<engine::Client>>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engine = self.shared.as_ref().and_then(|s| s.view.borrow().engine);
        f.debug_struct("Handle")
            .field("enabled", &self.shared.is_some())
            .field("engine", &engine)
            .finish()
    }
}

impl Handle {
    /// Docker is off on this device: every `docker.*` command is refused.
    pub fn disabled() -> Handle {
        Handle { shared: None }
    }

    fn enabled(&self) -> Result<&Shared, String> {
        self.shared.as_deref().ok_or_else(|| {
            if DOCKER_SUPPORTED {
                "Docker is not enabled on this device (docker.enabled)".into()
            } else {
                "this agent was built without Docker support".into()
            }
        })
    }

    /// Checks done before a command is accepted: Docker enabled and the
    /// engine reachable, the container in scope (from the current view),
    /// and for `docker.exec` a configured command allowed in it.
    pub fn validate(&self, container: &str, exec: Option<&str>) -> Result<(), String> {
        let shared = self.enabled()?;
        let view = shared.view.borrow();
        if view.engine != Some(Engine::Available) {
            return Err("the Docker engine is unavailable".into());
        }
        let Some(c) = track::find(&view.containers, container) else {
            return Err(format!(
                "no container {container:?} in this device's Docker scope"
            ));
        };
        if let Some(name) = exec {
            let Some(spec) = shared.cfg.exec.iter().find(|e| e.name == name) else {
                return Err(format!(
                    "{name:?} is not a command of this device's [[docker.exec]] configuration"
                ));
            };
            if !spec.allows(&c.name) {
                return Err(format!("{name:?} may not run in container {}", c.name));
            }
        }
        Ok(())
    }

    /// Docker enabled and the engine reachable (for `docker.list`).
    pub fn validate_engine(&self) -> Result<(), String> {
        if self.enabled()?.view.borrow().engine == Some(Engine::Available) {
            Ok(())
        } else {
            Err("the Docker engine is unavailable".into())
        }
    }
}
