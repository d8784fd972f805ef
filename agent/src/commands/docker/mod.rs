//! The `docker.*` commands: the checks before one is accepted, and what
//! each does through the engine client the Docker watcher shares
//! ([`crate::docker::Handle`]). The registry calls both.
//!
//! What the commands do needs the `docker` cargo feature; without it the
//! registry's arms stay the same and every one of them fails (they are
//! already refused before acceptance, since Docker cannot be enabled).

#[cfg(feature = "docker")]
mod supported;
#[cfg(not(feature = "docker"))]
mod unsupported;

#[cfg(feature = "docker")]
pub use supported::*;
#[cfg(not(feature = "docker"))]
pub use unsupported::*;

use picket_protocol::Engine;
use tokio::sync::watch;

use crate::config::{DOCKER_SUPPORTED, DockerConfig};
use crate::docker::{DockerView, Handle, track};

/// Why a `docker.*` command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerRefusal {
    #[error("Docker is not enabled on this device (docker.enabled)")]
    Disabled,
    #[error("this agent was built without Docker support")]
    Unsupported,
    #[error("the Docker engine is unavailable")]
    Unavailable,
    #[error("no container {0:?} in this device's Docker scope")]
    NotInScope(String),
    #[error("{0:?} is not a command of this device's [[docker.exec]] configuration")]
    NotConfigured(String),
    #[error("{name:?} may not run in container {container}")]
    NotAllowed { name: String, container: String },
}

/// Docker's configuration and the watcher's view, or why the commands are
/// refused.
fn enabled(h: &Handle) -> Result<(&DockerConfig, watch::Ref<'_, DockerView>), DockerRefusal> {
    h.config().zip(h.view()).ok_or(if DOCKER_SUPPORTED {
        DockerRefusal::Disabled
    } else {
        DockerRefusal::Unsupported
    })
}

/// Checks done before a command is accepted: Docker enabled and the
/// engine reachable, the container in scope (from the current view),
/// and for `docker.exec` a configured command allowed in it.
pub fn validate(h: &Handle, container: &str, exec: Option<&str>) -> Result<(), DockerRefusal> {
    let (cfg, view) = enabled(h)?;
    if view.engine != Some(Engine::Available) {
        return Err(DockerRefusal::Unavailable);
    }
    let Some(c) = track::find(&view.containers, container) else {
        return Err(DockerRefusal::NotInScope(container.to_string()));
    };
    if let Some(name) = exec {
        let Some(spec) = cfg.exec.iter().find(|e| e.name == name) else {
            return Err(DockerRefusal::NotConfigured(name.to_string()));
        };
        if !spec.allows(&c.name) {
            return Err(DockerRefusal::NotAllowed {
                name: name.to_string(),
                container: c.name.clone(),
            });
        }
    }
    Ok(())
}

/// Docker enabled and the engine reachable (for `docker.list`).
pub fn validate_engine(h: &Handle) -> Result<(), DockerRefusal> {
    if enabled(h)?.1.engine == Some(Engine::Available) {
        Ok(())
    } else {
        Err(DockerRefusal::Unavailable)
    }
}
